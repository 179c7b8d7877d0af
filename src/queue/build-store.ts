import type { BuildRecord } from '../domain/build-record.js';
import type { BuildRequest } from '../domain/build-request.js';

export type BuildChanges = Partial<Pick<BuildRecord, 'status' | 'image' | 'tags' | 'digest' | 'error' | 'failedStage' | 'resumed' | 'startedAt' | 'finishedAt' | 'worker'>>;

export type AddOutcome =
  /** A new build was stored. */
  | { kind: 'created'; build: BuildRecord }
  /** This delivery id was seen before: its build. */
  | { kind: 'redelivery'; build: BuildRecord }
  /** Another delivery already queued or runs this repository at this commit: that build. */
  | { kind: 'coalesced'; build: BuildRecord }
  /** `maxQueued` builds are already waiting: nothing was stored. */
  | { kind: 'queue_full'; queued: number };

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
  update(id: string, changes: BuildChanges): Promise<BuildRecord>;
  appendLog(id: string, text: string): Promise<void>;
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
  /** Resolves when the store answers (for /healthz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}
