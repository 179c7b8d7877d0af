import axios, { type AxiosInstance } from 'axios';
import { describeError, PushError } from '../domain/errors.js';
import type { PublishedImage } from '../domain/published-image.js';

const MANIFESTS = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

const REVISION_LABEL = 'org.opencontainers.image.revision';
const VERSION_LABEL = 'org.opencontainers.image.version';

interface Manifest {
  config?: { digest?: string };
  manifests?: { digest?: string }[];
}

/**
 * ci_service's own client of the registry's HTTP API (distribution v2): whether it is up, and which commit an
 * already published tag was built from. (Pushes go through the engine.) Basic auth with REGISTRY_USERNAME/REGISTRY_PASSWORD, as registry:2's htpasswd.
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
