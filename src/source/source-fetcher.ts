import type { Readable } from 'node:stream';
import type { Repository } from '../domain/build-request.js';

/** Reads a repository at a commit. */
export interface SourceFetcher {
  /**
   * The file's text, or undefined when the commit has no such file. Reads at most `maxBytes` + 1 bytes,
   * so that a caller can tell a file that is too large without anyone holding all of it.
   */
  readFile(repository: Repository, ref: string, filePath: string, maxBytes: number, signal: AbortSignal): Promise<string | undefined>;
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
