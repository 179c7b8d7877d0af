import axios, { type AxiosInstance, type InternalAxiosRequestConfig } from 'axios';
import type { Repository } from '../domain/build-request.js';
import type { GitHubAuth } from './github-auth.js';

/**
 * One HTTP client for GitHub's REST API: every status is returned, callers decide what it means. Each request
 * carries what `auth` says it needs (a token, the App's JWT, or its installation's token on the repository);
 * a 401 to an installation token is tried once more with a new one (GitHub revokes them). No call waits on
 * GitHub for more than 30 s without a byte (a stalled download too).
 */
export function createGitHubClient(apiUrl: string, auth: GitHubAuth, timeoutMs = 30_000): AxiosInstance {
  const client = axios.create({
    baseURL: apiUrl,
    headers: {
      'User-Agent': 'ci_service',
      'X-GitHub-Api-Version': '2022-11-28',
      Accept: 'application/vnd.github+json',
    },
    validateStatus: () => true,
    timeout: timeoutMs,
    maxRedirects: 5,
  });
  const apiPath = new URL(apiUrl).pathname.replace(/\/+$/, '');
  const pathOf = (config: InternalAxiosRequestConfig) => {
    const { pathname } = new URL(config.url ?? '/', `${apiUrl}/`);
    return pathname.startsWith(apiPath) ? pathname.slice(apiPath.length) || '/' : pathname;
  };
  client.interceptors.request.use(async (config) => {
    const authorization = await auth.authorization(pathOf(config), (config as RetriedConfig).refreshToken === true);
    if (authorization) config.headers.set('Authorization', authorization);
    return config;
  });
  client.interceptors.response.use(async (response) => {
    const config = response.config as RetriedConfig;
    if (response.status !== 401 || auth.mode !== 'app' || config.refreshToken) return response;
    if (typeof (response.data as { resume?: unknown })?.resume === 'function') (response.data as { resume: () => void }).resume();
    return client.request({ ...config, refreshToken: true } as RetriedConfig);
  });
  return client;
}

type RetriedConfig = InternalAxiosRequestConfig & { refreshToken?: boolean };

/** `owner/name` as a path of GitHub's API (`/repos/{owner}/{repo}/…`), each part encoded: the one way URLs name a repository. */
export function repositoryPath(repository: Pick<Repository, 'owner' | 'name'> | string): string {
  const [owner, name] = typeof repository === 'string' ? repository.split('/') : [repository.owner, repository.name];
  return `${encodeURIComponent(owner ?? '')}/${encodeURIComponent(name ?? '')}`;
}

/** GitHub answered a call with a status it does not expect: the status, GitHub's own message, and what to do. */
export class GitHubAnswerError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The response, when GitHub answered one of the `expected` statuses; otherwise a GitHubAnswerError saying what was
 * asked (`what`), GitHub's message and, where `hints` has one for the status, what to change. The one way a call
 * that must succeed reads GitHub's answer (the build's downloads have SourceError, the reports only log).
 */
export function expectAnswer<T extends { status: number; data?: unknown }>(response: T, expected: number[], what: string, hints: Partial<Record<number, string>> = {}): T {
  if (expected.includes(response.status)) return response;
  throw new GitHubAnswerError(response.status, `GitHub answered ${response.status} to ${what}${answerDetail(response)}${hints[response.status] ? `: ${hints[response.status]}` : ''}`);
}

/** GitHub's own words in an answer (its `message`), to log or to show; empty when it gave none. */
export function answerDetail(response: { data?: unknown; statusText?: string }): string {
  const message = (response.data as { message?: unknown } | undefined)?.message;
  if (typeof message === 'string' && message !== '') return ` (${message.slice(0, 300)})`;
  return response.statusText ? ` (${response.statusText})` : '';
}
