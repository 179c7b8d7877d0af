import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BuildRequest } from '../../src/domain/build-request.js';
import { LostClaimError, type AddOutcome, type BuildStore } from '../../src/queue/build-store.js';
import { logOf } from './store-log.js';

export function request(deliveryId: string, sha = 'a'.repeat(40), repository = 'o/app'): BuildRequest {
  const [owner, name] = repository.split('/') as [string, string];
  return { deliveryId, repository: { owner, name, fullName: repository, htmlUrl: 'https://github.com/o/app', private: false }, sha, trigger: { kind: 'merge', prNumber: 1, baseRef: 'main' } };
}

/** How a conformance run reaches one engine: a new empty store, and the same storage opened again. */
export interface StoreEngine {
  open(): Promise<BuildStore>;
  /** Closes `store` and opens what it stored, as a restarted process would. */
  reopen(store: BuildStore): Promise<BuildStore>;
}

function createdId(outcome: AddOutcome): string {
  assert.equal(outcome.kind, 'created');
  return outcome.kind === 'created' ? outcome.build.id : '';
}

/** The lifecycle every BuildStore keeps, whatever holds it: run against SQLite and PostgreSQL alike. */
export function buildStoreConformance(name: string, engine: StoreEngine): void {
  describe(`${name} build store: the BuildStore contract`, () => {
    const withStore = (test: (store: BuildStore) => Promise<BuildStore | void>) => async () => {
      let store = await engine.open();
      try {
        store = (await test(store)) ?? store;
      } finally {
        await store.close();
      }
    };

    it('keeps builds, their changes and their logs across reopening', withStore(async (first) => {
      const id = createdId(await first.add(request('d1'), new Date('2026-01-01T00:00:00Z'), 10));
      await first.update(id, { status: 'running', worker: 'host-a' });
      await first.update(id, { status: 'succeeded', image: 'reg/app:1', tags: ['reg/app:1', 'reg/app:latest'], digest: 'sha256:1', finishedAt: new Date('2026-01-01T00:01:00Z') });
      await first.appendLog(id, 'line one');
      await first.appendLog(id, 'line two');
      const reopened = await engine.reopen(first);
      const build = await reopened.get(id);
      assert.equal(build?.status, 'succeeded');
      assert.deepEqual(build?.tags, ['reg/app:1', 'reg/app:latest']);
      assert.equal(build?.finishedAt?.toISOString(), '2026-01-01T00:01:00.000Z');
      assert.equal(build?.createdAt.toISOString(), '2026-01-01T00:00:00.000Z');
      assert.equal(build?.request.repository.fullName, 'o/app');
      assert.equal(build?.resumed, false);
      assert.equal(build?.worker, 'host-a');
      assert.equal(await logOf(reopened, id), 'line one\nline two\n');
      return reopened;
    }));

    it('answers a redelivery with the build it made, never a second one, even when copies arrive at once', withStore(async (store) => {
      const outcomes = await Promise.all(Array.from({ length: 20 }, () => store.add(request('same'), new Date(), 10)));
      const created = outcomes.filter((outcome) => outcome.kind === 'created');
      assert.equal(created.length, 1);
      assert.ok(outcomes.every((outcome) => 'build' in outcome && outcome.build.id === created[0]!.build.id));
      assert.equal((await store.list(100)).length, 1);
    }));

    it('joins a merge of the same commit to the queued or running build, but not to a finished one', withStore(async (store) => {
      const first = createdId(await store.add(request('d1'), new Date(), 10));
      assert.equal((await store.add(request('d2'), new Date(), 10)).kind, 'coalesced');
      await store.update(first, { status: 'running' });
      assert.equal((await store.add(request('d3'), new Date(), 10)).kind, 'coalesced');
      assert.equal((await store.add(request('d3'), new Date(), 10)).kind, 'redelivery');
      await store.update(first, { status: 'succeeded' });
      assert.equal((await store.add(request('d4'), new Date(), 10)).kind, 'created');
      assert.equal((await store.add(request('d5', 'b'.repeat(40)), new Date(), 10)).kind, 'created');
    }));

    it('refuses a new build when maxQueued are waiting, storing nothing', withStore(async (store) => {
      await store.add(request('d1', '1'.repeat(40)), new Date(), 2);
      await store.add(request('d2', '2'.repeat(40)), new Date(), 2);
      assert.deepEqual(await store.add(request('d3', '3'.repeat(40)), new Date(), 2), { kind: 'queue_full', queued: 2 });
      assert.equal((await store.list(10)).length, 2);
    }));

    it('counts what waits as builds start, finish, are queued again and the store is reopened', withStore(async (store) => {
      const first = createdId(await store.add(request('d1', '1'.repeat(40)), new Date(), 2));
      await store.add(request('d2', '2'.repeat(40)), new Date(), 2);
      await store.update(first, { status: 'running' }); // no longer waiting: room for one
      const third = createdId(await store.add(request('d3', '3'.repeat(40)), new Date(), 2));
      assert.equal((await store.add(request('d4', '4'.repeat(40)), new Date(), 2)).kind, 'queue_full');
      await store.update(third, { error: 'a change that is not of status' });
      assert.equal((await store.add(request('d4', '4'.repeat(40)), new Date(), 2)).kind, 'queue_full');
      await store.update(first, { status: 'queued', resumed: true }); // as after a restart: 3 waiting
      await store.update(third, { status: 'failed' });
      assert.equal((await store.add(request('d4', '4'.repeat(40)), new Date(), 2)).kind, 'queue_full');
      const reopened = await engine.reopen(store);
      assert.deepEqual(await reopened.add(request('d5', '5'.repeat(40)), new Date(), 2), { kind: 'queue_full', queued: 2 });
      assert.equal((await reopened.add(request('d5', '5'.repeat(40)), new Date(), 3)).kind, 'created');
      return reopened;
    }));

    it('lists newest first and the unfinished oldest first', withStore(async (store) => {
      const ids: string[] = [];
      for (const n of [1, 2, 3]) ids.push(createdId(await store.add(request(`d${n}`, String(n).repeat(40)), new Date(), 10)));
      await store.update(ids[1]!, { status: 'failed' });
      assert.deepEqual((await store.list(10)).map((build) => build.id), [...ids].reverse());
      assert.deepEqual((await store.unfinished()).map((build) => build.id), [ids[0], ids[2]]);
      assert.equal(await store.get('unknown'), undefined);
      assert.equal(await logOf(store, 'unknown'), undefined);
    }));

    it('gives a reader the log lines after its cursor, a page at a time, whatever other builds write meanwhile', withStore(async (store) => {
      const a = createdId(await store.add(request('la', '1'.repeat(40)), new Date(), 10));
      const b = createdId(await store.add(request('lb', '2'.repeat(40)), new Date(), 10));
      for (let n = 1; n <= 5; n += 1) {
        await store.appendLog(a, `a${n}`);
        await store.appendLog(b, `b${n}`);
      }
      const first = (await store.readLogAfter(a, 0, 2))!;
      assert.deepEqual(first.lines, ['a1', 'a2']);
      const second = (await store.readLogAfter(a, first.cursor, 10))!;
      assert.deepEqual(second.lines, ['a3', 'a4', 'a5']);
      assert.deepEqual(await store.readLogAfter(a, second.cursor, 10), { lines: [], cursor: second.cursor }, 'nothing new: the same cursor');
      assert.equal(await store.readLogAfter('unknown', 0, 10), undefined);
    }));

    it('names the newest pushed image of a name, and keeps the first pusher of a name as its owner', withStore(async (store) => {
      for (const [n, version] of [[1, '1.0.0'], [2, '1.1.0']] as const) {
        const id = createdId(await store.add(request(`p${n}`, String(n).repeat(40)), new Date(), 10));
        await store.update(id, { status: 'succeeded', image: `reg/app:${version}`, digest: `sha256:${n}` });
      }
      // A pull request's build that pushed nothing is not a pushed image.
      const unpushed = createdId(await store.add({ ...request('p4', '4'.repeat(40)), trigger: { kind: 'pull_request', prNumber: 4, baseRef: 'main', headRef: 'topic' } }, new Date(), 10));
      await store.update(unpushed, { status: 'succeeded', image: 'reg/app:pr-4' });
      const failed = createdId(await store.add(request('p3', '3'.repeat(40)), new Date(), 10));
      await store.update(failed, { status: 'failed', image: 'reg/app:2.0.0' });
      assert.equal(await store.lastPushedImage('reg/app'), 'reg/app:1.1.0');
      assert.equal(await store.lastPushedImage('reg/ap'), undefined, 'a name, not a prefix of one');
      assert.equal(await store.imageOwner('reg/app'), undefined);
      assert.equal(await store.claimImage('reg/app', 'o/app'), 'o/app');
      assert.equal(await store.claimImage('reg/app', 'o/other'), 'o/app');
      assert.equal(await store.imageOwner('reg/app'), 'o/app');
    }));

    it('coalesces deliveries of one commit only for the same trigger: a merge, one pull request, one ref', withStore(async (store) => {
      const sha = 'e'.repeat(40);
      const merge = await store.add(request('t1', sha), new Date(), 10);
      assert.equal(merge.kind, 'created');
      assert.equal((await store.add(request('t2', sha), new Date(), 10)).kind, 'coalesced');
      const pr = { kind: 'pull_request', prNumber: 9, baseRef: 'main', headRef: 'topic' } as const;
      const first = await store.add({ ...request('t3', sha), trigger: pr }, new Date(), 10);
      assert.equal(first.kind, 'created', 'a pull request build of the merged commit is another question');
      assert.equal((await store.add({ ...request('t4', sha), trigger: pr }, new Date(), 10)).kind, 'coalesced');
      assert.equal((await store.add({ ...request('t5', sha), trigger: { kind: 'release', ref: 'refs/tags/v1.0.0', rulesRef: 'refs/heads/main' } }, new Date(), 10)).kind, 'created');
      const ofPr = await store.unfinishedOfTrigger('o/app', 'pr:9');
      assert.deepEqual(ofPr.map((build) => build.request.deliveryId), ['t3']);
      assert.deepEqual(ofPr[0]!.request.trigger, pr);
    }));

    it('cancels a queued or running build with its reason, ends its run, and leaves a finished one alone', withStore(async (store) => {
      const queued = createdId(await store.add(request('x1', '1'.repeat(40)), new Date(), 10));
      const running = createdId(await store.add(request('x2', '2'.repeat(40)), new Date(), 10));
      await store.claim(running, 'host-a', new Date());
      assert.deepEqual(await store.counts(), { queued: 1, running: 1 });
      const at = new Date('2026-01-01T00:02:00Z');
      const cancelled = await store.cancel(queued, 'superseded by abc1234', at);
      assert.deepEqual([cancelled?.status, cancelled?.error, cancelled?.finishedAt?.toISOString()], ['cancelled', 'superseded by abc1234', at.toISOString()]);
      const stopped = await store.cancel(running, 'cancelled by hand', at);
      assert.equal(stopped?.attempt, 2, 'the run that was going on is over');
      await assert.rejects(store.update(running, { status: 'succeeded' }, 1), LostClaimError, 'its worker records nothing more');
      await assert.rejects(store.appendLog(running, 'late', 1), LostClaimError);
      assert.equal(await store.claim(running, 'host-b', new Date()), undefined, 'a cancelled build is not run again');
      assert.equal(await store.cancel(running, 'again', at), undefined);
      assert.deepEqual(await store.counts(), { queued: 0, running: 0 });
      assert.deepEqual(await store.unfinished(), []);
      assert.equal(await store.cancel('00000000-0000-0000-0000-000000000000', 'unknown', at), undefined);
    }));

    it('a claim starts a new run; writes of a run that was taken over are refused; a finished build is not claimed', withStore(async (store) => {
      const id = createdId(await store.add(request('c1'), new Date(), 10));
      const first = await store.claim(id, 'host-a', new Date('2026-01-01T00:00:00Z'));
      assert.deepEqual([first?.status, first?.attempt, first?.worker, first?.resumed], ['running', 1, 'host-a', false]);
      assert.equal((await store.add(request('c2', '2'.repeat(40)), new Date(), 1)).kind, 'created', 'a running build does not wait');
      await store.appendLog(id, 'from run 1', 1);
      // host-a stopped answering; host-b takes the build up.
      const second = await store.claim(id, 'host-b', new Date('2026-01-01T00:01:00Z'));
      assert.deepEqual([second?.attempt, second?.worker, second?.resumed], [2, 'host-b', true]);
      await assert.rejects(store.update(id, { status: 'succeeded' }, 1), LostClaimError);
      await assert.rejects(store.appendLog(id, 'late line of run 1', 1), LostClaimError);
      assert.equal((await store.get(id))?.status, 'running', 'the stale run changed nothing');
      await store.appendLog(id, 'from run 2', 2);
      assert.equal((await store.update(id, { status: 'succeeded' }, 2)).status, 'succeeded');
      assert.equal(await logOf(store, id), 'from run 1\nfrom run 2\n');
      assert.equal(await store.claim(id, 'host-c', new Date()), undefined, 'finished: never run again');
    }));

    it('counts what waits and what builds, and remembers the workers it has seen', withStore(async (store) => {
      const first = createdId(await store.add(request('n1', '1'.repeat(40)), new Date(), 10));
      await store.add(request('n2', '2'.repeat(40)), new Date(), 10);
      await store.claim(first, 'host-a', new Date());
      assert.deepEqual(await store.counts(), { queued: 1, running: 1 });
      await store.recordWorker('host-b', new Date('2026-01-01T00:00:00Z'));
      await store.recordWorker('host-a', new Date('2026-01-01T00:00:00Z'));
      await store.recordWorker('host-a', new Date('2026-01-01T00:00:15Z'));
      assert.deepEqual(
        (await store.workers()).map((worker) => [worker.name, worker.seenAt.toISOString()]),
        [['host-a', '2026-01-01T00:00:15.000Z'], ['host-b', '2026-01-01T00:00:00.000Z']],
      );
    }));

    it("keeps the engine each worker and each build named, and a worker's engine until it names another", withStore(async (store) => {
      const engine = 'docker 26.1.5 (API 1.45, containerd store)';
      await store.recordWorker('host-a', new Date('2026-01-01T00:00:00Z'), engine);
      await store.recordWorker('host-a', new Date('2026-01-01T00:00:15Z'));
      assert.deepEqual((await store.workers()).map((worker) => [worker.name, worker.engine]), [['host-a', engine]]);
      await store.recordWorker('host-a', new Date('2026-01-01T00:00:30Z'), 'docker 29.1.0 (API 1.52, containerd store)');
      assert.equal((await store.workers())[0]?.engine, 'docker 29.1.0 (API 1.52, containerd store)');
      const id = createdId(await store.add(request('e1', '1'.repeat(40)), new Date(), 10));
      await store.claim(id, 'host-a', new Date());
      assert.equal((await store.update(id, { status: 'succeeded', engine }, 1)).engine, engine);
      assert.equal((await store.get(id))?.engine, engine);
    }));

    it('deletes finished builds older than the cutoff with their logs and delivery ids, never unfinished ones', withStore(async (store) => {
      const old = createdId(await store.add(request('old', '1'.repeat(40)), new Date('2026-01-01T00:00:00Z'), 10));
      await store.appendLog(old, 'old line');
      await store.update(old, { status: 'succeeded', finishedAt: new Date('2026-01-01T00:01:00Z') });
      const recent = createdId(await store.add(request('recent', '2'.repeat(40)), new Date(), 10));
      await store.update(recent, { status: 'failed', finishedAt: new Date() });
      const waiting = createdId(await store.add(request('waiting', '3'.repeat(40)), new Date('2026-01-01T00:00:00Z'), 10));
      assert.equal(await store.deleteFinishedBefore(new Date('2026-06-01T00:00:00Z')), 1);
      assert.equal(await store.get(old), undefined);
      assert.ok(await store.get(recent));
      assert.ok(await store.get(waiting));
      // Its delivery id went with it: the same delivery now makes a new build.
      assert.equal((await store.add(request('old', '1'.repeat(40)), new Date(), 10)).kind, 'created');
    }));
  });
}
