import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { readContext, type ContextEntryHeader, type ContextOptions, type ContextSummary } from './context.js';

/** A file, folder or symlink of a checkout, with the metadata BuildKit's file sync compares. */
export interface CheckoutEntry {
  /** Inside the context, '/'-separated, never empty. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits only. */
  mode: number;
  size: number;
  mtimeSeconds: number;
  /** The symlink's target; '' otherwise. */
  linkname: string;
}

/** A build context written out under its own folder, for BuildKit to ask for the files it needs. */
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
}

/**
 * What the last checkout of one repository and context held: each path's content hash and the mtime it was
 * given. Invariant, for BuildKit's sake: within one generation a path's mtime changes whenever its content
 * does, and never comes back to a value it had, because each new content gets an mtime above `clock`, the
 * highest ever given. BuildKit's file sync takes a file whose size and mtime are what it holds as unchanged,
 * so this is what makes sending only what changed safe.
 */
interface Manifest {
  generation: string;
  clock: number;
  files: Record<string, [hash: string, mtimeSeconds: number]>;
}

/**
 * The checkouts of one build host, under one folder: each build writes its context into a folder of its own
 * (removed after the build), and the manifest of each repository's last checkout stays, so unchanged files keep
 * their mtime and BuildKit asks only for what changed.
 */
export class Checkouts {
  /** Extractions of one repository and context one at a time: each reads the manifest the last one wrote. */
  private readonly running = new Map<string, Promise<unknown>>();

  private constructor(private readonly folder: string) {}

  /** Creates the folder, and removes the build folders a stopped process left behind. */
  static async open(folder: string): Promise<Checkouts> {
    await mkdir(folder, { recursive: true });
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      if (entry.isDirectory()) await rm(path.join(folder, entry.name), { recursive: true, force: true });
    }
    return new Checkouts(folder);
  }

  /**
   * Writes the tarball's context into a new folder. Rejects with the context's error (the download broke off,
   * a limit, a crafted entry), and leaves no folder behind then.
   */
  extract(repository: string, tarball: Readable, options: ContextOptions): Promise<Checkout> {
    const key = createHash('sha256').update(`${repository.toLowerCase()}\0${options.context}`).digest('hex').slice(0, 32);
    const previous = this.running.get(key) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(() => this.extractInOrder(key, tarball, options));
    this.running.set(key, next);
    void next.catch(() => {}).finally(() => {
      if (this.running.get(key) === next) this.running.delete(key);
    });
    return next;
  }

  /** Removes the checkout's folder; the manifest stays for the next build. */
  async release(checkout: Checkout): Promise<void> {
    await rm(checkout.root, { recursive: true, force: true });
  }

  private async extractInOrder(key: string, tarball: Readable, options: ContextOptions): Promise<Checkout> {
    const manifestFile = path.join(this.folder, `${key}.json`);
    const manifest = (await readManifest(manifestFile)) ?? { generation: randomUUID(), clock: 0, files: {} };
    const root = path.join(this.folder, `build-${randomUUID()}`);
    const writer = new CheckoutWriter(root, manifest);
    const reading = readContext(tarball, options, (header, content) => writer.add(header, content));
    try {
      const summary = await reading.finished;
      const next = writer.manifest();
      await writeFile(`${manifestFile}.new`, JSON.stringify(next));
      await rename(`${manifestFile}.new`, manifestFile);
      return { root, entries: writer.entries, summary, dockerfileText: reading.dockerfileText(), sharedKey: `${key}-${manifest.generation}` };
    } catch (error) {
      await rm(root, { recursive: true, force: true });
      throw error;
    }
  }
}

async function readManifest(file: string): Promise<Manifest | undefined> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<Manifest>;
    if (typeof parsed.generation !== 'string' || typeof parsed.clock !== 'number' || typeof parsed.files !== 'object' || parsed.files === null) return undefined;
    return parsed as Manifest;
  } catch {
    // None yet, or unreadable: a new generation, which BuildKit knows nothing of, so it asks for every file.
    return undefined;
  }
}

/** Writes entries out as they come, hashing file contents to choose their mtimes. */
class CheckoutWriter {
  readonly entries: CheckoutEntry[] = [];
  private readonly files: Manifest['files'] = {};
  private clock: number;
  private readonly createdFolders = new Set<string>();

  constructor(
    private readonly root: string,
    private readonly previous: Manifest,
  ) {
    this.clock = previous.clock;
  }

  /**
   * Attaches to `content` in the same tick: another listener (the Dockerfile's text) may have set it flowing,
   * and bytes emitted before the pipe would be lost. Hence the synchronous mkdir.
   */
  async add(header: ContextEntryHeader, content: Readable): Promise<void> {
    const mode = (header.mode ?? 0o644) & 0o777;
    const givenMtime = Math.floor((header.mtime?.getTime() ?? 0) / 1000);
    if (header.type === 'directory') {
      content.resume();
      this.folder(header.name);
      this.entries.push({ path: header.name, type: 'directory', mode, size: 0, mtimeSeconds: givenMtime, linkname: '' });
      return;
    }
    if (header.type === 'symlink') {
      content.resume();
      const linkname = header.linkname ?? '';
      const mtimeSeconds = this.mtimeFor(header.name, `symlink:${linkname}`, givenMtime);
      this.entries.push({ path: header.name, type: 'symlink', mode: 0o777, size: Buffer.byteLength(linkname), mtimeSeconds, linkname });
      return;
    }
    this.folder(path.posix.dirname(header.name));
    const target = path.join(this.root, header.name);
    let hash: string;
    if (header.type === 'link') {
      // A hard link is written as a copy: BuildKit gets a regular file either way.
      content.resume();
      const source = header.linkname ?? '';
      await copyFile(path.join(this.root, source), target);
      hash = this.files[source]?.[0] ?? '';
    } else {
      hash = await writeHashed(content, target);
    }
    const mtimeSeconds = this.mtimeFor(header.name, hash, givenMtime);
    this.entries.push({ path: header.name, type: 'file', mode, size: header.size ?? 0, mtimeSeconds, linkname: '' });
  }

  manifest(): Manifest {
    return { generation: this.previous.generation, clock: this.clock, files: this.files };
  }

  /** The previous mtime when the content is the same; otherwise one above every mtime given so far. */
  private mtimeFor(name: string, hash: string, givenMtime: number): number {
    const before = this.previous.files[name];
    const mtime = before !== undefined && before[0] === hash ? before[1] : Math.max(givenMtime, this.previous.clock + 1);
    this.clock = Math.max(this.clock, mtime);
    this.files[name] = [hash, mtime];
    return mtime;
  }

  private folder(name: string): void {
    if (this.createdFolders.has(name)) return;
    mkdirSync(path.join(this.root, name), { recursive: true });
    this.createdFolders.add(name);
  }
}

/** The entry's content to `target`, hashed on the way. tar-stream's entries are streamx streams: piped, not pipeline()d. */
function writeHashed(content: Readable, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const file = createWriteStream(target);
    // Either end can fail while the file is half written (a download that breaks off, a full disk).
    content.on('error', reject);
    file.on('error', reject);
    file.on('finish', () => resolve(hash.digest('base64')));
    content.on('data', (chunk: Buffer) => hash.update(chunk));
    content.pipe(file);
  });
}
