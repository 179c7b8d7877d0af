import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

/** One line of the Docker engine's newline-delimited JSON progress stream, as we use it. */
export type ProgressEvent =
  | { kind: 'log'; text: string }
  | { kind: 'error'; message: string }
  | { kind: 'aux'; aux: Record<string, unknown> }
  /** BuildKit's progress: a base64 protobuf StatusResponse (see buildkit-trace.ts). */
  | { kind: 'trace'; data: string }
  | { kind: 'progress' };

interface RawProgress {
  stream?: unknown;
  status?: unknown;
  id?: unknown;
  progressDetail?: { current?: unknown };
  error?: unknown;
  errorDetail?: { message?: unknown };
  aux?: unknown;
}

/** Pure: one line to an event. Text that is not JSON is kept as a log line rather than lost. */
export function parseProgressLine(line: string): ProgressEvent | undefined {
  if (line.trim() === '') return undefined;
  let raw: RawProgress;
  try {
    raw = JSON.parse(line) as RawProgress;
  } catch {
    return { kind: 'log', text: line };
  }
  if (typeof raw !== 'object' || raw === null) return { kind: 'log', text: line };
  const errorMessage = raw.errorDetail?.message ?? raw.error;
  if (errorMessage !== undefined) return { kind: 'error', message: String(errorMessage).trim() };
  if (raw.id === 'moby.buildkit.trace' && typeof raw.aux === 'string') return { kind: 'trace', data: raw.aux };
  if (raw.aux && typeof raw.aux === 'object') return { kind: 'aux', aux: raw.aux as Record<string, unknown> };
  if (typeof raw.stream === 'string') {
    const text = raw.stream.replace(/\n+$/, '');
    return text.trim() === '' ? undefined : { kind: 'log', text };
  }
  if (typeof raw.status === 'string') {
    // Byte counters of layers in flight: thousands of lines that tell a reader nothing.
    if (raw.progressDetail?.current !== undefined) return { kind: 'progress' };
    return { kind: 'log', text: typeof raw.id === 'string' ? `${raw.id}: ${raw.status}` : raw.status };
  }
  return undefined;
}

export interface ProgressOutcome {
  /** `aux` objects in order: the built image ID, the pushed digest. */
  aux: Record<string, unknown>[];
  /** The first error line, when the engine reported one. */
  error: string | undefined;
}

/**
 * Reads a progress stream to its end. Docker reports failures inside a 200 response,
 * so a stream that ends "successfully" may still carry an error line: the caller checks `error`.
 */
export async function readProgress(
  stream: Readable,
  onLog: (text: string) => void,
  onTrace: (data: string) => void = () => {},
): Promise<ProgressOutcome> {
  const outcome: ProgressOutcome = { aux: [], error: undefined };
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  for await (const line of lines) {
    const event = parseProgressLine(line);
    if (!event) continue;
    if (event.kind === 'log') onLog(event.text);
    else if (event.kind === 'aux') outcome.aux.push(event.aux);
    else if (event.kind === 'trace') onTrace(event.data);
    else if (event.kind === 'error') {
      onLog(`ERROR: ${event.message}`);
      outcome.error ??= event.message;
    }
  }
  return outcome;
}
