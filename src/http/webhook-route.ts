import type { Request, RequestHandler } from 'express';
import { PayloadError } from '../errors.js';
import { decideBuild, type TriggerPolicy } from '../github/decide-build.js';
import type { DeliveryVerifier } from '../github/verify-delivery.js';
import type { Logger } from '../logger.js';
import type { BuildRecord, BuildStore } from '../queue/build-store.js';
import { buildView } from './build-view.js';

export interface WebhookDependencies {
  verifyDelivery: DeliveryVerifier;
  policy: TriggerPolicy;
  store: BuildStore;
  submit: (build: BuildRecord) => void;
  logger: Logger;
  now: () => Date;
}

/** Verify the raw bytes, then parse, then store and answer: nothing slow happens here. */
export function webhookRoute(deps: WebhookDependencies): RequestHandler {
  return async (req, res) => {
    const deliveryId = req.get('x-github-delivery') ?? '';
    const event = req.get('x-github-event') ?? '';
    const log = deps.logger.child({ deliveryId: deliveryId || undefined, event: event || undefined });
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);

    const verdict = await deps.verifyDelivery(body, req.get('x-hub-signature-256'));
    if (!verdict.ok) {
      log.warn({ outcome: 'unauthorized', reason: verdict.reason }, 'delivery refused');
      res.status(401).json({ error: verdict.reason });
      return;
    }
    try {
      if (!event) throw new PayloadError('missing X-GitHub-Event header');
      if (!deliveryId) throw new PayloadError('missing X-GitHub-Delivery header');
      const decision = decideBuild(event, deliveryId, parseBody(req, body), deps.policy);
      if ('ignored' in decision) {
        log.info({ outcome: 'ignored', reason: decision.ignored }, 'delivery ignored');
        res.status(200).json({ ignored: decision.ignored });
        return;
      }
      const { build, created } = await deps.store.add(decision.build, deps.now());
      if (created) deps.submit(build);
      log.info({ outcome: created ? 'queued' : 'redelivery', buildId: build.id }, created ? 'build queued' : 'delivery seen before');
      res
        .status(created ? 202 : 200)
        .location(`/builds/${build.id}`)
        .json({ build: buildView(build) });
    } catch (error) {
      if (!(error instanceof PayloadError)) throw error;
      log.warn({ outcome: 'bad_request', reason: error.message }, 'delivery refused');
      res.status(400).json({ error: error.message });
    }
  };
}

/** GitHub sends JSON, or `payload=<json>` when the webhook's content type is form-encoded. */
function parseBody(req: Request, body: Buffer): unknown {
  let text = body.toString('utf8');
  if (req.is('application/x-www-form-urlencoded')) text = new URLSearchParams(text).get('payload') ?? '';
  try {
    return JSON.parse(text);
  } catch {
    throw new PayloadError('body is not valid JSON: set the webhook content type to application/json');
  }
}
