/**
 * One platform's image of a multi-platform build, pushed by the engine under a tag of ci_service's staging
 * repository, where it waits until the image index that names every platform is written under the image's tags.
 */
export interface StagedImage {
  /** `linux/arm64` */
  platform: string;
  /** Its tag in the staging repository. */
  tag: string;
}

/** An image index written under the image's tags: its digest, and each platform's manifest in it. */
export interface WrittenIndex {
  digest: string;
  /** platform → the digest of its image's manifest. */
  manifests: Record<string, string>;
}
