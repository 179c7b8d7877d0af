import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { collectGarbageAsBytesPass } from '../../src/source/stream-garbage.js';

const MB = 1024 * 1024;

/**
 * The collections V8 reports while `action` runs, young and full. A full collection first empties the young
 * generation, so that V8 has no collection of its own to run meanwhile (one such, once, made a run count 3 for 2).
 */
async function collectionsDuring(action: () => void): Promise<{ young: number; full: number }> {
  collectGarbageAsBytesPass({ youngEveryBytes: 1, fullEveryBytes: 1 })(1);
  await new Promise((resolve) => setTimeout(resolve, 50)); // its entry is delivered before the observer starts
  const entries: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  action();
  await new Promise((resolve) => setTimeout(resolve, 50)); // entries are delivered asynchronously
  observer.disconnect();
  const kind = (entry: PerformanceEntry) => (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
  return {
    young: entries.filter((entry) => kind(entry) === constants.NODE_PERFORMANCE_GC_MINOR).length,
    full: entries.filter((entry) => kind(entry) === constants.NODE_PERFORMANCE_GC_MAJOR).length,
  };
}

describe('collectGarbageAsBytesPass', () => {
  it('runs one young-generation collection each time the given number of bytes has passed', async () => {
    const moved = collectGarbageAsBytesPass({ youngEveryBytes: 4 * MB, fullEveryBytes: 1024 * MB });
    const collections = await collectionsDuring(() => {
      for (let chunk = 0; chunk < 10; chunk += 1) moved(1 * MB); // 10 MB: at 4 and at 8
    });
    assert.deepEqual(collections, { young: 2, full: 0 });
  });

  it('runs a full collection instead each time its larger number of bytes has passed', async () => {
    const moved = collectGarbageAsBytesPass({ youngEveryBytes: 1 * MB, fullEveryBytes: 4 * MB });
    const collections = await collectionsDuring(() => {
      for (let chunk = 0; chunk < 10; chunk += 1) moved(1 * MB); // full at 4 and 8, young at the other eight
    });
    assert.deepEqual(collections, { young: 8, full: 2 });
  });

  it('runs none while fewer bytes have passed', async () => {
    const moved = collectGarbageAsBytesPass({ youngEveryBytes: 4 * MB, fullEveryBytes: 8 * MB });
    const collections = await collectionsDuring(() => {
      for (let chunk = 0; chunk < 3; chunk += 1) moved(1 * MB);
    });
    assert.deepEqual(collections, { young: 0, full: 0 });
  });
});
