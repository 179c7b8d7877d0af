import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/logger.js';

describe('logger', () => {
  it('redacts secrets wherever a field name says it is one', () => {
    let output = '';
    const logger = createLogger('info', new Writable({ write(chunk, _e, callback) { output += chunk; callback(); } }));
    logger.info({
      token: 'tok-1',
      config: { webhookSecret: 'sec-2', githubToken: 'tok-3', registryPassword: 'pw-4' },
      headers: { authorization: 'Bearer tok-5' },
      auth: { password: 'pw-6' },
      visible: 'kept',
    }, 'message');
    for (const secret of ['tok-1', 'sec-2', 'tok-3', 'pw-4', 'tok-5', 'pw-6']) assert.ok(!output.includes(secret), `${secret} leaked`);
    assert.match(output, /"visible":"kept"/);
    assert.match(output, /\[redacted\]/);
  });
});
