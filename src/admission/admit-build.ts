import type { BuildRecord } from '../domain/build-record.js';
import type { BuildRequest, Repository } from '../domain/build-request.js';
import { describeError } from '../domain/errors.js';
import type { AddOutcome, BuildStore } from '../queue/build-store.js';

/** Unfinished builds of a pull request to cancel, and why. */
export interface PullRequestCancel {
  repository: Repository;
  prNumber: number;
  reason: string;
}

/** What admitting a build needs: the store, the queue, and the cancelling of what it supersedes. */
export interface AdmissionPorts {
  store: Pick<BuildStore, 'add'>;
  /** Hands a stored build to the queue. */
  submit: (build: BuildRecord) => void;
  /** Cancels a pull request's unfinished builds admitted before `before` (a seq), or all of them. */
  cancelPullRequest: (cancel: PullRequestCancel, before?: number) => Promise<BuildRecord[]>;
  maxQueuedBuilds: number;
  now: () => Date;
  /** Told when superseded builds could not be cancelled (the build itself is stored). */
  onCancelFailure: (request: BuildRequest, error: string) => void;
}

export type Admission = Exclude<AddOutcome, { kind: 'queue_full' }> & { cancelled: BuildRecord[] } | Extract<AddOutcome, { kind: 'queue_full' }>;

/**
 * The one way a build is admitted, from a delivery or a rebuild alike: stored (committed before this resolves; a
 * store that does not answer rejects, and nothing is stored), handed to the queue when new, and then what it
 * supersedes is cancelled (supersededBy). A redelivery or a second delivery of one commit joins the build that
 * answers it; a full queue stores nothing.
 */
export async function admitBuild(ports: AdmissionPorts, request: BuildRequest): Promise<Admission> {
  const outcome = await ports.store.add(request, ports.now(), ports.maxQueuedBuilds);
  if (outcome.kind === 'queue_full') return outcome;
  if (outcome.kind === 'created') ports.submit(outcome.build);
  const supersede = supersededBy(request);
  const cancelled = !supersede
    ? []
    : await ports.cancelPullRequest(supersede.cancel, supersede.allBefore ? outcome.build.seq : undefined).catch((error: unknown) => {
        // The build is stored and will be answered for; what was to be cancelled runs to its end.
        ports.onCancelFailure(request, describeError(error));
        return [];
      });
  return { ...outcome, cancelled };
}

/**
 * What a build makes pointless: a pull request's head (a new one, or one rebuilt) the builds of its pull request
 * admitted before it; a merge, every unfinished build of its pull request's heads (merges are never cancelled by
 * their pull request). A release supersedes nothing.
 */
export function supersededBy(request: BuildRequest): { cancel: PullRequestCancel; allBefore: boolean } | undefined {
  const { trigger, repository, sha } = request;
  if (trigger.kind === 'release') return undefined;
  if (trigger.kind === 'merge') return { cancel: { repository, prNumber: trigger.prNumber, reason: `pull request #${trigger.prNumber} was merged` }, allBefore: false };
  const by = request.rebuildOf ? `a rebuild of ${sha.slice(0, 7)}` : `${sha.slice(0, 7)}, a newer head of pull request #${trigger.prNumber}`;
  return { cancel: { repository, prNumber: trigger.prNumber, reason: `superseded by ${by}` }, allBefore: true };
}
