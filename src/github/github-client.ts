import axios, { type AxiosInstance } from 'axios';
import type { Repository } from '../domain/build-request.js';

/**
 * One HTTP client for GitHub's REST API: every status is returned, callers decide what it means.
 * No call waits on GitHub for more than 30 s without a byte (a stalled download too).
 */
export function createGitHubClient(apiUrl: string, token: string | undefined, timeoutMs = 30_000): AxiosInstance {
  return axios.create({
    baseURL: apiUrl,
    headers: {
      'User-Agent': 'ci_service',
      'X-GitHub-Api-Version': '2022-11-28',
      Accept: 'application/vnd.github+json',
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    validateStatus: () => true,
    timeout: timeoutMs,
    maxRedirects: 5,
  });
}

/** `owner/name` as a path of GitHub's API (`/repos/{owner}/{repo}/…`), each part encoded. */
export function repositoryPath(repository: Pick<Repository, 'owner' | 'name'>): string {
  return `${encodeURIComponent(repository.owner)}/${encodeURIComponent(repository.name)}`;
}
