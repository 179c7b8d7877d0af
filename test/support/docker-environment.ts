import Dockerode from 'dockerode';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import tar from 'tar-stream';

/**
 * The engine under test: DOCKER_HOST as ci_service reads it (`unix:///path`), default the machine's own. The
 * engine-touching suites run once per engine of the matrix (test/run-matrix.ts sets it); ENGINE_NAME names it.
 */
export const ENGINE_HOST = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
export const ENGINE_NAME = process.env.ENGINE_NAME ?? 'docker';
export const docker = connectEngine(ENGINE_HOST);

export function connectEngine(host: string): Dockerode {
  if (!host.startsWith('unix://')) throw new Error(`the tests reach engines by unix socket, not ${host}`);
  return new Dockerode({ socketPath: host.slice('unix://'.length) });
}

/**
 * Why the Docker tests cannot run here, or undefined when they can.
 * In CI (CI=true) a missing engine or registry is a failure, never a skip.
 */
export async function dockerUnavailable(): Promise<string | undefined> {
  let reason: string | undefined;
  try {
    await docker.ping();
    execFileSync('docker-registry', ['--version'], { stdio: 'ignore' });
  } catch (error) {
    reason = `needs a Docker engine at ${ENGINE_HOST} and Debian's docker-registry (${(error as Error).message})`;
  }
  if (reason && process.env.CI) throw new Error(`CI must run the Docker tests, but: ${reason}`);
  if (reason) console.warn(`\n!!! SKIPPING Docker integration tests: ${reason}\n!!! Run .ci/run (or start dockerd) to execute them.\n`);
  return reason;
}

export const BUSYBOX_IMAGE = 'ci-test-busybox:latest';

/**
 * A base image with a shell, made offline from Debian's static busybox: `docker import` of a tiny rootfs.
 * Returns whether it made the image (false when `image` was already there).
 */
export async function ensureBusyboxImage(image = BUSYBOX_IMAGE, engine: Dockerode = docker): Promise<boolean> {
  const images = await engine.listImages({ filters: { reference: [image] } });
  if (images.length > 0) return false;
  const pack = tar.pack();
  pack.entry({ name: 'bin', type: 'directory', mode: 0o755 });
  pack.entry({ name: 'bin/busybox', mode: 0o755 }, readFileSync('/bin/busybox'));
  for (const applet of ['sh', 'echo', 'cat', 'ls', 'true', 'false', 'mkdir', 'httpd', 'wget', 'sleep']) {
    pack.entry({ name: `bin/${applet}`, type: 'symlink', linkname: 'busybox' });
  }
  pack.entry({ name: 'tmp', type: 'directory', mode: 0o1777 });
  pack.finalize();
  const [repo, tag] = image.split(':') as [string, string];
  const stream = await engine.importImage(pack as unknown as NodeJS.ReadableStream, { repo, tag, changes: ['CMD ["sh"]'] } as object);
  await new Promise((resolve, reject) => engine.modem.followProgress(stream, (error) => (error ? reject(error) : resolve(undefined))));
  return true;
}

/**
 * The image as the registry holds it: ci_service removes its images from the engine once pushed, so a test
 * pulls what it inspects, as a user does. Idempotent.
 */
export async function pulled(reference: string, engine: Dockerode = docker): Promise<Dockerode.Image> {
  const image = engine.getImage(reference);
  const present = await image.inspect().then(
    () => true,
    () => false,
  );
  if (!present) {
    const stream = await engine.pull(reference, { authconfig: {} });
    await new Promise((resolve, reject) => engine.modem.followProgress(stream, (error) => (error ? reject(error) : resolve(undefined))));
  }
  return image;
}

/** One file of an image (pulled from the registry), read through a container that is created (never started) and removed. */
export async function fileInImage(image: string, filePath: string): Promise<{ type: string; mode: number; content: string; linkname: string }> {
  await pulled(image);
  const container = await docker.createContainer({ Image: image, Cmd: ['/none'] });
  try {
    const archive = await container.getArchive({ path: filePath });
    const extract = tar.extract();
    archive.pipe(extract as unknown as NodeJS.WritableStream);
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      const { type, mode = 0, linkname } = entry.header;
      return { type, mode, content: Buffer.concat(chunks).toString('utf8'), linkname: linkname ?? '' };
    }
    throw new Error(`${filePath} not in ${image}`);
  } finally {
    await container.remove();
  }
}

/**
 * A second engine on this machine (a build host that never built anything), started by `.ci/engines start docker2`;
 * SECOND_DOCKER_HOST names its socket. In CI its absence is a failure, never a skip.
 */
export async function secondEngine(): Promise<{ host: string; docker: Dockerode } | { unavailable: string }> {
  const host = process.env.SECOND_DOCKER_HOST ?? 'unix:///run/ci-engines/docker2.sock';
  const second = connectEngine(host);
  try {
    await second.ping();
    return { host, docker: second };
  } catch (error) {
    const reason = `needs a second Docker engine at ${host} (start one with .ci/engines start docker2): ${(error as Error).message}`;
    if (process.env.CI) throw new Error(`CI must run the second-engine tests, but: ${reason}`);
    console.warn(`\n!!! SKIPPING second-engine tests: ${reason}\n`);
    return { unavailable: reason };
  }
}

const run = promisify(execFile);

/**
 * Whether an engine on this machine runs a process with exactly this command line: BuildKit runs a RUN step's
 * command as a process of the host, so a test sees it start, and sees the engine stop it.
 */
export async function engineRuns(command: string): Promise<boolean> {
  return run('pgrep', ['-f', '-x', command]).then(
    () => true,
    () => false,
  );
}

/**
 * Restarts one engine of .ci/engines (its dockerd stopped with SIGTERM, then started again on the same data): an
 * engine restarted under a build, as an upgrade or a crash-and-restart does it.
 */
export async function restartEngine(host: string): Promise<void> {
  const name = path.basename(host.replace(/^unix:\/\//, ''), '.sock');
  await run('bash', [path.join(import.meta.dirname, '..', '..', '.ci', 'engines'), 'restart', name]);
}

/** Empties an engine's BuildKit cache, every record (dockerode's pruneBuilder sends no `all`). */
export async function pruneAllBuildCache(engine: Dockerode): Promise<void> {
  await new Promise((resolve, reject) =>
    engine.modem.dial({ path: '/build/prune?', method: 'POST', options: { all: true }, statusCodes: { 200: true, 500: 'server error' } }, (error: unknown, data: unknown) =>
      error ? reject(error) : resolve(data),
    ),
  );
}
