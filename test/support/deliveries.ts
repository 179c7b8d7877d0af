import { createHmac, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Repository } from '../../src/domain/build-request.js';

interface ExampleGroup {
  name: string;
  examples: Record<string, unknown>[];
}

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as ExampleGroup[];

/**
 * Real payloads recorded from GitHub, deep-copied so a test may change them, with their times as GitHub would send
 * them for an event happening now (the recordings are from 2019; ci_service does not build events over 3 days old).
 */
export function examplePayloads(event: string): Record<string, any>[] {
  const group = examples.find((candidate) => candidate.name === event);
  if (!group) throw new Error(`@octokit/webhooks-examples has no "${event}" payloads`);
  return group.examples.map((example) => {
    const payload = structuredClone(example) as Record<string, any>;
    if (payload.pull_request) payload.pull_request.updated_at = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    if (event === 'push' && payload.repository) payload.repository.pushed_at = Math.floor(Date.now() / 1000);
    return payload;
  });
}

export function examplePullRequest(action: string): Record<string, any> {
  const payload = examplePayloads('pull_request').find((example) => example.action === action);
  if (!payload) throw new Error(`no pull_request example with action "${action}"`);
  return payload;
}

/** The examples have no merged pull request: a `closed` one with `merged: true`, pointed at our repository. */
export function mergedPullRequest(repository: Repository, sha: string, baseRef = 'main'): Record<string, any> {
  const payload = examplePullRequest('closed');
  payload.pull_request.merged = true;
  payload.pull_request.head.sha = sha;
  payload.pull_request.merge_commit_sha = sha;
  payload.pull_request.base.ref = baseRef;
  Object.assign(payload.repository, {
    name: repository.name,
    full_name: repository.fullName,
    private: repository.private,
    html_url: repository.htmlUrl,
  });
  payload.repository.owner.login = repository.owner;
  return payload;
}

/** Signs like GitHub does, independently of the code under test. */
export function signature256(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export interface DeliveryOptions {
  event?: string;
  deliveryId?: string;
  secret?: string;
  path?: string;
  headers?: Record<string, string>;
}

/** POSTs a signed delivery as GitHub would. */
export async function sendDelivery(baseUrl: string, payload: unknown, options: DeliveryOptions = {}): Promise<Response> {
  const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/test',
    'x-github-event': options.event ?? 'pull_request',
    'x-github-delivery': options.deliveryId ?? randomUUID(),
  };
  if (options.secret !== undefined) headers['x-hub-signature-256'] = signature256(options.secret, body);
  return fetch(`${baseUrl}${options.path ?? '/webhook'}`, { method: 'POST', headers: { ...headers, ...options.headers }, body });
}

export interface PullRequestOptions {
  action?: string;
  number?: number;
  /** The head's repository: the base repository itself unless a fork's owner/name is given. */
  headRepository?: string;
  labels?: string[];
  /** The label a `labeled` event adds. */
  label?: string;
  draft?: boolean;
  headRef?: string;
  /** Who sent the event (for `labeled`, who added the label). */
  sender?: string;
}

/** An open pull request's event (opened by default) of `repository`, its head at `sha`. */
export function pullRequestEvent(repository: Repository, sha: string, options: PullRequestOptions = {}): Record<string, any> {
  const action = options.action ?? 'opened';
  const payload = examplePullRequest(action === 'synchronize' || action === 'labeled' ? action : 'opened');
  payload.action = action;
  payload.number = options.number ?? 1;
  Object.assign(payload.pull_request, { number: payload.number, state: 'open', draft: options.draft ?? false, merged: false, labels: (options.labels ?? []).map((name) => ({ name })) });
  payload.pull_request.head.sha = sha;
  payload.pull_request.head.ref = options.headRef ?? 'topic';
  payload.pull_request.head.repo = { ...payload.pull_request.head.repo, full_name: options.headRepository ?? repository.fullName };
  payload.pull_request.base.ref = 'main';
  if (options.label !== undefined) payload.label = { name: options.label };
  if (options.sender !== undefined) payload.sender = { ...payload.sender, login: options.sender };
  Object.assign(payload.repository, { name: repository.name, full_name: repository.fullName, private: repository.private, html_url: repository.htmlUrl });
  payload.repository.owner.login = repository.owner;
  return payload;
}

/** A pull request closed without a merge. */
export function closedPullRequest(repository: Repository, sha: string, number: number): Record<string, any> {
  const payload = mergedPullRequest(repository, sha);
  payload.number = number;
  payload.pull_request.merged = false;
  return payload;
}

/** A push of `ref` (refs/tags/… or refs/heads/…) to `sha`, or its deletion. */
export function pushEvent(repository: Repository, sha: string, ref: string, deleted = false): Record<string, any> {
  const payload = examplePayloads('push').find((example) => !example.deleted)!;
  Object.assign(payload, { ref, after: deleted ? '0'.repeat(40) : sha, deleted, created: !deleted });
  Object.assign(payload.repository, { name: repository.name, full_name: repository.fullName, private: repository.private, html_url: repository.htmlUrl, default_branch: 'main' });
  payload.repository.owner.login = repository.owner;
  payload.repository.owner.name = repository.owner;
  return payload;
}

/** Points a recorded payload's repository at ours. */
function ofRepository(payload: Record<string, any>, repository: Repository): Record<string, any> {
  Object.assign(payload.repository, { name: repository.name, full_name: repository.fullName, private: repository.private, html_url: repository.htmlUrl });
  payload.repository.owner.login = repository.owner;
  return payload;
}

/**
 * A check run's event as GitHub sends it to the App that made the run: `rerequested` (its Re-run) or
 * `requested_action` (one of its buttons, `identifier`).
 */
export function checkRunEvent(repository: Repository, run: { id: number; external_id: string | null; head_sha: string }, action: 'rerequested' | 'requested_action', identifier?: string): Record<string, any> {
  const payload = examplePayloads('check_run').find((example) => example.action === action)!;
  Object.assign(payload.check_run, { id: run.id, external_id: run.external_id, head_sha: run.head_sha });
  if (identifier !== undefined) payload.requested_action = { identifier };
  return ofRepository(payload, repository);
}

/** A check suite's Re-run (`rerequested`), as GitHub sends it to the App whose suite it is. */
export function checkSuiteEvent(repository: Repository, suite: { id: number; head_sha: string }): Record<string, any> {
  const payload = examplePayloads('check_suite').find((example) => example.action === 'rerequested')!;
  Object.assign(payload.check_suite, { id: suite.id, head_sha: suite.head_sha });
  return ofRepository(payload, repository);
}
