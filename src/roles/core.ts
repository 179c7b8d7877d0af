import type { Config } from '../config.js';
import { describeError } from '../domain/errors.js';
import type { BuildObserver } from '../domain/build-observer.js';
import { readFile } from 'node:fs/promises';
import { CommitStatusReporter } from '../github/commit-status.js';
import type { AxiosInstance } from 'axios';
import { CheckRunReporter } from '../github/check-runs.js';
import { checkAppPrivateKey, GitHubAuth, type GitHubApp } from '../github/github-auth.js';
import { createGitHubClient } from '../github/github-client.js';
import { GitHubReports } from '../github/github-reports.js';
import { keptApp } from '../github/kept-app.js';
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
  /** As whom ci_service acts on GitHub: nobody, GITHUB_TOKEN's person, or the GitHub App (which /setup may make while it runs). */
  githubAuth: GitHubAuth;
  source: GitHubSource;
  registry: RegistryClient;
  metrics: Metrics;
  /** What GitHub shows of each build: check runs as an App, commit statuses with GITHUB_TOKEN, nothing without either. */
  reports: GitHubReports;
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
  const githubAuth = new GitHubAuth(config.githubApiUrl, config.githubToken);
  const app = await configuredApp(config);
  if (app) await githubAuth.useApp(app);
  const github = createGitHubClient(config.githubApiUrl, githubAuth);
  if (app) void sayWhichApp(github, githubAuth, logger);
  const logOf = async (id: string) => (await store.readLogAfter(id, 0, 1_000_000))?.lines ?? [];
  const reports = new GitHubReports(githubAuth, new CheckRunReporter(github, config.publicUrl, logOf, logger), new CommitStatusReporter(github, config.publicUrl, logger));
  return {
    store,
    shared,
    github,
    githubAuth,
    source: new GitHubSource(github, config.githubApiUrl, githubAuth),
    registry: new RegistryClient(config.registryUrl, config.registry, config.registryAuth),
    metrics,
    reports,
    observers: [metrics, reports],
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

/**
 * The GitHub App ci_service acts as: the one set by hand (GITHUB_APP_ID with its key, or the key's file), else the
 * one /setup made and kept under DATA_DIR; a key that is not the RSA key GitHub gives refuses the start.
 */
async function configuredApp(config: Config): Promise<GitHubApp | undefined> {
  const byHand = config.githubApp;
  if (!byHand) return config.githubToken ? undefined : keptApp(config.dataDir);
  const [variable, privateKey] =
    'privateKey' in byHand
      ? ['GITHUB_APP_PRIVATE_KEY', byHand.privateKey]
      : [
          'GITHUB_APP_PRIVATE_KEY_FILE',
          await readFile(byHand.privateKeyFile, 'utf8').catch((error: unknown) => {
            throw new Error(`cannot read GITHUB_APP_PRIVATE_KEY_FILE ${byHand.privateKeyFile}: ${describeError(error)}`);
          }),
        ];
  try {
    checkAppPrivateKey(privateKey, 'it');
  } catch (error) {
    throw new Error(`${variable}: ${describeError(error)}`);
  }
  return { id: byHand.id, privateKey };
}

/**
 * Names the App at start, as GitHub knows it (GET /app with its JWT); an App id that does not match the key is
 * said here, not at the first build. Not awaited: a GitHub that is slow to answer does not hold up the start.
 */
async function sayWhichApp(github: AxiosInstance, auth: GitHubAuth, logger: Logger): Promise<void> {
  const response = await github.get<{ id?: number; slug?: string; html_url?: string }>('/app', { timeout: 10_000 }).catch((error: unknown) => ({ status: 0, data: { message: describeError(error) } }));
  if (response.status === 200) {
    logger.info({ appId: auth.currentApp?.id, slug: (response.data as { slug?: string }).slug }, 'acting on GitHub as a GitHub App');
  } else if (response.status === 401) {
    logger.error({ appId: auth.currentApp?.id }, auth.refusedJwt());
  } else {
    logger.warn({ status: response.status, detail: response.data }, 'could not ask GitHub about the GitHub App yet');
  }
}
