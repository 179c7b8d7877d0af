import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BuildView } from '../../src/http/build-view.js';
import { startDaemon } from '../support/daemon.js';
import { mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { dockerUnavailable, ensureBusyboxImage } from '../support/docker-environment.js';
import { GitHubStandIn, type StandInRepository, type TarballBreak } from '../support/github-stand-in.js';
import { freePort, LocalRegistry, waitFor } from '../support/registry.js';
import { startTestService, TEST_SECRET, type TestService } from '../support/service-harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const skip = await dockerUnavailable();

describe('nothing accepted is lost (real engine, registry and SQLite)', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;

  before(async () => {
    await ensureBusyboxImage();
    github = await new GitHubStandIn().start();
    registry = await new LocalRegistry().start();
  });

  after(async () => {
    await github?.close();
    await registry?.remove();
  });

  /** A repository whose build takes a few seconds, never served from the build cache. */
  function slowRepository(name: string): Promise<StandInRepository> {
    return github.addRepository(`octo-org/${name}`, path.join(FIXTURES, 'slow'), { extraFiles: { 'nonce.txt': randomUUID() }, image: `ci-test/${name}` });
  }

  async function accept(url: string, repository: StandInRepository, deliveryId = randomUUID()): Promise<string> {
    const response = await sendDelivery(url, mergedPullRequest(repository, repository.sha), { secret: TEST_SECRET, deliveryId });
    assert.equal(response.status, 202, await response.clone().text());
    return ((await response.json()) as { build: BuildView }).build.id;
  }

  function daemonEnv(dataDir: string): Record<string, string> {
    return { WEBHOOK_SECRET: TEST_SECRET, GITHUB_API_URL: github.url, REGISTRY: registry.address, DATA_DIR: dataDir, BUILD_CONCURRENCY: '1' };
  }

  it('kill -9 during a build, then a new start: the build ends succeeded, exactly once', async () => {
    const dataDir = path.join(github.workDirectory, 'kill-9');
    const repository = await slowRepository('kill-nine');
    const first = await startDaemon(daemonEnv(dataDir));
    const id = await accept(first.url, repository);
    await first.waitForBuild(id, (build) => build.status === 'running');
    await waitFor(async () => /building slowly/.test(await (await fetch(`${first.url}/builds/${id}/log`)).text()), 30_000, 'the slow step');
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await startDaemon(daemonEnv(dataDir));
    try {
      const build = await second.waitForBuild(id, (b) => b.status === 'succeeded' || b.status === 'failed');
      assert.equal(build.status, 'succeeded', build.error);
      assert.equal(build.resumed, true);
      const all = ((await (await fetch(`${second.url}/builds`)).json()) as { builds: BuildView[] }).builds;
      assert.equal(all.filter((b) => b.sha === repository.sha).length, 1);
      const log = await (await fetch(`${second.url}/builds/${id}/log`)).text();
      assert.equal(log.match(/^\[ci_service\] pushed /gm)?.length, 1, log);
      assert.match(log, /resumed: ci_service stopped while this build ran/);
      assert.deepEqual(await registry.tags('ci-test/kill-nine'), ['1.0.0']);
    } finally {
      second.child.kill('SIGKILL');
    }
  });

  it('SIGTERM during a build: the build finishes, the process exits 0, queued builds wait for the next start', async () => {
    const dataDir = path.join(github.workDirectory, 'sigterm');
    const first = await startDaemon({ ...daemonEnv(dataDir), SHUTDOWN_GRACE_S: '60' });
    const ids = [await accept(first.url, await slowRepository('term-a')), await accept(first.url, await slowRepository('term-b'))];
    await first.waitForBuild(ids[0]!, (build) => build.status === 'running');
    first.child.kill('SIGTERM');
    await waitFor(async () => (await sendDelivery(first.url, {}, { secret: TEST_SECRET })).status === 503, 5_000, 'deliveries refused with 503');
    assert.equal(await first.exited, 0, first.output());

    const second = await startDaemon(daemonEnv(dataDir));
    try {
      const finished = await second.waitForBuild(ids[0]!, () => true);
      assert.equal(finished.status, 'succeeded', 'the running build finished before the exit');
      assert.equal(finished.resumed, false);
      const resumed = await second.waitForBuild(ids[1]!, (b) => b.status === 'succeeded' || b.status === 'failed');
      assert.equal(resumed.status, 'succeeded', resumed.error);
      assert.equal(resumed.resumed, true);
    } finally {
      second.child.kill('SIGKILL');
    }
  });

  describe('a tarball download that breaks off inside a file fails that build, never the daemon', () => {
    /** 4 MB of incompressible text: the cut at half the gzip's bytes lands inside this file. */
    function largeRepository(name: string): Promise<StandInRepository> {
      // The Dockerfile copies large.txt: BuildKit asks only for the files a Dockerfile uses.
      const extraFiles = { 'large.txt': randomBytes(2 * 1024 * 1024).toString('hex'), Dockerfile: 'FROM scratch\nCOPY . /\n' };
      return github.addRepository(`octo-org/${name}`, path.join(FIXTURES, 'hello'), { extraFiles, image: `ci-test/${name}` });
    }

    async function brokenBuild(daemon: Awaited<ReturnType<typeof startDaemon>>, how: TarballBreak): Promise<BuildView> {
      const repository = await largeRepository(`broken-${how}`);
      github.breakTarball(repository.sha, how);
      const id = await accept(daemon.url, repository);
      return daemon.waitForBuild(id, (build) => build.status === 'failed' || build.status === 'succeeded', 60_000);
    }

    it('truncated, reset or stalled past BUILD_TIMEOUT_S: each build fails with its reason, the daemon goes on building', async () => {
      const env = { ...daemonEnv(path.join(github.workDirectory, 'broken-downloads')), BUILD_TIMEOUT_S: '5', BUILD_RETRIES: '1', BUILD_RETRY_DELAY_MS: '100' };
      const daemon = await startDaemon(env);
      try {
        const truncated = await brokenBuild(daemon, 'truncate');
        assert.equal(truncated.failedStage, 'fetch', truncated.error);
        assert.match(truncated.error!, /tarball download broke off before its end \(unexpected end of file\)/);
        assert.match(await (await fetch(`${daemon.url}/builds/${truncated.id}/log`)).text(), /retry 1 of 1/, 'a broken download is retried');

        const reset = await brokenBuild(daemon, 'reset');
        assert.equal(reset.failedStage, 'fetch', reset.error);
        assert.match(reset.error!, /tarball download broke off before its end/);

        const stalled = await brokenBuild(daemon, 'stall');
        assert.equal(stalled.failedStage, 'timeout', stalled.error);
        assert.match(stalled.error!, /BUILD_TIMEOUT_S=5/);

        assert.equal(daemon.child.exitCode, null, daemon.output());
        const healthy = await daemon.waitForBuild(await accept(daemon.url, await largeRepository('after-broken')), (b) => b.status !== 'queued' && b.status !== 'running');
        assert.equal(healthy.status, 'succeeded', healthy.error);
        assert.equal(daemon.child.exitCode, null);
      } finally {
        daemon.child.kill('SIGKILL');
      }
    });

    it('the engine closes the connection carrying the context early: the build fails at the build stage, the daemon goes on', async () => {
      // A TCP hop to the engine that cuts any connection once it carried 512 KB towards the engine.
      const open = new Set<Socket>();
      const proxy: Server = createServer((client) => {
        const engine = connect('/var/run/docker.sock');
        let sent = 0;
        const cut = () => {
          client.destroy();
          engine.destroy();
        };
        for (const socket of [client, engine]) {
          open.add(socket);
          socket.on('close', () => open.delete(socket));
          socket.on('close', cut);
          socket.on('error', cut);
        }
        client.on('data', (chunk: Buffer) => {
          sent += chunk.length;
          if (sent > 512 * 1024) cut();
          else engine.write(chunk);
        });
        engine.pipe(client);
      });
      const port = await freePort();
      await new Promise<void>((resolve) => proxy.listen(port, '127.0.0.1', resolve));
      const env = { ...daemonEnv(path.join(github.workDirectory, 'engine-closes')), DOCKER_HOST: `tcp://127.0.0.1:${port}`, BUILD_RETRIES: '1', BUILD_RETRY_DELAY_MS: '100' };
      const daemon = await startDaemon(env);
      try {
        const id = await accept(daemon.url, await largeRepository('engine-closes'));
        const build = await daemon.waitForBuild(id, (b) => b.status === 'failed' || b.status === 'succeeded');
        assert.equal(build.status, 'failed');
        assert.equal(build.failedStage, 'build', build.error);
        assert.equal(daemon.child.exitCode, null, daemon.output());
        const small = await accept(daemon.url, await github.addRepository('octo-org/after-engine-closes', path.join(FIXTURES, 'hello'), { image: 'ci-test/after-engine-closes' }));
        assert.equal((await daemon.waitForBuild(small, (b) => b.status !== 'queued' && b.status !== 'running')).status, 'succeeded');
      } finally {
        daemon.child.kill('SIGKILL');
        proxy.close();
        for (const socket of open) socket.destroy();
      }
    });
  });

  describe('with the daemon in this process', () => {
    let ci: TestService;

    before(async () => {
      ci = await startTestService({ GITHUB_API_URL: github.url, REGISTRY: registry.address, BUILD_CONCURRENCY: '4', BUILD_RETRY_DELAY_MS: '1000' });
    });

    after(async () => {
      await ci?.stop();
    });

    async function finished(id: string): Promise<BuildView> {
      await ci.service.worker.onIdle();
      return ci.getBuild(id);
    }

    it('the registry is away when a build starts and comes back within the retry window: succeeded', async () => {
      const repository = await github.addRepository('octo-org/registry-outage', path.join(FIXTURES, 'hello'), { extraFiles: { 'nonce.txt': randomUUID() }, image: 'ci-test/registry-outage' });
      await registry.stop();
      let restarted = false;
      try {
        const id = await accept(ci.url, repository);
        await waitFor(async () => /retry 1 of 3/.test(await ci.getLog(id)), 30_000, 'a failed registry call to be retried');
        await registry.start(registry.port);
        restarted = true;
        const build = await finished(id);
        assert.equal(build.status, 'succeeded', build.error);
        // The first call to the registry (the check that the version is not published yet) met it away, and was retried.
        assert.match(await ci.getLog(id), /checking what ci-test\/registry-outage:1\.0\.0 holds failed \(the registry at .* is not reachable .*ECONNREFUSED.*\); retry 1 of 3/);
        assert.equal(build.digest, await registry.digest('ci-test/registry-outage', '1.0.0'));
      } finally {
        if (!restarted) await registry.start(registry.port);
      }
    });

    it('GitHub answers the first two tarball requests with 502: succeeded on the third', async () => {
      const repository = await github.addRepository('octo-org/flaky-github', path.join(FIXTURES, 'hello'), { image: 'ci-test/flaky-github' });
      github.failNext(new RegExp(`/tarball/${repository.sha}$`), 502, 2);
      const id = await accept(ci.url, repository);
      const build = await finished(id);
      assert.equal(build.status, 'succeeded', build.error);
      const log = await ci.getLog(id);
      assert.match(log, /GitHub answered 502 fetching the tarball .*retry 1 of 3/);
      assert.match(log, /retry 2 of 3/);
      assert.equal(github.requests.filter((request) => request.path.endsWith(`/tarball/${repository.sha}`)).length, 3);
    });

    it('the same delivery 20 times at once: one build', async () => {
      const repository = await github.addRepository('octo-org/redelivered', path.join(FIXTURES, 'hello'), { image: 'ci-test/redelivered' });
      const deliveryId = randomUUID();
      const payload = mergedPullRequest(repository, repository.sha);
      const responses = await Promise.all(Array.from({ length: 20 }, () => sendDelivery(ci.url, payload, { secret: TEST_SECRET, deliveryId })));
      const statuses = responses.map((response) => response.status).sort();
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 202]);
      const ids = new Set(await Promise.all(responses.map(async (response) => ((await response.json()) as { build: BuildView }).build.id)));
      assert.equal(ids.size, 1);
      assert.equal((await finished([...ids][0]!)).status, 'succeeded');
      assert.equal((await ci.service.store.list(1000)).filter((build) => build.request.sha === repository.sha).length, 1);
    });

    it('100 distinct merged deliveries in a burst: 100 accepted, 100 built, none lost', async () => {
      const repositories = await Promise.all(
        Array.from({ length: 100 }, (_, n) => github.addRepository(`octo-org/burst-${n}`, path.join(FIXTURES, 'hello'), { image: `ci-test/burst-${n}` })),
      );
      const responses = await Promise.all(
        repositories.map((repository) => sendDelivery(ci.url, mergedPullRequest(repository, repository.sha), { secret: TEST_SECRET })),
      );
      assert.deepEqual(new Set(responses.map((response) => response.status)), new Set([202]));
      const ids = await Promise.all(responses.map(async (response) => ((await response.json()) as { build: BuildView }).build.id));
      assert.equal(new Set(ids).size, 100);
      await ci.service.worker.onIdle();
      const builds = await Promise.all(ids.map((id) => ci.getBuild(id)));
      const failed = builds.filter((build) => build.status !== 'succeeded');
      assert.deepEqual(failed.map((build) => build.error), []);
    });
  });
});
