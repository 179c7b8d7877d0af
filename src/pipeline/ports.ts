import type { BuildRequest, Repository } from '../domain/build-request.js';
import type { FailureStage } from '../domain/errors.js';
import type { ImageBuilder, ImagePusher } from '../engine/engine.js';
import type { Checkout, CheckoutScope } from '../source/checkout.js';
import type { SourceFetcher } from '../source/source-fetcher.js';
import type { ContextOptions } from '../source/context.js';
import type { PublishedImage } from '../domain/published-image.js';
import type { BuildSpec, SecretGrant } from '../rules/build-spec.js';
import type { StagedImage, WrittenIndex } from '../domain/staged-image.js';
import type { PlatformImage } from '../domain/build-record.js';

/**
 * What the build pipeline (run-build.ts) needs from the outside world, as it needs it: the adapters
 * (GitHub, the Docker engine, the registry, the store) implement these; the composition root wires them.
 */

/** Where build contexts are kept on disk for BuildKit (checkout.ts). */
export interface CheckoutStore {
  /**
   * The context of the repository at `sha`, held for this build until `release`. Rejects with the context's
   * error (a broken download, a limit, a crafted entry), holding nothing then.
   */
  checkout(repository: Repository, sha: string, options: ContextOptions, scope: CheckoutScope, signal: AbortSignal): Promise<Checkout & { release(): void }>;
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
  /** What BUILD_SECRETS and PULL_REQUEST_SECRETS grant each repository's builds, with the values. */
  secretGrants: SecretGrant[];
  /** The newest image of this name (registry/name) a build pushed, whose layers the next build may reuse. */
  lastPushedImage(repositoryRef: string): Promise<string | undefined>;
  /** Who owns an image name: the repository that first pushed it, and those ALLOWED_IMAGE_WRITERS adds. */
  imageOwners: {
    owner(repositoryRef: string): Promise<string | undefined>;
    claim(repositoryRef: string, repository: string): Promise<string>;
    /** service_name → further repositories (owner/name) that may push it. */
    allowedWriters: Record<string, string[]>;
  };
  /** The commit and version a tag already in the registry was built from and as (undefined: not there). */
  publishedImage(serviceName: string, tag: string, signal: AbortSignal): Promise<PublishedImage | undefined>;
  /**
   * Multi-platform images: each platform's image waits under a tag of the staging repository (STAGING_REPOSITORY)
   * until one index naming them all is written under every tag of the image.
   */
  imageIndex: {
    /** Writes the index under each tag of `serviceName`; returns its digest. */
    write(staged: StagedImage[], serviceName: string, tags: string[], signal: AbortSignal): Promise<WrittenIndex>;
    /** The manifest digest the registry holds for a staging tag (undefined: none). */
    stagedDigest(tag: string, signal: AbortSignal): Promise<string | undefined>;
    /** Removes a staging tag once its index is written, where the registry deletes (best effort). */
    discardStaged(tag: string, signal: AbortSignal): Promise<void>;
  };
  /** PROVENANCE: the SLSA provenance each platform's image carries, where the engine's store keeps it. */
  provenance: 'min' | 'max' | undefined;
  /** The WORKER_NAME of this process: what a platform's image records as where it was built. */
  workerName: string;
  /** Other build hosts (workers sharing the queue): a platform this one would only emulate is built where it is native. */
  platformHosts?: PlatformHosts;
  /** The manifest digest the registry holds for a tag (undefined: it has no such tag). */
  manifestDigest(serviceName: string, tag: string, signal: AbortSignal): Promise<string | undefined>;
  now: () => Date;
}

/** One platform of a multi-platform build, run by another worker: what it needs to build and push that platform's image. */
export interface PlatformJob {
  platform: string;
  /** The tag in the staging repository to push the platform's image to. */
  stagingTag: string;
  request: BuildRequest;
  /** From the commit's dockerInfo.json; secrets by name only: the worker that builds takes their values from its own BUILD_SECRETS. */
  spec: Pick<BuildSpec, 'dockerfile' | 'context' | 'buildArgs' | 'target' | 'secrets'>;
  cacheFrom: string[];
  labels: Record<string, string>;
}

/** What a platform's build on another worker ended with. */
export interface PlatformJobResult {
  worker: string;
  seconds: number;
  /** Its log, for the build's own: ci_service's lines and the engine's output. */
  log: { own: boolean; text: string }[];
  /** Why it failed, in the words of the failure kind (domain/errors.ts); absent: pushed. */
  failure?: { stage: FailureStage; message: string; retryable: boolean };
}

/** The workers that build platforms natively, and a way to hand one of them a platform's build. */
export interface PlatformHosts {
  /** Other live workers whose engines build `platform` natively. */
  nativeHosts(platform: string): Promise<string[]>;
  /** Hands the platform to one of them; resolves once it ends (pushed to the staging tag, or failed). */
  build(job: PlatformJob, signal: AbortSignal): Promise<PlatformJobResult>;
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
  /** The manifest digest pushed, if anything was: a multi-platform build's is its index's. */
  digest: string | undefined;
  /** A multi-platform build's images, one per platform. */
  platforms?: PlatformImage[];
  /**
   * Settles once the engine no longer holds the pushed image. The build is done (and recorded) once pushed; its
   * slot waits for this, so a worker that is idle, or stopped, has left nothing on the engine.
   */
  engineCleanUp: Promise<void>;
}
