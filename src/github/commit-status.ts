import { repositoryPath } from './github-client.js';
import type { AxiosInstance } from 'axios';
import type { Logger } from 'pino';
import type { BuildObserver } from '../domain/build-observer.js';
import type { BuildRecord } from '../domain/build-record.js';
import type { BuildTrigger, Repository } from '../domain/build-request.js';

/** One context per trigger: a pull request's check never hides the merge's image, nor a release's. */
export const STATUS_CONTEXTS: Record<BuildTrigger['kind'], string> = {
  merge: 'ci_service/image',
  pull_request: 'ci_service/pr-build',
  release: 'ci_service/release',
};

type State = 'pending' | 'success' | 'failure' | 'error';

/** Stages where the repository is at fault ("failure"); the others are ours or a neighbour's ("error"). */
const REPOSITORY_STAGES = new Set(['spec', 'context', 'build']);

/** Pure: the commit status GitHub shows for a build. */
export function commitStatusFor(build: BuildRecord, publicUrl: string | undefined) {
  let state: State;
  let description: string;
  if (build.status === 'succeeded') {
    state = 'success';
    description = build.digest ? `pushed ${build.image ?? 'the image'}` : 'the image builds (nothing pushed)';
  } else if (build.status === 'failed') {
    state = build.failedStage && REPOSITORY_STAGES.has(build.failedStage) ? 'failure' : 'error';
    description = build.error ?? 'the build failed';
  } else if (build.status === 'cancelled') {
    state = 'error';
    description = `cancelled: ${build.error ?? 'by hand'}`;
  } else {
    state = 'pending';
    description = build.status === 'running' ? 'building the image' : 'image build queued';
  }
  return {
    state,
    description: clip(description),
    context: STATUS_CONTEXTS[build.request.trigger.kind],
    ...(publicUrl ? { target_url: `${publicUrl}/builds/${build.id}` } : {}),
  };
}

/** GitHub refuses descriptions over 140 characters. */
function clip(description: string): string {
  return description.length > 140 ? `${description.slice(0, 139)}…` : description;
}

/** Sets the commit status of each build on GitHub. A status that cannot be posted is logged, never fatal. */
export class CommitStatusReporter implements BuildObserver {
  constructor(
    private readonly github: AxiosInstance,
    private readonly publicUrl: string | undefined,
    private readonly logger: Logger,
  ) {}

  queued(build: BuildRecord): Promise<void> {
    return this.post(build);
  }

  finished(build: BuildRecord): Promise<void> {
    return this.post(build);
  }

  /** A fork's pull request that waits for a maintainer: its status says how to allow it. */
  held(repository: Repository, sha: string, description: string): Promise<void> {
    return this.send(repository, sha, { state: 'pending', description: clip(description), context: STATUS_CONTEXTS.pull_request }, {});
  }

  private post(build: BuildRecord): Promise<void> {
    return this.send(build.request.repository, build.request.sha, commitStatusFor(build, this.publicUrl), { buildId: build.id });
  }

  private async send(repository: Repository, sha: string, status: { state: State; description: string; context: string }, fields: Record<string, unknown>): Promise<void> {
    const response = await this.github.post(`/repos/${repositoryPath(repository)}/statuses/${sha}`, status, { timeout: 10_000 }).catch(
      (error: unknown) => ({ status: 0, statusText: error instanceof Error ? error.message : String(error) }),
    );
    if (response.status === 201) return;
    this.logger.warn(
      { ...fields, state: status.state, status: response.status, reason: response.statusText },
      'could not set the commit status (GITHUB_TOKEN needs "Commit statuses: read and write")',
    );
  }
}
