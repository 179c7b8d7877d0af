import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { contextPath, createBuildContext } from '../../src/source/context.js';
import { ContextError, SourceError } from '../../src/domain/errors.js';

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; content?: string; linkname?: string };

/** A gzipped tarball shaped like GitHub's, with whatever entries a test needs (hostile ones too). */
async function tarball(entries: Entry[]): Promise<Readable> {
  const pack = tar.pack();
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    if (type === 'file') pack.entry({ name: entry.name }, entry.content ?? '');
    else pack.entry({ name: entry.name, type, linkname: entry.linkname });
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Readable.from([gzipSync(Buffer.concat(chunks))]);
}

async function entriesOf(stream: Readable): Promise<{ name: string; type: string; content: string; linkname?: string }[]> {
  const extract = tar.extract();
  stream.pipe(extract as unknown as NodeJS.WritableStream);
  const entries = [];
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    entries.push({ name: entry.header.name, type: entry.header.type, content: Buffer.concat(chunks).toString(), linkname: entry.header.linkname ?? undefined });
  }
  return entries;
}

const ROOT = 'octo-hello-abc1234/';
const LIMIT = 1024 * 1024;
/** Limits no test below reaches, but the ones that test them. */
const ROOMY = { maxArchiveBytes: 1024 * LIMIT, maxEntries: 1000 };

describe('build context from a GitHub tarball', () => {
  it("strips GitHub's top-level folder and keeps contents, folders and symlinks", async () => {
    const context = createBuildContext(
      await tarball([
        { name: ROOT, type: 'directory' },
        { name: `${ROOT}Dockerfile`, content: 'FROM scratch\n' },
        { name: `${ROOT}src/`, type: 'directory' },
        { name: `${ROOT}src/app.js`, content: 'console.log(1)' },
        { name: `${ROOT}src/current`, type: 'symlink', linkname: 'app.js' },
        { name: `${ROOT}abs-link`, type: 'symlink', linkname: '/etc/hostname' },
      ]),
      { context: '', dockerfile: 'Dockerfile', maxBytes: LIMIT, ...ROOMY },
    );
    const entries = await entriesOf(context.stream);
    assert.deepEqual(
      entries.map(({ name, type }) => `${type} ${name}`),
      ['file Dockerfile', 'directory src', 'file src/app.js', 'symlink src/current', 'symlink abs-link'],
    );
    assert.equal(entries[2]!.content, 'console.log(1)');
    assert.equal(entries[3]!.linkname, 'app.js');
    assert.equal(entries[4]!.linkname, '/etc/hostname');
    assert.deepEqual(await context.finished, { entries: 5, bytes: 27, hasDockerfile: true });
  });

  it('keeps paths longer than the 100 bytes of a plain tar header, and longer than 255', async () => {
    const long = `${'a'.repeat(120)}/${'b'.repeat(90)}/${'c'.repeat(80)}.txt`;
    const context = createBuildContext(await tarball([{ name: `${ROOT}${long}`, content: 'deep' }]), { context: '', dockerfile: 'Dockerfile', maxBytes: LIMIT, ...ROOMY });
    const [entry] = await entriesOf(context.stream);
    assert.equal(entry!.name, long);
    assert.equal(entry!.content, 'deep');
    assert.equal((await context.finished).hasDockerfile, false);
  });

  it('selects a "context" subfolder and roots the context there', async () => {
    const context = createBuildContext(
      await tarball([
        { name: `${ROOT}README.md`, content: 'outside' },
        { name: `${ROOT}services/web/`, type: 'directory' },
        { name: `${ROOT}services/web/Dockerfile`, content: 'FROM scratch' },
        { name: `${ROOT}services/web/app/index.js`, content: '1' },
        { name: `${ROOT}services/webby/not-this.txt`, content: 'similar prefix, other folder' },
      ]),
      { context: 'services/web', dockerfile: 'Dockerfile', maxBytes: LIMIT, ...ROOMY },
    );
    assert.deepEqual((await entriesOf(context.stream)).map((entry) => entry.name), ['Dockerfile', 'app/index.js']);
    assert.equal((await context.finished).hasDockerfile, true);
  });

  it('re-roots hard links, and refuses one that points outside the context', async () => {
    const inside = createBuildContext(
      await tarball([
        { name: `${ROOT}web/a.txt`, content: 'x' },
        { name: `${ROOT}web/b.txt`, type: 'link', linkname: `${ROOT}web/a.txt` },
      ]),
      { context: 'web', dockerfile: 'Dockerfile', maxBytes: LIMIT, ...ROOMY },
    );
    const entries = await entriesOf(inside.stream);
    assert.deepEqual(entries.map(({ name, linkname }) => [name, linkname ?? null]), [['a.txt', null], ['b.txt', 'a.txt']]);

    const outside = createBuildContext(
      await tarball([
        { name: `${ROOT}secret.txt`, content: 'x' },
        { name: `${ROOT}web/b.txt`, type: 'link', linkname: `${ROOT}secret.txt` },
      ]),
      { context: 'web', dockerfile: 'Dockerfile', maxBytes: LIMIT, ...ROOMY },
    );
    outside.stream.resume();
    await assert.rejects(outside.finished, /hard link "octo-hello-abc1234\/web\/b.txt" points outside/);
  });

  for (const escape of [`${ROOT}../../etc/passwd`, '/etc/passwd', `${ROOT}a/../../outside`]) {
    it(`refuses an entry that escapes the repository: ${escape}`, async () => {
      const context = createBuildContext(await tarball([{ name: `${ROOT}ok.txt`, content: '1' }, { name: escape, content: 'evil' }]), {
        context: '',
        dockerfile: 'Dockerfile',
        maxBytes: LIMIT, ...ROOMY });
      context.stream.on('error', () => {});
      context.stream.resume();
      await assert.rejects(context.finished, (error: unknown) => error instanceof ContextError && /escapes the repository/.test(error.message));
      assert.ok(context.outcome() && 'error' in context.outcome()!);
    });
  }

  it('fails when the "context" folder is not in the repository', async () => {
    const context = createBuildContext(await tarball([{ name: `${ROOT}Dockerfile`, content: '' }]), { context: 'missing', dockerfile: 'Dockerfile', maxBytes: LIMIT, ...ROOMY });
    context.stream.on('error', () => {});
    context.stream.resume();
    await assert.rejects(context.finished, /"context" folder "missing" is not in the repository/);
  });

  it('fails as soon as the files add up to more than MAX_CONTEXT_MB', async () => {
    const context = createBuildContext(
      await tarball([
        { name: `${ROOT}a.bin`, content: 'x'.repeat(600) },
        { name: `${ROOT}b.bin`, content: 'x'.repeat(600) },
        { name: `${ROOT}c.bin`, content: 'never read' },
      ]),
      { context: '', dockerfile: 'Dockerfile', maxBytes: 1000, ...ROOMY },
    );
    context.stream.on('error', () => {});
    context.stream.resume();
    await assert.rejects(context.finished, /larger than MAX_CONTEXT_MB=0 MB \(at "b.bin"\)/);
  });

  it('fails with a clear error when the tarball is not gzip', async () => {
    const context = createBuildContext(Readable.from([Buffer.from('<html>not a tarball</html>')]), { context: '', dockerfile: 'Dockerfile', maxBytes: LIMIT, ...ROOMY });
    context.stream.on('error', () => {});
    context.stream.resume();
    await assert.rejects(context.finished, /not a valid gzip file/);
  });
});

describe('a build context is bounded, whatever the tarball holds', () => {
  const build = (stream: Readable, limits: Partial<{ maxBytes: number; maxArchiveBytes: number; maxEntries: number; context: string }>) => {
    const context = createBuildContext(stream, { context: '', dockerfile: 'Dockerfile', maxBytes: LIMIT, ...ROOMY, ...limits });
    context.stream.on('error', () => {}).resume();
    return context;
  };

  it('stops at the end-of-archive marker: what follows is neither downloaded nor inflated', async () => {
    let sentMegabytes = 0;
    const archive = (await tarball([{ name: `${ROOT}Dockerfile`, content: 'FROM scratch\n' }])) as Readable;
    const [gzipped] = (await archive.toArray()) as Buffer[];
    const { gunzipSync } = await import('node:zlib');
    const tarBytes = gunzipSync(gzipped!);
    async function* withZerosAfter() {
      yield tarBytes;
      for (; sentMegabytes < 1024; sentMegabytes += 1) yield Buffer.alloc(LIMIT);
    }
    const { createGzip } = await import('node:zlib');
    const context = build(Readable.from(withZerosAfter()).pipe(createGzip()), {});
    assert.deepEqual(await context.finished, { entries: 1, bytes: 13, hasDockerfile: true });
    assert.ok(sentMegabytes < 64, `${sentMegabytes} MB of the 1 GB of zeros after the archive were read`);
  });

  it('ends cleanly when the download ends after the marker and its padding, as git archive pads to 10 KB records', async () => {
    const archive = (await tarball([{ name: `${ROOT}Dockerfile`, content: 'FROM scratch\n' }])) as Readable;
    const { gunzipSync, gzipSync } = await import('node:zlib');
    const [gzipped] = (await archive.toArray()) as Buffer[];
    const padded = Buffer.concat([gunzipSync(gzipped!), Buffer.alloc(10 * 1024)]);
    for (const pieces of [[padded], [padded.subarray(0, 700), padded.subarray(700)]]) {
      const context = build(Readable.from([gzipSync(Buffer.concat(pieces))]), {});
      assert.deepEqual(await context.finished, { entries: 1, bytes: 13, hasDockerfile: true });
    }
  });

  it('counts every entry, those outside the context too (MAX_CONTEXT_ENTRIES)', async () => {
    const entries = Array.from({ length: 11 }, (_, n) => ({ name: `${ROOT}elsewhere/empty-${n}`, content: '' }));
    const context = build(await tarball(entries), { maxEntries: 10, context: 'app' });
    await assert.rejects(context.finished, /more than MAX_CONTEXT_ENTRIES=10 entries/);
  });

  it('counts every inflated byte, headers and files outside the context too (MAX_REPOSITORY_MB)', async () => {
    const entries = Array.from({ length: 300 }, (_, n) => ({ name: `${ROOT}elsewhere/empty-${n}`, content: '' }));
    const context = build(await tarball(entries), { maxArchiveBytes: 100 * 1024, context: 'app' });
    await assert.rejects(context.finished, /inflates to more than MAX_REPOSITORY_MB=0 MB/);
  });

  it('refuses a relative symlink that leaves the context, keeps one that stays, and keeps absolute ones as links', async () => {
    const escaping = build(await tarball([{ name: `${ROOT}app/up`, type: 'symlink', linkname: '../../etc/passwd' }]), { context: 'app' });
    await assert.rejects(escaping.finished, /symlink "up" points outside the build context \(to "..\/..\/etc\/passwd"\)/);
    const toParentOfContext = build(await tarball([{ name: `${ROOT}app/sub/up`, type: 'symlink', linkname: '../../README.md' }]), { context: 'app' });
    await assert.rejects(toParentOfContext.finished, /symlink "sub\/up" points outside the build context/);
    const inside = build(
      await tarball([
        { name: `${ROOT}app/sub/up`, type: 'symlink', linkname: '../file.txt' },
        { name: `${ROOT}app/abs`, type: 'symlink', linkname: '/usr/share/zoneinfo/UTC' },
      ]),
      { context: 'app' },
    );
    assert.equal((await inside.finished).entries, 2);
  });

  it('a gzip that holds no tar archive fails in the context stage, saying so', async () => {
    const { gzipSync } = await import('node:zlib');
    const context = build(Readable.from([gzipSync(Buffer.from('x'.repeat(2048)))]), {});
    await assert.rejects(context.finished, (error: unknown) => error instanceof ContextError && /not a valid tar archive/.test(error.message));
  });
});

/** The first `bytes` of a gzipped tarball whose second file is 2 MB: a cut there lands inside that file. */
async function startOfLargeTarball(bytes: number): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name: `${ROOT}Dockerfile` }, 'FROM scratch\n');
  pack.entry({ name: `${ROOT}large.bin` }, Buffer.alloc(2 * 1024 * 1024, 7));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return gzipSync(Buffer.concat(chunks), { level: 0 }).subarray(0, bytes);
}

/**
 * A download that breaks off inside a file must fail this one context (and so this one build), never the process:
 * node's test runner fails a test on any uncaught exception, which is what each of these used to raise.
 */
describe('a tarball download that breaks off inside a file', () => {
  async function brokenDownload(breakOff: (download: PassThrough) => void) {
    const download = new PassThrough();
    const context = createBuildContext(download, { context: '', dockerfile: 'Dockerfile', maxBytes: 10 * LIMIT, ...ROOMY });
    const engineSide = context.stream.on('error', () => {}).resume();
    download.write(await startOfLargeTarball(1024 * 1024));
    await new Promise((resolve) => setTimeout(resolve, 20));
    breakOff(download);
    return { context, download, engineSide };
  }

  it('truncated gzip (the server closes early): a retryable fetch failure saying the download broke off', async () => {
    const { context } = await brokenDownload((download) => download.end());
    await assert.rejects(context.finished, (error: unknown) => {
      assert.ok(error instanceof SourceError, String(error));
      assert.equal(error.retryable, true);
      assert.match(error.message, /tarball download broke off before its end \(unexpected end of file\)/);
      return true;
    });
  });

  it('connection reset halfway: a retryable fetch failure with the network reason', async () => {
    const { context } = await brokenDownload((download) => download.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })));
    await assert.rejects(context.finished, (error: unknown) => error instanceof SourceError && error.retryable && /broke off.*\(aborted\)/.test(error.message));
  });

  it('BUILD_TIMEOUT_S fires during a slow download: the abort itself comes through, so the build fails as timed out', async () => {
    const abort = Object.assign(new Error('canceled'), { name: 'CanceledError' });
    const { context } = await brokenDownload((download) => download.destroy(abort));
    await assert.rejects(context.finished, (error: unknown) => error === abort);
  });

  it('the engine closes the build request early: the download is closed and the context fails with that reason', async () => {
    const { context, download } = await brokenDownload((download) => download.pause());
    const closed = new Error('socket hang up');
    context.destroy(closed);
    await assert.rejects(context.finished, (error: unknown) => error === closed);
    assert.equal(download.destroyed, true);
  });
});

describe('contextPath', () => {
  it('maps archive names into the context', () => {
    assert.equal(contextPath('top/', ''), '');
    assert.equal(contextPath('top/a/b', ''), 'a/b');
    assert.equal(contextPath('top/a/b', 'a'), 'b');
    assert.equal(contextPath('top/a', 'a'), '');
    assert.equal(contextPath('top/ab/c', 'a'), undefined);
    assert.equal(contextPath('top/', 'a'), undefined);
  });
});
