import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Periodic } from '../../src/periodic.js';

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Periodic', () => {
  it('runs at start and then every interval, one pass at a time', async () => {
    let running = 0;
    let overlapped = false;
    let passes = 0;
    const periodic = new Periodic(async () => {
      running += 1;
      overlapped ||= running > 1;
      await delay(15);
      running -= 1;
      passes += 1;
      return passes;
    }, 5);
    periodic.start();
    await delay(120);
    await periodic.stop();
    assert.ok(passes >= 3, `${passes} passes`);
    assert.equal(overlapped, false, 'a pass never starts while another runs');
  });

  it('with no interval runs only at start, and runNow waits for the pass in flight', async () => {
    const order: string[] = [];
    const periodic = new Periodic(async () => {
      order.push('start');
      await delay(10);
      order.push('end');
      return order.length;
    }, 0);
    periodic.start();
    assert.equal(await periodic.runNow(), 4);
    await delay(30);
    assert.deepEqual(order, ['start', 'end', 'start', 'end']);
    await periodic.stop();
  });

  it('stop aborts the pass in flight through its signal and waits for it to end', async () => {
    let sawAbort = false;
    const periodic = new Periodic(
      (signal) =>
        new Promise<void>((resolve) => {
          const stopped = () => {
            sawAbort = true;
            resolve();
          };
          // Started after stop(): its signal is aborted already, as axios would see it.
          if (signal.aborted) stopped();
          else signal.addEventListener('abort', stopped);
        }),
      1000,
    );
    periodic.start();
    await delay(10);
    await periodic.stop();
    assert.ok(sawAbort);
  });
});
