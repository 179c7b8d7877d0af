import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import protobuf from 'protobufjs';
import type { HijackingModem } from './session.js';

/**
 * BuildKit's control API (`moby.buildkit.v1.Control`), as the engine serves it on `POST /grpc` upgraded to HTTP/2
 * (what buildx's `docker` driver talks to). ListWorkers: which BuildKit this is and the platforms its worker builds
 * (its own and those QEMU's binfmt handlers add, as BuildKit probed them). Solve with Status: a build with what the
 * engine's /build does not pass on, such as attestations (SLSA provenance).
 *
 * One unary call is made by hand over node:http2 because @grpc/grpc-js can only dial addresses, not use a socket
 * the engine hands over after an HTTP upgrade; the gRPC framing of one message is five bytes of header.
 */
const CONTROL_PROTO = `
syntax = "proto3";
package control;
message ListWorkersRequest { repeated string filter = 1; }
message ListWorkersResponse { repeated WorkerRecord record = 1; }
message WorkerRecord { string ID = 1; repeated Platform platforms = 3; BuildkitVersion BuildkitVersion = 5; }
message Platform { string Architecture = 1; string OS = 2; string Variant = 3; }
message BuildkitVersion { string package = 1; string version = 2; string revision = 3; }
message CacheOptionsEntry { string Type = 1; map<string, string> Attrs = 2; }
message CacheOptions { repeated CacheOptionsEntry Exports = 4; repeated CacheOptionsEntry Imports = 5; }
message SolveRequest {
  string Ref = 1; string Exporter = 3; map<string, string> ExporterAttrs = 4; string Session = 5;
  string Frontend = 6; map<string, string> FrontendAttrs = 7; CacheOptions Cache = 8;
}
message SolveResponse { map<string, string> ExporterResponse = 1; }
message StatusRequest { string Ref = 1; }
`;
const types = protobuf.parse(CONTROL_PROTO).root;
const LIST_WORKERS = '/moby.buildkit.v1.Control/ListWorkers';
const SOLVE = '/moby.buildkit.v1.Control/Solve';
const STATUS = '/moby.buildkit.v1.Control/Status';
const CALL_TIMEOUT_MS = 5_000;

export interface BuildKitWorkers {
  /** BuildKit's version where it says it (0.11 and newer; Docker 20.10's 0.8 does not). */
  version: string | undefined;
  /** `os/arch[/variant]`, the worker's own first, as BuildKit lists them. */
  platforms: string[];
}

interface WorkerRecord {
  platforms?: { Architecture?: string; OS?: string; Variant?: string }[];
  BuildkitVersion?: { version?: string };
}

/**
 * Asks the engine's BuildKit which workers it has. Rejects when the engine serves no control API, or does not
 * answer within CALL_TIMEOUT_MS (an engine's description never holds up a start or /healthz).
 */
export async function listBuildKitWorkers(modem: HijackingModem): Promise<BuildKitWorkers> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`BuildKit's control API did not answer within ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS);
  });
  const socket = upgrade(modem);
  try {
    return await Promise.race([socket.then(askWorkers), timeout]);
  } finally {
    clearTimeout(timer);
    // An upgrade that came after the timeout is closed too.
    socket.then((late) => late.destroy(), () => {});
  }
}

async function askWorkers(socket: Duplex): Promise<BuildKitWorkers> {
  const client = http2.connect('http://buildkit', { createConnection: () => socket });
  client.on('error', () => {}); // the call's own stream reports what failed
  try {
    const answer = await unary(client, LIST_WORKERS, encode('ListWorkersRequest', {}));
    const records = (decode('ListWorkersResponse', answer) as { record?: WorkerRecord[] }).record ?? [];
    const platforms = records.flatMap((record) => record.platforms ?? []).map((p) => [p.OS, p.Architecture, p.Variant].filter(Boolean).join('/'));
    const version = records.map((record) => record.BuildkitVersion?.version).find((value) => value);
    return { version: version || undefined, platforms: [...new Set(platforms)] };
  } finally {
    client.close();
  }
}

/** A Dockerfile build as BuildKit's Solve takes it: the dockerfile.v0 frontend, its context from a session. */
export interface SolveOptions {
  /** The build's id, which its progress is asked by. */
  ref: string;
  session: string;
  frontendAttrs: Record<string, string>;
  exporter: { type: string; attrs: Record<string, string> };
  cacheImports: string[];
  /** The layer cache carried inline in the image's config, for any host to reuse from the registry. */
  inlineCache: boolean;
}

/** A solve's end: the exporter's response (the image's digest, …), or BuildKit's error in its own words. */
export type SolveOutcome = { response: Record<string, string>; error?: undefined } | { error: string };

/**
 * Runs one Solve, feeding each of BuildKit's progress messages (`StatusResponse`, as bytes) to `onStatus` as it
 * comes. Aborting closes the connection: BuildKit cancels the solve. Rejects only when the engine serves no control
 * API or the connection breaks; a failed build is an outcome with its error.
 */
export async function solve(modem: HijackingModem, options: SolveOptions, onStatus: (message: Buffer) => void, signal: AbortSignal): Promise<SolveOutcome> {
  // A build stopped before it began (a sibling platform failed) is never sent: no abort would reach it later.
  if (signal.aborted) throw signal.reason;
  const socket = await upgrade(modem);
  const client = http2.connect('http://buildkit', { createConnection: () => socket });
  client.on('error', () => {}); // each call's stream reports what failed
  const close = () => client.destroy();
  signal.addEventListener('abort', close, { once: true });
  try {
    const progress = streamMessages(client, STATUS, encode('StatusRequest', { Ref: options.ref }), onStatus);
    const request = {
      Ref: options.ref,
      Session: options.session,
      Frontend: 'dockerfile.v0',
      FrontendAttrs: options.frontendAttrs,
      Exporter: options.exporter.type,
      ExporterAttrs: options.exporter.attrs,
      Cache: {
        // What the engine's /build makes of the build argument BUILDKIT_INLINE_CACHE, Solve is told in words of its own.
        Exports: options.inlineCache ? [{ Type: 'inline', Attrs: {} }] : [],
        Imports: options.cacheImports.map((ref) => ({ Type: 'registry', Attrs: { ref } })),
      },
    };
    let outcome: SolveOutcome;
    try {
      const answer = await unary(client, SOLVE, encode('SolveRequest', request), 0);
      outcome = { response: (decode('SolveResponse', answer) as { ExporterResponse?: Record<string, string> }).ExporterResponse ?? {} };
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (!(error instanceof GrpcError)) throw error;
      outcome = { error: error.grpcMessage };
    }
    // The last progress (the failed step's error) comes before the status stream ends; BuildKit ends it with the
    // solve, and a stream that outlives it by CALL_TIMEOUT_MS is not waited for.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([progress.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, CALL_TIMEOUT_MS)))]);
    clearTimeout(timer);
    return outcome;
  } finally {
    signal.removeEventListener('abort', close);
    client.close();
  }
}

/** An answer of BuildKit with a non-zero gRPC status: its message is BuildKit's own error. */
class GrpcError extends Error {
  constructor(
    path: string,
    readonly grpcStatus: string,
    readonly grpcMessage: string,
  ) {
    super(`${path} answered gRPC status ${grpcStatus}${grpcMessage ? `: ${grpcMessage}` : ''}`);
  }
}

/** A server-streaming call: each length-prefixed message to `onMessage` as it completes. */
function streamMessages(client: http2.ClientHttp2Session, path: string, message: Uint8Array, onMessage: (message: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let pending: Buffer = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const length = pending.readUInt32BE(1);
        onMessage(pending.subarray(5, 5 + length));
        pending = pending.subarray(5 + length);
      }
    });
    stream.on('error', reject);
    stream.on('close', () => resolve());
    stream.end(frame(message));
  });
}

function frame(message: Uint8Array): Buffer {
  const framed = Buffer.alloc(5 + message.length);
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}

function upgrade(modem: HijackingModem): Promise<Duplex> {
  const request = {
    method: 'POST',
    path: '/grpc',
    hijack: true,
    headers: { Upgrade: 'h2c', Connection: 'Upgrade' },
    statusCodes: { 101: true, 200: true, 404: 'this engine serves no BuildKit control API', 500: 'server error' },
  };
  return new Promise((resolve, reject) => {
    modem.dial(request, (error, socket) => (error || !socket ? reject(error ?? new Error('the engine did not upgrade /grpc')) : resolve(socket)));
  });
}

/** One unary call; `timeoutMs` 0 waits as long as the call runs (a solve). */
function unary(client: http2.ClientHttp2Session, path: string, message: Uint8Array, timeoutMs = CALL_TIMEOUT_MS): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    if (timeoutMs > 0) stream.setTimeout(timeoutMs, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let statusMessage = '';
    const readStatus = (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined) {
        status = String(headers['grpc-status']);
        statusMessage = decodeURIComponent(String(headers['grpc-message'] ?? ''));
      }
    };
    stream.on('response', readStatus);
    stream.on('trailers', readStatus);
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', reject);
    stream.on('close', () => {
      if (status === undefined) {
        reject(new Error(`${path} answered nothing`));
        return;
      }
      if (status !== '0') {
        reject(new GrpcError(path, status, statusMessage));
        return;
      }
      const body = Buffer.concat(chunks);
      // One length-prefixed message: a compression flag byte, four bytes of length, the message.
      resolve(body.subarray(5, 5 + body.readUInt32BE(1)));
    });
    stream.end(frame(message));
  });
}

function encode(type: string, value: object): Uint8Array {
  const message = types.lookupType(`control.${type}`);
  return message.encode(message.fromObject(value)).finish();
}

function decode(type: string, bytes: Buffer): object {
  const message = types.lookupType(`control.${type}`);
  return message.toObject(message.decode(bytes));
}
