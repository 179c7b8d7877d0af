import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { dockerUnavailable } from './docker-environment.js';

/** Screenshots the browser tests take, for the README and for a look after a run. */
export const ARTIFACTS = path.join(import.meta.dirname, '..', '..', 'test-artifacts');
const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests cannot run here (no engine, no Chromium); CI must have both. */
export async function browserUnavailable(): Promise<string | undefined> {
  const docker = await dockerUnavailable();
  if (docker) return docker;
  if (existsSync(CHROMIUM)) return undefined;
  const reason = `needs Debian's chromium at ${CHROMIUM} (apt-get install chromium)`;
  if (process.env.CI) throw new Error(`CI must run the browser test, but it ${reason}`);
  console.warn(`\n!!! SKIPPING the browser test: it ${reason}\n`);
  return reason;
}

/** Debian's Chromium, headless, with nothing of its own going to the network. */
export async function launchChromium(): Promise<Browser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
