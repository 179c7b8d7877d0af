import semver from 'semver';
import type { BuildRequest } from '../domain/build-request.js';
import { SpecError } from '../domain/errors.js';
import { compileGlob } from '../patterns/glob.js';
import type { ReleasePush } from '../domain/release-push.js';
import { parseBuildSpec, SPEC_FILE, type ReleaseRules } from './build-spec.js';

/** What a pushed ref builds: the image tags it maps to (the first one immutable for a release), or why nothing. */
export type ReleasePlan = { tags: string[]; immutableTag: string | undefined } | { ignored: string };

/**
 * Pure: a pushed git tag or branch (`refs/tags/v1.2.3`, `refs/heads/main`) and the release rules of the commit's
 * dockerInfo.json to the image tags it pushes. A git tag that matches `git_tags` and is a semantic version maps
 * as semver tooling does (docker/metadata-action's `type=semver`): 1.2.3, 1.2, 1 and latest; a prerelease
 * (1.3.0-rc.1) to itself only. A branch named in `branches` moves its one tag.
 */
export function planRelease(rules: ReleaseRules, ref: string): ReleasePlan {
  const tag = ref.match(/^refs\/tags\/(.+)$/)?.[1];
  if (tag !== undefined) return planTagRelease(rules, tag);
  const branch = ref.match(/^refs\/heads\/(.+)$/)?.[1];
  if (branch === undefined) return { ignored: `${ref} is neither a branch nor a tag` };
  const imageTag = Object.hasOwn(rules.branches, branch) ? rules.branches[branch] : undefined;
  if (imageTag === undefined) {
    return { ignored: `branch ${branch} has no release rule: pushes to it build when ${SPEC_FILE} maps it, e.g. "releases": {"branches": {"${branch}": "edge"}}` };
  }
  return { tags: [imageTag], immutableTag: undefined };
}

function planTagRelease(rules: ReleaseRules, tag: string): ReleasePlan {
  if (rules.gitTags === undefined) {
    return { ignored: `git tag ${tag} has no release rule: tags build when ${SPEC_FILE} has e.g. "releases": {"git_tags": "v*"}` };
  }
  // Matched in linear time (patterns/glob.ts): this runs inside the webhook's request, on the only event loop.
  if (!compileGlob(rules.gitTags, { braces: true }).matches(tag)) return { ignored: `git tag ${tag} does not match releases.git_tags "${rules.gitTags}"` };
  const version = semver.parse(tag.replace(/^v/i, ''));
  if (!version) {
    return { ignored: `git tag ${tag} matches releases.git_tags "${rules.gitTags}" but is not a semantic version (MAJOR.MINOR.PATCH, e.g. v1.2.3)` };
  }
  // Docker tags take no "+": build metadata is dropped, as semver tooling does.
  const full = version.version.replace(/\+.*$/, '');
  if (version.prerelease.length > 0) return { tags: [full], immutableTag: full };
  const tags = [full, `${version.major}.${version.minor}`, `${version.major}`, ...(rules.latest ? ['latest'] : [])];
  return { tags, immutableTag: full };
}

/**
 * A pushed ref becomes a release build when the default branch's dockerInfo.json has a rule for it; otherwise the
 * reason it does not (no file, a broken file, no rule). `readSpec` reads the file at `push.rulesRef`: the pushed
 * commit's own rules are never trusted, or any branch could publish `latest` or a version.
 */
export async function releaseRequest(push: ReleasePush, readSpec: () => Promise<string | undefined>): Promise<{ build: BuildRequest } | { ignored: string }> {
  const rules = await readReleaseRules(push.repository.fullName, push.rulesRef, readSpec);
  if ('ignored' in rules) return rules;
  const plan = planRelease(rules, push.ref);
  if ('ignored' in plan) return plan;
  return { build: { deliveryId: push.deliveryId, repository: push.repository, sha: push.sha, trigger: { kind: 'release', ref: push.ref, rulesRef: push.rulesRef } } };
}

/** The release rules of dockerInfo.json at `rulesRef` (the default branch), or why there are none. */
export async function readReleaseRules(fullName: string, rulesRef: string, readSpec: () => Promise<string | undefined>): Promise<ReleaseRules | { ignored: string }> {
  const where = rulesRef.replace(/^refs\/heads\//, '');
  const text = await readSpec();
  if (text === undefined) return { ignored: `${SPEC_FILE} is not in ${fullName} on ${where}, the default branch, where release rules are read: no release rules` };
  try {
    return parseBuildSpec(text).releases;
  } catch (error) {
    if (error instanceof SpecError) return { ignored: `${error.message} (on ${where}, the default branch, so its release rules cannot be read)` };
    throw error;
  }
}
