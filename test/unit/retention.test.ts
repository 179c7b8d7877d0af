import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { RetentionSweeper } from '../../src/queue/retention.js';
import { SqliteBuildStore } from '../../src/queue/sqlite-build-store.js';
import type { BuildRequest } from '../../src/domain/build-request.js';
import { logOf } from '../support/store-log.js';

const DAY = 24 * 60 * 60 * 1000;

function request(deliveryId: string, sha: string): BuildRequest {
  return {
    deliveryId,
    repository: { owner: 'o', name: 'app', fullName: 'o/app', htmlUrl: 'https://github.com/o/app', private: false },
    sha,
    trigger: { kind: 'merge', prNumber: 1, baseRef: 'main' },
  };
}

describe('retention', () => {
  it('deletes finished builds past RETENTION_DAYS with their logs and delivery ids, and keeps the rest', async () => {
    const store = new SqliteBuildStore(':memory:');
    const now = new Date('2026-12-01T00:00:00Z');
    const add = async (id: string, sha: string) => ((await store.add(request(id, sha.repeat(40)), now, 10)) as { build: { id: string } }).build.id;
    const old = await add('old', '1');
    const recent = await add('recent', '2');
    const stillRunning = await add('running', '3');
    await store.update(old, { status: 'succeeded', finishedAt: new Date(now.getTime() - 31 * DAY) });
    await store.update(recent, { status: 'failed', finishedAt: new Date(now.getTime() - 29 * DAY) });
    await store.update(stillRunning, { status: 'running', startedAt: new Date(now.getTime() - 40 * DAY) });
    await store.appendLog(old, 'a line of an old build');

    const sweeper = new RetentionSweeper(store, 30 * DAY, createLogger('silent'), () => now);
    assert.equal(await sweeper.sweepNow(), 1);
    assert.equal(await store.get(old), undefined);
    assert.equal(await logOf(store, old), undefined);
    assert.ok(await store.get(recent));
    assert.ok(await store.get(stillRunning), 'an unfinished build is never deleted');
    assert.equal((await store.add(request('old', '1'.repeat(40)), now, 10)).kind, 'created', 'its delivery id went with it');
    assert.equal(await sweeper.sweepNow(), 0);
  });
});
