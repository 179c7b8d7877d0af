import PQueue from 'p-queue';
import type { BuildReporter, BuildResult } from '../build/run-build.js';
import { BuildFailure, BuildTimeoutError, describeError } from '../errors.js';
import type { BuildRequest } from '../github/decide-build.js';
import type { Logger } from '../logger.js';
import type { BuildRecord, BuildStore } from './build-store.js';

export type RunBuild = (request: BuildRequest, reporter: BuildReporter, signal: AbortSignal) => Promise<BuildResult>;

export interface WorkerOptions {
  concurrency: number;
  timeoutMs: number;
  logger: Logger;
  now?: () => Date;
}

/** Takes stored builds and runs them, `concurrency` at a time, each within `timeoutMs`. */
export class BuildWorker {
  private readonly queue: PQueue;
  private readonly now: () => Date;

  constructor(
    private readonly store: BuildStore,
    private readonly run: RunBuild,
    private readonly options: WorkerOptions,
  ) {
    this.queue = new PQueue({ concurrency: options.concurrency });
    this.now = options.now ?? (() => new Date());
  }

  submit(build: BuildRecord): void {
    this.queue.add(() => this.execute(build)).catch((error: unknown) => {
      // Only the store can fail here; the build stays as stored and is logged, the daemon goes on.
      this.options.logger.error({ buildId: build.id, error: describeError(error) }, 'could not record the build outcome');
    });
  }

  /** Resolves when nothing is queued or running. */
  onIdle(): Promise<void> {
    return this.queue.onIdle();
  }

  counts(): { queued: number; running: number } {
    return { queued: this.queue.size, running: this.queue.pending };
  }

  private async execute(build: BuildRecord): Promise<void> {
    const log = this.options.logger.child({ buildId: build.id, deliveryId: build.request.deliveryId });
    const reporter = this.reporter(build.id);
    await this.store.update(build.id, { status: 'running', startedAt: this.now() });
    log.info({ repository: build.request.repository.fullName, sha: build.request.sha }, 'build started');

    const controller = new AbortController();
    const timeout = new BuildTimeoutError(
      `build did not finish within BUILD_TIMEOUT_S=${Math.round(this.options.timeoutMs / 1000)} s; raise it or make the build faster`,
    );
    const timer = setTimeout(() => controller.abort(timeout), this.options.timeoutMs);
    try {
      const result = await Promise.race([this.run(build.request, reporter, controller.signal), rejectOnAbort(controller.signal)]);
      await reporter.flushed();
      await this.store.update(build.id, { status: 'succeeded', digest: result.digest, image: result.image, tags: result.tags, finishedAt: this.now() });
      log.info({ image: result.image, digest: result.digest }, 'build succeeded');
    } catch (thrown) {
      const error = controller.signal.aborted ? timeout : thrown;
      const stage = error instanceof BuildFailure ? error.stage : undefined;
      reporter.log(`FAILED${stage ? ` (${stage})` : ''}: ${describeError(error)}`);
      await reporter.flushed();
      await this.store.update(build.id, { status: 'failed', error: describeError(error), failedStage: stage, finishedAt: this.now() });
      log.warn({ stage, error: describeError(error) }, 'build failed');
    } finally {
      clearTimeout(timer);
    }
  }

  /** Log lines reach the store in the order they were written. */
  private reporter(buildId: string): BuildReporter & { flushed(): Promise<void> } {
    let pending: Promise<void> = Promise.resolve();
    const store = this.store;
    return {
      log: (text) => {
        pending = pending.then(() => store.appendLog(buildId, text)).catch(() => {});
      },
      imageResolved: (image, tags) => {
        pending = pending.then(() => store.update(buildId, { image, tags })).then(() => {}, () => {});
      },
      flushed: () => pending,
    };
  }
}

/** Settles only by rejecting, when the signal aborts: a build that ignores its signal still ends on time. */
function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}
