import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { docker } from './docker-environment.js';

/** Debian's docker-registry: the same code as the registry:2 image, on a loopback port of its own. */
export class LocalRegistry {
  private process: ChildProcess | undefined;
  private dir = '';
  port = 0;

  /**
   * With `auth`, the registry asks for a login as registry:2 does with `REGISTRY_AUTH=htpasswd` (bcrypt entries
   * made by Apache's htpasswd); its own reads below log in too.
   */
  constructor(private readonly auth?: { username: string; password: string }) {}

  private get headers(): Record<string, string> {
    return this.auth ? { authorization: `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}` } : {};
  }

  /** host:port as the Docker engine reaches it (loopback registries need no TLS). */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get url(): string {
    return `http://${this.address}`;
  }

  async start(port?: number): Promise<this> {
    this.dir ||= await mkdtemp(path.join(tmpdir(), 'registry-'));
    this.port = port ?? (this.port || (await freePort()));
    const config = path.join(this.dir, 'config.yml');
    let auth = '';
    if (this.auth) {
      const htpasswd = path.join(this.dir, 'htpasswd');
      await writeFile(htpasswd, execFileSync('htpasswd', ['-nbB', this.auth.username, this.auth.password]));
      auth = `auth:\n  htpasswd:\n    realm: ci-test\n    path: ${htpasswd}\n`;
    }
    await writeFile(
      config,
      `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${this.dir}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${this.port}\n${auth}`,
    );
    this.process = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
    await waitFor(async () => (await fetch(`${this.url}/v2/`, { headers: this.headers })).status === 200, 10_000, `registry on ${this.address}`);
    return this;
  }

  /**
   * Stops the registry: SIGTERM lets it finish what it serves (it waits for an engine's kept-alive connections,
   * too); SIGKILL is a registry that dies.
   */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.process;
    // Ended already: by a code, or (killed) by a signal, when exitCode stays null.
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }

  /** Stops the registry, deletes its storage, and untags what the tests built for it in the engine. */
  async remove(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
    // Tagged, and dangling ones (a moved tag leaves its old image known by its digest only).
    const ours = (await docker.listImages()).filter((image) =>
      [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])].some((name) => name.startsWith(`${this.address}/`)),
    );
    for (const image of ours) await docker.getImage(image.Id).remove({ force: true, noprune: false }).catch(() => {});
  }

  async tags(name: string): Promise<string[]> {
    const response = await fetch(`${this.url}/v2/${name}/tags/list`, { headers: this.headers });
    if (response.status === 404) return [];
    return ((await response.json()) as { tags: string[] | null }).tags ?? [];
  }

  /**
   * The manifest digest the registry holds for name:tag: an image's, or an index's (a multi-platform image, or one
   * with its provenance beside it), as a client that reads every kind asks.
   */
  async digest(name: string, tag: string): Promise<string | null> {
    const accept = [
      'application/vnd.docker.distribution.manifest.v2+json',
      'application/vnd.oci.image.manifest.v1+json',
      'application/vnd.docker.distribution.manifest.list.v2+json',
      'application/vnd.oci.image.index.v1+json',
    ].join(', ');
    const response = await fetch(`${this.url}/v2/${name}/manifests/${tag}`, { method: 'HEAD', headers: { accept, ...this.headers } });
    return response.headers.get('docker-content-digest');
  }
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
