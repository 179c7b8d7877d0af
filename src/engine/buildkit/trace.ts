import protobuf from 'protobufjs';

/**
 * BuildKit's progress (`moby.buildkit.v1.StatusResponse`, sent base64 in the `aux` of `moby.buildkit.trace`
 * lines), with the fields this decoder reads. Numbers as in BuildKit's api/services/control/control.proto.
 */
const STATUS_PROTO = `
syntax = "proto3";
package moby.buildkit.v1;
message Timestamp { int64 seconds = 1; int32 nanos = 2; }
message Vertex { string digest = 1; repeated string inputs = 2; string name = 3; bool cached = 4; Timestamp started = 5; Timestamp completed = 6; string error = 7; }
message VertexStatus { string ID = 1; string vertex = 2; string name = 3; int64 current = 4; int64 total = 5; }
message VertexLog { string vertex = 1; Timestamp timestamp = 2; int64 stream = 3; bytes msg = 4; }
message VertexWarning { string vertex = 1; int64 level = 2; bytes short = 3; }
message StatusResponse { repeated Vertex vertexes = 1; repeated VertexStatus statuses = 2; repeated VertexLog logs = 3; repeated VertexWarning warnings = 4; }
`;

const StatusResponse = protobuf.parse(STATUS_PROTO).root.lookupType('moby.buildkit.v1.StatusResponse');

interface Timestamp {
  seconds?: number | { toNumber(): number };
  nanos?: number;
}
interface RawVertex {
  digest?: string;
  name?: string;
  cached?: boolean;
  started?: Timestamp;
  completed?: Timestamp;
  error?: string;
}
interface RawStatus {
  vertexes?: RawVertex[];
  logs?: { vertex?: string; timestamp?: Timestamp; msg?: Uint8Array }[];
  warnings?: { vertex?: string; short?: Uint8Array }[];
}

/** One step of the build as BuildKit ran it. */
export interface BuildStep {
  /** 1, 2, …: the `#N` a reader sees, in the order steps first appeared. */
  number: number;
  /** As BuildKit names it, e.g. `[build 2/4] RUN npm ci`. */
  name: string;
  cached: boolean;
  startedMs?: number;
  completedMs?: number;
  error?: string;
  /** The step's last lines of output, kept to explain a failure. */
  lastOutput: string[];
}

const KEPT_OUTPUT_LINES = 5;

/**
 * Turns BuildKit's trace into the lines `docker build --progress=plain` prints (`#5 [2/3] RUN …`,
 * `#5 0.215 output`, `#5 CACHED`, `#5 DONE 0.4s`, `#5 ERROR: …`), in order, as messages arrive.
 * Pure: messages in, lines out; it keeps each step's state to number it and explain its failure.
 */
export class BuildKitTrace {
  private readonly steps = new Map<string, BuildStep>();
  /** Output of a step not yet ended by a newline. */
  private readonly partial = new Map<string, string>();

  constructor(private readonly emit: (line: string) => void) {}

  /** Takes the `aux` of one `moby.buildkit.trace` line. */
  feed(base64: string): void {
    const status = StatusResponse.toObject(StatusResponse.decode(Buffer.from(base64, 'base64')), { longs: Number }) as RawStatus;
    for (const vertex of status.vertexes ?? []) this.vertex(vertex);
    for (const log of status.logs ?? []) this.output(log.vertex ?? '', Buffer.from(log.msg ?? []).toString('utf8'), millis(log.timestamp));
    for (const warning of status.warnings ?? []) {
      const step = this.steps.get(warning.vertex ?? '');
      this.emit(`${step ? `#${step.number} ` : ''}WARNING: ${Buffer.from(warning.short ?? []).toString('utf8')}`);
    }
  }

  /**
   * The step whose error is the build's: a cache import that failed (no such tag yet) has an error too,
   * but the build goes on without it.
   */
  stepThatFailed(buildError: string): BuildStep | undefined {
    const failed = [...this.steps.values()].filter((step) => step.error !== undefined);
    return failed.find((step) => step.error === buildError.trim()) ?? failed.find((step) => buildError.includes(step.error!));
  }

  /** Every step seen, in order. */
  allSteps(): BuildStep[] {
    return [...this.steps.values()];
  }

  private vertex(vertex: RawVertex): void {
    const digest = vertex.digest ?? '';
    let step = this.steps.get(digest);
    if (!step) {
      step = { number: this.steps.size + 1, name: vertex.name ?? digest, cached: false, lastOutput: [] };
      this.steps.set(digest, step);
    }
    const started = millis(vertex.started);
    if (started !== undefined && step.startedMs === undefined) {
      step.startedMs = started;
      this.emit(`#${step.number} ${step.name}`);
    }
    if (vertex.cached && !step.cached) {
      step.cached = true;
      if (step.startedMs === undefined) this.emit(`#${step.number} ${step.name}`);
      this.emit(`#${step.number} CACHED`);
    }
    const completed = millis(vertex.completed);
    if (completed === undefined || step.completedMs !== undefined) return;
    step.completedMs = completed;
    this.flushPartial(digest, step);
    if (vertex.error) {
      step.error = vertex.error;
      this.emit(`#${step.number} ERROR: ${vertex.error}`);
    } else if (!step.cached) {
      this.emit(`#${step.number} DONE ${((completed - (step.startedMs ?? completed)) / 1000).toFixed(1)}s`);
    }
  }

  private output(digest: string, text: string, at: number | undefined): void {
    const step = this.steps.get(digest);
    if (!step) return;
    const lines = ((this.partial.get(digest) ?? '') + text).split(/\r?\n/);
    this.partial.set(digest, lines.pop() ?? '');
    for (const line of lines) this.outputLine(step, line, at);
  }

  private flushPartial(digest: string, step: BuildStep): void {
    const rest = this.partial.get(digest);
    this.partial.delete(digest);
    if (rest) this.outputLine(step, rest, undefined);
  }

  private outputLine(step: BuildStep, line: string, at: number | undefined): void {
    const elapsed = at !== undefined && step.startedMs !== undefined ? ` ${((at - step.startedMs) / 1000).toFixed(3)}` : '';
    this.emit(`#${step.number}${elapsed} ${line}`);
    if (line.trim() === '') return;
    step.lastOutput.push(line);
    if (step.lastOutput.length > KEPT_OUTPUT_LINES) step.lastOutput.shift();
  }
}

function millis(timestamp: Timestamp | undefined): number | undefined {
  if (!timestamp || timestamp.seconds === undefined) return undefined;
  const seconds = typeof timestamp.seconds === 'number' ? timestamp.seconds : timestamp.seconds.toNumber();
  if (seconds <= 0) return undefined; // Go's zero time arrives as a negative number of seconds
  return seconds * 1000 + Math.floor((timestamp.nanos ?? 0) / 1e6);
}
