import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';

/**
 * A base image for two platforms, as a user's `FROM` finds one on Docker Hub: an OCI index in the registry holding
 * a busybox image per platform, each the real binary of its architecture (Debian's busybox-static, amd64 and arm64;
 * `.ci/run` downloads the arm64 one). Written through the registry's HTTP API, not an engine: Docker 20.10's
 * `import` cannot label an image arm64, and the classic store keeps one platform per name anyway.
 */
export const BUSYBOX_BINARIES: Record<string, string> = {
  'linux/amd64': '/bin/busybox',
  'linux/arm64': process.env.ARM64_BUSYBOX ?? '/var/cache/ci-service/arm64/busybox',
};

const APPLETS = ['sh', 'echo', 'cat', 'uname', 'true', 'false', 'sleep', 'ls'];
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

const sha256 = (bytes: Buffer | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Pushes `name:tag` as an index of one busybox image per platform; returns the index's digest. */
export async function pushPlatformBase(registryUrl: string, name: string, tag: string, platforms = Object.keys(BUSYBOX_BINARIES)): Promise<string> {
  const manifests = [];
  for (const platform of platforms) {
    const [os, architecture] = platform.split('/') as [string, string];
    const layerTar = await rootfs(readFileSync(BUSYBOX_BINARIES[platform]!));
    const layer = gzipSync(layerTar);
    const config = Buffer.from(
      JSON.stringify({
        architecture,
        os,
        config: { Cmd: ['sh'], Env: ['PATH=/bin'] },
        rootfs: { type: 'layers', diff_ids: [sha256(layerTar)] },
        history: [{ created_by: `busybox-static for ${platform}` }],
      }),
    );
    await pushBlob(registryUrl, name, layer);
    await pushBlob(registryUrl, name, config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
      }),
    );
    await putManifest(registryUrl, name, sha256(manifest), manifest, OCI_MANIFEST);
    manifests.push({ mediaType: OCI_MANIFEST, digest: sha256(manifest), size: manifest.length, platform: { os, architecture } });
  }
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  await putManifest(registryUrl, name, tag, index, OCI_INDEX);
  return sha256(index);
}

async function rootfs(busybox: Buffer): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name: 'bin', type: 'directory', mode: 0o755 });
  pack.entry({ name: 'bin/busybox', mode: 0o755 }, busybox);
  for (const applet of APPLETS) pack.entry({ name: `bin/${applet}`, type: 'symlink', linkname: 'busybox' });
  pack.entry({ name: 'tmp', type: 'directory', mode: 0o1777 });
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function pushBlob(registryUrl: string, name: string, bytes: Buffer): Promise<void> {
  const start = await fetch(`${registryUrl}/v2/${name}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`starting an upload to ${name} answered ${start.status}`);
  const location = new URL(start.headers.get('location')!, registryUrl);
  location.searchParams.set('digest', sha256(bytes));
  const put = await fetch(location, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`uploading a blob to ${name} answered ${put.status}: ${await put.text()}`);
}

async function putManifest(registryUrl: string, name: string, reference: string, body: Buffer, mediaType: string): Promise<void> {
  const response = await fetch(`${registryUrl}/v2/${name}/manifests/${reference}`, { method: 'PUT', body, headers: { 'content-type': mediaType } });
  if (response.status !== 201) throw new Error(`putting ${name}:${reference} answered ${response.status}: ${await response.text()}`);
}
