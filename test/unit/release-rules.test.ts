import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planRelease } from '../../src/rules/release-rules.js';
import { parseBuildSpec } from '../../src/rules/build-spec.js';

const rules = (releases: unknown) => parseBuildSpec(JSON.stringify({ service_name: 'app', version: '1.0.0', releases })).releases;

describe('release rules', () => {
  it('maps a git tag matching the pattern to its semver tags, as semver tooling does', () => {
    assert.deepEqual(planRelease(rules({ git_tags: 'v*' }), 'refs/tags/v1.2.3'), { tags: ['1.2.3', '1.2', '1', 'latest'], immutableTag: '1.2.3' });
    assert.deepEqual(planRelease(rules({ git_tags: 'v*', latest: false }), 'refs/tags/v2.0.0'), { tags: ['2.0.0', '2.0', '2'], immutableTag: '2.0.0' });
    assert.deepEqual(planRelease(rules({ git_tags: 'release-*' }), 'refs/tags/release-3.1.4'), { ignored: 'git tag release-3.1.4 matches releases.git_tags "release-*" but is not a semantic version (MAJOR.MINOR.PATCH, e.g. v1.2.3)' });
    assert.deepEqual(planRelease(rules({ git_tags: '[0-9]*' }), 'refs/tags/3.1.4+build.7'), { tags: ['3.1.4', '3.1', '3', 'latest'], immutableTag: '3.1.4' });
  });

  it('pushes a prerelease under its own tag only: it moves neither latest nor its major and minor', () => {
    assert.deepEqual(planRelease(rules({ git_tags: 'v*' }), 'refs/tags/v1.3.0-rc.1'), { tags: ['1.3.0-rc.1'], immutableTag: '1.3.0-rc.1' });
  });

  it('moves a branch\'s named tag on a push to it', () => {
    assert.deepEqual(planRelease(rules({ branches: { main: 'edge', 'release/2.x': 'two' } }), 'refs/heads/release/2.x'), { tags: ['two'], immutableTag: undefined });
  });

  it('ignores, with the reason and the rule to add, what no rule matches', () => {
    assert.match((planRelease(rules(undefined), 'refs/tags/v1.2.3') as { ignored: string }).ignored, /git tag v1.2.3 has no release rule: tags build when dockerInfo.json has e.g. "releases": \{"git_tags": "v\*"\}/);
    assert.equal((planRelease(rules({ git_tags: 'v*' }), 'refs/tags/nightly') as { ignored: string }).ignored, 'git tag nightly does not match releases.git_tags "v*"');
    assert.match((planRelease(rules({ branches: { main: 'edge' } }), 'refs/heads/feature') as { ignored: string }).ignored, /branch feature has no release rule/);
    assert.match((planRelease(rules({ branches: { main: 'edge' } }), 'refs/heads/constructor') as { ignored: string }).ignored, /branch constructor has no release rule/);
  });

  it('refuses bad rules in dockerInfo.json, naming the key', () => {
    assert.throws(() => rules({ branches: { main: 'not a tag' } }), /"releases.branches.main" = "not a tag" must be letters, digits/);
    assert.throws(() => rules({ git_tags: '' }), /"releases.git_tags" = "" must be a pattern such as "v\*"/);
    assert.throws(() => rules({ tags: 'v*' }), /"releases" .*Unrecognized key|releases/);
    assert.throws(() => rules('v*'), /"releases" = "v\*" must be an object such as/);
    assert.throws(() => parseBuildSpec(JSON.stringify({ service_name: 'app', version: '1', pull_requests: { push: 'yes' } })), /"pull_requests.push" = "yes" must be true/);
  });
});
