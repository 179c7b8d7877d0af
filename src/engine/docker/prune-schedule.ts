/** How long after a build its cache is pruned, and how often at most. */
export interface PruneTiming {
  /** BuildKit lets go of a build's records a moment after its request ends; a prune before that keeps them. */
  afterBuildMs: number;
  /** A prune takes a quarter of a second even when nothing is over (measured): at most one this often. */
  everyMs: number;
}

export const PRUNE_TIMING: PruneTiming = { afterBuildMs: 5_000, everyMs: 60_000 };

/**
 * When to prune BuildKit's cache: beside the builds, never in their way. Each build is owed two prunes: the next
 * one (`afterBuildMs` after it, or sooner when an earlier build's wait is already running) and one a minute after
 * that, for what the first left: a prune keeps the records in use, and in CI, under load, a finished build's 4 MB
 * layer outlived the first. Builds in between share the prunes they are owed; one prune runs at a time.
 */
export class PruneSchedule {
  private owed = 0;
  private running: Promise<void> | undefined;
  private lastPrune = -Infinity;

  /** `prune` reports its own failures: a failed prune still counts as one, and the next one tries again. */
  constructor(
    private readonly prune: () => Promise<void>,
    private readonly timing: PruneTiming = PRUNE_TIMING,
  ) {}

  afterBuild(): void {
    this.owed = 2;
    this.running ??= this.pruneWhileOwed();
  }

  private async pruneWhileOwed(): Promise<void> {
    try {
      while (this.owed > 0) {
        await delay(Math.max(this.timing.afterBuildMs, this.lastPrune + this.timing.everyMs - Date.now()));
        this.owed -= 1;
        await this.prune().catch(() => {}); // (its own failures it reports; none may end the loop)
        this.lastPrune = Date.now();
      }
    } finally {
      // In the same tick as the loop's last check: a build after it starts a new loop.
      this.running = undefined;
    }
  }
}

/** A timer that never keeps the process alive: a prune owed at shutdown is not worth waiting for. */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref());
}
