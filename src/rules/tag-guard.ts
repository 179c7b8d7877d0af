import semver from 'semver';
import type { PublishedImage } from '../domain/published-image.js';
import { SPEC_FILE } from './build-spec.js';

/** What a build would push under one tag: from which commit, as which version, and whether the tag is that version. */
export interface TagPush {
  tag: string;
  sha: string;
  /** The version the image is labelled with (dockerInfo.json's, or the release's git tag's). */
  version: string;
  /** The tag is the build's own version: immutable, never pushed over from another commit. */
  immutable: boolean;
}

/**
 * Pure: why a tag must not be pushed, given what the registry holds under it now; undefined when it may be.
 * A version, once published, is never pushed over from another commit: neither under its own name by a later
 * build, nor by another build's moving tag of the same name (a release's `1.2` over a merge's version "1.2").
 * A moving tag (`latest`, `1.2`, `1`, a branch's) only moves forward when both versions are semantic versions.
 * The same commit may push again (a rebuild, a retried push).
 */
export function refuseTagPush(push: TagPush, existing: PublishedImage | undefined): string | undefined {
  if (existing === undefined || existing.revision === push.sha) return undefined;
  const from = existing.revision === null ? 'an image ci_service did not build, which names no commit' : existing.revision.slice(0, 7);
  if (push.immutable) return `version ${push.tag} is already published (from ${from}): bump "version" in ${SPEC_FILE}`;
  if (existing.version === push.tag) {
    return `tag ${push.tag} is version ${push.tag}, published from ${from}, and a published version is never pushed over: this build (version ${push.version}) would have moved it`;
  }
  const before = asSemver(existing.version);
  const after = asSemver(push.version);
  if (before && after && semver.lt(after, before)) {
    return `tag ${push.tag} points at version ${existing.version} (from ${from}); this build is version ${push.version}, and moving tags only move forward`;
  }
  return undefined;
}

function asSemver(version: string | null): string | null {
  return version === null ? null : semver.valid(version.replace(/^v/i, ''));
}
