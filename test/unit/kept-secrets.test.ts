import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { ADMIN_TOKEN, keptSecret, WEBHOOK_SECRET } from '../../src/kept-secrets.js';
import { createLogger } from '../../src/logger.js';

function recordingLogger() {
  const lines: string[] = [];
  const destination = new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(chunk.toString()), done()) });
  return { logger: createLogger('info', destination), lines };
}

describe('secrets nobody has to type', () => {
  const dirs: string[] = [];
  const dataDir = async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kept-'));
    dirs.push(dir);
    return dir;
  };
  after(async () => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  it('generates one, keeps it readable by the owner only, and prints it once with what to do', async () => {
    const dir = await dataDir();
    const { logger, lines } = recordingLogger();
    const token = await keptSecret(ADMIN_TOKEN, undefined, dir, logger);
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.equal((await readFile(path.join(dir, 'admin-token'), 'utf8')).trim(), token);
    assert.equal((await stat(path.join(dir, 'admin-token'))).mode & 0o777, 0o600);
    assert.equal(lines.length, 1);
    assert.ok(lines[0]!.includes(token));
    assert.match(lines[0]!, /Authorization: Bearer/);

    assert.equal(await keptSecret(ADMIN_TOKEN, undefined, dir, logger), token, 'the next start takes the kept one');
    assert.equal(lines.length, 1, 'and prints nothing');
  });

  it('the environment wins, and nothing is written', async () => {
    const dir = await dataDir();
    const { logger, lines } = recordingLogger();
    assert.equal(await keptSecret(WEBHOOK_SECRET, 'from-env', dir, logger), 'from-env');
    await assert.rejects(readFile(path.join(dir, 'webhook-secret')));
    assert.equal(lines.length, 0);
  });

  it('two processes starting at once end with the same secret', async () => {
    const dir = await dataDir();
    const { logger } = recordingLogger();
    const [a, b] = await Promise.all([keptSecret(WEBHOOK_SECRET, undefined, dir, logger), keptSecret(WEBHOOK_SECRET, undefined, dir, logger)]);
    assert.equal(a, b);
    await writeFile(path.join(dir, 'admin-token'), '  kept-by-hand \n');
    assert.equal(await keptSecret(ADMIN_TOKEN, undefined, dir, logger), 'kept-by-hand');
  });
});
