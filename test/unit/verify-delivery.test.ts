import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { createDeliveryVerifier } from '../../src/github/verify-delivery.js';
import { examplePullRequest, signature256 } from '../support/deliveries.js';

const SECRET = "It's a Secret to Everybody";
const verify = createDeliveryVerifier(() => [SECRET]);
const text = JSON.stringify(examplePullRequest('opened'));
const body = Buffer.from(text);

describe('verifyDelivery', () => {
  it('accepts the signature GitHub computes over the raw body', async () => {
    assert.deepEqual(await verify(body, signature256(SECRET, text)), { ok: true, text });
  });

  it("matches GitHub's documented test vector", async () => {
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    const verdict = await verify(
      Buffer.from('Hello, World!'),
      'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
    );
    assert.deepEqual(verdict, { ok: true, text: 'Hello, World!' });
  });

  it('refuses a signature made with another secret', async () => {
    const verdict = await verify(body, signature256('another secret', text));
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
    const signature = signature256(SECRET, text);
    const bytes = Buffer.from(body);
    bytes[10] = bytes[10]! ^ 1;
    assert.equal((await verify(bytes, signature)).ok, false);
  });

  it('refuses an empty body', async () => {
    assert.equal((await verify(Buffer.alloc(0), signature256(SECRET, ''))).ok, false);
  });

  it('checks the raw bytes: a body that is not UTF-8 is refused, even when its decoded text was signed', async () => {
    // 0xff is no UTF-8: decoded, it becomes U+FFFD, and a signature over that text must not pass for these bytes.
    const bytes = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff]), Buffer.from('"}')]);
    const verdict = await verify(bytes, signature256(SECRET, bytes.toString('utf8')));
    assert.deepEqual(verdict, { ok: false, reason: 'the body is empty or not UTF-8, so it is not a signed GitHub delivery' });
  });
});
