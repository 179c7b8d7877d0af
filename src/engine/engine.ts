import type { Readable } from 'node:stream';
import type { Checkout } from '../source/checkout.js';

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
  /** The platform to build for (`linux/arm64`); undefined: the engine's own. */
  platform?: string;
  /**
   * BuildKit's SLSA provenance attestation, kept beside the image, where the engine's store keeps attestations
   * (the containerd store); elsewhere the image is built without it.
   */
  provenance?: 'min' | 'max';
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
  contextSent?: { paths: string[]; bytes: number };
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
  /** What the engine is and which platforms it builds (natively, or emulated). */
  describe(): Promise<EngineDescription>;
}

export interface ImagePusher {
  /**
   * Pushes repository:tag. Returns the manifest digest the engine says it pushed, where it says one in a field of
   * its own (the classic store does, the containerd store does not): the pipeline takes the registry's.
   */
  push(repository: string, tag: string, onLog: (text: string) => void, signal: AbortSignal): Promise<string | undefined>;
}

/**
 * What an engine is and can do, as it says itself: for /healthz, the start-up log, /metrics, the worker's record
 * and each build's. The pipeline asks this; nothing guesses from a version string.
 */
export interface EngineDescription {
  /** The kind of engine, one folder of src/engine/ each: "docker". */
  kind: string;
  version: string;
  /** The API version it speaks; ci_service talks to it unversioned, so at this one. */
  apiVersion: string;
  /** Where built images live: "overlay2" (Docker's classic store, named by its storage driver) or "containerd". */
  imageStore: string;
  /** Whether it builds with BuildKit, and BuildKit's version where it names one. */
  buildKit: { version: string | undefined } | undefined;
  /** `os/arch[/variant]`: those its CPU runs, and those it can only emulate (QEMU's binfmt handlers). */
  platforms: { native: string[]; emulated: string[] };
}

/** One line naming an engine, as a build's record and page show it: `docker 26.1.5 (API 1.45, containerd store)`. */
export function engineLabel(engine: EngineDescription): string {
  return `${engine.kind} ${engine.version} (API ${engine.apiVersion}, ${engine.imageStore} store${engine.buildKit?.version ? `, BuildKit ${engine.buildKit.version}` : ''})`;
}
