import type { Request, RequestHandler, Response } from 'express';
import { describeError, PayloadError } from '../domain/errors.js';
import { admitBuild, type Admission, type AdmissionPorts, type PullRequestCancel } from '../admission/admit-build.js';
import { decideBuild, type CheckRerun, type Decision, type ForkApproval, type HeldPullRequest, type TriggerPolicy } from '../github/decide-build.js';
import { rebuild, type Rebuild } from '../admission/rebuild.js';
import type { BuildStore } from '../queue/build-store.js';
import type { BuildRequest, Repository } from '../domain/build-request.js';
import type { ReleasePush } from '../domain/release-push.js';
import type { DeliveryVerifier } from '../github/verify-delivery.js';
import type { Logger } from 'pino';
import type { BuildRecord } from '../domain/build-record.js';
import type { AddOutcome } from '../queue/build-store.js';
import { buildView } from './build-view.js';

export interface WebhookDependencies {
  verifyDelivery: DeliveryVerifier;
  policy: TriggerPolicy;
  /** Stores, queues and supersedes, as a rebuild does too; its `cancelPullRequest` also answers a closed pull request. */
  admission: AdmissionPorts;
  /** Finds the build a check's Re-run names. */
  store: Pick<BuildStore, 'get' | 'add'>;
  /** Reads the pushed commit's release rules: the build they ask for, or why none. Throws when GitHub does not answer. */
  releaseRequest: (push: ReleasePush) => Promise<{ build: BuildRequest } | { ignored: string }>;
  /** Tells the pull request why it is not built (its commit status); never fails the delivery. */
  hold: (held: HeldPullRequest) => void;
  /** Why a label does not approve a fork's head, asked of GitHub; undefined: it does. Throws when GitHub does not answer. */
  forkApprovalRefusal: (repository: Repository, sha: string, approval: ForkApproval) => Promise<string | undefined>;
  /** GitHub's Re-run and a check run's Cancel (GitHub App mode). */
  checks: {
    /** The builds a check suite's runs show, as GitHub lists them (their external_ids). Throws when GitHub does not answer. */
    buildsOfSuite: (repository: Repository, checkSuiteId: number) => Promise<string[]>;
    cancel: (id: string, reason: string) => Promise<BuildRecord | undefined>;
  };
  /** A delivery through a GitHub App names the installation it came from: its repository's requests use it. */
  rememberInstallation?: (fullName: string, installationId: number) => void;
  /** False once shutdown began: deliveries get 503, so GitHub shows them as failed and they can be redelivered. */
  isAccepting: () => boolean;
  /** Counts each delivery's outcome (metrics). */
  onOutcome?: (outcome: string) => void;
  logger: Logger;
  now: () => Date;
}

const STATUS: Record<AddOutcome['kind'], number> = { created: 202, coalesced: 202, redelivery: 200, queue_full: 503 };

/** Every answer is logged with its outcome, and counted. */
type RecordOutcome = (outcome: string, level: 'info' | 'warn', fields: Record<string, unknown>, message: string) => void;

/**
 * Verify the raw bytes, then parse, then store and answer: nothing slow happens here, but for a push, whose
 * release rules are read from its commit while GitHub waits.
 */
export function webhookRoute(deps: WebhookDependencies): RequestHandler {
  return async (req, res) => {
    const deliveryId = req.get('x-github-delivery') ?? '';
    const event = req.get('x-github-event') ?? '';
    // Headers anyone may send are logged cut short.
    const record: RecordOutcome = (outcome, level, fields, message) => {
      deps.onOutcome?.(outcome);
      deps.logger[level]({ deliveryId: clip(deliveryId), event: clip(event), outcome, ...fields }, message);
    };
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);

    if (!deps.isAccepting()) {
      record('shutting_down', 'warn', {}, 'delivery refused');
      answer(res, 503, { error: 'ci_service is shutting down: redeliver this delivery from GitHub once it is back' }, { 'Retry-After': '30' });
      return;
    }
    const verdict = await deps.verifyDelivery(body, req.get('x-hub-signature-256'));
    if (!verdict.ok) {
      record('unauthorized', 'warn', { reason: verdict.reason }, 'delivery refused');
      answer(res, 401, { error: verdict.reason });
      return;
    }
    let decision: Decision;
    try {
      if (!event) throw new PayloadError('missing X-GitHub-Event header');
      if (!deliveryId) throw new PayloadError('missing X-GitHub-Delivery header');
      if (deliveryId.length > MAX_HEADER_CHARS || event.length > MAX_HEADER_CHARS) throw new PayloadError(`X-GitHub-Delivery and X-GitHub-Event are at most ${MAX_HEADER_CHARS} characters`);
      const payload = parseBody(req, verdict.text);
      rememberInstallation(deps, payload);
      decision = decideBuild(event, deliveryId, payload, deps.policy, deps.now());
    } catch (error) {
      if (!(error instanceof PayloadError)) throw error;
      record('bad_request', 'warn', { reason: error.message }, 'delivery refused');
      answer(res, 400, { error: error.message });
      return;
    }
    if (decision.kind === 'ignored') {
      record('ignored', 'info', { reason: decision.reason }, 'delivery ignored');
      answer(res, 200, { ignored: decision.reason });
    } else if (decision.kind === 'held') {
      hold(deps, decision.held, res, record);
    } else if (decision.kind === 'cancel') {
      await cancelPullRequest(deps, decision.cancel, res, record);
    } else if (decision.kind === 'rerun') {
      await rerun(deps, deliveryId, decision.rerun, res, record);
    } else if (decision.kind === 'cancel_build') {
      await cancelBuild(deps, decision.buildId, decision.by, res, record);
    } else if (decision.kind === 'release') {
      const request = await releaseRequest(deps, decision.push, res, record);
      if (request) await admit(deps, request, res, record);
    } else {
      if (decision.approval && !(await approved(deps, decision.build, decision.approval, res, record))) return;
      await admit(deps, decision.build, res, record);
    }
  };
}

/** A fork's head approved by a label is admitted only once GitHub confirms the approval; otherwise it is held, or refused. */
async function approved(deps: WebhookDependencies, build: BuildRequest, approval: ForkApproval, res: Response, record: RecordOutcome): Promise<boolean> {
  let refusal: string | undefined;
  try {
    refusal = await deps.forkApprovalRefusal(build.repository, build.sha, approval);
  } catch (error) {
    record('source_unavailable', 'warn', { error: describeError(error) }, 'delivery refused');
    answer(res, 503, { error: `could not check the label "${approval.label}" with GitHub (${describeError(error)}): redeliver later` }, { 'Retry-After': '60' });
    return false;
  }
  if (refusal === undefined) return true;
  hold(deps, { repository: build.repository, sha: build.sha, description: refusal }, res, record);
  return false;
}

/** A fork's pull request not built: its status says why, and the delivery is answered 200 with the same words. */
function hold(deps: WebhookDependencies, held: HeldPullRequest, res: Response, record: RecordOutcome): void {
  deps.hold(held);
  record('held', 'info', { reason: held.description }, 'fork pull request held');
  answer(res, 200, { held: held.description });
}

/** A pull request closed without a merge: its queued and running builds are cancelled. */
async function cancelPullRequest(deps: WebhookDependencies, cancel: PullRequestCancel, res: Response, record: RecordOutcome): Promise<void> {
  let cancelled: BuildRecord[];
  try {
    cancelled = await deps.admission.cancelPullRequest(cancel);
  } catch (error) {
    record('store_unavailable', 'warn', { error: describeError(error) }, 'delivery refused');
    answer(res, 503, { error: 'the build store is not answering, so the pull request\'s builds were not cancelled: redeliver it once ci_service is healthy' }, { 'Retry-After': '30' });
    return;
  }
  record('cancelled', 'info', { reason: cancel.reason, cancelled: cancelled.length }, 'pull request builds cancelled');
  answer(res, 200, { cancelled: cancelled.map((build) => build.id), reason: cancel.reason });
}

/** The installation a delivery came through (`installation.id`), remembered for its repository. */
function rememberInstallation(deps: WebhookDependencies, payload: unknown): void {
  const { installation, repository } = (payload ?? {}) as { installation?: { id?: unknown }; repository?: { full_name?: unknown } };
  if (typeof installation?.id === 'number' && typeof repository?.full_name === 'string') deps.rememberInstallation?.(repository.full_name, installation.id);
}

/** GitHub's Re-run: each finished build of the check run (or of the suite's runs) built again, as a rebuild is. */
async function rerun(deps: WebhookDependencies, deliveryId: string, asked: CheckRerun, res: Response, record: RecordOutcome): Promise<void> {
  let ids: string[];
  let outcomes: Rebuild[];
  try {
    ids = asked.of === 'run' ? [asked.buildId] : await deps.checks.buildsOfSuite(asked.repository, asked.checkSuiteId);
    outcomes = [];
    // Each rebuild carries this delivery's id (one per build of a suite): GitHub's redelivery of it joins them.
    for (const id of ids) {
      outcomes.push(await rebuild({ ...deps.admission, store: deps.store }, id, { repository: asked.repository.fullName, deliveryId: ids.length === 1 ? deliveryId : `${deliveryId}:${id}` }));
    }
  } catch (error) {
    record('store_unavailable', 'warn', { error: describeError(error) }, 'delivery refused');
    answer(res, 503, { error: `could not re-run the builds (${describeError(error)}): redeliver later` }, { 'Retry-After': '30' });
    return;
  }
  const admitted = outcomes.flatMap((outcome) => (outcome.kind === 'admitted' && outcome.admission.kind !== 'queue_full' ? [outcome.admission.build] : []));
  const unfinished = outcomes.flatMap((outcome) => (outcome.kind === 'unfinished' ? [outcome.build.id] : []));
  const full = outcomes.find((outcome) => outcome.kind === 'admitted' && outcome.admission.kind === 'queue_full');
  if (full && admitted.length === 0) {
    record('queue_full', 'warn', {}, 'delivery refused');
    answer(res, 503, { error: `build queue is full (MAX_QUEUED_BUILDS=${deps.admission.maxQueuedBuilds}): redeliver later` }, { 'Retry-After': '60' });
    return;
  }
  if (admitted.length === 0) {
    const reason = unfinished.length > 0 ? `build ${unfinished.join(', ')} has not finished: re-run it once it has` : 'no build of ci_service to re-run';
    record('ignored', 'info', { reason, by: asked.by }, 'delivery ignored');
    answer(res, 200, { ignored: reason });
    return;
  }
  const redelivery = outcomes.every((outcome) => outcome.kind === 'admitted' && outcome.admission.kind === 'redelivery');
  record(redelivery ? 'redelivery' : 'queued', 'info', { buildIds: admitted.map((build) => build.id), by: asked.by }, 'check re-run from GitHub');
  answer(res, redelivery ? 200 : 202, { builds: admitted.map(buildView), ...(redelivery ? { redelivery: true } : {}) });
}

/** A check run's Cancel button: the build is cancelled, wherever it runs. */
async function cancelBuild(deps: WebhookDependencies, buildId: string, by: string, res: Response, record: RecordOutcome): Promise<void> {
  let cancelled: BuildRecord | undefined;
  try {
    cancelled = await deps.checks.cancel(buildId, `cancelled from GitHub by ${by}`);
  } catch (error) {
    record('store_unavailable', 'warn', { error: describeError(error) }, 'delivery refused');
    answer(res, 503, { error: 'the build store is not answering, so the build was not cancelled: redeliver it once ci_service is healthy' }, { 'Retry-After': '30' });
    return;
  }
  if (!cancelled) {
    record('ignored', 'info', { reason: 'finished already', buildId }, 'delivery ignored');
    answer(res, 200, { ignored: `build ${buildId} is not queued or running` });
    return;
  }
  record('cancelled', 'info', { buildId, by }, 'build cancelled from GitHub');
  answer(res, 200, { cancelled: [buildId] });
}

/** A pushed ref's build, when its commit's release rules ask for one; otherwise it is answered here. */
async function releaseRequest(deps: WebhookDependencies, push: ReleasePush, res: Response, record: RecordOutcome): Promise<BuildRequest | undefined> {
  let release: { build: BuildRequest } | { ignored: string };
  try {
    release = await deps.releaseRequest(push);
  } catch (error) {
    record('source_unavailable', 'warn', { error: describeError(error) }, 'delivery refused');
    answer(res, 503, { error: `could not read the release rules of ${push.ref} from GitHub (${describeError(error)}): redeliver later` }, { 'Retry-After': '60' });
    return undefined;
  }
  if ('build' in release) return release.build;
  record('ignored', 'info', { reason: release.ignored }, 'delivery ignored');
  answer(res, 200, { ignored: release.ignored });
  return undefined;
}

/** Admits the build (admission/admit-build.ts) and answers: 202 new or joined, 200 a redelivery, 503 when it cannot be stored. */
async function admit(deps: WebhookDependencies, request: BuildRequest, res: Response, record: RecordOutcome): Promise<void> {
  let admission: Admission;
  try {
    admission = await admitBuild(deps.admission, request);
  } catch (error) {
    // Nothing was stored (the store commits before it answers): GitHub must see a failure, to redeliver.
    record('store_unavailable', 'warn', { error: describeError(error) }, 'delivery refused');
    answer(res, 503, { error: 'the build store is not answering, so this delivery was not stored: redeliver it once ci_service is healthy' }, { 'Retry-After': '30' });
    return;
  }
  if (admission.kind === 'queue_full') {
    record('queue_full', 'warn', { queued: admission.queued }, 'delivery refused');
    const error = `build queue is full (${admission.queued} builds waiting, MAX_QUEUED_BUILDS=${deps.admission.maxQueuedBuilds}): redeliver later`;
    answer(res, 503, { error }, { 'Retry-After': '60' });
    return;
  }
  const { build, cancelled } = admission;
  record(admission.kind === 'created' ? 'queued' : admission.kind, 'info', { buildId: build.id, cancelled: cancelled.length || undefined }, 'delivery accepted');
  const flag = admission.kind === 'created' ? {} : { [admission.kind]: true };
  const superseded = cancelled.length > 0 ? { cancelled: cancelled.map((cancelledBuild) => cancelledBuild.id) } : {};
  answer(res, STATUS[admission.kind], { build: buildView(build), ...flag, ...superseded }, { Location: `/builds/${build.id}` });
}

/** GitHub's delivery ids are UUIDs and its event names short words. */
const MAX_HEADER_CHARS = 100;

function clip(header: string): string | undefined {
  if (header === '') return undefined;
  return header.length > MAX_HEADER_CHARS ? `${header.slice(0, MAX_HEADER_CHARS)}…` : header;
}

/**
 * Answers with Node's own response API: express's `res.json` (an ETag, a freshness check) made every delivery
 * pay for an answer no one caches; without it, 12 % more deliveries a second (bench/README.md).
 */
function answer(res: Response, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers }).end(JSON.stringify(body));
}

/** GitHub sends JSON, or `payload=<json>` when the webhook's content type is form-encoded. */
function parseBody(req: Request, body: string): unknown {
  const text = req.is('application/x-www-form-urlencoded') ? (new URLSearchParams(body).get('payload') ?? '') : body;
  try {
    return JSON.parse(text);
  } catch {
    throw new PayloadError('body is not valid JSON: set the webhook content type to application/json');
  }
}
