import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SourceError, SpecError } from '../../src/domain/errors.js';
import { backoffDelay, createRetry } from '../../src/queue/retry.js';

const policy = { retries: 3, baseDelayMs: 1000, maxDelayMs: 5000 };

describe('retries', () => {
  it('doubles the delay each time, within jitter, up to the ceiling', () => {
    assert.equal(backoffDelay(1, policy, 0), 500);
    assert.equal(backoffDelay(1, policy, 1), 1000);
    assert.equal(backoffDelay(2, policy, 1), 2000);
    assert.equal(backoffDelay(3, policy, 0.5), 3000);
    assert.equal(backoffDelay(10, policy, 1), 5000);
  });

  it("waits as long as the server's Retry-After asked", async () => {
    const messages: string[] = [];
    let calls = 0;
    const retry = createRetry({ retries: 1, baseDelayMs: 60_000, maxDelayMs: 60_000 }, new AbortController().signal, (m) => messages.push(m));
    const started = Date.now();
    await retry('reading dockerInfo.json', async () => {
      calls += 1;
      if (calls === 1) throw new SourceError('rate limited', true, 300);
    });
    // Not the backoff's 60 s, and not less than asked.
    const waited = Date.now() - started;
    assert.ok(waited >= 290 && waited < 5_000, `${waited} ms`);
    assert.match(messages[0]!, /retry 1 of 1 in 0\.3 s/);
  });

  it('gives up after the last retry with the last error, and never retries a permanent one', async () => {
    const retry = createRetry({ retries: 2, baseDelayMs: 1, maxDelayMs: 1 }, new AbortController().signal, () => {});
    let calls = 0;
    await assert.rejects(retry('x', async () => { calls += 1; throw new SourceError(`502 #${calls}`, true); }), /502 #3/);
    assert.equal(calls, 3);
    calls = 0;
    await assert.rejects(retry('x', async () => { calls += 1; throw new SpecError('bad'); }), /bad/);
    assert.equal(calls, 1);
  });

  it('fails at once when the Retry-After asked for would outlast the build', async () => {
    const messages: string[] = [];
    const retry = createRetry({ retries: 3, baseDelayMs: 1, maxDelayMs: 1 }, new AbortController().signal, (m) => messages.push(m), { deadline: Date.now() + 60_000 });
    let calls = 0;
    const started = Date.now();
    const limited = new SourceError('GitHub rate limit reached (429)', true, 3600 * 1000);
    await assert.rejects(retry('downloading', async () => { calls += 1; throw limited; }), (error: unknown) => error === limited);
    assert.equal(calls, 1);
    assert.ok(Date.now() - started < 1000);
    assert.deepEqual(messages, ['downloading failed (GitHub rate limit reached (429)); not retried: waiting 3600 s would outlast BUILD_TIMEOUT_S']);
  });

  it('stops waiting when the build is aborted', async () => {
    const controller = new AbortController();
    const retry = createRetry({ retries: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 }, controller.signal, () => {});
    const pending = retry('x', async () => { throw new SourceError('down', true); });
    setTimeout(() => controller.abort(new Error('timed out')), 10);
    await assert.rejects(pending, /timed out/);
  });
});
