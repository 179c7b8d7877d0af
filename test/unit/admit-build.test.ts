import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { admitBuild, supersededBy, type AdmissionPorts, type PullRequestCancel } from '../../src/admission/admit-build.js';
import type { BuildRecord } from '../../src/domain/build-record.js';
import type { BuildRequest } from '../../src/domain/build-request.js';
import { SqliteBuildStore } from '../../src/queue/sqlite-build-store.js';

const repository = { owner: 'octo', name: 'app', fullName: 'octo/app', htmlUrl: 'https://github.com/octo/app', private: false };
const SHA = 'a'.repeat(40);
const OTHER = 'b'.repeat(40);
const head = (deliveryId: string, sha: string): BuildRequest => ({ deliveryId, repository, sha, trigger: { kind: 'pull_request', prNumber: 7, baseRef: 'main', headRef: 'topic', fork: false } });

/** Admission on a real (in-memory SQLite) store; cancelling recorded as the worker would be asked. */
function ports(maxQueuedBuilds = 10) {
  const store = new SqliteBuildStore(':memory:');
  const submitted: BuildRecord[] = [];
  const cancels: { cancel: PullRequestCancel; before: number | undefined }[] = [];
  const admission: AdmissionPorts = {
    store,
    submit: (build) => submitted.push(build),
    cancelPullRequest: async (cancel, before) => {
      cancels.push({ cancel, before });
      return [];
    },
    maxQueuedBuilds,
    now: () => new Date(),
    onCancelFailure: () => {},
  };
  return { store, submitted, cancels, admission };
}

describe('admitting a build: one use case for deliveries and rebuilds', () => {
  it('what each build supersedes: a head the older builds of its pull request, a merge all of them, a release nothing', () => {
    assert.deepEqual(supersededBy(head('d', SHA)), { cancel: { repository, prNumber: 7, reason: 'superseded by aaaaaaa, a newer head of pull request #7' }, allBefore: true });
    assert.deepEqual(supersededBy({ ...head('d', SHA), rebuildOf: 'b1' })?.cancel.reason, 'superseded by a rebuild of aaaaaaa');
    assert.deepEqual(supersededBy({ deliveryId: 'd', repository, sha: SHA, trigger: { kind: 'merge', prNumber: 7, baseRef: 'main' } }), {
      cancel: { repository, prNumber: 7, reason: 'pull request #7 was merged' },
      allBefore: false,
    });
    assert.equal(supersededBy({ deliveryId: 'd', repository, sha: SHA, trigger: { kind: 'release', ref: 'refs/tags/v1.0.0', rulesRef: 'refs/heads/main' } }), undefined);
  });

  it('stores and queues a new build, then cancels what came before it; a redelivery or the same commit joins it', async () => {
    const { submitted, cancels, admission } = ports();
    const first = await admitBuild(admission, head('d1', SHA));
    assert.equal(first.kind, 'created');
    assert.deepEqual(submitted.map((build) => build.id), [first.kind === 'created' ? first.build.id : '']);
    assert.equal(cancels[0]?.before, first.kind === 'created' ? first.build.seq : -1, 'only builds admitted before it');
    assert.equal((await admitBuild(admission, head('d1', SHA))).kind, 'redelivery');
    assert.equal((await admitBuild(admission, head('d2', SHA))).kind, 'coalesced');
    assert.equal(submitted.length, 1, 'neither is queued again');
  });

  it('a rebuild supersedes as a delivery does (it used not to)', async () => {
    const { cancels, admission } = ports();
    await admitBuild(admission, head('d1', SHA));
    const rebuilt = await admitBuild(admission, { ...head('rebuild-1', OTHER), rebuildOf: 'earlier' });
    assert.equal(rebuilt.kind, 'created');
    assert.equal(cancels.at(-1)?.cancel.reason, 'superseded by a rebuild of bbbbbbb');
  });

  it('a full queue stores nothing and cancels nothing; a cancel that fails leaves the build admitted', async () => {
    const full = ports(1);
    await admitBuild(full.admission, head('d1', SHA));
    const refused = await admitBuild(full.admission, head('d2', OTHER));
    assert.deepEqual(refused, { kind: 'queue_full', queued: 1 });
    assert.equal(full.cancels.length, 1);

    const failing = ports();
    const failures: string[] = [];
    const admitted = await admitBuild({ ...failing.admission, cancelPullRequest: async () => Promise.reject(new Error('store gone')), onCancelFailure: (_request, error) => failures.push(error) }, head('d1', SHA));
    assert.equal(admitted.kind, 'created');
    assert.deepEqual(failures, ['store gone']);
  });
});
