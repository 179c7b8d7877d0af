/**
 * ci_service benchmarks, side by side with the physical limit on the same machine.
 *   npm run bench                      # everything (about half an hour; e2e alone takes 10 minutes)
 *   npm run bench -- ack throughput    # some: ack, throughput, e2e, rebuild, cache, memory, hosts, stores
 *   DOCKER_HOST=unix:///… BENCH_CLI_ROOT=/var/cache/ci-service/trixie npm run bench -- e2e rebuild
 *                                      # another engine of the matrix, against its own CLI inside its root
 *   BENCH_QUICK=1 npm run bench -- e2e # every row, at a size that only shows the code runs (CI does this)
 * Real Docker engine, real registry (Debian's docker-registry), the GitHub stand-in, and the daemon
 * as `npm start` runs it. Figures and method: bench/README.md.
 */
import autocannon from 'autocannon';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { BuildView } from '../src/http/build-view.js';
import { loadConfig } from '../src/config.js';
import { startDaemon, type Daemon } from '../test/support/daemon.js';
import { BUSYBOX_IMAGE, docker, ENGINE_HOST, ensureBusyboxImage, secondEngine } from '../test/support/docker-environment.js';
import { examplePullRequest, mergedPullRequest, sendDelivery, signature256 } from '../test/support/deliveries.js';
import { GitHubStandIn, type StandInRepository } from '../test/support/github-stand-in.js';
import { LocalPostgres } from '../test/support/postgres.js';
import { PostgresBuildStore } from '../src/queue/postgres-build-store.js';
import { freePort, LocalRegistry, waitFor } from '../test/support/registry.js';
import { pushPlatformBase } from '../test/support/platform-base.js';

const run = promisify(execFile);
const SECRET = 'bench-secret';
const MB = 1024 * 1024;
/**
 * BENCH_QUICK: every section produces every row, at sizes and counts that only show the code still runs (what
 * CI checks); its figures mean nothing.
 */
const QUICK = Boolean(process.env.BENCH_QUICK);
const PAIRS = Number(process.env.BENCH_PAIRS ?? (QUICK ? 1 : 9));
/** Sizes scaled down in quick mode. */
const size = (bytes: number) => (QUICK ? Math.max(64 * 1024, Math.floor(bytes / 64)) : bytes);
const sections = process.argv.slice(2).length ? process.argv.slice(2) : ['ack', 'throughput', 'e2e', 'rebuild', 'cache', 'memory', 'hosts'];
// `stores` is a part of `hosts`, on its own.
/**
 * The docker CLI side: the engine's own client, which builds with BuildKit (DOCKER_BUILDKIT=1) and sends the
 * context over the session's file sync. For Debian 12's engine, Debian 12's client (the other `docker` on PATH
 * needs buildx, which is not here); for an engine in a root of its own (BENCH_CLI_ROOT, Debian 13's), that
 * root's client, run there with chroot, on folders under the root (the bench works there then).
 */
const DOCKER_CLI = process.env.BENCH_DOCKER_CLI ?? '/usr/bin/docker';
const CLI_ROOT = process.env.BENCH_CLI_ROOT;
/** A path of this machine as the CLI sees it: inside its root, the root's own prefix goes. */
const cliPath = (hostPath: string) => (CLI_ROOT && hostPath.startsWith(`${CLI_ROOT}/`) ? hostPath.slice(CLI_ROOT.length) : hostPath);
/** This machine's Debian 12 client, for the engine under test (or `dockerHost`). */
const cliEnv = (dockerHost = ENGINE_HOST) => ({ ...process.env, DOCKER_BUILDKIT: '1', DOCKER_HOST: dockerHost });
/** The engine's own CLI (in its root, with BENCH_CLI_ROOT), with the engine under test. */
function dockerCli(args: string[]) {
  const maxBuffer = 64 * MB;
  if (!CLI_ROOT) return run(DOCKER_CLI, args, { env: cliEnv(), maxBuffer });
  const socket = `unix://${cliPath(ENGINE_HOST.replace(/^unix:\/\//, ''))}`;
  return run('chroot', [CLI_ROOT, 'env', `DOCKER_HOST=${socket}`, 'DOCKER_BUILDKIT=1', 'HOME=/root', '/usr/bin/docker', ...args], { maxBuffer });
}
/** A version no earlier run used: versions are immutable, so a benchmark that re-runs needs new ones. */
const freshVersion = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const spread = (values: number[], digits = 1) =>
  `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;

let workDir = '';
let github: GitHubStandIn;
let registry: LocalRegistry;

/** A folder of incompressible files adding up to `bytes`, plus a Dockerfile that copies them. */
async function makeContext(name: string, bytes: number): Promise<string> {
  const dir = path.join(workDir, name);
  await mkdir(path.join(dir, 'data'), { recursive: true });
  const fileSize = Math.min(bytes, 4 * MB);
  for (let written = 0, n = 0; written < bytes; written += fileSize, n += 1) {
    const out = createWriteStream(path.join(dir, 'data', `blob-${n}.bin`));
    for (let chunk = 0; chunk < fileSize; chunk += MB) out.write(randomBytes(Math.min(MB, fileSize - chunk)));
    await new Promise((resolve) => out.end(resolve));
  }
  await writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\nCOPY . /app\n');
  return dir;
}

/** A context of `count` empty files, a thousand to a folder: what costs memory per entry, not per byte. */
async function makeManyFiles(name: string, count: number): Promise<string> {
  const dir = path.join(workDir, name);
  for (let n = 0; n < count; n += 1) {
    const folder = path.join(dir, `d${Math.floor(n / 1000)}`);
    if (n % 1000 === 0) await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, `f${n % 1000}`), '');
  }
  await writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\nCOPY . /app\n');
  return dir;
}

/** A unique commit of `base` (a nonce file, its own version), so no build cache helps. */
async function uniqueCopy(base: string, service: string, version: string): Promise<string> {
  const dir = path.join(workDir, `copy-${randomUUID()}`);
  await run('cp', ['-al', base, dir]); // hard links: fast, and the build still reads every byte
  await writeFile(path.join(dir, 'nonce.txt'), randomUUID());
  await writeFile(path.join(dir, 'dockerInfo.json'), JSON.stringify({ service_name: service, version }));
  return dir;
}

/** A new commit of `base` on the stand-in, its tarball made ahead (as GitHub's codeload has one). */
async function newCommit(fullName: string, base: string, service: string, version: string): Promise<StandInRepository> {
  return github.addRepository(fullName, await uniqueCopy(base, service, version), { prepareTarball: true });
}

/** Sends the merge of `repository`'s commit and returns the build it queued. */
async function sendMerge(target: Daemon, repository: StandInRepository): Promise<string> {
  const response = await sendDelivery(target.url, mergedPullRequest(repository, repository.sha), { secret: SECRET });
  if (response.status !== 202) throw new Error(`delivery answered ${response.status}`);
  return ((await response.json()) as { build: BuildView }).build.id;
}

/** The daemon as `npm start` runs it; a worker (CI_ROLE=worker) serves no HTTP, so it is not waited for. */
async function daemon(extra: Record<string, string> = {}, waitUntilUp = true): Promise<Daemon & { env: Record<string, string> }> {
  const env = {
    WEBHOOK_SECRET: SECRET,
    GITHUB_API_URL: github.url,
    REGISTRY: registry.address,
    DATA_DIR: await mkdtemp(path.join(workDir, 'data-')),
    MAX_QUEUED_BUILDS: '1000000',
    ...extra,
  };
  return { ...(await startDaemon(env, { compiled: true, quiet: true, waitUntilUp })), env };
}

async function waitForBuild(target: Daemon, id: string): Promise<BuildView> {
  return target.waitForBuild(id, (build) => build.status === 'succeeded' || build.status === 'failed', 30 * 60_000);
}

// ---------------------------------------------------------------------------------------------- ack

interface Signed {
  body: string;
  signature: string;
}

function signed(payload: unknown): Signed {
  const body = JSON.stringify(payload);
  return { body, signature: signature256(SECRET, body) };
}

/** Many signed deliveries, each with its own delivery id; `bodies` are used in turn. */
async function load(url: string, bodies: Signed[], options: { connections: number; amount?: number; duration?: number }) {
  let next = 0;
  const result = await autocannon({
    url: `${url}/webhook`,
    method: 'POST',
    connections: options.connections,
    ...(options.amount ? { amount: options.amount } : { duration: options.duration ?? 10 }),
    requests: [
      {
        setupRequest: (request) => {
          const delivery = bodies[next++ % bodies.length]!;
          return {
            ...request,
            body: delivery.body,
            headers: {
              'content-type': 'application/json',
              'x-github-event': 'pull_request',
              'x-github-delivery': randomUUID(),
              'x-hub-signature-256': delivery.signature,
            },
          };
        },
      },
    ],
  });
  return { p50: result.latency.p50, p99: result.latency.p99, rps: result.requests.average, errors: result.errors + result.timeouts, non2xx: result.non2xx };
}

async function benchAck(lines: string[]): Promise<void> {
  const notMerged = [signed(examplePullRequest('assigned'))];
  // Merged deliveries of one repository whose GitHub never answers: each is a new commit, so each is a
  // new build, stored and queued behind the first, which waits on GitHub; what is timed is the ack
  // itself, not thousands of builds.
  const waiting = { owner: 'bench', name: 'waiting', fullName: 'bench/waiting', htmlUrl: 'https://github.com/bench/waiting', private: false };
  github.hang(/^\/repos\/bench\/waiting\//);
  const newCommits = (count: number) => Array.from({ length: count }, () => signed(mergedPullRequest(waiting, randomBytes(20).toString('hex'))));
  const big = await makeContext('ack-200mb', size(200 * MB));

  lines.push('| state | delivery | concurrency | p50 ms | p99 ms | errors | queued builds after |', '| --- | --- | --- | --- | --- | --- | --- |');
  // The floor: what the load generator and the kernel alone cost, against a server that does nothing;
  // during a build, a daemon that takes no deliveries builds the same 200 MB commit on the same cores.
  const bare = await bareServer();
  for (const state of ['idle', 'during a 200 MB build'] as const) {
    for (const connections of [1, 8]) {
      await load(bare.url, newCommits(500), { connections: 8, amount: 2500 });
      const line = async () => `| floor: a bare node:http server answering 202, ${state} | merged | ${connections} | ${await threeRuns(bare.url, () => newCommits(1000), connections)} | – |`;
      const builder = state === 'idle' ? undefined : await daemon({ BUILD_CONCURRENCY: '1' });
      lines.push(builder ? await whileBuilding(builder, big, line) : await line());
      builder?.child.kill('SIGKILL');
    }
  }
  bare.kill();
  for (const state of ['idle', 'during a 200 MB build']) {
    for (const kind of ['not merged', 'merged'] as const) {
      for (const connections of [1, 8]) {
        // A fresh daemon for each line: every line starts with an empty queue (and a build of its own).
        const target = await daemon({ BUILD_CONCURRENCY: '2' });
        // Warmed up as a running daemon is (its code compiled by V8), with a first 500 builds queued.
        await load(target.url, notMerged, { connections: 8, amount: 2000 });
        await load(target.url, newCommits(500), { connections: 8, amount: 500 });
        const line = async () => {
          const timed = await threeRuns(target.url, () => (kind === 'merged' ? newCommits(1000) : notMerged), connections);
          const { queue } = (await (await fetch(`${target.url}/healthz`)).json()) as { queue: { queued: number } };
          return `| ${state} | ${kind} | ${connections} | ${timed} | ${queue.queued} |`;
        };
        lines.push(state === 'idle' ? await line() : await whileBuilding(target, big, line));
        target.child.kill('SIGKILL');
      }
    }
  }
  await acksAfterBuilds(lines, notMerged);
}

/**
 * A merged delivery sent the moment the previous build of its repository ended (seen on GET /builds/:id, polled
 * every 20 ms), while the engine does what it does after a build: each ack timed alone, one connection. The
 * next commit is made on the stand-in while the build before it runs, so only the ack is timed.
 */
async function acksAfterBuilds(lines: string[], warmUp: Signed[]): Promise<void> {
  const builds = QUICK ? 3 : 21;
  const target = await daemon({ BUILD_CONCURRENCY: '1' });
  await load(target.url, warmUp, { connections: 8, amount: 2000 });
  const base = await makeContext('ack-after-build', 64 * 1024);
  const acks: number[] = [];
  let next = await newCommit('bench/after-build', base, 'bench/after-build', freshVersion('after-0'));
  for (let n = 1; n <= builds; n += 1) {
    const started = performance.now();
    const id = await sendMerge(target, next);
    if (n > 1) acks.push(performance.now() - started);
    next = await newCommit('bench/after-build', base, 'bench/after-build', freshVersion(`after-${n}`));
    for (;;) {
      const { build } = (await (await fetch(`${target.url}/builds/${id}`)).json()) as { build: BuildView };
      if (build.status === 'failed') throw new Error(`a build of the after-build acks failed: ${build.error}`);
      if (build.status === 'succeeded') break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  target.child.kill('SIGKILL');
  lines.push(
    '',
    '| merged delivery sent the moment the previous build ended | acks | ack ms, median (min–max) |',
    '| --- | --- | --- |',
    `| a 64 KB context's build just succeeded | ${acks.length} | ${spread(acks)} |`,
  );
}

/** Three runs of 1,000 deliveries, each with fresh `bodies()`: the p50, p99 and errors cells of a line. */
async function threeRuns(url: string, bodies: () => Signed[], connections: number): Promise<string> {
  const runs = [];
  for (let attempt = 0; attempt < 3; attempt += 1) runs.push(await load(url, bodies(), { connections, amount: 1000 }));
  const errors = runs.reduce((sum, r) => sum + r.errors + r.non2xx, 0);
  return `${spread(runs.map((r) => r.p50))} | ${spread(runs.map((r) => r.p99))} | ${errors}`;
}

/** A node:http server in a process of its own that reads each request and answers 202 at once. */
async function bareServer(): Promise<{ url: string; kill: () => void }> {
  const port = await freePort();
  const code = `require('node:http').createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(202, { 'content-type': 'application/json' }); res.end('{}'); }); }).listen(${port}, '127.0.0.1');`;
  const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(url, { method: 'POST' }).catch(() => undefined))?.status === 202, 5000, 'the bare server');
  return { url, kill: () => child.kill() };
}

/**
 * Measures a line while `target` builds a new commit of `context` (sent, and running, before the first run);
 * the line says so when the build ended before its last run did.
 */
async function whileBuilding(target: Daemon, context: string, measure: () => Promise<string>): Promise<string> {
  // A version of its own: the same one from a new commit would be refused before building (immutable versions).
  const version = freshVersion('v');
  const repository = await newCommit('bench/big', context, 'bench/ack-big', version);
  await settleDisk();
  const id = await sendMerge(target, repository);
  await target.waitForBuild(id, (build) => build.status === 'running');
  let line = await measure();
  const status = (await target.waitForBuild(id, () => true)).status;
  if (status !== 'running') line += ` (the build had ${status} before the last run ended)`;
  const ended = await waitForBuild(target, id);
  if (ended.status !== 'succeeded') throw new Error(`the build under the line failed: ${ended.error}`);
  await removeImage(`${registry.address}/bench/ack-big:${version}`);
  return line;
}

// --------------------------------------------------------------------------------------- throughput

async function benchThroughput(lines: string[]): Promise<void> {
  await settleDisk(); // the images the ack section removed are still being written out
  const target = await daemon();
  const bodies = [signed(examplePullRequest('assigned'))];
  await load(target.url, bodies, { connections: 8, duration: 2 }); // warm-up
  lines.push('| run | deliveries/s | p99 ms | errors and non-2xx |', '| --- | --- | --- | --- |');
  const rates = [];
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    const result = await load(target.url, bodies, { connections: 64, duration: 10 });
    rates.push(result.rps);
    lines.push(`| ${attempt} | ${result.rps.toFixed(0)} | ${result.p99} | ${result.errors + result.non2xx} |`);
  }
  lines.push(`| median (min–max) | ${spread(rates, 0)} | | |`);
  target.child.kill('SIGKILL');
}

// ------------------------------------------------------------------------------------ end to end

async function tagVisible(name: string, tag: string): Promise<boolean> {
  const headers = { accept: 'application/vnd.docker.distribution.manifest.v2+json' };
  return (await fetch(`${registry.url}/v2/${name}/manifests/${tag}`, { method: 'HEAD', headers })).ok;
}

/** Each run builds hundreds of MB: without this, a few runs of the benchmark fill the engine's disk. */
async function removeImage(reference: string): Promise<void> {
  await docker.getImage(reference).remove().catch(() => {}); // not there: nothing to remove
}

/**
 * Writes out what preparing a run left in the page cache (the stand-in's git commit and tarball are
 * hundreds of MB), so that neither side's timing pays for the other's preparation.
 */
async function settleDisk(): Promise<void> {
  await run('sync');
}

/**
 * From sending the delivery to the moment the daemon recorded the pushed digest (its `finishedAt`, on this
 * machine's clock): the push had returned, as the docker CLI side's clock stops when its push returns.
 * Polling the registry instead would either add its interval or load the two cores with requests.
 */
async function throughCiService(target: Daemon, base: string, label: string, n: number): Promise<number> {
  // A repository (and image name) of its own each run: cold, as the CLI's new folder is.
  const name = `${label}-${randomUUID().slice(0, 8)}`;
  const version = freshVersion(`run-${n}`);
  return throughCommit(target, await uniqueCopy(base, `bench/ci-${name}`, version), name, version);
}

/** Like throughCiService, for a folder already prepared as the commit (its dockerInfo.json names bench/ci-<label>). */
async function throughCommit(target: Daemon, dir: string, label: string, version: string): Promise<number> {
  const repository = await github.addRepository(`bench/${label}`, dir, { prepareTarball: true });
  await settleDisk();
  const started = Date.now();
  const done = await waitForBuild(target, await sendMerge(target, repository));
  if (done.status !== 'succeeded') throw new Error(`build failed: ${done.error}`);
  if (!(await tagVisible(`bench/ci-${label}`, version))) throw new Error(`bench/ci-${label}:${version} is not in the registry`);
  await removeImage(`${registry.address}/bench/ci-${label}:${version}`);
  return (Date.parse(done.finishedAt!) - started) / 1000;
}

async function throughDockerCli(base: string, label: string, n: number): Promise<number> {
  const version = freshVersion(`run-${n}`);
  const dir = await uniqueCopy(base, `bench/cli-${label}`, version);
  return timedCliBuild(dir, `${registry.address}/bench/cli-${label}:${version}`);
}

/** `docker build && docker push` of `dir` with BuildKit, timed until the push returns; the image is removed after. */
async function timedCliBuild(dir: string, reference: string): Promise<number> {
  // The same OCI labels ci_service sets, so both sides build the same image.
  const labels = ['revision=0', 'source=https://github.com/bench/x', `created=${new Date().toISOString()}`, 'version=bench'].flatMap((l) => ['--label', `org.opencontainers.image.${l}`]);
  await settleDisk();
  const started = performance.now();
  await dockerCli(['build', '-q', '-t', reference, ...labels, cliPath(dir)]);
  await dockerCli(['push', '-q', reference]);
  const seconds = (performance.now() - started) / 1000;
  await removeImage(reference);
  return seconds;
}

async function benchEndToEnd(lines: string[]): Promise<void> {
  const target = await daemon({ BUILD_CONCURRENCY: '1' });
  lines.push('| context | pairs | ci_service s | DOCKER_BUILDKIT=1 docker build && push s | ratio of medians | pair ratios |', '| --- | --- | --- | --- | --- | --- |');
  for (const [label, bytes] of [['small', 64 * 1024], ['200mb', size(200 * MB)]] as const) {
    const base = await makeContext(`e2e-${label}`, bytes);
    // Both sides cold: the CLI sends a new folder each run, and ci_service builds a new repository each run (no
    // kept checkout, no context BuildKit kept from its last build): a first build of a project on a host.
    const [ours, theirs] = await alternate(PAIRS, (n) => throughCiService(target, base, label, n), (n) => throughDockerCli(base, label, n));
    lines.push(comparisonLine(label, ours, theirs));
  }
  target.child.kill('SIGKILL');
}

/** `pairs` alternating runs of two sides: [first side's seconds, second side's]. */
async function alternate(pairs: number, a: (n: number) => Promise<number>, b: (n: number) => Promise<number>): Promise<[number[], number[]]> {
  const as: number[] = [];
  const bs: number[] = [];
  for (let n = 0; n < pairs; n += 1) {
    // Alternate who goes first, so neither side always meets a warmer machine.
    if (n % 2 === 0) {
      as.push(await a(n));
      bs.push(await b(n));
    } else {
      bs.push(await b(n));
      as.push(await a(n));
    }
  }
  return [as, bs];
}

function comparisonLine(label: string, ours: number[], theirs: number[]): string {
  const ratios = ours.map((value, i) => value / theirs[i]!);
  return `| ${label} | ${ours.length} | ${spread(ours, 2)} | ${spread(theirs, 2)} | ${(median(ours) / median(theirs)).toFixed(3)} | ${ratios.map((r) => r.toFixed(2)).join(', ')} |`;
}

/**
 * A project whose dependencies take a while (a RUN over 20 MB of data) and whose source changes: with the
 * layer cache, a one-line change in src/ rebuilds only the last step.
 */
async function makeProject(name: string, from: string): Promise<string> {
  const dir = await makeContext(name, size(20 * MB));
  await mkdir(path.join(dir, 'src'));
  await writeFile(path.join(dir, 'src', 'app.txt'), 'line 1\n');
  await writeFile(
    path.join(dir, 'Dockerfile'),
    `FROM ${from}\nCOPY data /data\nRUN busybox sha256sum /data/* > /checksums && sleep 2\nCOPY src /src\n`,
  );
  return dir;
}

/** Replaces src/app.txt with a new last line; a new file, since copies of the project share inodes (cp -al). */
async function changeOneLine(dir: string, n: number): Promise<void> {
  const file = path.join(dir, 'src', 'app.txt');
  await rm(file);
  await writeFile(file, `line 1\nchange ${n}\n`);
}

async function benchRebuild(lines: string[]): Promise<void> {
  await ensureBusyboxImage();
  const target = await daemon({ BUILD_CONCURRENCY: '1' });
  const base = await makeProject('rebuild', BUSYBOX_IMAGE);
  // The CLI's fastest honest run: always the same folder, so its file sync sends only what changed.
  const cliDir = path.join(workDir, 'rebuild-cli');
  await run('cp', ['-a', base, cliDir]);
  // Both sides build once first: what is timed is the rebuild.
  const warm = freshVersion('warm');
  await throughCommit(target, await uniqueCopy(base, 'bench/ci-rebuild', warm), 'rebuild', warm);
  await timedCliBuild(cliDir, `${registry.address}/bench/cli-rebuild:${warm}`);
  lines.push('| project | pairs | ci_service s | DOCKER_BUILDKIT=1 docker build && push s | ratio of medians | pair ratios |', '| --- | --- | --- | --- | --- | --- |');
  const [ours, theirs] = await alternate(
    PAIRS,
    async (n) => {
      const version = freshVersion(`run-${n}`);
      const copy = await uniqueCopy(base, 'bench/ci-rebuild', version);
      await changeOneLine(copy, n);
      return throughCommit(target, copy, 'rebuild', version);
    },
    async (n) => {
      await changeOneLine(cliDir, n);
      return timedCliBuild(cliDir, `${registry.address}/bench/cli-rebuild:${freshVersion(`run-${n}`)}`);
    },
  );
  lines.push(comparisonLine('20 MB of data, a one-line change in src/', ours, theirs));
  target.child.kill('SIGKILL');
}

/**
 * A build host that never built the image (the second engine, its build cache emptied before every run),
 * with the registry's layer cache and without it ("cache_from": false).
 */
async function benchCache(lines: string[]): Promise<void> {
  const engine = await secondEngine();
  if (!('host' in engine)) throw new Error(engine.unavailable);
  await ensureBusyboxImage();
  // The base comes from the registry, as it does for build hosts.
  const base = `${registry.address}/bench/base:1`;
  await run(DOCKER_CLI, ['tag', BUSYBOX_IMAGE, base]);
  await run(DOCKER_CLI, ['push', '-q', base]);
  await run(DOCKER_CLI, ['pull', '-q', base], { env: cliEnv(engine.host) });
  const project = await makeProject('cache', base);
  const withLatest = async (dir: string, version: string, cacheFrom?: false) => {
    const spec = { service_name: 'bench/ci-cache', version, tags: ['latest'], ...(cacheFrom === false ? { cache_from: false } : {}) };
    await writeFile(path.join(dir, 'dockerInfo.json'), JSON.stringify(spec));
    return dir;
  };
  // The first host builds and pushes the image, with its cache inline.
  const first = await daemon({ BUILD_CONCURRENCY: '1' });
  await throughCommit(first, await withLatest(await uniqueCopy(project, 'bench/ci-cache', 'first'), 'first'), 'cache', 'first');
  first.child.kill('SIGKILL');

  const cold = await daemon({ BUILD_CONCURRENCY: '1', DOCKER_HOST: engine.host });
  const emptySecondEngine = async () => {
    for (const image of await engine.docker.listImages()) {
      for (const tag of image.RepoTags ?? []) if (tag.includes('/bench/ci-cache:')) await engine.docker.getImage(tag).remove().catch(() => {});
    }
    await run(DOCKER_CLI, ['builder', 'prune', '-af'], { env: cliEnv(engine.host) });
  };
  const coldBuild = async (version: string, cacheFrom?: false) => {
    await emptySecondEngine();
    const copy = await withLatest(await uniqueCopy(project, 'bench/ci-cache', version), version, cacheFrom);
    await changeOneLine(copy, Number(version.replace(/\D/g, '')));
    return throughCommit(cold, copy, 'cache', version);
  };
  lines.push('| second engine, build cache emptied | pairs | with the registry cache s | without it s | ratio of medians | pair ratios |', '| --- | --- | --- | --- | --- | --- |');
  const [withCache, without] = await alternate(PAIRS, (n) => coldBuild(`with-${n}`), (n) => coldBuild(`without-${n}`, false));
  lines.push(comparisonLine('20 MB of data, a one-line change in src/', withCache, without));
  cold.child.kill('SIGKILL');
  await emptySecondEngine();
  await removeImage(base);
}

// ---------------------------------------------------------------------------------------- memory

/** Peak resident set of a process since it started (VmHWM). */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

async function benchMemory(lines: string[]): Promise<void> {
  lines.push('| context | daemon peak RSS MB | build |', '| --- | --- | --- |');
  // Idle: started, its engine described, nothing delivered yet (the README's target is for this line).
  const idle = await daemon({ BUILD_CONCURRENCY: '1' });
  await new Promise((resolve) => setTimeout(resolve, 3000));
  lines.push(`| none: idle after start | ${(await peakRssMb(idle.child.pid!)).toFixed(1)} | – |`);
  idle.child.kill('SIGKILL');
  await idleByRole(lines);
  // Entries cost memory of their own: as many as MAX_CONTEXT_ENTRIES's default lets in (with their folders), and more
  // than it does (refused, after holding what came before the limit).
  const defaultEntries = loadConfig({}).maxContextEntries;
  const files = QUICK ? 2_000 : defaultEntries - Math.ceil(defaultEntries / 1000) - 10;
  const refused = QUICK ? 3_000 : Math.round(defaultEntries * 1.25);
  const contexts: [string, () => Promise<string>, Record<string, string>][] = [
    ['small (64 KB)', () => makeContext('memory-small', 64 * 1024), {}],
    ['1 GB', () => makeContext('memory-1g', size(1024 * MB)), {}],
    [`${files.toLocaleString('en')} empty files`, () => makeManyFiles(`memory-files-${files}`, files), QUICK ? { MAX_CONTEXT_ENTRIES: '2500' } : {}],
    [`${refused.toLocaleString('en')} empty files (over MAX_CONTEXT_ENTRIES)`, () => makeManyFiles(`memory-files-${refused}`, refused), QUICK ? { MAX_CONTEXT_ENTRIES: '2500' } : {}],
  ];
  for (const [label, make, env] of contexts) {
    const base = await make();
    const version = freshVersion(`m-${label.length}`);
    const repository = await newCommit('bench/memory', base, 'bench/memory', version);
    const target = await daemon({ BUILD_CONCURRENCY: '1', ...env });
    const done = await waitForBuild(target, await sendMerge(target, repository));
    lines.push(`| ${label} | ${(await peakRssMb(target.child.pid!)).toFixed(1)} | ${done.status}${done.status === 'failed' ? `: ${(done.error ?? '').slice(0, 60)}` : ''} |`);
    target.child.kill('SIGKILL');
    await removeImage(`${registry.address}/bench/memory:${version}`);
  }
}

/**
 * What each role holds idle, on PostgreSQL (CI_ROLE server and worker need it), and the floor under them: a bare
 * Node 24 that has only loaded the libraries the design names for the daemon, which any role that serves and builds
 * carries. Each is the peak (VmHWM) 3 s after it is up: a server answering HTTP, a worker recorded as seen.
 */
async function idleByRole(lines: string[]): Promise<void> {
  const floor = spawn(process.execPath, ['--max-semi-space-size=8', '--input-type=module', '-e', `${DESIGN_LIBRARIES.map((name) => `await import('${name}');`).join(' ')} setInterval(() => {}, 1000);`], {
    cwd: path.join(import.meta.dirname, '..'),
    stdio: 'ignore',
  });
  await new Promise((resolve) => setTimeout(resolve, 3000));
  lines.push(`| floor: Node 24 with ${DESIGN_LIBRARIES.join(', ')} loaded, nothing else | ${(await peakRssMb(floor.pid!)).toFixed(1)} | – |`);
  floor.kill('SIGKILL');
  const postgres = await new LocalPostgres().start();
  try {
    const server = await daemon({ CI_ROLE: 'server', DATABASE_URL: await postgres.createDatabase() });
    await new Promise((resolve) => setTimeout(resolve, 3000));
    lines.push(`| none: CI_ROLE=server idle after start (PostgreSQL) | ${(await peakRssMb(server.child.pid!)).toFixed(1)} | – |`);
    server.child.kill('SIGKILL');
    const url = await postgres.createDatabase();
    const worker = await daemon({ CI_ROLE: 'worker', DATABASE_URL: url, WORKER_NAME: 'bench-idle' }, false);
    const store = await PostgresBuildStore.connect(url);
    try {
      await waitFor(async () => (await store.workers()).some((seen) => seen.name === 'bench-idle'), 60_000, 'the worker to record itself as seen');
    } finally {
      await store.close();
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
    lines.push(`| none: CI_ROLE=worker idle after start (PostgreSQL) | ${(await peakRssMb(worker.child.pid!)).toFixed(1)} | – |`);
    worker.child.kill('SIGKILL');
  } finally {
    await postgres.remove();
  }
}

/** The libraries the design card names for the daemon (express, dockerode, @octokit/webhooks, axios, pino, tar-stream), and Node's HTTP server. */
const DESIGN_LIBRARIES = ['node:http', 'express', 'dockerode', '@octokit/webhooks', 'axios', 'pino', 'tar-stream'];

// ----------------------------------------------------------------------------------------- stores

/** Merged acks against a CI_ROLE=server on PostgreSQL and against the SQLite daemon (also part of `hosts`). */
async function benchStores(lines: string[]): Promise<void> {
  const postgres = await new LocalPostgres().start();
  try {
    await storeAcks(lines, postgres);
  } finally {
    await postgres.remove();
  }
}

async function storeAcks(lines: string[], postgres: LocalPostgres): Promise<void> {
  lines.push('| store | delivery | concurrency | p50 ms | p99 ms | errors |', '| --- | --- | --- | --- | --- | --- |');
  const waiting = { owner: 'bench', name: 'waiting', fullName: 'bench/waiting', htmlUrl: 'https://github.com/bench/waiting', private: false };
  github.hang(/^\/repos\/bench\/waiting\//);
  const newCommits = (count: number) => Array.from({ length: count }, () => signed(mergedPullRequest(waiting, randomBytes(20).toString('hex'))));
  for (const store of ['SQLite (CI_ROLE=all)', 'PostgreSQL (CI_ROLE=server)']) {
    for (const connections of [1, 8]) {
      const target = store.startsWith('SQLite') ? await daemon({ BUILD_CONCURRENCY: '1' }) : await daemon({ CI_ROLE: 'server', DATABASE_URL: await postgres.createDatabase() });
      await load(target.url, newCommits(QUICK ? 50 : 500), { connections: 8, amount: QUICK ? 50 : 500 });
      lines.push(`| ${store} | merged | ${connections} | ${await threeRuns(target.url, () => newCommits(1000), connections)} |`);
      target.child.kill('SIGKILL');
    }
  }
}

// ------------------------------------------------------------------------------------------ hosts

/**
 * Many build hosts on one PostgreSQL (CI_ROLE=server and worker processes): the makespan of 12 merged
 * deliveries of different repositories, each a build of about 3 s (RUN sleep 3 on a base from the registry),
 * with one worker host and with two (the second on the second engine), each BUILD_CONCURRENCY=1; merged acks on
 * PostgreSQL against SQLite; the time from a worker's kill -9 to its build running on another worker.
 */
async function benchHosts(lines: string[]): Promise<void> {
  const engine = await secondEngine();
  if (!('host' in engine)) throw new Error(engine.unavailable);
  const postgres = await new LocalPostgres().start();
  try {
    await ensureBusyboxImage();
    const base = `${registry.address}/bench/hosts-base:1`;
    await run(DOCKER_CLI, ['tag', BUSYBOX_IMAGE, base]);
    await run(DOCKER_CLI, ['push', '-q', base]);
    const slowProject = async (name: string, seconds: number) => {
      const dir = path.join(workDir, `hosts-${name}`);
      await mkdir(dir, { recursive: true });
      // A step of its own: an identical one (another project's, an earlier run's) would be a cache hit, not 3 s.
      await writeFile(path.join(dir, 'Dockerfile'), `FROM ${base}\nRUN echo ${randomUUID()} && sleep ${seconds}\nCOPY nonce.txt /nonce.txt\n`);
      await writeFile(path.join(dir, 'nonce.txt'), randomUUID());
      await writeFile(path.join(dir, 'dockerInfo.json'), JSON.stringify({ service_name: `bench/${name}`, version: '1' }));
      return github.addRepository(`bench/${name}`, dir, { prepareTarball: true });
    };
    const cluster = (workerHosts: (string | undefined)[]) => startCluster(postgres, workerHosts.map((host): Record<string, string> => (host ? { DOCKER_HOST: host } : {})));

    lines.push('| worker hosts | builds | makespan s | against one host |', '| --- | --- | --- | --- |');
    let oneHost = 0;
    for (const hosts of [[undefined], [undefined, engine.host]]) {
      const { server, kill } = await cluster(hosts);
      const projects = await Promise.all(Array.from({ length: 12 }, (_, n) => slowProject(`hosts-${hosts.length}-${n}`, 3)));
      const started = performance.now();
      const ids = await Promise.all(projects.map((project) => sendMerge(server, project)));
      const builds = await Promise.all(ids.map((id) => waitForBuild(server, id)));
      const makespan = (performance.now() - started) / 1000;
      if (builds.some((build) => build.status !== 'succeeded')) throw new Error(`hosts: ${JSON.stringify(builds.filter((build) => build.status !== 'succeeded'))}`);
      oneHost ||= makespan;
      lines.push(`| ${hosts.length} | 12 | ${makespan.toFixed(1)} | ${(makespan / oneHost).toFixed(3)} |`);
      kill();
    }

    lines.push('');
    await storeAcks(lines, postgres);

    lines.push('', '| trial | worker killed | seconds until its build ran on another worker |', '| --- | --- | --- |');
    const { server, workers, kill } = await cluster([undefined, engine.host]);
    const live = new Map(workers.map((worker, n) => [`host-${n + 1}`, worker]));
    for (let trial = 1; trial <= 3; trial += 1) {
      const id = await sendMerge(server, await slowProject(`kill-${trial}`, 10));
      const claimed = await server.waitForBuild(id, (build) => build.status === 'running' && build.worker !== undefined, 60_000);
      live.get(claimed.worker!)!.child.kill('SIGKILL');
      const killedAt = performance.now();
      await server.waitForBuild(id, (build) => build.status === 'running' && build.worker !== claimed.worker, 120_000);
      lines.push(`| ${trial} | ${claimed.worker} | ${((performance.now() - killedAt) / 1000).toFixed(1)} |`);
      await waitForBuild(server, id);
      const host = claimed.worker === 'host-2' ? engine.host : undefined;
      live.set(claimed.worker!, await daemon({ CI_ROLE: 'worker', WORKER_NAME: claimed.worker!, DATABASE_URL: server.env.DATABASE_URL!, BUILD_CONCURRENCY: '1', ...(host ? { DOCKER_HOST: host } : {}) }, false));
    }
    kill();
    for (const worker of live.values()) worker.child.kill('SIGKILL');
  } finally {
    await postgres.remove();
  }
}

/**
 * Two-platform images. Against `docker buildx build --platform linux/amd64,linux/arm64 --push` of the same folder
 * on the same engine: Debian 13's buildx with its `docker` driver, which builds multi-platform images only on the
 * containerd store (BENCH_CLI_ROOT and that engine; elsewhere the row says why it is not there). Then a RUN-heavy
 * two-platform build on one worker host against two, the second told that arm64 is its native platform.
 */
async function benchPlatforms(lines: string[]): Promise<void> {
  await pushPlatformBase(registry.url, 'bench/platform-base', '1');
  const base = `${registry.address}/bench/platform-base:1`;
  const project = async (name: string, run: string) => {
    const dir = path.join(workDir, `platforms-${name}-${randomUUID().slice(0, 8)}`);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'Dockerfile'), `FROM ${base}\nRUN echo ${randomUUID()} && ${run}\nCOPY nonce.txt /nonce.txt\n`);
    await writeFile(path.join(dir, 'nonce.txt'), randomUUID());
    return dir;
  };
  const twoPlatforms = (dir: string, service: string, version: string) =>
    writeFile(path.join(dir, 'dockerInfo.json'), JSON.stringify({ service_name: service, version, platforms: ['linux/amd64', 'linux/arm64'] }));

  lines.push('| two platforms, small | pairs | ci_service s | docker buildx build --platform …,… --push s | ratio of medians | pair ratios |', '| --- | --- | --- | --- | --- | --- |');
  const buildx = await dockerCli(['buildx', 'version']).then(
    () => true,
    () => false,
  );
  const containerdStore = ((await docker.info()) as { DriverStatus?: [string, string][] }).DriverStatus?.some(([key, value]) => key === 'driver-type' && value.includes('snapshotter'));
  if (!buildx || !containerdStore) {
    lines.push(`| not measured: buildx's docker driver builds two platforms only with buildx (BENCH_CLI_ROOT) on a containerd store engine; this is ${buildx ? 'an overlay2' : 'a buildx-less'} one | | | | | |`);
  } else {
    const target = await daemon({ BUILD_CONCURRENCY: '1' });
    const ours = async (n: number) => {
      const label = `platforms-${randomUUID().slice(0, 8)}`;
      const version = freshVersion(`run-${n}`);
      const dir = await project(label, 'uname -m > /arch');
      await twoPlatforms(dir, `bench/ci-${label}`, version);
      return throughCommit(target, dir, label, version);
    };
    const theirs = async (n: number) => {
      const dir = await project(`cli-${n}`, 'uname -m > /arch');
      await settleDisk();
      const started = performance.now();
      await dockerCli(['buildx', 'build', '-q', '--platform', 'linux/amd64,linux/arm64', '--push', '-t', `${registry.address}/bench/cli-platforms:${freshVersion(`run-${n}`)}`, cliPath(dir)]);
      return (performance.now() - started) / 1000;
    };
    const [a, b] = await alternate(PAIRS, ours, theirs);
    lines.push(comparisonLine('small', a, b));
    target.child.kill('SIGKILL');
  }

  const engine = await secondEngine();
  if (!('host' in engine)) throw new Error(engine.unavailable);
  const postgres = await new LocalPostgres().start();
  try {
    lines.push('', '| RUN-heavy two-platform build | worker hosts | seconds | against one host | where linux/arm64 was built |', '| --- | --- | --- | --- | --- |');
    let oneHost = 0;
    const work = QUICK ? 'busybox seq 1 20000 | busybox md5sum' : 'for i in 1 2 3 4 5 6; do busybox seq 1 300000 | busybox md5sum; done';
    for (const hosts of [[{}], [{}, { DOCKER_HOST: engine.host, NATIVE_PLATFORMS: 'linux/arm64' }]] as Record<string, string>[][]) {
      const { server, kill } = await startCluster(postgres, hosts);
      const label = `platforms-heavy-${hosts.length}-${randomUUID().slice(0, 8)}`;
      const dir = await project(label, work);
      await twoPlatforms(dir, `bench/${label}`, '1');
      const repository = await github.addRepository(`bench/${label}`, dir, { prepareTarball: true });
      const started = performance.now();
      const done = await waitForBuild(server, await sendMerge(server, repository));
      const seconds = (performance.now() - started) / 1000;
      if (done.status !== 'succeeded') throw new Error(`platforms: ${done.error}`);
      oneHost ||= seconds;
      const arm = done.platforms?.find((image) => image.platform === 'linux/arm64');
      lines.push(`| ${hosts.length === 1 ? 'both on host-1' : 'split'} | ${hosts.length} | ${seconds.toFixed(1)} | ${(seconds / oneHost).toFixed(3)} | ${arm?.worker} (${arm?.how}, ${arm?.seconds.toFixed(1)} s) |`);
      kill();
    }
  } finally {
    await postgres.remove();
  }
}

/**
 * A server and a worker per entry of `workers` (its extra environment: DOCKER_HOST, NATIVE_PLATFORMS), named
 * host-1, host-2, … on a database of their own, once the server has seen every worker.
 */
async function startCluster(postgres: LocalPostgres, workers: Record<string, string>[]) {
  const url = await postgres.createDatabase();
  const server = await daemon({ CI_ROLE: 'server', DATABASE_URL: url });
  const started = await Promise.all(workers.map((extra, n) => daemon({ CI_ROLE: 'worker', WORKER_NAME: `host-${n + 1}`, DATABASE_URL: url, BUILD_CONCURRENCY: '1', ...extra }, false)));
  await waitFor(
    async () => {
      const text = await metricsOf(server);
      return workers.every((_, n) => text.includes(`worker="host-${n + 1}"`));
    },
    30_000,
    'the workers to start',
  );
  return { server, workers: started, kill: () => [server, ...started].forEach((each) => each.child.kill('SIGKILL')) };
}

async function metricsOf(target: Daemon): Promise<string> {
  return (await fetch(`${target.url}/metrics`)).text();
}

// ------------------------------------------------------------------------------------------ main

/**
 * GitHub's CPU is not on the machine that runs ci_service, but the stand-in's is: serving a 200 MB tarball
 * from the benchmark's own Node process took 0.35–0.45 s of the two cores ci_service and the engine share,
 * with the benchmark's own collections on top. Prepared tarballs are served by busybox httpd instead (sendfile).
 */
async function serveTarballs(standIn: GitHubStandIn): Promise<ChildProcess> {
  const port = await freePort();
  const server = spawn('busybox', ['httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', standIn.workDirectory], { stdio: 'ignore' });
  standIn.preparedTarballServer = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${standIn.preparedTarballServer}/`).catch(() => undefined)) !== undefined, 5000, 'busybox httpd');
  return server;
}

async function main(): Promise<void> {
  // Under the CLI's root when it has one: the CLI sees the contexts there.
  workDir = await mkdtemp(path.join(CLI_ROOT ? path.join(CLI_ROOT, 'tmp') : tmpdir(), 'ci-bench-'));
  github = await new GitHubStandIn().start();
  registry = await new LocalRegistry().start();
  const tarballServer = process.env.BENCH_NODE_TARBALLS ? undefined : await serveTarballs(github);
  const version = await docker.version();
  const info = (await docker.info()) as { Driver: string; DriverStatus?: [string, string][] };
  const store = (info.DriverStatus ?? []).some(([key, value]) => key === 'driver-type' && value.includes('snapshotter')) ? 'containerd' : info.Driver;
  const cli = (await dockerCli(['version', '--format', '{{.Client.Version}}'])).stdout.trim();
  const commit = (await run('git', ['rev-parse', '--short', 'HEAD']).catch(() => ({ stdout: 'unknown' }))).stdout.trim();
  const dirty = (await run('git', ['status', '--porcelain', '--untracked-files=no']).catch(() => ({ stdout: '' }))).stdout.trim() ? ' (with uncommitted changes)' : '';
  // Every figure names the sitting it came from: the commit, the engine, the machine, the moment.
  const report = [
    `Sitting ${new Date().toISOString().slice(0, 16)}Z, commit ${commit}${dirty}${QUICK ? ', BENCH_QUICK (sizes and counts cut: figures mean nothing)' : ''}`,
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.version}; Docker engine ${version.Version} (API ${version.ApiVersion}, ${store} store) at ${ENGINE_HOST}; CLI: docker ${cli}${CLI_ROOT ? ` in ${CLI_ROOT}` : ''}`,
  ];
  const benches: Record<string, [string, (lines: string[]) => Promise<void>]> = {
    ack: ['Ack latency (1,000 signed deliveries a run, 3 runs: median (min–max))', benchAck],
    throughput: ['Throughput (64 connections, 10 s a run)', benchThroughput],
    e2e: [`End to end: merged delivery → tag in the registry, against DOCKER_BUILDKIT=1 docker build && docker push (seconds)`, benchEndToEnd],
    rebuild: ['Rebuild after a one-line source change, both sides with their layer cache (seconds)', benchRebuild],
    cache: ['A build host that never built the image: the registry cache against none (seconds)', benchCache],
    memory: ['Memory: peak RSS of the daemon over one build', benchMemory],
    stores: ['Acks by store: SQLite against PostgreSQL (CI_ROLE=server)', benchStores],
    hosts: ['Many build hosts on PostgreSQL: servers and workers', benchHosts],
    platforms: ['Images for two platforms (linux/amd64 + linux/arm64 under QEMU)', benchPlatforms],
  };
  try {
    for (const section of sections) {
      const bench = benches[section];
      if (!bench) throw new Error(`unknown section "${section}" (${Object.keys(benches).join(', ')})`);
      const lines: string[] = [];
      console.error(`running ${section} ...`);
      await bench[1](lines);
      report.push('', `### ${bench[0]}`, '', ...lines);
      console.log(report.slice(-lines.length - 3).join('\n'));
    }
  } finally {
    tarballServer?.kill();
    await github.close();
    await registry.remove();
    await rm(workDir, { recursive: true, force: true });
  }
  console.log(`\n---- all figures ----\n${report.join('\n')}`);
}

await main();
