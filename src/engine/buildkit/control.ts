import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import protobuf from 'protobufjs';
import type { HijackingModem } from './session.js';

/**
 * BuildKit's control API (`moby.buildkit.v1.Control`), as the engine serves it on `POST /grpc` upgraded to HTTP/2
 * (what buildx's `docker` driver talks to). Only ListWorkers is asked: which BuildKit this is and the platforms its
 * worker builds (its own and those QEMU's binfmt handlers add, as BuildKit probed them).
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
`;
const types = protobuf.parse(CONTROL_PROTO).root;
const LIST_WORKERS = '/moby.buildkit.v1.Control/ListWorkers';
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

function unary(client: http2.ClientHttp2Session, path: string, message: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    stream.setTimeout(CALL_TIMEOUT_MS, () => stream.close(http2.constants.NGHTTP2_CANCEL));
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
      if (status !== '0') {
        reject(new Error(`${path} answered ${status === undefined ? 'nothing' : `gRPC status ${status}`}${statusMessage ? `: ${statusMessage}` : ''}`));
        return;
      }
      const body = Buffer.concat(chunks);
      // One length-prefixed message: a compression flag byte, four bytes of length, the message.
      resolve(body.subarray(5, 5 + body.readUInt32BE(1)));
    });
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    stream.end(frame);
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
