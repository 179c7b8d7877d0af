import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BuildRecord } from '../../src/domain/build-record.js';
import { WaitingBuilds } from '../../src/queue/waiting-builds.js';

/** Only what the queue looks at: the arrival order and the repository. */
function build(seq: number, repository: string): BuildRecord {
  return { id: `b${seq}`, seq, request: { repository: { fullName: repository } } } as unknown as BuildRecord;
}

function drain(waiting: WaitingBuilds, busy: string[] = []): string[] {
  const taken = [];
  for (let next = waiting.takeNext(new Set(busy)); next; next = waiting.takeNext(new Set(busy))) taken.push(next.id);
  return taken;
}

describe('WaitingBuilds', () => {
  it('gives builds back oldest first, across repositories', () => {
    const waiting = new WaitingBuilds();
    for (const [seq, repository] of [[1, 'o/a'], [2, 'o/b'], [3, 'o/a'], [4, 'o/c'], [5, 'o/b']] as const) waiting.add(build(seq, repository));
    assert.equal(waiting.size, 5);
    assert.deepEqual(drain(waiting), ['b1', 'b2', 'b3', 'b4', 'b5']);
    assert.equal(waiting.size, 0);
  });

  it('skips the repositories that are busy, and keeps their builds', () => {
    const waiting = new WaitingBuilds();
    for (const [seq, repository] of [[1, 'o/a'], [2, 'o/a'], [3, 'o/b'], [4, 'o/a'], [5, 'o/b']] as const) waiting.add(build(seq, repository));
    assert.deepEqual(drain(waiting, ['o/a']), ['b3', 'b5']);
    assert.equal(waiting.size, 3);
    assert.deepEqual(drain(waiting, ['o/b']), ['b1', 'b2', 'b4']);
  });

  it('puts a build older than those waiting (taken up after a restart) in its place', () => {
    const waiting = new WaitingBuilds();
    for (const seq of [5, 9, 2, 7, 1]) waiting.add(build(seq, 'o/a'));
    assert.deepEqual(drain(waiting), ['b1', 'b2', 'b5', 'b7', 'b9']);
  });
});
