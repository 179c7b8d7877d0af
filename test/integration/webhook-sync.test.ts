import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { GitHubAuth } from '../../src/github/github-auth.js';
import { createGitHubClient } from '../../src/github/github-client.js';
import { publicUrlSource, WebhookSync } from '../../src/github/webhook-sync.js';
import { createLogger } from '../../src/logger.js';
import { GitHubStandIn } from '../support/github-stand-in.js';

const TOKEN = 'ghp_hooks_token';
const SECRET = 'hook-secret';

/** The ngrok agent's local API, with a tunnel URL the test can change as a restart of ngrok would. */
async function fakeNgrokAgent(): Promise<{ url: string; setTunnel(url: string | undefined): void; close(): Promise<void> }> {
  let tunnel: string | undefined = 'https://first-tunnel.ngrok-free.app';
  const server = http.createServer((req, res) => {
    const tunnels = tunnel ? [{ proto: 'http', public_url: tunnel.replace('https', 'http') }, { proto: 'https', public_url: tunnel }] : [];
    res.writeHead(req.url === '/api/tunnels' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ tunnels }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setTunnel: (url) => (tunnel = url),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('webhook set-up without clicking', () => {
  let github: GitHubStandIn;
  let ngrok: Awaited<ReturnType<typeof fakeNgrokAgent>>;
  const logLines: string[] = [];
  const logger = createLogger('info', { write: (line: string) => void logLines.push(line) });

  before(async () => {
    github = await new GitHubStandIn(TOKEN).start();
    ngrok = await fakeNgrokAgent();
  });

  after(async () => {
    await ngrok.close();
    await github.close();
  });

  function sync(repositories: string[], publicUrl = publicUrlSource(undefined, ngrok.url)): WebhookSync {
    return new WebhookSync({ github: createGitHubClient(github.url, new GitHubAuth(github.url, TOKEN)), repositories, asApp: () => false, secret: SECRET, publicUrl, intervalMs: 60_000, logger });
  }

  it("creates a pull_request webhook with the secret at the tunnel's URL", async () => {
    await sync(['octo-org/app']).syncNow();
    const hooks = github.hooks.get('octo-org/app')!;
    assert.equal(hooks.length, 1);
    assert.deepEqual(hooks[0]!.events, ['pull_request', 'push']);
    assert.equal(hooks[0]!.active, true);
    assert.deepEqual(hooks[0]!.config, { url: 'https://first-tunnel.ngrok-free.app/webhook?from=ci_service', content_type: 'json', secret: SECRET, insecure_ssl: '0' });
    assert.ok(logLines.some((line) => line.includes('"action":"created"') && line.includes('octo-org/app')));
    assert.ok(!logLines.join('').includes(SECRET), 'the secret is not logged');
  });

  it('a restart with the same URL updates the hook, never adds a second', async () => {
    await sync(['octo-org/app']).syncNow();
    assert.equal(github.hooks.get('octo-org/app')!.length, 1);
  });

  it('follows a new tunnel URL, and waits while no tunnel is up', async () => {
    const running = sync(['octo-org/app']);
    await running.syncNow();
    ngrok.setTunnel(undefined);
    await running.syncNow();
    assert.equal(github.hooks.get('octo-org/app')![0]!.config.url, 'https://first-tunnel.ngrok-free.app/webhook?from=ci_service');
    ngrok.setTunnel('https://second-tunnel.ngrok-free.app');
    await running.syncNow();
    const hooks = github.hooks.get('octo-org/app')!;
    assert.equal(hooks.length, 1);
    assert.equal(hooks[0]!.config.url, 'https://second-tunnel.ngrok-free.app/webhook?from=ci_service');
  });

  it("leaves other people's hooks alone and removes duplicates of ours", async () => {
    github.hooks.set('octo-org/busy', [
      { id: 900, name: 'web', active: true, events: ['push'], config: { url: 'https://chat.example.com/hook', content_type: 'json' } },
      { id: 901, name: 'web', active: true, events: ['pull_request'], config: { url: 'https://old.ngrok-free.app/webhook?from=ci_service', content_type: 'json' } },
      { id: 902, name: 'web', active: true, events: ['pull_request'], config: { url: 'https://older.ngrok-free.app/webhook?from=ci_service', content_type: 'json' } },
    ]);
    await sync(['octo-org/busy'], publicUrlSource('https://ci.example.com', undefined)).syncNow();
    const hooks = github.hooks.get('octo-org/busy')!;
    assert.deepEqual(hooks.map((hook) => [hook.id, hook.config.url]), [
      [900, 'https://chat.example.com/hook'],
      [901, 'https://ci.example.com/webhook?from=ci_service'],
    ]);
  });

  it('logs a refusal with what the token needs, and tries again on the next pass', async () => {
    github.failNext(/\/repos\/octo-org\/later\/hooks$/, 403, 1);
    const running = sync(['octo-org/later']);
    await running.syncNow();
    assert.equal(github.hooks.get('octo-org/later')?.length ?? 0, 0);
    assert.ok(logLines.some((line) => line.includes('Webhooks: read and write')));
    await running.syncNow();
    assert.equal(github.hooks.get('octo-org/later')!.length, 1);
  });

  it('a GitHub that never answers does not hold a shutdown', async () => {
    const hanging = await new GitHubStandIn(TOKEN).start();
    hanging.hang(/\/hooks$/);
    const stuck = new WebhookSync({
      github: createGitHubClient(hanging.url, new GitHubAuth(hanging.url, TOKEN)),
      repositories: ['octo-org/hanging'],
      asApp: () => false,
      secret: SECRET,
      publicUrl: publicUrlSource('https://ci.example.com', undefined),
      intervalMs: 60_000,
      logger,
    });
    try {
      stuck.start();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const started = Date.now();
      await stuck.stop();
      assert.ok(Date.now() - started < 1000, `stop() took ${Date.now() - started} ms`);
    } finally {
      await hanging.close();
    }
  });
});
