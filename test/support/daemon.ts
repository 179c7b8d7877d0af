import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { BuildView } from '../../src/http/build-view.js';
import { ENGINE_HOST } from './docker-environment.js';
import { freePort, waitFor } from './registry.js';

const ROOT = path.join(import.meta.dirname, '..', '..');

export interface Daemon {
  child: ChildProcess;
  url: string;
  output(): string;
  exited: Promise<number | null>;
  /** Polls GET /builds/:id until `done` holds. */
  waitForBuild(id: string, done: (build: BuildView) => boolean, timeoutMs?: number): Promise<BuildView>;
}

/** The node arguments of package.json's `start` script ("node <flags> dist/main.js"). */
function npmStartArguments(): string[] {
  const start = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const [command, ...args] = start.split(/\s+/);
  if (command !== 'node') throw new Error(`package.json's start script should run node, not "${start}"`);
  return args;
}

/** The daemon as `npm start` runs it: its own process, configured only by the environment. */
export async function startDaemon(
  env: Record<string, string>,
  options: { waitUntilUp?: boolean; compiled?: boolean; quiet?: boolean } = {},
): Promise<Daemon> {
  const port = env.PORT ?? String(await freePort());
  // compiled: dist/main.js exactly as `npm start` runs it (benchmarks); otherwise the sources through tsx.
  const entry = options.compiled ? npmStartArguments() : ['--import', 'tsx', path.join(ROOT, 'src', 'main.ts')];
  const child = spawn(process.execPath, entry, {
    cwd: ROOT,
    // Pages open unless the test is about the token: polling builds needs no token then.
    env: { PATH: process.env.PATH ?? '', DOCKER_HOST: ENGINE_HOST, OPEN_PAGES: env.ADMIN_TOKEN || env.OPEN_PAGES === 'false' ? 'false' : 'true', ...env, PORT: port },
    // quiet: the log goes to /dev/null, so a busy parent never blocks the daemon's synchronous writes.
    stdio: ['ignore', options.quiet ? 'ignore' : 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const daemon: Daemon = {
    child,
    url,
    output: () => output,
    exited,
    async waitForBuild(id, done, timeoutMs = 60_000) {
      let last: BuildView | undefined;
      await waitFor(
        async () => {
          const response = await fetch(`${url}/builds/${id}`);
          last = ((await response.json()) as { build: BuildView }).build;
          return done(last);
        },
        timeoutMs,
        `build ${id} (last seen ${JSON.stringify(last)})`,
      );
      return last!;
    },
  };
  if (options.waitUntilUp !== false) {
    // Any answer will do: /healthz is open, and says 503 while the engine or the registry is away.
    await waitFor(async () => (await fetch(`${url}/healthz`)).status > 0, 20_000, `the daemon on ${url}\n${output}`);
  }
  return daemon;
}
