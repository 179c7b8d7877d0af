import { repositoryPath } from './github-client.js';
import type { AxiosInstance } from 'axios';
import type { RepositoryHook } from './plan-webhook.js';

/**
 * A 2xx from GitHub's repository hooks API, or an error saying what the token lacks. `about` names what was asked
 * for ("webhooks", "webhook deliveries").
 */
export function hooksApiAnswer<T extends { status: number }>(response: T, repository: string, about: string): T {
  if (response.status >= 200 && response.status < 300) return response;
  const app = repository === 'the GitHub App';
  const hint = response.status === 404 || response.status === 403 || (app && response.status === 401)
    ? app ? ": GitHub refused the App's own token: check GITHUB_APP_ID and its key" : ': GITHUB_TOKEN needs admin rights on the repository ("Webhooks: read and write")'
    : '';
  throw new Error(`GitHub answered ${response.status} for the ${about} of ${repository}${hint}`);
}

/** The repository's hooks (ours and others'), as GitHub lists them. */
export async function listHooks(github: AxiosInstance, repository: string, about: string, signal: AbortSignal): Promise<RepositoryHook[]> {
  return hooksApiAnswer(await github.get<RepositoryHook[]>(`/repos/${repositoryPath(repository)}/hooks`, { params: { per_page: 100 }, signal }), repository, about).data;
}
