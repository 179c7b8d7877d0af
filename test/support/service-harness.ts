import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config.js';
import type { BuildView } from '../../src/http/build-view.js';
import { createLogger } from '../../src/logger.js';
import { startService, type RunningService } from '../../src/roles/start.js';
import { ENGINE_HOST } from './docker-environment.js';

export const TEST_SECRET = 'test-webhook-secret-5f1c';

export interface TestService {
  service: RunningService;
  url: string;
  /** Its DATA_DIR (the SQLite file lives there). */
  dataDir: string;
  /** Every line the daemon logged. */
  logLines: string[];
  stop(): Promise<void>;
  getBuild(id: string): Promise<BuildView>;
  getLog(id: string): Promise<string>;
}

/** The real daemon, in this process, configured from an env object like main.ts is. */
export async function startTestService(env: Record<string, string>): Promise<TestService> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ci-data-'));
  const logLines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      callback();
    },
  });
  // Pages open: these tests read builds without a token (the token's own tests set ADMIN_TOKEN).
  const config = loadConfig({ PORT: '0', WEBHOOK_SECRET: TEST_SECRET, OPEN_PAGES: env.ADMIN_TOKEN ? 'false' : 'true', LOG_LEVEL: 'debug', DATA_DIR: dataDir, BUILD_RETRY_DELAY_MS: '200', DOCKER_HOST: ENGINE_HOST, ...env });
  const service = await startService(config, createLogger(config.logLevel, destination));
  return {
    service,
    url: service.url,
    dataDir,
    logLines,
    async stop() {
      await service.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
    async getBuild(id) {
      const response = await fetch(`${service.url}/builds/${id}`);
      return ((await response.json()) as { build: BuildView }).build;
    },
    async getLog(id) {
      return (await fetch(`${service.url}/builds/${id}/log`)).text();
    },
  };
}
