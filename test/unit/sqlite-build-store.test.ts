import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteBuildStore } from '../../src/queue/sqlite-build-store.js';
import { buildStoreConformance, request } from '../support/build-store-conformance.js';

const folders: string[] = [];
after(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })));
const files = new WeakMap<object, string>();

buildStoreConformance('SQLite', {
  async open() {
    const folder = mkdtempSync(path.join(tmpdir(), 'store-'));
    folders.push(folder);
    // A folder that does not exist yet: the store makes it.
    const store = SqliteBuildStore.inDataDir(path.join(folder, 'nested'));
    files.set(store, path.join(folder, 'nested'));
    return store;
  },
  async reopen(store) {
    await store.close();
    const reopened = SqliteBuildStore.inDataDir(files.get(store)!);
    files.set(reopened, files.get(store)!);
    return reopened;
  },
});

describe('SQLite build store', () => {
  it('takes up a database of the schema before cancelled builds and triggers: its builds read as merges, nothing lost', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'store-'));
    folders.push(dir);
    const old = new Database(path.join(dir, 'ci_service.sqlite'));
    // Schema version 5, as the release before this one left it.
    old.exec(`CREATE TABLE builds (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, repository TEXT NOT NULL, sha TEXT NOT NULL, request TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')), image TEXT, tags TEXT NOT NULL DEFAULT '[]', digest TEXT, error TEXT,
        failed_stage TEXT, resumed INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT);
      CREATE INDEX builds_unfinished ON builds (status, repository, sha);
      CREATE TABLE deliveries (delivery_id TEXT PRIMARY KEY, build_id TEXT NOT NULL REFERENCES builds (id));
      CREATE TABLE build_logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, build_id TEXT NOT NULL REFERENCES builds (id), line TEXT NOT NULL);
      CREATE INDEX build_logs_by_build ON build_logs (build_id, seq);
      CREATE TABLE image_owners (image TEXT PRIMARY KEY, repository TEXT NOT NULL, claimed_at TEXT NOT NULL);
      ALTER TABLE builds ADD COLUMN worker TEXT;
      ALTER TABLE builds ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
      CREATE TABLE workers (name TEXT PRIMARY KEY, seen_at TEXT NOT NULL);
      PRAGMA user_version = 5;`);
    const { trigger: _trigger, ...legacy } = { ...request('old-delivery', 'b'.repeat(40)), prNumber: 12, baseRef: 'main' };
    old.prepare("INSERT INTO builds (id, repository, sha, request, status, created_at, attempt) VALUES ('old-build', 'o/app', ?, ?, 'queued', '2026-01-01T00:00:00.000Z', 0)").run('b'.repeat(40), JSON.stringify(legacy));
    old.prepare("INSERT INTO deliveries VALUES ('old-delivery', 'old-build')").run();
    old.prepare("INSERT INTO build_logs (build_id, line) VALUES ('old-build', 'a line from before')").run();
    old.close();

    const store = SqliteBuildStore.inDataDir(dir);
    const build = await store.get('old-build');
    assert.deepEqual(build?.request.trigger, { kind: 'merge', prNumber: 12, baseRef: 'main' });
    assert.deepEqual((await store.readLogAfter('old-build', 0, 10))?.lines, ['a line from before']);
    assert.equal((await store.add(request('old-delivery', 'b'.repeat(40)), new Date(), 10)).kind, 'redelivery');
    assert.equal((await store.add(request('same-commit', 'b'.repeat(40)), new Date(), 10)).kind, 'coalesced', 'an old build is a merge build');
    assert.equal((await store.cancel('old-build', 'by hand', new Date()))?.status, 'cancelled');
    await store.close();
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

});
