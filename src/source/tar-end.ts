import { Transform, type TransformCallback } from 'node:stream';

const BLOCK = 512;

/**
 * Passes a tar stream through up to its end-of-archive marker (two zero blocks where a header is due), then
 * ends, ignoring whatever follows, and calls `onEnd` so the source can be closed.
 *
 * Why this exists: tar-stream reads its input to the end and takes zero blocks as nothing, so anything after
 * the marker (10 GB of zeros) would be inflated in full. Only the layout of blocks is tracked here: each
 * header's size field says how many data blocks follow it; tar-stream still does all the parsing.
 */
export function untilEndOfArchive(onEnd: () => void): Transform {
  let pending: Buffer = Buffer.alloc(0);
  let dataLeft = 0; // bytes of the current entry's data (padded to whole blocks) still to pass
  let zeroHeaders = 0;
  let ended = false;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      if (ended) return callback();
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let offset = 0;
      while (!ended) {
        if (dataLeft > 0) {
          const take = Math.min(dataLeft, pending.length - offset);
          if (take === 0) break;
          dataLeft -= take;
          offset += take;
          continue;
        }
        if (pending.length - offset < BLOCK) break;
        const header = pending.subarray(offset, offset + BLOCK);
        offset += BLOCK;
        if (header.every((byte) => byte === 0)) {
          zeroHeaders += 1;
          ended = zeroHeaders === 2;
        } else {
          zeroHeaders = 0;
          dataLeft = Math.ceil(entrySize(header) / BLOCK) * BLOCK;
        }
      }
      this.push(pending.subarray(0, offset));
      pending = pending.subarray(offset);
      if (ended) {
        this.push(null);
        onEnd();
      }
      callback();
    },
    flush(callback: TransformCallback) {
      // After the marker the readable side has ended: what followed it (git pads to 10 KB records) is dropped.
      callback(null, !ended && pending.length > 0 ? pending : undefined);
    },
  });
}

/** The size field of a tar header: octal text, or base-256 when its first byte has the high bit set. */
function entrySize(header: Buffer): number {
  const field = header.subarray(124, 136);
  if (field[0]! & 0x80) {
    let size = field[0]! & 0x7f;
    for (let index = 1; index < field.length; index += 1) size = size * 256 + field[index]!;
    return size;
  }
  const text = field.toString('ascii').replace(/[\0 ]+$/, '').trim();
  return text === '' ? 0 : parseInt(text, 8);
}
