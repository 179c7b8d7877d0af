import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { dockerUnavailable } from '../support/docker-environment.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { freePort, LocalRegistry, waitFor } from '../support/registry.js';

const ROOT = path.join(import.meta.dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'repos');
const SECRET = 'daemon-process-secret';

/** The daemon as `npm start` runs it: its own process, configured only by the environment. */
function startDaemon(env: Record<string, string>): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

describe('the daemon process', () => {
  it('refuses to start without WEBHOOK_SECRET, saying how to set it', async () => {
    const daemon = startDaemon({});
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

  it('turns a signed merged delivery into a pullable image, and on SIGTERM finishes the build before exiting 0', async () => {
    const port = await freePort();
    const daemon = startDaemon({ PORT: String(port), WEBHOOK_SECRET: SECRET, GITHUB_API_URL: github.url, REGISTRY: registry.address });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor(async () => (await fetch(`${url}/healthz`)).status === 200, 20_000, 'the daemon');
      const repository = await github.addRepository('octo-org/daemon', path.join(FIXTURES, 'hello'));
      const response = await sendDelivery(url, mergedPullRequest(repository, repository.sha), { secret: SECRET });
      assert.equal(response.status, 202);
      const { build } = (await response.json()) as { build: { id: string } };

      daemon.child.kill('SIGTERM'); // while the build runs: it must still finish
      assert.equal(await daemon.exited, 0, daemon.output());
      assert.deepEqual((await registry.tags('ci-test/hello')).sort(), ['1.0.0', 'latest']);
      const lines = daemon.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
      assert.ok(lines.some((line) => line.msg === 'build succeeded' && line.buildId === build.id));
      assert.ok(lines.some((line) => line.msg === 'stopped'));
    } finally {
      daemon.child.kill('SIGKILL');
    }
  });
});
