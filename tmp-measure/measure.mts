import axios from 'axios';
import path from 'node:path';
import { GitHubStandIn } from '/work/main/test/support/github-stand-in.ts';
import { GitHubSource } from '/work/main/src/github/github-source.ts';
import { Checkouts } from '/work/main/src/source/checkout.ts';
import { walk } from '/work/main/src/engine/buildkit/file-sync.ts';
let peak = 0;
const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
const github = await new GitHubStandIn().start();
const repository = await github.addRepository('octo/many', '/tmp/many/repo');
console.log('committed');
const source = new GitHubSource(axios.create({ baseURL: github.url, validateStatus: () => true }), github.url, false);
const folder = `/tmp/many/checkouts-${Date.now()}`;
const checkouts = await Checkouts.open(folder, source);
const base = process.memoryUsage().rss;
const t = performance.now();
const checkout = await checkouts.checkout(repository, repository.sha, { context: '', dockerfile: 'Dockerfile', maxBytes: 1 << 30, maxArchiveBytes: 1 << 30, maxEntries: 200_000 }, 'reviewed', new AbortController().signal).catch((e) => { console.log('error', e.message); return undefined; });
console.log('checkout', Math.round(performance.now() - t), 'ms', checkout?.summary, 'peak MB', Math.round(peak / 1e6), 'base', Math.round(base / 1e6));
if (checkout) {
  const w = performance.now();
  const walked = await walk(checkout.entries, { includes: [], excludes: [], followPaths: [] });
  console.log('walk', walked.length, Math.round(performance.now() - w), 'ms; peak MB', Math.round(peak / 1e6));
  checkout.release();
}
clearInterval(timer);
await checkouts.close();
await github.close();
