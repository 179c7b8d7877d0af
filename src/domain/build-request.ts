/** What a build is asked for: a repository at a commit. Types only: no I/O, no framework. */

export interface Repository {
  owner: string;
  name: string;
  /** owner/name */
  fullName: string;
  htmlUrl: string;
  private: boolean;
}

/** What a merged pull request asks of us: build this repository at this commit. */
export interface BuildRequest {
  deliveryId: string;
  repository: Repository;
  sha: string;
  prNumber: number;
  baseRef: string;
}
