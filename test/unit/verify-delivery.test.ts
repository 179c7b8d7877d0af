import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { createDeliveryVerifier } from '../../src/github/verify-delivery.js';
import { examplePullRequest, signature256 } from '../support/deliveries.js';

const SECRET = "It's a Secret to Everybody";
const verify = createDeliveryVerifier(SECRET);
const body = JSON.stringify(examplePullRequest('opened'));

describe('verifyDelivery', () => {
  it('accepts the signature GitHub computes over the raw body', async () => {
    assert.deepEqual(await verify(body, signature256(SECRET, body)), { ok: true });
  });

  it("matches GitHub's documented test vector", async () => {
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    const verdict = await verify(
      'Hello, World!',
      'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
    );
    assert.deepEqual(verdict, { ok: true });
  });

  it('refuses a signature made with another secret', async () => {
    const verdict = await verify(body, signature256('another secret', body));
    assert.equal(verdict.ok, false);
    assert.match(!verdict.ok ? verdict.reason : '', /does not match/);
  });

  it('refuses a delivery without X-Hub-Signature-256', async () => {
    const verdict = await verify(body, undefined);
    assert.match(!verdict.ok ? verdict.reason : '', /missing X-Hub-Signature-256/);
  });

  it('refuses a sha1-only signature (the legacy X-Hub-Signature value)', async () => {
    const sha1 = `sha1=${createHmac('sha1', SECRET).update(body).digest('hex')}`;
    assert.equal((await verify(body, sha1)).ok, false);
  });

  it('refuses a body altered after signing, by a single byte', async () => {
    const signature = signature256(SECRET, body);
    const bytes = Buffer.from(body);
    bytes[10] = bytes[10]! ^ 1;
    assert.equal((await verify(bytes.toString('utf8'), signature)).ok, false);
  });

  it('refuses an empty body', async () => {
    assert.equal((await verify('', signature256(SECRET, ''))).ok, false);
  });
});
