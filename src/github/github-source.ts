import axios, { type AxiosInstance, type AxiosResponse } from 'axios';
import { repositoryPath } from './github-client.js';
import type { Readable } from 'node:stream';
import type { GitTree, GitTreeEntry, SourceFetcher } from '../source/source-fetcher.js';
import type { Repository } from '../domain/build-request.js';
import { describeError, SourceError } from '../domain/errors.js';
import { GitHubAppAccessError, type GitHubAuth } from './github-auth.js';

/** GitHub's REST API (or GitHub Enterprise, or a stand-in) as a SourceFetcher. */
export class GitHubSource implements SourceFetcher {
  constructor(
    /** The one GitHub client (github-client.ts). */
    private readonly http: AxiosInstance,
    private readonly apiUrl: string,
    /** How that client acts on GitHub: without credentials, a private repository's 404 means something else. */
    private readonly auth: Pick<GitHubAuth, 'mode'>,
  ) {}

  async readFile(repository: Repository, ref: string, filePath: string, maxBytes: number, signal: AbortSignal): Promise<string | undefined> {
    const url = `/repos/${repositoryPath(repository)}/contents/${filePath.split('/').map(encodeURIComponent).join('/')}`;
    const what = `${filePath} at ${/^[0-9a-f]{40}$/.test(ref) ? ref.slice(0, 7) : ref}`;
    const response = await this.request(repository, what, () =>
      this.http.get<Readable>(url, { params: { ref }, headers: { Accept: 'application/vnd.github.raw' }, responseType: 'stream', signal }),
    );
    if (response.status === 404) {
      response.data.resume();
      this.throwIfPrivateWithoutToken(repository);
      return undefined;
    }
    try {
      return await readAtMost(response.data, maxBytes + 1);
    } catch (error) {
      if (error instanceof Error && (error.name === 'AbortError' || error.name === 'CanceledError')) throw error;
      throw new SourceError(`the download of ${what} from ${repository.fullName} broke off (${describeError(error)})`, true);
    }
  }

  async tarball(repository: Repository, sha: string, signal: AbortSignal): Promise<Readable> {
    const response = await this.request(repository, `the tarball at ${sha.slice(0, 7)}`, () =>
      this.http.get<Readable>(`/repos/${repositoryPath(repository)}/tarball/${encodeURIComponent(sha)}`, {
        responseType: 'stream',
        signal,
      }),
    );
    if (response.status === 404) {
      response.data.resume();
      this.throwIfPrivateWithoutToken(repository);
      throw new SourceError(`GitHub has no commit ${sha} in ${repository.fullName} (404): was the branch force-pushed or the repository deleted?`);
    }
    return response.data;
  }

  async tree(repository: Repository, sha: string, signal: AbortSignal): Promise<GitTree> {
    const response = await this.request(repository, `the file list at ${sha.slice(0, 7)}`, () =>
      this.http.get<{ tree?: GitTreeEntry[]; truncated?: boolean }>(`/repos/${repositoryPath(repository)}/git/trees/${encodeURIComponent(sha)}`, {
        params: { recursive: 1 },
        signal,
      }),
    );
    if (response.status === 404 || !Array.isArray(response.data.tree)) {
      this.throwIfPrivateWithoutToken(repository);
      throw new SourceError(`GitHub has no commit ${sha} in ${repository.fullName} (404): was the branch force-pushed or the repository deleted?`);
    }
    return { entries: response.data.tree, truncated: response.data.truncated === true };
  }

  async blob(repository: Repository, blobId: string, signal: AbortSignal): Promise<Readable> {
    const response = await this.request(repository, `file ${blobId.slice(0, 7)}`, () =>
      this.http.get<Readable>(`/repos/${repositoryPath(repository)}/git/blobs/${encodeURIComponent(blobId)}`, {
        headers: { Accept: 'application/vnd.github.raw+json' },
        responseType: 'stream',
        signal,
      }),
    );
    if (response.status === 404) {
      response.data.resume();
      throw new SourceError(`GitHub has no file ${blobId} in ${repository.fullName} (404)`, true);
    }
    return response.data;
  }

  /** Sends a request and turns everything but 200 and 404 into a SourceError saying what to do. */
  private async request<T>(repository: Repository, what: string, send: () => Promise<AxiosResponse<T>>): Promise<AxiosResponse<T>> {
    let response: AxiosResponse<T>;
    try {
      response = await send();
    } catch (error) {
      if (axios.isCancel(error) || (error instanceof Error && error.name === 'AbortError')) throw error;
      if (error instanceof GitHubAppAccessError) throw new SourceError(`${error.message} (fetching ${what} of ${repository.fullName})`);
      throw new SourceError(`GitHub API at ${this.apiUrl} not reachable while fetching ${what} (${describeError(error)})`, true);
    }
    if (response.status === 200 || response.status === 404) return response;
    if (typeof (response.data as { resume?: unknown })?.resume === 'function') (response.data as Readable).resume();
    throw this.statusError(response, repository, what);
  }

  private statusError(response: AxiosResponse, repository: Repository, what: string): SourceError {
    const status = response.status;
    const where = `fetching ${what} of ${repository.fullName}`;
    if (status === 401) {
      return new SourceError(this.auth.mode === 'app' ? `GitHub rejected the App's installation token (401) ${where}, a new one too: check the App's installation on ${repository.fullName}` : `GitHub rejected GITHUB_TOKEN (401) ${where}: it is wrong or expired; set a valid token`);
    }
    if (status === 429 || (status === 403 && response.headers['x-ratelimit-remaining'] === '0')) {
      return new SourceError(`GitHub rate limit reached (${status}) ${where}: ${this.auth.mode === 'none' ? 'set up the GitHub App or GITHUB_TOKEN for a higher limit, or wait' : 'wait'}`, true, rateLimitWaitMs(response.headers));
    }
    if (status === 403) {
      return new SourceError(this.auth.mode === 'app' ? `GitHub refused access (403) ${where}: give the GitHub App "Contents: read" and accept the new permission on its installation` : `GitHub refused access (403) ${where}: give GITHUB_TOKEN read access to ${repository.fullName}`);
    }
    if (status >= 500) return new SourceError(`GitHub answered ${status} ${where}; it will be retried`, true);
    return new SourceError(`GitHub answered ${status} ${where}`);
  }

  private throwIfPrivateWithoutToken(repository: Repository): void {
    if (repository.private && this.auth.mode === 'none') {
      throw new SourceError(
        `${repository.fullName} is private and ci_service has no credentials for GitHub: set up the GitHub App (/setup), or set GITHUB_TOKEN to a token that can read its contents`,
      );
    }
  }
}

/** The stream's first `limit` bytes as UTF-8 text; the rest is not read (the stream is closed). */
async function readAtMost(stream: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
    bytes += (chunk as Buffer).length;
    if (bytes >= limit) break; // leaving the loop destroys the stream
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}

/**
 * How long GitHub asks to wait: a secondary limit's `retry-after` (seconds), or until a spent quota's
 * `x-ratelimit-reset` (Unix seconds), as GitHub's documentation says to; undefined when it says neither.
 */
function rateLimitWaitMs(headers: AxiosResponse['headers'], now = Date.now()): number | undefined {
  const retryAfterS = Number(headers['retry-after']);
  if (headers['retry-after'] !== undefined && Number.isFinite(retryAfterS) && retryAfterS >= 0) return retryAfterS * 1000;
  const resetS = Number(headers['x-ratelimit-reset']);
  if (headers['x-ratelimit-reset'] !== undefined && Number.isFinite(resetS)) return Math.max(0, resetS * 1000 - now);
  return undefined;
}
