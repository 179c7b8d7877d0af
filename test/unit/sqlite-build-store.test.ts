import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
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
