import type { FailureStage } from '../errors.js';
import type { BuildRequest } from '../github/decide-build.js';

export type BuildStatus = 'queued' | 'running' | 'succeeded' | 'failed';

export interface BuildRecord {
  id: string;
  request: BuildRequest;
  status: BuildStatus;
  /** registry/name:version, once dockerInfo.json was read. */
  image?: string;
  tags: string[];
  digest?: string;
  error?: string;
  failedStage?: FailureStage;
  createdAt: Date;
  startedAt?: Date;
  finishedAt?: Date;
}

export type BuildChanges = Partial<Omit<BuildRecord, 'id' | 'request' | 'createdAt'>>;

/** Where builds and their logs live. Owned by the queue; adapters: memory (now), SQLite, Redis. */
export interface BuildStore {
  /** Stores a new queued build, or returns the one already stored for this delivery id. */
  add(request: BuildRequest, createdAt: Date): Promise<{ build: BuildRecord; created: boolean }>;
  get(id: string): Promise<BuildRecord | undefined>;
  /** Newest first. */
  list(limit: number): Promise<BuildRecord[]>;
  update(id: string, changes: BuildChanges): Promise<BuildRecord>;
  appendLog(id: string, text: string): Promise<void>;
  /** The whole log, or undefined for an unknown build. */
  readLog(id: string): Promise<string | undefined>;
  close(): Promise<void>;
}
