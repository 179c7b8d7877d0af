import type { AxiosInstance } from 'axios';
import type { Logger } from 'pino';
import type { BuildObserver } from '../domain/build-observer.js';
import type { BuildRecord } from '../domain/build-record.js';

export const STATUS_CONTEXT = 'ci_service/image';

type State = 'pending' | 'success' | 'failure' | 'error';

/** Stages where the repository is at fault ("failure"); the others are ours or a neighbour's ("error"). */
const REPOSITORY_STAGES = new Set(['spec', 'context', 'build']);

/** Pure: the commit status GitHub shows for a build. */
export function commitStatusFor(build: BuildRecord, publicUrl: string | undefined) {
  let state: State;
  let description: string;
  if (build.status === 'succeeded') {
    state = 'success';
    description = `pushed ${build.image ?? 'the image'}`;
  } else if (build.status === 'failed') {
    state = build.failedStage && REPOSITORY_STAGES.has(build.failedStage) ? 'failure' : 'error';
    description = build.error ?? 'the build failed';
  } else {
    state = 'pending';
    description = build.status === 'running' ? 'building the image' : 'image build queued';
  }
  return {
    state,
    // GitHub refuses descriptions over 140 characters.
    description: description.length > 140 ? `${description.slice(0, 139)}…` : description,
    context: STATUS_CONTEXT,
    ...(publicUrl ? { target_url: `${publicUrl}/builds/${build.id}` } : {}),
  };
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

  private async post(build: BuildRecord): Promise<void> {
    const { owner, name } = build.request.repository;
    const status = commitStatusFor(build, this.publicUrl);
    const response = await this.github.post(`/repos/${owner}/${name}/statuses/${build.request.sha}`, status, { timeout: 10_000 }).catch(
      (error: unknown) => ({ status: 0, statusText: error instanceof Error ? error.message : String(error) }),
    );
    if (response.status === 201) return;
    this.logger.warn(
      { buildId: build.id, state: status.state, status: response.status, reason: response.statusText },
      'could not set the commit status (GITHUB_TOKEN needs "Commit statuses: read and write")',
    );
  }
}
