import type { Readable } from 'node:stream';
import type { Repository } from '../domain/build-request.js';
import type { Checkout } from './checkout.js';
import type { ContextOptions } from './context.js';

/**
 * What the build pipeline (run-build.ts) needs from the outside world, as it needs it: the adapters
 * (GitHub, the Docker engine, the registry, the store) implement these; the composition root wires them.
 */

/** Reads a repository at a commit. */
export interface SourceFetcher {
  /**
   * The file's text, or undefined when the commit has no such file. Reads at most `maxBytes` + 1 bytes,
   * so that a caller can tell a file that is too large without anyone holding all of it.
   */
  readFile(repository: Repository, sha: string, filePath: string, maxBytes: number, signal: AbortSignal): Promise<string | undefined>;
  /** The gzipped tarball of the whole repository, as GitHub serves it. */
  tarball(repository: Repository, sha: string, signal: AbortSignal): Promise<Readable>;
  /** Every path of the commit with its git mode and blob id (git's tree, recursive). */
  tree(repository: Repository, sha: string, signal: AbortSignal): Promise<GitTree>;
  /** A blob's bytes, by its git id. */
  blob(repository: Repository, blobId: string, signal: AbortSignal): Promise<Readable>;
}

export interface GitTree {
  entries: GitTreeEntry[];
  /** GitHub lists at most 100,000 entries (7 MB): a truncated tree is not the whole commit. */
  truncated: boolean;
}

export interface GitTreeEntry {
  path: string;
  /** '100644', '100755' (executable), '120000' (symlink), '040000' (folder), '160000' (submodule). */
  mode: string;
  type: 'blob' | 'tree' | 'commit';
  /** The git object id: for a blob, the SHA-1 of "blob <size>\0" and its content. */
  sha: string;
  size?: number;
}

export interface ImageBuildOptions {
  /** Full references: registry/name:tag. */
  tags: string[];
  dockerfile: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  /** The stage to build; undefined for the last one. */
  target: string | undefined;
  /** Secret id → value, for `RUN --mount=type=secret`: never in the image, the log or the store. */
  secrets: Record<string, string>;
  /** Images whose layer cache the build may reuse (BuildKit's inline cache); ones not pushed yet are skipped. */
  cacheFrom: string[];
}

/** The build context, as the builder takes it. */
export type BuildContextInput =
  /** The legacy builder's /build body: an uncompressed tar, streamed as the tarball downloads. */
  | { kind: 'tar'; stream: Readable }
  /** Written out first, for BuildKit to ask for the files it has not got (the session's file sync). */
  | { kind: 'checkout'; checkout: Checkout };

export interface BuiltImage {
  id: string;
  /** For a checkout: the files BuildKit asked for, the others it kept from the repository's last build. */
  contextSent?: { files: number; bytes: number };
}

export interface ImageBuilder {
  /** Which form of context `build` takes. */
  readonly contextKind: BuildContextInput['kind'];
  /** Builds and tags the image. */
  build(context: BuildContextInput, options: ImageBuildOptions, onLog: (text: string) => void, signal: AbortSignal): Promise<BuiltImage>;
  /** Removes this image from the engine, with the tags still on it (an absent one is fine). */
  removeImage(id: string): Promise<void>;
  /** Keeps the engine's build cache within its budget, in the background: it returns at once. */
  pruneBuildCache(): void;
}

export interface ImagePusher {
  /** Pushes repository:tag and returns the manifest digest the registry stored. */
  push(repository: string, tag: string, onLog: (text: string) => void, signal: AbortSignal): Promise<string>;
}

/** Where build contexts are kept on disk for BuildKit (checkout.ts). */
export interface CheckoutStore {
  /**
   * The context of the repository at `sha`, held for this build until `release`. Rejects with the context's
   * error (a broken download, a limit, a crafted entry), holding nothing then.
   */
  checkout(repository: Repository, sha: string, options: ContextOptions, signal: AbortSignal): Promise<Checkout & { release(): void }>;
}

export interface BuildPorts {
  source: SourceFetcher;
  checkouts: CheckoutStore;
  builder: ImageBuilder;
  pusher: ImagePusher;
  /** host[:port][/namespace] as the Docker engine reaches the registry. */
  registry: string;
  /** How large a repository and its build context may be: MAX_CONTEXT_MB, MAX_REPOSITORY_MB, MAX_CONTEXT_ENTRIES. */
  contextLimits: Pick<ContextOptions, 'maxBytes' | 'maxArchiveBytes' | 'maxEntries'>;
  /** The variables of BUILD_SECRET_VARIABLES and their values (undefined when not set). */
  secretVariables: Record<string, string | undefined>;
  /** The newest image of this name (registry/name) a build pushed, whose layers the next build may reuse. */
  lastPushedImage(repositoryRef: string): Promise<string | undefined>;
  /** Who owns an image name: the repository that first pushed it, and those ALLOWED_IMAGE_WRITERS adds. */
  imageOwners: {
    owner(repositoryRef: string): Promise<string | undefined>;
    claim(repositoryRef: string, repository: string): Promise<string>;
    /** service_name → further repositories (owner/name) that may push it. */
    allowedWriters: Record<string, string[]>;
  };
  /** The commit a tag already in the registry was built from (undefined: not there; null: it does not say). */
  publishedRevision(serviceName: string, tag: string, signal: AbortSignal): Promise<string | null | undefined>;
  now: () => Date;
}

/** How a running build tells the outside what it is doing. */
export interface BuildReporter {
  /** A line of ci_service's own (what it does, retries, the failure). */
  log(text: string): void;
  /** The engine's output: the build's steps and the push. */
  output(text: string): void;
  /** The image and tags are known once dockerInfo.json is read. */
  imageResolved(image: string, tags: string[]): void;
}

/** Runs one step again while it fails transiently; the step's name goes into the log. */
export type Retry = <T>(step: string, action: () => Promise<T>) => Promise<T>;

/** What one build runs with. */
export interface BuildSession {
  reporter: BuildReporter;
  signal: AbortSignal;
  retry: Retry;
  /** Runs `action` while no other build of this image name builds or pushes. */
  exclusive<T>(imageName: string, action: () => Promise<T>): Promise<T>;
}

export interface BuildResult {
  image: string;
  /** The references pushed: none for a pull request's build that pushes nothing. */
  tags: string[];
  /** The manifest digest pushed, if anything was. */
  digest: string | undefined;
  /**
   * Settles once the engine no longer holds the pushed image. The build is done (and recorded) once pushed; its
   * slot waits for this, so a worker that is idle, or stopped, has left nothing on the engine.
   */
  engineCleanUp: Promise<void>;
}
