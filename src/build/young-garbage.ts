import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type CollectGarbage = (options: { type: 'minor' }) => void;

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

/**
 * Returns a counter to call with the size of each chunk a stream moves; it runs a young-generation
 * collection (about a millisecond) every `everyBytes`.
 *
 * Why: every socket read and every inflated chunk of a context is a fresh Buffer that dies at once,
 * but V8 schedules collections by its small JS objects, not by the bytes behind them, and lets tens
 * of MB of dead buffers pile up first. Collected in step with the bytes, the daemon's memory stays
 * flat whatever the context's size (bench/README.md, "What moved the figures").
 */
export function collectYoungGarbageEvery(everyBytes: number): (bytes: number) => void {
  let sinceLast = 0;
  return (bytes) => {
    sinceLast += bytes;
    if (sinceLast < everyBytes || !collect) return;
    sinceLast = 0;
    collect({ type: 'minor' });
  };
}
