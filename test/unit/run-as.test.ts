import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile, chown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const asRoot = process.getuid?.() === 0;

describe('starting as root only to learn the Docker socket\'s group', { skip: asRoot ? false : 'needs root, as the image starts' }, () => {
  it('runs as the RUN_AS user, with the socket\'s group added and root gone', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'run-as-'));
    try {
      // A stand-in for the socket, owned by a group of its own, as docker.sock is by the docker group.
      const socket = path.join(dir, 'docker.sock');
      await writeFile(socket, '');
      await chown(socket, 0, 4242);
      const script = path.join(dir, 'probe.ts');
      await writeFile(
        script,
        `import { dropPrivileges } from ${JSON.stringify(path.join(import.meta.dirname, '..', '..', 'src', 'run-as.ts'))};\n` +
          `const said = dropPrivileges({ uid: 65534, gid: 65534 }, ${JSON.stringify(socket)});\n` +
          'console.log(JSON.stringify({ said, uid: process.getuid(), gid: process.getgid(), groups: process.getgroups() }));\n',
      );
      const { stdout } = await run(process.execPath, ['--import', 'tsx', script]);
      const seen = JSON.parse(stdout) as { said: string; uid: number; gid: number; groups: number[] };
      assert.equal(seen.uid, 65534);
      assert.equal(seen.gid, 65534);
      assert.deepEqual(seen.groups.sort(), [4242, 65534]);
      assert.equal(seen.said, "running as 65534:65534, with the Docker socket's group 4242");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
