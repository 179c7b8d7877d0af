import type { BuildObserver } from '../domain/build-observer.js';
import type { BuildRecord } from '../domain/build-record.js';
import type { Repository } from '../domain/build-request.js';
import type { CheckRunReporter } from './check-runs.js';
import type { CommitStatusReporter } from './commit-status.js';
import type { GitHubAuth } from './github-auth.js';

/** Each build on GitHub as the current way of acting there allows: check runs as an App, statuses with a token. */
export class GitHubReports implements BuildObserver {
  constructor(
    private readonly auth: GitHubAuth,
    private readonly checks: CheckRunReporter,
    private readonly statuses: CommitStatusReporter,
  ) {}

  private get current(): BuildObserver & { held(repository: Repository, sha: string, description: string): Promise<void> } | undefined {
    return this.auth.mode === 'app' ? this.checks : this.auth.mode === 'token' ? this.statuses : undefined;
  }

  queued(build: BuildRecord) {
    return this.current?.queued?.(build);
  }

  started(build: BuildRecord) {
    return this.current?.started?.(build);
  }

  finished(build: BuildRecord) {
    return this.current?.finished?.(build);
  }

  /** A fork's pull request that waits for a maintainer: GitHub shows how to allow it. */
  held(repository: Repository, sha: string, description: string): Promise<void> | undefined {
    return this.current?.held(repository, sha, description);
  }
}
