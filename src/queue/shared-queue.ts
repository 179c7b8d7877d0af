import { PgBoss, type Db as IDatabase } from 'pg-boss';
import pg from 'pg';
import type { Logger } from 'pino';
import type { BuildRecord } from '../domain/build-record.js';
import { describeError } from '../domain/errors.js';
import type { ImageLock } from './build-worker.js';

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
    return new SharedBuildQueue(boss, logger);
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
