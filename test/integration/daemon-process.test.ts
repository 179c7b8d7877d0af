import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemon } from '../support/daemon.js';
import { mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { dockerUnavailable } from '../support/docker-environment.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { LocalRegistry } from '../support/registry.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const SECRET = 'daemon-process-secret';

describe('the daemon process', () => {
  it('refuses to start without WEBHOOK_SECRET, saying how to set it', async () => {
    const daemon = await startDaemon({}, { waitUntilUp: false });
    assert.equal(await daemon.exited, 1);
    assert.match(daemon.output(), /ci_service cannot start: invalid configuration: WEBHOOK_SECRET is not set: set WEBHOOK_SECRET/);
  });
});

const skip = await dockerUnavailable();

describe('the daemon process with a Docker engine', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;

  before(async () => {
    github = await new GitHubStandIn().start();
    registry = await new LocalRegistry().start();
  });

  after(async () => {
    await github?.close();
    await registry?.remove();
  });

  it('turns a signed merged delivery into a pullable image', async () => {
    const daemon = await startDaemon({ WEBHOOK_SECRET: SECRET, GITHUB_API_URL: github.url, REGISTRY: registry.address, DATA_DIR: path.join(github.workDirectory, 'data-1') });
    try {
      const repository = await github.addRepository('octo-org/daemon', path.join(FIXTURES, 'hello'));
      const response = await sendDelivery(daemon.url, mergedPullRequest(repository, repository.sha), { secret: SECRET });
      assert.equal(response.status, 202);
      const { build } = (await response.json()) as { build: { id: string } };
      const done = await daemon.waitForBuild(build.id, (b) => b.status === 'succeeded' || b.status === 'failed');
      assert.equal(done.status, 'succeeded', done.error);
      assert.deepEqual((await registry.tags('ci-test/hello')).sort(), ['1.0.0', 'latest']);
      const lines = daemon.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
      assert.ok(lines.some((line) => line.msg === 'build succeeded' && line.buildId === build.id));
    } finally {
      daemon.child.kill('SIGKILL');
    }
  });
});
