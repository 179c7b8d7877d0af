import type { BuildRecord } from '../domain/build-record.js';
import type { BuildRequest } from '../domain/build-request.js';

export type BuildChanges = Partial<Pick<BuildRecord, 'status' | 'image' | 'tags' | 'digest' | 'error' | 'failedStage' | 'resumed' | 'startedAt' | 'finishedAt' | 'worker' | 'engine' | 'platforms'>>;

/** The `builds` column each change is stored in: the same in the SQLite and the PostgreSQL schema. */
export const BUILD_COLUMNS: Record<keyof BuildChanges, string> = {
  status: 'status',
  image: 'image',
  tags: 'tags',
  digest: 'digest',
  error: 'error',
  failedStage: 'failed_stage',
  resumed: 'resumed',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  worker: 'worker',
  engine: 'engine',
  platforms: 'platforms',
};

export interface WorkerSeen {
  name: string;
  seenAt: Date;
  engine?: string;
  /** The platforms its engine builds natively, as it last said. */
  nativePlatforms?: string[];
}

export type AddOutcome =
  /** A new build was stored. */
  | { kind: 'created'; build: BuildRecord }
  /** This delivery id was seen before: its build. */
  | { kind: 'redelivery'; build: BuildRecord }
  /** Another delivery already queued or runs this repository at this commit, for the same trigger: that build. */
  | { kind: 'coalesced'; build: BuildRecord }
  /** `maxQueued` builds are already waiting: nothing was stored. */
  | { kind: 'queue_full'; queued: number };

/**
 * A worker wrote for a run of a build that is no longer the current one: another worker took the build up (this
 * one stopped answering), or it was queued again. Nothing was written.
 */
export class LostClaimError extends Error {
  constructor(id: string, attempt: number) {
    super(`build ${id} is no longer run ${attempt}: another run took it over, so this one records nothing`);
    this.name = 'LostClaimError';
  }
}

/** Where builds and their logs live. Owned by the queue; the SQLite adapter serves one machine. */
export interface BuildStore {
  /** Stores the build (committed before this resolves), or returns the build that already answers it. */
  add(request: BuildRequest, createdAt: Date, maxQueued: number): Promise<AddOutcome>;
  get(id: string): Promise<BuildRecord | undefined>;
  /** Newest first. */
  list(limit: number): Promise<BuildRecord[]>;
  /** The image (registry/name:version) of the newest succeeded build of `repositoryRef` (registry/name). */
  lastPushedImage(repositoryRef: string): Promise<string | undefined>;
  /** Queued and running builds, oldest first: what a start takes up. */
  unfinished(): Promise<BuildRecord[]>;
  /** Queued and running builds of a repository with this trigger key (domain/build-request.ts), oldest first. */
  unfinishedOfTrigger(repository: string, triggerKey: string): Promise<BuildRecord[]>;
  /**
   * Ends a queued or running build as cancelled, with the reason; its run ends too (the attempt moves on, so the
   * worker running it records nothing more). Undefined when it had finished already (or is unknown).
   */
  cancel(id: string, reason: string, at: Date): Promise<BuildRecord | undefined>;
  /**
   * Starts a run of a queued or running build for `worker`: status running, `attempt` one higher (a build that
   * was running is `resumed`). Undefined when the build has finished (or is unknown): it is not run again.
   */
  claim(id: string, worker: string, startedAt: Date): Promise<BuildRecord | undefined>;
  /** With `attempt`, only while the build is still at that run: otherwise LostClaimError, and nothing changes. */
  update(id: string, changes: BuildChanges, attempt?: number): Promise<BuildRecord>;
  /** With `attempt`, only while the build is still at that run: otherwise LostClaimError. */
  appendLog(id: string, text: string, attempt?: number): Promise<void>;
  /**
   * The lines written after `cursor` (0: from the start), at most `limit` of them, and the cursor to ask
   * from next time; undefined for an unknown build. What a reader following a build polls for.
   */
  readLogAfter(id: string, cursor: number, limit: number): Promise<{ lines: string[]; cursor: number } | undefined>;
  /** The repository that first pushed this image (registry/name), if any did. */
  imageOwner(repositoryRef: string): Promise<string | undefined>;
  /** Records `repository` as the image's owner, unless one is recorded already; returns the owner. */
  claimImage(repositoryRef: string, repository: string): Promise<string>;
  /** Deletes finished builds (with their logs and delivery ids) that ended before `cutoff`; how many went. */
  deleteFinishedBefore(cutoff: Date): Promise<number>;
  /** Builds waiting and building now, in every process that shares this store. */
  counts(): Promise<{ queued: number; running: number }>;
  /** A worker process says it is there (each WORKER_PRESENCE interval). */
  recordWorker(name: string, seenAt: Date, engine?: string, nativePlatforms?: string[]): Promise<void>;
  /** Every worker seen, with when it was last and the engine it builds on (as it last said). */
  workers(): Promise<WorkerSeen[]>;
  /** Resolves when the store answers (for /healthz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}
