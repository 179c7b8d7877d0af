import { PgBoss, type Db as IDatabase } from 'pg-boss';
import pg from 'pg';
import type { Logger } from 'pino';
import type { BuildRecord } from '../domain/build-record.js';
import { describeError } from '../domain/errors.js';
import type { ImageLock } from './build-worker.js';
import type { PlatformJob, PlatformJobResult } from '../pipeline/ports.js';

const QUEUE = 'ci-builds';
/** pg-boss's least heartbeat: a worker that stops sending them (killed, frozen) loses its build this long after. */
const HEARTBEAT_SECONDS = 10;
/** How often pg-boss looks for jobs whose heartbeat stopped: a dead worker's build runs again within about 20 s. */
const SUPERVISE_SECONDS = 5;
/**
 * How long after a worker stops that another one has taken its build up, at the most: the heartbeat's expiry, a
 * supervision pass that notices it, the next one's margin, and a poll (the README's "about 20 s").
 */
export const TAKEOVER_BOUND_SECONDS = HEARTBEAT_SECONDS + 2 * SUPERVISE_SECONDS + 1;
/** A build that died with its worker this many times fails the job; the repository's later builds then wait. */
const RETRY_LIMIT = 10;
/**
 * The image lock's session ends when it sends nothing for this long: a frozen worker's session ends, and its
 * lock with it. A working holder says something every LOCK_KEEPALIVE_MS.
 */
const LOCK_IDLE_TIMEOUT = '20s';
const LOCK_KEEPALIVE_MS = 5000;
const LOCK_POLL_MS = 500;

interface BuildJob {
  buildId: string;
}

/** One queue per platform, taken only by workers whose engines build it natively: `ci-platform-linux-arm64`. */
const platformQueueName = (platform: string) => `ci-platform-${platform.replace(/\//g, '-')}`;
/** How often a build waiting for another worker's platform looks at its job. */
const PLATFORM_POLL_MS = 250;
/**
 * A platform job no worker has taken after this long is taken back: the worker that said it builds the platform
 * has gone since (its record is that old at most). The build's retry then plans again, without it.
 */
const PLATFORM_UNCLAIMED_MS = 45_000;

/**
 * The builds waiting for a worker, across hosts, on PostgreSQL through pg-boss (its own schema): every stored
 * build is a job whose id is the build's id, keyed by repository in a `key_strict_fifo` queue, so builds of one
 * repository start one at a time in delivery order on whichever worker, and other repositories do not wait. A
 * worker sends heartbeats while it builds; when they stop (killed, frozen, cut off), pg-boss hands the build to
 * another worker, whose run becomes the current one (BuildStore.claim).
 */
export class SharedBuildQueue {
  private constructor(
    private readonly boss: PgBoss,
    private readonly logger: Logger,
    /** A job outlives a build's timeout by the time a slot waits for the engine to stop. */
    private readonly jobSeconds: number,
  ) {}

  static async start(url: string, buildTimeoutMs: number, logger: Logger): Promise<SharedBuildQueue> {
    const boss = new PgBoss({ connectionString: url, schema: 'ci_service_jobs', superviseIntervalSeconds: SUPERVISE_SECONDS, monitorIntervalSeconds: SUPERVISE_SECONDS });
    boss.on('error', (error: Error) => logger.warn({ error: describeError(error) }, 'the shared build queue reported an error'));
    await boss.start();
    if (!(await boss.getQueue(QUEUE))) {
      await boss
        .createQueue(QUEUE, {
          policy: 'key_strict_fifo',
          heartbeatSeconds: HEARTBEAT_SECONDS,
          retryLimit: RETRY_LIMIT,
          retryDelay: 1,
          // A build ends by its own timeout; the job outlives it by the time a slot waits for the engine to stop.
          expireInSeconds: Math.ceil(buildTimeoutMs / 1000) + 300,
        })
        // Another process created it meanwhile.
        .catch(async (error: unknown) => {
          if (!(await boss.getQueue(QUEUE))) throw error;
        });
    }
    return new SharedBuildQueue(boss, logger, Math.ceil(buildTimeoutMs / 1000) + 300);
  }

  /**
   * Hands a build to the workers, in the transaction that stores it (`transaction`, the store's connection): a
   * build is stored and queued, or neither. The job's id is the build's.
   */
  async enqueue(build: BuildRecord, transaction: IDatabase): Promise<void> {
    await this.boss.send(QUEUE, { buildId: build.id } satisfies BuildJob, { id: build.id, singletonKey: build.request.repository.fullName.toLowerCase(), db: transaction });
  }

  /** Takes builds, `concurrency` at a time, for as long as the queue runs. */
  async work(concurrency: number, run: (buildId: string) => Promise<void>): Promise<void> {
    await this.boss.work<BuildJob>(QUEUE, { localConcurrency: concurrency, pollingIntervalSeconds: 0.5 }, async ([job]) => {
      if (job) await run(job.data.buildId);
    });
  }

  /**
   * Takes platform jobs (one platform of another worker's multi-platform build) for each platform this worker's
   * engine builds natively, `concurrency` at a time. The job's output is the PlatformJobResult; a worker that dies
   * under one loses it to another after its heartbeat stops, as with builds.
   */
  async workPlatforms(platforms: string[], concurrency: number, run: (job: PlatformJob, signal: AbortSignal) => Promise<PlatformJobResult>): Promise<void> {
    for (const platform of platforms) {
      const queue = await this.platformQueue(platform);
      await this.boss.work<PlatformJob>(queue, { localConcurrency: concurrency, pollingIntervalSeconds: 0.5 }, async ([job]) => (job ? run(job.data, job.signal) : undefined));
    }
  }

  /**
   * Hands one platform's build to a worker that builds it natively, and waits for its result. Aborting cancels the
   * job: a worker running it stops.
   */
  async buildPlatform(job: PlatformJob, signal: AbortSignal): Promise<PlatformJobResult> {
    const queue = await this.platformQueue(job.platform);
    const id = await this.boss.send(queue, job as unknown as object);
    if (!id) throw new Error(`the shared queue did not take the ${job.platform} job`);
    const cancel = () => void this.boss.cancel(queue, id).catch(() => undefined);
    signal.addEventListener('abort', cancel, { once: true });
    const sent = Date.now();
    try {
      for (;;) {
        if (signal.aborted) throw signal.reason;
        const state = await this.boss.getJobById<PlatformJob>(queue, id);
        if (state?.state === 'completed') return state.output as unknown as PlatformJobResult;
        if (state?.state === 'created' && Date.now() - sent > PLATFORM_UNCLAIMED_MS) {
          await this.boss.cancel(queue, id).catch(() => undefined);
          const message = `no worker took ${job.platform} within ${PLATFORM_UNCLAIMED_MS / 1000} s: the worker that builds it natively is gone; trying again without it`;
          return { worker: 'none', seconds: 0, log: [], failure: { stage: 'build', message, retryable: true } };
        }
        if (!state || state.state === 'failed' || state.state === 'cancelled') {
          const output = state?.output as { message?: string } | undefined;
          return { worker: 'unknown', seconds: 0, log: [], failure: { stage: 'build', message: `the worker building ${job.platform} stopped without a result (${output?.message ?? state?.state ?? 'the job is gone'})`, retryable: true } };
        }
        await new Promise((resolve) => setTimeout(resolve, PLATFORM_POLL_MS));
      }
    } finally {
      signal.removeEventListener('abort', cancel);
    }
  }

  /** A platform's queue, created on first use: a dead worker's platform job goes to another, as builds do. */
  private async platformQueue(platform: string): Promise<string> {
    const name = platformQueueName(platform);
    await this.ensureQueue(name, { policy: 'standard', heartbeatSeconds: HEARTBEAT_SECONDS, retryLimit: 2, retryDelay: 1, expireInSeconds: this.jobSeconds });
    return name;
  }

  /** Queues known to exist: each platform's is looked up once per process, not once per job. */
  private readonly queues = new Set<string>();

  private async ensureQueue(name: string, options: Parameters<PgBoss['createQueue']>[1]): Promise<void> {
    if (this.queues.has(name)) return;
    if (!(await this.boss.getQueue(name))) {
      // Another process may create it meanwhile.
      await this.boss.createQueue(name, options).catch(async (error: unknown) => {
        if (!(await this.boss.getQueue(name))) throw error;
      });
    }
    this.queues.add(name);
  }

  /** Stops taking builds; lets running ones finish within `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    await this.boss.stop({ graceful: true, timeout: Math.max(1000, graceMs) }).catch((error: unknown) => {
      this.logger.warn({ error: describeError(error) }, 'the shared build queue did not stop cleanly');
    });
  }
}

/**
 * One build of an image name at a time across every host: a PostgreSQL advisory lock, held by a session of its
 * own for the build and its push. PostgreSQL ends a session that says nothing for LOCK_IDLE_TIMEOUT, so a holder
 * that was frozen or cut off loses the lock, and `lost` stops its build before it can push over a newer one.
 */
export function postgresImageLock(url: string): ImageLock {
  return async (imageName, _order, signal, action, lost) => {
    const session = new pg.Client({ connectionString: url, keepAlive: true });
    let holding = false;
    session.on('error', (error) => {
      if (holding) lost?.(new Error(`lost the lock on ${imageName} (${describeError(error)}): another worker may build it now`));
    });
    await session.connect();
    try {
      await session.query(`SET idle_session_timeout = '${LOCK_IDLE_TIMEOUT}'`);
      for (;;) {
        const { rows } = await session.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [imageName]);
        if (rows[0]?.locked) break;
        if (signal.aborted) throw signal.reason;
        await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
      }
      holding = true;
      const keepAlive = setInterval(() => session.query('SELECT 1').catch(() => {}), LOCK_KEEPALIVE_MS);
      try {
        return await action();
      } finally {
        clearInterval(keepAlive);
        holding = false;
      }
    } finally {
      // Ending the session releases the lock.
      await session.end().catch(() => {});
    }
  };
}
