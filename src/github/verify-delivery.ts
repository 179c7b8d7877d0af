import { Webhooks } from '@octokit/webhooks';

export type DeliveryVerdict = { ok: true } | { ok: false; reason: string };

/**
 * Checks X-Hub-Signature-256 over the raw body, before anything parses it. The body comes decoded
 * once as UTF-8 (what GitHub sends), because @octokit/webhooks signs strings and the route parses the same text.
 * The legacy sha1 `X-Hub-Signature` header alone does not count: GitHub always sends sha256 too.
 */
export function createDeliveryVerifier(secret: string) {
  const webhooks = new Webhooks({ secret });
  return async function verifyDelivery(body: string, signature256: string | undefined): Promise<DeliveryVerdict> {
    if (!signature256) {
      return { ok: false, reason: 'missing X-Hub-Signature-256 header: set a secret on the GitHub webhook' };
    }
    if (!signature256.startsWith('sha256=')) {
      return { ok: false, reason: 'X-Hub-Signature-256 must look like sha256=<hex>' };
    }
    const valid = body.length > 0 && (await webhooks.verify(body, signature256));
    return valid
      ? { ok: true }
      : { ok: false, reason: 'signature does not match: the webhook secret differs from WEBHOOK_SECRET, or the body was altered' };
  };
}

export type DeliveryVerifier = ReturnType<typeof createDeliveryVerifier>;
