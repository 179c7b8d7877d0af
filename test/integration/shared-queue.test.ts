import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BuildView } from '../../src/http/build-view.js';
import { PostgresBuildStore } from '../../src/queue/postgres-build-store.js';
import { TAKEOVER_BOUND_SECONDS } from '../../src/queue/shared-queue.js';
import { startDaemon, type Daemon } from '../support/daemon.js';
import { mergedPullRequest, pullRequestEvent, sendDelivery } from '../support/deliveries.js';
import { BUSYBOX_IMAGE, docker, engineRuns, ensureBusyboxImage, secondEngine } from '../support/docker-environment.js';
import { GitHubStandIn, type StandInRepository } from '../support/github-stand-in.js';
import { LocalPostgres } from '../support/postgres.js';
import { LocalRegistry, waitFor } from '../support/registry.js';
import { pushPlatformBase } from '../support/platform-base.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const SECRET = 'shared-queue-secret';


/**
 * Servers and workers as separate processes (CI_ROLE), on a real PostgreSQL, two real Docker engines and one
 * registry: what a team runs when builds outgrow one host.
 */
describe('one build queue on PostgreSQL, many build hosts (real processes)', () => {
  const postgres = new LocalPostgres();
  let github: GitHubStandIn;
  let registry: LocalRegistry;
  let url: string;
  let base: string;
  let secondHost: string;
  const folders: string[] = [];
  const running: Daemon[] = [];
  const workers = new Map<string, Daemon>();
  let server: Daemon;

  before(async () => {
    await postgres.start();
    url = await postgres.createDatabase();
    github = await new GitHubStandIn().start();
    registry = await new LocalRegistry().start();
    // The base comes from the registry, so that either engine has it.
    await ensureBusyboxImage();
    base = `${registry.address}/ci-test/shared-base:1`;
    await docker.getImage(BUSYBOX_IMAGE).tag({ repo: `${registry.address}/ci-test/shared-base`, tag: '1' });
    const push = await docker.getImage(base).push({ authconfig: {} });
    await new Promise((resolve, reject) => docker.modem.followProgress(push, (error) => (error ? reject(error) : resolve(undefined))));
    const engine = await secondEngine();
    if (!('host' in engine)) throw new Error(engine.unavailable);
    secondHost = engine.host;
  });

  after(async () => {
    for (const daemon of running) daemon.child.kill('SIGKILL');
    await github?.close();
    await registry?.remove();
    await postgres.remove();
    await Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true })));
  });

  async function start(role: 'server' | 'worker', name: string, env: Record<string, string> = {}): Promise<Daemon> {
    const dataDir = await mkdtemp(path.join(tmpdir(), `ci-${name}-`));
    folders.push(dataDir);
    const daemon = await startDaemon(
      // A worker checks no delivery: it runs without a webhook secret.
      { CI_ROLE: role, WORKER_NAME: name, DATABASE_URL: url, ...(role === 'server' ? { WEBHOOK_SECRET: SECRET } : {}), GITHUB_API_URL: github.url, REGISTRY: registry.address, DATA_DIR: dataDir, BUILD_CONCURRENCY: '1', ...env },
      { waitUntilUp: role === 'server' },
    );
    running.push(daemon);
    if (role === 'worker') workers.set(name, daemon);
    if (role === 'worker') await waitFor(async () => daemon.output().includes('taking builds from the shared queue'), 20_000, `worker ${name}:\n${daemon.output()}`);
    return daemon;
  }

  /** A repository whose build takes a while: long enough to kill or freeze the worker running it. */
  function slowRepository(name: string, seconds: number): Promise<StandInRepository> {
    return github.addRepository(`octo-org/${name}`, path.join(FIXTURES, 'hello'), {
      image: `ci-test/${name}`,
      // A step of its own (no cache hit from an earlier build or run): it really takes `seconds`.
      extraFiles: { Dockerfile: `FROM ${base}\nRUN echo ${randomUUID()} && sleep ${seconds}\nCOPY message.txt /message.txt\n` },
    });
  }

  async function deliver(server: Daemon, repository: StandInRepository): Promise<string> {
    const response = await sendDelivery(server.url, mergedPullRequest(repository, repository.sha), { secret: SECRET });
    assert.equal(response.status, 202, await response.clone().text());
    return ((await response.json()) as { build: { id: string } }).build.id;
  }

  const finished = (build: BuildView) => build.status !== 'queued' && build.status !== 'running';

  it('builds spread over workers on two engines; each build says which worker ran it', async () => {
    server = await start('server', 'server-1');
    await start('worker', 'worker-a');
    await start('worker', 'worker-b', { DOCKER_HOST: secondHost });
    const health = (await (await fetch(`${server.url}/healthz`)).json()) as Record<string, string>;
    assert.match(health.docker!, /^not used/);
    const ids = await Promise.all([1, 2, 3, 4].map(async (n) => deliver(server, await slowRepository(`spread-${n}`, 2))));
    const builds = await Promise.all(ids.map((id) => server.waitForBuild(id, finished, 90_000)));
    assert.ok(builds.every((build) => build.status === 'succeeded'), JSON.stringify(builds));
    assert.deepEqual([...new Set(builds.map((build) => build.worker))].sort(), ['worker-a', 'worker-b']);
    for (const n of [1, 2, 3, 4]) assert.deepEqual((await registry.tags(`ci-test/spread-${n}`)).sort(), ['1.0.0', 'latest']);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /ci_service_worker_last_seen_seconds\{worker="worker-a"\} \d+/);
    assert.match(metrics, /ci_service_worker_last_seen_seconds\{worker="worker-b"\} \d+/);
    assert.match(metrics, /ci_service_queue_depth\{state="queued"\} 0/);
  });

  it('a two-platform build is split: each platform is built by a worker whose engine builds it natively, and the index holds both', async () => {
    // The second engine stands in for an arm64 host: it is told that arm64 is what it builds natively.
    await pushPlatformBase(registry.url, 'ci-test/platform-base', '1');
    await start('worker', 'worker-arm64', { DOCKER_HOST: secondHost, NATIVE_PLATFORMS: 'linux/arm64' });
    const repository = await github.addRepository('octo-org/split-platforms', path.join(FIXTURES, 'multi-platform'), {
      extraFiles: {
        'nonce.txt': randomUUID(),
        'dockerInfo.json': JSON.stringify({ service_name: 'ci-test/split-platforms', version: '1.0.0', platforms: ['linux/amd64', 'linux/arm64'], build_args: { BASE: `${registry.address}/ci-test/platform-base:1` } }),
      },
    });
    const build = await server.waitForBuild(await deliver(server, repository), finished, 120_000);
    assert.equal(build.status, 'succeeded', build.error);
    const byPlatform = Object.fromEntries((build.platforms ?? []).map((image) => [image.platform, image]));
    assert.equal(byPlatform['linux/arm64']?.worker, 'worker-arm64', JSON.stringify(build.platforms));
    assert.ok(byPlatform['linux/amd64'] && byPlatform['linux/amd64'].worker !== 'worker-arm64', JSON.stringify(build.platforms));
    assert.deepEqual([byPlatform['linux/amd64']!.how, byPlatform['linux/arm64']!.how], ['native', 'native']);
    // Any worker may take the build itself; it builds one platform and hands the other to another worker, whose
    // log joins the build's under that platform, with the line saying who built it.
    const handedOver = (build.platforms ?? []).find((image) => image.worker !== build.worker);
    assert.ok(handedOver, `one platform is built by a worker other than the build's own (${build.worker}): ${JSON.stringify(build.platforms)}`);
    const log = await (await fetch(`${server.url}/builds/${build.id}/log?platform=${handedOver.platform}`)).text();
    assert.match(log, new RegExp(`built and pushed by worker ${handedOver.worker} in `));
    assert.match(log, /RUN uname -m/, "the other worker's build log is in the build's own");
    const index = (await (await fetch(`${registry.url}/v2/ci-test/split-platforms/manifests/1.0.0`, { headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json' } })).json()) as {
      manifests: { digest: string; platform: { architecture: string }; annotations?: Record<string, string> }[];
    };
    // On a containerd store each image has its provenance beside it (tested in multi-platform.test.ts).
    const images = index.manifests.filter((manifest) => manifest.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
    assert.deepEqual(images.map((manifest) => [manifest.platform.architecture, manifest.digest]), [
      ['amd64', byPlatform['linux/amd64']!.digest],
      ['arm64', byPlatform['linux/arm64']!.digest],
    ]);
    assert.deepEqual(await registry.tags('ci-test/split-platforms'), ['1.0.0']);
    workers.get('worker-arm64')!.child.kill('SIGKILL');
  });

  it('builds of one repository run one at a time in delivery order on whichever worker; their log lines reach any server live', async () => {
    const other = await start('server', 'server-live');
    const first = await slowRepository('ordered', 4);
    const second = await github.addRepository('octo-org/ordered', path.join(FIXTURES, 'hello'), {
      image: 'ci-test/ordered',
      extraFiles: { Dockerfile: `FROM ${base}\nRUN echo ${randomUUID()} && sleep 1\nCOPY message.txt /message.txt\n`, 'dockerInfo.json': JSON.stringify({ service_name: 'ci-test/ordered', version: '1.0.1' }) },
    });
    const firstId = await deliver(server, first);
    const secondId = await deliver(other, second);
    // While the first builds, the other server shows its log as the worker writes it.
    await server.waitForBuild(firstId, (build) => build.status === 'running', 30_000);
    await waitFor(async () => /&& sleep 4/.test(await (await fetch(`${other.url}/builds/${firstId}/log`)).text()), 30_000, 'the first build\'s log on the other server');
    assert.equal((await other.waitForBuild(secondId, () => true)).status, 'queued', 'the second waits for the first, with a worker free');
    const [one, two] = [await server.waitForBuild(firstId, finished, 60_000), await server.waitForBuild(secondId, finished, 60_000)];
    assert.deepEqual([one.status, two.status], ['succeeded', 'succeeded']);
    assert.ok(Date.parse(two.startedAt!) >= Date.parse(one.finishedAt!), `second started ${two.startedAt}, first finished ${one.finishedAt}`);
    other.child.kill('SIGKILL');
  });

  it('a pull request\'s new head, delivered to a server, cancels its older build on whichever worker runs it; that engine stops it', async () => {
    const older = await slowRepository('pr-across-hosts', 43);
    const first = await sendDelivery(server.url, pullRequestEvent(older, older.sha, { number: 3 }), { secret: SECRET });
    assert.equal(first.status, 202, await first.clone().text());
    const olderId = ((await first.json()) as { build: BuildView }).build.id;
    await waitFor(() => engineRuns('sleep 43'), 60_000, 'the older head building on a worker\'s engine');
    const newer = await github.addRepository('octo-org/pr-across-hosts', path.join(FIXTURES, 'hello'), { image: 'ci-test/pr-across-hosts' });
    const second = await sendDelivery(server.url, pullRequestEvent(newer, newer.sha, { number: 3, action: 'synchronize' }), { secret: SECRET });
    assert.deepEqual(((await second.json()) as { cancelled: string[] }).cancelled, [olderId]);
    await waitFor(async () => !(await engineRuns('sleep 43')), 15_000, 'the worker\'s engine to stop the cancelled step');
    const cancelled = await server.waitForBuild(olderId, finished);
    assert.deepEqual([cancelled.status, cancelled.cancelReason], ['cancelled', `superseded by ${newer.sha.slice(0, 7)}, a newer head of pull request #3`]);
    const worker = workers.get(cancelled.worker!)!;
    await waitFor(async () => worker.output().includes('build cancelled: this run stops'), 10_000, `the worker says it stopped:\n${worker.output()}`);
    assert.equal((await server.waitForBuild(olderId, finished)).status, 'cancelled', 'and it recorded nothing over the cancel');
  });

  it('a worker killed with kill -9 mid-build: another worker runs the build again, and it succeeds once', async () => {
    const id = await deliver(server, await slowRepository('killed', 6));
    const claimed = await server.waitForBuild(id, (build) => build.status === 'running' && build.worker !== undefined, 30_000);
    const victim = workers.get(claimed.worker!)!;
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    const taken = await server.waitForBuild(id, (build) => build.worker !== claimed.worker && build.status === 'running', 60_000);
    const takenAfterS = (Date.now() - killedAt) / 1000;
    // What the README promises, from the queue's own settings (plus this test's polling of the server, 0.5 s).
    assert.ok(takenAfterS <= TAKEOVER_BOUND_SECONDS + 1, `taken up again ${takenAfterS} s after the kill; the bound is ${TAKEOVER_BOUND_SECONDS} s`);
    const done = await server.waitForBuild(id, finished, 60_000);
    assert.equal(done.status, 'succeeded', done.error);
    assert.equal(done.resumed, true);
    assert.notEqual(taken.worker, claimed.worker);
    assert.deepEqual((await registry.tags('ci-test/killed')).sort(), ['1.0.0', 'latest']);
    workers.delete(claimed.worker!);
    await start('worker', `${claimed.worker}-again`, claimed.worker!.startsWith('worker-b') ? { DOCKER_HOST: secondHost } : {});
  });

  it('a frozen worker (SIGSTOP) loses its build to another; woken, it records nothing and pushes nothing', async () => {
    const id = await deliver(server, await slowRepository('frozen', 8));
    const claimed = await server.waitForBuild(id, (build) => build.status === 'running' && build.worker !== undefined, 30_000);
    const frozen = workers.get(claimed.worker!)!;
    frozen.child.kill('SIGSTOP');
    const done = await server.waitForBuild(id, (build) => finished(build) && build.worker !== claimed.worker, 90_000).catch((error: Error) => {
      throw new Error(`${error.message}\nserver:\n${server.output().slice(-3000)}\nworkers:\n${[...workers.values()].map((w) => w.output().slice(-3000)).join('\n---\n')}`);
    });
    assert.equal(done.status, 'succeeded', done.error);
    const digest = await registry.digest('ci-test/frozen', '1.0.0');
    frozen.child.kill('SIGCONT');
    // Awake: its run sees it lost the build (its lock's session is gone, its writes are refused).
    await waitFor(async () => /records nothing|lost its image lock/.test(frozen.output()), 30_000, `the woken worker:\n${frozen.output()}`);
    const after = await server.waitForBuild(id, () => true);
    assert.deepEqual([after.status, after.worker, after.digest], ['succeeded', done.worker, done.digest], 'the woken run changed nothing');
    assert.equal(await registry.digest('ci-test/frozen', '1.0.0'), digest, 'and pushed nothing over the newer run');
  });

  it('the same delivery sent to two servers at once makes one build; 100 deliveries in a burst across two servers are all built once', async () => {
    const second = await start('server', 'server-2');
    const repository = await github.addRepository('octo-org/twice', path.join(FIXTURES, 'hello'), { image: 'ci-test/twice' });
    const payload = mergedPullRequest(repository, repository.sha);
    const deliveryId = randomUUID();
    const answers = await Promise.all([server, second].map((target) => sendDelivery(target.url, payload, { secret: SECRET, deliveryId })));
    assert.deepEqual(answers.map((answer) => answer.status).sort(), [200, 202]);

    const repositories = await Promise.all(Array.from({ length: 100 }, (_, n) => github.addRepository(`octo-org/burst-${n}`, path.join(FIXTURES, 'hello'), { image: `ci-test/burst-${n}` })));
    const accepted = await Promise.all(repositories.map((each, n) => sendDelivery((n % 2 === 0 ? server : second).url, mergedPullRequest(each, each.sha), { secret: SECRET })));
    assert.deepEqual([...new Set(accepted.map((answer) => answer.status))], [202]);
    const ids = await Promise.all(accepted.map(async (answer) => ((await answer.json()) as { build: { id: string } }).build.id));
    const store = await PostgresBuildStore.connect(url);
    try {
      await waitFor(async () => (await Promise.all(ids.map((id) => store.get(id)))).every((build) => build?.status === 'succeeded' || build?.status === 'failed'), 240_000, 'the burst to finish');
      const builds = await Promise.all(ids.map((id) => store.get(id)));
      assert.ok(builds.every((build) => build?.status === 'succeeded'), JSON.stringify(builds.filter((build) => build?.status !== 'succeeded')));
      assert.ok(builds.every((build) => build?.attempt === 1), 'each built once');
      const all = await store.list(1000);
      for (const each of repositories) assert.equal(all.filter((build) => build.request.repository.fullName === each.fullName).length, 1);
      assert.equal(all.filter((build) => build.request.repository.fullName === 'octo-org/twice').length, 1);
    } finally {
      await store.close();
    }
  });

  it('PostgreSQL restarted during a build: deliveries meanwhile get 503, and the build ends succeeded once', async () => {
    const id = await deliver(server, await slowRepository('restart', 6));
    await server.waitForBuild(id, (build) => build.status === 'running', 30_000);
    await postgres.stop();
    const meanwhile = await github.addRepository('octo-org/during-restart', path.join(FIXTURES, 'hello'), { image: 'ci-test/during-restart' });
    const refused = await sendDelivery(server.url, mergedPullRequest(meanwhile, meanwhile.sha), { secret: SECRET });
    assert.equal(refused.status, 503);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await postgres.start();
    const done = await server.waitForBuild(id, finished, 120_000);
    assert.equal(done.status, 'succeeded', done.error);
    assert.deepEqual((await registry.tags('ci-test/restart')).sort(), ['1.0.0', 'latest']);
    const store = await PostgresBuildStore.connect(url);
    try {
      const all = await store.list(1000);
      assert.equal(all.filter((build) => build.request.repository.fullName === 'octo-org/restart').length, 1, 'one build, never doubled');
      assert.equal(all.filter((build) => build.request.repository.fullName === 'octo-org/during-restart').length, 0, 'the refused delivery stored nothing');
    } finally {
      await store.close();
    }
  });
});
