import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mergedPullRequest } from '../support/deliveries.js';
import { dockerUnavailable, ensureBusyboxImage } from '../support/docker-environment.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { freePort, LocalRegistry, waitFor } from '../support/registry.js';
import { startTestService, TEST_SECRET, type TestService } from '../support/service-harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const GITHUB_TOKEN = 'ghp_recoverytoken0000000000000000000000000';

const skip = await dockerUnavailable();

/** GitHub does not retry a failed delivery: ci_service asks for it again (the stand-in plays GitHub, hooks and all). */
describe('no missed delivery (real engine and registry)', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;

  before(async () => {
    await ensureBusyboxImage();
    github = await new GitHubStandIn(GITHUB_TOKEN).start();
    registry = await new LocalRegistry().start();
  });

  after(async () => {
    await github?.close();
    await registry?.remove();
  });

  it('a delivery refused while ci_service was stopped is redelivered after its start, built once, logged and counted', async () => {
    const port = await freePort();
    const env = {
      PORT: String(port),
      GITHUB_API_URL: github.url,
      GITHUB_TOKEN,
      REGISTRY: registry.address,
      WEBHOOK_REPOSITORIES: 'octo-org/recovered',
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      WEBHOOK_SECRET: TEST_SECRET,
    };
    let ci: TestService = await startTestService(env);
    await ci.service.webhookSync!.syncNow();
    const [hook] = github.hooks.get('octo-org/recovered')!;
    assert.ok(hook, 'ci_service made its hook');
    await ci.stop();

    // Merged while ci_service is down: GitHub's attempt finds nobody, and GitHub does not try again by itself.
    const repository = await github.addRepository('octo-org/recovered', path.join(FIXTURES, 'hello'), { image: 'ci-test/recovered' });
    const payload = mergedPullRequest(repository, repository.sha);
    assert.deepEqual(await github.deliver('octo-org/recovered', 'pull_request', payload), [0]);
    const [original] = github.deliveries.get(hook.id)!;

    ci = await startTestService(env);
    try {
      await waitFor(async () => (await ci.service.store.list(10)).length === 1, 20_000, 'the redelivered build');
      const [build] = await ci.service.store.list(10);
      assert.equal(build!.request.deliveryId, original!.guid, 'a redelivery keeps its delivery id');
      await ci.service.worker.onIdle();
      assert.equal((await ci.getBuild(build!.id)).status, 'succeeded');
      assert.deepEqual((await registry.tags('ci-test/recovered')).sort(), ['1.0.0', 'latest']);

      const attempts = github.deliveries.get(hook.id)!;
      assert.deepEqual(attempts.map((attempt) => [attempt.guid, attempt.redelivery, attempt.status_code]), [[original!.guid, false, 0], [original!.guid, true, 202]]);
      assert.ok(ci.logLines.some((line) => line.includes('asked GitHub to redeliver a delivery that failed') && line.includes(original!.guid)));
      const metrics = await (await fetch(`${ci.url}/metrics`)).text();
      assert.match(metrics, /ci_service_deliveries_recovered_total\{repository="octo-org\/recovered"\} 1/);

      // The next pass finds nothing more to recover: the delivery got its 2xx.
      assert.equal(await ci.service.deliveryRecovery!.recoverNow(), 0);
      assert.equal((await ci.service.store.list(10)).length, 1);
    } finally {
      await ci.stop();
    }
  });
});
