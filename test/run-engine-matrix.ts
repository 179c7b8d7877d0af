/**
 * The suites that touch a Docker engine, run once per engine of the matrix, as the store conformance suite runs
 * once per store. ENGINE_MATRIX lists the engines: `name=unix:///path/to.sock[|unix:///second.sock],…` (.ci/run
 * starts them with .ci/engines); each run reaches its engine through DOCKER_HOST and names it with ENGINE_NAME.
 * The second socket is the fresh build host of the registry-cache test (SECOND_DOCKER_HOST): one whose BuildKit
 * is the same version, since cache keys differ between BuildKit versions. The rest of the
 * integration suite runs once, on the machine's own engine (`npm test`).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

const ENGINE_SUITES = [
  'test/integration/merged-pr-to-registry.test.ts',
  'test/integration/buildkit.test.ts',
  'test/integration/pull-requests-and-releases.test.ts',
  'test/integration/fault-tolerance.test.ts',
  'test/integration/shared-queue.test.ts',
  'test/integration/multi-platform.test.ts',
];

const matrix = (process.env.ENGINE_MATRIX ?? '')
  .split(',')
  .filter(Boolean)
  .map((entry) => {
    const [name, hosts] = entry.split('=');
    const [host, second] = (hosts ?? '').split('|');
    if (!name || !host?.startsWith('unix://')) throw new Error(`ENGINE_MATRIX entries are name=unix:///path[|unix:///second], not "${entry}"`);
    return { name, host, second };
  });
if (matrix.length === 0) throw new Error('ENGINE_MATRIX names no engine: e.g. ENGINE_MATRIX=docker26=unix:///run/docker26.sock (see .ci/engines)');

const root = path.join(import.meta.dirname, '..');
let failed: string[] = [];
for (const engine of matrix) {
  console.log(`\n=== the engine suites on ${engine.name} (${engine.host})\n`);
  const started = Date.now();
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=300000', ...ENGINE_SUITES], {
      cwd: root,
      env: { ...process.env, DOCKER_HOST: engine.host, ENGINE_NAME: engine.name, ...(engine.second ? { SECOND_DOCKER_HOST: engine.second } : {}) },
      stdio: 'inherit',
    });
    child.on('exit', resolve);
  });
  console.log(`=== ${engine.name}: ${code === 0 ? 'passed' : 'FAILED'} in ${Math.round((Date.now() - started) / 1000)} s`);
  if (code !== 0) failed = [...failed, engine.name];
}
if (failed.length > 0) {
  console.error(`the engine suites failed on: ${failed.join(', ')}`);
  process.exit(1);
}
