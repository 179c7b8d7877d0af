import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CheckoutEntry } from '../../src/source/checkout.js';
import { walk } from '../../src/engine/buildkit/file-sync.js';

function entries(paths: string[], symlinks: Record<string, string> = {}): CheckoutEntry[] {
  return paths.map((name) => {
    const linkname = symlinks[name];
    const type = linkname !== undefined ? 'symlink' : name.endsWith('/') ? 'directory' : 'file';
    return { path: name.replace(/\/$/, ''), type, mode: 0o644, size: 1, mtimeSeconds: 1, linkname: linkname ?? '', blob: '' };
  });
}

const names = (walked: CheckoutEntry[]) => walked.map((entry) => entry.path);
const none = { includes: [], excludes: [], followPaths: [] };

describe('file sync walk', () => {
  it("sends fsutil's walk order: each folder's names by their bytes, a folder before what it holds", async () => {
    const tree = entries(['b.txt', 'a.txt', 'a/', 'a/z', 'a/B', 'Z', 'é', 'a-b']);
    assert.deepEqual(names(await walk(tree, none)), ['Z', 'a', 'a/B', 'a/z', 'a-b', 'a.txt', 'b.txt', 'é']);
    // UTF-8's order, not UTF-16's: U+FFFD (EF BF BD) before U+1F600 (F0 9F 98 80), though its UTF-16 unit is higher.
    assert.deepEqual(names(await walk(entries(['\u{1F600}', '\uFFFD', 'x/\u{1F600}', 'x/\uFFFD']), none)), ['x', 'x/\uFFFD', 'x/\u{1F600}', '\uFFFD', '\u{1F600}']);
  });

  it('adds a folder the tarball did not list before what it holds', async () => {
    assert.deepEqual(names(await walk(entries(['deep/er/file']), none)), ['deep', 'deep/er', 'deep/er/file']);
  });

  it(".dockerignore's excludes, with an exception inside an excluded folder", async () => {
    const tree = entries(['node_modules/', 'node_modules/x.js', 'logs/', 'logs/keep.log', 'logs/drop.log', 'src/', 'src/a.ts', 'src/a.test.ts']);
    const excludes = ['node_modules', 'logs', '!logs/keep.log', '**/*.test.ts'];
    assert.deepEqual(names(await walk(tree, { ...none, excludes })), ['logs', 'logs/keep.log', 'src', 'src/a.ts']);
  });

  it('includes and follow paths take a path with the folders on the way to it, and what a symlink points to', async () => {
    const tree = entries(['Dockerfile', 'docker/', 'docker/Dockerfile.real', 'docker/other', 'src/', 'src/a'], { Dockerfile: 'docker/Dockerfile.real' });
    assert.deepEqual(names(await walk(tree, { ...none, followPaths: ['Dockerfile', 'Dockerfile.dockerignore'] })), ['Dockerfile', 'docker', 'docker/Dockerfile.real']);
    assert.deepEqual(names(await walk(tree, { ...none, includes: ['src'] })), ['src', 'src/a']);
    assert.deepEqual(names(await walk(tree, { ...none, includes: ['docker/*.real'] })), ['docker', 'docker/Dockerfile.real']);
  });

  it('matches the worst glob of each kind in linear time: a COPY source and a .dockerignore line against names of 3,000 characters', async () => {
    const worst = '*a*a*a*a*a*a*a*a*a*a*a*a*b';
    const tree = entries(Array.from({ length: 200 }, (_, n) => `${'a'.repeat(2990)}${String(n).padStart(10, '0')}`));
    const started = performance.now();
    assert.deepEqual(await walk(tree, { ...none, followPaths: [worst], excludes: [worst, `!${worst}`] }), []);
    assert.ok(performance.now() - started < 2000, `400,000 a's against each pattern took ${Math.round(performance.now() - started)} ms`);
  });

  it('refuses more patterns than it matches, and a pattern longer than it matches, saying which', async () => {
    await assert.rejects(walk([], { ...none, excludes: Array.from({ length: 1001 }, (_, n) => `f${n}`) }), /\.dockerignore: 1001 patterns, more than the 1000 ci_service matches/);
    await assert.rejects(walk([], { ...none, followPaths: ['a'.repeat(1025)] }), /is longer than 1024 characters/);
  });
});
