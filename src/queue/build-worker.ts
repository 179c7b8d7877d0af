import type { BuildReporter, BuildResult, BuildSession } from '../pipeline/ports.js';
import type { BuildObserver } from '../domain/build-observer.js';
import type { BuildRecord } from '../domain/build-record.js';
import { pullRequestKey, type BuildRequest } from '../domain/build-request.js';
import { BuildCancelledError, BuildFailure, BuildTimeoutError, describeError } from '../domain/errors.js';
import type { Logger } from 'pino';
import { LostClaimError, type BuildStore } from './build-store.js';
import { BuildLog } from './build-log.js';
import { KeyedLock } from './keyed-lock.js';
import { createRetry, type RetryPolicy } from './retry.js';
import { WaitingBuilds } from './waiting-builds.js';

export type RunBuild = (request: BuildRequest, session: BuildSession) => Promise<BuildResult>;

/**
 * Runs `action` while no other build of `imageName` builds or pushes; `order` is the build's arrival order. A lock
 * that can be lost (held across hosts) calls `lost` then, and the build stops.
 */
export type ImageLock = <T>(imageName: string, order: number, signal: AbortSignal, action: () => Promise<T>, lost?: (error: Error) => void) => Promise<T>;

const CANCEL_CHECK_MS = 1000;

/** The build's image lock was lost mid-build: this run stops without recording, and its queue runs it again. */
export class LostLockError extends Error {
  override name = 'LostLockError';
}

export interface WorkerOptions {
  observers?: BuildObserver[];
  concurrency: number;
  timeoutMs: number;
  /**
   * After a timeout, how long the slot waits for the build to stop on the engine (aborting the request cancels
   * it there) before another build may have it. Default 60 s.
   */
  stopWaitMs?: number;
  retry: RetryPolicy;
  /** Recorded on each build it runs (WORKER_NAME). */
  workerName: string;
  /** The engine this worker builds on, as it describes itself: recorded on each build it finishes. */
  engine?: () => string | undefined;
  /** How often a running build checks whether it was cancelled or taken over. Default 1 s. */
  cancelCheckMs?: number;
  /** Default: one image name at a time within this process. */
  imageLock?: ImageLock;
  logger: Logger;
  now?: () => Date;
}

/**
 * Runs stored builds, `concurrency` at a time, each within `timeoutMs`.
 * Builds of one repository start one at a time in arrival order, and builds of one image name
 * build and push one at a time, so an older commit never overwrites the tag a newer one pushed.
 */
export class BuildWorker {
  private readonly waiting = new WaitingBuilds();
  private readonly running = new Map<string, string>(); // build id → repository
  /** The runs in this process, to stop one at once when it is cancelled here. */
  private readonly controllers = new Map<string, AbortController>();
  private idleWaiters: (() => void)[] = [];
  private paused = false;
  /** Builds of one image name one at a time: in this process (KeyedLock), or across hosts (WorkerOptions.imageLock). */
  private readonly imageLock: ImageLock;
  private readonly now: () => Date;

  constructor(
    private readonly store: BuildStore,
    private readonly run: RunBuild,
    private readonly options: WorkerOptions,
  ) {
    this.now = options.now ?? (() => new Date());
    const local = new KeyedLock();
    this.imageLock = options.imageLock ?? ((name, order, signal, action) => local.run(name, order, signal, action));
  }

  /** Tells the observers (commit statuses, metrics) that a build waits, when another queue holds it. */
  announceQueued(build: BuildRecord): void {
    this.notify('queued', build);
  }

  submit(build: BuildRecord): void {
    this.notify('queued', build);
    this.waiting.add(build);
    this.pump();
  }

  /** Takes up what a previous process left: running builds run again, queued ones keep their place. */
  async resumeUnfinished(): Promise<number> {
    const unfinished = await this.store.unfinished();
    for (const build of unfinished) {
      const note =
        build.status === 'running'
          ? 'resumed: ci_service stopped while this build ran; running it again from the start'
          : 'resumed: taken up from the queue after a restart';
      const reporter = this.reporter(build.id, undefined);
      reporter.log(note);
      await reporter.flushed();
      this.submit(await this.store.update(build.id, { status: 'queued', resumed: true }));
    }
    return unfinished.length;
  }

  /**
   * Cancels a queued or running build, wherever it runs: the store records it (and ends its run, so whichever
   * worker runs it stops at its next write or check, within CANCEL_CHECK_MS); here, it stops at once.
   * Undefined when it had finished.
   */
  async cancel(id: string, reason: string): Promise<BuildRecord | undefined> {
    const cancelled = await this.store.cancel(id, reason, this.now());
    if (!cancelled) return undefined;
    this.controllers.get(id)?.abort(new BuildCancelledError(reason));
    this.notify('finished', cancelled);
    await this.store.appendLog(id, `[ci_service] cancelled: ${reason}`).catch((error: unknown) => {
      this.options.logger.warn({ buildId: id, error: describeError(error) }, 'could not add the cancel to the build\'s log');
    });
    return cancelled;
  }

  /** Cancels the unfinished builds of a pull request, or only those admitted before the build with seq `before`. */
  async cancelPullRequest(repository: string, prNumber: number, reason: string, before?: number): Promise<BuildRecord[]> {
    const unfinished = await this.store.unfinishedOfTrigger(repository, pullRequestKey(prNumber));
    const cancelled: BuildRecord[] = [];
    for (const build of unfinished.filter((candidate) => before === undefined || candidate.seq < before)) {
      const done = await this.cancel(build.id, reason);
      if (done) cancelled.push(done);
    }
    return cancelled;
  }

  /** Starts nothing more; what runs goes on. Queued builds stay stored for the next start. */
  pause(): void {
    this.paused = true;
    this.settleIdle();
  }

  /** Resolves when nothing runs and nothing can start (the queue is empty, or the worker paused). */
  onIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  counts(): { queued: number; running: number } {
    return { queued: this.waiting.size, running: this.running.size };
  }

  private notify(event: keyof BuildObserver, build: BuildRecord): void {
    for (const observer of this.options.observers ?? []) {
      Promise.resolve()
        .then(() => observer[event]?.(build))
        .catch((error: unknown) => this.options.logger.warn({ buildId: build.id, event, error: describeError(error) }, 'build observer failed'));
    }
  }

  private isIdle(): boolean {
    return this.running.size === 0 && (this.paused || this.waiting.size === 0);
  }

  private settleIdle(): void {
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private pump(): void {
    while (!this.paused && this.running.size < this.options.concurrency) {
      const build = this.waiting.takeNext(new Set(this.running.values()));
      if (!build) break;
      this.running.set(build.id, build.request.repository.fullName);
      this.execute(build)
        .catch((error: unknown) => {
          // Only the store can fail here: the build stays as stored, and is taken up at the next start.
          this.options.logger.error({ buildId: build.id, error: describeError(error) }, 'could not record the build outcome');
        })
        .finally(() => {
          this.running.delete(build.id);
          this.pump();
          this.settleIdle();
        });
    }
  }

  /**
   * Runs one build now: claims it (a new run, whose writes hold only while it stays the current one), runs the
   * pipeline within the timeout and records the outcome. Used for the builds this worker queues itself, and for
   * builds a shared queue hands it.
   */
  async execute(build: BuildRecord): Promise<void> {
    const log = this.options.logger.child({ buildId: build.id, deliveryId: build.request.deliveryId });
    const claimed = await this.store.claim(build.id, this.options.workerName, this.now());
    if (!claimed) {
      log.info('build already finished; not run again');
      return;
    }
    const attempt = claimed.attempt;
    const controller = new AbortController();
    const lost = (error: LostClaimError) => controller.abort(error);
    const reporter = this.reporter(build.id, attempt, lost);
    log.info({ repository: build.request.repository.fullName, sha: build.request.sha, resumed: claimed.resumed, attempt }, 'build started');
    this.notify('started', claimed);

    const timeout = new BuildTimeoutError(
      `build did not finish within BUILD_TIMEOUT_S=${Math.round(this.options.timeoutMs / 1000)} s; raise it or make the build faster`,
    );
    const timer = setTimeout(() => controller.abort(timeout), this.options.timeoutMs);
    this.controllers.set(build.id, controller);
    // A cancel, or another worker taking the build over, is seen here even while the build writes nothing.
    const checker = setInterval(() => void this.checkStillOurs(build.id, attempt, controller), this.options.cancelCheckMs ?? CANCEL_CHECK_MS);
    const retry = createRetry(
      this.options.retry,
      controller.signal,
      (message) => {
        reporter.log(message);
        log.warn({ retry: message }, 'retrying a build step');
      },
      { deadline: Date.now() + this.options.timeoutMs },
    );
    let running: Promise<BuildResult> | undefined;
    try {
      const exclusive = <T>(imageName: string, action: () => Promise<T>) => {
        reporter.log(`waiting for other builds of ${imageName}, if any`);
        return this.imageLock(imageName, build.seq, controller.signal, action, (error) => controller.abort(new LostLockError(error.message)));
      };
      running = this.run(claimed.request, { reporter, signal: controller.signal, retry, exclusive });
      const result = await Promise.race([running, rejectOnAbort(controller.signal)]);
      await reporter.flushed();
      const done = await this.store.update(build.id, { status: 'succeeded', digest: result.digest, image: result.image, tags: result.tags, platforms: result.platforms, finishedAt: this.now(), engine: this.options.engine?.() }, attempt);
      this.notify('finished', done);
      log.info({ image: result.image, digest: result.digest }, 'build succeeded');
      await result.engineCleanUp;
    } catch (thrown) {
      const error = controller.signal.aborted ? (controller.signal.reason as Error) : thrown;
      if (error instanceof BuildCancelledError) {
        log.info({ attempt, reason: error.message }, 'build cancelled: this run stops');
        return;
      }
      if (error instanceof LostClaimError || thrown instanceof LostClaimError) {
        log.warn({ attempt }, 'another run took this build over: this run stops and records nothing');
        return;
      }
      if (error instanceof LostLockError) {
        log.warn({ attempt, error: error.message }, 'this run lost its image lock: it stops, records nothing, and the build is run again');
        throw error;
      }
      const stage = error instanceof BuildFailure ? error.stage : undefined;
      reporter.log(`FAILED${stage ? ` (${stage})` : ''}: ${describeError(error)}`);
      await reporter.flushed();
      const done = await this.store.update(build.id, { status: 'failed', error: describeError(error), failedStage: stage, finishedAt: this.now(), engine: this.options.engine?.() }, attempt).catch((failure: unknown) => {
        if (failure instanceof LostClaimError) return undefined;
        throw failure;
      });
      if (!done) {
        log.warn({ attempt }, 'another run took this build over: this run stops and records nothing');
        return;
      }
      this.notify('finished', done);
      log.warn({ stage, error: describeError(error) }, 'build failed');
    } finally {
      clearTimeout(timer);
      clearInterval(checker);
      this.controllers.delete(build.id);
      // The build is recorded as failed at once; its slot waits until the engine has stopped it.
      if (controller.signal.aborted && running) await this.untilStopped(running, log);
    }
  }

  private async checkStillOurs(id: string, attempt: number, controller: AbortController): Promise<void> {
    const now = await this.store.get(id).catch(() => undefined);
    if (!now || controller.signal.aborted) return;
    if (now.status === 'cancelled') controller.abort(new BuildCancelledError(now.error ?? 'cancelled'));
    else if (now.attempt !== attempt) controller.abort(new LostClaimError(id, attempt));
  }

  private async untilStopped(running: Promise<unknown>, log: Logger): Promise<void> {
    const waitMs = this.options.stopWaitMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([
      running.then(
        () => true,
        () => true,
      ),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), waitMs))),
    ]);
    clearTimeout(timer);
    if (!stopped) log.warn({ waitedMs: waitMs }, 'a timed-out build has not stopped; its slot goes to the next build');
  }

  /**
   * Log lines reach the store in the order they were written, cleaned and capped (build-log.ts), for this run
   * only: once another run has taken the build over, `onLost` stops this one.
   */
  private reporter(buildId: string, attempt: number | undefined, onLost: (error: LostClaimError) => void = () => {}): BuildReporter & { flushed(): Promise<void> } {
    let pending: Promise<void> = Promise.resolve();
    const enqueue = (write: () => Promise<unknown>) => {
      pending = pending.then(write).then(
        () => {},
        (error: unknown) => {
          if (error instanceof LostClaimError) onLost(error);
        },
      );
    };
    const log = new BuildLog((line) => enqueue(() => this.store.appendLog(buildId, line, attempt)));
    return {
      log: (text) => log.own(text),
      output: (text) => log.output(text),
      imageResolved: (image, tags) => enqueue(() => this.store.update(buildId, { image, tags }, attempt)),
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
