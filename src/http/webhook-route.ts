import type { Request, RequestHandler } from 'express';
import { PayloadError } from '../errors.js';
import { decideBuild, type TriggerPolicy } from '../github/decide-build.js';
import type { DeliveryVerifier } from '../github/verify-delivery.js';
import type { Logger } from '../logger.js';
import type { AddOutcome, BuildRecord, BuildStore } from '../queue/build-store.js';
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
    const logger = deps.logger.child({ deliveryId: deliveryId || undefined, event: event || undefined });
    /** Every answer is logged with its outcome, and counted. */
    const record = (outcome: string, level: 'info' | 'warn', fields: Record<string, unknown>, message: string) => {
      deps.onOutcome?.(outcome);
      logger[level]({ outcome, ...fields }, message);
    };
    const body = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';

    if (!deps.isAccepting()) {
      record('shutting_down', 'warn', {}, 'delivery refused');
      res.status(503).set('Retry-After', '30').json({ error: 'ci_service is shutting down: redeliver this delivery from GitHub once it is back' });
      return;
    }
    const verdict = await deps.verifyDelivery(body, req.get('x-hub-signature-256'));
    if (!verdict.ok) {
      record('unauthorized', 'warn', { reason: verdict.reason }, 'delivery refused');
      res.status(401).json({ error: verdict.reason });
      return;
    }
    try {
      if (!event) throw new PayloadError('missing X-GitHub-Event header');
      if (!deliveryId) throw new PayloadError('missing X-GitHub-Delivery header');
      const decision = decideBuild(event, deliveryId, parseBody(req, body), deps.policy);
      if ('ignored' in decision) {
        record('ignored', 'info', { reason: decision.ignored }, 'delivery ignored');
        res.status(200).json({ ignored: decision.ignored });
        return;
      }
      const outcome = await deps.store.add(decision.build, deps.now(), deps.maxQueuedBuilds);
      if (outcome.kind === 'queue_full') {
        record('queue_full', 'warn', { queued: outcome.queued }, 'delivery refused');
        res.status(503).set('Retry-After', '60').json({
          error: `build queue is full (${outcome.queued} builds waiting, MAX_QUEUED_BUILDS=${deps.maxQueuedBuilds}): redeliver later`,
        });
        return;
      }
      if (outcome.kind === 'created') deps.submit(outcome.build);
      record(outcome.kind === 'created' ? 'queued' : outcome.kind, 'info', { buildId: outcome.build.id }, 'delivery accepted');
      res
        .status(STATUS[outcome.kind])
        .location(`/builds/${outcome.build.id}`)
        .json({ build: buildView(outcome.build), ...(outcome.kind === 'created' ? {} : { [outcome.kind]: true }) });
    } catch (error) {
      if (!(error instanceof PayloadError)) throw error;
      record('bad_request', 'warn', { reason: error.message }, 'delivery refused');
      res.status(400).json({ error: error.message });
    }
  };
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
