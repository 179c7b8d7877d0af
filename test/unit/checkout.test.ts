import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { Checkouts } from '../../src/build/checkout.js';
import { ContextError } from '../../src/domain/errors.js';

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; content?: string; linkname?: string; mode?: number };

const ROOT = 'octo-hello-abc1234/';
const LIMITS = { maxBytes: 1024 * 1024, maxArchiveBytes: 1024 * 1024, maxEntries: 1000 };
const OPTIONS = { context: '', dockerfile: 'Dockerfile', ...LIMITS };

/** GitHub's tarball of a commit made at `committed`: git archive gives every entry the commit's time. */
async function commit(entries: Entry[], committed: Date): Promise<Readable> {
  const pack = tar.pack();
  pack.entry({ name: ROOT, type: 'directory', mtime: committed });
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const header = { name: `${ROOT}${entry.name}`, mtime: committed, mode: entry.mode };
    if (type === 'file') pack.entry(header, entry.content ?? '');
    else pack.entry({ ...header, type, linkname: entry.linkname });
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Readable.from([gzipSync(Buffer.concat(chunks))]);
}

const folders: string[] = [];
async function newFolder(): Promise<string> {
  const folder = await mkdtemp(path.join(tmpdir(), 'checkouts-'));
  folders.push(folder);
  return folder;
}
after(() => Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true }))));

const seconds = (iso: string) => Date.parse(iso) / 1000;

describe('checkouts', () => {
  it('writes the files of the context, and describes folders, symlinks and hard links', async () => {
    const checkouts = await Checkouts.open(await newFolder());
    const checkout = await checkouts.extract(
      'octo/hello',
      await commit(
        [
          { name: 'Dockerfile', content: 'FROM scratch\n' },
          { name: 'bin/', type: 'directory' },
          { name: 'bin/run.sh', content: 'echo hi\n', mode: 0o755 },
          { name: 'run', type: 'symlink', linkname: 'bin/run.sh' },
          { name: 'copy.sh', type: 'link', linkname: `${ROOT}bin/run.sh` },
        ],
        new Date('2026-01-01T00:00:00Z'),
      ),
      OPTIONS,
    );
    assert.equal(checkout.dockerfileText, 'FROM scratch\n');
    assert.deepEqual(checkout.summary, { entries: 5, bytes: 21, hasDockerfile: true });
    const byPath = Object.fromEntries(checkout.entries.map((entry) => [entry.path, entry]));
    assert.deepEqual(
      { type: byPath['bin/run.sh']!.type, mode: byPath['bin/run.sh']!.mode.toString(8), size: byPath['bin/run.sh']!.size },
      { type: 'file', mode: '755', size: 8 },
    );
    assert.deepEqual({ type: byPath.run!.type, linkname: byPath.run!.linkname }, { type: 'symlink', linkname: 'bin/run.sh' });
    assert.equal(byPath.bin!.type, 'directory');
    assert.equal(byPath['copy.sh']!.type, 'file', 'a hard link becomes a copy');
    assert.equal(await readFile(path.join(checkout.root, 'copy.sh'), 'utf8'), 'echo hi\n');
    assert.equal(await readFile(path.join(checkout.root, 'bin/run.sh'), 'utf8'), 'echo hi\n');
    assert.equal(existsSync(path.join(checkout.root, 'run')), false, 'symlinks are described, never written out');
    await checkouts.release(checkout);
    assert.equal(existsSync(checkout.root), false);
  });

  it('keeps the mtime of unchanged files, and gives changed ones an mtime never given before', async () => {
    const checkouts = await Checkouts.open(await newFolder());
    const first = await checkouts.extract('octo/hello', await commit([{ name: 'Dockerfile' }, { name: 'a.txt', content: 'one' }, { name: 'b.txt', content: 'bee' }], new Date('2026-01-02T00:00:00Z')), OPTIONS);
    // The next commit is older (a rebase, a clock behind), and b.txt changes without changing its size.
    const second = await checkouts.extract('octo/hello', await commit([{ name: 'Dockerfile' }, { name: 'a.txt', content: 'one' }, { name: 'b.txt', content: 'BEE' }], new Date('2026-01-01T00:00:00Z')), OPTIONS);
    const mtimes = (checkout: typeof first) => Object.fromEntries(checkout.entries.map((entry) => [entry.path, entry.mtimeSeconds]));
    assert.equal(mtimes(second)['a.txt'], seconds('2026-01-02T00:00:00Z'), 'unchanged: the mtime BuildKit already has');
    assert.equal(mtimes(second)['b.txt'], seconds('2026-01-02T00:00:01Z'), 'changed: above every mtime given so far');
    // Back to the first content: BuildKit may still hold it from the first build, with that build's mtime.
    const third = await checkouts.extract('octo/hello', await commit([{ name: 'Dockerfile' }, { name: 'a.txt', content: 'one' }, { name: 'b.txt', content: 'bee' }], new Date('2026-01-03T00:00:00Z')), OPTIONS);
    assert.equal(mtimes(third)['b.txt'], seconds('2026-01-03T00:00:00Z'));
    assert.equal(first.sharedKey, third.sharedKey, 'one repository and context: one key for BuildKit');
    const other = await checkouts.extract('octo/other', await commit([{ name: 'Dockerfile' }], new Date('2026-01-01T00:00:00Z')), OPTIONS);
    assert.notEqual(other.sharedKey, first.sharedKey);
  });

  it('starts a new generation, with a new key for BuildKit, when the manifest is lost', async () => {
    const folder = await newFolder();
    const checkouts = await Checkouts.open(folder);
    const first = await checkouts.extract('octo/hello', await commit([{ name: 'Dockerfile' }], new Date('2026-01-01T00:00:00Z')), OPTIONS);
    for (const file of await readdir(folder)) if (file.endsWith('.json')) await rm(path.join(folder, file));
    const second = await checkouts.extract('octo/hello', await commit([{ name: 'Dockerfile' }], new Date('2026-01-01T00:00:00Z')), OPTIONS);
    assert.notEqual(second.sharedKey, first.sharedKey);
  });

  it('leaves no folder behind when the context fails, and refuses a file inside a symlink', async () => {
    const folder = await newFolder();
    const checkouts = await Checkouts.open(folder);
    await assert.rejects(
      checkouts.extract('octo/hello', await commit([{ name: 'escape', type: 'symlink', linkname: '/etc' }, { name: 'escape/passwd', content: 'x' }], new Date()), OPTIONS),
      (error: Error) => error instanceof ContextError && /inside symlink "escape"/.test(error.message),
    );
    assert.deepEqual((await readdir(folder)).filter((name) => name.startsWith('build-')), []);
  });

  it('removes the build folders a stopped process left behind when it opens', async () => {
    const folder = await newFolder();
    await mkdir(path.join(folder, 'build-left-over', 'src'), { recursive: true });
    await Checkouts.open(folder);
    assert.deepEqual(await readdir(folder), []);
  });
});
