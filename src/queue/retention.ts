import { describeError } from '../domain/errors.js';
import type { Logger } from 'pino';
import { Periodic } from '../periodic.js';
import type { BuildStore } from './build-store.js';

const SWEEP_EVERY_MS = 60 * 60 * 1000;

/** Deletes builds and their logs RETENTION_DAYS after they ended: at start, then every hour. */
export class RetentionSweeper {
  private readonly periodic = new Periodic(() => this.sweepNow(), SWEEP_EVERY_MS);

  constructor(
    private readonly store: BuildStore,
    private readonly retentionMs: number,
    private readonly logger: Logger,
    private readonly now: () => Date,
  ) {}

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One sweep; never throws (a failure is logged and the next sweep tries again). */
  async sweepNow(): Promise<number> {
    const cutoff = new Date(this.now().getTime() - this.retentionMs);
    try {
      const deleted = await this.store.deleteFinishedBefore(cutoff);
      if (deleted > 0) this.logger.info({ deleted, before: cutoff.toISOString() }, 'deleted builds past RETENTION_DAYS');
      return deleted;
    } catch (error) {
      this.logger.warn({ error: describeError(error) }, 'could not delete old builds; trying again in an hour');
      return 0;
    }
  }
}
