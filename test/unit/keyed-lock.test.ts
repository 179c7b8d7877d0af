import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyedLock } from '../../src/queue/keyed-lock.js';

const never = new AbortController().signal;
const tick = () => new Promise((resolve) => setTimeout(resolve, 2));

describe('keyed lock', () => {
  it('lets one holder per key run at a time, and other keys run alongside', async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    const task = (key: string, order: number) =>
      lock.run(key, order, never, async () => {
        events.push(`start ${key}${order}`);
        await tick();
        events.push(`end ${key}${order}`);
      });
    await Promise.all([task('a', 1), task('a', 2), task('b', 3)]);
    assert.deepEqual(events.slice(0, 2), ['start a1', 'start b3']);
    assert.ok(events.indexOf('start a2') > events.indexOf('end a1'));
  });

  it('serves waiters by arrival order, not by when they asked', async () => {
    const lock = new KeyedLock();
    const order: number[] = [];
    const first = lock.run('k', 1, never, tick);
    const late = lock.run('k', 5, never, async () => void order.push(5));
    const early = lock.run('k', 3, never, async () => void order.push(3));
    await Promise.all([first, late, early]);
    assert.deepEqual(order, [3, 5]);
  });

  it('drops a waiter whose build was aborted, and the line goes on', async () => {
    const lock = new KeyedLock();
    const controller = new AbortController();
    const ran: number[] = [];
    const holder = lock.run('k', 1, never, tick);
    const aborted = lock.run('k', 2, controller.signal, async () => void ran.push(2));
    const next = lock.run('k', 3, never, async () => void ran.push(3));
    controller.abort(new Error('timed out'));
    await assert.rejects(aborted, /timed out/);
    await Promise.all([holder, next]);
    assert.deepEqual(ran, [3]);
  });
});
