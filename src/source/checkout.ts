import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInterface } from 'node:readline';
import lockfile from 'proper-lockfile';
import type { Repository } from '../domain/build-request.js';
import { ContextError, describeError, SourceError } from '../domain/errors.js';
import {
  checkNameFits,
  checkNotUnderSymlink,
  checkSymlinkStaysInside,
  contextTooLarge,
  DOCKERFILE_KEPT_BYTES,
  missingContextFolder,
  readContext,
  tooManyEntries,
  type ContextEntryHeader,
  type ContextOptions,
  type ContextSummary,
} from './context.js';
import type { GitTreeEntry, SourceFetcher } from './source-fetcher.js';
import { gitBlobHash, gitBlobId } from './git-blob.js';
import { removeTree } from './remove-tree.js';

/** A file, folder or symlink of a checkout, with the metadata BuildKit's file sync compares. */
export interface CheckoutEntry {
  /** Inside the context, '/'-separated, never empty. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  /** 0o644 or 0o755 for files (git keeps only the executable bit), 0o755 for folders, 0o777 for symlinks. */
  mode: number;
  size: number;
  mtimeSeconds: number;
  /** The symlink's target; '' otherwise. */
  linkname: string;
  /** git's blob id of a file's (or symlink's) content, '' for folders: what the file sync checks each file it sends against. */
  blob: string;
}

/** How a checkout's files got there. */
export type Fetched =
  | { kind: 'unchanged' }
  | { kind: 'changes'; files: number; bytes: number }
  | { kind: 'tarball' };

/** A build context on disk, for BuildKit to ask for the files it needs. Held until `release`. */
export interface Checkout {
  /** The folder holding the context's regular files (folders and symlinks are described in `entries` only). */
  root: string;
  entries: CheckoutEntry[];
  summary: ContextSummary;
  dockerfileText: string | undefined;
  /**
   * Names what BuildKit keeps of this repository's context from one build to the next (the session's shared
   * key): the same for every checkout of one repository and context folder, as long as its manifest lives.
   */
  sharedKey: string;
  fetched: Fetched;
}

/**
 * What the kept folder of one repository and context holds. Invariant, for BuildKit's sake: within one
 * generation a path's mtime changes whenever its content does, and never comes back to a value it had, because
 * each new content gets an mtime above `clock`, the highest ever given. BuildKit's file sync takes a file whose
 * size and mtime are what it holds as unchanged, so this is what makes sending only what changed safe. The folder
 * is trusted only while its manifest exists: the manifest is deleted before the folder changes, written after.
 */
interface Manifest {
  generation: string;
  clock: number;
  sha: string;
  entries: CheckoutEntry[];
}

/** More changed files than this, and one tarball is cheaper than a request per file (and GitHub's rate limit). */
const MAX_FILES_FETCHED_ONE_BY_ONE = 20;
/** Folders kept (one per repository and context), the least recently built removed first. */
const MAX_KEPT_CHECKOUTS = 16;
const SYMLINK_MAX_BYTES = 4096;
/** Changed files fetched at once: each is a request to GitHub, and most are small. */
const PARALLEL_FETCHES = 4;
/**
 * Downloads land here, under random names, never beside the repository's own files: a name like `x.ci-part` is
 * the repository's to use, and a pull request could otherwise have its own bytes renamed over a reviewed file.
 */
const DOWNLOADS = '.downloads';

/**
 * Whose code a checkout holds. Pull request heads (a fork's above all) are built in folders of their own, so
 * nothing a pull request wrote is ever in a folder a merge or a release builds from.
 */
export type CheckoutScope = 'reviewed' | 'pull_request';

/**
 * The build contexts of one build host, one kept folder per repository and `context` folder. A build updates
 * its folder to the commit: with the commit's file list (git's tree) and only the files whose git blob id changed
 * when few did, from the tarball otherwise. Unchanged files keep their mtime, so BuildKit asks only for what
 * changed. A folder is used by one build at a time (builds of one repository run one at a time anyway).
 */
export class Checkouts {
  private readonly holders = new Map<string, Promise<void>>();

  private constructor(
    private readonly folder: string,
    private readonly source: Pick<SourceFetcher, 'tarball' | 'tree' | 'blob'>,
    /** Lets another process have the folder. */
    readonly close: () => Promise<void>,
  ) {}

  /**
   * Creates the folder, readable by this user only (checkouts of private repositories are kept here), and removes
   * what a stopped process left half done (folders without a manifest, downloads).
   */
  static async open(folder: string, source: Pick<SourceFetcher, 'tarball' | 'tree' | 'blob'>, onLockLost: (reason: string) => void = () => {}): Promise<Checkouts> {
    await mkdir(folder, { recursive: true, mode: 0o700 });
    await chmod(folder, 0o700);
    const unlock = await lockAgainstOtherProcesses(folder, onLockLost);
    const names = new Set(await readdir(folder));
    for (const name of names) {
      if (name.endsWith('.json') || names.has(`${name}.json`)) continue;
      await removeTree(path.join(folder, name));
    }
    await mkdir(path.join(folder, DOWNLOADS), { mode: 0o700 });
    return new Checkouts(folder, source, unlock);
  }

  /** The context of `repository` at `sha`, on disk. Rejects with the context's error, holding nothing then. */
  async checkout(repository: Repository, sha: string, options: ContextOptions, scope: CheckoutScope, signal: AbortSignal): Promise<Checkout & { release(): void }> {
    const key = createHash('sha256').update(`${scope}\0${repository.fullName.toLowerCase()}\0${options.context}`).digest('hex').slice(0, 32);
    const release = await this.acquire(key);
    try {
      const root = path.join(this.folder, key);
      const manifestFile = `${root}.json`;
      const kept = await readManifest(manifestFile);
      const start = { generation: kept?.generation ?? randomUUID(), clock: kept?.clock ?? 0 };
      let entries: CheckoutEntry[];
      let fetched: Fetched;
      let clock = start.clock;
      if (kept && kept.sha === sha) {
        entries = kept.entries;
        fetched = { kind: 'unchanged' };
      } else {
        const plan = kept ? await this.planChanges(kept, repository, sha, options, signal) : undefined;
        const mtimes = new MtimeChooser(kept);
        // From here the folder is in flux: without its manifest, a restart throws it away.
        await rm(manifestFile, { force: true });
        if (plan) {
          entries = await this.applyChanges(root, plan, mtimes, repository, signal);
          fetched = { kind: 'changes', files: plan.fetch.length, bytes: plan.fetch.reduce((sum, entry) => sum + (entry.size ?? 0), 0) };
        } else {
          entries = await this.fromTarball(root, repository, sha, options, mtimes, signal);
          fetched = { kind: 'tarball' };
        }
        clock = mtimes.clock;
      }
      await writeManifest(manifestFile, { ...start, clock, sha, entries });
      await this.evictBeyondLimit(key);
      const summary = summarize(entries, options);
      return {
        root,
        entries,
        summary,
        dockerfileText: await readDockerfile(root, entries, options.dockerfile),
        sharedKey: `${key}-${start.generation}`,
        fetched,
        release,
      };
    } catch (error) {
      release();
      throw error;
    }
  }

  /** What to fetch file by file, or undefined when the tarball is the better way (or the only one). */
  private async planChanges(kept: Manifest, repository: Repository, sha: string, options: ContextOptions, signal: AbortSignal): Promise<ChangePlan | undefined> {
    const tree = await this.source.tree(repository, sha, signal);
    if (tree.truncated) return undefined;
    if (tree.entries.length > options.maxEntries) throw tooManyEntries(options.maxEntries);
    if (options.context !== '' && !tree.entries.some((entry) => entry.path === options.context && entry.type === 'tree')) throw missingContextFolder(options.context);
    const before = new Map(kept.entries.map((entry) => [entry.path, entry]));
    const wanted: { name: string; entry: GitTreeEntry }[] = [];
    let bytes = 0;
    for (const entry of tree.entries) {
      const name = insideContext(entry.path, options.context);
      if (name === undefined || name === '' || entry.type === 'commit') continue;
      bytes += entry.size ?? 0;
      if (bytes > options.maxBytes) throw contextTooLarge(options.maxBytes, name);
      wanted.push({ name, entry });
    }
    // A blob to fetch: new content, or the same content that changed kind (a file that became a symlink, or back).
    const changed = (name: string, entry: GitTreeEntry) => before.get(name)?.blob !== entry.sha || before.get(name)?.type !== kindOf(entry);
    const fetch = wanted.filter(({ name, entry }) => entry.type === 'blob' && changed(name, entry)).map(({ name, entry }) => ({ name, ...entry }));
    if (fetch.length > MAX_FILES_FETCHED_ONE_BY_ONE) return undefined;
    return { wanted, fetch, before };
  }

  private async applyChanges(root: string, plan: ChangePlan, mtimes: MtimeChooser, repository: Repository, signal: AbortSignal): Promise<CheckoutEntry[]> {
    // What is no longer there, or no longer of the same kind (a file that became a folder, or back), goes first.
    const wantedKinds = new Map(plan.wanted.map(({ name, entry }) => [name, kindOf(entry)]));
    for (const previous of plan.before.values()) {
      if (previous.type !== 'symlink' && wantedKinds.get(previous.path) !== previous.type) await removeTree(path.join(root, previous.path));
    }
    const linknames = new Map<string, string>();
    await inParallel(plan.fetch, PARALLEL_FETCHES, async (entry) => {
      if (entry.mode === '120000') {
        linknames.set(entry.name, await readSymlinkBlob(this.source, repository, entry, signal));
        return;
      }
      const target = path.join(root, entry.name);
      await mkdir(path.dirname(target), { recursive: true });
      const download = path.join(this.folder, DOWNLOADS, randomUUID());
      await writeVerifiedBlob(await this.source.blob(repository, entry.sha, signal), entry.sha, entry.size ?? 0, download, target);
    });
    const now = Math.floor(Date.now() / 1000);
    const symlinks = new Set<string>();
    const entries: CheckoutEntry[] = [];
    for (const { name, entry } of plan.wanted) {
      checkNotUnderSymlink(name, symlinks);
      if (entry.type === 'tree') {
        entries.push({ path: name, type: 'directory', mode: 0o755, size: 0, mtimeSeconds: mtimes.forFolder(name, now), linkname: '', blob: '' });
      } else if (entry.mode === '120000') {
        const linkname = linknames.get(name) ?? plan.before.get(name)!.linkname;
        checkSymlinkStaysInside(name, linkname);
        symlinks.add(name);
        entries.push({ path: name, type: 'symlink', mode: 0o777, size: Buffer.byteLength(linkname), mtimeSeconds: mtimes.forContent(name, entry.sha, now), linkname, blob: entry.sha });
      } else {
        const mode = entry.mode === '100755' ? 0o755 : 0o644;
        entries.push({ path: name, type: 'file', mode, size: entry.size ?? 0, mtimeSeconds: mtimes.forContent(name, entry.sha, now), linkname: '', blob: entry.sha });
      }
    }
    return entries;
  }

  /** The whole context from the tarball, into a new folder that then takes the old one's place. */
  private async fromTarball(root: string, repository: Repository, sha: string, options: ContextOptions, mtimes: MtimeChooser, signal: AbortSignal): Promise<CheckoutEntry[]> {
    const staging = `${root}.new-${randomUUID()}`;
    const writer = new TarballWriter(staging, mtimes);
    try {
      const tarball = await this.source.tarball(repository, sha, signal);
      await readContext(tarball, options, (header, content) => writer.add(header, content)).finished;
      await removeTree(root);
      await rename(staging, root);
      return writer.entries;
    } catch (error) {
      await removeTree(staging);
      throw error;
    }
  }

  /** Waits for the build holding this folder, if any; the returned function lets the next one have it. */
  private async acquire(key: string): Promise<() => void> {
    const previous = this.holders.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const held = previous.then(() => mine);
    this.holders.set(key, held);
    await previous;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      if (this.holders.get(key) === held) this.holders.delete(key);
    };
  }

  /** Keeps the most recently built folders; one in use is never removed. */
  private async evictBeyondLimit(current: string): Promise<void> {
    const manifests = (await readdir(this.folder)).filter((name) => name.endsWith('.json'));
    if (manifests.length <= MAX_KEPT_CHECKOUTS) return;
    // A manifest may go meanwhile (another build updating its folder): that one is not a candidate.
    const used = await Promise.all(
      manifests.map(async (name) => ({ key: name.slice(0, -'.json'.length), at: (await stat(path.join(this.folder, name)).catch(() => undefined))?.mtimeMs ?? Infinity })),
    );
    used.sort((a, b) => a.at - b.at);
    for (const { key } of used.slice(0, used.length - MAX_KEPT_CHECKOUTS)) {
      if (key === current || this.holders.has(key)) continue;
      await rm(path.join(this.folder, `${key}.json`), { force: true });
      await removeTree(path.join(this.folder, key));
    }
  }
}

/**
 * One process per folder: the lock on a folder (which `acquire` holds per repository) is in this process's memory,
 * so a second process on the same DATA_DIR would clear or rewrite checkouts the first is building from. The lock
 * is a folder beside it whose mtime the holder refreshes; one left by a process that died goes stale in 10 s, and
 * a start waits that long for it.
 */
async function lockAgainstOtherProcesses(folder: string, onLockLost: (reason: string) => void): Promise<() => Promise<void>> {
  try {
    return await lockfile.lock(folder, {
      stale: LOCK_STALE_MS,
      update: LOCK_STALE_MS / 2,
      retries: { retries: 6, minTimeout: LOCK_STALE_MS / 4, factor: 1 },
      realpath: false,
      // The library's default throws from a timer, which would end the daemon and its builds.
      onCompromised: (error) => onLockLost(error.message),
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
    throw new Error(`${folder} is in use by another ci_service process on this DATA_DIR: give each worker a DATA_DIR of its own (docker-compose gives each scaled worker its own volume)`);
  }
}

const LOCK_STALE_MS = 10_000;

interface ChangePlan {
  /** Every entry of the context at the new commit. */
  wanted: { name: string; entry: GitTreeEntry }[];
  /** The blobs that changed (files and symlinks). */
  fetch: (GitTreeEntry & { name: string })[];
  before: Map<string, CheckoutEntry>;
}

/** Chooses mtimes that keep the manifest's invariant. */
class MtimeChooser {
  /** The highest mtime given, this build's included. */
  clock: number;
  private readonly keptClock: number;
  private readonly before: Map<string, CheckoutEntry>;

  constructor(kept: Manifest | undefined) {
    this.keptClock = kept?.clock ?? 0;
    this.clock = this.keptClock;
    this.before = new Map((kept?.entries ?? []).map((entry) => [entry.path, entry]));
  }

  /** The previous mtime when the content is the same; otherwise one above every mtime given before. */
  forContent(name: string, blob: string, given: number): number {
    const before = this.before.get(name);
    const mtime = before !== undefined && before.blob === blob ? before.mtimeSeconds : Math.max(given, this.keptClock + 1);
    this.clock = Math.max(this.clock, mtime);
    return mtime;
  }

  /** BuildKit does not compare folders' mtimes; a folder keeps its own so that images stay alike. */
  forFolder(name: string, given: number): number {
    const before = this.before.get(name);
    return before?.type === 'directory' ? before.mtimeSeconds : given;
  }
}

/** Writes a tarball's entries out as they come, with their git blob ids. */
class TarballWriter {
  readonly entries: CheckoutEntry[] = [];
  private readonly blobs = new Map<string, string>();
  private readonly createdFolders = new Set<string>();

  constructor(
    private readonly root: string,
    private readonly mtimes: MtimeChooser,
  ) {
    mkdirSync(root, { recursive: true });
  }

  /**
   * Attaches to `content` in the same tick: another listener (the Dockerfile's text) may have set it flowing,
   * and bytes emitted before the pipe would be lost. Hence the synchronous mkdir.
   */
  async add(header: ContextEntryHeader, content: Readable): Promise<void> {
    const given = Math.floor((header.mtime?.getTime() ?? 0) / 1000);
    if (header.type === 'directory') {
      content.resume();
      this.folder(header.name);
      this.entries.push({ path: header.name, type: 'directory', mode: 0o755, size: 0, mtimeSeconds: this.mtimes.forFolder(header.name, given), linkname: '', blob: '' });
      return;
    }
    if (header.type === 'symlink') {
      content.resume();
      const linkname = header.linkname ?? '';
      const blob = gitBlobId(Buffer.from(linkname));
      this.entries.push({ path: header.name, type: 'symlink', mode: 0o777, size: Buffer.byteLength(linkname), mtimeSeconds: this.mtimes.forContent(header.name, blob, given), linkname, blob });
      return;
    }
    this.folder(path.posix.dirname(header.name));
    const target = path.join(this.root, header.name);
    let blob: string;
    if (header.type === 'link') {
      // A hard link is written as a copy: BuildKit gets a regular file either way.
      content.resume();
      const source = header.linkname ?? '';
      await copyFile(path.join(this.root, source), target);
      blob = this.blobs.get(source) ?? '';
    } else {
      blob = await writeWithBlobId(content, header.size ?? 0, target);
    }
    this.blobs.set(header.name, blob);
    const mode = (header.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
    this.entries.push({ path: header.name, type: 'file', mode, size: header.size ?? 0, mtimeSeconds: this.mtimes.forContent(header.name, blob, given), linkname: '', blob });
  }

  private folder(name: string): void {
    if (this.createdFolders.has(name)) return;
    mkdirSync(path.join(this.root, name), { recursive: true });
    this.createdFolders.add(name);
  }
}


/** Files up to this size are gathered and written at once: a stream per file was most of a small file's memory. */
const SMALL_FILE_BYTES = 64 * 1024;

/** The entry's content to `target`, with its git blob id. tar-stream's entries are streamx streams: piped. */
function writeWithBlobId(content: Readable, size: number, target: string): Promise<string> {
  if (size <= SMALL_FILE_BYTES) return writeSmallWithBlobId(content, target);
  return new Promise((resolve, reject) => {
    const hash = gitBlobHash(size);
    const file = createWriteStream(target);
    // Either end can fail while the file is half written (a download that breaks off, a full disk).
    content.on('error', reject);
    file.on('error', reject);
    file.on('finish', () => resolve(hash.digest('hex')));
    content.on('data', (chunk: Buffer) => hash.update(chunk));
    content.pipe(file);
  });
}

/** As writeWithBlobId, for a small file: its chunks gathered (listeners attached in this tick), then one write. */
function writeSmallWithBlobId(content: Readable, target: string): Promise<string> {
  const chunks: Buffer[] = [];
  const gathered = new Promise<Buffer>((resolve, reject) => {
    content.on('error', reject);
    content.on('data', (chunk: Buffer) => chunks.push(chunk));
    content.on('end', () => resolve(Buffer.concat(chunks)));
  });
  return gathered.then(async (data) => {
    await writeFile(target, data);
    return gitBlobId(data);
  });
}

/**
 * A blob from GitHub to `target`, through `partial` (a new file: 'wx'), checked against its id: a download that
 * broke off never passes for the file.
 */
async function writeVerifiedBlob(content: Readable, blobId: string, size: number, partial: string, target: string): Promise<void> {
  const hash = gitBlobHash(size);
  const file = createWriteStream(partial, { flags: 'wx', mode: 0o600 });
  try {
    for await (const chunk of content) {
      hash.update(chunk as Buffer);
      if (!file.write(chunk)) await new Promise<void>((resolve) => file.once('drain', () => resolve()));
    }
    await new Promise<void>((resolve, reject) => file.end((error?: Error | null) => (error ? reject(error) : resolve())));
  } catch (error) {
    file.destroy();
    await rm(partial, { force: true });
    if (error instanceof Error && (error.name === 'AbortError' || error.name === 'CanceledError')) throw error;
    throw new SourceError(`the download of a file (${blobId.slice(0, 7)}) broke off (${describeError(error)})`, true);
  }
  if (hash.digest('hex') !== blobId) {
    await rm(partial, { force: true });
    throw new SourceError(`GitHub sent a file that is not blob ${blobId.slice(0, 7)} (a download cut short?): it will be fetched again`, true);
  }
  await rename(partial, target);
}

async function readSymlinkBlob(source: Pick<SourceFetcher, 'blob'>, repository: Repository, entry: GitTreeEntry & { name: string }, signal: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of await source.blob(repository, entry.sha, signal)) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > SYMLINK_MAX_BYTES) throw new ContextError(`symlink "${entry.name}" has a target of more than ${SYMLINK_MAX_BYTES} bytes; refusing to build from it`);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs `work` on every item, at most `limit` at a time; rejects with the first failure once all have settled. */
async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  const outcomes = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const failed = outcomes.find((outcome) => outcome.status === 'rejected');
  if (failed) throw failed.reason;
}

function kindOf(entry: GitTreeEntry): CheckoutEntry['type'] {
  return entry.type === 'tree' ? 'directory' : entry.mode === '120000' ? 'symlink' : 'file';
}

function insideContext(repositoryPath: string, context: string): string | undefined {
  if (repositoryPath.split('/').includes('..') || repositoryPath.startsWith('/')) {
    throw new ContextError(`the repository has an entry "${repositoryPath}" that escapes the repository; refusing to build from it`);
  }
  checkNameFits(repositoryPath);
  if (context === '') return repositoryPath;
  if (repositoryPath === context) return '';
  return repositoryPath.startsWith(`${context}/`) ? repositoryPath.slice(context.length + 1) : undefined;
}

function summarize(entries: CheckoutEntry[], options: ContextOptions): ContextSummary {
  return {
    entries: entries.length,
    bytes: entries.reduce((sum, entry) => sum + (entry.type === 'directory' ? 0 : entry.size), 0),
    hasDockerfile: entries.some((entry) => entry.path === options.dockerfile && entry.type !== 'directory'),
  };
}

async function readDockerfile(root: string, entries: CheckoutEntry[], dockerfile: string): Promise<string | undefined> {
  const entry = entries.find((candidate) => candidate.path === dockerfile && candidate.type === 'file');
  if (!entry || entry.size > DOCKERFILE_KEPT_BYTES) return undefined;
  return readFile(path.join(root, dockerfile), 'utf8');
}

/**
 * The manifest as JSON lines: its header ({generation, clock, sha}), then an entry per line. Written and read a
 * line at a time, so that a context of 200,000 entries is never one string of tens of megabytes.
 */
async function writeManifest(file: string, manifest: Manifest): Promise<void> {
  const { entries, ...header } = manifest;
  const draft = `${file}.new`;
  const lines = (function* () {
    yield `${JSON.stringify(header)}\n`;
    for (const entry of entries) yield `${JSON.stringify(entry)}\n`;
  })();
  await pipeline(Readable.from(lines), createWriteStream(draft, { mode: 0o600 }));
  await rename(draft, file);
}

async function readManifest(file: string): Promise<Manifest | undefined> {
  try {
    await stat(file.slice(0, -'.json'.length));
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
    let header: Partial<Manifest> | undefined;
    const entries: CheckoutEntry[] = [];
    for await (const line of lines) {
      if (header === undefined) header = JSON.parse(line) as Partial<Manifest>;
      else entries.push(JSON.parse(line) as CheckoutEntry);
    }
    if (typeof header?.generation !== 'string' || typeof header.clock !== 'number' || typeof header.sha !== 'string') return undefined;
    return { generation: header.generation, clock: header.clock, sha: header.sha, entries };
  } catch {
    // None yet, unreadable (or of an older format), or its folder gone: a new generation, which BuildKit knows nothing of.
    return undefined;
  }
}
