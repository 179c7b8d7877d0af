import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
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

  it('eight starts at once in one process, fifty times, end with the same secret', async () => {
    const dir = await dataDir();
    const { logger } = recordingLogger();
    // Many at once, many times: none may read the file between its creation and its content.
    for (let round = 0; round < 50; round += 1) {
      const folder = await dataDir();
      const secrets = await Promise.all(Array.from({ length: 8 }, () => keptSecret(WEBHOOK_SECRET, undefined, folder, logger)));
      assert.equal(new Set(secrets).size, 1, `round ${round}: ${secrets.join(' ')}`);
      assert.match(secrets[0]!, /^[0-9a-f]{64}$/);
      assert.deepEqual((await readdir(folder)).sort(), ['webhook-secret'], 'no draft left behind');
    }
    await writeFile(path.join(dir, 'admin-token'), '  kept-by-hand \n');
    assert.equal(await keptSecret(ADMIN_TOKEN, undefined, dir, logger), 'kept-by-hand');
  });

  it('six processes starting at once end with the same secret', async () => {
    const folder = await dataDir();
    const module = pathToFileURL(path.join(import.meta.dirname, '..', '..', 'src', 'kept-secrets.ts')).href;
    const logger = pathToFileURL(path.join(import.meta.dirname, '..', '..', 'src', 'logger.ts')).href;
    const script = `const { keptSecret, WEBHOOK_SECRET } = await import(${JSON.stringify(module)}); const { createLogger } = await import(${JSON.stringify(logger)});
      process.stdout.write(await keptSecret(WEBHOOK_SECRET, undefined, ${JSON.stringify(folder)}, createLogger('silent')));`;
    const start = () =>
      new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], (error, stdout) => (error ? reject(error) : resolve(stdout)));
      });
    const secrets = await Promise.all(Array.from({ length: 6 }, start));
    assert.equal(new Set(secrets).size, 1, secrets.join(' '));
    assert.equal(secrets[0], (await readFile(path.join(folder, 'webhook-secret'), 'utf8')).trim());
  });

  it('refuses a kept file that is empty, saying what to do, rather than take "" as the secret', async () => {
    const dir = await dataDir();
    const { logger } = recordingLogger();
    await writeFile(path.join(dir, 'webhook-secret'), '\n');
    await assert.rejects(keptSecret(WEBHOOK_SECRET, undefined, dir, logger), /webhook-secret is empty: delete it \(ci_service then generates a new WEBHOOK_SECRET\), write one in it, or set WEBHOOK_SECRET/);
  });
});
