import type { Request, RequestHandler, Response } from 'express';
import { describeError, PayloadError } from '../domain/errors.js';
import { decideBuild, type TriggerPolicy } from '../github/decide-build.js';
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
      if ('ignored' in decision) {
        record('ignored', 'info', { reason: decision.ignored }, 'delivery ignored');
        answer(res, 200, { ignored: decision.ignored });
        return;
      }
      let outcome: AddOutcome;
      try {
        outcome = await deps.store.add(decision.build, deps.now(), deps.maxQueuedBuilds);
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
      record(outcome.kind === 'created' ? 'queued' : outcome.kind, 'info', { buildId: outcome.build.id }, 'delivery accepted');
      const flag = outcome.kind === 'created' ? {} : { [outcome.kind]: true };
      answer(res, STATUS[outcome.kind], { build: buildView(outcome.build), ...flag }, { Location: `/builds/${outcome.build.id}` });
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
