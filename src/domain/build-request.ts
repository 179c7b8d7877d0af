/** What a build is asked for: a repository at a commit, and why. Types only: no I/O, no framework. */

export interface Repository {
  owner: string;
  name: string;
  /** owner/name */
  fullName: string;
  htmlUrl: string;
  private: boolean;
}

/** Why a commit is built; it decides the tags pushed and the commit status's context. */
export type BuildTrigger =
  /** A merged pull request: the version and tags of dockerInfo.json are pushed. */
  | { kind: 'merge'; prNumber: number; baseRef: string }
  /**
   * A pull request's head commit: built to check it; pushed as pr-<number> only when dockerInfo.json asks. `fork`:
   * the head lives in another repository (its builds get no secrets); absent on builds stored before it was kept.
   */
  | { kind: 'pull_request'; prNumber: number; baseRef: string; headRef: string; fork?: boolean }
  /**
   * A pushed git tag or branch that a release rule maps to image tags. The rules are read at `rulesRef` (the
   * default branch: reviewed code), never from the pushed commit, which anyone who can push a branch controls.
   */
  | { kind: 'release'; ref: string; rulesRef: string };

export interface BuildRequest {
  deliveryId: string;
  repository: Repository;
  sha: string;
  trigger: BuildTrigger;
  /** The build this one runs again (a rebuild asked for through the API or the build's page). */
  rebuildOf?: string;
}

/**
 * Builds with one key and one commit answer the same question, so a second delivery joins the first while it is
 * unfinished; a pull request's builds share a key, so a newer head supersedes an older one.
 */
export function triggerKey(trigger: BuildTrigger): string {
  if (trigger.kind === 'merge') return 'merge';
  if (trigger.kind === 'pull_request') return pullRequestKey(trigger.prNumber);
  return `ref:${trigger.ref}`;
}

/** The trigger key every build of one pull request's heads shares. */
export function pullRequestKey(prNumber: number): string {
  return `pr:${prNumber}`;
}

/** A request as stored before builds had triggers (every one a merge) reads as one. */
export function storedRequest(stored: BuildRequest & { prNumber?: number; baseRef?: string }): BuildRequest {
  if (stored.trigger) return stored;
  const { prNumber = 0, baseRef = '', ...rest } = stored;
  return { ...rest, trigger: { kind: 'merge', prNumber, baseRef } };
}

/** The trigger in a few words, for pages and logs: "merge of #12 into main", "tag v1.2.3". */
export function describeTrigger(trigger: BuildTrigger): string {
  if (trigger.kind === 'merge') return `merge of #${trigger.prNumber} into ${trigger.baseRef}`;
  if (trigger.kind === 'pull_request') return `pull request #${trigger.prNumber} (${trigger.headRef} → ${trigger.baseRef})`;
  const tag = trigger.ref.match(/^refs\/tags\/(.+)$/);
  if (tag) return `tag ${tag[1]}`;
  return `branch ${trigger.ref.replace(/^refs\/heads\//, '')}`;
}
