import assert from 'node:assert/strict';
import Dockerode from 'dockerode';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DockerEngine } from '../../src/engine/docker/docker-engine.js';
import { engineLabel } from '../../src/engine/engine.js';

/**
 * Engines this machine cannot run (older than Debian 12's), played by a server on a unix socket that answers
 * /version, /info and /grpc with what such an engine sends: the API's own shapes, not what the code asks for.
 */
function oldEngine(version: Record<string, unknown>, info: Record<string, unknown>): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://engine');
    if (url.pathname.endsWith('/_ping')) return void res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
    if (url.pathname.endsWith('/version')) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(version));
    if (url.pathname.endsWith('/info')) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(info));
    // Engines before BuildKit's control API answer /grpc as any unknown route.
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'page not found' }));
  });
}

describe('what an engine says it is, and an engine too old for BuildKit', () => {
  let dir: string;
  let server: Server | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ci-old-engine-'));
  });

  after(async () => {
    server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function engineAt(version: Record<string, unknown>, info: Record<string, unknown>, builder: 'buildkit' | 'legacy') {
    server?.close();
    const socketPath = path.join(dir, `${Math.random().toString(36).slice(2)}.sock`);
    server = oldEngine(version, info);
    await new Promise<void>((resolve) => server!.listen(socketPath, resolve));
    return new DockerEngine(new Dockerode({ socketPath }), undefined, builder);
  }

  it('Docker 18.06 (API 1.38): refused with BuildKit, saying what to change; described without BuildKit', async () => {
    const engine = await engineAt({ Version: '18.06.3-ce', ApiVersion: '1.38', Os: 'linux', Arch: 'amd64' }, { Driver: 'overlay2', DriverStatus: [['Backing Filesystem', 'extfs']] }, 'buildkit');
    await assert.rejects(engine.ping(), { message: 'Docker 18.06.3-ce (API 1.38) cannot build with BuildKit: set BUILDER=legacy on ci_service, or upgrade the engine' });
    const described = await engine.describe();
    assert.deepEqual(described, { kind: 'docker', version: '18.06.3-ce', apiVersion: '1.38', imageStore: 'overlay2', buildKit: undefined, platforms: { native: ['linux/amd64'], emulated: [] } });
    assert.equal(engineLabel(described), 'docker 18.06.3-ce (API 1.38, overlay2 store)');
  });

  it('the same engine with BUILDER=legacy answers', async () => {
    const engine = await engineAt({ Version: '18.06.3-ce', ApiVersion: '1.38', Os: 'linux', Arch: 'amd64' }, { Driver: 'overlay2' }, 'legacy');
    await engine.ping();
  });

  it('a Windows engine has no BuildKit, whatever its API', async () => {
    const engine = await engineAt({ Version: '24.0.7', ApiVersion: '1.43', Os: 'windows', Arch: 'amd64' }, { Driver: 'windowsfilter' }, 'buildkit');
    await assert.rejects(engine.ping(), /Docker 24\.0\.7 \(API 1\.43\) cannot build with BuildKit: set BUILDER=legacy/);
  });

  it('an engine with BuildKit but no control API (/grpc answers 404) is described by its own platform', async () => {
    const engine = await engineAt({ Version: '19.03.15', ApiVersion: '1.40', Os: 'linux', Arch: 'arm64' }, { Driver: 'overlay2', DriverStatus: null }, 'buildkit');
    await engine.ping();
    const described = await engine.describe();
    assert.deepEqual([described.buildKit, described.platforms], [{ version: undefined }, { native: ['linux/arm64'], emulated: [] }]);
  });

  it('the containerd image store is named by its snapshotter', async () => {
    const engine = await engineAt({ Version: '29.1.0', ApiVersion: '1.52', Os: 'linux', Arch: 'amd64' }, { Driver: 'overlayfs', DriverStatus: [['driver-type', 'io.containerd.snapshotter.v1']] }, 'legacy');
    assert.equal((await engine.describe()).imageStore, 'containerd');
  });
});
