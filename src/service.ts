import Dockerode from 'dockerode';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Checkouts } from './source/checkout.js';
import { DockerEngine } from './engine/docker/docker-engine.js';
import { engineLabel } from './engine/engine.js';
import type { BuildPorts } from './pipeline/ports.js';
import { releaseRequest } from './spec/release-rules.js';
import { runBuild } from './pipeline/run-build.js';
import { SPEC_FILE, SPEC_MAX_BYTES } from './spec/build-spec.js';
import type { Config } from './config.js';
import { describeError } from './domain/errors.js';
import { ADMIN_TOKEN, keptSecret, WEBHOOK_SECRET } from './kept-secrets.js';
import { CommitStatusReporter } from './github/commit-status.js';
import { DeliveryRecovery } from './github/delivery-recovery.js';
import { createGitHubClient } from './github/github-client.js';
import { GitHubSource } from './github/github-source.js';
import { publicUrlSource, WebhookSync } from './github/webhook-sync.js';
import { createDeliveryVerifier } from './github/verify-delivery.js';
import { createApp } from './http/app.js';
import type { Logger } from './logger.js';
import { Metrics } from './metrics.js';
import type { BuildStore } from './queue/build-store.js';
import type { BuildObserver } from './domain/build-observer.js';
import type { BuildRecord } from './domain/build-record.js';
import { BuildWorker } from './queue/build-worker.js';
import { RetentionSweeper } from './queue/retention.js';
import type { AdmissionHook, PostgresBuildStore } from './queue/postgres-build-store.js';
import { SqliteBuildStore } from './queue/sqlite-build-store.js';
import { RegistryClient } from './registry/registry-client.js';

export interface RunningService {
  /** '' for a worker (CI_ROLE=worker), which serves no HTTP. */
  url: string;
  server: Server | undefined;
  store: BuildStore;
  worker: BuildWorker;
  /** Present when WEBHOOK_REPOSITORIES is set. */
  webhookSync: WebhookSync | undefined;
  /** Present on a server when WEBHOOK_REPOSITORIES and GITHUB_TOKEN are set. */
  deliveryRecovery: DeliveryRecovery | undefined;
  /**
   * Stops taking deliveries (503), lets running builds finish within SHUTDOWN_GRACE_S,
   * leaves queued ones stored for the next start, closes the store.
   */
  stop(): Promise<void>;
}

/** The composition root: real adapters for every port, wired once. */
export async function startService(config: Config, logger: Logger): Promise<RunningService> {
  const now = () => new Date();
  // A worker serves no HTTP: it neither checks deliveries nor guards pages.
  const serves = config.role !== 'worker';
  const webhookSecret = serves ? await keptSecret(WEBHOOK_SECRET, config.webhookSecret, config.dataDir, logger) : undefined;
  // With OPEN_PAGES only a token set by hand guards rebuild and cancel; otherwise one is kept if none is set.
  const adminToken = !serves ? undefined : config.openPages ? config.adminToken : await keptSecret(ADMIN_TOKEN, config.adminToken, config.dataDir, logger);
  const engine = new DockerEngine(
    new Dockerode(config.docker),
    config.registryAuth && { ...config.registryAuth, serveraddress: config.registry.split('/')[0] ?? config.registry },
    config.builder,
    config.buildCacheBytes,
    config.buildLimits,
    (reason) => logger.warn({ reason }, 'could not prune the build cache; trying again after the next build'),
  );
  const github = createGitHubClient(config.githubApiUrl, config.githubToken);
  const registryClient = new RegistryClient(config.registryUrl, config.registry, config.registryAuth);
  // With PostgreSQL, builds wait in the shared queue, for any worker process; with SQLite, in this one.
  const shared = config.databaseUrl ? await startSharedQueue(config.databaseUrl, config.buildTimeoutMs, logger) : undefined;
  const store = config.databaseUrl ? await connectPostgres(config.databaseUrl, logger, shared && ((build, transaction) => shared.queue.enqueue(build, transaction))) : SqliteBuildStore.inDataDir(config.dataDir);
  // The queue is the shared one's (every process's builds) with PostgreSQL, this process's with SQLite.
  const queueCounts = async () => (shared ? store.counts() : worker.counts());
  const metrics = new Metrics(queueCounts, () => store.workers());
  const source = new GitHubSource(github, config.githubApiUrl, config.githubToken !== undefined);
  const ports: BuildPorts = {
    source,
    checkouts: await Checkouts.open(path.join(config.dataDir, 'checkouts'), source),
    builder: engine,
    pusher: metrics.timedPusher(engine),
    registry: config.registry,
    contextLimits: { maxBytes: config.maxContextBytes, maxArchiveBytes: config.maxRepositoryBytes, maxEntries: config.maxContextEntries },
    secretVariables: config.buildSecretVariables,
    lastPushedImage: (repositoryRef) => store.lastPushedImage(repositoryRef),
    imageOwners: {
      owner: (repositoryRef) => store.imageOwner(repositoryRef),
      claim: (repositoryRef, repository) => store.claimImage(repositoryRef, repository),
      allowedWriters: config.allowedImageWriters,
    },
    publishedRevision: (serviceName, tag, signal) => registryClient.publishedRevision(serviceName, tag, signal),
    manifestDigest: (serviceName, tag, signal) => registryClient.manifestDigest(serviceName, tag, signal),
    now,
  };
  const observers: BuildObserver[] = [metrics];
  const statuses = config.githubToken ? new CommitStatusReporter(github, config.publicUrl, logger) : undefined;
  if (statuses) observers.push(statuses);
  // The engine as it last described itself: recorded on the worker and on each build it finishes.
  let engineName: string | undefined;
  const describeEngine = async () => {
    const described = await engine.describe();
    engineName = engineLabel(described);
    return described;
  };
  const worker = new BuildWorker(store, (request, session) => runBuild(request, ports, session), {
    engine: () => engineName,
    ...(shared ? { imageLock: shared.imageLock } : {}),
    observers,
    concurrency: config.buildConcurrency,
    timeoutMs: config.buildTimeoutMs,
    retry: { retries: config.buildRetries, baseDelayMs: config.buildRetryDelayMs, maxDelayMs: 60_000 },
    workerName: config.workerName,
    logger,
    now,
  });
  let accepting = true;
  // The shared queue took the build in the transaction that stored it.
  const submit = shared ? (build: BuildRecord) => worker.announceQueued(build) : (build: BuildRecord) => worker.submit(build);
  // Only a server (CI_ROLE all or server) makes the app, and a server has its webhook secret.
  const createServerApp = () => createApp({
    webhook: {
      verifyDelivery: createDeliveryVerifier(webhookSecret!),
      policy: {
        allowedRepositories: config.allowedRepositories,
        baseBranches: config.baseBranches,
        buildRef: config.buildRef,
        pullRequests: config.pullRequests.build,
        buildDrafts: config.pullRequests.drafts,
        trustForks: config.pullRequests.trustForks,
        forkLabel: config.pullRequests.forkLabel,
      },
      store,
      submit,
      cancelPullRequest: (cancel, before) => worker.cancelPullRequest(cancel.repository.fullName, cancel.prNumber, cancel.reason, before),
      releaseRequest: (push) => releaseRequest(push, () => source.readFile(push.repository, push.sha, SPEC_FILE, SPEC_MAX_BYTES, AbortSignal.timeout(RELEASE_RULES_TIMEOUT_MS))),
      hold: (held) => void statuses?.held(held.repository, held.sha, held.description),
      isAccepting: () => accepting,
      maxQueuedBuilds: config.maxQueuedBuilds,
      onOutcome: (outcome) => metrics.delivery(outcome),
      logger,
      now,
    },
    health: {
      docker: config.role === 'server' ? undefined : () => engine.ping(),
      engine: config.role === 'server' ? undefined : () => engine.describe(),
      builder: config.builder,
      registry: () => registryClient.ping(),
      store: { engine: config.databaseUrl ? 'postgresql' : 'sqlite', check: () => store.ping() },
      queue: queueCounts,
    },
    store,
    actions: { submit, cancel: (id, reason) => worker.cancel(id, reason), maxQueuedBuilds: config.maxQueuedBuilds },
    metrics: metrics.registry,
    adminToken,
    openPages: config.openPages,
    logger,
    now,
  });

  // The servers keep GitHub's webhooks pointed at them; a worker has nothing to point at.
  const webhookSync = config.webhookRepositories.length > 0 && webhookSecret !== undefined
    ? new WebhookSync({
        github,
        repositories: config.webhookRepositories,
        secret: webhookSecret,
        publicUrl: publicUrlSource(config.publicUrl, config.ngrokApiUrl),
        intervalMs: config.webhookSyncIntervalMs,
        logger,
      })
    : undefined;

  // Only the servers ask GitHub to redeliver: a redelivery arrives at the webhook.
  const deliveryRecovery = config.webhookRepositories.length > 0 && config.githubToken && serves
    ? new DeliveryRecovery({
        github,
        repositories: config.webhookRepositories,
        intervalMs: config.deliveryRecoveryIntervalMs,
        onRecovered: (repository) => metrics.deliveryRecovered(repository),
        logger,
      })
    : undefined;

  await describeEngine().then(
    (described) => {
      const fields = { builder: config.builder, engine: described };
      if (config.builder === 'buildkit' && !described.buildKit) logger.warn(fields, 'this Docker engine cannot build with BuildKit: set BUILDER=legacy');
      else logger.info(fields, `building with ${config.builder === 'buildkit' ? 'BuildKit' : "the engine's legacy builder"}`);
    },
    (error: unknown) => logger.warn({ error: describeError(error) }, 'the Docker engine does not answer yet; builds wait for it'),
  );

  const retention = config.retentionMs > 0 ? new RetentionSweeper(store, config.retentionMs, logger, now) : undefined;
  retention?.start();

  let presence: NodeJS.Timeout | undefined;
  if (config.role !== 'server') {
    // Seen on /metrics (ci_service_worker_last_seen_seconds) while it runs.
    const beat = () => describeEngine().catch(() => undefined).then(() => store.recordWorker(config.workerName, now(), engineName)).catch((error: unknown) => logger.warn({ error: describeError(error) }, 'could not record this worker as seen'));
    await beat();
    presence = setInterval(beat, WORKER_PRESENCE_MS);
    presence.unref();
  }
  if (!shared) {
    const resumed = await worker.resumeUnfinished();
    if (resumed > 0) logger.info({ resumed }, 'took up builds left by the previous process');
  } else {
    if (config.role !== 'server') {
      await shared.queue.work(config.buildConcurrency, async (id) => {
        const build = await store.get(id);
        if (build) await worker.execute(build);
      });
      logger.info({ worker: config.workerName, concurrency: config.buildConcurrency }, 'taking builds from the shared queue');
    }
  }

  if (config.role === 'worker') {
    return {
      url: '',
      server: undefined,
      store,
      worker,
      webhookSync,
      deliveryRecovery,
      async stop() {
        await retention?.stop();
        clearInterval(presence);
        await shared!.queue.stop(config.shutdownGraceMs);
        await store.close();
      },
    };
  }

  const app = createServerApp();
  const server = await new Promise<Server>((resolve, reject) => {
    const listening = app.listen(config.port, () => resolve(listening));
    listening.once('error', reject);
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
    store,
    worker,
    webhookSync,
    deliveryRecovery,
    async stop() {
      accepting = false;
      await retention?.stop();
      clearInterval(presence);
      await deliveryRecovery?.stop();
      await webhookSync?.stop();
      await shared?.queue.stop(config.shutdownGraceMs);
      worker.pause();
      const finished = await Promise.race([worker.onIdle().then(() => true), delay(config.shutdownGraceMs).then(() => false)]);
      if (!finished) logger.warn({ ...worker.counts() }, 'builds still running after SHUTDOWN_GRACE_S; the next start runs them again');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await store.close();
    },
  };
}

const WORKER_PRESENCE_MS = 15_000;
/** A push's release rules are read while GitHub waits for the answer, which it gives up on after 10 s. */
const RELEASE_RULES_TIMEOUT_MS = 8_000;


/** The shared queue and the image lock across hosts, loaded only with DATABASE_URL. */
async function startSharedQueue(url: string, buildTimeoutMs: number, logger: Logger) {
  const { SharedBuildQueue, postgresImageLock } = await import('./queue/shared-queue.js');
  return { queue: await SharedBuildQueue.start(url, buildTimeoutMs, logger), imageLock: postgresImageLock(url) };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * The shared store; a start-up error names the server (never the password) and what went wrong. Loaded only
 * when DATABASE_URL is set: a daemon on SQLite does not carry the PostgreSQL client in its memory.
 */
async function connectPostgres(url: string, logger: Logger, onAdmit: AdmissionHook | undefined): Promise<PostgresBuildStore> {
  const { host, pathname } = new URL(url);
  try {
    const { PostgresBuildStore } = await import('./queue/postgres-build-store.js');
    const store = await PostgresBuildStore.connect(url, onAdmit);
    logger.info({ database: `${host}${pathname}` }, 'builds are stored in PostgreSQL');
    return store;
  } catch (error) {
    throw new Error(`cannot use the PostgreSQL database at DATABASE_URL (${host}${pathname}): ${describeError(error)}`);
  }
}
