import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideBuild, type TriggerPolicy } from '../../src/github/decide-build.js';
import { PayloadError } from '../../src/domain/errors.js';
import { examplePayloads, examplePullRequest } from '../support/deliveries.js';

const ANY: TriggerPolicy = { allowedRepositories: [], baseBranches: [], buildRef: 'head' };

function merged(): Record<string, any> {
  const payload = examplePullRequest('closed');
  payload.pull_request.merged = true;
  return payload;
}

describe('decideBuild', () => {
  it('turns a merged pull request into a build of its head commit', () => {
    const payload = merged();
    const decision = decideBuild('pull_request', 'delivery-1', payload, ANY);
    assert.ok('build' in decision);
    assert.deepEqual(decision.build, {
      deliveryId: 'delivery-1',
      repository: {
        owner: 'Codertocat',
        name: 'Hello-World',
        fullName: 'Codertocat/Hello-World',
        htmlUrl: 'https://github.com/Codertocat/Hello-World',
        private: false,
      },
      sha: payload.pull_request.head.sha,
      prNumber: payload.number,
      baseRef: payload.pull_request.base.ref,
    });
  });

  it('builds the merge commit with BUILD_REF=merge', () => {
    const payload = merged();
    const decision = decideBuild('pull_request', 'd', payload, { ...ANY, buildRef: 'merge' });
    assert.ok('build' in decision);
    assert.equal(decision.build.sha, payload.pull_request.merge_commit_sha);
    assert.notEqual(decision.build.sha, payload.pull_request.head.sha);
  });

  it('ignores every real example payload that is not a merge (all 29 actions of @octokit/webhooks-examples)', () => {
    const payloads = examplePayloads('pull_request');
    assert.ok(payloads.length >= 20);
    for (const payload of payloads) {
      const decision = decideBuild('pull_request', 'd', payload, ANY);
      assert.ok('ignored' in decision, `action ${payload.action} must not build`);
      const expected = payload.action === 'closed' ? /closed without being merged/ : new RegExp(`action "${payload.action}" does not trigger`);
      assert.match(decision.ignored, expected);
    }
  });

  it('answers ping and ignores other events, with the reason', () => {
    const [ping] = examplePayloads('ping');
    assert.deepEqual(decideBuild('ping', 'd', ping, ANY), { ignored: 'ping: the webhook reaches ci_service' });
    const [push] = examplePayloads('push');
    const decision = decideBuild('push', 'd', push, ANY);
    assert.ok('ignored' in decision);
    assert.match(decision.ignored, /event "push" does not trigger builds/);
  });

  it('ignores repositories outside ALLOWED_REPOSITORIES, comparing without case', () => {
    const other = decideBuild('pull_request', 'd', merged(), { ...ANY, allowedRepositories: ['octo-org/app'] });
    assert.deepEqual(other, { ignored: 'repository Codertocat/Hello-World is not in ALLOWED_REPOSITORIES' });
    const listed = decideBuild('pull_request', 'd', merged(), { ...ANY, allowedRepositories: ['codertocat/hello-world'] });
    assert.ok('build' in listed);
  });

  it('ignores merges into branches outside BASE_BRANCHES', () => {
    const other = decideBuild('pull_request', 'd', merged(), { ...ANY, baseBranches: ['main', 'release'] });
    assert.deepEqual(other, { ignored: 'base branch "master" is not in BASE_BRANCHES' });
    const listed = decideBuild('pull_request', 'd', merged(), { ...ANY, baseBranches: ['master'] });
    assert.ok('build' in listed);
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
      assert.ok('build' in decideBuild('pull_request', 'd', payload, ANY));
    });
  });
});
