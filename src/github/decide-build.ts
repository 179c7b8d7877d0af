import { z } from 'zod';
import type { BuildRequest } from '../domain/build-request.js';
import { PayloadError } from '../domain/errors.js';

export interface TriggerPolicy {
  allowedRepositories: string[];
  baseBranches: string[];
  buildRef: 'head' | 'merge';
}

export type Decision = { build: BuildRequest } | { ignored: string };

const sha = z.string().regex(/^[0-9a-f]{40}$/, 'must be a 40-character commit SHA');
/** What GitHub allows in account and repository names: nothing that could change the path of an API URL. */
const OWNER_LOGIN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;
const REPOSITORY_NAME = /^[A-Za-z0-9._-]{1,100}$/;

/** Only the fields a decision needs; GitHub sends many more. */
const pullRequestEvent = z.object({
  action: z.string(),
  number: z.number().int(),
  pull_request: z.object({
    merged: z.boolean().nullable().optional(),
    merge_commit_sha: sha.nullable().optional(),
    head: z.object({ sha }),
    base: z.object({ ref: z.string().min(1) }),
  }),
  repository: z.object({
    name: z.string().regex(REPOSITORY_NAME, 'must be a GitHub repository name (letters, digits, . _ -)').refine((name) => name !== '.' && name !== '..', 'must not be . or ..'),
    full_name: z.string().regex(/^[^/\s]+\/[^/\s]+$/, 'must be owner/name'),
    html_url: z.string().min(1),
    private: z.boolean().optional(),
    owner: z.object({ login: z.string().regex(OWNER_LOGIN, 'must be a GitHub account name (letters, digits, _ -)') }),
  }),
});

/** Pure: from one delivery (event name, id, parsed body) to a build request or the reason to ignore it. */
export function decideBuild(event: string, deliveryId: string, payload: unknown, policy: TriggerPolicy): Decision {
  if (event === 'ping') return { ignored: 'ping: the webhook reaches ci_service' };
  if (event !== 'pull_request') return { ignored: `event "${event}" does not trigger builds (only a merged pull_request does)` };

  const parsed = pullRequestEvent.safeParse(payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join('.') || 'body';
    throw new PayloadError(`pull_request payload is missing or has a bad "${where}": ${issue?.message ?? 'invalid'}`);
  }
  const { action, number, pull_request: pr, repository } = parsed.data;
  checkRepositoryIdentity(repository);

  if (action !== 'closed') return { ignored: `pull_request action "${action}" does not trigger builds (only a merge does)` };
  if (pr.merged !== true) return { ignored: `pull request #${number} was closed without being merged` };
  if (!listAllows(policy.allowedRepositories, repository.full_name)) {
    return { ignored: `repository ${repository.full_name} is not in ALLOWED_REPOSITORIES` };
  }
  if (policy.baseBranches.length > 0 && !policy.baseBranches.includes(pr.base.ref)) {
    return { ignored: `base branch "${pr.base.ref}" is not in BASE_BRANCHES` };
  }

  const commit = policy.buildRef === 'merge' ? pr.merge_commit_sha : pr.head.sha;
  if (!commit) throw new PayloadError('merged pull_request payload has no merge_commit_sha, which BUILD_REF=merge needs');

  return {
    build: {
      deliveryId,
      repository: {
        owner: repository.owner.login,
        name: repository.name,
        fullName: repository.full_name,
        htmlUrl: repository.html_url,
        private: repository.private ?? false,
      },
      sha: commit,
      prNumber: number,
      baseRef: pr.base.ref,
    },
  };
}

/**
 * The allow-list checks `full_name`, while the API URLs are built from `owner.login` and `name`, and the
 * build's page links to `html_url`: all three must name one repository, or a signed payload could have
 * ci_service fetch (with its token) or link to another.
 */
function checkRepositoryIdentity(repository: { name: string; full_name: string; html_url: string; owner: { login: string } }): void {
  const fullName = `${repository.owner.login}/${repository.name}`;
  if (repository.full_name !== fullName) {
    throw new PayloadError(`repository.full_name "${short(repository.full_name)}" is not owner.login/name ("${fullName}")`);
  }
  let url: URL | undefined;
  try {
    url = new URL(repository.html_url);
  } catch {
    url = undefined;
  }
  const path = url?.pathname.replace(/\/+$/, '').toLowerCase();
  if (!url || !['http:', 'https:'].includes(url.protocol) || url.username || url.password || url.search || url.hash || path !== `/${fullName.toLowerCase()}`) {
    throw new PayloadError(`repository.html_url "${short(repository.html_url)}" must be the http(s) URL of ${fullName}`);
  }
}

function short(text: string): string {
  return text.length > 100 ? `${text.slice(0, 99)}…` : text;
}

/** GitHub treats owner and repository names case-insensitively. */
function listAllows(list: string[], fullName: string): boolean {
  return list.length === 0 || list.some((allowed) => allowed.toLowerCase() === fullName.toLowerCase());
}
