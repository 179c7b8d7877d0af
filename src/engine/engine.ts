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
  /**
   * Pushes repository:tag. Returns the manifest digest the engine says it pushed, where it says one in a field of
   * its own (the classic store does, the containerd store does not): the pipeline takes the registry's.
   */
  push(repository: string, tag: string, onLog: (text: string) => void, signal: AbortSignal): Promise<string | undefined>;
}
