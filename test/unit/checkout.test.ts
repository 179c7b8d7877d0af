import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import axios from 'axios';
import { Checkouts, type Checkout } from '../../src/source/checkout.js';
import { ContextError } from '../../src/domain/errors.js';
import { GitHubSource } from '../../src/github/github-source.js';
import { GitHubStandIn } from '../support/github-stand-in.js';

const OPTIONS = { context: '', dockerfile: 'Dockerfile', maxBytes: 1024 * 1024, maxArchiveBytes: 1024 * 1024, maxEntries: 1000 };
const signal = new AbortController().signal;

let github: GitHubStandIn;
let source: GitHubSource;
const folders: string[] = [];
async function newFolder(): Promise<string> {
  const folder = await mkdtemp(path.join(tmpdir(), 'checkouts-'));
  folders.push(folder);
  return folder;
}
before(async () => {
  github = await new GitHubStandIn().start();
  source = new GitHubSource(axios.create({ baseURL: github.url, validateStatus: () => true }), github.url, { mode: 'none' });
});
after(async () => {
  await github.close();
  await Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true })));
});

/** A commit of `files` (path → content; a content starting with "-> " is a symlink) on the stand-in. */
async function commit(fullName: string, files: Record<string, string>, executable: string[] = []) {
  const dir = await newFolder();
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    if (content.startsWith('-> ')) await symlink(content.slice(3), path.join(dir, name));
    else await writeFile(path.join(dir, name), content);
  }
  for (const name of executable) await chmod(path.join(dir, name), 0o755);
  return github.addRepository(fullName, dir);
}

function requestsSince(count: number): string[] {
  return github.requests.slice(count).map((request) => request.path.replace(/^\/repos\/[^/]+\/[^/]+\//, '').replace(/\/[0-9a-f]{40}.*$/, ''));
}

const byPath = (checkout: Checkout) => Object.fromEntries(checkout.entries.map((entry) => [entry.path, entry]));

describe('checkouts', () => {
  it("first from the tarball: files written, git's modes, symlinks described and never written out", async () => {
    const checkouts = await Checkouts.open(await newFolder(), source);
    const repository = await commit('octo/first', { Dockerfile: 'FROM scratch\n', 'bin/run.sh': 'echo hi\n', run: '-> bin/run.sh' }, ['bin/run.sh']);
    const checkout = await checkouts.checkout(repository, repository.sha, OPTIONS, 'reviewed', signal);
    try {
      assert.deepEqual(checkout.fetched, { kind: 'tarball' });
      assert.equal(checkout.dockerfileText, 'FROM scratch\n');
      assert.deepEqual(checkout.summary, { entries: 4, bytes: 13 + 8 + 10, hasDockerfile: true });
      const entries = byPath(checkout);
      assert.deepEqual({ type: entries['bin/run.sh']!.type, mode: entries['bin/run.sh']!.mode.toString(8) }, { type: 'file', mode: '755' });
      assert.equal(entries.Dockerfile!.mode.toString(8), '644');
      assert.deepEqual({ type: entries.run!.type, linkname: entries.run!.linkname }, { type: 'symlink', linkname: 'bin/run.sh' });
      assert.equal(await readFile(path.join(checkout.root, 'bin/run.sh'), 'utf8'), 'echo hi\n');
      assert.equal(existsSync(path.join(checkout.root, 'run')), false);
    } finally {
      checkout.release();
    }
  });

  it('then fetches only the files that changed, keeps the mtime of the others, and removes what went', async () => {
    const checkouts = await Checkouts.open(await newFolder(), source);
    const first = await commit('octo/changes', { Dockerfile: 'FROM scratch\n', 'a.txt': 'one', 'b.txt': 'bee', 'gone.txt': 'x', 'dir/kept.txt': 'k' });
    const one = await checkouts.checkout(first, first.sha, OPTIONS, 'reviewed', signal);
    one.release();
    const second = await commit('octo/changes', { Dockerfile: 'FROM scratch\n', 'a.txt': 'one', 'b.txt': 'BEE', 'new.txt': 'new', 'dir/kept.txt': 'k' });
    const seen = github.requests.length;
    const two = await checkouts.checkout(second, second.sha, OPTIONS, 'reviewed', signal);
    try {
      assert.deepEqual(two.fetched, { kind: 'changes', files: 2, bytes: 6 });
      assert.deepEqual(requestsSince(seen).sort(), ['git/blobs', 'git/blobs', 'git/trees']);
      assert.equal(two.root, one.root, 'one kept folder per repository');
      assert.equal(await readFile(path.join(two.root, 'b.txt'), 'utf8'), 'BEE');
      assert.equal(await readFile(path.join(two.root, 'new.txt'), 'utf8'), 'new');
      assert.equal(existsSync(path.join(two.root, 'gone.txt')), false);
      const [before, after] = [byPath(one), byPath(two)];
      assert.equal(after['a.txt']!.mtimeSeconds, before['a.txt']!.mtimeSeconds, 'unchanged: the mtime BuildKit already has');
      const highest = Math.max(...one.entries.map((entry) => entry.mtimeSeconds));
      assert.ok(after['b.txt']!.mtimeSeconds > highest, 'changed, same size: an mtime above every one given before');
      assert.equal(two.sharedKey, one.sharedKey);
      assert.deepEqual(Object.keys(after).sort(), ['Dockerfile', 'a.txt', 'b.txt', 'dir', 'dir/kept.txt', 'new.txt']);
    } finally {
      two.release();
    }
    const seenAgain = github.requests.length;
    const three = await checkouts.checkout(second, second.sha, OPTIONS, 'reviewed', signal);
    three.release();
    assert.deepEqual(three.fetched, { kind: 'unchanged' });
    assert.deepEqual(requestsSince(seenAgain), [], 'the same commit again: nothing fetched');
  });

  it('a file that becomes a symlink with the same bytes (the same blob id) is a symlink after the update', async () => {
    const checkouts = await Checkouts.open(await newFolder(), source);
    const first = await commit('octo/kinds', { Dockerfile: 'FROM scratch\n', 'target.txt': 't', link: 'target.txt' });
    (await checkouts.checkout(first, first.sha, OPTIONS, 'reviewed', signal)).release();
    const second = await commit('octo/kinds', { Dockerfile: 'FROM scratch\n', 'target.txt': 't', link: '-> target.txt' });
    const checkout = await checkouts.checkout(second, second.sha, OPTIONS, 'reviewed', signal);
    checkout.release();
    assert.deepEqual(checkout.fetched, { kind: 'changes', files: 1, bytes: 10 });
    assert.deepEqual([byPath(checkout).link!.type, byPath(checkout).link!.linkname], ['symlink', 'target.txt']);
    assert.equal(existsSync(path.join(checkout.root, 'link')), false, 'the file is gone from the folder');
  });

  it('takes the tarball again when many files changed', async () => {
    const checkouts = await Checkouts.open(await newFolder(), source);
    const files = (suffix: string) => Object.fromEntries([['Dockerfile', 'FROM scratch\n'], ...Array.from({ length: 25 }, (_, n) => [`f${n}.txt`, `${n}${suffix}`])]);
    const first = await commit('octo/many', files('a'));
    (await checkouts.checkout(first, first.sha, OPTIONS, 'reviewed', signal)).release();
    const second = await commit('octo/many', files('b'));
    const checkout = await checkouts.checkout(second, second.sha, OPTIONS, 'reviewed', signal);
    checkout.release();
    assert.deepEqual(checkout.fetched, { kind: 'tarball' });
    assert.equal(await readFile(path.join(checkout.root, 'f24.txt'), 'utf8'), '24b');
  });

  it('a commit whose file sits inside a symlinked folder is refused, and the folder is free for the next build', async () => {
    const checkouts = await Checkouts.open(await newFolder(), source);
    const good = await commit('octo/crafted', { Dockerfile: 'FROM scratch\n' });
    (await checkouts.checkout(good, good.sha, OPTIONS, 'reviewed', signal)).release();
    // git cannot commit this; a crafted tree could list it. The stand-in's tree for a repository is git's own,
    // so this checks the tarball path's refusal, on a fresh store.
    const fresh = await Checkouts.open(await newFolder(), {
      ...source,
      tree: source.tree.bind(source),
      blob: source.blob.bind(source),
      tarball: async () => (await import('node:stream')).Readable.from([await craftedTarball()]),
    });
    await assert.rejects(fresh.checkout(good, good.sha, OPTIONS, 'reviewed', signal), (error: Error) => error instanceof ContextError && /inside symlink "escape"/.test(error.message));
    const again = await fresh.checkout(good, good.sha, { ...OPTIONS }, 'reviewed', signal).catch((error: Error) => error);
    assert.ok(again instanceof ContextError, 'the lock was released: the next checkout ran (and met the same tarball)');
  });

  it('a head that adds "x.ci-part" beside a changed "x" never gets its bytes into "x" (5 rounds, a 1 MB file, real HTTP)', async () => {
    const checkouts = await Checkouts.open(await newFolder(), source);
    const base = await commit('octo/planted', { Dockerfile: 'FROM scratch\n', x: 'reviewed 0\n' });
    (await checkouts.checkout(base, base.sha, OPTIONS, 'reviewed', signal)).release();
    for (let round = 1; round <= 5; round += 1) {
      const reviewed = `${'r'.repeat(1024 * 1024)}${round}`;
      const head = await commit('octo/planted', { Dockerfile: 'FROM scratch\n', x: reviewed, 'x.ci-part': `planted ${round}` });
      const checkout = await checkouts.checkout(head, head.sha, { ...OPTIONS, maxBytes: 4 << 20 }, 'reviewed', signal);
      checkout.release();
      assert.deepEqual(checkout.fetched, { kind: 'changes', files: 2, bytes: reviewed.length + `planted ${round}`.length });
      assert.equal(await readFile(path.join(checkout.root, 'x'), 'utf8'), reviewed, `round ${round}: x holds the blob its manifest names`);
      assert.equal(await readFile(path.join(checkout.root, 'x.ci-part'), 'utf8'), `planted ${round}`, 'x.ci-part is an ordinary file of the repository');
    }
  });

  it("a pull request's head is checked out apart from merges and releases: it never writes their folder", async () => {
    const checkouts = await Checkouts.open(await newFolder(), source);
    const merged = await commit('octo/apart', { Dockerfile: 'FROM scratch\n', 'app.js': 'reviewed\n' });
    const reviewed = await checkouts.checkout(merged, merged.sha, OPTIONS, 'reviewed', signal);
    reviewed.release();
    const head = await commit('octo/apart', { Dockerfile: 'FROM scratch\n', 'app.js': 'unreviewed\n' });
    const pullRequest = await checkouts.checkout(head, head.sha, OPTIONS, 'pull_request', signal);
    pullRequest.release();
    assert.notEqual(pullRequest.root, reviewed.root);
    assert.notEqual(pullRequest.sharedKey, reviewed.sharedKey, 'BuildKit keeps what each sent apart too');
    const again = await checkouts.checkout(merged, merged.sha, OPTIONS, 'reviewed', signal);
    again.release();
    assert.deepEqual(again.fetched, { kind: 'unchanged' });
    assert.equal(await readFile(path.join(again.root, 'app.js'), 'utf8'), 'reviewed\n');
  });

  it("checkouts are readable by ci_service's user only (a private repository's files are kept there)", async () => {
    const folder = await newFolder();
    await chmod(folder, 0o755);
    const checkouts = await Checkouts.open(folder, source);
    const repository = { ...(await commit('octo/private', { Dockerfile: 'FROM scratch\n' })), private: true };
    (await checkouts.checkout(repository, repository.sha, OPTIONS, 'reviewed', signal)).release();
    assert.equal((await stat(folder)).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(folder, '.downloads'))).mode & 0o777, 0o700);
  });

  it('one process per folder: a second one on the same DATA_DIR is refused, saying what to do, until the first closes', async () => {
    const folder = await newFolder();
    const first = await Checkouts.open(folder, source);
    const started = Date.now();
    await assert.rejects(Checkouts.open(folder, source), /is in use by another ci_service process on this DATA_DIR: give each worker a DATA_DIR of its own/);
    assert.ok(Date.now() - started >= 10_000, 'it waited for a lock that could be stale');
    await first.close();
    const second = await Checkouts.open(folder, source);
    await second.close();
  });

  it('an entry whose name no file system can hold (4,000 bytes) fails at the context stage, naming it', async () => {
    const good = await commit('octo/long-name', { Dockerfile: 'FROM scratch\n' });
    const checkouts = await Checkouts.open(await newFolder(), {
      ...source,
      tree: source.tree.bind(source),
      blob: source.blob.bind(source),
      tarball: async () => (await import('node:stream')).Readable.from([await tarballOf({ Dockerfile: 'FROM scratch\n', [`${'n'.repeat(4000)}.txt`]: 'x' })]),
    });
    await assert.rejects(
      checkouts.checkout(good, good.sha, OPTIONS, 'reviewed', signal),
      (error: Error) => error instanceof ContextError && /^the repository has an entry "octo-crafted-abc1234\/n{30}.*" whose name is too long for a file system \(a name of 4004 bytes; at most 255 per name\): rename it$/.test(error.message),
    );
    await checkouts.close();
  });

  it('throws away a folder a stopped process left without its manifest, and starts a new generation without one', async () => {
    const folder = await newFolder();
    const checkouts = await Checkouts.open(folder, source);
    const repository = await commit('octo/crash', { Dockerfile: 'FROM scratch\n' });
    const first = await checkouts.checkout(repository, repository.sha, OPTIONS, 'reviewed', signal);
    first.release();
    await rm(`${first.root}.json`);
    await checkouts.close();
    const reopened = await Checkouts.open(folder, source);
    assert.deepEqual(await readdir(folder), ['.downloads'], 'only the (emptied) downloads folder');
    const second = await reopened.checkout(repository, repository.sha, OPTIONS, 'reviewed', signal);
    second.release();
    await reopened.close();
    assert.notEqual(second.sharedKey, first.sharedKey, 'BuildKit must not trust what it kept under the old key');
  });
});

/** GitHub's tarball shape, holding `files`. */
async function tarballOf(files: Record<string, string>): Promise<Buffer> {
  const tar = (await import('tar-stream')).default;
  const { gzipSync } = await import('node:zlib');
  const pack = tar.pack();
  pack.entry({ name: 'octo-crafted-abc1234/', type: 'directory' });
  for (const [name, content] of Object.entries(files)) pack.entry({ name: `octo-crafted-abc1234/${name}` }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return gzipSync(Buffer.concat(chunks));
}

/** GitHub's tarball shape, with a symlink to /etc and a file "inside" it. */
async function craftedTarball(): Promise<Buffer> {
  const tar = (await import('tar-stream')).default;
  const { gzipSync } = await import('node:zlib');
  const pack = tar.pack();
  pack.entry({ name: 'octo-crafted-abc1234/', type: 'directory' });
  pack.entry({ name: 'octo-crafted-abc1234/Dockerfile' }, 'FROM scratch\n');
  pack.entry({ name: 'octo-crafted-abc1234/escape', type: 'symlink', linkname: '/etc' });
  pack.entry({ name: 'octo-crafted-abc1234/escape/passwd' }, 'x');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return gzipSync(Buffer.concat(chunks));
}
