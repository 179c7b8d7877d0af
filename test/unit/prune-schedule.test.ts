import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { PruneSchedule } from '../../src/engine/docker/prune-schedule.js';

const timing = { afterBuildMs: 5_000, everyMs: 60_000 };

/** Lets the schedule's promises run between the clock's ticks. */
async function advance(ms: number, step = 1_000): Promise<void> {
  for (let passed = 0; passed < ms; passed += step) {
    mock.timers.tick(step);
    for (let i = 0; i < 5; i += 1) await Promise.resolve();
  }
}

describe('when the build cache is pruned', () => {
  let prunes: number[];
  let schedule: PruneSchedule;

  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    prunes = [];
    schedule = new PruneSchedule(async () => {
      prunes.push(Date.now());
    }, timing);
  });
  afterEach(() => mock.timers.reset());

  it('a few seconds after a build, and once more a minute later for what the engine still held', async () => {
    schedule.afterBuild();
    await advance(10 * 60_000);
    assert.deepEqual(prunes, [5_000, 65_000]);
  });

  it('builds in between share the prunes they are owed: at most one a minute', async () => {
    schedule.afterBuild();
    await advance(3_000);
    schedule.afterBuild();
    await advance(30_000);
    schedule.afterBuild(); // after the first prune: owed the next one, a minute after that prune, and one more
    await advance(10 * 60_000);
    assert.deepEqual(prunes, [5_000, 65_000, 125_000]);
  });

  it('a build long after the last prune is pruned for a few seconds after it again', async () => {
    schedule.afterBuild();
    await advance(10 * 60_000);
    schedule.afterBuild();
    await advance(10 * 60_000);
    assert.deepEqual(prunes, [5_000, 65_000, 605_000, 665_000]);
  });

  it('a failed prune counts, and the schedule goes on', async () => {
    const failing = new PruneSchedule(async () => {
      prunes.push(Date.now());
      throw new Error('engine gone');
    }, timing);
    failing.afterBuild();
    await advance(10 * 60_000);
    assert.deepEqual(prunes, [5_000, 65_000]);
    failing.afterBuild();
    await advance(10 * 60_000);
    assert.equal(prunes.length, 4);
  });
});
