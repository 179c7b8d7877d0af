import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BuildRecord } from '../../src/domain/build-record.js';
import { SourceError } from '../../src/domain/errors.js';
import { CommitStatusReporter } from '../../src/github/commit-status.js';
import { DeliveryRecovery } from '../../src/github/delivery-recovery.js';
import { GitHubAuth } from '../../src/github/github-auth.js';
import { createGitHubClient } from '../../src/github/github-client.js';
import { GitHubSource } from '../../src/github/github-source.js';
import { createLogger } from '../../src/logger.js';
import { Checkouts } from '../../src/source/checkout.js';
import { GitHubStandIn } from '../support/github-stand-in.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const TOKEN = 'ghp_fidelity000000000000000000000000000000';
const silent = createLogger('silent');

/**
 * The parts of ci_service that talk to GitHub, against the stand-in answering as GitHub does where GitHub's
 * answers are awkward: pages, truncated trees, rate limits, validation. Each test fails if the code assumed
 * the easy answer.
 */
describe('ci_service against GitHub as GitHub answers (the stand-in; no engine)', () => {
  let github: GitHubStandIn;

  before(async () => {
    github = await new GitHubStandIn(TOKEN).start();
  });

  after(async () => {
    await github.close();
  });

  it('delivery recovery follows the cursor pages: a failed delivery on the second page is asked for again', async () => {
    // A receiver that refuses the first delivery it gets until it is redelivered, and takes every other one.
    let refused: string | undefined;
    let redelivering = false;
    const receiver: Server = createServer((req, res) => {
      const guid = String(req.headers['x-github-delivery']);
      req.resume().on('end', () => {
        refused ??= guid;
        res.writeHead(refused === guid && !redelivering ? 503 : 200).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhook?from=ci_service`;
      const client = createGitHubClient(github.url, new GitHubAuth(github.url, TOKEN));
      await client.post('/repos/octo-org/paged/hooks', { name: 'web', active: true, events: ['pull_request'], config: { url, content_type: 'json', secret: 's' } });
      // 130 deliveries: with GitHub's pages of at most 100, the oldest (the refused one) is on the second page.
      for (let index = 0; index < 130; index += 1) await github.deliver('octo-org/paged', 'pull_request', { action: 'closed', index });
      const [hook] = github.hooks.get('octo-org/paged')!;
      assert.equal(github.deliveries.get(hook!.id)!.filter((delivery) => delivery.status_code === 503).length, 1);

      redelivering = true;
      const recovery = new DeliveryRecovery({ github: client, repositories: ['octo-org/paged'], asApp: () => false, intervalMs: 0, onRecovered: () => {}, logger: silent });
      assert.equal(await recovery.recoverNow(), 1);
      await waitUntil(() => github.deliveries.get(hook!.id)!.some((delivery) => delivery.redelivery));
      const redelivered = github.deliveries.get(hook!.id)!.filter((delivery) => delivery.redelivery);
      assert.deepEqual(redelivered.map((delivery) => [delivery.guid, delivery.status_code]), [[refused, 200]]);
      const pages = github.requests.filter((request) => request.path.startsWith(`/repos/octo-org/paged/hooks/${hook!.id}/deliveries?`));
      assert.equal(pages.length, 2, 'two pages read');
    } finally {
      receiver.close();
    }
  });

  it('a tree GitHub truncates is not the whole commit: the checkout downloads the tarball instead', async () => {
    const folder = await mkdtemp(path.join(tmpdir(), 'ci-truncated-'));
    try {
      const source = new GitHubSource(createGitHubClient(github.url, new GitHubAuth(github.url, TOKEN)), github.url, { mode: 'token' });
      const checkouts = await Checkouts.open(folder, source);
      const options = { context: '', dockerfile: 'Dockerfile', maxBytes: 1 << 30, maxArchiveBytes: 1 << 30, maxEntries: 10_000 };
      const commit = (text: string) => github.addRepository('octo-org/truncated', path.join(FIXTURES, 'hello'), { extraFiles: { 'changing.txt': text } });
      const fetched = async (text: string) => {
        const repository = await commit(text);
        const checkout = await checkouts.checkout(repository, repository.sha, options, 'reviewed', new AbortController().signal);
        checkout.release();
        return checkout.fetched.kind;
      };
      assert.equal(await fetched('one'), 'tarball', 'the first commit on this host');
      assert.equal(await fetched('two'), 'changes', 'a whole tree: only the changed file');
      github.treeEntryLimit = 2;
      assert.equal(await fetched('three'), 'tarball', 'a truncated tree: the tarball');
    } finally {
      github.treeEntryLimit = 100_000;
      await rm(folder, { recursive: true, force: true });
    }
  });

  it('a rate limit is waited out: a secondary limit for its Retry-After, a spent quota until its reset', async () => {
    const repository = await github.addRepository('octo-org/limited', path.join(FIXTURES, 'hello'));
    const source = new GitHubSource(createGitHubClient(github.url, new GitHubAuth(github.url, TOKEN)), github.url, { mode: 'token' });
    const read = () => source.readFile(repository, repository.sha, 'dockerInfo.json', 65_536, new AbortController().signal);
    const refusal = async () => {
      const error = await read().then(() => undefined, (thrown: unknown) => thrown);
      assert.ok(error instanceof SourceError, String(error));
      return error;
    };
    github.rateLimitNext(/\/contents\//, 'secondary', 1, 7);
    const secondary = await refusal();
    assert.equal(secondary.retryable, true);
    assert.equal(secondary.retryAfterMs, 7000);
    github.rateLimitNext(/\/contents\//, 'primary', 1, 40);
    const primary = await refusal();
    assert.equal(primary.retryable, true);
    assert.match(primary.message, /GitHub rate limit reached \(403\)/);
    // Until the reset GitHub names (whole seconds from now).
    assert.ok(primary.retryAfterMs! > 38_000 && primary.retryAfterMs! <= 41_000, String(primary.retryAfterMs));
    assert.match((await read())!, /service_name/, 'and answers again after');
  });

  it('a status description over 140 characters is refused by GitHub (422): ci_service sends one it takes', async () => {
    const repository = await github.addRepository('octo-org/long-status', path.join(FIXTURES, 'hello'));
    const client = createGitHubClient(github.url, new GitHubAuth(github.url, TOKEN));
    const refused = await client.post(`/repos/octo-org/long-status/statuses/${repository.sha}`, { state: 'failure', description: 'x'.repeat(141), context: 'c' }, { validateStatus: () => true });
    assert.equal(refused.status, 422);
    const reporter = new CommitStatusReporter(client, undefined, silent);
    const failed: BuildRecord = {
      id: 'b1',
      seq: 1,
      request: { deliveryId: 'd1', repository, sha: repository.sha, trigger: { kind: 'merge', prNumber: 1, baseRef: 'main' } },
      status: 'failed',
      tags: [],
      error: `Dockerfile line 2: RUN make failed (exit code: 2); last output: ${'a long line of compiler output '.repeat(10)}`,
      failedStage: 'build',
      attempt: 1,
      resumed: false,
      createdAt: new Date(),
    };
    await reporter.finished(failed);
    const [status] = github.statuses.get(repository.sha) ?? [];
    assert.ok(status, 'GitHub took the status');
    assert.equal(status.state, 'failure');
    assert.ok(status.description!.length <= 140 && status.description!.startsWith('Dockerfile line 2: RUN make failed'), status.description);
  });
});

async function waitUntil(check: () => boolean): Promise<void> {
  for (let tries = 0; tries < 100 && !check(); tries += 1) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(check());
}
