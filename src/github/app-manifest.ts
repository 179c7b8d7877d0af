import type { AxiosInstance } from 'axios';
import type { GitHubApp } from './github-auth.js';
import { expectAnswer } from './github-client.js';

/**
 * Trades the code GitHub sent back after making an App from its manifest for the App itself:
 * `POST /app-manifests/{code}/conversions` (no credentials: the code is one), which answers its id, key (PEM) and
 * webhook secret once. A code works once, within an hour; GitHub answers 404 otherwise (or 422).
 */
export async function convertManifest(github: AxiosInstance, code: string): Promise<GitHubApp> {
  const response = await github
    .post<{ id?: number; slug?: string; html_url?: string; pem?: string; webhook_secret?: string | null; message?: string }>(`/app-manifests/${encodeURIComponent(code)}/conversions`, undefined, { timeout: 15_000 })
    .catch((error: unknown) => {
      throw new Error(`GitHub did not answer the App's conversion (${error instanceof Error ? error.message : String(error)}): start again`);
    });
  const refused = 'a code works once, within an hour of GitHub making the App. The App GitHub made meanwhile can be deleted from its settings';
  const data = expectAnswer(response, [201], 'the code it sent back (POST /app-manifests/{code}/conversions)', { 404: refused, 422: refused }).data;
  if (typeof data.id !== 'number' || typeof data.pem !== 'string') {
    throw new Error(`GitHub answered ${response.status} to the App's conversion, without the App's id and key`);
  }
  return {
    id: String(data.id),
    privateKey: data.pem,
    ...(data.webhook_secret ? { webhookSecret: data.webhook_secret } : {}),
    ...(data.slug ? { slug: data.slug } : {}),
    ...(data.html_url ? { htmlUrl: data.html_url } : {}),
  };
}
