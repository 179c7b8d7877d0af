import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createDeliveryVerifier } from '../../src/github/verify-delivery.js';
import type { AdmissionPorts } from '../../src/admission/admit-build.js';
import { createApp } from '../../src/http/app.js';
import { createLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { SqliteBuildStore } from '../../src/queue/sqlite-build-store.js';
import { examplePayloads, examplePullRequest, sendDelivery } from '../support/deliveries.js';

const SECRET = 'metrics-secret';
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';

describe('ADMIN_TOKEN and /metrics', () => {
  let server: Server;
  let url: string;
  let metrics: Metrics;

  before(async () => {
    const store = new SqliteBuildStore(':memory:');
    metrics = new Metrics(async () => ({ queued: 3, running: 1 }), async () => [{ name: 'worker-a', seenAt: new Date(1_700_000_000_000) }]);
    const admission: AdmissionPorts = {
      store,
      submit: () => {},
      cancelPullRequest: async () => [],
      maxQueuedBuilds: 10,
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
        isAccepting: () => true,
        onOutcome: (outcome) => metrics.delivery(outcome),
        logger: createLogger('silent'),
        now: () => new Date(),
      },
      health: { docker: async () => {}, engine: undefined, builder: 'buildkit', registry: async () => {}, store: { engine: 'sqlite', check: async () => {} }, queue: async () => ({ queued: 0, running: 0 }) },
      store,
      actions: { admission, cancel: async () => undefined },
      metrics: metrics.registry,
      adminToken: ADMIN_TOKEN,
      logger: createLogger('silent'),
      now: () => new Date(),
    });
    server = await new Promise((resolve) => { const s = app.listen(0, '127.0.0.1', () => resolve(s)); });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('asks for the token on the page, the builds API and /metrics, and a browser is offered basic auth', async () => {
    for (const route of ['/', '/builds', '/builds/x', '/builds/x/log', '/metrics']) {
      const response = await fetch(`${url}${route}`);
      assert.equal(response.status, 401, route);
      assert.match(response.headers.get('www-authenticate') ?? '', /^Basic realm="ci_service"/);
    }
    assert.equal((await fetch(`${url}/builds`, { headers: { authorization: 'Bearer wrong-token-0000000000' } })).status, 401);
  });

  it('accepts the token as a bearer token or as the basic-auth password', async () => {
    assert.equal((await fetch(`${url}/builds`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status, 200);
    const basic = Buffer.from(`anyone:${ADMIN_TOKEN}`).toString('base64');
    assert.equal((await fetch(`${url}/`, { headers: { authorization: `Basic ${basic}` } })).status, 200);
  });

  it('takes rebuild and cancel with the token, and from this site only: a form posted elsewhere cannot use a browser\'s basic auth', async () => {
    const cancel = (headers: Record<string, string>) => fetch(`${url}/builds/no-such-build/cancel`, { method: 'POST', headers: { accept: 'application/json', ...headers } });
    const bearer = { authorization: `Bearer ${ADMIN_TOKEN}` };
    assert.equal((await cancel({})).status, 401);
    const elsewhere: Record<string, string>[] = [{ origin: 'https://evil.example' }, { origin: 'null' }, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }];
    for (const headers of elsewhere) {
      const response = await cancel({ ...bearer, ...headers });
      assert.equal(response.status, 403, JSON.stringify(headers));
      assert.match(((await response.json()) as { error: string }).error, /refused from another site/);
    }
    // Past the guard: the build is unknown.
    assert.equal((await cancel(bearer)).status, 404, 'curl sends no Origin');
    assert.equal((await cancel({ ...bearer, origin: url, 'sec-fetch-site': 'same-origin' })).status, 404, 'the build\'s own page');
    // A browser's basic auth that says nowhere where the post comes from: an old browser on another site's form.
    const basic = { authorization: `Basic ${Buffer.from(`anyone:${ADMIN_TOKEN}`).toString('base64')}` };
    const unsaid = await cancel(basic);
    assert.equal(unsaid.status, 403);
    assert.match(((await unsaid.json()) as { error: string }).error, /a post with basic auth must say where it comes from .*Authorization: Bearer/);
    assert.equal((await cancel({ ...basic, 'sec-fetch-site': 'same-origin' })).status, 404, 'the page, from a current browser');
    assert.equal((await cancel({ ...basic, origin: url })).status, 404);
  });

  it('keeps the webhook and /healthz open', async () => {
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const response = await sendDelivery(url, examplePayloads('ping')[0], { secret: SECRET, event: 'ping' });
    assert.equal(response.status, 200);
  });

  it('counts deliveries by outcome and exposes queue depth, build and push metrics in Prometheus text', async () => {
    await sendDelivery(url, examplePullRequest('assigned'), { secret: SECRET });
    await sendDelivery(url, examplePullRequest('opened'), { secret: 'wrong' });
    metrics.finished({
      id: 'b', seq: 1, request: {} as never, status: 'failed', failedStage: 'push', tags: [], resumed: false, attempt: 1,
      createdAt: new Date(0), startedAt: new Date(1000), finishedAt: new Date(13_000),
    });
    await metrics.timedPusher({ push: async () => undefined }).push('r', 't', () => {}, new AbortController().signal);
    const response = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.match(response.headers.get('content-type') ?? '', /text\/plain/);
    const text = await response.text();
    assert.match(text, /ci_service_deliveries_total\{outcome="ignored"\} 2/);
    assert.match(text, /ci_service_deliveries_total\{outcome="unauthorized"\} 1/);
    assert.match(text, /ci_service_queue_depth\{state="queued"\} 3/);
    assert.match(text, /ci_service_queue_depth\{state="running"\} 1/);
    assert.match(text, /ci_service_worker_last_seen_seconds\{worker="worker-a"\} 1700000000/);
    assert.match(text, /ci_service_builds_total\{outcome="failed",stage="push"\} 1/);
    assert.match(text, /ci_service_build_duration_seconds_bucket\{le="15",outcome="failed"\} 1/);
    assert.match(text, /^ci_service_push_duration_seconds_count 1$/m, 'the push was timed');
    assert.match(text, /process_resident_memory_bytes/);
  });
});
