import type { Retry } from '../pipeline/ports.js';
import { BuildFailure, describeError } from '../domain/errors.js';

export interface RetryPolicy {
  /** Tries after the first; 0 never retries. */
  retries: number;
  /** Delay before the first retry; each later one doubles, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Pure: exponential backoff with "equal jitter", so retries from many builds spread out. */
export function backoffDelay(retry: number, policy: RetryPolicy, random: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.round(ceiling / 2 + (random * ceiling) / 2);
}

export function createRetry(
  policy: RetryPolicy,
  signal: AbortSignal,
  onRetry: (message: string) => void,
  /** deadline: when the build's time is up (epoch ms); a wait that would end later is not begun. */
  { deadline = Infinity, random = Math.random }: { deadline?: number; random?: () => number } = {},
): Retry {
  return async (step, action) => {
    for (let retry = 1; ; retry += 1) {
      try {
        return await action();
      } catch (error) {
        const transient = error instanceof BuildFailure && error.retryable;
        if (!transient || retry > policy.retries || signal.aborted) throw error;
        const delay = error.retryAfterMs ?? backoffDelay(retry, policy, random());
        if (Date.now() + delay >= deadline) {
          // A Retry-After of hours would outlive the build (and overflow a timer): fail now, saying why.
          onRetry(`${step} failed (${describeError(error)}); not retried: waiting ${(delay / 1000).toFixed(0)} s would outlast BUILD_TIMEOUT_S`);
          throw error;
        }
        onRetry(`${step} failed (${describeError(error)}); retry ${retry} of ${policy.retries} in ${(delay / 1000).toFixed(1)} s`);
        await sleep(delay, signal);
      }
    }
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
