import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { explainEngineError, explainFailedStep, instructionLine, locateInDockerfile } from '../../src/engine/explain-build-failure.js';

const DOCKERFILE = ['FROM node:24 AS build', '', 'run npm ci \\', '    --omit=dev', 'COPY . /app', 'RUN echo about to fail && exit 3', ''].join('\n');

describe('a failed build, in one sentence that says where and what', () => {
  it('names the Dockerfile line, the instruction, the exit code and the last output', () => {
    const sentence = explainFailedStep(
      { name: '[build 4/4] RUN echo about to fail && exit 3', lastOutput: ['step one', 'about to fail'] },
      'executor failed running [/bin/sh -c echo about to fail && exit 3]: exit code: 3',
      { path: 'Dockerfile', text: DOCKERFILE },
    );
    assert.equal(sentence, 'Dockerfile line 6: RUN echo about to fail && exit 3 failed (exit code: 3); last output: step one | about to fail');
  });

  it('finds instructions over continued lines and in lower case; none when the text is unknown', () => {
    assert.equal(instructionLine(DOCKERFILE, 'RUN npm ci --omit=dev'), 3);
    assert.equal(instructionLine(DOCKERFILE, 'COPY . /app'), 5);
    assert.equal(instructionLine(DOCKERFILE, 'COPY missing /'), undefined);
    assert.equal(
      explainFailedStep({ name: '[2/3] COPY missing /', lastOutput: [] }, 'failed to compute cache key: "/missing" not found: not found', { path: 'docker/Dockerfile', text: undefined }),
      'docker/Dockerfile: COPY missing / failed ("/missing" is not in the build context, or .dockerignore leaves it out)',
    );
  });

  it('says a missing COPY source in the same words for BuildKit 0.8 (Docker 20.10) and 0.13 (Docker 26.1)', () => {
    const step = { name: '[2/3] COPY missing /', lastOutput: [] };
    const dockerfile = { path: 'Dockerfile', text: undefined };
    const old = explainFailedStep(step, 'failed to compute cache key: "/missing" not found: not found', dockerfile);
    const newer = explainFailedStep(step, 'failed to compute cache key: failed to calculate checksum of ref d734g9xwpbv2::jkx35cfde2zr: "/missing": not found', dockerfile);
    assert.equal(newer, old);
  });

  it('keeps the sentence short: a long command and long output are cut', () => {
    const sentence = explainFailedStep({ name: `[1/1] RUN ${'x'.repeat(300)}`, lastOutput: ['y'.repeat(500)] }, 'exit code: 1', { path: 'Dockerfile', text: undefined });
    assert.ok(sentence.length <= 12 + 80 + 22 + 15 + 200, sentence);
    assert.match(sentence, /x…/);
    assert.match(sentence, /last output: …y+$/);
  });

  it('turns engine errors outside a step into the fix', () => {
    const frontend = 'failed to solve with frontend dockerfile.v0: failed to create LLB definition: ';
    assert.equal(explainEngineError(`${frontend}dockerfile parse error line 3: unknown instruction: FOOBAR`), 'Dockerfile parse error line 3: unknown instruction: FOOBAR');
    assert.match(explainEngineError(`${frontend}dockerfile parse error line 2: Unknown flag: link`), /^Dockerfile line 2: this engine's built-in Dockerfile frontend does not know --link: add "# syntax=docker\/dockerfile:1"/);
    assert.match(explainEngineError(`${frontend}target stage nope could not be found`), /^"target" "nope" in dockerInfo.json is not a stage/);
    assert.match(explainEngineError('the --mount option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/'), /set BUILDER=buildkit \(the default\)/);
    assert.match(explainEngineError('buildkit not supported by daemon'), /set BUILDER=legacy/);
  });
});

describe('the same sentence whichever BuildKit the engine has (0.8 in Docker 20.10, 0.13 in 26.1)', () => {
  it('a parse error, an unknown target and an undeclared secret', () => {
    assert.equal(explainEngineError('dockerfile parse error on line 3: unknown instruction: FOOBAR'), explainEngineError('dockerfile parse error line 3: unknown instruction: FOOBAR'));
    assert.equal(explainEngineError('target stage "nope" could not be found'), explainEngineError('target stage nope could not be found'));
    assert.match(explainEngineError('target stage "nope" could not be found'), /^"target" "nope" in dockerInfo.json/);
    const step = { name: '[2/2] RUN --mount=type=secret,id=undeclared true', lastOutput: [] };
    const dockerfile = { path: 'Dockerfile', text: undefined };
    const newer = explainFailedStep(step, 'secret undeclared: not found', dockerfile);
    assert.equal(newer, explainFailedStep(step, 'secret undeclared not found: not found', dockerfile));
    assert.match(newer, /\(secret undeclared not found\): the Dockerfile mounts secret "undeclared",/);
  });

  it('an unsupported mount type is placed at its line when BuildKit does not say it', () => {
    const text = 'FROM scratch\nRUN true\nRUN --mount=type=bogus,target=/x true\n';
    assert.equal(locateInDockerfile('unsupported mount type "bogus"', text), 'Dockerfile parse error line 3: unsupported mount type "bogus"');
    assert.equal(locateInDockerfile('unsupported mount type "bogus"', undefined), 'unsupported mount type "bogus"');
    assert.equal(locateInDockerfile('something else', text), 'something else');
  });
});
