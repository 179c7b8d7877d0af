import { createPublicKey, generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import escapeHtml from 'escape-html';
import { postDelivery, type HookDelivery } from './hookshot.js';

/** A GitHub App as GitHub holds it. */
export interface StandInApp {
  id: number;
  slug: string;
  name: string;
  owner: string;
  /** PKCS#1 PEM, as GitHub's "Generate a private key" downloads it. */
  privateKey: string;
  publicKey: string;
  webhookSecret: string;
  hookUrl: string;
  permissions: Record<string, string>;
  events: string[];
  htmlUrl: string;
}

export interface StandInInstallation {
  id: number;
  appId: number;
  account: string;
  /** owner/name of each repository it may act on. */
  repositories: string[];
  suspended: boolean;
}

export interface StandInCheckRun {
  id: number;
  appId: number;
  fullName: string;
  head_sha: string;
  name: string;
  status: string;
  conclusion: string | null;
  external_id: string | null;
  details_url: string | null;
  started_at: string | null;
  completed_at: string | null;
  output: { title: string | null; summary: string | null; text: string | null };
  annotations: Record<string, unknown>[];
  actions: { label: string; description: string; identifier: string }[];
  checkSuiteId: number;
}

/** One delivery to an App's webhook, as GET /app/hook/deliveries lists it: a hook's, with its installation. */
export interface AppHookDelivery extends HookDelivery {
  installation_id: number | null;
}

/** GitHub's limits (422 beyond them). */
const OUTPUT_FIELD_LIMIT = 65_535;
const ANNOTATIONS_PER_REQUEST = 50;
const ACTIONS_LIMIT = 3;
const ANNOTATION_LEVELS = ['notice', 'warning', 'failure'];
const CONCLUSIONS = ['action_required', 'cancelled', 'failure', 'neutral', 'success', 'skipped', 'stale', 'timed_out'];
const STATUSES = ['queued', 'in_progress', 'completed', 'waiting', 'requested', 'pending'];
/** GitHub refuses a JWT whose `exp` is more than ten minutes after its `iat`. */
const MAX_JWT_SECONDS = 600;
const MANIFEST_CODE_LIFETIME_MS = 3600_000;

type Answer = (status: number, body: unknown, headers?: Record<string, string>) => void;

/**
 * The GitHub App endpoints of the stand-in, as GitHub serves them: the manifest flow (its web form, the code and
 * its conversion), the App's JWT checked with the App's public key (`iat`, `exp`, `iss`), installations and their
 * tokens (which expire), check runs with GitHub's validation, the App's webhook and its deliveries.
 */
export class GitHubAppStandIn {
  readonly apps = new Map<number, StandInApp>();
  readonly installations = new Map<number, StandInInstallation>();
  readonly checkRuns: StandInCheckRun[] = [];
  readonly appDeliveries = new Map<number, AppHookDelivery[]>();
  /** Installation tokens GitHub issued, and when each expires. */
  private readonly tokens = new Map<string, { installationId: number; expiresAt: number }>();
  private readonly manifestCodes = new Map<string, { manifest: Record<string, any>; owner: string; expiresAt: number; used: boolean }>();
  private readonly suites = new Map<string, number>();
  /** How long an installation token lives (GitHub: one hour); a test shortens it to see it refreshed. */
  tokenLifetimeMs = 3600_000;
  /** JWTs GitHub refused, and why: what a test asserts on. */
  readonly refusedJwts: string[] = [];
  private nextId = 1000;

  constructor(
    private readonly baseUrl: () => string,
    private readonly repositoryExists: (fullName: string) => boolean,
  ) {}

  /** An App made as by GitHub's "New GitHub App" page (what GITHUB_APP_ID and its key name). */
  createApp(options: { name?: string; owner?: string; hookUrl?: string; webhookSecret?: string; permissions?: Record<string, string>; events?: string[] } = {}): StandInApp {
    const id = this.nextId++;
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    const name = options.name ?? `ci-test-app-${id}`;
    const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
    const app: StandInApp = {
      id,
      slug,
      name,
      owner: options.owner ?? 'octo-org',
      privateKey,
      publicKey,
      webhookSecret: options.webhookSecret ?? randomBytes(20).toString('hex'),
      hookUrl: options.hookUrl ?? '',
      permissions: options.permissions ?? { contents: 'read', checks: 'write', statuses: 'write', pull_requests: 'read', metadata: 'read' },
      events: options.events ?? ['pull_request', 'push', 'check_run', 'check_suite'],
      htmlUrl: `${this.baseUrl()}/apps/${slug}`,
    };
    this.apps.set(id, app);
    return app;
  }

  /** The App installed on an account's repositories; returns the installation's id. */
  install(appId: number, repositories: string[]): number {
    const id = this.nextId++;
    this.installations.set(id, { id, appId, account: repositories[0]!.split('/')[0]!, repositories, suspended: false });
    return id;
  }

  /** The App removed from an account: its installation, and the tokens it was given, are gone. */
  uninstall(installationId: number): void {
    this.installations.delete(installationId);
    for (const [token, issued] of this.tokens) if (issued.installationId === installationId) this.tokens.delete(token);
  }

  /** Every token issued so far stops working (GitHub revokes them when an installation changes). */
  revokeTokens(): void {
    this.tokens.clear();
  }

  /** The installation whose token the request carries, while the token lives. */
  installationOf(req: IncomingMessage): StandInInstallation | undefined {
    const token = /^(?:Bearer|token) (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const issued = token ? this.tokens.get(token) : undefined;
    if (!issued || issued.expiresAt <= Date.now()) return undefined;
    const installation = this.installations.get(issued.installationId);
    return installation && !installation.suspended ? installation : undefined;
  }

  /** Whether the request carries an installation token GitHub issued (live or expired): a stranger's token is "Bad credentials". */
  issued(req: IncomingMessage): { live: boolean } | undefined {
    const token = /^(?:Bearer|token) (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const issued = token ? this.tokens.get(token) : undefined;
    return issued ? { live: issued.expiresAt > Date.now() } : undefined;
  }

  /** Whether the request carries an installation token that may act on the repository. */
  mayActOn(req: IncomingMessage, fullName: string): boolean {
    return this.installationOf(req)?.repositories.some((name) => name.toLowerCase() === fullName.toLowerCase()) ?? false;
  }

  /**
   * Sends an event to the App's webhook as GitHub does: the installation in the payload, signed with the App's
   * webhook secret, each attempt recorded. Returns the status code (0: no answer).
   */
  async deliver(appId: number, event: string, payload: Record<string, unknown>, installationId?: number, guid = randomBytes(16).toString('hex')): Promise<number> {
    const app = this.apps.get(appId)!;
    // The recorded examples carry an installation of their own: replaced by this one, or none.
    const { installation: _recorded, ...rest } = payload;
    const body = JSON.stringify(installationId === undefined ? rest : { ...rest, installation: { id: installationId, node_id: `MDIz${installationId}` } });
    return this.attempt(app, { guid, event, action: typeof payload.action === 'string' ? payload.action : null, body, installation_id: installationId ?? null }, false);
  }

  private async attempt(app: StandInApp, delivery: Pick<AppHookDelivery, 'guid' | 'event' | 'action' | 'body' | 'installation_id'>, redelivery: boolean): Promise<number> {
    const { statusCode, status } = await postDelivery(app.hookUrl, app.webhookSecret, delivery, {
      'x-github-hook-installation-target-type': 'integration',
      'x-github-hook-installation-target-id': String(app.id),
    });
    const list = this.appDeliveries.get(app.id) ?? [];
    this.appDeliveries.set(app.id, list);
    list.push({ ...delivery, id: this.nextId++, delivered_at: new Date().toISOString(), redelivery, status_code: statusCode, status });
    return statusCode;
  }

  /** The check runs on a commit, oldest first. */
  runsOf(fullName: string, sha: string): StandInCheckRun[] {
    return this.checkRuns.filter((run) => run.fullName === fullName && run.head_sha === sha);
  }

  /** Serves the request if it is one of the App endpoints; false otherwise. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL, answer: Answer, body: () => Promise<any>, form: () => Promise<URLSearchParams>): Promise<boolean> {
    const method = req.method ?? 'GET';
    const path = url.pathname;
    const newApp = /^(?:\/organizations\/([^/]+))?\/settings\/apps\/new(\/create)?$/.exec(path);
    if (newApp && method === 'POST') {
      await this.serveNewApp(res, url, newApp[1], newApp[2] !== undefined, await form());
      return true;
    }
    const conversion = /^\/app-manifests\/([^/]+)\/conversions$/.exec(path);
    if (conversion && method === 'POST') {
      this.convert(decodeURIComponent(conversion[1]!), answer);
      return true;
    }
    if (path === '/app' || path.startsWith('/app/') || /^\/repos\/[^/]+\/[^/]+\/installation$/.test(path)) {
      const app = this.appOf(req, answer);
      if (app) await this.serveAppEndpoint(app, method, path, url, answer, body);
      return true;
    }
    const checks = /^\/repos\/([^/]+\/[^/]+)\/(check-runs(?:\/(\d+)(\/annotations)?)?|commits\/([0-9a-f]{40})\/check-runs|check-suites\/(\d+)\/check-runs)$/.exec(path);
    if (checks) {
      const installation = this.installationOf(req);
      if (!installation) {
        answer(403, { message: 'You must authenticate via a GitHub App.', documentation_url: 'https://docs.github.com/rest/checks/runs#create-a-check-run' });
        return true;
      }
      const fullName = checks[1]!;
      if (!this.mayActOn(req, fullName) || !this.repositoryExists(fullName)) {
        answer(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest/checks/runs' });
        return true;
      }
      const app = this.apps.get(installation.appId)!;
      if (checks[5]) answer(200, this.listed(this.runsOf(fullName, checks[5]).filter((run) => !url.searchParams.get('check_name') || run.name === url.searchParams.get('check_name'))));
      else if (checks[6]) answer(200, this.listed(this.checkRuns.filter((run) => run.fullName === fullName && run.checkSuiteId === Number(checks[6]))));
      else if (checks[4]) answer(200, this.checkRuns.find((run) => run.id === Number(checks[3]) && run.fullName === fullName)?.annotations ?? []);
      else if (checks[3] && method === 'PATCH') this.updateRun(app, fullName, Number(checks[3]), await body(), answer);
      else if (!checks[3] && method === 'POST') this.createRun(app, fullName, await body(), answer);
      else answer(404, { message: 'Not Found' });
      return true;
    }
    return false;
  }

  /** The App a request's JWT is signed by, checked as GitHub checks it; otherwise answered 401 as GitHub does. */
  private appOf(req: IncomingMessage, answer: Answer): StandInApp | undefined {
    const refuse = (message: string) => {
      this.refusedJwts.push(message);
      answer(401, { message, documentation_url: 'https://docs.github.com/rest' });
      return undefined;
    };
    // The scheme is case-insensitive (RFC 9110): @octokit/auth-app sends "bearer".
    const jwt = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!jwt) return refuse('A JSON web token could not be decoded');
    const [header, payload, signature] = jwt.split('.');
    let claims: { iat?: number; exp?: number; iss?: string | number };
    try {
      const head = JSON.parse(Buffer.from(header!, 'base64url').toString('utf8')) as { alg?: string };
      if (head.alg !== 'RS256') return refuse('A JSON web token could not be decoded');
      claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8'));
    } catch {
      return refuse('A JSON web token could not be decoded');
    }
    const app = this.apps.get(Number(claims.iss));
    if (!app) return refuse(`Integration not found`);
    const signed = verify('RSA-SHA256', Buffer.from(`${header}.${payload}`), createPublicKey(app.publicKey), Buffer.from(signature ?? '', 'base64url'));
    if (!signed) return refuse('A JSON web token could not be decoded');
    const now = Math.floor(Date.now() / 1000);
    if (typeof claims.iat !== 'number' || claims.iat > now + 60) return refuse("'Issued at' claim ('iat') must be an Integer representing a time in the past");
    if (typeof claims.exp !== 'number' || claims.exp <= now) return refuse("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires");
    if (claims.exp - claims.iat > MAX_JWT_SECONDS) return refuse("'Expiration time' claim ('exp') is too far in the future");
    return app;
  }

  private async serveAppEndpoint(app: StandInApp, method: string, path: string, url: URL, answer: Answer, body: () => Promise<any>): Promise<void> {
    if (path === '/app' && method === 'GET') return answer(200, this.appView(app));
    const ofRepository = /^\/repos\/([^/]+\/[^/]+)\/installation$/.exec(path);
    if (ofRepository) {
      const installation = [...this.installations.values()].find((candidate) => candidate.appId === app.id && candidate.repositories.some((name) => name.toLowerCase() === ofRepository[1]!.toLowerCase()));
      if (!installation) return answer(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app' });
      return answer(200, this.installationView(installation));
    }
    const tokens = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(path);
    if (tokens && method === 'POST') {
      const installation = this.installations.get(Number(tokens[1]));
      if (!installation || installation.appId !== app.id) return answer(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app' });
      if (installation.suspended) return answer(403, { message: 'This installation has been suspended', documentation_url: 'https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app' });
      const token = `ghs_${randomBytes(18).toString('base64url')}`;
      const expiresAt = Date.now() + this.tokenLifetimeMs;
      this.tokens.set(token, { installationId: installation.id, expiresAt });
      return answer(201, { token, expires_at: new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'), permissions: app.permissions, repository_selection: 'selected' });
    }
    if (path === '/app/hook/config' && (method === 'PATCH' || method === 'GET')) {
      if (method === 'PATCH') {
        const changes = (await body()) as { url?: string };
        if (changes.url !== undefined) app.hookUrl = changes.url;
      }
      return answer(200, { content_type: 'json', insecure_ssl: '0', url: app.hookUrl, secret: '********' });
    }
    if (path === '/app/hook/deliveries' && method === 'GET') {
      const perPage = Math.min(100, Math.max(1, Number(url.searchParams.get('per_page') ?? 30) || 30));
      const cursor = url.searchParams.get('cursor');
      const newestFirst = [...(this.appDeliveries.get(app.id) ?? [])].reverse().filter((delivery) => cursor === null || delivery.id < Number(cursor));
      const page = newestFirst.slice(0, perPage);
      const next = newestFirst.length > perPage ? new URL(url) : undefined;
      next?.searchParams.set('cursor', String(page.at(-1)!.id));
      return answer(200, page.map(({ body: _body, ...listed }) => listed), next ? { link: `<${next.href}>; rel="next"` } : {});
    }
    const redeliver = /^\/app\/hook\/deliveries\/(\d+)\/attempts$/.exec(path);
    if (redeliver && method === 'POST') {
      const original = (this.appDeliveries.get(app.id) ?? []).find((delivery) => delivery.id === Number(redeliver[1]));
      if (!original) return answer(404, { message: 'Not Found' });
      answer(202, {});
      void this.attempt(app, original, true);
      return;
    }
    answer(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
  }

  /** GitHub's page after a manifest is posted: the user confirms, GitHub makes the App and sends the browser back with a code. */
  private async serveNewApp(res: ServerResponse, url: URL, organization: string | undefined, create: boolean, form: URLSearchParams): Promise<void> {
    const state = url.searchParams.get('state') ?? form.get('state') ?? '';
    let manifest: Record<string, any>;
    try {
      manifest = JSON.parse(form.get('manifest') ?? '');
    } catch {
      res.writeHead(422, { 'content-type': 'text/html' }).end('<p>Invalid GitHub App configuration: the manifest is not JSON</p>');
      return;
    }
    if (!manifest.url || !manifest.hook_attributes?.url) {
      res.writeHead(422, { 'content-type': 'text/html' }).end('<p>Invalid GitHub App configuration: url and hook_attributes.url are required</p>');
      return;
    }
    const owner = organization ?? 'octocat';
    if (!create) {
      const action = `${organization ? `/organizations/${organization}` : ''}/settings/apps/new/create?state=${encodeURIComponent(state)}`;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
        `<!doctype html><title>Create GitHub App</title><h1>Create GitHub App for ${escapeHtml(owner)}</h1><form method="post" action="${escapeHtml(action)}"><input type="hidden" name="manifest" value="${escapeHtml(JSON.stringify(manifest))}"><label>GitHub App name <input name="name" value="${escapeHtml(String(manifest.name ?? ''))}"></label><button id="create-github-app" type="submit">Create GitHub App</button></form>`,
      );
      return;
    }
    const code = randomBytes(20).toString('hex');
    this.manifestCodes.set(code, { manifest: { ...manifest, name: form.get('name') || manifest.name }, owner, expiresAt: Date.now() + MANIFEST_CODE_LIFETIME_MS, used: false });
    const back = new URL(manifest.redirect_url ?? manifest.url);
    back.searchParams.set('code', code);
    if (state) back.searchParams.set('state', state);
    res.writeHead(302, { location: back.href }).end();
  }

  /** POST /app-manifests/{code}/conversions: the App, with its key and webhook secret, once; 404 for a used or expired code. */
  private convert(code: string, answer: Answer): void {
    const pending = this.manifestCodes.get(code);
    if (!pending || pending.used || pending.expiresAt <= Date.now()) return answer(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest' });
    pending.used = true;
    const { manifest } = pending;
    const app = this.createApp({ name: manifest.name, owner: pending.owner, hookUrl: manifest.hook_attributes.url, permissions: manifest.default_permissions, events: manifest.default_events });
    answer(201, { ...this.appView(app), client_id: `Iv1.${randomBytes(8).toString('hex')}`, client_secret: randomBytes(20).toString('hex'), webhook_secret: app.webhookSecret, pem: app.privateKey });
  }

  private createRun(app: StandInApp, fullName: string, body: Record<string, any>, answer: Answer): void {
    const invalid = validateRun(body, true);
    if (invalid) return answer(422, invalid);
    const suiteKey = `${fullName}@${body.head_sha}@${app.id}`;
    if (!this.suites.has(suiteKey)) this.suites.set(suiteKey, this.nextId++);
    const run: StandInCheckRun = {
      id: this.nextId++,
      appId: app.id,
      fullName,
      head_sha: body.head_sha,
      name: body.name,
      status: body.conclusion ? 'completed' : (body.status ?? 'queued'),
      conclusion: body.conclusion ?? null,
      external_id: body.external_id ?? null,
      details_url: body.details_url ?? null,
      started_at: body.started_at ?? null,
      completed_at: body.completed_at ?? (body.conclusion ? new Date().toISOString() : null),
      output: { title: body.output?.title ?? null, summary: body.output?.summary ?? null, text: body.output?.text ?? null },
      annotations: body.output?.annotations ?? [],
      actions: body.actions ?? [],
      checkSuiteId: this.suites.get(suiteKey)!,
    };
    this.checkRuns.push(run);
    answer(201, this.runView(run));
  }

  private updateRun(app: StandInApp, fullName: string, id: number, body: Record<string, any>, answer: Answer): void {
    const run = this.checkRuns.find((candidate) => candidate.id === id && candidate.fullName === fullName);
    if (!run) return answer(404, { message: 'Not Found' });
    if (run.appId !== app.id) return answer(403, { message: 'Invalid app_id `' + app.id + '` - check run can only be modified by the GitHub App that created it.' });
    const invalid = validateRun({ ...body, head_sha: run.head_sha, name: body.name ?? run.name }, false);
    if (invalid) return answer(422, invalid);
    if (body.status) run.status = body.status;
    if (body.conclusion) {
      run.conclusion = body.conclusion;
      run.status = 'completed';
      run.completed_at = body.completed_at ?? new Date().toISOString();
    }
    for (const field of ['external_id', 'details_url', 'started_at', 'completed_at'] as const) if (body[field] !== undefined) run[field] = body[field];
    if (body.output) {
      run.output = { title: body.output.title ?? run.output.title, summary: body.output.summary ?? run.output.summary, text: body.output.text ?? run.output.text };
      // GitHub appends each request's annotations.
      run.annotations.push(...(body.output.annotations ?? []));
    }
    if (body.actions) run.actions = body.actions;
    answer(200, this.runView(run));
  }

  private listed(runs: StandInCheckRun[]) {
    return { total_count: runs.length, check_runs: runs.map((run) => this.runView(run)) };
  }

  private runView(run: StandInCheckRun) {
    const app = this.apps.get(run.appId)!;
    return {
      id: run.id,
      head_sha: run.head_sha,
      external_id: run.external_id,
      url: `${this.baseUrl()}/repos/${run.fullName}/check-runs/${run.id}`,
      html_url: `${this.baseUrl()}/${run.fullName}/runs/${run.id}`,
      details_url: run.details_url,
      status: run.status,
      conclusion: run.conclusion,
      started_at: run.started_at,
      completed_at: run.completed_at,
      output: { ...run.output, annotations_count: run.annotations.length, annotations_url: `${this.baseUrl()}/repos/${run.fullName}/check-runs/${run.id}/annotations` },
      name: run.name,
      check_suite: { id: run.checkSuiteId },
      app: { id: app.id, slug: app.slug, name: app.name },
      pull_requests: [],
    };
  }

  private appView(app: StandInApp) {
    return { id: app.id, slug: app.slug, node_id: `A_${app.id}`, owner: { login: app.owner }, name: app.name, html_url: app.htmlUrl, permissions: app.permissions, events: app.events, created_at: new Date().toISOString() };
  }

  private installationView(installation: StandInInstallation) {
    return { id: installation.id, app_id: installation.appId, account: { login: installation.account }, repository_selection: 'selected', suspended_at: installation.suspended ? new Date().toISOString() : null, access_tokens_url: `${this.baseUrl()}/app/installations/${installation.id}/access_tokens` };
  }
}

/** GitHub's checks of a check run's fields: what it answers 422 to, in its shape. */
function validateRun(body: Record<string, any>, creating: boolean): Record<string, unknown> | undefined {
  const errors: string[] = [];
  if (creating && (typeof body.name !== 'string' || body.name === '')) errors.push('name wasn\'t supplied.');
  if (creating && !/^[0-9a-f]{40}$/.test(String(body.head_sha))) errors.push('head_sha wasn\'t supplied.');
  if (body.status !== undefined && !STATUSES.includes(body.status)) errors.push(`Invalid status: ${String(body.status)}`);
  if (body.conclusion !== undefined && body.conclusion !== null && !CONCLUSIONS.includes(body.conclusion)) errors.push(`Invalid conclusion: ${String(body.conclusion)}`);
  if (body.status === 'completed' && !body.conclusion) errors.push('Conclusion must be specified when status is completed');
  if (body.conclusion === 'action_required' && !body.details_url) errors.push('details_url must be specified when conclusion is action_required');
  const output = body.output as Record<string, any> | undefined;
  if (output !== undefined) {
    if (typeof output.title !== 'string' || typeof output.summary !== 'string') errors.push('output must have title and summary');
    for (const field of ['summary', 'text'] as const) {
      if (typeof output[field] === 'string' && output[field].length > OUTPUT_FIELD_LIMIT) errors.push(`Only ${OUTPUT_FIELD_LIMIT} characters are allowed; ${output[field].length} were supplied.`);
    }
    const annotations = (output.annotations ?? []) as Record<string, any>[];
    if (annotations.length > ANNOTATIONS_PER_REQUEST) errors.push(`Only ${ANNOTATIONS_PER_REQUEST} annotations are allowed per request; ${annotations.length} were supplied.`);
    for (const annotation of annotations) {
      if (typeof annotation.path !== 'string' || !Number.isInteger(annotation.start_line) || !Number.isInteger(annotation.end_line) || !ANNOTATION_LEVELS.includes(annotation.annotation_level) || typeof annotation.message !== 'string') {
        errors.push('Annotations need path, start_line, end_line, annotation_level (notice, warning, failure) and message');
        break;
      }
    }
  }
  const actions = (body.actions ?? []) as Record<string, any>[];
  if (actions.length > ACTIONS_LIMIT) errors.push(`Only ${ACTIONS_LIMIT} actions are allowed`);
  for (const action of actions) {
    if (String(action.label ?? '').length > 20 || String(action.description ?? '').length > 40 || String(action.identifier ?? '').length > 20) errors.push('Action label is at most 20 characters, description 40, identifier 20');
  }
  return errors.length === 0 ? undefined : { message: 'Invalid request.', errors, documentation_url: 'https://docs.github.com/rest/checks/runs' };
}
