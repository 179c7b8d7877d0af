import type { Repository } from './build-request.js';

/** A pushed git tag or branch: the default branch's dockerInfo.json release rules decide whether, and to what tags, it builds. */
export interface ReleasePush {
  deliveryId: string;
  repository: Repository;
  sha: string;
  /** refs/tags/<tag> or refs/heads/<branch> */
  ref: string;
  /** refs/heads/<the repository's default branch>: where release rules are read from, never the pushed ref. */
  rulesRef: string;
}
