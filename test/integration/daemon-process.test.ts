import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemon } from '../support/daemon.js';
import { examplePayloads, mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { dockerUnavailable } from '../support/docker-environment.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { LocalRegistry, waitFor } from '../support/registry.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const SECRET = 'daemon-process-secret';

describe('the daemon process', () => {
  it('stops at start-up on a bad setting, saying how to fix it', async () => {
    const daemon = await startDaemon({ BUILDER: 'kaniko' }, { waitUntilUp: false });
    assert.equal(await daemon.exited, 1);
    assert.match(daemon.output(), /ci_service cannot start: invalid configuration: BUILDER must be "buildkit" \(the default\) or "legacy"/);
  });

  it('stops at start-up on a port another process holds, saying so', async () => {
    const holder = http.createServer();
    await new Promise<void>((resolve) => holder.listen(0, resolve));
    const port = (holder.address() as AddressInfo).port;
    try {
      const dataDir = await mkdtemp(path.join(tmpdir(), 'ci-port-'));
      const daemon = await startDaemon({ PORT: String(port), DATA_DIR: dataDir, GITHUB_API_URL: 'http://127.0.0.1:9' }, { waitUntilUp: false });
      assert.equal(await daemon.exited, 1);
      assert.match(daemon.output(), new RegExp(`ci_service failed to start: port ${port} is in use by another process: stop it, or set PORT to a free port`));
      await rm(dataDir, { recursive: true, force: true });
    } finally {
      holder.close();
    }
  });

  it('with nothing set: generates WEBHOOK_SECRET and ADMIN_TOKEN, keeps them (0600), prints each once, and the pages need the token', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'ci-first-start-'));
    try {
      const first = await startDaemon({ DATA_DIR: dataDir, OPEN_PAGES: 'false', GITHUB_API_URL: 'http://127.0.0.1:9' });
      const token = (await readFile(path.join(dataDir, 'admin-token'), 'utf8')).trim();
      const secret = (await readFile(path.join(dataDir, 'webhook-secret'), 'utf8')).trim();
      assert.match(token, /^[0-9a-f]{64}$/);
      assert.match(secret, /^[0-9a-f]{64}$/);
      assert.equal((await stat(path.join(dataDir, 'admin-token'))).mode & 0o777, 0o600);
      assert.equal((await stat(path.join(dataDir, 'webhook-secret'))).mode & 0o777, 0o600);
      assert.equal(first.output().split(token).length - 1, 1, 'the token is printed once');
      assert.match(first.output(), /ADMIN_TOKEN was not set, so ci_service generated one and keeps it in .*admin-token/);
      assert.match(first.output(), /WEBHOOK_SECRET was not set, so ci_service generated one .*give it to GitHub as the webhook's secret/);

      assert.equal((await fetch(`${first.url}/builds`)).status, 401);
      assert.equal((await fetch(`${first.url}/metrics`)).status, 401);
      assert.equal((await fetch(`${first.url}/builds`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
      assert.equal((await fetch(`${first.url}/healthz`)).status === 401, false, '/healthz stays open');
      const [ping] = examplePayloads('ping');
      assert.equal((await sendDelivery(first.url, ping, { secret, event: 'ping' })).status, 200, 'deliveries signed with the kept secret pass');
      first.child.kill('SIGTERM');
      await first.exited;

      const again = await startDaemon({ DATA_DIR: dataDir, OPEN_PAGES: 'false', GITHUB_API_URL: 'http://127.0.0.1:9' }, { waitUntilUp: false });
      await waitFor(async () => (await fetch(`${again.url}/builds`, { headers: { authorization: `Bearer ${token}` } })).status === 200, 20_000, 'the restart');
      assert.equal(again.output().includes(token), false, 'a restart uses the kept token and prints it no more');
      again.child.kill('SIGKILL');
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
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
