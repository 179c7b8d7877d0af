import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
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
    const byHand = 'kept-by-hand-0123456789abcdef0123456789';
    await writeFile(path.join(dir, 'admin-token'), `  ${byHand} \n`, { mode: 0o600 });
    assert.equal(await keptSecret(ADMIN_TOKEN, undefined, dir, logger), byHand);
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
    await writeFile(path.join(dir, 'webhook-secret'), '\n', { mode: 0o600 });
    await assert.rejects(keptSecret(WEBHOOK_SECRET, undefined, dir, logger), /webhook-secret is empty: delete it \(ci_service then generates a new WEBHOOK_SECRET\), or set WEBHOOK_SECRET, or write one in it/);
  });

  it('trusts a kept file only as ci_service writes one: a file of its own, 0600, of 32 characters or more', async () => {
    const dir = await dataDir();
    const { logger } = recordingLogger();
    const file = path.join(dir, 'webhook-secret');
    const refused = (pattern: RegExp) => assert.rejects(keptSecret(WEBHOOK_SECRET, undefined, dir, logger), pattern);
    await writeFile(file, `${'s'.repeat(64)}\n`, { mode: 0o644 });
    await chmod(file, 0o644);
    await refused(/webhook-secret may be read by others \(mode 644\): chmod 600 it, or delete it/);
    await writeFile(file, 'short\n', { mode: 0o600 });
    await chmod(file, 0o600);
    await refused(/holds a WEBHOOK_SECRET of 5 characters, fewer than 32: delete it/);
    await rm(file);
    await symlink(path.join(dir, 'nowhere'), file);
    await refused(/webhook-secret is a symbolic link, and a kept WEBHOOK_SECRET must be a file of its own: delete it/);
    await rm(file);
    await writeFile(path.join(dir, 'elsewhere'), 's'.repeat(64), { mode: 0o600 });
    await symlink(path.join(dir, 'elsewhere'), file);
    await refused(/is a symbolic link/);
    await rm(file);
    await mkdir(file);
    await refused(/webhook-secret is not a regular file/);
    await rm(file, { recursive: true });
    await writeFile(file, 's'.repeat(64), { mode: 0o600 });
    const uid = process.getuid!();
    await chown(file, uid + 4242, 0).catch(() => undefined);
    if ((await stat(file)).uid !== uid) await refused(new RegExp(`webhook-secret belongs to user ${uid + 4242}, not to ci_service's user \\(${uid}\\)`));
  });
});
