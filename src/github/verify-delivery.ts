import { Webhooks } from '@octokit/webhooks';
import { isUtf8 } from 'node:buffer';

export type DeliveryVerdict = { ok: true; text: string } | { ok: false; reason: string };

/**
 * Checks X-Hub-Signature-256 over the raw body, before anything parses it, and hands back its text.
 * @octokit/webhooks signs text, so a body is verified only when it is valid UTF-8: its text then encodes back to
 * exactly the bytes GitHub signed. A body that is not cannot be a GitHub delivery and is refused undecoded.
 * The legacy sha1 `X-Hub-Signature` header alone does not count: GitHub always sends sha256 too. Any of
 * `secrets()` may have signed it: they are read at each delivery, so an App made by /setup counts at once.
 */
export function createDeliveryVerifier(secrets: () => string[]) {
  const verifiers = new Map<string, Webhooks>();
  const verifierOf = (secret: string) => {
    let webhooks = verifiers.get(secret);
    if (!webhooks) verifiers.set(secret, (webhooks = new Webhooks({ secret })));
    return webhooks;
  };
  return async function verifyDelivery(body: Buffer, signature256: string | undefined): Promise<DeliveryVerdict> {
    if (!signature256) {
      return { ok: false, reason: 'missing X-Hub-Signature-256 header: set a secret on the GitHub webhook' };
    }
    if (!/^sha256=[0-9a-f]{64}$/.test(signature256)) {
      return { ok: false, reason: 'X-Hub-Signature-256 must look like sha256=<64 hex digits>' };
    }
    if (body.length === 0 || !isUtf8(body)) {
      return { ok: false, reason: 'the body is empty or not UTF-8, so it is not a signed GitHub delivery' };
    }
    const text = body.toString('utf8');
    // WEBHOOK_SECRET (repository webhooks), and the GitHub App's webhook secret once there is an App.
    for (const secret of secrets()) {
      if (await verifierOf(secret).verify(text, signature256)) return { ok: true, text };
    }
    return { ok: false, reason: "signature does not match: the webhook secret differs from WEBHOOK_SECRET (or the GitHub App's), or the body was altered" };
  };
}

export type DeliveryVerifier = ReturnType<typeof createDeliveryVerifier>;
