/**
 * Stack smoke test (npm run test:stack): builds the ci_service image, brings the compose stack up on
 * this machine's Docker engine (without ngrok), sends a signed merged delivery to host port 81 and
 * proves the image lands in the registry on host port 83 and can be pulled. Tears down what it started.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { BuildView } from '../../src/http/build-view.js';
import { mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { GitHubStandIn } from '../support/github-stand-in.js';
import { freePort, waitFor } from '../support/registry.js';
import { imageExists, STAND_INS } from './base-images.js';

const run = promisify(execFile);

/** A request through docker-proxy can hang while the container starts: every attempt has its own deadline. */
function get(url: string): Promise<Response> {
  return fetch(url, { signal: AbortSignal.timeout(10_000) });
}
const ROOT = path.join(import.meta.dirname, '..', '..');
const PROJECT = 'ci_service_smoke';
const CI_URL = 'http://localhost:81';
const REGISTRY_URL = 'http://localhost:83';

let passed = 0;
let failed = 0;
function check(name: string, ok: boolean, detail = ''): void {
  if (ok) passed += 1;
  else failed += 1;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
}

async function compose(): Promise<string[]> {
  try {
    await run('docker', ['compose', 'version']);
    return ['docker', 'compose'];
  } catch {
    return ['docker-compose'];
  }
}

function stream(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: 'inherit' });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited ${code}`))));
  });
}

async function danglingImages(): Promise<string[]> {
  return (await run('docker', ['images', '-q', '--no-trunc', '--filter', 'dangling=true'])).stdout.split('\n').filter(Boolean);
}

async function main(): Promise<void> {
  const composeCommand = await compose();
  const [composeBin, ...composeArgs] = composeCommand as [string, ...string[]];
  console.log(`stack smoke test with ${composeCommand.join(' ')}`);

  const made: string[] = [];
  const work = await mkdtemp(path.join(tmpdir(), 'stack-smoke-'));
  const github = new GitHubStandIn();
  const envFile = path.join(work, 'smoke.env');
  const composeFiles = ['-p', PROJECT, '--env-file', envFile, '-f', 'docker-compose.yml', '-f', 'test/stack/docker-compose.smoke.yml'];
  // Building the image leaves its build stage (about 1 GB) behind as a dangling image: those made here go at the end.
  const danglingBefore = new Set(await danglingImages());
  try {
    for (const standIn of STAND_INS) {
      if (await imageExists(standIn.image)) {
        console.log(`using the ${standIn.image} already on this machine`);
        continue;
      }
      console.log(`STANDING IN for ${standIn.image} (Docker Hub is out of reach here): ${standIn.how}`);
      await standIn.make();
      made.push(standIn.image);
    }

    // The GitHub stand-in listens on the docker0 gateway, which the container reaches as host.docker.internal.
    const gateway = (await run('sh', ['-c', "ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1"])).stdout.trim();
    await github.start(await freePort(), gateway);
    const repositoryFiles = path.join(work, 'repository');
    await run('mkdir', ['-p', repositoryFiles]);
    for (const file of ['Dockerfile', 'dockerInfo.json', '.dockerignore']) await copyFile(path.join(ROOT, file), path.join(repositoryFiles, file));
    const repository = await github.addRepository('ci-service/ci_service', repositoryFiles);
    const port = new URL(github.url).port;
    // No secret and no group id typed: only where the stand-in for GitHub is.
    await writeFile(envFile, [`GITHUB_API_URL=http://host.docker.internal:${port}`, 'LOG_LEVEL=info', ''].join('\n'));

    const configError = await stream(composeBin, [...composeArgs, ...composeFiles, 'config', '-q']).then(() => '', (error: Error) => error.message);
    check('compose accepts docker-compose.yml', configError === '', configError);
    await stream(composeBin, [...composeArgs, ...composeFiles, 'up', '-d', '--build']);

    await waitFor(async () => (await get(`${CI_URL}/healthz`)).status === 200, 120_000, 'ci_service /healthz on host port 81');
    const health = (await (await get(`${CI_URL}/healthz`)).json()) as Record<string, unknown>;
    check('GET localhost:81/healthz answers 200 with the engine and registry up', health.docker === 'ok' && health.registry === 'ok', JSON.stringify(health));

    // The generated secret and token, where a person finds them: printed once in the log.
    const logs = (await run(composeBin, [...composeArgs, ...composeFiles, 'logs', '--no-color', 'ci_service'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 })).stdout;
    const generated = (variable: string) => new RegExp(`${variable} was not set, so ci_service generated one and keeps it in \\S+: ([0-9a-f]{64})`).exec(logs)?.[1] ?? '';
    const SECRET = generated('WEBHOOK_SECRET');
    const token = generated('ADMIN_TOKEN');
    check('a fresh stack generates WEBHOOK_SECRET and ADMIN_TOKEN and prints them once', SECRET !== '' && token !== '', logs.slice(-2000));
    const auth = { headers: { authorization: `Bearer ${token}` } };
    check('the builds API needs the token', (await get(`${CI_URL}/builds`)).status === 401 && (await fetch(`${CI_URL}/builds`, auth)).status === 200);
    check('the process runs unprivileged with the socket\'s group', /running as 1000:1000, with the Docker socket's group \d+/.test(logs));

    const response = await sendDelivery(CI_URL, mergedPullRequest(repository, repository.sha), { secret: SECRET });
    check('a signed merged delivery is accepted with 202', response.status === 202, String(response.status));
    const { build } = (await response.json()) as { build: BuildView };
    let finished: BuildView | undefined;
    await waitFor(
      async () => {
        finished = ((await (await fetch(`${CI_URL}/builds/${build.id}`, { ...auth, signal: AbortSignal.timeout(10_000) })).json()) as { build: BuildView }).build;
        return finished.status === 'succeeded' || finished.status === 'failed';
      },
      300_000,
      'the build',
    );
    check('the build succeeds', finished?.status === 'succeeded', finished?.error ?? '');
    if (finished?.status !== 'succeeded') console.log(await (await fetch(`${CI_URL}/builds/${build.id}/log`, auth)).text());

    const tags = (await (await get(`${REGISTRY_URL}/v2/ci-service-sample/tags/list`)).json()) as { tags?: string[] };
    check('the registry on host port 83 lists the tags', JSON.stringify(tags.tags?.sort()) === '["1.0.0","latest"]', JSON.stringify(tags));

    const image = 'localhost:83/ci-service-sample:1.0.0';
    await run('docker', ['rmi', '-f', image, 'localhost:83/ci-service-sample:latest']).catch(() => {});
    await stream('docker', ['pull', image]);
    const served = (await run('docker', ['run', '--rm', image, 'cat', '/www/version.json'])).stdout;
    check('docker pull localhost:83/ci-service-sample:1.0.0 gets the built image', served.includes('"ci-service-sample"'));
  } catch (error) {
    check('the smoke test ran to the end', false, error instanceof Error ? error.message : String(error));
    await stream(composeBin, [...composeArgs, ...composeFiles, 'logs', '--tail', '50']).catch(() => {});
  } finally {
    await stream(composeBin, [...composeArgs, ...composeFiles, 'down', '-v', '--rmi', 'local']).catch((error) => console.log(String(error)));
    await run('docker', ['rmi', '-f', 'localhost:83/ci-service-sample:1.0.0', 'localhost:83/ci-service-sample:latest']).catch(() => {});
    for (const image of made) {
      await run('docker', ['rmi', '-f', image]).catch(() => {});
      console.log(`removed the stand-in ${image}`);
    }
    const leftBehind = (await danglingImages()).filter((id) => !danglingBefore.has(id));
    if (leftBehind.length > 0) await run('docker', ['rmi', '-f', ...leftBehind]).catch(() => {});
    console.log(`removed ${leftBehind.length} dangling images the build left`);
    await github.close().catch(() => {});
    await rm(work, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
}

await main();
