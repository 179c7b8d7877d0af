import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import type { BuildView } from '../../src/http/build-view.js';
import { mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { dockerUnavailable, ensureBusyboxImage } from '../support/docker-environment.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { LocalRegistry, waitFor } from '../support/registry.js';
import { startTestService, TEST_SECRET, type TestService } from '../support/service-harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const ARTIFACTS = path.join(import.meta.dirname, '..', '..', 'test-artifacts');
const CHROMIUM = '/usr/bin/chromium';

async function browserUnavailable(): Promise<string | undefined> {
  const docker = await dockerUnavailable();
  if (docker) return docker;
  if (existsSync(CHROMIUM)) return undefined;
  const reason = `needs Debian's chromium at ${CHROMIUM} (apt-get install chromium)`;
  if (process.env.CI) throw new Error(`CI must run the browser test, but it ${reason}`);
  console.warn(`\n!!! SKIPPING the browser test: it ${reason}\n`);
  return reason;
}

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
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(ARTIFACTS, { recursive: true });
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
    assert.equal(await page.locator('h1').innerText(), 'Build of octo-org/browser-demo #2');

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
});
