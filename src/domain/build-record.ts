import type { FailureStage } from './errors.js';
import type { BuildRequest } from './build-request.js';

export type BuildStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** One platform's image of a multi-platform build. */
export interface PlatformImage {
  /** `linux/arm64` */
  platform: string;
  /** Built by the engine's own CPU, or under QEMU's emulation. */
  how: 'native' | 'emulated';
  /** The WORKER_NAME of the process whose engine built it. */
  worker: string;
  /** The platform's own manifest in the pushed index; absent when nothing was pushed. */
  digest?: string;
  /** From its build's start to its image in the registry. */
  seconds: number;
}

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
  /** A multi-platform build's images, one per platform, in dockerInfo.json's order. */
  platforms?: PlatformImage[];
  /** True once a restart took this build up again. */
  resumed: boolean;
  createdAt: Date;
  startedAt?: Date;
  finishedAt?: Date;
}
