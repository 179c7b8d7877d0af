import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BuildView } from '../../src/http/build-view.js';
import { checkRunEvent, checkSuiteEvent, mergedPullRequest, pullRequestEvent } from '../support/deliveries.js';
import { dockerUnavailable, ensureBusyboxImage } from '../support/docker-environment.js';
import type { StandInApp, StandInCheckRun } from '../support/github-app-stand-in.js';
import { GitHubStandIn, type StandInRepository } from '../support/github-stand-in.js';
import { freePort, LocalRegistry, waitFor } from '../support/registry.js';
import { startDaemon } from '../support/daemon.js';
import { startTestService, TEST_SECRET, type TestService } from '../support/service-harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const skip = await dockerUnavailable();

/**
 * ci_service as a GitHub App set up by hand (GITHUB_APP_ID and its key), against the stand-in, which checks the
 * App's JWTs with its public key, issues installation tokens that expire, validates check runs as GitHub does and
 * delivers the App's events signed with the App's webhook secret. A real engine and registry build.
 */
describe('as a GitHub App: check runs, annotations, Re-run and Cancel from GitHub (real engine and registry)', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;
  let ci: TestService;
  let app: StandInApp;
  let installation: number;
  let publicUrl: string;

  before(async () => {
    await ensureBusyboxImage();
    github = await new GitHubStandIn().start();
    registry = await new LocalRegistry().start();
    // Set by hand, the App's webhook secret is WEBHOOK_SECRET (README "GitHub App").
    app = github.apps.createApp({ hookUrl: 'https://old-tunnel.example.com/webhook', webhookSecret: TEST_SECRET });
    const port = await freePort();
    publicUrl = `http://127.0.0.1:${port}`;
    ci = await startTestService({ PORT: String(port), GITHUB_API_URL: github.url, REGISTRY: registry.address, GITHUB_APP_ID: String(app.id), GITHUB_APP_PRIVATE_KEY: app.privateKey, PUBLIC_URL: publicUrl });
    installation = github.apps.install(app.id, ['octo-org/app-hello', 'octo-org/app-failing', 'octo-org/app-private', 'octo-org/app-slow', 'octo-org/app-bad-spec', 'octo-org/app-token']);
  });

  after(async () => {
    await ci?.stop();
    await github?.close();
    await registry?.remove();
  });

  async function merged(repository: StandInRepository): Promise<BuildView> {
    assert.equal(await github.apps.deliver(app.id, 'pull_request', mergedPullRequest(repository, repository.sha), installation), 202);
    const build = (await waitForBuildOf(repository.sha, (candidate) => ['succeeded', 'failed', 'cancelled'].includes(candidate.status)))!;
    return build;
  }

  async function waitForBuildOf(sha: string, done: (build: BuildView) => boolean, timeoutMs = 60_000): Promise<BuildView | undefined> {
    let found: BuildView | undefined;
    await waitFor(
      async () => {
        const { builds } = (await (await fetch(`${ci.url}/builds?limit=50`)).json()) as { builds: BuildView[] };
        found = builds.find((build) => build.sha === sha && done(build));
        return found !== undefined;
      },
      timeoutMs,
      `a build of ${sha.slice(0, 7)}`,
    );
    return found;
  }

  async function finalRun(repository: StandInRepository, buildId: string): Promise<StandInCheckRun> {
    let run: StandInCheckRun | undefined;
    await waitFor(async () => {
      run = github.apps.runsOf(repository.fullName, repository.sha).find((candidate) => candidate.external_id === buildId && candidate.status === 'completed');
      return run !== undefined;
    }, 10_000, `the completed check run of build ${buildId}`);
    return run!;
  }

  it("the App's webhook is pointed at PUBLIC_URL (PATCH /app/hook/config), as a tunnel's URL would be followed", async () => {
    await waitFor(async () => app.hookUrl === `${publicUrl}/webhook?from=ci_service`, 10_000, `the App's webhook at ${publicUrl} (it is at ${app.hookUrl})`);
  });

  it('a private repository is fetched with the installation\'s token; its build is one check run: queued, in progress with a Cancel button, then success with the image, summary and log', async () => {
    const repository = await github.addRepository('octo-org/app-private', path.join(FIXTURES, 'slow'), { private: true, image: 'ci-test/app-private', extraFiles: { 'nonce.txt': randomUUID() } });
    // A run in progress offers Cancel (seen while the slow step runs).
    const delivered = github.apps.deliver(app.id, 'pull_request', mergedPullRequest(repository, repository.sha), installation);
    assert.equal(await delivered, 202);
    await waitFor(async () => github.apps.runsOf(repository.fullName, repository.sha).some((run) => run.status === 'in_progress'), 30_000, 'the check run in progress');
    const inProgress = github.apps.runsOf(repository.fullName, repository.sha)[0]!;
    assert.deepEqual(inProgress.actions, [{ label: 'Cancel build', description: 'Stop this build on ci_service', identifier: 'cancel' }]);
    const build = (await waitForBuildOf(repository.sha, (candidate) => candidate.status === 'succeeded'))!;
    const run = await finalRun(repository, build.id);
    assert.equal(github.apps.runsOf(repository.fullName, repository.sha).length, 1, 'one check run for the build, updated');
    assert.equal(run.name, 'ci_service/image');
    assert.equal(run.conclusion, 'success');
    assert.equal(run.details_url, `${publicUrl}/builds/${build.id}`);
    assert.equal(run.output.title, `Pushed ${build.image} (${build.digest!.slice(0, 19)})`);
    assert.match(run.output.summary!, new RegExp(`\\| Digest \\| ${build.digest} \\|`));
    assert.match(run.output.summary!, /\| Engine \| docker /);
    assert.match(run.output.summary!, /\| Cache \| \d+ steps? from the build cache \|/);
    assert.match(run.output.text!, /building slowly/);
    assert.deepEqual(run.actions, []);
    // Every repository request carried an installation token; the App's own ones its JWT, which GitHub took.
    const ours = github.requests.filter((request) => request.path.startsWith('/repos/octo-org/app-private/') && !request.path.endsWith('/installation'));
    assert.ok(ours.length > 0 && ours.every((request) => /^Bearer ghs_/.test(request.authorization ?? '')), JSON.stringify(ours.slice(0, 3)));
    assert.deepEqual(github.apps.refusedJwts, []);
  });

  it('a failing Dockerfile step is an annotation on the Dockerfile at its line; a bad dockerInfo.json one on that file', async () => {
    const repository = await github.addRepository('octo-org/app-failing', path.join(FIXTURES, 'failing-run'), { extraFiles: { 'nonce.txt': randomUUID(), Dockerfile: 'FROM ci-test-busybox:latest\n\nCOPY nonce.txt /nonce.txt\nRUN echo about to fail && exit 3\n' }, image: 'ci-test/app-failing' });
    const build = await merged(repository);
    assert.equal(build.status, 'failed');
    const run = await finalRun(repository, build.id);
    assert.equal(run.conclusion, 'failure');
    assert.equal(run.output.title, build.error);
    assert.deepEqual(run.annotations.map((annotation) => [annotation.path, annotation.start_line, annotation.end_line, annotation.annotation_level]), [['Dockerfile', 4, 4, 'failure']]);
    assert.match(String(run.annotations[0]!.message), /RUN echo about to fail && exit 3 failed \(exit code: 3\)/);

    const badSpec = await github.addRepository('octo-org/app-bad-spec', path.join(FIXTURES, 'bad-spec'));
    const failed = await merged(badSpec);
    const specRun = await finalRun(badSpec, failed.id);
    assert.deepEqual(specRun.annotations.map((annotation) => annotation.path), ['dockerInfo.json']);
  });

  it('Re-run on a check run builds its commit again; Re-run on the suite does too', async () => {
    const repository = await github.addRepository('octo-org/app-hello', path.join(FIXTURES, 'hello'), { extraFiles: { 'nonce.txt': randomUUID() }, image: 'ci-test/app-hello' });
    const first = await merged(repository);
    assert.equal(first.status, 'succeeded', first.error);
    const run = await finalRun(repository, first.id);
    const guid = randomUUID();
    assert.equal(await github.apps.deliver(app.id, 'check_run', checkRunEvent(repository, run, 'rerequested'), installation, guid), 202);
    const again = (await waitForBuildOf(repository.sha, (build) => build.id !== first.id && build.status === 'succeeded'))!;
    assert.equal(again.rebuildOf, first.id);
    // GitHub's redelivery of that Re-run (recovered, say) builds nothing more.
    assert.equal(await github.apps.deliver(app.id, 'check_run', checkRunEvent(repository, run, 'rerequested'), installation, guid), 200);
    const { builds } = (await (await fetch(`${ci.url}/builds?limit=50`)).json()) as { builds: BuildView[] };
    assert.equal(builds.filter((build) => build.rebuildOf === first.id).length, 1);
    const rerun = await finalRun(repository, again.id);
    assert.equal(rerun.conclusion, 'success');

    assert.equal(await github.apps.deliver(app.id, 'check_suite', checkSuiteEvent(repository, { id: rerun.checkSuiteId, head_sha: repository.sha }), installation), 202);
    await waitForBuildOf(repository.sha, (build) => build.id !== first.id && build.id !== again.id && build.status === 'succeeded');
  });

  it('the Cancel button stops a running build; its check run ends cancelled', async () => {
    const repository = await github.addRepository('octo-org/app-slow', path.join(FIXTURES, 'slow'), { extraFiles: { 'nonce.txt': randomUUID(), Dockerfile: 'FROM ci-test-busybox:latest\nCOPY nonce.txt /nonce.txt\nRUN sleep 60\n' }, image: 'ci-test/app-slow' });
    assert.equal(await github.apps.deliver(app.id, 'pull_request', pullRequestEvent(repository, repository.sha, { number: 7 }), installation), 202);
    await waitFor(async () => github.apps.runsOf(repository.fullName, repository.sha).some((run) => run.status === 'in_progress'), 30_000, 'the check run in progress');
    const running = github.apps.runsOf(repository.fullName, repository.sha)[0]!;
    assert.equal(running.name, 'ci_service/pr-build');
    assert.equal(await github.apps.deliver(app.id, 'check_run', checkRunEvent(repository, running, 'requested_action', 'cancel'), installation), 200);
    const run = await finalRun(repository, running.external_id!);
    assert.equal(run.conclusion, 'cancelled');
    assert.match(run.output.title!, /^Cancelled: cancelled from GitHub by /);
  });

  it('a fork\'s pull request held for the label is a check run that says how to allow it', async () => {
    const repository = await github.addRepository('octo-org/app-hello', path.join(FIXTURES, 'hello'), { branch: null, extraFiles: { 'nonce.txt': randomUUID() } });
    assert.equal(await github.apps.deliver(app.id, 'pull_request', pullRequestEvent(repository, repository.sha, { number: 9, headRepository: 'stranger/app-hello' }), installation), 200);
    await waitFor(async () => github.apps.runsOf(repository.fullName, repository.sha).length > 0, 10_000, 'the held check run');
    const [run] = github.apps.runsOf(repository.fullName, repository.sha);
    assert.deepEqual([run!.name, run!.status, run!.conclusion, run!.details_url], ['ci_service/pr-build', 'completed', 'action_required', publicUrl]);
    assert.match(run!.output.summary!, /not built: the head is in stranger\/app-hello, a fork\. A maintainer can add the label "ci:build-fork" to build it/);
  });

  it('a log of very long lines still makes a check run GitHub takes (its text cut to GitHub\'s limit)', async () => {
    const repository = await github.addRepository('octo-org/app-slow', path.join(FIXTURES, 'slow'), {
      extraFiles: { 'nonce.txt': randomUUID(), Dockerfile: 'FROM ci-test-busybox:latest\nCOPY nonce.txt /nonce.txt\nRUN for i in 1 2 3 4 5 6 7 8; do head -c 20000 /dev/zero | tr "\\0" x; echo; done\n' },
      image: 'ci-test/app-long-log',
    });
    const build = await merged(repository);
    assert.equal(build.status, 'succeeded', build.error);
    const run = await finalRun(repository, build.id);
    assert.ok(run.output.text!.length <= 65_535 && run.output.text!.length > 60_000, String(run.output.text!.length));
    assert.ok(!ci.logLines.some((line) => line.includes('could not update the check run') && line.includes(build.id)), 'GitHub took every update');
  });

  it('a delivery the App\'s webhook did not take is recovered through /app/hook/deliveries', async () => {
    const repository = await github.addRepository('octo-org/app-token', path.join(FIXTURES, 'hello'), { extraFiles: { 'nonce.txt': randomUUID() }, image: 'ci-test/app-recovered' });
    const hook = app.hookUrl;
    app.hookUrl = 'http://127.0.0.1:9/webhook'; // ci_service out of reach: GitHub records the failure
    assert.equal(await github.apps.deliver(app.id, 'pull_request', mergedPullRequest(repository, repository.sha), installation), 0);
    app.hookUrl = hook;
    assert.equal(await ci.service.deliveryRecovery!.recoverNow(), 1);
    const build = (await waitForBuildOf(repository.sha, (candidate) => candidate.status === 'succeeded'))!;
    assert.ok(build, 'built once GitHub sent it again');
    assert.ok(github.apps.appDeliveries.get(app.id)!.some((delivery) => delivery.redelivery && delivery.status_code === 202));
  });

  it('an installation token that was revoked, or expired, is replaced: the request is answered 401 once, then sent with a new token', async () => {
    github.apps.revokeTokens();
    github.apps.tokenLifetimeMs = 1500;
    try {
      const repository = await github.addRepository('octo-org/app-token', path.join(FIXTURES, 'hello'), { private: true, extraFiles: { 'nonce.txt': randomUUID() }, image: 'ci-test/app-token' });
      const build = await merged(repository);
      assert.equal(build.status, 'succeeded', build.error);
      const refused = () => github.requests.filter((request) => request.path.startsWith('/repos/octo-org/app-token/') && request.status === 401).length;
      assert.ok(refused() >= 1, 'the revoked token was refused first');
      // The new token lives 1.5 s (GitHub's live an hour): the cached one has expired by the next build.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const before = refused();
      const next = await github.addRepository('octo-org/app-token', path.join(FIXTURES, 'hello'), { private: true, extraFiles: { 'nonce.txt': randomUUID(), 'dockerInfo.json': JSON.stringify({ service_name: 'ci-test/app-token', version: '1.0.1' }) } });
      const again = await merged(next);
      assert.equal(again.status, 'succeeded', again.error);
      assert.ok(refused() > before, 'the expired token was refused, then replaced');
    } finally {
      github.apps.tokenLifetimeMs = 3600_000;
    }
  });

  it('a repository the App is not installed on, a suspended installation or a removed one: the build fails saying what to do', async () => {
    const elsewhere = await github.addRepository('octo-org/app-not-installed', path.join(FIXTURES, 'hello'), { private: true, image: 'ci-test/app-not-installed' });
    // Delivered without an installation (as a repository webhook would be): ci_service asks GitHub for it.
    assert.equal(await github.apps.deliver(app.id, 'pull_request', mergedPullRequest(elsewhere, elsewhere.sha)), 202);
    const failed = (await waitForBuildOf(elsewhere.sha, (build) => build.status === 'failed'))!;
    assert.match(failed.error!, /^the GitHub App is not installed on octo-org\/app-not-installed: install it on the repository from/);

    const suspended = github.apps.install(app.id, ['octo-org/app-suspended']);
    github.apps.installations.get(suspended)!.suspended = true;
    const repository = await github.addRepository('octo-org/app-suspended', path.join(FIXTURES, 'hello'), { private: true, image: 'ci-test/app-suspended' });
    assert.equal(await github.apps.deliver(app.id, 'pull_request', mergedPullRequest(repository, repository.sha), suspended), 202);
    const refused = (await waitForBuildOf(repository.sha, (build) => build.status === 'failed'))!;
    assert.match(refused.error!, /the GitHub App's installation on octo-org\/app-suspended is suspended \(This installation has been suspended\): an owner of the account unsuspends it/);

    const removed = github.apps.install(app.id, ['octo-org/app-removed']);
    github.apps.uninstall(removed);
    const gone = await github.addRepository('octo-org/app-removed', path.join(FIXTURES, 'hello'), { private: true, image: 'ci-test/app-removed' });
    // A delivery sent just before the App was removed names the installation: GitHub, asked again, knows none.
    assert.equal(await github.apps.deliver(app.id, 'pull_request', mergedPullRequest(gone, gone.sha), removed), 202);
    const lost = (await waitForBuildOf(gone.sha, (build) => build.status === 'failed'))!;
    assert.match(lost.error!, /^the GitHub App is not installed on octo-org\/app-removed: install it on the repository from/);

    // Installed again (a new installation id), a delivery naming the old one still builds.
    const reinstalled = await github.addRepository('octo-org/app-removed', path.join(FIXTURES, 'hello'), { private: true, extraFiles: { 'nonce.txt': randomUUID() }, image: 'ci-test/app-reinstalled' });
    github.apps.install(app.id, ['octo-org/app-removed']);
    assert.equal(await github.apps.deliver(app.id, 'pull_request', mergedPullRequest(reinstalled, reinstalled.sha), removed), 202);
    const built = (await waitForBuildOf(reinstalled.sha, (build) => build.status !== 'queued' && build.status !== 'running'))!;
    assert.equal(built.status, 'succeeded', built.error);
  });
});

describe('a GitHub App set by hand that GitHub refuses', () => {
  it('a key that is not an RSA private key stops the start, saying so', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    for (const [key, expected] of [
      [privateKey, /GITHUB_APP_PRIVATE_KEY: it is a ec key, and GitHub signs Apps' tokens with RSA only/],
      ['not a key at all', /GITHUB_APP_PRIVATE_KEY: it is not a private key in PEM: use the \.pem file GitHub downloads/],
    ] as const) {
      const daemon = await startDaemon({ GITHUB_APP_ID: '12345', GITHUB_APP_PRIVATE_KEY: key, GITHUB_API_URL: 'http://127.0.0.1:9' }, { waitUntilUp: false });
      assert.equal(await daemon.exited, 1);
      assert.match(daemon.output(), expected);
      assert.doesNotMatch(daemon.output(), /BEGIN PRIVATE KEY/, 'the key is never logged');
    }
  });

  it('/setup needs the admin token, and makes no App where GITHUB_TOKEN is set (token mode)', async () => {
    const adminToken = `setup-token-${randomUUID()}`;
    const ci = await startTestService({ GITHUB_API_URL: 'http://127.0.0.1:9', GITHUB_TOKEN: 'ghp_token_mode', ADMIN_TOKEN: adminToken, PUBLIC_URL: 'https://ci.example.com' });
    try {
      assert.equal((await fetch(`${ci.url}/setup`)).status, 401);
      const page = await fetch(`${ci.url}/setup`, { headers: { authorization: `Bearer ${adminToken}` } });
      assert.equal(page.status, 409);
      assert.match(await page.text(), /acts on GitHub with <code>GITHUB_TOKEN<\/code>/);
    } finally {
      await ci.stop();
    }
  });

  it('an App id that does not match the key is said at start (GitHub answers 401 to its JWT)', async () => {
    const github = await new GitHubStandIn().start();
    try {
      const app = github.apps.createApp();
      const other = github.apps.createApp();
      const ci = await startTestService({ GITHUB_API_URL: github.url, GITHUB_APP_ID: String(other.id), GITHUB_APP_PRIVATE_KEY: app.privateKey });
      try {
        await waitFor(async () => ci.logLines.some((line) => line.includes("GitHub refused the App's token (401)")), 10_000, 'the refusal in the log');
        assert.match(ci.logLines.find((line) => line.includes('(401)'))!, new RegExp(`GITHUB_APP_ID ${other.id} does not match the private key`));
        assert.ok(github.apps.refusedJwts.length > 0 && github.apps.refusedJwts.every((reason) => reason === 'A JSON web token could not be decoded'), JSON.stringify(github.apps.refusedJwts));
      } finally {
        await ci.stop();
      }
    } finally {
      await github.close();
    }
  });
});
