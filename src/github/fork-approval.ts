import type { AxiosInstance } from 'axios';
import type { Repository } from '../domain/build-request.js';
import type { ForkApproval } from './decide-build.js';
import type { GitHubAuth } from './github-auth.js';
import { expectAnswer, repositoryPath } from './github-client.js';

/** Permissions that may approve a fork's head: GitHub reports maintain as write; triage as read. */
const MAY_APPROVE = new Set(['admin', 'write']);

/**
 * Checks a maintainer's label on a fork's pull request with GitHub itself, not with the delivery: a delivery may be
 * recovered or replayed long after it was sent (its body is signed, its id is not), and anyone with triage rights
 * may label. Approved only when the pull request is open, its head is still the commit to build, the label is still
 * on it, and whoever added it may write to the repository. Resolves to why not, or undefined; rejects when GitHub
 * does not answer (the delivery is then refused, to be redelivered).
 */
export class ForkApprovals {
  constructor(
    private readonly http: AxiosInstance,
    /** Without credentials GitHub does not say who may write. */
    private readonly auth: Pick<GitHubAuth, 'mode'>,
  ) {}

  /** `signal` bounds the whole check: it runs while GitHub waits for the delivery's answer. */
  async refusal(repository: Repository, sha: string, approval: ForkApproval, signal: AbortSignal): Promise<string | undefined> {
    if (this.auth.mode === 'none') return `not built: set up the GitHub App or GITHUB_TOKEN so ci_service can check that whoever labels a fork's pull request may write to ${repository.fullName}`;
    const base = `/repos/${repositoryPath(repository)}`;
    const pull = await this.get<{ state?: string; head?: { sha?: string }; labels?: { name?: string }[] }>(`${base}/pulls/${approval.prNumber}`, signal);
    if (pull === undefined) return `not built: GitHub has no pull request #${approval.prNumber} in ${repository.fullName}`;
    if (pull.state !== 'open') return `not built: pull request #${approval.prNumber} is ${pull.state ?? 'not open'}`;
    if (pull.head?.sha !== sha) return `not built: the label was for ${sha.slice(0, 7)}, and the pull request's head is now ${String(pull.head?.sha).slice(0, 7)}`;
    if (!(pull.labels ?? []).some((label) => label.name === approval.label)) return `not built: the label "${approval.label}" is no longer on pull request #${approval.prNumber}`;
    if (approval.login === '') return 'not built: the delivery does not say who added the label';
    const permission = await this.get<{ permission?: string }>(`${base}/collaborators/${encodeURIComponent(approval.login)}/permission`, signal);
    const level = permission?.permission ?? 'none';
    if (!MAY_APPROVE.has(level)) return `not built: ${approval.login} added "${approval.label}" with ${level} access; someone with write access must add it`;
    return undefined;
  }

  private async get<T>(path: string, signal: AbortSignal): Promise<T | undefined> {
    const response = expectAnswer(await this.http.get<T>(path, { signal }), [200, 404], path);
    return response.status === 404 ? undefined : response.data;
  }
}
