import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { stat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { ARTIFACTS, browserUnavailable, launchChromium } from '../support/browser.js';
import { KEPT_APP_FILE } from '../../src/github/kept-app.js';
import { mergedPullRequest } from '../support/deliveries.js';
import { ensureBusyboxImage } from '../support/docker-environment.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { freePort, LocalRegistry, waitFor } from '../support/registry.js';
import { startTestService, type TestService } from '../support/service-harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const skip = await browserUnavailable();

/**
 * The GitHub App's set-up in one click, in a real browser: ci_service's /setup posts the App's manifest to the
 * stand-in's "github.com", whose page makes the App (as GitHub's does once its button is pressed) and sends the
 * browser back with a code; ci_service trades it for the App, keeps it, and takes the App's deliveries at once.
 */
describe('the GitHub App set-up page in a real browser', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;
  let ci: TestService;
  let browser: Browser;
  const adminToken = `setup-admin-token-${randomUUID()}`;
  let publicUrl: string;

  before(async () => {
    await ensureBusyboxImage();
    github = await new GitHubStandIn().start();
    registry = await new LocalRegistry().start();
    const port = await freePort();
    publicUrl = `http://127.0.0.1:${port}`;
    ci = await startTestService({ PORT: String(port), PUBLIC_URL: publicUrl, GITHUB_API_URL: github.url, REGISTRY: registry.address, ADMIN_TOKEN: adminToken });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await ci?.stop();
    await github?.close();
    await registry?.remove();
  });

  it('before any App: a code GitHub refuses (used, or older than an hour), or a link that did not start here, is said on the page', async () => {
    const context = await browser.newContext({ httpCredentials: { username: 'admin', password: adminToken } });
    const page = await context.newPage();
    await page.goto(`${ci.url}/setup`);
    const state = new URL((await page.locator('form[method=post]').getAttribute('action'))!).searchParams.get('state')!;
    const refused = await page.goto(`${ci.url}/setup/callback?code=a-code-github-never-gave&state=${encodeURIComponent(state)}`);
    assert.equal(refused?.status(), 502);
    assert.match(await page.locator('main').innerText(), /GitHub answered 404 to the code it sent back \(POST \/app-manifests\/\{code\}\/conversions\) \(Not Found\): a code works once, within an hour of GitHub making the App/);
    const forged = await page.goto(`${ci.url}/setup/callback?code=x&state=${Date.now()}.0000`);
    assert.equal(forged?.status(), 400);
    assert.match(await page.locator('main').innerText(), /did not start at this ci_service's \/setup, or is older than an hour/);
    await context.close();
  });

  it('goes from /setup through GitHub to a kept App (0600) whose webhook deliveries are taken and built, reporting check runs', async () => {
    const context = await browser.newContext({ httpCredentials: { username: 'admin', password: adminToken } });
    const page = await context.newPage();
    await page.goto(`${ci.url}/setup`);
    const manifest = JSON.parse((await page.locator('input[name=manifest]').getAttribute('value'))!) as Record<string, any>;
    assert.deepEqual(manifest.default_permissions, { contents: 'read', checks: 'write', statuses: 'write', pull_requests: 'read', metadata: 'read' });
    assert.deepEqual(manifest.default_events, ['pull_request', 'push', 'check_run', 'check_suite']);
    assert.equal(manifest.hook_attributes.url, `${publicUrl}/webhook`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'setup-page.png') });
    await page.locator('#create-app').click();
    // GitHub's page: the App's name, and its button.
    await page.locator('#create-github-app').click();
    await page.waitForURL(`${publicUrl}/setup/callback?**`);
    const install = page.locator('#install-app');
    await install.waitFor();
    const [app] = [...github.apps.apps.values()];
    assert.ok(app, 'GitHub made the App');
    assert.equal(await install.getAttribute('href'), `${app.htmlUrl}/installations/new`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'setup-done-page.png') });

    // Kept as the generated secrets are: 0600, in DATA_DIR; the page again shows the App, not the button.
    const kept = path.join(ci.dataDir, KEPT_APP_FILE);
    assert.equal((await stat(kept)).mode & 0o777, 0o600);
    assert.equal(JSON.parse(await readFile(kept, 'utf8')).id, String(app.id));
    await page.goto(`${ci.url}/setup`);
    assert.equal(await page.locator('#create-app').count(), 0);
    // The code worked once: GitHub refuses it a second time, and ci_service says what to do.
    const code = new URL(page.url()).searchParams.get('code');
    assert.equal(code, null);
    await context.close();

    // Installed, the App's deliveries (signed with the secret GitHub made) are taken, and the build is a check run.
    const installation = github.apps.install(app.id, ['octo-org/setup-demo']);
    const repository = await github.addRepository('octo-org/setup-demo', path.join(FIXTURES, 'hello'), { private: true, extraFiles: { 'nonce.txt': randomUUID() }, image: 'ci-test/setup-demo' });
    assert.equal(await github.apps.deliver(app.id, 'pull_request', mergedPullRequest(repository, repository.sha), installation), 202);
    await waitFor(async () => github.apps.runsOf(repository.fullName, repository.sha).some((run) => run.conclusion === 'success'), 60_000, 'a successful check run');
  });

});
