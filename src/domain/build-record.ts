import type { FailureStage } from './errors.js';
import type { BuildRequest } from './build-request.js';

export type BuildStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface BuildRecord {
  id: string;
  /** Arrival order: builds of one repository run in this order. */
  seq: number;
  request: BuildRequest;
  status: BuildStatus;
  /** registry/name:version, once dockerInfo.json was read. */
  image?: string;
  tags: string[];
  digest?: string;
  /** Why it failed, or why it was cancelled. */
  error?: string;
  failedStage?: FailureStage;
  /** How many times a worker has started it: the claim a worker's writes must still hold. */
  attempt: number;
  /** The WORKER_NAME of the process that ran (or runs) it, once started. */
  worker?: string;
  /** The engine it ran on, as that engine describes itself (`docker 26.1.5 (API 1.45, containerd store)`). */
  engine?: string;
  /** True once a restart took this build up again. */
  resumed: boolean;
  createdAt: Date;
  startedAt?: Date;
  finishedAt?: Date;
}
