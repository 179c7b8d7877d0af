import type { Config } from '../config.js';
import { describeError } from '../domain/errors.js';
import type { BuildObserver } from '../domain/build-observer.js';
import { CommitStatusReporter } from '../github/commit-status.js';
import type { AxiosInstance } from 'axios';
import { createGitHubClient } from '../github/github-client.js';
import { GitHubSource } from '../github/github-source.js';
import type { Logger } from '../logger.js';
import { Metrics } from '../metrics.js';
import type { BuildStore } from '../queue/build-store.js';
import type { AdmissionHook, PostgresBuildStore } from '../queue/postgres-build-store.js';
import type { SharedBuildQueue } from '../queue/shared-queue.js';
import { SqliteBuildStore } from '../queue/sqlite-build-store.js';
import type { ImageLock } from '../queue/build-worker.js';
import { RegistryClient } from '../registry/registry-client.js';

/** What every role uses: the store (and with PostgreSQL the shared queue), GitHub, the registry, metrics. */
export interface Core {
  store: BuildStore;
  /** With DATABASE_URL: builds wait in the shared queue, for any worker process. */
  shared: { queue: SharedBuildQueue; imageLock: ImageLock } | undefined;
  github: AxiosInstance;
  source: GitHubSource;
  registry: RegistryClient;
  metrics: Metrics;
  /** Commit statuses, with GITHUB_TOKEN. */
  statuses: CommitStatusReporter | undefined;
  observers: BuildObserver[];
  /** Builds waiting and building: the shared queue's (every process's) with PostgreSQL, this process's with SQLite. */
  queueCounts: () => Promise<{ queued: number; running: number }>;
  now: () => Date;
}

/**
 * Opens what every role shares. `localCounts` is this process's own queue (SQLite), read for /metrics and
 * /healthz when builds do not wait in the shared one.
 */
export async function openCore(config: Config, logger: Logger, localCounts: () => { queued: number; running: number }): Promise<Core> {
  const now = () => new Date();
  const shared = config.databaseUrl ? await startSharedQueue(config.databaseUrl, config.buildTimeoutMs, logger) : undefined;
  const store = config.databaseUrl
    ? await connectPostgres(config.databaseUrl, logger, shared && ((build, transaction) => shared.queue.enqueue(build, transaction)))
    : SqliteBuildStore.inDataDir(config.dataDir);
  const queueCounts = async () => (shared ? store.counts() : localCounts());
  const metrics = new Metrics(queueCounts, () => store.workers());
  const github = createGitHubClient(config.githubApiUrl, config.githubToken);
  const statuses = config.githubToken ? new CommitStatusReporter(github, config.publicUrl, logger) : undefined;
  return {
    store,
    shared,
    github,
    source: new GitHubSource(github, config.githubApiUrl, config.githubToken !== undefined),
    registry: new RegistryClient(config.registryUrl, config.registry, config.registryAuth),
    metrics,
    statuses,
    observers: statuses ? [metrics, statuses] : [metrics],
    queueCounts,
    now,
  };
}

/** The shared queue and the image lock across hosts, loaded only with DATABASE_URL. */
async function startSharedQueue(url: string, buildTimeoutMs: number, logger: Logger) {
  const { SharedBuildQueue, postgresImageLock } = await import('../queue/shared-queue.js');
  return { queue: await SharedBuildQueue.start(url, buildTimeoutMs, logger), imageLock: postgresImageLock(url) };
}

/**
 * The shared store; a start-up error names the server (never the password) and what went wrong. Loaded only
 * when DATABASE_URL is set: a daemon on SQLite does not carry the PostgreSQL client in its memory.
 */
async function connectPostgres(url: string, logger: Logger, onAdmit: AdmissionHook | undefined): Promise<PostgresBuildStore> {
  const { host, pathname } = new URL(url);
  try {
    const { PostgresBuildStore } = await import('../queue/postgres-build-store.js');
    const store = await PostgresBuildStore.connect(url, onAdmit);
    logger.info({ database: `${host}${pathname}` }, 'builds are stored in PostgreSQL');
    return store;
  } catch (error) {
    throw new Error(`cannot use the PostgreSQL database at DATABASE_URL (${host}${pathname}): ${describeError(error)}`);
  }
}
