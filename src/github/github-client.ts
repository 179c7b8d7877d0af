import axios, { type AxiosInstance } from 'axios';

/** One HTTP client for GitHub's REST API: every status is returned, callers decide what it means. */
export function createGitHubClient(apiUrl: string, token: string | undefined): AxiosInstance {
  return axios.create({
    baseURL: apiUrl,
    headers: {
      'User-Agent': 'ci_service',
      'X-GitHub-Api-Version': '2022-11-28',
      Accept: 'application/vnd.github+json',
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    validateStatus: () => true,
    maxRedirects: 5,
  });
}
