import type { Request, RequestHandler, Response } from 'express';
import { describeError, PayloadError } from '../domain/errors.js';
import { decideBuild, type HeldPullRequest, type PullRequestCancel, type TriggerPolicy } from '../github/decide-build.js';
import type { BuildRequest } from '../domain/build-request.js';
import type { ReleasePush } from '../domain/release-push.js';
import type { DeliveryVerifier } from '../github/verify-delivery.js';
import type { Logger } from 'pino';
import type { BuildRecord } from '../domain/build-record.js';
import type { AddOutcome, BuildStore } from '../queue/build-store.js';
import { buildView } from './build-view.js';

export interface WebhookDependencies {
  verifyDelivery: DeliveryVerifier;
  policy: TriggerPolicy;
  store: BuildStore;
  submit: (build: BuildRecord) => void;
  /** Cancels a pull request's unfinished builds admitted before `before` (a seq), or all of them. */
  cancelPullRequest: (cancel: PullRequestCancel, before?: number) => Promise<BuildRecord[]>;
  /** Reads the pushed commit's release rules: the build they ask for, or why none. Throws when GitHub does not answer. */
  releaseRequest: (push: ReleasePush) => Promise<{ build: BuildRequest } | { ignored: string }>;
  /** Tells the pull request why it is not built (its commit status); never fails the delivery. */
  hold: (held: HeldPullRequest) => void;
  /** False once shutdown began: deliveries get 503, so GitHub shows them as failed and they can be redelivered. */
  isAccepting: () => boolean;
  maxQueuedBuilds: number;
  /** Counts each delivery's outcome (metrics). */
  onOutcome?: (outcome: string) => void;
  logger: Logger;
  now: () => Date;
}

const STATUS: Record<AddOutcome['kind'], number> = { created: 202, coalesced: 202, redelivery: 200, queue_full: 503 };

/** Verify the raw bytes, then parse, then store and answer: nothing slow happens here. */
export function webhookRoute(deps: WebhookDependencies): RequestHandler {
  return async (req, res) => {
    const deliveryId = req.get('x-github-delivery') ?? '';
    const event = req.get('x-github-event') ?? '';
    /** Every answer is logged with its outcome, and counted; headers anyone may send are logged cut short. */
    const record = (outcome: string, level: 'info' | 'warn', fields: Record<string, unknown>, message: string) => {
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
    try {
      if (!event) throw new PayloadError('missing X-GitHub-Event header');
      if (!deliveryId) throw new PayloadError('missing X-GitHub-Delivery header');
      if (deliveryId.length > MAX_HEADER_CHARS || event.length > MAX_HEADER_CHARS) throw new PayloadError(`X-GitHub-Delivery and X-GitHub-Event are at most ${MAX_HEADER_CHARS} characters`);
      const decision = decideBuild(event, deliveryId, parseBody(req, verdict.text), deps.policy);
      if (decision.kind === 'ignored') {
        record('ignored', 'info', { reason: decision.reason }, 'delivery ignored');
        answer(res, 200, { ignored: decision.reason });
        return;
      }
      if (decision.kind === 'held') {
        deps.hold(decision.held);
        record('held', 'info', { reason: decision.held.description }, 'fork pull request held');
        answer(res, 200, { held: decision.held.description });
        return;
      }
      if (decision.kind === 'cancel') {
        const cancelled = await deps.cancelPullRequest(decision.cancel);
        record('cancelled', 'info', { reason: decision.cancel.reason, cancelled: cancelled.length }, 'pull request builds cancelled');
        answer(res, 200, { cancelled: cancelled.map((build) => build.id), reason: decision.cancel.reason });
        return;
      }
      let request: BuildRequest;
      if (decision.kind === 'release') {
        let release: Awaited<ReturnType<WebhookDependencies['releaseRequest']>>;
        try {
          release = await deps.releaseRequest(decision.push);
        } catch (error) {
          record('source_unavailable', 'warn', { error: describeError(error) }, 'delivery refused');
          answer(res, 503, { error: `could not read the release rules of ${decision.push.ref} from GitHub (${describeError(error)}): redeliver later` }, { 'Retry-After': '60' });
          return;
        }
        if ('ignored' in release) {
          record('ignored', 'info', { reason: release.ignored }, 'delivery ignored');
          answer(res, 200, { ignored: release.ignored });
          return;
        }
        request = release.build;
      } else {
        request = decision.build;
      }
      let outcome: AddOutcome;
      try {
        outcome = await deps.store.add(request, deps.now(), deps.maxQueuedBuilds);
      } catch (error) {
        // Nothing was stored (the store commits before it answers): GitHub must see a failure, to redeliver.
        record('store_unavailable', 'warn', { error: describeError(error) }, 'delivery refused');
        answer(res, 503, { error: 'the build store is not answering, so this delivery was not stored: redeliver it once ci_service is healthy' }, { 'Retry-After': '30' });
        return;
      }
      if (outcome.kind === 'queue_full') {
        record('queue_full', 'warn', { queued: outcome.queued }, 'delivery refused');
        const error = `build queue is full (${outcome.queued} builds waiting, MAX_QUEUED_BUILDS=${deps.maxQueuedBuilds}): redeliver later`;
        answer(res, 503, { error }, { 'Retry-After': '60' });
        return;
      }
      if (outcome.kind === 'created') deps.submit(outcome.build);
      // A newer head supersedes what its pull request admitted before; a merge ends the pull request's builds.
      const cancel = decision.kind === 'build' ? decision.cancel : undefined;
      const cancelled = cancel
        ? await deps.cancelPullRequest(cancel, request.trigger.kind === 'pull_request' ? outcome.build.seq : undefined).catch((error: unknown) => {
            // The build is stored: the delivery is answered; what was to be cancelled runs to its end.
            deps.logger.warn({ deliveryId, error: describeError(error) }, 'could not cancel superseded builds');
            return [];
          })
        : [];
      record(outcome.kind === 'created' ? 'queued' : outcome.kind, 'info', { buildId: outcome.build.id, cancelled: cancelled.length || undefined }, 'delivery accepted');
      const flag = outcome.kind === 'created' ? {} : { [outcome.kind]: true };
      const superseded = cancelled.length > 0 ? { cancelled: cancelled.map((build) => build.id) } : {};
      answer(res, STATUS[outcome.kind], { build: buildView(outcome.build), ...flag, ...superseded }, { Location: `/builds/${outcome.build.id}` });
    } catch (error) {
      if (!(error instanceof PayloadError)) throw error;
      record('bad_request', 'warn', { reason: error.message }, 'delivery refused');
      answer(res, 400, { error: error.message });
    }
  };
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
