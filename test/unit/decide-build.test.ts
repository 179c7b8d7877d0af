import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideBuild, type Decision, type TriggerPolicy } from '../../src/github/decide-build.js';
import { PayloadError } from '../../src/domain/errors.js';
import { checkRunEvent, checkSuiteEvent, examplePayloads, examplePullRequest } from '../support/deliveries.js';

const ANY: TriggerPolicy = { allowedRepositories: [], baseBranches: [], buildRef: 'head', pullRequests: true, buildDrafts: false, trustForks: false, forkLabel: 'ci:build-fork' };

function merged(): Record<string, any> {
  const payload = examplePullRequest('closed');
  payload.pull_request.merged = true;
  return payload;
}

function opened(action = 'opened'): Record<string, any> {
  const payload = examplePullRequest(action);
  payload.pull_request.state = 'open';
  payload.pull_request.draft = false;
  return payload;
}

/** The examples' pull requests come from the base repository itself; this one from a fork. */
function fromFork(payload: Record<string, any>): Record<string, any> {
  payload.pull_request.head.repo = { ...payload.pull_request.head.repo, full_name: 'stranger/Hello-World' };
  return payload;
}

function decisionOf<K extends Decision['kind']>(decision: Decision, kind: K): Extract<Decision, { kind: K }> {
  assert.equal(decision.kind, kind, JSON.stringify(decision));
  return decision as Extract<Decision, { kind: K }>;
}

const REPOSITORY = {
  owner: 'Codertocat',
  name: 'Hello-World',
  fullName: 'Codertocat/Hello-World',
  htmlUrl: 'https://github.com/Codertocat/Hello-World',
  private: false,
};

describe('decideBuild', () => {
  it('turns a merged pull request into a build of its head commit, and cancels what its pull request still builds', () => {
    const payload = merged();
    const decision = decisionOf(decideBuild('pull_request', 'delivery-1', payload, ANY), 'build');
    assert.deepEqual(decision.build, {
      deliveryId: 'delivery-1',
      repository: REPOSITORY,
      sha: payload.pull_request.head.sha,
      trigger: { kind: 'merge', prNumber: payload.number, baseRef: payload.pull_request.base.ref },
    });
  });

  it('builds the merge commit with BUILD_REF=merge', () => {
    const payload = merged();
    const decision = decisionOf(decideBuild('pull_request', 'd', payload, { ...ANY, buildRef: 'merge' }), 'build');
    assert.equal(decision.build.sha, payload.pull_request.merge_commit_sha);
    assert.notEqual(decision.build.sha, payload.pull_request.head.sha);
  });

  it('builds the head of a pull request opened, pushed to, reopened or ready for review', () => {
    for (const action of ['opened', 'synchronize', 'reopened', 'ready_for_review']) {
      const payload = opened(action);
      const decision = decisionOf(decideBuild('pull_request', 'd', payload, ANY), 'build');
      assert.deepEqual(decision.build.trigger, { kind: 'pull_request', prNumber: payload.number, baseRef: payload.pull_request.base.ref, headRef: payload.pull_request.head.ref, fork: false });
      assert.equal(decision.build.sha, payload.pull_request.head.sha);
    }
  });

  it('cancels what a pull request closed without merging still builds', () => {
    const payload = examplePullRequest('closed');
    const decision = decisionOf(decideBuild('pull_request', 'd', payload, ANY), 'cancel');
    assert.deepEqual(decision.cancel, { repository: REPOSITORY, prNumber: payload.number, reason: `pull request #${payload.number} was closed` });
  });

  it('skips drafts unless BUILD_DRAFTS, and every pull request with PULL_REQUEST_BUILDS=false', () => {
    const draft = opened();
    draft.pull_request.draft = true;
    assert.match(decisionOf(decideBuild('pull_request', 'd', draft, ANY), 'ignored').reason, /is a draft \(set BUILD_DRAFTS=true/);
    decisionOf(decideBuild('pull_request', 'd', draft, { ...ANY, buildDrafts: true }), 'build');
    assert.match(decisionOf(decideBuild('pull_request', 'd', opened(), { ...ANY, pullRequests: false }), 'ignored').reason, /PULL_REQUEST_BUILDS=false/);
    decisionOf(decideBuild('pull_request', 'd', merged(), { ...ANY, pullRequests: false }), 'build');
  });

  it("holds a fork's pull request, saying how to allow it: the label added to that head (checked with GitHub), or TRUST_FORKS", () => {
    const held = decisionOf(decideBuild('pull_request', 'd', fromFork(opened()), ANY), 'held');
    assert.equal(held.held.description, 'not built: the head is in stranger/Hello-World, a fork. A maintainer can add the label "ci:build-fork" to build it');
    const deleted = opened();
    deleted.pull_request.head.repo = null;
    assert.match(decisionOf(decideBuild('pull_request', 'd', deleted, ANY), 'held').held.description, /the head is in a deleted fork/);

    const labelled = fromFork(examplePullRequest('labeled'));
    labelled.pull_request.state = 'open';
    labelled.label.name = 'ci:build-fork';
    const approved = decisionOf(decideBuild('pull_request', 'd', labelled, ANY), 'build');
    assert.deepEqual(approved.approval, { prNumber: labelled.number, label: 'ci:build-fork', login: labelled.sender.login }, 'to be checked with GitHub');
    assert.equal(approved.build.trigger.kind === 'pull_request' && approved.build.trigger.fork, true);
    const ownLabelled = examplePullRequest('labeled');
    ownLabelled.label.name = 'ci:build-fork';
    assert.match(decisionOf(decideBuild('pull_request', 'd', ownLabelled, ANY), 'ignored').reason, /action "labeled" does not trigger builds/, 'the repository\'s own pull request: its pushes build it');
    const otherLabel = fromFork(examplePullRequest('labeled'));
    assert.match(decisionOf(decideBuild('pull_request', 'd', otherLabel, ANY), 'ignored').reason, /action "labeled" does not trigger builds/);

    // The label approved the head it was added to: a new head of the fork waits for it again.
    const pushedAfterLabel = fromFork(opened('synchronize'));
    pushedAfterLabel.pull_request.labels = [{ name: 'ci:build-fork' }];
    assert.equal(
      decisionOf(decideBuild('pull_request', 'd', pushedAfterLabel, ANY), 'held').held.description,
      'not built: the head is in stranger/Hello-World, a fork. A new head needs "ci:build-fork" again: remove and re-add it',
    );
    const trusted = decisionOf(decideBuild('pull_request', 'd', fromFork(opened()), { ...ANY, trustForks: true }), 'build');
    assert.equal(trusted.approval, undefined, 'TRUST_FORKS needs no label');
  });

  it('ignores the other actions of the real example payloads (all 29 actions of @octokit/webhooks-examples), with the reason', () => {
    const payloads = examplePayloads('pull_request');
    assert.ok(payloads.length >= 20);
    for (const payload of payloads) {
      const decision = decideBuild('pull_request', 'd', payload, ANY);
      if (['opened', 'synchronize', 'reopened', 'ready_for_review'].includes(payload.action)) {
        assert.ok(['build', 'ignored'].includes(decision.kind), `${payload.action}: ${decision.kind}`);
        if (decision.kind === 'ignored') assert.match(decision.reason, /is a draft|is closed/);
      } else if (payload.action === 'closed') {
        assert.equal(decision.kind, 'cancel');
      } else {
        assert.match(decisionOf(decision, 'ignored').reason, new RegExp(`action "${payload.action}" does not trigger`));
      }
    }
  });

  it('turns a pushed branch or tag into a release push, and ignores deleted refs, with the reason', () => {
    const pushes = examplePayloads('push');
    const tag = pushes.find((push) => push.ref === 'refs/tags/simple-tag' && !push.deleted)!;
    const release = decisionOf(decideBuild('push', 'delivery-2', tag, ANY), 'release');
    assert.deepEqual(release.push, { deliveryId: 'delivery-2', repository: REPOSITORY, sha: tag.after, ref: 'refs/tags/simple-tag', rulesRef: 'refs/heads/master' }, 'rules from the default branch');
    const branch = pushes.find((push) => push.ref === 'refs/heads/master')!;
    assert.equal(decisionOf(decideBuild('push', 'd', branch, ANY), 'release').push.ref, 'refs/heads/master');
    const deleted = pushes.find((push) => push.deleted)!;
    assert.equal(decisionOf(decideBuild('push', 'd', deleted, ANY), 'ignored').reason, 'refs/tags/simple-tag was deleted: nothing to build');
    assert.throws(() => decideBuild('push', 'd', { ...branch, ref: `refs/heads/${'x'.repeat(2000)}` }, ANY), /push payload is missing or has a bad "ref"/);
    const note = { ...branch, ref: 'refs/notes/commits' };
    assert.match(decisionOf(decideBuild('push', 'd', note, ANY), 'ignored').reason, /neither a branch nor a tag/);
  });

  it('a push to a branch outside BASE_BRANCHES publishes nothing; a tag push still reads the default branch\'s rules', () => {
    const pushes = examplePayloads('push');
    const branch = pushes.find((push) => push.ref === 'refs/heads/master')!;
    const policy = { ...ANY, baseBranches: ['main'] };
    assert.equal(decisionOf(decideBuild('push', 'd', branch, policy), 'ignored').reason, 'branch master is not in BASE_BRANCHES: pushes to it publish nothing');
    assert.equal(decisionOf(decideBuild('push', 'd', { ...branch, ref: 'refs/heads/main' }, policy), 'release').push.rulesRef, 'refs/heads/master');
    const tag = pushes.find((push) => push.ref === 'refs/tags/simple-tag' && !push.deleted)!;
    assert.equal(decisionOf(decideBuild('push', 'd', tag, policy), 'release').push.rulesRef, 'refs/heads/master');
    const { default_branch: _gone, ...repository } = tag.repository;
    assert.throws(() => decideBuild('push', 'd', { ...tag, repository }, ANY), /push payload is missing or has a bad "repository.default_branch"/);
  });

  it('does not build an event over three days old (GitHub redelivers for three): a replayed body cannot rebuild an old head', () => {
    const now = new Date();
    const fourDaysAgo = new Date(now.getTime() - 4 * 24 * 3600 * 1000);
    const pullRequest = opened();
    pullRequest.pull_request.updated_at = fourDaysAgo.toISOString();
    assert.match(decisionOf(decideBuild('pull_request', 'd', pullRequest, ANY, now), 'ignored').reason, /^the event is from .*, more than 3 days ago \(older than GitHub redelivers\): not built/);
    pullRequest.pull_request.updated_at = new Date(now.getTime() - 2 * 24 * 3600 * 1000).toISOString();
    decisionOf(decideBuild('pull_request', 'd', pullRequest, ANY, now), 'build');
    const push = examplePayloads('push').find((example) => example.ref === 'refs/tags/simple-tag' && !example.deleted)!;
    push.repository.pushed_at = Math.floor(fourDaysAgo.getTime() / 1000);
    assert.match(decisionOf(decideBuild('push', 'd', push, ANY, now), 'ignored').reason, /more than 3 days ago/);
    push.repository.pushed_at = Math.floor(now.getTime() / 1000) - 60;
    decisionOf(decideBuild('push', 'd', push, ANY, now), 'release');
  });

  it('answers ping and ignores other events, with the reason', () => {
    const [ping] = examplePayloads('ping');
    assert.deepEqual(decideBuild('ping', 'd', ping, ANY), { kind: 'ignored', reason: 'ping: the webhook reaches ci_service' });
    const [issue] = examplePayloads('issues');
    assert.match(decisionOf(decideBuild('issues', 'd', issue, ANY), 'ignored').reason, /event "issues" does not trigger builds/);
  });

  it('ignores repositories outside ALLOWED_REPOSITORIES, comparing without case', () => {
    const other = decideBuild('pull_request', 'd', merged(), { ...ANY, allowedRepositories: ['octo-org/app'] });
    assert.deepEqual(other, { kind: 'ignored', reason: 'repository Codertocat/Hello-World is not in ALLOWED_REPOSITORIES' });
    const listed = decideBuild('pull_request', 'd', merged(), { ...ANY, allowedRepositories: ['codertocat/hello-world'] });
    decisionOf(listed, 'build');
  });

  it('ignores merges into branches outside BASE_BRANCHES', () => {
    const other = decideBuild('pull_request', 'd', merged(), { ...ANY, baseBranches: ['main', 'release'] });
    assert.deepEqual(other, { kind: 'ignored', reason: 'base branch "master" is not in BASE_BRANCHES' });
    const listed = decideBuild('pull_request', 'd', merged(), { ...ANY, baseBranches: ['master'] });
    decisionOf(listed, 'build');
  });

  it('refuses a pull_request payload without the fields a build needs, naming the field', () => {
    const payload = merged();
    delete payload.pull_request.head.sha;
    assert.throws(() => decideBuild('pull_request', 'd', payload, ANY), {
      name: 'PayloadError',
      message: /"pull_request\.head\.sha"/,
    });
    assert.throws(() => decideBuild('pull_request', 'd', { zen: 'not a pull request' }, ANY), PayloadError);
    assert.throws(() => decideBuild('pull_request', 'd', null, ANY), PayloadError);
  });

  it('refuses BUILD_REF=merge when a merged payload has no merge commit', () => {
    const payload = merged();
    payload.pull_request.merge_commit_sha = null;
    assert.throws(() => decideBuild('pull_request', 'd', payload, { ...ANY, buildRef: 'merge' }), /no merge_commit_sha/);
  });

  describe('the repository fetched is the one the allow-list checked', () => {
    const refused = (change: (payload: Record<string, any>) => void, message: RegExp) => {
      const payload = merged();
      change(payload);
      assert.throws(() => decideBuild('pull_request', 'd', payload, { ...ANY, allowedRepositories: ['hostile/allowed', 'Codertocat/Hello-World'] }), (error: unknown) => {
        assert.ok(error instanceof PayloadError, String(error));
        assert.match(error.message, message);
        return true;
      });
    };

    it('refuses owner.login and name that differ from the full_name on the allow-list', () => {
      refused((payload) => {
        payload.repository.full_name = 'hostile/allowed';
        payload.repository.owner.login = 'evil';
        payload.repository.name = 'other';
      }, /repository.full_name "hostile\/allowed" is not owner.login\/name \("evil\/other"\)/);
    });

    it('refuses names that would change the path of an API URL', () => {
      refused((payload) => (payload.repository.name = '..'), /"repository.name": must not be . or ../);
      refused((payload) => (payload.repository.name = 'a/../../b'), /"repository.name": must be a GitHub repository name/);
      refused((payload) => (payload.repository.owner.login = '../x'), /"repository.owner.login": must be a GitHub account name/);
    });

    it('refuses an html_url that is not the http(s) URL of that repository', () => {
      refused((payload) => (payload.repository.html_url = 'javascript:alert(1)//Codertocat/Hello-World'), /html_url "javascript:.*" must be the http\(s\) URL of Codertocat\/Hello-World/);
      refused((payload) => (payload.repository.html_url = 'https://github.com/evil/other'), /must be the http\(s\) URL of Codertocat\/Hello-World/);
      refused((payload) => (payload.repository.html_url = 'https://user:pw@github.com/Codertocat/Hello-World'), /html_url/);
      refused((payload) => (payload.repository.html_url = `https://github.com/${'x'.repeat(5000)}`), /html_url "https:\/\/github.com\/x+…" must be/);
    });

    it('accepts GitHub Enterprise URLs and any letter case', () => {
      const payload = merged();
      payload.repository.html_url = 'https://ghe.example.com/codertocat/hello-world/';
      decisionOf(decideBuild('pull_request', 'd', payload, ANY), 'build');
    });
  });

  describe('a check\'s Re-run and Cancel (GitHub App events)', () => {
    const repository = { owner: 'octo', name: 'app', fullName: 'octo/app', htmlUrl: 'https://github.com/octo/app', private: false };
    it('a check run\'s Re-run names its build; its Cancel button the build to cancel; other actions ask nothing', () => {
      const rerun = checkRunEvent(repository, { id: 1, external_id: 'build-1', head_sha: 'a'.repeat(40) }, 'rerequested');
      assert.deepEqual(decisionOf(decideBuild('check_run', 'd', rerun, ANY), 'rerun').rerun, { of: 'run', repository, buildId: 'build-1', by: rerun.sender.login });
      const cancel = checkRunEvent(repository, { id: 1, external_id: 'build-1', head_sha: 'a'.repeat(40) }, 'requested_action', 'cancel');
      assert.equal(decisionOf(decideBuild('check_run', 'd', cancel, ANY), 'cancel_build').buildId, 'build-1');
      const other = checkRunEvent(repository, { id: 1, external_id: 'build-1', head_sha: 'a'.repeat(40) }, 'requested_action', 'deploy');
      assert.match(decisionOf(decideBuild('check_run', 'd', other, ANY), 'ignored').reason, /"deploy" is not one of ci_service's/);
      const foreign = checkRunEvent(repository, { id: 1, external_id: null, head_sha: 'a'.repeat(40) }, 'rerequested');
      assert.match(decisionOf(decideBuild('check_run', 'd', foreign, ANY), 'ignored').reason, /names no build of ci_service/);
      const elsewhere = decideBuild('check_run', 'd', rerun, { ...ANY, allowedRepositories: ['octo/other'] });
      assert.match(decisionOf(elsewhere, 'ignored').reason, /not in ALLOWED_REPOSITORIES/);
    });

    it('a suite\'s Re-run names the suite (its runs are listed by GitHub); a bot may send it', () => {
      const suite = checkSuiteEvent(repository, { id: 42, head_sha: 'b'.repeat(40) });
      assert.match(suite.sender.login, /\[bot\]$/);
      assert.deepEqual(decisionOf(decideBuild('check_suite', 'd', suite, ANY), 'rerun').rerun, { of: 'suite', repository, checkSuiteId: 42, sha: 'b'.repeat(40), by: suite.sender.login });
      assert.throws(() => decideBuild('check_suite', 'd', { ...suite, check_suite: { id: 'x' } }, ANY), PayloadError);
    });

    it('every other check event (another App\'s runs, a suite requested at a push) is answered as ignored, whatever its shape', () => {
      for (const [event, example] of [...examplePayloads('check_run').map((e) => ['check_run', e] as const), ...examplePayloads('check_suite').map((e) => ['check_suite', e] as const)]) {
        if (example.action === 'rerequested' || example.action === 'requested_action') continue;
        assert.match(decisionOf(decideBuild(event, 'd', example, ANY), 'ignored').reason, /asks nothing of ci_service/, `${event} ${example.action}`);
      }
      assert.match(decisionOf(decideBuild('check_suite', 'd', { action: 'completed' }, ANY), 'ignored').reason, /check_suite action "completed" asks nothing/);
    });
  });
});
