import { createPrivateKey } from 'node:crypto';
import type { createAppAuth } from '@octokit/auth-app';
import type { request as octokitRequest } from '@octokit/request';

/** A GitHub App as ci_service keeps it: set by hand (GITHUB_APP_ID and its key), or made by /setup. */
export interface GitHubApp {
  id: string;
  privateKey: string;
  /** Made by /setup: GitHub's secret for the App's webhook, and where its pages are. */
  webhookSecret?: string;
  slug?: string;
  htmlUrl?: string;
}

/**
 * GitHub refused to let the App act on a repository: not installed there, the installation suspended or removed.
 * Permanent until someone changes the App's installation; the message says what to do.
 */
export class GitHubAppAccessError extends Error {}

type AppAuth = ReturnType<typeof createAppAuth>;

/** The key GitHub gives an App ("Generate a private key"): RSA, in PEM; anything else is refused before use. */
export function checkAppPrivateKey(pem: string, source: string): void {
  let key;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new Error(`${source} is not a private key in PEM: use the .pem file GitHub downloads from the App's settings ("Generate a private key"), whole`);
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new Error(`${source} is a ${key.asymmetricKeyType ?? 'non-RSA'} key, and GitHub signs Apps' tokens with RSA only: use the .pem file GitHub downloads from the App's settings`);
  }
}

/**
 * How ci_service acts on GitHub: as nobody (public repositories only), as the person of GITHUB_TOKEN, or as a
 * GitHub App. As an App, each request about a repository carries the token of the App's installation on it
 * (@octokit/auth-app makes and caches them until shortly before they expire); the App's own endpoints
 * (`/app/…`) carry its JWT. The installation of a repository is the one its deliveries name, or else GitHub's
 * answer to `GET /repos/{owner}/{repo}/installation`. An App made by /setup is taken up while ci_service runs.
 */
export class GitHubAuth {
  private app: { spec: GitHubApp; auth: AppAuth; request: typeof octokitRequest } | undefined;
  /** owner/name (lower case) → its installation id. */
  private readonly installations = new Map<string, number>();

  constructor(
    private readonly apiUrl: string,
    private readonly token: string | undefined,
  ) {}

  get mode(): 'app' | 'token' | 'none' {
    return this.app ? 'app' : this.token ? 'token' : 'none';
  }

  /** The App ci_service acts as, if any. */
  get currentApp(): GitHubApp | undefined {
    return this.app?.spec;
  }

  /** Acts as `app` from now on. @octokit/auth-app is loaded here: a daemon in token mode does not carry it. */
  async useApp(app: GitHubApp): Promise<void> {
    checkAppPrivateKey(app.privateKey, 'the GitHub App\'s private key');
    const [{ createAppAuth }, { request: octokitRequest }] = await Promise.all([import('@octokit/auth-app'), import('@octokit/request')]);
    const request = octokitRequest.defaults({ baseUrl: this.apiUrl, headers: { 'user-agent': 'ci_service' } });
    this.app = { spec: app, auth: createAppAuth({ appId: app.id, privateKey: app.privateKey, request }), request };
    this.installations.clear();
  }

  /** A delivery names the installation it came through: remembered for the repository's requests. */
  rememberInstallation(fullName: string, installationId: number): void {
    this.installations.set(fullName.toLowerCase(), installationId);
  }

  /**
   * The Authorization header for a request to `path` (the API path, without GITHUB_API_URL's own path), or
   * none. `refresh` makes a new installation token: after a 401, the cached one was revoked.
   */
  async authorization(path: string, refresh = false): Promise<string | undefined> {
    if (!this.app) return this.token ? `Bearer ${this.token}` : undefined;
    if (path.startsWith('/app-manifests/')) return undefined; // the manifest's code is the credential
    if (path === '/app' || path.startsWith('/app/')) return `Bearer ${await this.appJwt()}`;
    const repository = /^\/repos\/([^/]+)\/([^/]+)(?:\/|$)/.exec(path);
    if (!repository) return `Bearer ${await this.appJwt()}`;
    const fullName = `${decodeURIComponent(repository[1]!)}/${decodeURIComponent(repository[2]!)}`;
    return `Bearer ${await this.installationToken(fullName, refresh)}`;
  }

  /**
   * The token of the App's installation on the repository. An installation a delivery named may have gone since
   * (the App removed, or removed and installed again under a new id): GitHub is then asked which one it is now.
   */
  private async installationToken(fullName: string, refresh: boolean, askedGitHub = false): Promise<string> {
    const remembered = this.installations.has(fullName.toLowerCase());
    const installationId = await this.installationOf(fullName);
    try {
      return (await this.app!.auth({ type: 'installation', installationId, refresh })).token;
    } catch (error) {
      if ((error as { status?: number }).status === 404 && remembered && !askedGitHub) {
        this.installations.delete(fullName.toLowerCase());
        return this.installationToken(fullName, refresh, true);
      }
      throw this.accessError(error, fullName, installationId);
    }
  }

  /** The App's own token (a JWT of ten minutes, signed with its key). */
  async appJwt(): Promise<string> {
    if (!this.app) throw new Error('no GitHub App is set up');
    return (await this.app.auth({ type: 'app' })).token;
  }

  private async installationOf(fullName: string): Promise<number> {
    const known = this.installations.get(fullName.toLowerCase());
    if (known !== undefined) return known;
    const [owner, repo] = fullName.split('/') as [string, string];
    try {
      const { data } = await this.app!.request('GET /repos/{owner}/{repo}/installation', { owner, repo, headers: { authorization: `Bearer ${await this.appJwt()}` }, request: { signal: AbortSignal.timeout(30_000) } });
      this.rememberInstallation(fullName, data.id);
      return data.id;
    } catch (error) {
      const status = (error as { status?: number }).status;
      if (status === 404) throw new GitHubAppAccessError(`the GitHub App is not installed on ${fullName}: ${this.installHint()}`);
      if (status === 401) throw new GitHubAppAccessError(this.refusedJwt());
      throw error;
    }
  }

  private accessError(error: unknown, fullName: string, installationId: number): Error {
    const status = (error as { status?: number }).status;
    const message = (error as { response?: { data?: { message?: string } } }).response?.data?.message ?? (error instanceof Error ? error.message : String(error));
    if (status === 403 && /suspended/i.test(message)) {
      return new GitHubAppAccessError(`the GitHub App's installation on ${fullName} is suspended (${message}): an owner of the account unsuspends it in its settings (Settings → GitHub Apps)`);
    }
    if (status === 404) {
      this.installations.delete(fullName.toLowerCase());
      return new GitHubAppAccessError(`the GitHub App's installation ${installationId} on ${fullName} is gone (removed): ${this.installHint()}`);
    }
    if (status === 401) return new GitHubAppAccessError(this.refusedJwt());
    return error instanceof Error ? error : new Error(message);
  }

  /** GitHub's 401 to the App's JWT. */
  refusedJwt(): string {
    return `GitHub refused the App's token (401): GITHUB_APP_ID ${this.app?.spec.id ?? ''} does not match the private key, or the key was deleted on GitHub`;
  }

  private installHint(): string {
    const page = this.app?.spec.htmlUrl;
    return page ? `install it on the repository from ${page}/installations/new` : "install it on the repository from the App's page on GitHub (Install App)";
  }
}
