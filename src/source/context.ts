import path from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar, { type Header, type Pack } from 'tar-stream';
import { BuildFailure, ContextError, describeError, SourceError } from '../domain/errors.js';
import { collectGarbageAsBytesPass, CONTEXT_GARBAGE_PACE, ENTRY_GARBAGE_BYTES } from './stream-garbage.js';
import { untilEndOfArchive } from './tar-end.js';

export interface ContextOptions {
  /** Folder of the repository to use as the context; '' for the root. Already normalised. */
  context: string;
  /** Dockerfile path inside the context, to report whether the tarball had it. */
  dockerfile: string;
  /** The context fails as soon as its files add up to more (MAX_CONTEXT_MB). */
  maxBytes: number;
  /** The whole tarball, inflated, headers and files outside the context included (MAX_REPOSITORY_MB). */
  maxArchiveBytes: number;
  /** Entries of the whole tarball, folders and files outside the context included (MAX_CONTEXT_ENTRIES). */
  maxEntries: number;
}

export interface ContextSummary {
  entries: number;
  bytes: number;
  hasDockerfile: boolean;
}

/** A Dockerfile is text of a few KB; one larger than this is not kept to explain a failed step. */
export const DOCKERFILE_KEPT_BYTES = 256 * 1024;

const KEPT_TYPES = new Set<Header['type']>(['file', 'directory', 'symlink', 'link']);

/** zlib's default 16 KB output chunks make inflating twice as slow (bench/README.md). */
const INFLATED_CHUNK_BYTES = 256 * 1024;

/** One entry of the context, re-rooted: `name` is its path inside the context. */
export type ContextEntryHeader = Header & { name: string };

/**
 * Where the context's entries go, one at a time and in the tarball's order: a tar stream for the legacy builder,
 * a folder for BuildKit's file sync (checkout.ts). `add` resolves once it has consumed `content`.
 */
export type ContextSink = (header: ContextEntryHeader, content: Readable) => Promise<void>;

export interface ContextReading {
  /** Settles when the whole tarball has gone through: the summary, or the ContextError that stopped it. */
  finished: Promise<ContextSummary>;
  /** The same outcome, readable at once: undefined while entries are still streaming. */
  outcome(): { summary: ContextSummary } | { error: Error } | undefined;
  /** The Dockerfile's text once its entry has passed (undefined before, or when it is larger than 256 KB). */
  dockerfileText(): string | undefined;
  /** Stops reading the tarball (the engine gave up on the context): the download is closed, `finished` rejects. */
  destroy(reason: Error): void;
}

export interface BuildContext extends ContextReading {
  /** Uncompressed tar, rooted at the chosen context: what the Docker engine's /build takes. */
  stream: Readable;
}

/**
 * Reads GitHub's gzipped repository tarball (every file under one `<owner>-<repo>-<sha7>/` folder) into `sink`:
 * that folder stripped, only `context` kept and re-rooted, every limit and path checked on the way.
 * Entry by entry with backpressure: nothing is held whole in memory.
 */
export function readContext(tarball: Readable, options: ContextOptions, sink: ContextSink): ContextReading {
  const gunzip = createGunzip({ chunkSize: INFLATED_CHUNK_BYTES });
  const extract = tar.extract();
  const fail = (error: Error) => extract.destroy(error);
  tarball.on('error', (error) => fail(isAbort(error) ? error : downloadBrokeOff(error)));
  gunzip.on('error', (error: NodeJS.ErrnoException) =>
    // zlib says Z_BUF_ERROR when the input ends inside the stream: the download stopped early, not a bad file.
    fail(error.code === 'Z_BUF_ERROR' ? downloadBrokeOff(error) : new ContextError(`the repository tarball is not a valid gzip file: ${error.message}`)),
  );
  // The end-of-archive marker ends the context: nothing after it is downloaded or inflated.
  const endOfArchive = untilEndOfArchive(() => tarball.destroy());
  endOfArchive.on('error', fail);
  tarball.pipe(gunzip).pipe(endOfArchive).pipe(extract);
  const collectGarbage = collectGarbageAsBytesPass(CONTEXT_GARBAGE_PACE);
  let inflated = 0;
  gunzip.on('data', (chunk: Buffer) => {
    collectGarbage(chunk.length);
    inflated += chunk.length;
    if (inflated > options.maxArchiveBytes) {
      fail(new ContextError(`the repository tarball inflates to more than MAX_REPOSITORY_MB=${megabytes(options.maxArchiveBytes)} MB: raise MAX_REPOSITORY_MB, or keep large files out of the repository`));
    }
  });

  let outcome: { summary: ContextSummary } | { error: Error } | undefined;
  let dockerfileText: string | undefined;
  const keepDockerfile = (text: string) => (dockerfileText = text);
  const finished = rerootEntries(extract, sink, options, keepDockerfile, () => collectGarbage(ENTRY_GARBAGE_BYTES)).then(
    (summary) => {
      outcome = { summary };
      return summary;
    },
    (error: Error) => {
      outcome = { error };
      tarball.destroy();
      throw error;
    },
  );
  // The caller may only look at `finished` after the build; an early failure must not be "unhandled".
  finished.catch(() => {});
  return { finished, outcome: () => outcome, dockerfileText: () => dockerfileText, destroy: fail };
}

/** The context as an uncompressed tar stream, for the legacy builder's /build body. */
export function createBuildContext(tarball: Readable, options: ContextOptions): BuildContext {
  const pack = tar.pack();
  // A failure is reported through `finished`; without this listener it would also crash the process.
  pack.on('error', () => {});
  const reading = readContext(tarball, options, (header, content) => copyEntry(content, pack, header));
  reading.finished.then(
    () => pack.finalize(),
    (error: Error) => pack.destroy(error),
  );
  // tar-stream's pack is a streamx Readable: it pipes like a Node Readable, which is all its consumers do.
  return { ...reading, stream: pack as unknown as Readable };
}

/** A download that breaks off is the network's fault, so it is retried like any other network failure. */
function downloadBrokeOff(error: Error): SourceError {
  return new SourceError(`the repository tarball download broke off before its end (${describeError(error)})`, true);
}

function isAbort(error: Error): boolean {
  return error.name === 'AbortError' || error.name === 'CanceledError';
}

async function rerootEntries(
  extract: tar.Extract,
  sink: ContextSink,
  options: ContextOptions,
  keepDockerfile: (text: string) => void,
  /** Called once an entry: what each leaves behind counts toward the garbage pace. */
  entryPassed: () => void,
): Promise<ContextSummary> {
  const summary: ContextSummary = { entries: 0, bytes: 0, hasDockerfile: false };
  let sawContextFolder = options.context === '';
  let archiveEntries = 0;
  const symlinks = new Set<string>();
  for await (const entry of readEntries(extract)) {
    const header = entry.header;
    archiveEntries += 1;
    entryPassed();
    if (archiveEntries > options.maxEntries) throw tooManyEntries(options.maxEntries);
    const name = KEPT_TYPES.has(header.type) ? contextPath(header.name, options.context) : undefined;
    if (name === undefined) {
      entry.resume();
      continue;
    }
    sawContextFolder = true;
    if (name === '') {
      entry.resume();
      continue;
    }
    if (summary.bytes + (header.size ?? 0) > options.maxBytes) throw contextTooLarge(options.maxBytes, name);
    checkNotUnderSymlink(name, symlinks);
    if (header.type === 'symlink') {
      checkSymlinkStaysInside(name, header.linkname ?? '');
      symlinks.add(name);
    }
    const linkname = header.type === 'link' ? hardLinkTarget(header, options.context) : header.linkname;
    const isDockerfile = name === options.dockerfile && header.type === 'file';
    if (isDockerfile && (header.size ?? 0) <= DOCKERFILE_KEPT_BYTES) collectText(entry as unknown as Readable, keepDockerfile);
    await sink({
      name,
      type: header.type,
      mode: header.mode,
      mtime: header.mtime,
      size: header.size,
      linkname,
      uid: 0,
      gid: 0,
      uname: '',
      gname: '',
      devmajor: 0,
      devminor: 0,
    }, entry as unknown as Readable);
    summary.entries += 1;
    summary.bytes += header.size ?? 0;
    if (name === options.dockerfile && header.type !== 'directory') summary.hasDockerfile = true;
  }
  if (!sawContextFolder) {
    throw missingContextFolder(options.context);
  }
  return summary;
}

/**
 * The entry's path inside the context: '' for the context folder itself, undefined when outside it.
 * Throws for a path that would escape the repository.
 */
export function contextPath(archiveName: string, context: string): string | undefined {
  const trimmed = archiveName.replace(/\/+$/, '');
  // git never writes a '..' segment: any one is a crafted archive, wherever it would lead.
  if (path.posix.isAbsolute(trimmed) || trimmed.split('/').includes('..')) {
    throw new ContextError(`the repository tarball has an entry "${archiveName}" that escapes the repository; refusing to build from it`);
  }
  const normal = path.posix.normalize(trimmed);
  checkNameFits(normal);
  const slash = normal.indexOf('/');
  if (slash === -1) return context === '' ? '' : undefined; // the top-level folder itself
  const inRepository = normal.slice(slash + 1);
  if (context === '') return inRepository;
  if (inRepository === context) return '';
  return inRepository.startsWith(`${context}/`) ? inRepository.slice(context.length + 1) : undefined;
}

/**
 * A relative symlink must resolve inside the context. An absolute one is kept as a link: the engine resolves it
 * inside the context (or, in the image, inside the image), never on the host.
 */
/** Linux's limits (NAME_MAX, and PATH_MAX less room for the checkout's own folder): what a checkout can hold. */
const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 3800;

/**
 * git keeps names no file system can: a name of 4,000 bytes. Refused at the context stage, naming the file, rather
 * than met later as a raw ENAMETOOLONG from a write.
 */
export function checkNameFits(repositoryPath: string): void {
  const tooLong = repositoryPath.split('/').find((part) => Buffer.byteLength(part) > MAX_NAME_BYTES);
  if (tooLong === undefined && Buffer.byteLength(repositoryPath) <= MAX_PATH_BYTES) return;
  const shown = repositoryPath.length > 60 ? `${repositoryPath.slice(0, 57)}…` : repositoryPath;
  const limit = tooLong === undefined ? `a path of ${Buffer.byteLength(repositoryPath)} bytes; at most ${MAX_PATH_BYTES}` : `a name of ${Buffer.byteLength(tooLong)} bytes; at most ${MAX_NAME_BYTES} per name`;
  throw new ContextError(`the repository has an entry "${shown}" whose name is too long for a file system (${limit}): rename it`);
}

export function missingContextFolder(context: string): ContextError {
  return new ContextError(`"context" folder "${context}" is not in the repository: fix "context" in dockerInfo.json`);
}

export function tooManyEntries(maxEntries: number): ContextError {
  return new ContextError(`the repository has more than MAX_CONTEXT_ENTRIES=${maxEntries} entries: raise MAX_CONTEXT_ENTRIES, or keep generated files out of the repository`);
}

export function contextTooLarge(maxBytes: number, at: string): ContextError {
  return new ContextError(
    `the build context is larger than MAX_CONTEXT_MB=${megabytes(maxBytes)} MB (at "${at}"): set "context" in dockerInfo.json to a smaller folder, or raise MAX_CONTEXT_MB`,
  );
}

export function checkSymlinkStaysInside(name: string, target: string): void {
  if (target === '' || path.posix.isAbsolute(target)) return;
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(name), target));
  if (resolved === '..' || resolved.startsWith('../')) {
    throw new ContextError(`symlink "${name}" points outside the build context (to "${target}"): point it inside the "context" folder, or replace it with the file`);
  }
}

/**
 * git cannot track a file inside a symlinked folder, so an archive that has one is crafted: written out, it
 * would land wherever the link points.
 */
export function checkNotUnderSymlink(name: string, symlinks: Set<string>): void {
  if (symlinks.size === 0) return;
  for (let parent = path.posix.dirname(name); parent !== '.'; parent = path.posix.dirname(parent)) {
    if (symlinks.has(parent)) {
      throw new ContextError(`the repository tarball has an entry "${name}" inside symlink "${parent}"; refusing to build from it`);
    }
  }
}

/** tar-stream's entries; a failure of its own (a header that is not tar) is the tarball's, said as such. */
async function* readEntries<Entry>(extract: AsyncIterable<Entry>): AsyncGenerator<Entry> {
  try {
    yield* extract;
  } catch (error) {
    if (error instanceof BuildFailure || (error instanceof Error && isAbort(error))) throw error;
    throw new ContextError(`the repository tarball is not a valid tar archive (${describeError(error)})`);
  }
}

function megabytes(bytes: number): number {
  return Math.round(bytes / 1024 / 1024);
}

function hardLinkTarget(header: Header, context: string): string {
  const target = header.linkname ? contextPath(header.linkname, context) : undefined;
  if (!target) {
    throw new ContextError(`hard link "${header.name}" points outside the "context" folder; make it a regular file or a symlink`);
  }
  return target;
}

/** Listens alongside the copy: the entry's bytes go to the pack as before, and to `done` as text. */
function collectText(entry: Readable, done: (text: string) => void): void {
  const chunks: Buffer[] = [];
  entry.on('data', (chunk: Buffer) => chunks.push(chunk));
  entry.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
}

function copyEntry(entry: Readable, pack: Pack, header: Header): Promise<void> {
  return new Promise((resolve, reject) => {
    const sink = pack.entry(header, (error) => (error ? reject(error) : resolve()));
    // Both ends can fail while a file is half copied (a download that breaks off, a pack destroyed):
    // without a listener on each, that error would end the process instead of this build.
    entry.on('error', reject);
    sink.on('error', reject);
    entry.pipe(sink);
  });
}
