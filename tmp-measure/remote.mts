import axios from 'axios';
import { GitHubSource } from '/work/main/src/github/github-source.ts';
import { Checkouts } from '/work/main/src/source/checkout.ts';
import { walk } from '/work/main/src/engine/buildkit/file-sync.ts';
let peak = 0;
const timer = setInterval(() => { const m = process.memoryUsage(); peak = Math.max(peak, m.rss); heapPeak = Math.max(heapPeak, m.heapUsed + m.external + m.arrayBuffers); }, 10);
let heapPeak = 0;
const url = 'http://127.0.0.1:18765';
const repository = { owner: 'octo', name: 'many', fullName: 'octo/many', htmlUrl: 'https://github.com/octo/many', private: false };
const sha = process.argv[2]!;
const source = new GitHubSource(axios.create({ baseURL: url, validateStatus: () => true }), url, false);
const folder = `/tmp/many/checkouts-${Date.now()}`;
const checkouts = await Checkouts.open(folder, source);
const base = process.memoryUsage().rss;
const t = performance.now();
const maxEntries = Number(process.argv[3] ?? 200_000);
const checkout = await checkouts.checkout(repository, sha, { context: '', dockerfile: 'Dockerfile', maxBytes: 1 << 30, maxArchiveBytes: 1 << 30, maxEntries }, 'reviewed', new AbortController().signal).catch((e) => { console.log('error', e.message); return undefined; });
console.log('checkout', Math.round(performance.now() - t), 'ms', checkout?.summary, 'peak MB', Math.round(peak / 1e6), 'heap+ext peak', Math.round(heapPeak / 1e6), 'base', Math.round(base / 1e6));
if (checkout) {
  const w = performance.now();
  const walked = await walk(checkout.entries, { includes: [], excludes: [], followPaths: [] });
  console.log('walk', walked.length, Math.round(performance.now() - w), 'ms; peak MB', Math.round(peak / 1e6));
  checkout.release();
  // again: the unchanged path (manifest read)
  const again = await checkouts.checkout(repository, sha, { context: '', dockerfile: 'Dockerfile', maxBytes: 1 << 30, maxArchiveBytes: 1 << 30, maxEntries }, 'reviewed', new AbortController().signal);
  console.log('again', again.fetched, 'peak MB', Math.round(peak / 1e6), 'heap+ext peak', Math.round(heapPeak / 1e6));
  again.release();
}
clearInterval(timer);
await checkouts.close();
