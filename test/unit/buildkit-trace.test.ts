import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BuildKitTrace } from '../../src/engine/buildkit/trace.js';
import { readProgress } from '../../src/engine/docker/progress.js';

/** A real engine's answer to a BuildKit build whose last RUN exits 3 (Docker 20.10, captured once). */
const FAILING_RUN = path.join(import.meta.dirname, '..', 'fixtures', 'engine-streams', 'buildkit-failing-run.ndjson');

async function decode(chunkBytes: number) {
  const lines: string[] = [];
  const trace = new BuildKitTrace((line) => lines.push(line));
  const outcome = await readProgress(createReadStream(FAILING_RUN, { highWaterMark: chunkBytes }), (line) => lines.push(line), (data) => trace.feed(data));
  // Timings differ per run of a build; the lines around them do not.
  return { lines: lines.map((line) => line.replace(/^(#\d+) [0-9]+\.[0-9]{3} /, '$1 <t> ').replace(/ DONE [0-9]+\.[0-9]s$/, ' DONE <t>')), outcome, trace };
}

describe('BuildKit trace, decoded as docker build --progress=plain prints it', () => {
  for (const chunkBytes of [7, 64 * 1024]) {
    it(`names each step, its output, CACHED, DONE and ERROR, in order (${chunkBytes}-byte reads)`, async () => {
      const { lines } = await decode(chunkBytes);
      assert.deepEqual(lines, [
        '#1 [internal] load remote build context',
        '#1 DONE <t>',
        '#2 copy /context /',
        '#2 DONE <t>',
        '#3 [internal] load metadata for docker.io/library/ci-test-busybox:latest',
        '#3 DONE <t>',
        '#4 [right 1/3] FROM docker.io/library/ci-test-busybox:latest',
        '#4 CACHED',
        '#5 [2/4] RUN echo first line && echo second line',
        '#5 <t> first line',
        '#5 <t> second line',
        '#5 DONE <t>',
        '#6 [3/4] RUN printf "no newline at the end"',
        '#6 no newline at the end',
        '#6 DONE <t>',
        '#7 [4/4] RUN echo about to fail && exit 3',
        '#7 <t> about to fail',
        '#7 ERROR: executor failed running [/bin/sh -c echo about to fail && exit 3]: exit code: 3',
        'ERROR: executor failed running [/bin/sh -c echo about to fail && exit 3]: exit code: 3',
      ]);
    });
  }

  it('knows which step failed, with its last output, from the build\'s error', async () => {
    const { outcome, trace } = await decode(64 * 1024);
    assert.equal(outcome.error, 'executor failed running [/bin/sh -c echo about to fail && exit 3]: exit code: 3');
    const step = trace.stepThatFailed(outcome.error!);
    assert.equal(step?.name, '[4/4] RUN echo about to fail && exit 3');
    assert.deepEqual(step?.lastOutput, ['about to fail']);
    assert.equal(trace.stepThatFailed('some other error'), undefined, 'a cache import that failed is not the build\'s failure');
  });
});
