import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { ARTIFACTS, browserUnavailable, launchChromium } from '../support/browser.js';
import type { BuildView } from '../../src/http/build-view.js';
import { mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { ensureBusyboxImage } from '../support/docker-environment.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { LocalRegistry, waitFor } from '../support/registry.js';
import { startTestService, TEST_SECRET, type TestService } from '../support/service-harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const skip = await browserUnavailable();

describe('the builds page in a real browser', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;
  let ci: TestService;
  let browser: Browser;

  before(async () => {
    await ensureBusyboxImage();
    github = await new GitHubStandIn().start();
    registry = await new LocalRegistry().start();
    ci = await startTestService({ GITHUB_API_URL: github.url, REGISTRY: registry.address });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await ci?.stop();
    await github?.close();
    await registry?.remove();
  });

  it('shows a build go from running to succeeded, and opens its log', async () => {
    const repository = await github.addRepository('octo-org/browser-demo', path.join(FIXTURES, 'slow'), { extraFiles: { 'nonce.txt': randomUUID() } });
    const response = await sendDelivery(ci.url, mergedPullRequest(repository, repository.sha), { secret: TEST_SECRET });
    const { build } = (await response.json()) as { build: BuildView };
    await waitFor(async () => (await ci.getBuild(build.id)).status === 'running', 30_000, 'the build to start');

    const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // a phone
    await page.goto(`${ci.url}/builds/${build.id}`);
    assert.match((await page.locator('#build-status').innerText()).trim(), /running/);
    assert.equal(await page.locator('h1').innerText(), 'Build of octo-org/browser-demo, merge of #2 into main');

    await page.locator('#build-status', { hasText: 'succeeded' }).waitFor({ timeout: 60_000 });
    assert.match(await page.locator('#build-status').innerText(), /✓ succeeded/);
    assert.match(await page.locator('#log').innerText(), /pushed .*ci-test\/slow:1\.0\.0 sha256:/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'build-page.png'), fullPage: true });

    await page.getByRole('link', { name: 'Plain text' }).click();
    assert.match(await page.locator('body').innerText(), /building slowly/);

    const list = await browser.newPage({ viewport: { width: 1100, height: 500 } });
    await list.goto(ci.url);
    const row = list.locator('tr', { hasText: 'octo-org/browser-demo' });
    assert.match(await row.innerText(), /✓ succeeded/);
    await list.screenshot({ path: path.join(ARTIFACTS, 'builds-page.png') });
    await row.getByRole('link', { name: 'octo-org/browser-demo' }).click();
    await list.waitForURL(`**/builds/${build.id}`);
  });

  it('cancels a running build and rebuilds it with the buttons on its page, asking for ADMIN_TOKEN', async () => {
    const adminToken = `browser-admin-token-${randomUUID()}`;
    // Pages open for reading; the buttons' posts need the token, which the browser asks for (basic auth).
    const guarded = await startTestService({ GITHUB_API_URL: github.url, REGISTRY: registry.address, ADMIN_TOKEN: adminToken, OPEN_PAGES: 'true' });
    try {
      const repository = await github.addRepository('octo-org/browser-buttons', path.join(FIXTURES, 'slow'), {
        extraFiles: { 'nonce.txt': randomUUID(), Dockerfile: 'FROM ci-test-busybox:latest\nCOPY nonce.txt /nonce.txt\nRUN echo long step && sleep 41\n' },
        image: 'ci-test/browser-buttons',
      });
      const response = await sendDelivery(guarded.url, mergedPullRequest(repository, repository.sha), { secret: TEST_SECRET });
      const { build } = (await response.json()) as { build: BuildView };
      await waitFor(async () => (await guarded.getBuild(build.id)).status === 'running', 30_000, 'the build to start');

      const anonymous = await browser.newContext();
      const refused = await anonymous.newPage();
      await refused.goto(`${guarded.url}/builds/${build.id}`);
      const answer = refused.waitForResponse(`**/builds/${build.id}/cancel`);
      await refused.getByRole('button', { name: 'Cancel this build' }).click();
      assert.equal((await answer).status(), 401, 'no token, no cancel');
      await anonymous.close();

      const admin = await browser.newContext({ httpCredentials: { username: 'admin', password: adminToken } });
      const page = await admin.newPage();
      await page.goto(`${guarded.url}/builds/${build.id}`);
      await page.getByRole('button', { name: 'Cancel this build' }).click();
      await page.waitForURL(`**/builds/${build.id}`);
      await page.locator('#build-status', { hasText: 'cancelled' }).waitFor({ timeout: 10_000 });
      assert.match(await page.locator('#build').innerText(), /Cancelled\s+cancelled by hand/);
      await page.screenshot({ path: path.join(ARTIFACTS, 'cancelled-build-page.png'), fullPage: true });

      await page.getByRole('button', { name: 'Rebuild this commit' }).click();
      await page.waitForURL((url) => url.pathname.startsWith('/builds/') && !url.pathname.endsWith(build.id));
      const rebuildId = page.url().split('/').pop()!;
      const rebuild = await guarded.getBuild(rebuildId);
      assert.deepEqual([rebuild.rebuildOf, rebuild.sha], [build.id, repository.sha]);
      assert.equal(await page.getByRole('link', { name: build.id }).count(), 1, 'the page links to the build it rebuilds');
      await page.getByRole('button', { name: 'Cancel this build' }).click();
      await page.locator('#build-status', { hasText: 'cancelled' }).waitFor({ timeout: 10_000 });
      await admin.close();
      await guarded.service.worker.onIdle();
    } finally {
      await guarded.stop();
    }
  });
});
