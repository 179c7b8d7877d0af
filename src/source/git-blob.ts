import { createHash, type Hash } from 'node:crypto';

/** git's id of a blob being read: SHA-1 over "blob <size>\0" and the content, fed as it comes. */
export function gitBlobHash(size: number): Hash {
  return createHash('sha1').update(`blob ${size}\0`);
}

/** git's id of a blob held whole. */
export function gitBlobId(content: Buffer): string {
  return gitBlobHash(content.length).update(content).digest('hex');
}
