import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startDaemon, type Daemon } from '../support/daemon.js';
import { mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { LocalRegistry, waitFor } from '../support/registry.js';
import type { BuildStore } from '../../src/queue/build-store.js';
import { PostgresBuildStore } from '../../src/queue/postgres-build-store.js';
import { buildStoreConformance, request } from '../support/build-store-conformance.js';
import { LocalPostgres } from '../support/postgres.js';

/** A real PostgreSQL server (Debian's postgresql-15), started for these tests; never skipped. */
const server = new LocalPostgres();
before(() => server.start());
after(() => server.remove());

const urls = new WeakMap<BuildStore, string>();

buildStoreConformance('PostgreSQL', {
  async open() {
    const url = await server.createDatabase();
    const store = await PostgresBuildStore.connect(url);
    urls.set(store, url);
    return store;
  },
  async reopen(store) {
    await store.close();
    const reopened = await PostgresBuildStore.connect(urls.get(store)!);
    urls.set(reopened, urls.get(store)!);
    return reopened;
  },
});

describe('PostgreSQL build store, shared by several processes', () => {
  it('brings a new database up to date once, however many stores (each with connections of its own, as processes have) start at the same moment', async () => {
    const url = await server.createDatabase();
    const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresBuildStore.connect(url)));
    try {
      assert.equal((await stores[0]!.add(request('d1'), new Date(), 10)).kind, 'created');
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  it('the same delivery stored through two stores (two pools, as two servers have) at once makes one build, and merges of one commit coalesce', async () => {
    const url = await server.createDatabase();
    const [one, two] = await Promise.all([PostgresBuildStore.connect(url), PostgresBuildStore.connect(url)]);
    try {
      const outcomes = await Promise.all(
        Array.from({ length: 10 }, (_, n) => (n % 2 === 0 ? one! : two!).add(request('same-delivery'), new Date(), 100)),
      );
      assert.deepEqual(outcomes.map((outcome) => outcome.kind).sort(), ['created', ...Array(9).fill('redelivery')]);
      const merges = await Promise.all(
        Array.from({ length: 10 }, (_, n) => (n % 2 === 0 ? one! : two!).add(request(`merge-${n}`, 'c'.repeat(40)), new Date(), 100)),
      );
      assert.equal(merges.filter((outcome) => outcome.kind === 'created').length, 1);
      assert.equal(merges.filter((outcome) => outcome.kind === 'coalesced').length, 9);
      assert.equal((await one!.list(100)).length, 2);
    } finally {
      await Promise.all([one!.close(), two!.close()]);
    }
  });

  it('stores a build and queues it in one transaction: when the job fails in the database, nothing is stored or counted', async () => {
    const url = await server.createDatabase();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query('CREATE TABLE test_jobs (id UUID PRIMARY KEY, argument TEXT NOT NULL)');
    let queueing: 'fail' | 'work' = 'fail';
    const store = await PostgresBuildStore.connect(url, async (build, transaction) => {
      // A job the database refuses (a null key), then one it takes: as pg-boss's insert of a job, in the transaction.
      await transaction.executeSql('INSERT INTO test_jobs (id, argument) VALUES ($1, $2)', [queueing === 'fail' ? null : build.id, 'the job']);
    });
    try {
      await assert.rejects(store.add(request('atomic'), new Date(), 10), /null value in column "id"/);
      assert.deepEqual(await store.list(10), []);
      assert.deepEqual((await client.query('SELECT queued FROM queued_count')).rows, [{ queued: '0' }], 'the refused build is not counted as waiting');
      queueing = 'work';
      const outcome = await store.add(request('atomic'), new Date(), 10);
      assert.equal(outcome.kind, 'created', 'the same delivery, taken once the queue works');
      assert.deepEqual((await client.query('SELECT id, argument FROM test_jobs')).rows, [{ id: outcome.kind === 'created' ? outcome.build.id : '', argument: 'the job' }]);
      assert.equal((await store.add(request('atomic'), new Date(), 10)).kind, 'redelivery');
      assert.equal((await client.query('SELECT id FROM test_jobs')).rows.length, 1, 'a redelivery is not queued again');
      assert.deepEqual((await client.query('SELECT queued FROM queued_count')).rows, [{ queued: '1' }]);
    } finally {
      await Promise.all([store.close(), client.end()]);
    }
  });

  it('counts the builds waiting in a database from before the count was kept, and keeps counting them', async () => {
    const url = await server.createDatabase();
    const store = await PostgresBuildStore.connect(url);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await store.add(request('one', '1'.repeat(40)), new Date(), 10);
      await store.add(request('two', '2'.repeat(40)), new Date(), 10);
      // As a database of the schema before: no counter, two builds waiting (the counter's migration is the newest).
      const version = (await client.query<{ version: number }>('SELECT version FROM ci_service_schema')).rows[0]!.version;
      await client.query('DROP TABLE queued_count CASCADE; DROP FUNCTION ci_admit; DROP FUNCTION ci_count_queued CASCADE; DROP INDEX builds_unfinished_commit');
      await client.query('UPDATE ci_service_schema SET version = $1', [version - 1]);
      await store.close();
      const upgraded = await PostgresBuildStore.connect(url);
      try {
        assert.equal((await upgraded.add(request('three', '3'.repeat(40)), new Date(), 2)).kind, 'queue_full', 'the two waiting are counted');
        const [first] = await upgraded.unfinished();
        await upgraded.update(first!.id, { status: 'running' });
        assert.equal((await upgraded.add(request('three', '3'.repeat(40)), new Date(), 2)).kind, 'created', 'one started: room for one');
        assert.deepEqual((await client.query('SELECT queued FROM queued_count')).rows, [{ queued: '2' }]);
      } finally {
        await upgraded.close();
      }
    } finally {
      await client.end();
    }
  });

  it('a delivery while PostgreSQL is down fails (never stored half), and the store works again once it is back', async () => {
    const url = await server.createDatabase();
    const store = await PostgresBuildStore.connect(url);
    try {
      assert.equal((await store.add(request('before'), new Date(), 10)).kind, 'created');
      await server.stop();
      const down = /ECONNREFUSED|terminat|Connection|connect/i;
      await assert.rejects(store.add(request('while-down', 'd'.repeat(40)), new Date(), 10), down);
      await assert.rejects(store.ping(), down);
      await server.start();
      await store.ping();
      assert.equal((await store.add(request('while-down', 'd'.repeat(40)), new Date(), 10)).kind, 'created', 'the refused delivery, sent again');
      assert.equal((await store.list(10)).length, 2);
    } finally {
      await store.close();
    }
  });
});

describe('the daemon on PostgreSQL (DATABASE_URL; real process, engine and registry)', () => {
  const SECRET = 'postgres-daemon-secret';
  const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
  let github: GitHubStandIn;
  let registry: LocalRegistry;
  let dataDir: string;

  before(async () => {
    github = await new GitHubStandIn().start();
    registry = await new LocalRegistry().start();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ci-postgres-daemon-'));
  });

  after(async () => {
    await github?.close();
    await registry?.remove();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('a CI_ROLE=server process needs no engine: it reaches none, keeps no checkouts, loads no engine module, and /healthz says it builds nothing', async () => {
    const serverData = await mkdtemp(path.join(tmpdir(), 'ci-server-role-'));
    // An engine address nothing answers at: a server that made a Docker client or probed it would say so.
    const nowhere = path.join(serverData, 'no-engine.sock');
    const daemon = await startDaemon({
      DATABASE_URL: await server.createDatabase(),
      CI_ROLE: 'server',
      WEBHOOK_SECRET: SECRET,
      ADMIN_TOKEN: 'server-role-admin-token-0123',
      DATA_DIR: serverData,
      DOCKER_HOST: `unix://${nowhere}`,
      GITHUB_API_URL: github.url,
      REGISTRY: registry.address,
      // Node names each CommonJS module it loads (express, dockerode, gRPC are): what the process carries in memory.
      NODE_DEBUG: 'module',
    });
    try {
      const health = (await (await fetch(`${daemon.url}/healthz`)).json()) as { status: string; docker: string; engine?: unknown };
      assert.equal(health.status, 'ok', JSON.stringify(health));
      assert.equal(health.docker, 'not used: this process builds nothing (CI_ROLE=server)');
      assert.equal(health.engine, undefined);
      assert.deepEqual((await readdir(serverData)).filter((name) => name === 'checkouts'), [], 'no checkouts folder');
      // Its own log, without Node's debug lines about modules.
      const log = daemon.output().replace(/^MODULE \d+: .*$/gm, '');
      assert.match(log, /"msg":"ci_service listening"/);
      assert.doesNotMatch(log, /Docker engine|building with|no-engine\.sock/);
      const loaded = packagesLoaded(await outputOnceStopped(daemon));
      assert.ok(loaded.has('express'), `it serves: ${[...loaded].join(', ')}`);
      for (const engineOnly of ['dockerode', 'docker-modem', 'ssh2', '@grpc/grpc-js']) assert.ok(!loaded.has(engineOnly), `a server loaded ${engineOnly}`);
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.exited;
      await rm(serverData, { recursive: true, force: true });
    }
  });

  it('a CI_ROLE=worker process serves nothing, and loads no HTTP framework', async () => {
    const workerData = await mkdtemp(path.join(tmpdir(), 'ci-worker-role-'));
    const daemon = await startDaemon(
      { DATABASE_URL: await server.createDatabase(), CI_ROLE: 'worker', WORKER_NAME: 'lean-worker', DATA_DIR: workerData, GITHUB_API_URL: github.url, REGISTRY: registry.address, NODE_DEBUG: 'module' },
      { waitUntilUp: false },
    );
    try {
      await waitFor(async () => daemon.output().includes('"msg":"taking builds from the shared queue"'), 30_000, `the worker to start:\n${daemon.output().slice(-2000)}`);
      const loaded = packagesLoaded(await outputOnceStopped(daemon));
      assert.ok(loaded.has('dockerode') && loaded.has('@grpc/grpc-js'), `it builds: ${[...loaded].join(', ')}`);
      assert.ok(!loaded.has('express'), 'a worker loaded express');
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.exited;
      await rm(workerData, { recursive: true, force: true });
    }
  });

  it('stores builds in PostgreSQL; while it is down a delivery gets 503, never a 202, and is taken once it is back', async () => {
    const url = await server.createDatabase();
    const daemon = await startDaemon({ WEBHOOK_SECRET: SECRET, GITHUB_API_URL: github.url, REGISTRY: registry.address, DATA_DIR: dataDir, DATABASE_URL: url });
    try {
      const health = (await (await fetch(`${daemon.url}/healthz`)).json()) as Record<string, unknown>;
      assert.deepEqual({ database: health.database, store: health.store }, { database: 'ok', store: 'postgresql' });

      const first = await github.addRepository('octo-org/on-postgres', path.join(FIXTURES, 'hello'), { image: 'ci-test/on-postgres' });
      const accepted = await sendDelivery(daemon.url, mergedPullRequest(first, first.sha), { secret: SECRET });
      assert.equal(accepted.status, 202);
      const { build } = (await accepted.json()) as { build: { id: string } };
      assert.equal((await daemon.waitForBuild(build.id, (b) => b.status === 'succeeded' || b.status === 'failed')).status, 'succeeded');
      const reader = await PostgresBuildStore.connect(url);
      assert.equal((await reader.get(build.id))?.status, 'succeeded', 'the record is in PostgreSQL');
      await reader.close();

      await server.stop();
      const second = await github.addRepository('octo-org/on-postgres', path.join(FIXTURES, 'hello'), {
        image: 'ci-test/on-postgres',
        extraFiles: { 'dockerInfo.json': JSON.stringify({ service_name: 'ci-test/on-postgres', version: '1.0.1' }) },
      });
      const delivery = mergedPullRequest(second, second.sha);
      // GitHub redelivers with the same delivery id.
      const deliveryId = randomUUID();
      const refused = await sendDelivery(daemon.url, delivery, { secret: SECRET, deliveryId });
      assert.equal(refused.status, 503);
      assert.match(((await refused.json()) as { error: string }).error, /not stored: redeliver it/);
      const down = await fetch(`${daemon.url}/healthz`);
      assert.equal(down.status, 503);
      assert.match(((await down.json()) as { database: string }).database, /^down: /);

      await server.start();
      const redelivered = await sendDelivery(daemon.url, delivery, { secret: SECRET, deliveryId });
      assert.equal(redelivered.status, 202);
      const again = (await redelivered.json()) as { build: { id: string } };
      assert.equal((await daemon.waitForBuild(again.build.id, (b) => b.status === 'succeeded' || b.status === 'failed')).status, 'succeeded');
    } finally {
      daemon.child.kill('SIGKILL');
      await server.start().catch(() => {});
    }
  });
});

/** The npm packages a process loaded, from the lines NODE_DEBUG=module writes for each CommonJS module it loads. */
function packagesLoaded(output: string): Set<string> {
  const packages = new Set<string>();
  for (const [, name] of output.matchAll(/^MODULE \d+: load "[^"]*\/node_modules\/((?:@[^/"]+\/)?[^/"]+)\//gm)) packages.add(name!);
  return packages;
}

/** All a daemon wrote, once it has stopped: its debug lines (stderr) may arrive after its log says it is up (stdout). */
async function outputOnceStopped(daemon: Daemon): Promise<string> {
  const closed = new Promise((resolve) => daemon.child.once('close', resolve));
  daemon.child.kill('SIGTERM');
  await closed;
  return daemon.output();
}
