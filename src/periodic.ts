/**
 * A pass that runs at start and then every `intervalMs` (0: at start only), one pass at a time. `stop()` aborts
 * the pass in flight through its signal and waits for it: a neighbour that never answers does not hold a shutdown.
 * The pass itself must not throw: it logs its failures, and the next pass tries again.
 */
export class Periodic<T> {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private readonly stopping = new AbortController();

  constructor(
    private readonly pass: (signal: AbortSignal) => Promise<T>,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    void this.runNow();
    if (this.intervalMs > 0) {
      this.timer = setInterval(() => void this.runNow(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** One pass, after any in flight; also what tests call. */
  runNow(): Promise<T> {
    const next = this.running.then(() => this.pass(this.stopping.signal));
    this.running = next.catch(() => undefined);
    return next;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.stopping.abort();
    await this.running;
  }
}
