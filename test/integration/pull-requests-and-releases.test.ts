import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BuildView } from '../../src/http/build-view.js';
import { closedPullRequest, mergedPullRequest, pullRequestEvent, pushEvent, sendDelivery, type PullRequestOptions } from '../support/deliveries.js';
import { dockerUnavailable, engineRuns, ensureBusyboxImage, fileInImage, pulled } from '../support/docker-environment.js';
import { GitHubStandIn, type StandInRepository } from '../support/github-stand-in.js';
import { LocalRegistry, waitFor } from '../support/registry.js';
import { startTestService, TEST_SECRET, type TestService } from '../support/service-harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const GITHUB_TOKEN = 'ghp_prtesttoken000000000000000000000000000';
const ADMIN_TOKEN = 'admin-token-for-rebuild-and-cancel-0001';

const skip = await dockerUnavailable();

/** Pull requests, release rules, rebuild and cancel, on the real engine and registry; GitHub is the stand-in. */
describe('before and beyond the merge (real Docker engine and registry)', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;
  let ci: TestService;

  before(async () => {
    await ensureBusyboxImage();
    github = await new GitHubStandIn(GITHUB_TOKEN).start();
    registry = await new LocalRegistry().start();
    ci = await startTestService({
      GITHUB_API_URL: github.url,
      GITHUB_TOKEN,
      REGISTRY: registry.address,
      PUBLIC_URL: 'https://ci.example.com',
      ADMIN_TOKEN,
      OPEN_PAGES: 'true',
      FORK_LABEL: 'safe to build',
    });
  });

  after(async () => {
    await ci?.stop();
    await github?.close();
    await registry?.remove();
  });

  /** A commit of the `hello` fixture (FROM scratch) with its own image name and the dockerInfo.json keys given. */
  function commit(name: string, spec: Record<string, unknown> = {}, files: Record<string, string> = {}, fixture = 'hello', branch = 'main'): Promise<StandInRepository> {
    const dockerInfo = JSON.stringify({ service_name: `ci-test/${name}`, version: '1.0.0', ...spec });
    return github.addRepository(`octo-org/${name}`, path.join(FIXTURES, fixture), { extraFiles: { 'nonce.txt': randomUUID(), 'dockerInfo.json': dockerInfo, ...files }, branch });
  }

  async function deliver(payload: Record<string, unknown>, event = 'pull_request'): Promise<{ status: number; body: Record<string, any> }> {
    const response = await sendDelivery(ci.url, payload, { secret: TEST_SECRET, event });
    return { status: response.status, body: (await response.json()) as Record<string, any> };
  }

  async function builtFrom(payload: Record<string, unknown>, event = 'pull_request'): Promise<BuildView> {
    const { status, body } = await deliver(payload, event);
    assert.equal(status, 202, JSON.stringify(body));
    await ci.service.worker.onIdle();
    return ci.getBuild((body.build as BuildView).id);
  }

  function lastStatus(sha: string): Record<string, string> | undefined {
    return github.statuses.get(sha)?.at(-1);
  }

  async function statusSettles(sha: string, state: string): Promise<Record<string, string>> {
    await waitFor(async () => lastStatus(sha)?.state === state, 10_000, `a "${state}" status on ${sha.slice(0, 7)}`);
    return lastStatus(sha)!;
  }


  const api = (route: string, init: RequestInit = {}) =>
    fetch(`${ci.url}${route}`, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, accept: 'application/json', ...init.headers } });

  it('a pull request that builds gets a success status under its own context, and pushes nothing', async () => {
    const repository = await commit('pr-passes');
    const build = await builtFrom(pullRequestEvent(repository, repository.sha, { number: 5 }));
    assert.equal(build.status, 'succeeded', build.error);
    assert.deepEqual(build.trigger, { kind: 'pull_request', prNumber: 5, baseRef: 'main', headRef: 'topic', fork: false });
    assert.deepEqual(build.tags, [], 'nothing pushed');
    assert.equal(build.digest, undefined);
    assert.deepEqual(await registry.tags('ci-test/pr-passes'), []);
    const status = await statusSettles(repository.sha, 'success');
    assert.deepEqual(status, { state: 'success', description: 'the image builds (nothing pushed)', context: 'ci_service/pr-build', target_url: `https://ci.example.com/builds/${build.id}` });
    assert.match(await ci.getLog(build.id), /built; nothing pushed: a pull request's build pushes pr-5 only when dockerInfo.json has "pull_requests": \{"push": true\}/);
  });

  it('a pull request whose Dockerfile fails gets a failure status naming the step, and no tag', async () => {
    const repository = await commit('pr-fails', {}, {}, 'failing-run');
    const build = await builtFrom(pullRequestEvent(repository, repository.sha, { number: 6 }));
    assert.equal(build.status, 'failed');
    const status = await statusSettles(repository.sha, 'failure');
    assert.equal(status.context, 'ci_service/pr-build');
    assert.equal(status.description, "Dockerfile line 2: RUN echo about to fail && exit 3 failed (exit code: 3); last output: about to fail");
    assert.deepEqual(await registry.tags('ci-test/pr-fails'), []);
  });

  it('pushes pr-<number> when dockerInfo.json asks', async () => {
    const repository = await commit('pr-pushes', { pull_requests: { push: true } });
    const build = await builtFrom(pullRequestEvent(repository, repository.sha, { number: 7 }));
    assert.equal(build.status, 'succeeded', build.error);
    assert.deepEqual(await registry.tags('ci-test/pr-pushes'), ['pr-7']);
    assert.equal((await statusSettles(repository.sha, 'success')).description, `pushed ${registry.address}/ci-test/pr-pushes:pr-7`);
  });

  it('a new head cancels the running build of the older one, which the engine stops; closing cancels the newest', async () => {
    const slowStep = 'sleep 37';
    const slow = { Dockerfile: `FROM ci-test-busybox:latest\nCOPY nonce.txt /nonce.txt\nRUN echo waiting && ${slowStep}\n` };
    const older = await commit('pr-superseded', {}, slow, 'slow');
    const accepted = await deliver(pullRequestEvent(older, older.sha, { number: 8 }));
    assert.equal(accepted.status, 202);
    const olderId = (accepted.body.build as BuildView).id;
    await waitFor(() => engineRuns(slowStep), 30_000, 'the slow step running on the engine');

    const newer = await commit('pr-superseded', {}, { Dockerfile: `FROM ci-test-busybox:latest\nCOPY nonce.txt /nonce.txt\nRUN echo waiting again && sleep 38\n` }, 'slow');
    const pushed = await deliver(pullRequestEvent(newer, newer.sha, { number: 8, action: 'synchronize' }));
    assert.equal(pushed.status, 202);
    assert.deepEqual(pushed.body.cancelled, [olderId]);
    const cancelled = await ci.getBuild(olderId);
    const reason = `superseded by ${newer.sha.slice(0, 7)}, a newer head of pull request #8`;
    assert.deepEqual([cancelled.status, cancelled.cancelReason], ['cancelled', reason]);
    await waitFor(async () => !(await engineRuns(slowStep)), 15_000, 'the engine to stop the cancelled step');
    assert.deepEqual(await statusSettles(older.sha, 'error'), { state: 'error', description: `cancelled: ${reason}`, context: 'ci_service/pr-build', target_url: `https://ci.example.com/builds/${olderId}` });

    const newerId = (pushed.body.build as BuildView).id;
    await waitFor(() => engineRuns('sleep 38'), 30_000, 'the newer head building');
    const closed = await deliver(closedPullRequest(newer, newer.sha, 8));
    assert.deepEqual([closed.status, closed.body.cancelled], [200, [newerId]]);
    assert.equal((await ci.getBuild(newerId)).cancelReason, 'pull request #8 was closed');
    await waitFor(async () => !(await engineRuns('sleep 38')), 15_000, 'the engine to stop the closed pull request\'s step');
    await ci.service.worker.onIdle();
    assert.match(await ci.getLog(olderId), /cancelled: superseded by/);
    assert.deepEqual(await registry.tags('ci-test/pr-superseded'), []);
  });

  it('a merge is never cancelled by its pull request\'s events', async () => {
    const repository = await commit('merge-stays', {}, { Dockerfile: 'FROM ci-test-busybox:latest\nCOPY nonce.txt /nonce.txt\nRUN sleep 4.25\n' }, 'slow');
    const merge = await deliver({ ...mergedPullRequest(repository, repository.sha), number: 9 });
    assert.equal(merge.status, 202);
    const mergeId = (merge.body.build as BuildView).id;
    // The pull request's events arrive while the merge is building, when a cancel would stop it.
    await waitFor(() => engineRuns('sleep 4.25'), 30_000, 'the merge building on the engine');
    assert.equal((await ci.getBuild(mergeId)).status, 'running');
    const next = await commit('merge-stays');
    const reopened = await deliver(pullRequestEvent(next, next.sha, { number: 9, action: 'reopened' }));
    assert.equal(reopened.status, 202);
    assert.equal(reopened.body.cancelled, undefined);
    await ci.service.worker.onIdle();
    assert.equal((await ci.getBuild(mergeId)).status, 'succeeded');
  });

  it('a fork\'s pull request is held with a status saying how to allow it, and builds once a maintainer adds the label', async () => {
    const repository = await commit('from-fork');
    const fork: PullRequestOptions = { number: 10, headRepository: 'stranger/from-fork' };
    const held = await deliver(pullRequestEvent(repository, repository.sha, fork));
    assert.equal(held.status, 200);
    assert.equal(held.body.held, 'not built: the head is in stranger/from-fork, a fork. A maintainer can add the label "safe to build" to build it');
    const status = await statusSettles(repository.sha, 'pending');
    assert.deepEqual([status.context, status.description], ['ci_service/pr-build', held.body.held]);

    const otherLabel = await deliver(pullRequestEvent(repository, repository.sha, { ...fork, action: 'labeled', label: 'bug', labels: ['bug'] }));
    assert.match(otherLabel.body.ignored, /action "labeled" does not trigger builds/);
    github.setPullRequest(repository.fullName, 10, { headSha: repository.sha, labels: ['safe to build'] });
    github.setPermission(repository.fullName, 'maintainer', 'write');
    const build = await builtFrom(pullRequestEvent(repository, repository.sha, { ...fork, action: 'labeled', label: 'safe to build', labels: ['safe to build'], sender: 'maintainer' }));
    assert.equal(build.status, 'succeeded', build.error);
    assert.equal((await statusSettles(repository.sha, 'success')).context, 'ci_service/pr-build');
  });

  it("a fork's label approves one head, added by someone who may write, and only while GitHub still shows it", async () => {
    const first = await commit('fork-approval');
    const fork: PullRequestOptions = { number: 12, headRepository: 'stranger/fork-approval', action: 'labeled', label: 'safe to build', labels: ['safe to build'] };
    github.setPermission(first.fullName, 'maintainer', 'write');
    github.setPermission(first.fullName, 'triager', 'read');
    github.setPullRequest(first.fullName, 12, { headSha: first.sha, labels: ['safe to build'] });
    const byTriager = await deliver(pullRequestEvent(first, first.sha, { ...fork, sender: 'triager' }));
    assert.equal(byTriager.body.held, 'not built: triager added "safe to build" with read access; someone with write access must add it');
    assert.equal((await statusSettles(first.sha, 'pending')).description, byTriager.body.held);
    assert.equal((await builtFrom(pullRequestEvent(first, first.sha, { ...fork, sender: 'maintainer' }))).status, 'succeeded');

    // The fork pushes a second head; the label is still on the pull request, and approves nothing new.
    const second = await commit('fork-approval', {}, { 'changed.txt': 'unreviewed' }, 'hello', 'stranger-topic');
    github.setPullRequest(first.fullName, 12, { headSha: second.sha, labels: ['safe to build'] });
    const pushed = await deliver(pullRequestEvent(second, second.sha, { ...fork, action: 'synchronize', label: undefined, sender: 'stranger' }));
    assert.equal(pushed.body.held, 'not built: the head is in stranger/fork-approval, a fork. A new head needs "safe to build" again: remove and re-add it');
    // The first head's labeled delivery, sent again (recovered, or replayed: its body is signed, its id is not).
    const replayed = await deliver(pullRequestEvent(first, first.sha, { ...fork, sender: 'maintainer' }));
    assert.equal(replayed.body.held, `not built: the label was for ${first.sha.slice(0, 7)}, and the pull request's head is now ${second.sha.slice(0, 7)}`);
    github.setPullRequest(first.fullName, 12, { headSha: second.sha, labels: [] });
    const removed = await deliver(pullRequestEvent(second, second.sha, { ...fork, sender: 'maintainer' }));
    assert.equal(removed.body.held, 'not built: the label "safe to build" is no longer on pull request #12');
    github.setPullRequest(first.fullName, 12, { headSha: second.sha, labels: ['safe to build'] });
    assert.equal((await builtFrom(pullRequestEvent(second, second.sha, { ...fork, sender: 'maintainer' }))).status, 'succeeded', 'labelled again by a maintainer');
  });

  it('the version guard: a pull request whose version is published from another commit fails before any build', async () => {
    const released = await commit('guarded', { version: '1.2.0' });
    assert.equal((await builtFrom(mergedPullRequest(released, released.sha))).status, 'succeeded');
    const next = await commit('guarded', { version: '1.2.0' });
    const build = await builtFrom(pullRequestEvent(next, next.sha, { number: 11 }));
    assert.equal(build.status, 'failed');
    assert.equal(build.error, `version 1.2.0 is already published (from ${released.sha.slice(0, 7)}): bump "version" in dockerInfo.json`);
    const status = await statusSettles(next.sha, 'failure');
    assert.match(status.description!, /^version 1\.2\.0 is already published .*: bump "version"/);
    assert.doesNotMatch(await ci.getLog(build.id), /building /, 'nothing was built');
  });

  it('a git tag matching the release rule pushes its semver tags; a branch pushes its named tag; the rest is ignored with the reason', async () => {
    const repository = await commit('released', { releases: { git_tags: 'v*', branches: { main: 'edge' } } });
    const tagged = await builtFrom(pushEvent(repository, repository.sha, 'refs/tags/v1.2.3'), 'push');
    assert.equal(tagged.status, 'succeeded', tagged.error);
    assert.deepEqual(tagged.trigger, { kind: 'release', ref: 'refs/tags/v1.2.3', rulesRef: 'refs/heads/main' });
    assert.deepEqual((await registry.tags('ci-test/released')).sort(), ['1', '1.2', '1.2.3', 'latest']);
    assert.equal((await fileInImage(`${registry.address}/ci-test/released:1.2`, '/message.txt')).content, 'hello from a fixture repository\n');
    const labels = (await (await pulled(`${registry.address}/ci-test/released:1`)).inspect()).Config.Labels;
    assert.deepEqual([labels['org.opencontainers.image.version'], labels['org.opencontainers.image.revision']], ['1.2.3', repository.sha], 'the version the git tag names');
    assert.equal((await statusSettles(repository.sha, 'success')).context, 'ci_service/release');

    const branch = await builtFrom(pushEvent(repository, repository.sha, 'refs/heads/main'), 'push');
    assert.equal(branch.status, 'succeeded', branch.error);
    assert.ok((await registry.tags('ci-test/released')).includes('edge'));

    const ignored = [
      [pushEvent(repository, repository.sha, 'refs/heads/feature'), /branch feature has no release rule/],
      [pushEvent(repository, repository.sha, 'refs/tags/nightly'), /git tag nightly does not match releases.git_tags "v\*"/],
      [pushEvent(repository, repository.sha, 'refs/tags/v9.9.9', true), /refs\/tags\/v9.9.9 was deleted: nothing to build/],
    ] as const;
    for (const [payload, reason] of ignored) {
      const answer = await deliver(payload, 'push');
      assert.equal(answer.status, 200);
      assert.match(answer.body.ignored, reason);
    }
    assert.equal((await registry.tags('ci-test/released')).length, 5);
  });

  it("release rules are the default branch's: a branch whose own dockerInfo.json maps it to latest publishes nothing", async () => {
    const reviewed = await commit('rules-from-main', { releases: { git_tags: 'v*', branches: { main: 'edge' } } });
    const planted = await commit('rules-from-main', { releases: { git_tags: '*', branches: { feature: 'latest' } } }, {}, 'hello', 'feature');
    const answer = await deliver(pushEvent(planted, planted.sha, 'refs/heads/feature'), 'push');
    assert.equal(answer.status, 200);
    assert.match(answer.body.ignored, /branch feature has no release rule/);
    const notVersion = await deliver(pushEvent(planted, planted.sha, 'refs/tags/anything'), 'push');
    assert.match(notVersion.body.ignored, /git tag anything does not match releases.git_tags "v\*"/, 'the pattern is main\'s, not the pushed commit\'s');
    assert.deepEqual(await registry.tags('ci-test/rules-from-main'), []);
    const edge = await builtFrom(pushEvent(reviewed, reviewed.sha, 'refs/heads/main'), 'push');
    assert.equal(edge.status, 'succeeded', edge.error);
    assert.deepEqual(await registry.tags('ci-test/rules-from-main'), ['edge']);
  });

  it("every tag a release pushes is guarded: its 1.2 never pushes over a merge's version 1.2, and latest never moves back", async () => {
    const rules = { releases: { git_tags: 'v*' } };
    const merged = await commit('guard-all', { version: '1.2', ...rules });
    assert.equal((await builtFrom(mergedPullRequest(merged, merged.sha))).status, 'succeeded');
    const tagged = await commit('guard-all', rules);
    const release = await builtFrom(pushEvent(tagged, tagged.sha, 'refs/tags/v1.2.3'), 'push');
    assert.equal(release.status, 'failed');
    assert.equal(release.error, `tag 1.2 is version 1.2, published from ${merged.sha.slice(0, 7)}, and a published version is never pushed over: this build (version 1.2.3) would have moved it`);
    assert.deepEqual(await registry.tags('ci-test/guard-all'), ['1.2'], 'nothing pushed');

    const two = await builtFrom(pushEvent(tagged, tagged.sha, 'refs/tags/v2.0.0'), 'push');
    assert.equal(two.status, 'succeeded', two.error);
    const backport = await commit('guard-all', rules);
    const older = await builtFrom(pushEvent(backport, backport.sha, 'refs/tags/v1.9.0'), 'push');
    assert.equal(older.status, 'failed');
    assert.equal(older.error, `tag latest points at version 2.0.0 (from ${tagged.sha.slice(0, 7)}); this build is version 1.9.0, and moving tags only move forward`);
    assert.deepEqual((await registry.tags('ci-test/guard-all')).sort(), ['1.2', '2', '2.0', '2.0.0', 'latest']);
  });

  it('rebuilds a finished build as a new build linked to it, and cancels a running one, through the API with ADMIN_TOKEN', async () => {
    const repository = await commit('rebuilt');
    const first = await builtFrom(mergedPullRequest(repository, repository.sha));
    assert.equal(first.status, 'succeeded');

    assert.equal((await fetch(`${ci.url}/builds/${first.id}/rebuild`, { method: 'POST' })).status, 401, 'not without the token');
    const crossSite = await api(`/builds/${first.id}/rebuild`, { method: 'POST', headers: { origin: 'https://evil.example' } });
    assert.equal(crossSite.status, 403);
    const rebuilt = await api(`/builds/${first.id}/rebuild`, { method: 'POST' });
    assert.equal(rebuilt.status, 201);
    const { build } = (await rebuilt.json()) as { build: BuildView };
    assert.deepEqual([build.rebuildOf, build.sha, build.trigger], [first.id, first.sha, first.trigger]);
    assert.equal(rebuilt.headers.get('location'), `/builds/${build.id}`);
    await ci.service.worker.onIdle();
    assert.equal((await ci.getBuild(build.id)).status, 'succeeded');
    assert.match(await ci.getLog(build.id), /version 1\.0\.0 is already published from this commit: pushing it again/);

    const slow = await commit('cancelled-by-hand', {}, { Dockerfile: 'FROM ci-test-busybox:latest\nCOPY nonce.txt /nonce.txt\nRUN sleep 39\n' }, 'slow');
    const running = await deliver(mergedPullRequest(slow, slow.sha));
    const runningId = (running.body.build as BuildView).id;
    await waitFor(() => engineRuns('sleep 39'), 30_000, 'the step running');
    assert.equal((await api(`/builds/${runningId}/rebuild`, { method: 'POST' })).status, 409, 'a running build is not rebuilt');
    const cancel = await api(`/builds/${runningId}/cancel`, { method: 'POST' });
    assert.equal(cancel.status, 200);
    assert.deepEqual([((await cancel.json()) as { build: BuildView }).build.status], ['cancelled']);
    await waitFor(async () => !(await engineRuns('sleep 39')), 15_000, 'the engine to stop it');
    assert.equal((await api(`/builds/${runningId}/cancel`, { method: 'POST' })).status, 409, 'a finished build is not cancelled');
    assert.equal((await api('/builds/no-such-build/cancel', { method: 'POST' })).status, 404);
    await ci.service.worker.onIdle();
    assert.equal((await ci.getBuild(runningId)).cancelReason, 'cancelled by hand');
  });
});
