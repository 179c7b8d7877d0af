import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { BuildWorker, type RunBuild } from '../queue/build-worker.js';
import type { Core } from './core.js';

/**
 * The worker: it runs builds with `run` and cancels them. A server (CI_ROLE=server) has one too, to cancel builds
 * in the store and tell the observers; it is never handed a build to run.
 */
export function createWorker(config: Config, logger: Logger, core: Core, run: RunBuild, engine?: () => string | undefined): BuildWorker {
  return new BuildWorker(core.store, run, {
    ...(core.shared ? { imageLock: core.shared.imageLock } : {}),
    ...(engine ? { engine } : {}),
    observers: core.observers,
    concurrency: config.buildConcurrency,
    timeoutMs: config.buildTimeoutMs,
    retry: { retries: config.buildRetries, baseDelayMs: config.buildRetryDelayMs, maxDelayMs: 60_000 },
    workerName: config.workerName,
    logger,
    now: core.now,
  });
}
