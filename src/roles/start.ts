import type { Server } from 'node:http';
import type { Config } from '../config.js';
import type { DeliveryRecovery } from '../github/delivery-recovery.js';
import type { WebhookSync } from '../github/webhook-sync.js';
import type { Logger } from '../logger.js';
import type { BuildStore } from '../queue/build-store.js';
import type { BuildWorker } from '../queue/build-worker.js';
import { RetentionSweeper } from '../queue/retention.js';
import { openCore } from './core.js';
import { createWorker } from './worker.js';

export interface RunningService {
  /** '' for a worker (CI_ROLE=worker), which serves no HTTP. */
  url: string;
  server: Server | undefined;
  store: BuildStore;
  worker: BuildWorker;
  /** Present on a server when WEBHOOK_REPOSITORIES is set. */
  webhookSync: WebhookSync | undefined;
  /** Present on a server when WEBHOOK_REPOSITORIES and GITHUB_TOKEN are set. */
  deliveryRecovery: DeliveryRecovery | undefined;
  /**
   * Stops taking deliveries (503), lets running builds finish within SHUTDOWN_GRACE_S,
   * leaves queued ones stored for the next start, closes the store.
   */
  stop(): Promise<void>;
}

/**
 * The composition root, by role: each wires, and loads, only what it uses. `all` serves HTTP and builds; `server`
 * serves HTTP and needs no engine (no Docker client, BuildKit session or checkouts: their modules are never
 * loaded); `worker` builds and serves nothing (no express, no webhook verifier). Loading a module costs its memory
 * for the process's whole life (bench/README.md: memory by role).
 */
export async function startService(config: Config, logger: Logger): Promise<RunningService> {
  let localCounts = () => ({ queued: 0, running: 0 });
  const core = await openCore(config, logger, () => localCounts());
  const host = config.role === 'server' ? undefined : await (await import('./build-host.js')).openBuildHost(config, logger, core);
  // A server's worker stores and cancels builds and tells the observers; it is never handed one to run.
  const worker = host?.worker ?? createWorker(config, logger, core, () => Promise.reject(new Error('a CI_ROLE=server process runs no builds')));
  localCounts = () => worker.counts();
  const retention = config.retentionMs > 0 ? new RetentionSweeper(core.store, config.retentionMs, logger, core.now) : undefined;
  retention?.start();
  await host?.start();
  const http = config.role === 'worker' ? undefined : await (await import('./http-server.js')).startHttpServer(config, logger, core, worker, host);

  return {
    url: http?.url ?? '',
    server: http?.server,
    store: core.store,
    worker,
    webhookSync: http?.webhookSync,
    deliveryRecovery: http?.deliveryRecovery,
    async stop() {
      // One grace for the whole stop: the shared queue's wait for its jobs and this worker's are the same builds.
      const deadline = Date.now() + config.shutdownGraceMs;
      await http?.stopAccepting();
      await retention?.stop();
      host?.stop();
      await core.shared?.queue.stop(config.shutdownGraceMs);
      worker.pause();
      const finished = await Promise.race([worker.onIdle().then(() => true), delay(deadline - Date.now()).then(() => false)]);
      if (!finished) logger.warn({ ...worker.counts() }, 'builds still running after SHUTDOWN_GRACE_S; the next start runs them again');
      await host?.close();
      await http?.close();
      await core.store.close();
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref());
}
