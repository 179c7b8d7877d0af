import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PushError } from '../../src/domain/errors.js';
import type { BuildRequest } from '../../src/domain/build-request.js';
import { createLogger } from '../../src/logger.js';
import { BuildWorker, type RunBuild } from '../../src/queue/build-worker.js';
import { SqliteBuildStore } from '../../src/queue/sqlite-build-store.js';
import { logOf } from '../support/store-log.js';

const logger = createLogger('silent');
const options = { concurrency: 1, timeoutMs: 10_000, retry: { retries: 0, baseDelayMs: 1, maxDelayMs: 1 }, logger, workerName: 'unit-worker' };

function request(n: number, repository = `o/r${n}`): BuildRequest {
  const [owner, name] = repository.split('/') as [string, string];
  return {
    deliveryId: `delivery-${n}`,
    repository: { owner, name, fullName: repository, htmlUrl: `https://github.com/${repository}`, private: false },
    sha: String(n).padStart(40, '0'),
    trigger: { kind: 'merge', prNumber: n, baseRef: 'main' },
  };
}

async function add(store: SqliteBuildStore, req: BuildRequest) {
  const outcome = await store.add(req, new Date(), 1000);
  assert.equal(outcome.kind, 'created');
  return (outcome as { build: import('../../src/domain/build-record.js').BuildRecord }).build;
}

/** The pull request number each test request carries. */
function number(req: BuildRequest): number {
  return req.trigger.kind === 'release' ? 0 : req.trigger.prNumber;
}

const succeed: RunBuild = async (req) => ({ image: `reg/app:${number(req)}`, tags: [`reg/app:${number(req)}`], digest: `sha256:${number(req)}`, engineCleanUp: Promise.resolve() });

describe('build worker', () => {
  it('a run another worker took over stops, and records neither its lines nor its outcome', async () => {
    const store = new SqliteBuildStore(':memory:');
    const build = await add(store, request(1));
    let sawAbort = false;
    const run: RunBuild = async (req, session) => {
      session.reporter.log('before the takeover');
      await new Promise((resolve) => setTimeout(resolve, 20));
      // Meanwhile this worker stopped answering, and another one took the build up.
      await store.claim(build.id, 'other-worker', new Date());
      session.reporter.log('after the takeover');
      await new Promise((resolve) => setTimeout(resolve, 20));
      sawAbort = session.signal.aborted;
      return succeed(req, session);
    };
    const worker = new BuildWorker(store, run, options);
    worker.submit(build);
    await worker.onIdle();
    const after = await store.get(build.id);
    assert.deepEqual([after?.status, after?.attempt, after?.worker], ['running', 2, 'other-worker'], 'the new run owns the build');
    assert.equal(after?.digest, undefined);
    assert.equal(await logOf(store, build.id), '[ci_service] before the takeover\n');
    assert.ok(sawAbort, 'the stale run was told to stop');
  });

  it('records a build as succeeded once pushed, and is idle only once the engine has been cleaned up', async () => {
    const store = new SqliteBuildStore(':memory:');
    const build = await add(store, request(1));
    let cleanedUp = false;
    let statusDuringCleanUp: string | undefined;
    const run: RunBuild = async (req, session) => {
      const pushed = await succeed(req, session);
      const engineCleanUp = new Promise<void>((resolve) => setTimeout(resolve, 30)).then(async () => {
        statusDuringCleanUp = (await store.get(build.id))?.status;
        cleanedUp = true;
      });
      return { ...pushed, engineCleanUp };
    };
    const worker = new BuildWorker(store, run, options);
    worker.submit(build);
    await worker.onIdle();
    assert.equal(statusDuringCleanUp, 'succeeded', 'the clean-up is not in the build\'s time');
    assert.ok(cleanedUp, 'onIdle waited for it');
  });

  it('never runs more than BUILD_CONCURRENCY builds at once, and runs them all', async () => {
    const store = new SqliteBuildStore(':memory:');
    let running = 0;
    let peak = 0;
    const run: RunBuild = async (req, session) => {
      running += 1;
      peak = Math.max(peak, running);
      session.reporter.imageResolved(`reg/app:${number(req)}`, [`reg/app:${number(req)}`]);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running -= 1;
      return succeed(req, session);
    };
    const worker = new BuildWorker(store, run, { ...options, concurrency: 3 });
    for (let n = 0; n < 12; n += 1) worker.submit(await add(store, request(n)));
    assert.deepEqual(worker.counts(), { queued: 9, running: 3 });
    await worker.onIdle();
    assert.equal(peak, 3);
    const builds = await store.list(100);
    assert.equal(builds.length, 12);
    assert.ok(builds.every((build) => build.status === 'succeeded' && build.digest === `sha256:${number(build.request)}`));
  });

  it('runs builds of one repository one at a time, in the order their deliveries arrived', async () => {
    const store = new SqliteBuildStore(':memory:');
    const order: string[] = [];
    const run: RunBuild = async (req, session) => {
      order.push(`start ${req.repository.fullName}#${number(req)}`);
      await new Promise((resolve) => setTimeout(resolve, number(req) === 1 ? 30 : 1));
      order.push(`end ${req.repository.fullName}#${number(req)}`);
      return succeed(req, session);
    };
    const worker = new BuildWorker(store, run, { ...options, concurrency: 4 });
    const builds = [await add(store, request(1, 'o/app')), await add(store, request(2, 'o/app')), await add(store, request(3, 'o/other')), await add(store, request(4, 'o/app'))];
    // Slots are free for all four, yet o/app's later builds wait for the slow first one.
    for (const build of builds) worker.submit(build);
    await worker.onIdle();
    const app = order.filter((line) => line.includes('o/app'));
    assert.deepEqual(app, ['start o/app#1', 'end o/app#1', 'start o/app#2', 'end o/app#2', 'start o/app#4', 'end o/app#4']);
    assert.ok(order.indexOf('start o/other#3') < order.indexOf('end o/app#1'), 'another repository does not wait');
  });

  it('gives a timed-out build\'s slot to the next build only once the first has stopped', async () => {
    const store = new SqliteBuildStore(':memory:');
    const events: string[] = [];
    const run: RunBuild = async (req, session) => {
      events.push(`start #${number(req)}`);
      // Stops 200 ms after its abort, as an engine winding a build down does.
      if (number(req) === 1) await new Promise((resolve) => session.signal.addEventListener('abort', () => setTimeout(resolve, 200)));
      events.push(`stopped #${number(req)}`);
      return succeed(req, session);
    };
    const worker = new BuildWorker(store, run, { ...options, concurrency: 1, timeoutMs: 50 });
    const first = await add(store, request(1, 'o/a'));
    const second = await add(store, request(2, 'o/b'));
    worker.submit(first);
    worker.submit(second);
    await worker.onIdle();
    assert.deepEqual(events, ['start #1', 'stopped #1', 'start #2', 'stopped #2']);
    assert.equal((await store.get(first.id))?.failedStage, 'timeout');
    assert.equal((await store.get(second.id))?.status, 'succeeded');
  });

  it('fails a build that outlives BUILD_TIMEOUT_S with that reason, even if it ignores its abort signal', async () => {
    const store = new SqliteBuildStore(':memory:');
    const worker = new BuildWorker(store, () => new Promise(() => {}), { ...options, timeoutMs: 50, stopWaitMs: 100 });
    const build = await add(store, request(1));
    worker.submit(build);
    await worker.onIdle();
    const failed = await store.get(build.id);
    assert.equal(failed?.status, 'failed');
    assert.equal(failed?.failedStage, 'timeout');
    assert.match(failed?.error ?? '', /did not finish within BUILD_TIMEOUT_S=0 s/);
  });

  it('retries a transient failure with backoff, each attempt in the log, and fails a permanent one at once', async () => {
    const store = new SqliteBuildStore(':memory:');
    let calls = 0;
    const flaky: RunBuild = async (req, session) =>
      session.retry('pushing reg/app:1', async () => {
        calls += 1;
        if (calls < 3) throw new PushError('registry unreachable', true);
        return succeed(req, session);
      });
    const worker = new BuildWorker(store, flaky, { ...options, retry: { retries: 3, baseDelayMs: 5, maxDelayMs: 20 } });
    const build = await add(store, request(1));
    worker.submit(build);
    await worker.onIdle();
    assert.equal((await store.get(build.id))?.status, 'succeeded');
    assert.equal(calls, 3);
    const log = (await logOf(store, build.id)) ?? '';
    assert.match(log, /pushing reg\/app:1 failed \(registry unreachable\); retry 1 of 3 in/);
    assert.match(log, /retry 2 of 3/);

    let permanentCalls = 0;
    const permanent: RunBuild = (_req, session) =>
      session.retry('pushing', async () => {
        permanentCalls += 1;
        throw new PushError('unauthorized: authentication required');
      });
    const strict = new BuildWorker(store, permanent, { ...options, retry: { retries: 3, baseDelayMs: 5, maxDelayMs: 20 } });
    const second = await add(store, request(2));
    strict.submit(second);
    await strict.onIdle();
    assert.equal(permanentCalls, 1);
    assert.equal((await store.get(second.id))?.error, 'unauthorized: authentication required');
  });

  it('records the stage and message of a failure, and the log lines in order, its own told apart from the build\'s', async () => {
    const store = new SqliteBuildStore(':memory:');
    const failing: RunBuild = async (_req, session) => {
      session.reporter.log('first');
      session.reporter.output('#1 \x1b[31mbuild output\x1b[0m');
      session.reporter.log('second');
      throw new PushError('pushing reg/app:1 failed: connection refused');
    };
    const worker = new BuildWorker(store, failing, options);
    const build = await add(store, request(1));
    worker.submit(build);
    await worker.onIdle();
    const failed = await store.get(build.id);
    assert.equal(failed?.failedStage, 'push');
    assert.equal(failed?.error, 'pushing reg/app:1 failed: connection refused');
    assert.equal(
      await logOf(store, build.id),
      '[ci_service] first\n#1 build output\n[ci_service] second\n[ci_service] FAILED (push): pushing reg/app:1 failed: connection refused\n',
    );
  });

  it('after pause() starts nothing more, and resumeUnfinished() takes up what was left', async () => {
    const store = new SqliteBuildStore(':memory:');
    const worker = new BuildWorker(store, succeed, options);
    worker.pause();
    const queued = await add(store, request(1));
    worker.submit(queued);
    await worker.onIdle();
    assert.equal((await store.get(queued.id))?.status, 'queued');
    const crashed = await add(store, request(2));
    await store.update(crashed.id, { status: 'running', startedAt: new Date() });

    const next = new BuildWorker(store, succeed, options);
    assert.equal(await next.resumeUnfinished(), 2);
    await next.onIdle();
    for (const id of [queued.id, crashed.id]) {
      const build = await store.get(id);
      assert.equal(build?.status, 'succeeded');
      assert.equal(build?.resumed, true);
    }
    assert.match((await logOf(store, crashed.id)) ?? '', /resumed: ci_service stopped while this build ran/);
  });
});
