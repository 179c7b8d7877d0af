import http from 'node:http';
import type { AddressInfo } from 'node:net';

const OCI_MANIFESTS = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json'];

/**
 * A registry that refuses OCI manifests, as registries older than distribution 2.7 (and some proxies in front of
 * registries) do: in front of a real registry, it answers a PUT of an OCI manifest or index with distribution's
 * own 400 MANIFEST_INVALID, and passes every other request (blobs, Docker's manifests, reads) to the registry
 * behind it unchanged, Host header included, so the upload locations the registry hands out lead back through it.
 */
export class OciRefusingRegistry {
  private server: http.Server | undefined;
  /** OCI manifests refused so far. */
  refused = 0;

  constructor(private readonly upstream: { port: number }) {}

  get address(): string {
    return `127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  get url(): string {
    return `http://${this.address}`;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      if (req.method === 'PUT' && /\/manifests\//.test(req.url ?? '') && OCI_MANIFESTS.includes(type)) {
        this.refused += 1;
        req.resume();
        res.writeHead(400, { 'Content-Type': 'application/json; charset=utf-8', 'Docker-Distribution-Api-Version': 'registry/2.0' });
        res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_INVALID', message: 'manifest invalid', detail: `unsupported manifest media type and no default available: ${type}` }] }) + '\n');
        return;
      }
      const forward = http.request({ host: '127.0.0.1', port: this.upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return this;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}
