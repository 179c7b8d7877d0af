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
