import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { refuseTagPush } from '../../src/rules/tag-guard.js';

const SHA = 'a'.repeat(40);
const OTHER = 'b'.repeat(40);
const push = (tag: string, version: string, immutable = false) => ({ tag, sha: SHA, version, immutable });

describe('the tag guard: every tag a build would push', () => {
  it('a tag not in the registry, or pushed from this very commit, may be pushed', () => {
    assert.equal(refuseTagPush(push('1.2.3', '1.2.3', true), undefined), undefined);
    assert.equal(refuseTagPush(push('1.2.3', '1.2.3', true), { revision: SHA, version: '1.2.3' }), undefined);
    assert.equal(refuseTagPush(push('latest', '0.1.0'), { revision: SHA, version: '9.0.0' }), undefined);
  });

  it('a version published from another commit is never pushed over, under its own name', () => {
    assert.equal(refuseTagPush(push('1.2.3', '1.2.3', true), { revision: OTHER, version: '1.2.3' }), 'version 1.2.3 is already published (from bbbbbbb): bump "version" in dockerInfo.json');
    assert.match(refuseTagPush(push('1.2.3', '1.2.3', true), { revision: null, version: null })!, /from an image ci_service did not build/);
  });

  it("nor by another build's moving tag of the same name: a release's 1.2 over a merge's version 1.2", () => {
    assert.equal(
      refuseTagPush(push('1.2', '1.2.5'), { revision: OTHER, version: '1.2' }),
      'tag 1.2 is version 1.2, published from bbbbbbb, and a published version is never pushed over: this build (version 1.2.5) would have moved it',
    );
  });

  it('moving tags only move forward in semver; what is not a semantic version has no order, and moves', () => {
    assert.equal(refuseTagPush(push('latest', '1.2.5'), { revision: OTHER, version: '1.3.0' }), 'tag latest points at version 1.3.0 (from bbbbbbb); this build is version 1.2.5, and moving tags only move forward');
    assert.match(refuseTagPush(push('1', 'v1.0.0'), { revision: OTHER, version: '1.4.0' })!, /moving tags only move forward/);
    assert.equal(refuseTagPush(push('latest', '1.3.1'), { revision: OTHER, version: '1.3.0' }), undefined);
    assert.equal(refuseTagPush(push('latest', '1.3.0'), { revision: OTHER, version: '1.3.0' }), undefined, 'the same version, rebuilt from another commit of it');
    assert.equal(refuseTagPush(push('edge', 'nightly'), { revision: OTHER, version: '2.0.0' }), undefined);
    assert.equal(refuseTagPush(push('edge', '1.0.0'), { revision: OTHER, version: null }), undefined);
  });
});
