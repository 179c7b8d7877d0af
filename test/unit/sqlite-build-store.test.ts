import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { BuildRequest } from '../../src/domain/build-request.js';
import { SqliteBuildStore } from '../../src/queue/sqlite-build-store.js';
import { logOf } from '../support/store-log.js';

function request(deliveryId: string, sha = 'a'.repeat(40), repository = 'o/app'): BuildRequest {
  const [owner, name] = repository.split('/') as [string, string];
  return { deliveryId, repository: { owner, name, fullName: repository, htmlUrl: 'https://github.com/o/app', private: false }, sha, prNumber: 1, baseRef: 'main' };
}

describe('SQLite build store', () => {
  it('keeps builds, their changes and their logs across reopening the file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'store-'));
    try {
      const first = SqliteBuildStore.inDataDir(path.join(dir, 'nested'));
      const added = await first.add(request('d1'), new Date('2026-01-01T00:00:00Z'), 10);
      assert.equal(added.kind, 'created');
      const id = added.kind === 'created' ? added.build.id : '';
      await first.update(id, { status: 'succeeded', image: 'reg/app:1', tags: ['reg/app:1', 'reg/app:latest'], digest: 'sha256:1', finishedAt: new Date('2026-01-01T00:01:00Z') });
      await first.appendLog(id, 'line one');
      await first.appendLog(id, 'line two');
      await first.close();

      const reopened = SqliteBuildStore.inDataDir(path.join(dir, 'nested'));
      const build = await reopened.get(id);
      assert.equal(build?.status, 'succeeded');
      assert.deepEqual(build?.tags, ['reg/app:1', 'reg/app:latest']);
      assert.equal(build?.finishedAt?.toISOString(), '2026-01-01T00:01:00.000Z');
      assert.equal(build?.request.repository.fullName, 'o/app');
      assert.equal(await logOf(reopened, id), 'line one\nline two\n');
      await reopened.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('checkpoints its WAL once a second on a thread of its own, so the WAL does not grow while deliveries commit', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'store-'));
    const store = SqliteBuildStore.inDataDir(dir);
    const size = (suffix: string) => statSync(path.join(dir, `ci_service.sqlite${suffix}`)).size;
    /** Resolves once the thread has copied pages back to the database file (it ticks once a second). */
    const checkpointed = async () => {
      const before = size('');
      for (let waited = 0; size('') === before; waited += 50) {
        assert.ok(waited < 5000, 'no checkpoint reached the database file within 5 s');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    let n = 0;
    const addBuilds = async (count: number) => {
      for (let i = 0; i < count; i += 1, n += 1) await store.add(request(`d${n}`, n.toString(16).padStart(40, '0')), new Date(), 1_000_000);
    };
    try {
      await addBuilds(50); // a few hundred pages, all in the WAL: SQLite itself would not checkpoint yet
      await checkpointed(); // while nothing commits: the thread's doing

      await addBuilds(400); // over 1,000 pages: SQLite's own checkpoint would have run inside a commit
      const grown = size('-wal');
      await checkpointed();
      // The file grows as soon as the checkpoint writes its first new page, and the WAL only starts over once
      // the checkpoint has finished (it syncs last): a second's wait lets it finish before the next writes.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await addBuilds(400); // written from the start of the checkpointed WAL again
      assert.ok(size('-wal') <= grown * 1.1, `WAL ${size('-wal')} bytes after a checkpoint, ${grown} before`);
      assert.equal((await store.list(5000)).length, 850);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers a redelivery with the build it made, never a second one', async () => {
    const store = new SqliteBuildStore(':memory:');
    const first = await store.add(request('same'), new Date(), 10);
    const again = await Promise.all(Array.from({ length: 20 }, () => store.add(request('same'), new Date(), 10)));
    assert.ok(again.every((outcome) => outcome.kind === 'redelivery' && outcome.build.id === (first as any).build.id));
    assert.equal((await store.list(100)).length, 1);
  });

  it('joins a merge of the same commit to the queued or running build, but not to a finished one', async () => {
    const store = new SqliteBuildStore(':memory:');
    const first = (await store.add(request('d1'), new Date(), 10)) as any;
    assert.equal((await store.add(request('d2'), new Date(), 10)).kind, 'coalesced');
    await store.update(first.build.id, { status: 'running' });
    assert.equal((await store.add(request('d3'), new Date(), 10)).kind, 'coalesced');
    assert.equal((await store.add(request('d3'), new Date(), 10)).kind, 'redelivery');
    await store.update(first.build.id, { status: 'succeeded' });
    assert.equal((await store.add(request('d4'), new Date(), 10)).kind, 'created');
    assert.equal((await store.add(request('d5', 'b'.repeat(40)), new Date(), 10)).kind, 'created');
  });

  it('refuses a new build when maxQueued are waiting, storing nothing', async () => {
    const store = new SqliteBuildStore(':memory:');
    await store.add(request('d1', '1'.repeat(40)), new Date(), 2);
    await store.add(request('d2', '2'.repeat(40)), new Date(), 2);
    assert.deepEqual(await store.add(request('d3', '3'.repeat(40)), new Date(), 2), { kind: 'queue_full', queued: 2 });
    assert.equal((await store.list(10)).length, 2);
  });

  it('counts what waits as builds start, finish, are queued again and the file is reopened', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'store-'));
    try {
      const store = SqliteBuildStore.inDataDir(dir);
      const first = (await store.add(request('d1', '1'.repeat(40)), new Date(), 2)) as any;
      await store.add(request('d2', '2'.repeat(40)), new Date(), 2);
      await store.update(first.build.id, { status: 'running' }); // no longer waiting: room for one
      const third = (await store.add(request('d3', '3'.repeat(40)), new Date(), 2)) as any;
      assert.equal(third.kind, 'created');
      assert.equal((await store.add(request('d4', '4'.repeat(40)), new Date(), 2)).kind, 'queue_full');
      await store.update(third.build.id, { error: 'a change that is not of status' });
      assert.equal((await store.add(request('d4', '4'.repeat(40)), new Date(), 2)).kind, 'queue_full');
      await store.update(first.build.id, { status: 'queued', resumed: true }); // as after a restart: 3 waiting
      await store.update(third.build.id, { status: 'failed' });
      assert.equal((await store.add(request('d4', '4'.repeat(40)), new Date(), 2)).kind, 'queue_full');
      await store.close();

      const reopened = SqliteBuildStore.inDataDir(dir);
      assert.deepEqual(await reopened.add(request('d5', '5'.repeat(40)), new Date(), 2), { kind: 'queue_full', queued: 2 });
      assert.equal((await reopened.add(request('d5', '5'.repeat(40)), new Date(), 3)).kind, 'created');
      await reopened.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lists newest first and the unfinished oldest first', async () => {
    const store = new SqliteBuildStore(':memory:');
    const ids: string[] = [];
    for (const n of [1, 2, 3]) ids.push(((await store.add(request(`d${n}`, String(n).repeat(40)), new Date(), 10)) as any).build.id);
    await store.update(ids[1]!, { status: 'failed' });
    assert.deepEqual((await store.list(10)).map((build) => build.id), [...ids].reverse());
    assert.deepEqual((await store.unfinished()).map((build) => build.id), [ids[0], ids[2]]);
    assert.equal(await logOf(store, 'unknown'), undefined);
  });

  it('gives a reader the log lines after its cursor, a page at a time, whatever other builds write meanwhile', async () => {
    const store = new SqliteBuildStore(':memory:');
    const a = ((await store.add(request('la', '1'.repeat(40)), new Date(), 10)) as any).build.id as string;
    const b = ((await store.add(request('lb', '2'.repeat(40)), new Date(), 10)) as any).build.id as string;
    for (let n = 1; n <= 5; n += 1) {
      await store.appendLog(a, `a${n}`);
      await store.appendLog(b, `b${n}`);
    }
    const first = (await store.readLogAfter(a, 0, 2))!;
    assert.deepEqual(first.lines, ['a1', 'a2']);
    const second = (await store.readLogAfter(a, first.cursor, 10))!;
    assert.deepEqual(second.lines, ['a3', 'a4', 'a5']);
    assert.deepEqual(await store.readLogAfter(a, second.cursor, 10), { lines: [], cursor: second.cursor }, 'nothing new: the same cursor');
    assert.equal(await store.readLogAfter('unknown', 0, 10), undefined);
  });
});
