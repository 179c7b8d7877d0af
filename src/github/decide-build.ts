import { z } from 'zod';
import type { BuildRequest, Repository } from '../domain/build-request.js';
import { PayloadError } from '../domain/errors.js';
import type { ReleasePush } from '../domain/release-push.js';
import type { PullRequestCancel } from '../admission/admit-build.js';

export interface TriggerPolicy {
  allowedRepositories: string[];
  baseBranches: string[];
  buildRef: 'head' | 'merge';
  /** Pull requests' head commits are built (PULL_REQUEST_BUILDS). */
  pullRequests: boolean;
  /** Draft pull requests are built too (BUILD_DRAFTS). */
  buildDrafts: boolean;
  /** Pull requests from forks are built without a label (TRUST_FORKS). */
  trustForks: boolean;
  /** The label a maintainer adds to build a fork's pull request (FORK_LABEL). */
  forkLabel: string;
}


/** A fork's pull request that is not built until a maintainer allows it: its status says how. */
export interface HeldPullRequest {
  repository: Repository;
  sha: string;
  description: string;
}

/**
 * A maintainer's label that lets one head of a fork's pull request build. What the delivery says is checked with
 * GitHub before the build is admitted (fork-approval.ts): the label is still there, the head is still the pull
 * request's, and its author may write to the repository.
 */
export interface ForkApproval {
  prNumber: number;
  label: string;
  /** Who added the label (the delivery's sender). */
  login: string;
}

export type Decision =
  /** What the build supersedes is the admission's to cancel (admission/admit-build.ts). */
  | { kind: 'build'; build: BuildRequest; approval?: ForkApproval }
  | { kind: 'release'; push: ReleasePush }
  | { kind: 'cancel'; cancel: PullRequestCancel }
  | { kind: 'held'; held: HeldPullRequest }
  /** GitHub's Re-run on a check run (its build) or on a check suite (every build of its runs; GitHub lists them). */
  | { kind: 'rerun'; rerun: CheckRerun }
  /** The check run's Cancel button. */
  | { kind: 'cancel_build'; buildId: string; by: string }
  | { kind: 'ignored'; reason: string };

export type CheckRerun =
  | { of: 'run'; repository: Repository; buildId: string; by: string }
  | { of: 'suite'; repository: Repository; checkSuiteId: number; sha: string; by: string };

/** The pull request actions that put a new head commit up for review. */
const BUILD_ACTIONS = ['opened', 'synchronize', 'reopened', 'ready_for_review'];

const sha = z.string().regex(/^[0-9a-f]{40}$/, 'must be a 40-character commit SHA');
/** What GitHub allows in account and repository names: nothing that could change the path of an API URL. */
const OWNER_LOGIN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;
const REPOSITORY_NAME = /^[A-Za-z0-9._-]{1,100}$/;
/** Who sent an event: an account, or an App's bot (`name[bot]`). Logged and shown only. */
const SENDER_LOGIN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}(\[bot\])?$/;
/** Git refs and GitHub's names are short; a payload's are stored and shown, so they are bounded. */
const MAX_REF_CHARS = 1024;
const MAX_NAME_CHARS = 256;

const repositorySchema = z.object({
  name: z.string().regex(REPOSITORY_NAME, 'must be a GitHub repository name (letters, digits, . _ -)').refine((name) => name !== '.' && name !== '..', 'must not be . or ..'),
  full_name: z.string().regex(/^[^/\s]+\/[^/\s]+$/, 'must be owner/name'),
  html_url: z.string().min(1),
  private: z.boolean().optional(),
  owner: z.object({ login: z.string().regex(OWNER_LOGIN, 'must be a GitHub account name (letters, digits, _ -)') }),
});

/** Only the fields a decision needs; GitHub sends many more. */
const pullRequestEvent = z.object({
  action: z.string(),
  number: z.number().int(),
  label: z.object({ name: z.string().max(MAX_NAME_CHARS) }).optional(),
  sender: z.object({ login: z.string().regex(OWNER_LOGIN, 'must be a GitHub account name') }).optional(),
  pull_request: z.object({
    merged: z.boolean().nullable().optional(),
    merge_commit_sha: sha.nullable().optional(),
    draft: z.boolean().optional(),
    state: z.string().optional(),
    labels: z.array(z.object({ name: z.string().max(MAX_NAME_CHARS) })).optional(),
    updated_at: z.string().max(MAX_NAME_CHARS).optional(),
    // A deleted fork's pull request has no head repository.
    head: z.object({ sha, ref: z.string().max(MAX_REF_CHARS), repo: z.object({ full_name: z.string().max(MAX_NAME_CHARS) }).nullable().optional() }),
    base: z.object({ ref: z.string().min(1).max(MAX_REF_CHARS) }),
  }),
  repository: repositorySchema,
});

const pushEvent = z.object({
  ref: z.string().min(1).max(MAX_REF_CHARS),
  after: z.string(),
  deleted: z.boolean().optional(),
  // Release rules are read from it: GitHub sends it with every push, and when the push happened.
  repository: repositorySchema.extend({ default_branch: z.string().min(1).max(MAX_REF_CHARS), pushed_at: z.union([z.number(), z.string().max(MAX_NAME_CHARS)]).nullable().optional() }),
});

const checkRunEvent = z.object({
  action: z.string(),
  check_run: z.object({ external_id: z.string().max(MAX_NAME_CHARS).nullable().optional(), head_sha: sha }),
  requested_action: z.object({ identifier: z.string().max(MAX_NAME_CHARS) }).optional(),
  sender: z.object({ login: z.string().regex(SENDER_LOGIN, 'must be a GitHub account name') }).optional(),
  repository: repositorySchema,
});

const checkSuiteEvent = z.object({
  action: z.string(),
  check_suite: z.object({ id: z.number().int(), head_sha: sha }),
  sender: z.object({ login: z.string().regex(SENDER_LOGIN, 'must be a GitHub account name') }).optional(),
  repository: repositorySchema,
});

/** A check run's external_id is the id of the build it shows (check-runs.ts). */
const BUILD_ID = /^[A-Za-z0-9-]{1,64}$/;

/**
 * GitHub redelivers for three days; a delivery about an older event is a replay (its body is signed, its delivery
 * id is not): it could rebuild an old head, or cancel the newest. Answered, never built.
 */
const MAX_EVENT_AGE_MS = 3 * 24 * 3600 * 1000;

/**
 * Pure: from one delivery (event name, id, parsed body) to what to do, or the reason to ignore it. With `now`, an
 * event older than GitHub's three days of redelivery (the payload's own time) is not built.
 */
export function decideBuild(event: string, deliveryId: string, payload: unknown, policy: TriggerPolicy, now?: Date): Decision {
  if (event === 'ping') return ignored('ping: the webhook reaches ci_service');
  if (event === 'push') {
    const push = parse(pushEvent, payload, 'push');
    return tooOld(push.repository.pushed_at, now) ?? decidePush(deliveryId, push, policy);
  }
  // GitHub sends an App every check run and suite of its repositories (others' too: created, completed, a suite
  // requested at each push); only a Re-run or a button of ours asks something, and only those are read closely.
  if (event === 'check_run' || event === 'check_suite') {
    const action = (payload as { action?: unknown } | null)?.action;
    const asks = event === 'check_run' ? ['rerequested', 'requested_action'] : ['rerequested'];
    if (typeof action !== 'string' || !asks.includes(action)) return ignored(`${event} action "${String(action)}" asks nothing of ci_service`);
    return event === 'check_run' ? decideCheckRun(parse(checkRunEvent, payload, event), policy) : decideCheckSuite(parse(checkSuiteEvent, payload, event), policy);
  }
  if (event !== 'pull_request') return ignored(`event "${event}" does not trigger builds (pull_request, push, and a check's Re-run do)`);
  const pullRequest = parse(pullRequestEvent, payload, 'pull_request');
  return tooOld(pullRequest.pull_request.updated_at, now) ?? decidePullRequest(deliveryId, pullRequest, policy);
}

/** An event whose time (a unix time in seconds, or an ISO date) is older than GitHub redelivers is ignored. */
function tooOld(at: number | string | null | undefined, now: Date | undefined): Decision | undefined {
  if (now === undefined || at === undefined || at === null) return undefined;
  const time = typeof at === 'number' ? at * 1000 : Date.parse(at);
  if (Number.isNaN(time) || now.getTime() - time <= MAX_EVENT_AGE_MS) return undefined;
  return ignored(`the event is from ${new Date(time).toISOString()}, more than 3 days ago (older than GitHub redelivers): not built; push again, or rebuild from ci_service's page`);
}

function decidePullRequest(deliveryId: string, event: z.infer<typeof pullRequestEvent>, policy: TriggerPolicy): Decision {
  const { action, number, pull_request: pr } = event;
  const repository = toRepository(event.repository);
  if (!listAllows(policy.allowedRepositories, repository.fullName)) return ignored(`repository ${repository.fullName} is not in ALLOWED_REPOSITORIES`);
  if (policy.baseBranches.length > 0 && !policy.baseBranches.includes(pr.base.ref)) return ignored(`base branch "${pr.base.ref}" is not in BASE_BRANCHES`);

  if (action === 'closed') {
    if (pr.merged !== true) return { kind: 'cancel', cancel: { repository, prNumber: number, reason: `pull request #${number} was closed` } };
    const commit = policy.buildRef === 'merge' ? pr.merge_commit_sha : pr.head.sha;
    if (!commit) throw new PayloadError('merged pull_request payload has no merge_commit_sha, which BUILD_REF=merge needs');
    return { kind: 'build', build: { deliveryId, repository, sha: commit, trigger: { kind: 'merge', prNumber: number, baseRef: pr.base.ref } } };
  }

  // Compared, not assumed: the head may live in another repository, whose owner this host does not trust.
  const headRepository = pr.head.repo?.full_name;
  const fork = headRepository === undefined || headRepository.toLowerCase() !== repository.fullName.toLowerCase();
  // The label lets a fork's head build; on a pull request of the repository itself it changes nothing.
  const labelAllowsFork = fork && action === 'labeled' && event.label?.name === policy.forkLabel;
  if (!BUILD_ACTIONS.includes(action) && !labelAllowsFork) return ignored(`pull_request action "${action}" does not trigger builds`);
  if (!policy.pullRequests) return ignored('pull request builds are off (PULL_REQUEST_BUILDS=false)');
  if (pr.state !== undefined && pr.state !== 'open') return ignored(`pull request #${number} is ${pr.state}`);
  if (pr.draft === true && !policy.buildDrafts) return ignored(`pull request #${number} is a draft (set BUILD_DRAFTS=true to build drafts)`);

  // The label approves the head it was added to, and no later one: a fork's new head waits for the label again.
  if (fork && !policy.trustForks && !labelAllowsFork) {
    const from = headRepository ?? 'a deleted fork';
    const labelled = (pr.labels ?? []).some((label) => label.name === policy.forkLabel);
    const how = labelled ? `A new head needs "${policy.forkLabel}" again: remove and re-add it` : `A maintainer can add the label "${policy.forkLabel}" to build it`;
    return { kind: 'held', held: { repository, sha: pr.head.sha, description: `not built: the head is in ${from}, a fork. ${how}` } };
  }
  const approval = labelAllowsFork && !policy.trustForks ? { prNumber: number, label: policy.forkLabel, login: event.sender?.login ?? '' } : undefined;
  const build: BuildRequest = { deliveryId, repository, sha: pr.head.sha, trigger: { kind: 'pull_request', prNumber: number, baseRef: pr.base.ref, headRef: pr.head.ref, fork } };
  // What an older head of this pull request still builds is superseded by this one.
  return { kind: 'build', build, ...(approval ? { approval } : {}) };
}

function decidePush(deliveryId: string, event: z.infer<typeof pushEvent>, policy: TriggerPolicy): Decision {
  const repository = toRepository(event.repository);
  if (!listAllows(policy.allowedRepositories, repository.fullName)) return ignored(`repository ${repository.fullName} is not in ALLOWED_REPOSITORIES`);
  if (event.deleted === true || /^0{40}$/.test(event.after)) return ignored(`${event.ref} was deleted: nothing to build`);
  if (!/^[0-9a-f]{40}$/.test(event.after)) throw new PayloadError('push payload has a bad "after": must be a 40-character commit SHA');
  if (!/^refs\/(heads|tags)\/./.test(event.ref)) return ignored(`${event.ref} is neither a branch nor a tag`);
  const branch = event.ref.match(/^refs\/heads\/(.+)$/)?.[1];
  // A branch's rule moves its image tag: only branches reviewed code lands on (BASE_BRANCHES) may.
  if (branch !== undefined && policy.baseBranches.length > 0 && !policy.baseBranches.includes(branch)) {
    return ignored(`branch ${branch} is not in BASE_BRANCHES: pushes to it publish nothing`);
  }
  return { kind: 'release', push: { deliveryId, repository, sha: event.after, ref: event.ref, rulesRef: `refs/heads/${event.repository.default_branch}` } };
}

/** Re-run and Cancel, from the App's own check runs (GitHub sends those actions to the App that made the run). */
function decideCheckRun(event: z.infer<typeof checkRunEvent>, policy: TriggerPolicy): Decision {
  const repository = toRepository(event.repository);
  if (!listAllows(policy.allowedRepositories, repository.fullName)) return ignored(`repository ${repository.fullName} is not in ALLOWED_REPOSITORIES`);
  const buildId = event.check_run.external_id ?? '';
  const by = event.sender?.login ?? 'someone on GitHub';
  if (!BUILD_ID.test(buildId)) return ignored('the check run names no build of ci_service (its external_id)');
  if (event.action === 'rerequested') return { kind: 'rerun', rerun: { of: 'run', repository, buildId, by } };
  const identifier = event.requested_action?.identifier;
  if (identifier !== 'cancel') return ignored(`the check run's action "${identifier ?? ''}" is not one of ci_service's (cancel)`);
  return { kind: 'cancel_build', buildId, by };
}

function decideCheckSuite(event: z.infer<typeof checkSuiteEvent>, policy: TriggerPolicy): Decision {
  const repository = toRepository(event.repository);
  if (!listAllows(policy.allowedRepositories, repository.fullName)) return ignored(`repository ${repository.fullName} is not in ALLOWED_REPOSITORIES`);
  return { kind: 'rerun', rerun: { of: 'suite', repository, checkSuiteId: event.check_suite.id, sha: event.check_suite.head_sha, by: event.sender?.login ?? 'someone on GitHub' } };
}

function ignored(reason: string): Decision {
  return { kind: 'ignored', reason };
}

function parse<T>(schema: z.ZodType<T>, payload: unknown, event: string): T {
  const parsed = schema.safeParse(payload);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue?.path.join('.') || 'body';
  throw new PayloadError(`${event} payload is missing or has a bad "${where}": ${issue?.message ?? 'invalid'}`);
}

function toRepository(repository: z.infer<typeof repositorySchema>): Repository {
  checkRepositoryIdentity(repository);
  return {
    owner: repository.owner.login,
    name: repository.name,
    fullName: repository.full_name,
    htmlUrl: repository.html_url,
    private: repository.private ?? false,
  };
}

/**
 * The allow-list checks `full_name`, while the API URLs are built from `owner.login` and `name`, and the
 * build's page links to `html_url`: all three must name one repository, or a signed payload could have
 * ci_service fetch (with its token) or link to another.
 */
function checkRepositoryIdentity(repository: z.infer<typeof repositorySchema>): void {
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
