import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BuildView } from '../../src/http/build-view.js';
import { mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { dockerUnavailable, ensureBusyboxImage, restartEngine, secondEngine } from '../support/docker-environment.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { LocalRegistry, waitFor } from '../support/registry.js';
import { startTestService, TEST_SECRET, type TestService } from '../support/service-harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const skip = await dockerUnavailable();

/**
 * An engine that goes away under a build: the second engine of .ci/engines (one this test may restart without
 * taking the machine's own engine, and every other test, with it).
 */
describe('an engine restarted in the middle of a build (a real engine, restarted)', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;
  let ci: TestService;
  let host: string;

  before(async () => {
    const engine = await secondEngine();
    if (!('host' in engine)) throw new Error(engine.unavailable);
    host = engine.host;
    await ensureBusyboxImage(undefined, engine.docker);
    github = await new GitHubStandIn().start();
    registry = await new LocalRegistry().start();
    ci = await startTestService({ GITHUB_API_URL: github.url, REGISTRY: registry.address, DOCKER_HOST: host, BUILD_RETRIES: '3', BUILD_RETRY_DELAY_MS: '3000' });
  });

  after(async () => {
    await ci?.stop();
    await github?.close();
    await registry?.remove();
  });

  it('the build is retried once the engine is back, and succeeds; nothing hangs', async () => {
    const marker = `restart-under-me-${randomUUID()}`;
    const repository = await github.addRepository('octo-org/engine-restart', path.join(FIXTURES, 'hello'), {
      image: 'ci-test/engine-restart',
      extraFiles: { Dockerfile: `FROM ci-test-busybox:latest\nRUN echo ${marker} && sleep 4\n` },
    });
    const response = await sendDelivery(ci.url, mergedPullRequest(repository, repository.sha), { secret: TEST_SECRET });
    const { build } = (await response.json()) as { build: BuildView };
    await waitFor(async () => (await ci.getLog(build.id)).includes(`${marker}\n`), 30_000, 'the RUN step to run');
    await restartEngine(host);
    await waitFor(async () => ['succeeded', 'failed'].includes((await ci.getBuild(build.id)).status), 120_000, 'the build to end');
    const ended = await ci.getBuild(build.id);
    const log = await ci.getLog(build.id);
    assert.equal(ended.status, 'succeeded', `${ended.error}\n${log}`);
    assert.match(log, /downloading and building failed \(.*\); retry 1 of 3 in [0-9.]+ s/, 'the failed run says why, and that it is retried');
    assert.deepEqual((await registry.tags('ci-test/engine-restart')).sort(), ['1.0.0', 'latest']);
  });
});
