import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planRedeliveries, type HookDeliveryAttempt } from '../../src/github/delivery-recovery.js';

const NOW = new Date('2026-12-02T12:00:00Z');
let nextId = 1;

function attempt(guid: string, statusCode: number, minutesAgo: number, redelivery = false): HookDeliveryAttempt {
  return { id: nextId++, guid, event: 'pull_request', action: 'closed', delivered_at: new Date(NOW.getTime() - minutesAgo * 60_000).toISOString(), redelivery, status_code: statusCode };
}

describe('planRedeliveries', () => {
  it('asks again for deliveries that never got a 2xx (no answer, 5xx, 408, 429), oldest first, by their latest attempt', () => {
    const refused = attempt('a', 0, 30);
    const shuttingDown = attempt('b', 503, 40);
    const retriedAndFailed = attempt('c', 502, 5, true);
    const plan = planRedeliveries([retriedAndFailed, refused, attempt('c', 0, 50), shuttingDown, attempt('d', 408, 1), attempt('e', 429, 2)], new Map(), NOW);
    assert.deepEqual(plan.map((each) => each.guid), ['c', 'b', 'a', 'e', 'd']);
    assert.equal(plan[0], retriedAndFailed, 'the latest attempt of a delivery is the one redelivered');
  });

  it('leaves alone what got a 2xx once, a 4xx that would be answered the same, and what GitHub keeps no more', () => {
    const plan = planRedeliveries(
      [attempt('ok', 0, 20), attempt('ok', 202, 10, true), attempt('accepted', 200, 5), attempt('bad-signature', 401, 5), attempt('bad-payload', 400, 5), attempt('old', 0, 4 * 24 * 60)],
      new Map(),
      NOW,
    );
    assert.deepEqual(plan, []);
  });

  it('asks for one delivery at most three times, so one that keeps failing does not loop', () => {
    const failing = [attempt('x', 0, 10)];
    assert.equal(planRedeliveries(failing, new Map([['x', 2]]), NOW).length, 1);
    assert.equal(planRedeliveries(failing, new Map([['x', 3]]), NOW).length, 0);
  });
});
