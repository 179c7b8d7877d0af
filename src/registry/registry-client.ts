import axios, { type AxiosInstance } from 'axios';
import { createHash } from 'node:crypto';
import { describeError, PushError } from '../domain/errors.js';
import type { PublishedImage } from '../domain/published-image.js';
import type { StagedImage, WrittenIndex } from '../domain/staged-image.js';

const MANIFESTS = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

const REVISION_LABEL = 'org.opencontainers.image.revision';
const VERSION_LABEL = 'org.opencontainers.image.version';

interface Manifest {
  mediaType?: string;
  config?: { digest?: string };
  layers?: { digest?: string }[];
  manifests?: Descriptor[];
}

/** An OCI descriptor: what an image index lists. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
  annotations?: Record<string, string>;
}

const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;
/** A manifest is a few KB; an index of eight platforms with attestations too. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/**
 * ci_service's own client of the registry's HTTP API (distribution v2): whether it is up, which commit an already
 * published tag was built from, whether it takes what an engine's store pushes, and the index of a multi-platform
 * image. (Images themselves are pushed by the engine.) Basic auth with REGISTRY_USERNAME/REGISTRY_PASSWORD, as registry:2's htpasswd.
 */
export class RegistryClient {
  private readonly http: AxiosInstance;
  /** The namespace part of REGISTRY (`registry.example.com/team` → `team/`), prefixed to image names. */
  private readonly namespace: string;

  constructor(registryUrl: string, registry: string, auth: { username: string; password: string } | undefined) {
    this.http = axios.create({ baseURL: registryUrl, timeout: 10_000, validateStatus: () => true, ...(auth ? { auth } : {}) });
    const [, ...path] = registry.split('/');
    this.namespace = path.length > 0 ? `${path.join('/')}/` : '';
  }

  /** Answers whether the registry's /v2/ is up (a 401 counts: it is up and wants a login); for /healthz. */
  async ping(): Promise<void> {
    const response = await this.http.get('/v2/', { timeout: 2000 });
    if (response.status !== 200 && response.status !== 401) throw new Error(`${this.http.defaults.baseURL}/v2/ answered ${response.status}`);
  }

  /**
   * The commit `serviceName:tag` was built from and the version it was published as: undefined when the tag is not
   * in the registry; labels null when it is but does not say (pushed by something other than ci_service).
   */
  async publishedImage(serviceName: string, tag: string, signal: AbortSignal): Promise<PublishedImage | undefined> {
    const name = `${this.namespace}${serviceName}`;
    let manifest = await this.get<Manifest>(`/v2/${name}/manifests/${encodeURIComponent(tag)}`, MANIFESTS, signal);
    if (manifest === undefined) return undefined;
    // A multi-platform index: every platform's image comes from the same commit; the first one says which.
    const first = manifest.manifests?.[0]?.digest;
    if (first) manifest = (await this.get<Manifest>(`/v2/${name}/manifests/${first}`, MANIFESTS, signal)) ?? {};
    const configDigest = manifest.config?.digest;
    if (!configDigest) return { revision: null, version: null };
    const config = await this.get<{ config?: { Labels?: Record<string, string> | null } }>(`/v2/${name}/blobs/${configDigest}`, 'application/json', signal);
    const labels = config?.config?.Labels ?? {};
    return { revision: labels[REVISION_LABEL] ?? null, version: labels[VERSION_LABEL] ?? null };
  }

  /**
   * The digest the registry stores for `serviceName:tag` (its `Docker-Content-Digest`), or undefined when it has no
   * such tag. The digest of a push is taken from here: engines report it in their progress stream in words that
   * differ between image stores (the containerd store reports none in a field of its own).
   */
  async manifestDigest(serviceName: string, tag: string, signal: AbortSignal): Promise<string | undefined> {
    const path = `/v2/${this.namespace}${serviceName}/manifests/${encodeURIComponent(tag)}`;
    const response = await this.request<unknown>('head', path, MANIFESTS, signal);
    if (response === undefined) return undefined;
    const digest = response.headers['docker-content-digest'];
    if (typeof digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(digest)) {
      throw new PushError(`the registry at ${this.http.defaults.baseURL} answered ${path} without a Docker-Content-Digest header: is REGISTRY_URL a Docker registry (distribution v2)?`);
    }
    return digest;
  }

  /**
   * Writes one image index naming every platform's image under each of `tags` of `serviceName`; returns its
   * digest. Each platform's image was pushed by the engine to the staging repository: its manifest (and, where the
   * engine pushed an index, the attestations beside it) is copied by digest, the layers mounted from there without
   * a byte sent, so that nothing but the index's own tags appears under the image's name.
   */
  async writeIndex(stagingName: string, staged: StagedImage[], serviceName: string, tags: string[], signal: AbortSignal): Promise<WrittenIndex> {
    const from = `${this.namespace}${stagingName}`;
    const to = `${this.namespace}${serviceName}`;
    const descriptors: Descriptor[] = [];
    const manifests: Record<string, string> = {};
    for (const image of staged) {
      const top = await this.rawManifest(from, image.tag, signal);
      if (top === undefined) throw new PushError(`the registry has no ${stagingName}:${image.tag}, which the engine pushed for ${image.platform} a moment ago: was it deleted meanwhile?`, true);
      const children = isIndex(top.mediaType) ? (JSON.parse(top.bytes.toString('utf8')) as Manifest).manifests ?? [] : [{ mediaType: top.mediaType, digest: top.digest, size: top.bytes.length }];
      for (const child of children) {
        await this.copyManifest(from, to, child.digest, signal);
        // The engine's own image of this platform is named by the platform asked for; its attestations keep theirs.
        const attestation = child.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';
        if (!attestation) manifests[image.platform] ??= child.digest;
        descriptors.push(attestation ? child : { mediaType: child.mediaType, digest: child.digest, size: child.size, platform: platformObject(image.platform), ...(child.annotations ? { annotations: child.annotations } : {}) });
      }
    }
    const index = composeIndex(descriptors);
    let digest = '';
    for (const tag of tags) digest = await this.putManifest(to, tag, index.mediaType, index.bytes, signal);
    return { digest, manifests };
  }

  private takesCache: { store: string; until: number; answer: Promise<true | string> } | undefined;

  /**
   * Whether the registry takes what an engine with this image store pushes (for /healthz, and the start-up log):
   * the containerd store pushes OCI manifests in an OCI index (its image and its provenance), the classic store
   * Docker's manifests (and ci_service writes Docker's manifest list over them). Tried for real in the staging
   * repository, and removed again: a tiny config, a manifest naming it, an index naming that. True, or what the
   * registry said. Remembered for ten minutes; a refusal for one (the registry may be fixed meanwhile).
   */
  takesImagesOf(imageStore: string, stagingName: string): Promise<true | string> {
    const cached = this.takesCache;
    if (cached && cached.store === imageStore && Date.now() < cached.until) return cached.answer;
    const answer = this.tryImagesOf(imageStore, `${this.namespace}${stagingName}`).catch((error: unknown) => describeError(error));
    const entry = { store: imageStore, until: Date.now() + 600_000, answer };
    this.takesCache = entry;
    void answer.then((result) => {
      if (result !== true) entry.until = Date.now() + 60_000;
    });
    return answer;
  }

  private async tryImagesOf(imageStore: string, name: string): Promise<true | string> {
    const signal = AbortSignal.timeout(5_000);
    const oci = imageStore === 'containerd';
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: {} }));
    const configDigest = await this.uploadBlob(name, config, signal);
    const manifestType = oci ? 'application/vnd.oci.image.manifest.v1+json' : DOCKER_MANIFEST;
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: manifestType,
        config: { mediaType: oci ? 'application/vnd.oci.image.config.v1+json' : 'application/vnd.docker.container.image.v1+json', digest: configDigest, size: config.length },
        layers: [],
      }),
    );
    const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
    const kinds = oci ? 'an OCI image manifest and index (what the containerd image store pushes)' : "Docker's image manifest and manifest list (what the classic store pushes)";
    const put = async (reference: string, mediaType: string, bytes: Buffer) => {
      const response = await this.send('put', `/v2/${name}/manifests/${reference}`, { 'Content-Type': mediaType }, bytes, signal);
      if (response.status === 201) return undefined;
      const detail = typeof response.data === 'object' ? JSON.stringify(response.data).slice(0, 200) : String(response.data ?? '').slice(0, 200);
      return `the registry refused ${kinds}: ${response.status}${detail ? ` ${detail}` : ''}`;
    };
    const refused = await put(manifestDigest, manifestType, manifest);
    if (refused) return refused;
    const index = composeIndex([{ mediaType: manifestType, digest: manifestDigest, size: manifest.length, platform: { os: 'linux', architecture: 'amd64' } }]);
    const indexRefused = await put('registry-check', index.mediaType, index.bytes);
    if (indexRefused) return indexRefused;
    await this.deleteStaged(name.slice(this.namespace.length), 'registry-check', signal).catch(() => undefined);
    return true;
  }

  /** A blob uploaded whole (POST, then PUT with its digest); returns the digest. */
  private async uploadBlob(name: string, bytes: Buffer, signal: AbortSignal): Promise<string> {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const start = await this.send('post', `/v2/${name}/blobs/uploads/`, {}, undefined, signal);
    this.check(start.status, `/v2/${name}/blobs/uploads/`);
    const location = start.headers.location;
    if (start.status !== 202 || typeof location !== 'string') throw new PushError(`the registry answered ${start.status} without an upload location to /v2/${name}/blobs/uploads/`);
    const url = new URL(location, this.http.defaults.baseURL);
    url.searchParams.set('digest', digest);
    const put = await this.send('put', url.toString(), { 'Content-Type': 'application/octet-stream' }, bytes, signal);
    this.check(put.status, `/v2/${name}/blobs/uploads/`);
    return digest;
  }

  /** Deletes a staging tag's manifest once its index is written; a registry that does not delete keeps it. */
  async deleteStaged(stagingName: string, tag: string, signal: AbortSignal): Promise<'deleted' | 'kept'> {
    const name = `${this.namespace}${stagingName}`;
    const digest = await this.manifestDigest(stagingName, tag, signal);
    if (digest === undefined) return 'deleted';
    const response = await this.send('delete', `/v2/${name}/manifests/${digest}`, {}, undefined, signal);
    return response.status === 202 || response.status === 404 ? 'deleted' : 'kept';
  }

  /** A manifest's bytes as stored: its digest is of these bytes, so they are copied unchanged. */
  private async rawManifest(name: string, reference: string, signal: AbortSignal): Promise<{ mediaType: string; digest: string; bytes: Buffer } | undefined> {
    const response = await this.send('get', `/v2/${name}/manifests/${reference}`, { Accept: MANIFESTS }, undefined, signal, 'arraybuffer');
    if (response.status === 404) return undefined;
    this.check(response.status, `/v2/${name}/manifests/${reference}`);
    const bytes = Buffer.from(response.data as ArrayBuffer);
    if (bytes.length > MAX_MANIFEST_BYTES) throw new PushError(`the registry's manifest ${name}:${reference} is larger than ${MAX_MANIFEST_BYTES} bytes`);
    const mediaType = String(response.headers['content-type'] ?? '').split(';')[0]!.trim() || ((JSON.parse(bytes.toString('utf8')) as Manifest).mediaType ?? DOCKER_MANIFEST);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    return { mediaType, digest, bytes };
  }

  /** Copies manifest `digest` (an image's, with its config and layers) from one repository to another. */
  private async copyManifest(from: string, to: string, digest: string, signal: AbortSignal): Promise<void> {
    if (!DIGEST_PATTERN.test(digest)) throw new PushError(`the registry listed a manifest with a malformed digest (${JSON.stringify(digest).slice(0, 80)})`);
    const manifest = await this.rawManifest(from, digest, signal);
    if (manifest === undefined) throw new PushError(`the registry has no manifest ${digest} in ${from}, which the staged image names`, true);
    const parsed = JSON.parse(manifest.bytes.toString('utf8')) as Manifest;
    const blobs = [parsed.config?.digest, ...(parsed.layers ?? []).map((layer) => layer.digest)].filter((each): each is string => typeof each === 'string');
    for (const blob of blobs) await this.mountBlob(from, to, blob, signal);
    await this.putManifest(to, digest, manifest.mediaType, manifest.bytes, signal);
  }

  /** A blob made present in `to` by the registry itself (a cross-repository mount): no byte passes through here. */
  private async mountBlob(from: string, to: string, digest: string, signal: AbortSignal): Promise<void> {
    if (!DIGEST_PATTERN.test(digest)) throw new PushError(`the staged manifest names a blob with a malformed digest (${JSON.stringify(digest).slice(0, 80)})`);
    const path = `/v2/${to}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`;
    const response = await this.send('post', path, {}, undefined, signal);
    if (response.status === 201) return;
    if (response.status === 202) {
      // The registry started an upload instead of mounting: it keeps repositories' blobs apart. Not one to copy through.
      const location = response.headers.location;
      if (typeof location === 'string') await this.send('delete', location, {}, undefined, signal).catch(() => undefined);
      throw new PushError(`the registry at ${this.http.defaults.baseURL} does not mount blobs across repositories (it answered 202 to a mount from ${from}): multi-platform images need a registry that does, as registry:2 does`);
    }
    this.check(response.status, path);
  }

  private async putManifest(name: string, reference: string, mediaType: string, bytes: Buffer, signal: AbortSignal): Promise<string> {
    const path = `/v2/${name}/manifests/${reference}`;
    const response = await this.send('put', path, { 'Content-Type': mediaType }, bytes, signal);
    if (response.status !== 201) {
      const detail = typeof response.data === 'object' ? JSON.stringify(response.data).slice(0, 300) : String(response.data ?? '').slice(0, 300);
      this.check(response.status, path);
      throw new PushError(`the registry refused ${path} (${response.status}${detail ? `: ${detail}` : ''})`);
    }
    const digest = response.headers['docker-content-digest'];
    return typeof digest === 'string' && DIGEST_PATTERN.test(digest) ? digest : `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  }

  private async send(method: 'get' | 'post' | 'put' | 'delete', url: string, headers: Record<string, string>, body: Buffer | undefined, signal: AbortSignal, responseType: 'json' | 'arraybuffer' = 'json') {
    try {
      return await this.http.request({ method, url, headers, data: body, responseType, signal, maxBodyLength: MAX_MANIFEST_BYTES, maxContentLength: MAX_MANIFEST_BYTES });
    } catch (error) {
      if (axios.isCancel(error)) throw error;
      throw new PushError(`the registry at ${this.http.defaults.baseURL} is not reachable to write the image index (${describeError(error)})`, true);
    }
  }

  /** Throws for an answer that is neither a success nor a 404; the caller handles those. */
  private check(status: number, path: string): void {
    if (status === 401 || status === 403) {
      throw new PushError(`the registry refused ${path} (${status}): set REGISTRY_USERNAME and REGISTRY_PASSWORD to an account that may push there`);
    }
    if (status >= 300 && status !== 404) throw new PushError(`the registry answered ${status} for ${path}`, status >= 500 || status === 429);
  }

  private async get<T>(path: string, accept: string, signal: AbortSignal): Promise<T | undefined> {
    return (await this.request<T>('get', path, accept, signal))?.data;
  }

  private async request<T>(method: 'get' | 'head', path: string, accept: string, signal: AbortSignal) {
    let response;
    try {
      response = await this.http.request<T>({ method, url: path, headers: { Accept: accept }, responseType: 'json', signal });
    } catch (error) {
      if (axios.isCancel(error)) throw error;
      throw new PushError(`the registry at ${this.http.defaults.baseURL} is not reachable to check the published versions (${describeError(error)})`, true);
    }
    if (response.status === 404) return undefined;
    if (response.status === 401 || response.status === 403) {
      throw new PushError(`the registry refused to show ${path} (${response.status}): set REGISTRY_USERNAME and REGISTRY_PASSWORD to an account that may read it`);
    }
    if (response.status !== 200) throw new PushError(`the registry answered ${response.status} for ${path}`, response.status >= 500);
    return response;
  }
}

function isIndex(mediaType: string): boolean {
  return mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST;
}

/** `linux/arm/v7` as an index names it. */
function platformObject(platform: string): Descriptor['platform'] {
  const [os = '', architecture = '', variant] = platform.split('/');
  return { os, architecture, ...(variant ? { variant } : {}) };
}

/**
 * Pure: the index of these manifests. Docker's manifest list when every one is Docker's own kind (what a classic
 * image store pushes, and what the oldest clients read); the OCI index otherwise (the containerd store's, and
 * attestations).
 */
export function composeIndex(manifests: Descriptor[]): { mediaType: string; bytes: Buffer } {
  const mediaType = manifests.every((manifest) => manifest.mediaType === DOCKER_MANIFEST) ? DOCKER_MANIFEST_LIST : OCI_INDEX;
  return { mediaType, bytes: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests }, null, 2)) };
}
