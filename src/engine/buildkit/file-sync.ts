import type * as grpc from '@grpc/grpc-js';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import protobuf from 'protobufjs';
import type { CheckoutEntry } from '../../source/checkout.js';
import { ContextError } from '../../domain/errors.js';
import { cleanPattern, DockerIgnore } from '../../patterns/dockerignore.js';
import { checkPatternCount, compileGlob, type Glob } from '../../patterns/glob.js';
import { gitBlobHash } from '../../source/git-blob.js';
import { collectGarbageAsBytesPass, CONTEXT_GARBAGE_PACE, ENTRY_GARBAGE_BYTES } from '../../source/stream-garbage.js';

/**
 * The sending side of BuildKit's file sync (`moby.filesync.v1.FileSync/DiffCopy`), as the docker CLI serves a
 * build context: BuildKit calls it once per folder it loads ("dockerfile", "context"), with the paths it wants in
 * the call's metadata. The protocol is fsutil's (github.com/tonistiigi/fsutil, send.go): one STAT packet per
 * entry in walk order, an empty STAT to end them, then the file contents BuildKit asks for by number (REQ) in
 * DATA packets, an empty DATA closing each file, and FIN both ways. BuildKit compares each STAT with the copy it
 * kept from the last transfer under the session's shared key and asks only for files whose size, mtime or mode
 * changed: checkout.ts gives mtimes that make that comparison safe.
 */
const WIRE_PROTO = `
syntax = "proto3";
package fsutil.types;
message Stat {
  string path = 1;
  uint32 mode = 2;
  uint32 uid = 3;
  uint32 gid = 4;
  int64 size = 5;
  int64 modTime = 6;
  string linkname = 7;
  int64 devmajor = 8;
  int64 devminor = 9;
}
message Packet {
  enum PacketType { PACKET_STAT = 0; PACKET_REQ = 1; PACKET_DATA = 2; PACKET_FIN = 3; PACKET_ERR = 4; }
  PacketType type = 1;
  Stat stat = 2;
  uint32 ID = 3;
  bytes data = 4;
}
`;
const Packet = protobuf.parse(WIRE_PROTO).root.lookupType('fsutil.types.Packet');
const STAT = 0;
const REQ = 1;
const DATA = 2;
const FIN = 3;
const ERR = 4;

/** Go's os.FileMode type bits, which fsutil sends as the mode. */
const GO_MODE_DIR = 0x80000000;
const GO_MODE_SYMLINK = 0x08000000;
/** Larger than the CLI's 32 KB: fewer messages through gRPC for the same bytes, far below its 4 MB limit. */
const DATA_CHUNK_BYTES = 64 * 1024;

/** gRPC status codes (grpc-js is imported for its types only). */
const GRPC_UNKNOWN = 2;
const GRPC_NOT_FOUND = 5;

export const DIFF_COPY_METHOD = '/moby.filesync.v1.FileSync/DiffCopy';

/** A folder BuildKit may load: where the file contents are, and every entry's metadata. */
export interface SyncedFolder {
  root: string;
  entries: CheckoutEntry[];
}

interface WirePacket {
  type?: number;
  stat?: object;
  ID?: number;
  data?: Uint8Array;
}

export interface FileSyncEvents {
  /** A transfer failed: why, for the build's error. */
  onError(error: Error): void;
  /** A file BuildKit asked for has been sent whole, from the folder of that name. */
  onFileSent(folder: string, entry: CheckoutEntry): void;
}

/** The FileSync service for a session: `folders` by the names BuildKit asks for. */
export function fileSyncService(folders: Record<string, SyncedFolder>, events: FileSyncEvents): { definition: grpc.ServiceDefinition; handlers: grpc.UntypedServiceImplementation } {
  const definition: grpc.ServiceDefinition = {
    DiffCopy: {
      path: DIFF_COPY_METHOD,
      requestStream: true,
      responseStream: true,
      requestDeserialize: (bytes: Buffer) => Packet.decode(bytes) as unknown as WirePacket,
      requestSerialize: () => Buffer.alloc(0),
      responseSerialize: (packet: WirePacket) => Buffer.from(Packet.encode(Packet.fromObject(packet)).finish()),
      responseDeserialize: () => ({}),
    },
  };
  const DiffCopy = (call: grpc.ServerDuplexStream<WirePacket, WirePacket>) => {
    const name = String(call.metadata.get('dir-name')[0] ?? '');
    const folder = Object.hasOwn(folders, name) ? folders[name] : undefined;
    if (!folder) {
      call.emit('error', { code: GRPC_NOT_FOUND, details: `no access allowed to dir "${name}"` });
      return;
    }
    const selection = {
      includes: metadataList(call.metadata, 'include-patterns'),
      excludes: metadataList(call.metadata, 'exclude-patterns'),
      followPaths: metadataList(call.metadata, 'followpaths'),
    };
    sendFolder(call, folder, selection, (entry) => events.onFileSent(name, entry)).catch((error: Error) => {
      events.onError(error);
      call.emit('error', { code: GRPC_UNKNOWN, details: error.message });
    });
  };
  return { definition, handlers: { DiffCopy } };
}

/**
 * BuildKit sends a list as one header per item; Node's HTTP/2 joins repeated headers with ", ". (A pattern that
 * itself holds ", " cannot be told apart; .dockerignore patterns with a comma and a space are not known to exist.)
 */
function metadataList(metadata: grpc.Metadata, key: string): string[] {
  return metadata.get(key).flatMap((value) => String(value).split(', ')).filter((item) => item !== '');
}

export interface Selection {
  includes: string[];
  excludes: string[];
  followPaths: string[];
}

async function sendFolder(
  call: grpc.ServerDuplexStream<WirePacket, WirePacket>,
  folder: SyncedFolder,
  selection: Selection,
  onFileSent: (entry: CheckoutEntry) => void,
): Promise<void> {
  const walked = await walk(folder.entries, selection);
  const collectGarbage = collectGarbageAsBytesPass(CONTEXT_GARBAGE_PACE);
  // A file's number is its place in the walk; each is sent once.
  const sent = new Uint8Array(walked.length);
  const requests: number[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let failure: Error | undefined;
  const stop = (error?: Error) => {
    failure ??= error;
    finished = true;
    wake?.();
  };
  call.on('data', (packet: WirePacket) => {
    const type = packet.type ?? STAT;
    if (type === REQ) requests.push(packet.ID ?? 0);
    else if (type === FIN) stop();
    else if (type === ERR) stop(new Error(`BuildKit could not take the context: ${Buffer.from(packet.data ?? []).toString('utf8')}`));
    wake?.();
  });
  call.on('end', () => stop());
  call.on('cancelled', () => stop(new Error('BuildKit cancelled the context transfer')));
  call.on('error', (error: Error) => stop(error));

  for (const entry of walked) {
    await write(call, { type: STAT, stat: stat(entry) });
    collectGarbage(ENTRY_GARBAGE_BYTES);
  }
  await write(call, { type: STAT });

  // Files one after another, in the order asked: BuildKit writes each as its DATA arrives.
  for (;;) {
    const id = requests.shift();
    if (id !== undefined) {
      const entry = walked[id];
      if (entry?.type !== 'file' || sent[id] === 1) throw new Error(`BuildKit asked for file number ${id}, which is not a file of this context still to send`);
      sent[id] = 1;
      await sendFile(call, id, folder.root, entry, collectGarbage);
      collectGarbage(ENTRY_GARBAGE_BYTES);
      onFileSent(entry);
      continue;
    }
    if (finished) break;
    await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
  }
  if (failure) throw failure;
  await write(call, { type: FIN });
  call.end();
}

/**
 * Sends a file as the checkout's manifest describes it, or fails the build: its size and git blob id are checked
 * as it is read, and the end of the file (an empty DATA) is sent only when both match. What BuildKit builds from
 * is then what was fetched and verified, whatever happened on disk since.
 */
async function sendFile(call: grpc.ServerDuplexStream<WirePacket, WirePacket>, id: number, root: string, entry: CheckoutEntry, collectGarbage: (bytes: number) => void): Promise<void> {
  const hash = gitBlobHash(entry.size);
  let size = 0;
  for await (const chunk of createReadStream(path.join(root, entry.path), { highWaterMark: DATA_CHUNK_BYTES })) {
    size += (chunk as Buffer).length;
    if (size > entry.size) break;
    hash.update(chunk as Buffer);
    await written(call, { type: DATA, ID: id, data: chunk as Buffer });
    collectGarbage((chunk as Buffer).length);
  }
  if (size !== entry.size || (entry.blob !== '' && hash.digest('hex') !== entry.blob)) {
    throw new ContextError(`the context file "${entry.path}" on disk is not the one fetched (git blob ${entry.blob.slice(0, 7) || 'unknown'}, ${entry.size} bytes): it changed after it was checked; build again`);
  }
  await write(call, { type: DATA, ID: id });
}

/** Writes with gRPC's backpressure: waits for the stream to drain when its buffer is full. */
async function write(call: grpc.ServerDuplexStream<WirePacket, WirePacket>, packet: WirePacket): Promise<void> {
  if (!call.write(packet)) await once(call, 'drain');
}

/**
 * Resolves once HTTP/2 has taken the packet: one file chunk in flight at a time. Each chunk is copied twice on
 * its way (encoded, framed), and with gRPC's 16 messages of buffer a large context's memory grew by tens of MB.
 */
function written(call: grpc.ServerDuplexStream<WirePacket, WirePacket>, packet: WirePacket): Promise<void> {
  return new Promise((resolve, reject) => call.write(packet, (error?: Error | null) => (error ? reject(error) : resolve())));
}

function stat(entry: CheckoutEntry): object {
  const typeBits = entry.type === 'directory' ? GO_MODE_DIR : entry.type === 'symlink' ? GO_MODE_SYMLINK : 0;
  return {
    path: entry.path,
    mode: (typeBits | entry.mode) >>> 0,
    uid: 0,
    gid: 0,
    size: entry.size,
    // Nanoseconds do not fit a double: int64 as a decimal string.
    modTime: `${entry.mtimeSeconds}000000000`,
    linkname: entry.linkname,
  };
}


/**
 * The entries BuildKit asked for, in fsutil's walk order (each folder's entries sorted by their bytes, a
 * folder before what it holds), with fsutil's include, exclude (.dockerignore's rules) and follow-path rules.
 * Patterns come from the repository: each is matched in linear time (patterns/glob.ts), and the sort and the walk
 * let the event loop run every few milliseconds, so that no context, however large, holds up the daemon's other
 * work. Memory: the entries in order and the result, a few bytes each (no tree of folders).
 */
export async function walk(entries: CheckoutEntry[], selection: Selection): Promise<CheckoutEntry[]> {
  checkPatternCount(selection.includes, 'the include patterns BuildKit sent');
  checkPatternCount(selection.followPaths, "the Dockerfile's COPY and ADD sources");
  const includes = new IncludePatterns([...selection.includes.map(cleanPattern), ...followed(entries, selection.followPaths)]);
  const excludes = selection.excludes.length > 0 ? new DockerIgnore(selection.excludes) : undefined;
  const exceptions = excludes?.exceptions ?? [];
  const yielder = yieldEvery(WALK_SLICE_MS);
  const ordered = await sortInSlices(entries, compareWalkOrder, yielder);
  const out: CheckoutEntry[] = [];
  // The folders the walk is inside, outermost first; a skipped one hides everything under it.
  const open: { path: string; insideIncluded: boolean; skipped: boolean }[] = [];
  const visit = (entry: CheckoutEntry) => {
    const parent = open.at(-1);
    const isFolder = entry.type === 'directory';
    if (parent?.skipped) {
      if (isFolder) open.push({ path: entry.path, insideIncluded: false, skipped: true });
      return;
    }
    let included = parent?.insideIncluded ?? includes.none;
    let skipped = false;
    if (!includes.none && !included) {
      const match = includes.match(entry.path);
      if (match === 'none' || (match === 'partial' && !isFolder)) skipped = true;
      included = match === 'whole';
    }
    // An excluded folder is still entered when an exception ("!pattern") may keep something inside it.
    if (!skipped && excludes?.ignores(entry.path) && (!isFolder || !exceptions.some((pattern) => `${pattern}/`.startsWith(`${entry.path}/`)))) skipped = true;
    if (!skipped) out.push(entry);
    if (isFolder) open.push({ path: entry.path, insideIncluded: included, skipped });
  };
  for (const entry of ordered) {
    await yielder();
    while (open.length > 0 && !entry.path.startsWith(`${open.at(-1)!.path}/`)) open.pop();
    // A folder the tarball did not list comes before what it holds: fsutil needs every parent.
    const parts = entry.path.split('/');
    for (let depth = open.length === 0 ? 1 : open.at(-1)!.path.split('/').length + 1; depth < parts.length; depth += 1) {
      visit({ path: parts.slice(0, depth).join('/'), type: 'directory', mode: 0o755, size: 0, mtimeSeconds: 0, linkname: '', blob: '' });
    }
    visit(entry);
  }
  return out;
}

/** How long the walk runs before it lets the event loop answer others. */
const WALK_SLICE_MS = 5;

function yieldEvery(sliceMs: number): () => Promise<void> {
  let since = performance.now();
  return async () => {
    if (performance.now() - since < sliceMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    since = performance.now();
  };
}

/**
 * fsutil's order: path by path, component by component, each compared by its UTF-8 bytes. Equivalently, the paths
 * compared by code point with '/' below every other character (a folder's entries right after it), without
 * making a byte buffer per comparison: UTF-16 units order as code points once surrogates are moved above U+FFFF.
 */
export function compareWalkOrder(a: CheckoutEntry, b: CheckoutEntry): number {
  const x = a.path;
  const y = b.path;
  const length = Math.min(x.length, y.length);
  for (let i = 0; i < length; i += 1) {
    const difference = walkUnit(x.charCodeAt(i)) - walkUnit(y.charCodeAt(i));
    if (difference !== 0) return difference;
  }
  return x.length - y.length;
}

function walkUnit(unit: number): number {
  if (unit === 0x2f) return -1;
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

/** A merge sort that yields to the event loop between runs: sorting 200,000 names at once held it 0.3 s. */
async function sortInSlices<T>(items: readonly T[], compare: (a: T, b: T) => number, yielder: () => Promise<void>): Promise<T[]> {
  const RUN = 512;
  let from = items.slice();
  for (let start = 0; start < from.length; start += RUN) {
    const run = from.slice(start, start + RUN).sort(compare);
    for (let i = 0; i < run.length; i += 1) from[start + i] = run[i]!;
    await yielder();
  }
  let to = new Array<T>(from.length);
  for (let width = RUN; width < from.length; width *= 2) {
    for (let left = 0; left < from.length; left += 2 * width) {
      const middle = Math.min(left + width, from.length);
      const right = Math.min(left + 2 * width, from.length);
      let i = left;
      let j = middle;
      for (let k = left; k < right; k += 1) {
        to[k] = i < middle && (j >= right || compare(from[i]!, from[j]!) <= 0) ? from[i++]! : from[j++]!;
        if ((k & 1023) === 0) await yielder();
      }
    }
    [from, to] = [to, from];
  }
  return from;
}

/** Include patterns: whether one takes a path whole, only as a folder on the way to it ('partial'), or not. */
class IncludePatterns {
  private readonly patterns: { parts: string[]; byDepth: Map<number, Glob> }[];

  constructor(patterns: string[]) {
    // Compiled whole at once, so that a pattern that is too long or not a glob fails before anything is sent.
    this.patterns = patterns.map((pattern) => ({ parts: pattern.split('/'), byDepth: new Map([[pattern.split('/').length, compileGlob(pattern)]]) }));
  }

  get none(): boolean {
    return this.patterns.length === 0;
  }

  match(name: string): 'whole' | 'partial' | 'none' {
    const depth = name.split('/').length;
    let result: 'whole' | 'partial' | 'none' = 'none';
    for (const pattern of this.patterns) {
      const partial = pattern.parts.length > depth;
      // A folder on the way: matched against as many of the pattern's parts as it has.
      const key = partial ? depth : pattern.parts.length;
      let glob = pattern.byDepth.get(key);
      if (!glob) {
        glob = compileGlob(pattern.parts.slice(0, key).join('/'));
        pattern.byDepth.set(key, glob);
      }
      if (!glob.matches(name)) continue;
      if (!partial) return 'whole';
      result = 'partial';
    }
    return result;
  }
}

/** Follow paths are includes whose symlinks are followed: the link and what it points to are both sent. */
function followed(entries: CheckoutEntry[], followPaths: string[]): string[] {
  const byPath = new Map(entries.map((entry) => [entry.path, entry]));
  const out: string[] = [];
  for (const start of followPaths.map(cleanPattern)) {
    let current = start;
    for (let hops = 0; hops < 40; hops += 1) {
      out.push(current);
      const entry = byPath.get(current);
      if (entry?.type !== 'symlink' || path.posix.isAbsolute(entry.linkname)) break;
      current = cleanPattern(path.posix.join(path.posix.dirname(current), entry.linkname));
    }
  }
  return out;
}

