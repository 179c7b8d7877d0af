import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createDeliveryVerifier } from '../../src/github/verify-delivery.js';
import type { AdmissionPorts } from '../../src/admission/admit-build.js';
import { createApp } from '../../src/http/app.js';
import { createLogger } from '../../src/logger.js';
import type { BuildRecord } from '../../src/domain/build-record.js';
import { SqliteBuildStore } from '../../src/queue/sqlite-build-store.js';
import { examplePayloads, examplePullRequest, sendDelivery, signature256 } from '../support/deliveries.js';

const SECRET = 'http-test-secret';

/** The HTTP contract of the webhook, with a real store and a recording worker: no Docker needed. */
describe('POST /webhook', () => {
  let server: Server;
  let url: string;
  let store: SqliteBuildStore;
  let accepting = true;
  const submitted: BuildRecord[] = [];

  before(async () => {
    store = new SqliteBuildStore(':memory:');
    const admission: AdmissionPorts = {
      store,
      submit: (build) => submitted.push(build),
      cancelPullRequest: async () => [],
      maxQueuedBuilds: 50,
      now: () => new Date(),
      onCancelFailure: () => {},
    };
    const app = createApp({
      webhook: {
        verifyDelivery: createDeliveryVerifier(() => [SECRET]),
        policy: { allowedRepositories: [], baseBranches: [], buildRef: 'head', pullRequests: true, buildDrafts: false, trustForks: false, forkLabel: 'ci:build-fork' },
        // Cancelling is the worker's, tested with it; releases read GitHub, tested with the stand-in.
        admission,
        releaseRequest: async () => ({ ignored: 'no release rules here' }),
        hold: () => {},
        forkApprovalRefusal: async () => undefined,
        store,
        checks: { buildsOfSuite: async () => [], cancel: async () => undefined },
        isAccepting: () => accepting,
        logger: createLogger('silent'),
        now: () => new Date(),
      },
      health: { docker: async () => {}, engine: undefined, builder: 'buildkit', registry: async () => { throw new Error('connect ECONNREFUSED 127.0.0.1:83'); }, store: { engine: 'sqlite', check: async () => {} }, queue: async () => ({ queued: 0, running: 0 }) },
      store,
      actions: { admission, cancel: async () => undefined },
      logger: createLogger('silent'),
      now: () => new Date(),
    });
    server = await new Promise((resolve) => { const s = app.listen(0, '127.0.0.1', () => resolve(s)); });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** A merged pull request of its own commit, unless a test wants a shared one. */
  function merged(sha = randomBytes(20).toString('hex')): Record<string, any> {
    const payload = examplePullRequest('closed');
    payload.pull_request.merged = true;
    payload.pull_request.head.sha = sha;
    return payload;
  }

  it('queues a merged pull request: 202, the build, and its Location', async () => {
    const response = await sendDelivery(url, merged(), { secret: SECRET, deliveryId: 'merge-1' });
    assert.equal(response.status, 202);
    const { build } = (await response.json()) as { build: Record<string, unknown> };
    assert.equal(response.headers.get('location'), `/builds/${build.id}`);
    assert.equal(build.status, 'queued');
    assert.equal(build.deliveryId, 'merge-1');
    assert.equal(build.repository, 'Codertocat/Hello-World');
    assert.equal(submitted.at(-1)?.id, build.id);
    const stored = await fetch(`${url}/builds/${build.id}`);
    assert.equal(((await stored.json()) as { build: { id: string } }).build.id, build.id);
  });

  it('answers the original path /makeimage the same way', async () => {
    const response = await sendDelivery(url, merged(), { secret: SECRET, path: '/makeimage' });
    assert.equal(response.status, 202);
  });

  it('returns the existing build for a redelivery of the same X-GitHub-Delivery', async () => {
    const payload = merged();
    const first = await sendDelivery(url, payload, { secret: SECRET, deliveryId: 'redelivered' });
    const count = submitted.length;
    const second = await sendDelivery(url, payload, { secret: SECRET, deliveryId: 'redelivered' });
    assert.equal(second.status, 200);
    const [a, b] = [(await first.json()) as any, (await second.json()) as any];
    assert.equal(b.build.id, a.build.id);
    assert.equal(submitted.length, count, 'not submitted twice');
  });

  it('joins a merge of a commit that already has a queued build to that build', async () => {
    const sha = randomBytes(20).toString('hex');
    const first = (await (await sendDelivery(url, merged(sha), { secret: SECRET })).json()) as any;
    const response = await sendDelivery(url, merged(sha), { secret: SECRET, deliveryId: 'same-commit-other-delivery' });
    assert.equal(response.status, 202);
    const second = (await response.json()) as any;
    assert.equal(second.build.id, first.build.id);
    assert.equal(second.coalesced, true);
  });

  it('answers 503 while shutting down, so GitHub shows the delivery as failed', async () => {
    accepting = false;
    try {
      const response = await sendDelivery(url, merged(), { secret: SECRET });
      assert.equal(response.status, 503);
      assert.match(((await response.json()) as { error: string }).error, /shutting down: redeliver/);
    } finally {
      accepting = true;
    }
  });

  it('answers ping with 200', async () => {
    const response = await sendDelivery(url, examplePayloads('ping')[0], { secret: SECRET, event: 'ping' });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { ignored: 'ping: the webhook reaches ci_service' });
  });

  it('answers other events and actions with 200 and the reason, queuing nothing', async () => {
    const count = submitted.length;
    const opened = await sendDelivery(url, examplePullRequest('assigned'), { secret: SECRET });
    assert.equal(opened.status, 200);
    assert.match(((await opened.json()) as { ignored: string }).ignored, /action "assigned"/);
    const push = await sendDelivery(url, examplePayloads('push')[0], { secret: SECRET, event: 'push' });
    assert.equal(push.status, 200);
    assert.equal(submitted.length, count);
  });

  it('refuses a missing signature, a wrong one and a sha1-only one with 401', async () => {
    for (const options of [{}, { secret: 'wrong' }, { headers: { 'x-hub-signature': 'sha1=0000' } }]) {
      const response = await sendDelivery(url, merged(), options);
      assert.equal(response.status, 401);
      assert.ok(((await response.json()) as { error: string }).error.length > 0);
    }
  });

  it('refuses a signed body that is not JSON, or lacks the fields a build needs, with 400', async () => {
    const notJson = await sendDelivery(url, '{"action": "closed",', { secret: SECRET });
    assert.equal(notJson.status, 400);
    assert.match(((await notJson.json()) as { error: string }).error, /not valid JSON/);
    const payload = merged();
    delete payload.repository;
    const missing = await sendDelivery(url, payload, { secret: SECRET });
    assert.equal(missing.status, 400);
    assert.match(((await missing.json()) as { error: string }).error, /"repository"/);
    const noEvent = await sendDelivery(url, merged(), { secret: SECRET, headers: { 'x-github-event': '' } });
    assert.equal(noEvent.status, 400);
  });

  it('accepts the form-encoded content type GitHub can also be set to', async () => {
    const body = `payload=${encodeURIComponent(JSON.stringify(merged()))}`;
    const response = await fetch(`${url}/webhook`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-github-event': 'pull_request',
        'x-github-delivery': 'form-1',
        'x-hub-signature-256': signature256(SECRET, body),
      },
      body,
    });
    assert.equal(response.status, 202);
  });

  it('refuses a body over 25 MB with 413', async () => {
    const response = await sendDelivery(url, 'x'.repeat(25 * 1024 * 1024 + 1), { secret: SECRET });
    assert.equal(response.status, 413);
  });

  it('answers /healthz with 503 naming what is down', async () => {
    const response = await fetch(`${url}/healthz`);
    assert.equal(response.status, 503);
    assert.deepEqual(await response.json(), {
      status: 'unavailable',
      docker: 'ok',
      builder: 'buildkit',
      registry: 'down: connect ECONNREFUSED 127.0.0.1:83',
      database: 'ok',
      store: 'sqlite',
      queue: { queued: 0, running: 0 },
    });
  });

  it('answers a browser with pages and everything else with JSON, pages under a strict CSP', async () => {
    const html = await fetch(`${url}/`, { headers: { accept: 'text/html,application/xhtml+xml' } });
    assert.match(html.headers.get('content-type') ?? '', /text\/html/);
    assert.match(html.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.match(await html.text(), /<h1>Recent builds<\/h1>/);
    const json = await fetch(`${url}/`, { headers: { accept: 'application/json' } });
    assert.ok(Array.isArray(((await json.json()) as { builds: unknown[] }).builds));
    const [first] = ((await (await fetch(`${url}/builds?limit=1`)).json()) as { builds: { id: string }[] }).builds;
    const page = await fetch(`${url}/builds/${first!.id}`, { headers: { accept: 'text/html' } });
    assert.match(await page.text(), /<h2 id="log-heading">Log<\/h2>/);
    // curl sends `Accept: */*`: every route answers it JSON, / included, as the README says.
    for (const route of ['/', '/builds', `/builds/${first!.id}`]) {
      const curl = await fetch(`${url}${route}`, { headers: { accept: '*/*' } });
      assert.match(curl.headers.get('content-type') ?? '', /json/, route);
    }
  });

  it('answers unknown builds and bad limits clearly', async () => {
    assert.equal((await fetch(`${url}/builds/nope`)).status, 404);
    assert.equal((await fetch(`${url}/builds/nope/log`)).status, 404);
    assert.equal((await fetch(`${url}/builds?limit=0`)).status, 400);
    const list = (await (await fetch(`${url}/builds?limit=2`)).json()) as { builds: unknown[] };
    assert.equal(list.builds.length, 2);
  });
});
