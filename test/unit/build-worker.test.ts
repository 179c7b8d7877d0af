import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { PushError } from '../../src/errors.js';
import type { BuildRequest } from '../../src/github/decide-build.js';
import { BuildWorker, type RunBuild } from '../../src/queue/build-worker.js';
import { MemoryBuildStore } from '../../src/queue/memory-build-store.js';

const logger = createLogger('silent');

function request(n: number): BuildRequest {
  return {
    deliveryId: `delivery-${n}`,
    repository: { owner: 'o', name: 'r', fullName: 'o/r', htmlUrl: 'https://github.com/o/r', private: false },
    sha: String(n).padStart(40, '0'),
    prNumber: n,
    baseRef: 'main',
  };
}

describe('build worker', () => {
  it(`never runs more than BUILD_CONCURRENCY builds at once, and runs them all`, async () => {
    const store = new MemoryBuildStore();
    let running = 0;
    let peak = 0;
    const run: RunBuild = async (req, reporter) => {
      running += 1;
      peak = Math.max(peak, running);
      reporter.imageResolved(`reg/app:${req.prNumber}`, [`reg/app:${req.prNumber}`]);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running -= 1;
      return { image: `reg/app:${req.prNumber}`, tags: [`reg/app:${req.prNumber}`], digest: `sha256:${req.prNumber}` };
    };
    const worker = new BuildWorker(store, run, { concurrency: 3, timeoutMs: 10_000, logger });
    for (let n = 0; n < 12; n += 1) worker.submit((await store.add(request(n), new Date())).build);
    assert.deepEqual(worker.counts(), { queued: 9, running: 3 });
    await worker.onIdle();
    assert.equal(peak, 3);
    const builds = await store.list(100);
    assert.equal(builds.length, 12);
    assert.ok(builds.every((build) => build.status === 'succeeded' && build.digest === `sha256:${build.request.prNumber}`));
  });

  it('fails a build that outlives BUILD_TIMEOUT_S with that reason, even if it ignores its abort signal', async () => {
    const store = new MemoryBuildStore();
    const never: RunBuild = () => new Promise(() => {});
    const worker = new BuildWorker(store, never, { concurrency: 1, timeoutMs: 50, logger });
    const { build } = await store.add(request(1), new Date());
    worker.submit(build);
    await worker.onIdle();
    const failed = await store.get(build.id);
    assert.equal(failed?.status, 'failed');
    assert.equal(failed?.failedStage, 'timeout');
    assert.match(failed?.error ?? '', /did not finish within BUILD_TIMEOUT_S=0 s/);
  });

  it('records the stage and message of a failure, and the log lines in order', async () => {
    const store = new MemoryBuildStore();
    const failing: RunBuild = async (_req, reporter) => {
      reporter.log('first');
      reporter.log('second');
      throw new PushError('pushing reg/app:1 failed: connection refused');
    };
    const worker = new BuildWorker(store, failing, { concurrency: 1, timeoutMs: 1000, logger });
    const { build } = await store.add(request(1), new Date());
    worker.submit(build);
    await worker.onIdle();
    const failed = await store.get(build.id);
    assert.equal(failed?.failedStage, 'push');
    assert.equal(failed?.error, 'pushing reg/app:1 failed: connection refused');
    assert.equal(await store.readLog(build.id), 'first\nsecond\nFAILED (push): pushing reg/app:1 failed: connection refused\n');
  });
});
