import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { parseProgressLine, readProgress } from '../../src/engine/docker/progress.js';

/** Cuts `text` into pieces of `size` bytes, so lines (and characters) straddle chunks. */
function chunked(text: string, size: number): Readable {
  const bytes = Buffer.from(text, 'utf8');
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < bytes.length; offset += size) chunks.push(bytes.subarray(offset, offset + size));
  return Readable.from(chunks);
}

const BUILD_OUTPUT = [
  { stream: 'Step 1/2 : FROM scratch\n' },
  { stream: '\n' },
  { stream: 'Step 2/2 : COPY café.txt /\n' },
  { aux: { ID: 'sha256:1111' } },
  { stream: 'Successfully built 1111\n' },
]
  .map((line) => JSON.stringify(line))
  .join('\r\n');

describe('Docker progress streams', () => {
  for (const size of [1, 2, 3, 7, 64, 100_000]) {
    it(`reads the same lines whatever the chunk size (${size} bytes), multi-byte characters included`, async () => {
      const lines: string[] = [];
      const outcome = await readProgress(chunked(BUILD_OUTPUT, size), (text) => lines.push(text));
      assert.deepEqual(lines, ['Step 1/2 : FROM scratch', 'Step 2/2 : COPY café.txt /', 'Successfully built 1111']);
      assert.deepEqual(outcome, { aux: [{ ID: 'sha256:1111' }], error: undefined });
    });
  }

  it('reports an error line inside an otherwise successful stream, and reads on to the end', async () => {
    const text = [
      '{"status":"The push refers to repository [localhost:83/app]"}',
      '{"status":"Preparing","progressDetail":{},"id":"5f70bf18a086"}',
      '{"status":"Pushing","progressDetail":{"current":512,"total":1024},"progress":"[==>  ]","id":"5f70bf18a086"}',
      '{"errorDetail":{"message":"Get \\"http://localhost:83/v2/\\": dial tcp 127.0.0.1:83: connect: connection refused"},"error":"Get \\"http://localhost:83/v2/\\": dial tcp"}',
      '{"status":"after the error"}',
    ].join('\n');
    const lines: string[] = [];
    const outcome = await readProgress(chunked(text, 13), (line) => lines.push(line));
    assert.equal(outcome.error, 'Get "http://localhost:83/v2/": dial tcp 127.0.0.1:83: connect: connection refused');
    assert.deepEqual(lines, [
      'The push refers to repository [localhost:83/app]',
      '5f70bf18a086: Preparing',
      'ERROR: Get "http://localhost:83/v2/": dial tcp 127.0.0.1:83: connect: connection refused',
      'after the error',
    ]);
  });

  it('finds the pushed digest in the aux line', async () => {
    const text = '{"status":"1.0.0: digest: sha256:abcd size: 528"}\n{"progressDetail":{},"aux":{"Tag":"1.0.0","Digest":"sha256:abcd","Size":528}}\n';
    const outcome = await readProgress(chunked(text, 5), () => {});
    assert.deepEqual(outcome.aux, [{ Tag: '1.0.0', Digest: 'sha256:abcd', Size: 528 }]);
  });

  it('parses each kind of line', () => {
    assert.deepEqual(parseProgressLine('{"error":"only error"}'), { kind: 'error', message: 'only error' });
    assert.deepEqual(parseProgressLine('not json at all'), { kind: 'log', text: 'not json at all' });
    assert.deepEqual(parseProgressLine('{"status":"Pushing","progressDetail":{"current":1}}'), { kind: 'progress' });
    assert.equal(parseProgressLine('   '), undefined);
    assert.equal(parseProgressLine('{"stream":"\\n"}'), undefined);
    assert.equal(parseProgressLine('{"unknown":true}'), undefined);
  });
});
