/**
 * Every way a build can fail, one class per stage. The message is written for the person who
 * reads the failed build: it says what went wrong and what to change.
 * `retryable` marks transient failures (network, 5xx, engine or registry unreachable).
 */
export type FailureStage = 'fetch' | 'spec' | 'context' | 'build' | 'push' | 'timeout';

export abstract class BuildFailure extends Error {
  abstract readonly stage: FailureStage;
  constructor(
    message: string,
    readonly retryable = false,
    /** The wait a server asked for (Retry-After), when it did. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Reading dockerInfo.json or the tarball from GitHub failed. */
export class SourceError extends BuildFailure {
  readonly stage = 'fetch';
}

/** dockerInfo.json is missing, not JSON, or breaks a rule. */
export class SpecError extends BuildFailure {
  readonly stage = 'spec';
}

/** The repository tarball cannot become a build context (escaping paths, missing context folder). */
export class ContextError extends BuildFailure {
  readonly stage = 'context';
}

/** A Dockerfile step that failed, as BuildKit reported it. */
export interface FailedStep {
  /** As BuildKit names it: `[stage-0 2/3] RUN npm ci`. */
  name: string;
  /** The step's last lines of output. */
  lastOutput: string[];
}

/** The Docker engine refused or failed the build (Dockerfile errors arrive here). */
export class ImageBuildError extends BuildFailure {
  readonly stage = 'build';
  constructor(
    message: string,
    retryable = false,
    /** The step that failed, when BuildKit said which: the pipeline adds its Dockerfile line. */
    readonly failedStep?: FailedStep,
  ) {
    super(message, retryable);
  }
}

/** Pushing a tag to the registry failed. */
export class PushError extends BuildFailure {
  readonly stage = 'push';
}

/** The build ran longer than BUILD_TIMEOUT_S. */
export class BuildTimeoutError extends BuildFailure {
  readonly stage = 'timeout';
}

/** A build was cancelled (superseded, its pull request closed, or by hand): the run stops; the reason is recorded. */
export class BuildCancelledError extends Error {
  override readonly name = 'BuildCancelledError';
}

/** A webhook delivery that cannot be used: answered 400, never stored. */
export class PayloadError extends Error {
  override readonly name = 'PayloadError';
}

/** A configuration value that stops start-up. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Any thrown value as a one-line message, without stack or request internals (which may hold tokens). */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
