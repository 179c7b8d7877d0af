import type { BuildRecord } from './build-record.js';

/** Told of each build's life; an observer that throws is logged and never affects the build. */
export interface BuildObserver {
  queued?(build: BuildRecord): Promise<void> | void;
  /** A worker took it up (status running). */
  started?(build: BuildRecord): Promise<void> | void;
  finished?(build: BuildRecord): Promise<void> | void;
}
