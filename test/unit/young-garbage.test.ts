import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { collectYoungGarbageEvery } from '../../src/build/young-garbage.js';

const MB = 1024 * 1024;

/** The young-generation collections V8 reports while `action` runs. */
async function minorCollectionsDuring(action: () => void): Promise<number> {
  const entries: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  action();
  await new Promise((resolve) => setTimeout(resolve, 50)); // entries are delivered asynchronously
  observer.disconnect();
  const kind = (entry: PerformanceEntry) => (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
  return entries.filter((entry) => kind(entry) === constants.NODE_PERFORMANCE_GC_MINOR).length;
}

describe('collectYoungGarbageEvery', () => {
  it('runs one young-generation collection each time the given number of bytes has passed', async () => {
    const moved = collectYoungGarbageEvery(4 * MB);
    const collections = await minorCollectionsDuring(() => {
      for (let chunk = 0; chunk < 10; chunk += 1) moved(1 * MB); // 10 MB: at 4 and at 8
    });
    assert.equal(collections, 2);
  });

  it('runs none while fewer bytes have passed', async () => {
    const moved = collectYoungGarbageEvery(4 * MB);
    const collections = await minorCollectionsDuring(() => {
      for (let chunk = 0; chunk < 3; chunk += 1) moved(1 * MB);
    });
    assert.equal(collections, 0);
  });
});
