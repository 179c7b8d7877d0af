import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config.js';
import { describeError } from '../domain/errors.js';
import type { BuildRecord } from '../domain/build-record.js';
import { ADMIN_TOKEN, keptSecret, WEBHOOK_SECRET } from '../kept-secrets.js';
import { DeliveryRecovery } from '../github/delivery-recovery.js';
import { createDeliveryVerifier } from '../github/verify-delivery.js';
import { publicUrlSource, WebhookSync } from '../github/webhook-sync.js';
import { createApp } from '../http/app.js';
import type { Logger } from '../logger.js';
import type { BuildWorker } from '../queue/build-worker.js';
import { SPEC_FILE, SPEC_MAX_BYTES, STAGING_REPOSITORY } from '../rules/build-spec.js';
import { releaseRequest } from '../rules/release-rules.js';
import { ForkApprovals } from '../github/fork-approval.js';
import { buildsOfCheckSuite } from '../github/check-runs.js';
import { convertManifest } from '../github/app-manifest.js';
import { keepApp } from '../github/kept-app.js';
import type { AdmissionPorts } from '../admission/admit-build.js';
import type { BuildHost } from './build-host.js';
import type { Core } from './core.js';

/** What GitHub is asked while it waits for a delivery's answer (a push's release rules, a fork's label): it gives up after 10 s. */
const GITHUB_WHILE_DELIVERY_WAITS_MS = 8_000;

/** What serves HTTP (CI_ROLE all and server): the webhook, pages, API, metrics, and keeping GitHub's hooks right. */
export interface HttpServer {
  url: string;
  server: Server;
  /** Present when ci_service keeps a hook (WEBHOOK_REPOSITORIES', or a GitHub App's) and knows its public URL. */
  webhookSync: WebhookSync | undefined;
  /** Present when ci_service keeps a hook: WEBHOOK_REPOSITORIES' with GITHUB_TOKEN, or without a token the App's. */
  deliveryRecovery: DeliveryRecovery | undefined;
  /** Deliveries are answered 503 from now on. */
  stopAccepting(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts the HTTP side. `worker` stores and cancels (a server's never runs builds); `host` is this process's own
 * build host when it has one (CI_ROLE=all): /healthz then reports its engine.
 */
export async function startHttpServer(config: Config, logger: Logger, core: Core, worker: BuildWorker, host: BuildHost | undefined): Promise<HttpServer> {
  const { store, metrics, now } = core;
  const webhookSecret = await keptSecret(WEBHOOK_SECRET, config.webhookSecret, config.dataDir, logger);
  // With OPEN_PAGES only a token set by hand guards rebuild and cancel; otherwise one is kept if none is set.
  const adminToken = config.openPages ? config.adminToken : await keptSecret(ADMIN_TOKEN, config.adminToken, config.dataDir, logger);
  let accepting = true;
  const forkApprovals = new ForkApprovals(core.github, core.githubAuth);
  // The shared queue took the build in the transaction that stored it; this process's queue takes it here.
  const submit = core.shared ? (build: BuildRecord) => worker.announceQueued(build) : (build: BuildRecord) => worker.submit(build);
  // One way to admit a build, for deliveries and rebuilds alike (admission/admit-build.ts).
  const admission: AdmissionPorts = {
    store,
    submit,
    cancelPullRequest: (cancel, before) => worker.cancelPullRequest(cancel.repository.fullName, cancel.prNumber, cancel.reason, before),
    maxQueuedBuilds: config.maxQueuedBuilds,
    now,
    onCancelFailure: (request, error) => logger.warn({ deliveryId: request.deliveryId, error }, 'could not cancel superseded builds'),
  };
  // Where GitHub reaches this server: PUBLIC_URL, or the ngrok tunnel's; for the set-up page and the hooks alike.
  const publicUrl = publicUrlSource(config.publicUrl, config.ngrokApiUrl);
  const app = createApp({
    webhook: {
      verifyDelivery: createDeliveryVerifier(() => [webhookSecret, ...(core.githubAuth.currentApp?.webhookSecret ? [core.githubAuth.currentApp.webhookSecret] : [])]),
      policy: {
        allowedRepositories: config.allowedRepositories,
        baseBranches: config.baseBranches,
        buildRef: config.buildRef,
        pullRequests: config.pullRequests.build,
        buildDrafts: config.pullRequests.drafts,
        trustForks: config.pullRequests.trustForks,
        forkLabel: config.pullRequests.forkLabel,
      },
      admission,
      releaseRequest: (push) =>
        releaseRequest(push, () => core.source.readFile(push.repository, push.rulesRef, SPEC_FILE, SPEC_MAX_BYTES, AbortSignal.timeout(GITHUB_WHILE_DELIVERY_WAITS_MS))),
      hold: (held) => void core.reports.held(held.repository, held.sha, held.description)?.catch((error: unknown) => logger.warn({ error: describeError(error) }, 'could not tell GitHub of a held pull request')),
      forkApprovalRefusal: (repository, sha, approval) => forkApprovals.refusal(repository, sha, approval, AbortSignal.timeout(GITHUB_WHILE_DELIVERY_WAITS_MS)),
      store,
      checks: {
        buildsOfSuite: (repository, checkSuiteId) => buildsOfCheckSuite(core.github, repository, checkSuiteId, AbortSignal.timeout(GITHUB_WHILE_DELIVERY_WAITS_MS)),
        cancel: (id, reason) => worker.cancel(id, reason),
      },
      rememberInstallation: (fullName, installationId) => core.githubAuth.rememberInstallation(fullName, installationId),
      isAccepting: () => accepting,
      onOutcome: (outcome) => metrics.delivery(outcome),
      logger,
      now,
    },
    health: {
      docker: host ? () => host.engine.ping() : undefined,
      engine: host
        ? async () => {
            const engine = await host.engine.describe();
            const takes = await core.registry.takesImagesOf(engine.imageStore, STAGING_REPOSITORY);
            return { ...engine, registryTakesItsImages: takes === true ? true : `no: ${takes}` };
          }
        : undefined,
      builder: config.builder,
      registry: () => core.registry.ping(),
      store: { engine: config.databaseUrl ? 'postgresql' : 'sqlite', check: () => store.ping() },
      queue: core.queueCounts,
    },
    store,
    actions: { admission, cancel: (id, reason) => worker.cancel(id, reason) },
    metrics: metrics.registry,
    setup: {
      publicUrl,
      githubWebUrl: config.githubWebUrl,
      currentApp: () => core.githubAuth.currentApp,
      tokenMode: config.githubToken !== undefined,
      convert: (code) => convertManifest(core.github, code),
      adopt: async (app) => {
        await keepApp(config.dataDir, app);
        await core.githubAuth.useApp(app);
      },
    },
    adminToken,
    openPages: config.openPages,
    logger,
    now,
  });

  // The servers keep GitHub's webhooks pointed at them, and ask GitHub to redeliver what failed.
  // As a GitHub App (set by hand, or by /setup while running) the App's webhook is kept right and its deliveries
  // recovered; with GITHUB_TOKEN, those of WEBHOOK_REPOSITORIES.
  const asApp = () => core.githubAuth.mode === 'app';
  // WEBHOOK_REPOSITORIES needs GITHUB_TOKEN (config.ts); without a token, an App's hook is kept once there is one.
  const keepsHooks = !config.githubToken || config.webhookRepositories.length > 0;
  const webhookSync =
    keepsHooks && (config.publicUrl || config.ngrokApiUrl)
      ? new WebhookSync({ github: core.github, repositories: config.webhookRepositories, asApp, secret: webhookSecret, publicUrl, intervalMs: config.webhookSyncIntervalMs, logger })
      : undefined;
  const deliveryRecovery = keepsHooks
    ? new DeliveryRecovery({
        github: core.github,
        repositories: config.webhookRepositories,
        asApp,
        intervalMs: config.deliveryRecoveryIntervalMs,
        onRecovered: (repository) => metrics.deliveryRecovered(repository),
        logger,
      })
    : undefined;

  const server = await new Promise<Server>((resolve, reject) => {
    // Express 5 calls back on an error too (a port in use): that is a start that failed, said plainly.
    const listening = app.listen(config.port, (error?: Error) => {
      if (!error) return resolve(listening);
      const code = (error as NodeJS.ErrnoException).code;
      reject(code === 'EADDRINUSE' ? new Error(`port ${config.port} is in use by another process: stop it, or set PORT to a free port`) : error);
    });
  });
  // Slow bodies and idle sockets are cut early: an unsigned sender cannot hold connections for minutes.
  server.requestTimeout = config.requestTimeoutMs;
  server.headersTimeout = Math.min(config.requestTimeoutMs, 10_000);
  server.keepAliveTimeout = 5_000;
  server.setTimeout(2 * config.requestTimeoutMs);
  const { port } = server.address() as AddressInfo;
  logger.info({ port, registry: config.registry, githubApiUrl: config.githubApiUrl, dataDir: config.dataDir, concurrency: config.buildConcurrency }, 'ci_service listening');
  webhookSync?.start();
  // Once listening: what GitHub sends again must find the webhook answering.
  deliveryRecovery?.start();

  return {
    url: `http://127.0.0.1:${port}`,
    server,
    webhookSync,
    deliveryRecovery,
    async stopAccepting() {
      accepting = false;
      await deliveryRecovery?.stop();
      await webhookSync?.stop();
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
