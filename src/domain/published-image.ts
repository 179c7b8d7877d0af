/** What a tag in the registry holds, as its image's OCI labels say (null: the label is not there). */
export interface PublishedImage {
  /** org.opencontainers.image.revision: the commit it was built from. */
  revision: string | null;
  /** org.opencontainers.image.version: the version it was published as. */
  version: string | null;
}
