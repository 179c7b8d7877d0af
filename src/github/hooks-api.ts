import type { AxiosInstance } from 'axios';
import { expectAnswer, repositoryPath } from './github-client.js';
import type { RepositoryHook } from './plan-webhook.js';

/** How the App's own webhook (`/app/hook`) is named where a repository's would be: in logs, metrics and errors. */
export const APP_HOOK = 'the GitHub App';

/**
 * A 2xx from GitHub's hooks API (a repository's, or the App's own `/app/hook`), or an error saying what the
 * credentials lack. `about` names what was asked for ("webhooks", "webhook deliveries").
 */
export function hooksApiAnswer<T extends { status: number; data?: unknown }>(response: T, repository: string, about: string): T {
  const hint = repository === APP_HOOK
    ? "GitHub refused the App's own token: check GITHUB_APP_ID and its key"
    : 'GITHUB_TOKEN needs admin rights on the repository ("Webhooks: read and write")';
  return expectAnswer(response, [200, 201, 202, 204], `the ${about} of ${repository}`, { 401: hint, 403: hint, 404: hint });
}

/** The repository's hooks (ours and others'), as GitHub lists them. */
export async function listHooks(github: AxiosInstance, repository: string, about: string, signal: AbortSignal): Promise<RepositoryHook[]> {
  return hooksApiAnswer(await github.get<RepositoryHook[]>(`/repos/${repositoryPath(repository)}/hooks`, { params: { per_page: 100 }, signal }), repository, about).data;
}
