import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Without options, V8's `gc` runs a full collection (Node 20's V8 reads `{ type: 'major' }` as minor). */
type CollectGarbage = (options?: { type: 'minor' }) => void;

/** V8's own collector, taken without exposing a global `gc` to the rest of the process. */
const collect: CollectGarbage | undefined = (() => {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as CollectGarbage;
    setFlagsFromString('--no-expose-gc');
    return gc;
  } catch {
    return undefined;
  }
})();

/** Measured with bench/run.ts memory: the 1 GB context's peak stays within a few MB of a small one's. */
export const CONTEXT_GARBAGE_PACE: GarbagePace = { youngEveryBytes: 1024 * 1024, fullEveryBytes: 128 * 1024 * 1024 };

/**
 * What each entry of a context leaves behind (its header, its packets, its file's streams), counted as bytes passed
 * for the pace: a context of 200,000 empty files moves almost no bytes, yet its daemon peaked 190 MB above a
 * small one's (bench/README.md).
 */
export const ENTRY_GARBAGE_BYTES = 4096;

export interface GarbagePace {
  /** A young-generation collection (well under a millisecond) each time this many bytes have passed. */
  youngEveryBytes: number;
  /** A full collection (about 15 ms) each time this many bytes have passed. */
  fullEveryBytes: number;
}

/**
 * Returns a counter to call with the size of each chunk a stream moves; it collects garbage in step
 * with the bytes, so the daemon's memory stays flat whatever the context's size (bench/README.md).
 *
 * Why young collections: every socket read and every inflated chunk is a fresh Buffer that dies at
 * once, but V8 schedules collections by its small JS objects, not by the bytes behind them, and lets
 * tens of MB of dead buffers pile up first.
 * Why full ones: each young collection promotes what is in flight at that moment (a few KB of stream
 * state), which then lies dead in the old generation until V8's next full collection — about 10 MB
 * per GB of context, as V8 waits for its heap limit.
 */
export function collectGarbageAsBytesPass(pace: GarbagePace): (bytes: number) => void {
  let sinceYoung = 0;
  let sinceFull = 0;
  return (bytes) => {
    if (!collect) return;
    sinceYoung += bytes;
    sinceFull += bytes;
    if (sinceFull >= pace.fullEveryBytes) {
      sinceFull = 0;
      sinceYoung = 0;
      collect();
    } else if (sinceYoung >= pace.youngEveryBytes) {
      sinceYoung = 0;
      collect({ type: 'minor' });
    }
  };
}
