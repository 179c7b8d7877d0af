import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { engineFailure, isTransient, pushFailureHint } from '../../src/engine/docker/docker-engine.js';
import { ImageBuildError, PushError } from '../../src/domain/errors.js';

/** What dockerode throws for an HTTP answer of the engine: its status, and the engine's sentence in `json`. */
const answered = (statusCode: number, message: string) => Object.assign(new Error(`(HTTP code ${statusCode}) ${message}`), { statusCode, json: { message } });
const socket = (code: string) => Object.assign(new Error(`connect ${code} /var/run/docker.sock`), { code });

describe('engine failures are classified by what they are, not by digits in their text', () => {
  it('a Dockerfile the engine cannot find (500) is permanent, with the engine\'s sentence', () => {
    const error = engineFailure(answered(500, 'Cannot locate specified Dockerfile: Dockerfile'), 'build');
    assert.ok(error instanceof ImageBuildError);
    assert.equal(error.retryable, false);
    assert.equal(error.message, 'docker build failed: Cannot locate specified Dockerfile: Dockerfile');
  });

  it('an engine that is not there, or says "later", is worth another try', () => {
    for (const code of ['ECONNREFUSED', 'ENOENT', 'ECONNRESET']) {
      const error = engineFailure(socket(code), 'build') as ImageBuildError;
      assert.equal(error.retryable, true, code);
      assert.match(error.message, /^Docker engine not reachable/);
    }
    assert.equal((engineFailure(answered(503, 'daemon is restarting'), 'push', 'r/a:1') as PushError).retryable, true);
    assert.equal((engineFailure(answered(400, 'invalid reference format'), 'push', 'r/a:1') as PushError).retryable, false);
  });

  it('a socket the process may not use is permanent and says how to fix it', () => {
    const error = engineFailure(socket('EACCES'), 'build') as ImageBuildError;
    assert.equal(error.retryable, false);
    assert.match(error.message, /^Docker engine socket refused/);
  });

  it('inside a stream: a registry out of reach is transient; a step whose output holds "500" is not', () => {
    assert.equal(isTransient('Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused'), true);
    assert.equal(isTransient('received unexpected HTTP status: 503 Service Unavailable'), true);
    assert.equal(isTransient('executor failed running [/bin/sh -c exit 1]: exit code: 1'), false);
    assert.equal(isTransient('curl: (22) The requested URL returned error: 500 after 1 timeout'), false);
  });

  it('a push the registry refused names the refusal as both stores report it, not the registry\'s reach', () => {
    const containerd = 'failed commit on ref "manifest-sha256:d07f": unexpected status from PUT request to http://127.0.0.1:5000/v2/a/manifests/1.0.0: 400 Bad Request';
    for (const line of [containerd, 'manifest invalid: manifest invalid']) {
      assert.equal(isTransient(line), false, line);
      assert.match(pushFailureHint(line), /^the registry refused the image's manifest/, line);
    }
    assert.match(pushFailureHint('dial tcp 127.0.0.1:5000: connect: connection refused'), /^is the registry running/);
  });
});
