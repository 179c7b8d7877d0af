import type Dockerode from 'dockerode';
import { Readable } from 'node:stream';
import { describeError, ImageBuildError, PushError } from '../../domain/errors.js';
import { openBuildKitSession, type HijackingModem } from '../buildkit/session.js';
import { BuildKitTrace } from '../buildkit/trace.js';
import { explainEngineError } from '../explain-build-failure.js';
import { readProgress } from './progress.js';
import type { Checkout } from '../../source/checkout.js';
import type { BuildContextInput, BuiltImage, EngineDescription, ImageBuilder, ImageBuildOptions, ImagePusher } from '../engine.js';
import { listBuildKitWorkers, solve } from '../buildkit/control.js';
import { randomUUID } from 'node:crypto';
import { PruneSchedule } from './prune-schedule.js';

export interface RegistryAuth {
  username: string;
  password: string;
  serveraddress: string;
}

/** Socket errors reaching the engine: it was not there for a moment, or not at that address. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
/** HTTP answers of the engine that say "later", not "wrong" (a 500 is the build's: a missing Dockerfile, …). */
const ENGINE_BUSY_STATUSES = new Set([502, 503, 504]);
/**
 * Inside a 200 stream the engine reports only text. These are its words for a registry it could not reach
 * (a push, a base image's pull): the network's failures, with their HTTP reason phrases, never bare digits.
 */
const REGISTRY_UNREACHABLE =
  /connection refused|connection reset by peer|i\/o timeout|no such host|TLS handshake timeout|unexpected EOF|502 Bad Gateway|503 Service Unavailable|504 Gateway Timeout|toomanyrequests|429 Too Many Requests|blob upload unknown/i;

export type Builder = 'buildkit' | 'legacy';

interface DockerInfo {
  Driver: string;
  DriverStatus?: [string, string][] | null;
}

/** The oldest API with BuildKit's /build (version=2) and session: Docker 18.09. */
const BUILDKIT_MIN_API = [1, 39] as const;
/** An engine's facts change only when it is upgraded or restarted: asked again after this long. */
const DESCRIPTION_TTL_MS = 30_000;
/** Architectures a CPU of the key's runs without an emulator. */
const RUNS_NATIVELY: Record<string, string[]> = { amd64: ['amd64', '386'], arm64: ['arm64'] };

/** The Docker engine behind the ImageBuilder and ImagePusher ports, through dockerode. */
export class DockerEngine implements ImageBuilder, ImagePusher {
  constructor(
    private readonly docker: Dockerode,
    private readonly auth: RegistryAuth | undefined,
    private readonly builder: Builder = 'buildkit',
    /** BuildKit's cache on the engine is pruned down to this beside the builds (BUILD_CACHE_MB); 0 keeps it all. */
    private readonly buildCacheBytes = 0,
    /**
     * Memory and CPUs of the containers a build's steps run in (0: none). Docker 20.10's BuildKit ignores
     * these (and cgroupparent) on /build, measured: only the legacy builder applies them; see README.md.
     */
    private readonly limits: { memoryBytes: number; cpus: number } = { memoryBytes: 0, cpus: 0 },
    private readonly onPruneFailure: (reason: string) => void = () => {},
    /** NATIVE_PLATFORMS: what this host builds natively, where its CPU does not say (empty: as it says). */
    private readonly nativePlatforms: string[] = [],
  ) {}

  get contextKind(): BuildContextInput['kind'] {
    return this.builder === 'buildkit' ? 'checkout' : 'tar';
  }

  /** Keeps BuildKit's cache under BUILD_CACHE_MB beside the builds (BuildKit removes only records no build uses). */
  private readonly pruneSchedule = new PruneSchedule(() =>
    dial<unknown>(this.docker, { path: '/build/prune?', method: 'POST', options: { 'keep-storage': this.buildCacheBytes }, statusCodes: { 200: true, 500: 'server error' } }).then(
      () => undefined,
      (error: unknown) => this.onPruneFailure(describeError(error)),
    ),
  );

  private limitQuery(): Record<string, number> {
    return {
      ...(this.limits.memoryBytes > 0 ? { memory: this.limits.memoryBytes, memswap: this.limits.memoryBytes } : {}),
      ...(this.limits.cpus > 0 ? { cpuperiod: 100_000, cpuquota: Math.round(this.limits.cpus * 100_000) } : {}),
    };
  }

  /**
   * Removes a built image once pushed (or failed): the registry holds it, BuildKit's cache and the registry's
   * inline cache hold what the next build reuses. By ID, with the tags still on it: a tag a newer build has
   * moved to its own image is not this image's any more, so this may run beside that build.
   */
  async removeImage(id: string): Promise<void> {
    await this.docker
      .getImage(id)
      .remove({ force: true, noprune: false })
      .catch((error: { statusCode?: number }) => {
        if (error.statusCode !== 404) throw engineFailure(error, 'build');
      });
  }

  /** Prunes BuildKit's cache down to BUILD_CACHE_MB in the background, after this build (PruneSchedule says when). */
  pruneBuildCache(): void {
    if (this.builder !== 'buildkit' || this.buildCacheBytes === 0) return;
    this.pruneSchedule.afterBuild();
  }

  /** Answers when the engine does, and can build with the configured builder. */
  async ping(): Promise<void> {
    let engine: EngineDescription;
    try {
      await this.docker.ping();
      engine = await this.describe();
    } catch (error) {
      throw engineFailure(error, 'build');
    }
    if (this.builder === 'buildkit' && !engine.buildKit) {
      throw new ImageBuildError(`Docker ${engine.version} (API ${engine.apiVersion}) cannot build with BuildKit: set BUILDER=legacy on ci_service, or upgrade the engine`);
    }
  }

  private description: { at: number; facts: Promise<EngineDescription> } | undefined;

  /** What this engine is and can build (cached for a while; a failure is not). */
  describe(): Promise<EngineDescription> {
    if (this.description && Date.now() - this.description.at < DESCRIPTION_TTL_MS) return this.description.facts;
    const facts = this.askEngine();
    this.description = { at: Date.now(), facts };
    facts.catch(() => (this.description = undefined));
    return facts;
  }

  private async askEngine(): Promise<EngineDescription> {
    const [version, info] = await Promise.all([this.docker.version(), this.docker.info() as Promise<DockerInfo>]);
    const [major = 0, minor = 0] = version.ApiVersion.split('.').map(Number);
    const hasBuildKit = version.Os === 'linux' && (major > BUILDKIT_MIN_API[0] || (major === BUILDKIT_MIN_API[0] && minor >= BUILDKIT_MIN_API[1]));
    // The containerd image store names its snapshotter where the classic one names its storage driver's details.
    const containerd = (info.DriverStatus ?? []).some(([key, value]) => key === 'driver-type' && value === 'io.containerd.snapshotter.v1');
    const own = `${version.Os}/${version.Arch}`;
    // BuildKit lists what its worker builds, with the platforms QEMU's binfmt handlers add (it probes them).
    const workers = hasBuildKit ? await listBuildKitWorkers(this.docker.modem as HijackingModem).catch(() => undefined) : undefined;
    const platforms = workers?.platforms.length ? workers.platforms : [own];
    const nativeArchitectures = RUNS_NATIVELY[version.Arch] ?? [version.Arch];
    const runsNatively = (platform: string) =>
      this.nativePlatforms.length > 0 ? this.nativePlatforms.includes(platform) : platform.startsWith(`${version.Os}/`) && nativeArchitectures.includes(platform.split('/')[1] ?? '');
    return {
      kind: 'docker',
      version: version.Version,
      apiVersion: version.ApiVersion,
      imageStore: containerd ? 'containerd' : info.Driver,
      // Debian's packages build BuildKit without its version stamped: v0.0.0+unknown names none.
      buildKit: hasBuildKit ? { version: workers?.version && !workers.version.startsWith('v0.0.0') ? workers.version : undefined } : undefined,
      platforms: { native: platforms.filter(runsNatively), emulated: platforms.filter((platform) => !runsNatively(platform)) },
    };
  }

  build(context: BuildContextInput, options: ImageBuildOptions, onLog: (text: string) => void, signal: AbortSignal): Promise<BuiltImage> {
    if (context.kind !== this.contextKind) throw new Error(`the ${this.builder} builder takes a ${this.contextKind} context, not a ${context.kind}`);
    return context.kind === 'checkout' ? this.buildWithBuildKit(context.checkout, options, onLog, signal) : this.buildLegacy(context.stream, options, onLog, signal);
  }

  /**
   * BuildKit through the engine's /build (version=2), with a session of our own for registry credentials,
   * secrets and the context, which BuildKit loads from the checkout through the session's file sync, as from
   * the docker CLI. Every image carries its layer cache inline, so any host can reuse it from the registry.
   */
  private async buildWithBuildKit(checkout: Checkout, options: ImageBuildOptions, onLog: (text: string) => void, signal: AbortSignal) {
    const session = await openBuildKitSession(this.docker.modem as HijackingModem, {
      credentials: this.auth && { host: this.auth.serveraddress, username: this.auth.username, password: this.auth.password },
      secrets: options.secrets,
      // The Dockerfile is a path inside the context: one folder serves both.
      files: { sharedKey: checkout.sharedKey, folders: { context: checkout, dockerfile: checkout } },
    }).catch((error: unknown) => {
      throw engineFailure(error, 'build');
    });
    const trace = new BuildKitTrace(onLog);
    try {
      // Attestations need BuildKit's own Solve and a store that keeps them: the containerd store does.
      const solved = options.provenance && (await this.describe()).imageStore === 'containerd'
        ? await this.solveWithProvenance(session.id, options, options.provenance, trace, signal)
        : await this.buildThroughEngine(session.id, options, onLog, trace, signal);
      if (solved.error === undefined) return { id: solved.id, contextSent: session.sent() };
      const transferError = session.transferError();
      if (transferError) throw new ImageBuildError(`sending the build context to BuildKit failed: ${transferError.message}`, true);
      const step = trace.stepThatFailed(solved.error);
      // A command of the Dockerfile that fails is the repository's to fix; pulling a base image may pass later.
      const command = step !== undefined && /\]\s*(RUN|COPY|ADD)\b/.test(step.name);
      throw new ImageBuildError(step ? solved.error : explainEngineError(solved.error), isTransient(solved.error) && !command, step);
    } catch (error) {
      if (error instanceof ImageBuildError) throw error;
      throw engineFailure(error, 'build');
    } finally {
      session.close();
    }
  }

  /** The engine's /build (version=2): what every engine with BuildKit serves. */
  private async buildThroughEngine(sessionId: string, options: ImageBuildOptions, onLog: (text: string) => void, trace: BuildKitTrace, signal: AbortSignal) {
    const query = {
      version: '2',
      session: sessionId,
      remote: 'client-session',
      t: options.tags,
      dockerfile: options.dockerfile,
      ...(options.target ? { target: options.target } : {}),
      ...(options.platform ? { platform: options.platform } : {}),
      buildargs: { ...options.buildArgs, BUILDKIT_INLINE_CACHE: '1' },
      labels: options.labels,
      ...(options.cacheFrom.length > 0 ? { cachefrom: JSON.stringify(options.cacheFrom) } : {}),
      ...this.limitQuery(),
    };
    const stream = await dialBuild(this.docker, undefined, signal, query);
    const outcome = await readProgress(stream, onLog, (data) => trace.feed(data));
    return outcome.error === undefined ? { id: builtImageId(outcome.aux) } : { error: outcome.error };
  }

  /**
   * BuildKit's Solve on the engine's /grpc, as buildx's `docker` driver sends it, with SLSA provenance
   * (`attest:provenance`): the image is kept in the engine's store under its tags, with its attestation beside it,
   * and pushed as any other. The same frontend attributes /build would set.
   */
  private async solveWithProvenance(sessionId: string, options: ImageBuildOptions, mode: 'min' | 'max', trace: BuildKitTrace, signal: AbortSignal) {
    const attributes: Record<string, string> = {
      filename: options.dockerfile,
      ...(options.target ? { target: options.target } : {}),
      ...(options.platform ? { platform: options.platform } : {}),
      'attest:provenance': `mode=${mode}`,
      // The frontend resolves the cache it may reuse itself: it is told as buildx's client tells it.
      ...(options.cacheFrom.length > 0 ? { 'cache-imports': JSON.stringify(options.cacheFrom.map((ref) => ({ Type: 'registry', Attrs: { ref } }))) } : {}),
    };
    for (const [name, value] of Object.entries({ ...options.buildArgs, BUILDKIT_INLINE_CACHE: '1' })) attributes[`build-arg:${name}`] = value;
    for (const [name, value] of Object.entries(options.labels)) attributes[`label:${name}`] = value;
    const outcome = await solve(
      this.docker.modem as HijackingModem,
      { ref: randomUUID(), session: sessionId, frontendAttrs: attributes, exporter: { type: 'moby', attrs: { name: options.tags.join(',') } }, cacheImports: options.cacheFrom, inlineCache: true },
      (message) => trace.feed(message.toString('base64')),
      signal,
    );
    if (outcome.error !== undefined) return { error: outcome.error };
    // The containerd store's image id is its target's digest: removed by it, every tag of this build goes too.
    return { id: outcome.response['containerimage.digest'] ?? options.tags[0]! };
  }

  /** The engine's old builder, for engines without BuildKit (BUILDER=legacy). */
  private async buildLegacy(context: Readable, options: ImageBuildOptions, onLog: (text: string) => void, signal: AbortSignal) {
    let stream: NodeJS.ReadableStream;
    try {
      // The engine takes `t` once per tag and dockerode repeats arrays in the query; @types/dockerode says string.
      stream = await this.docker.buildImage(context, {
        t: options.tags as unknown as string,
        dockerfile: options.dockerfile,
        ...(options.target ? { target: options.target } : {}),
        ...(options.platform ? { platform: options.platform } : {}),
        buildargs: options.buildArgs,
        labels: options.labels,
        rm: true,
        forcerm: true,
        ...this.limitQuery(),
        abortSignal: signal,
      });
    } catch (error) {
      throw engineFailure(error, 'build');
    }
    const outcome = await readProgress(stream as Readable, onLog).catch((error: unknown) => {
      throw engineFailure(error, 'build');
    });
    if (outcome.error !== undefined) throw new ImageBuildError(`docker build failed: ${explainEngineError(outcome.error)}`);
    return { id: builtImageId(outcome.aux) };
  }

  async push(repository: string, tag: string, onLog: (text: string) => void, signal: AbortSignal): Promise<string | undefined> {
    const reference = `${repository}:${tag}`;
    let stream: NodeJS.ReadableStream;
    try {
      // The engine answers 400 without an X-Registry-Auth header, so an anonymous push sends `{}`.
      stream = (await this.docker.getImage(repository).push({ tag, authconfig: this.auth ?? {}, abortSignal: signal })) as NodeJS.ReadableStream;
    } catch (error) {
      throw engineFailure(error, 'push', reference);
    }
    const outcome = await readProgress(stream as Readable, onLog).catch((error: unknown) => {
      throw engineFailure(error, 'push', reference);
    });
    if (outcome.error !== undefined) {
      throw new PushError(`pushing ${reference} failed: ${outcome.error} (${pushFailureHint(outcome.error)})`, isTransient(outcome.error));
    }
    // Never a digest read from a status line: its words differ between stores and versions.
    return outcome.aux.map((aux) => aux.Digest).find((value): value is string => typeof value === 'string');
  }
}

/** The engine names the image it built in an `aux` line (`moby.image.id` for BuildKit). */
function builtImageId(aux: Record<string, unknown>[]): string {
  const id = aux.map((entry) => entry.ID).find((value): value is string => typeof value === 'string');
  if (!id) throw new ImageBuildError('the engine ended the build without naming the image it built', true);
  return id;
}

/**
 * A registry's refusal of a pushed manifest, as the classic store reports it (`manifest invalid`) and as the
 * containerd store does (the PUT of the manifest answered 400).
 */
const MANIFEST_REFUSED = /manifest invalid|MANIFEST_INVALID|\/manifests\/\S*: 400 Bad Request/i;

/** What to check when the engine says a push failed. */
export function pushFailureHint(streamError: string): string {
  if (MANIFEST_REFUSED.test(streamError)) {
    return "the registry refused the image's manifest: it does not take what this engine's image store pushes (the containerd store pushes OCI manifests, which registries of distribution 2.7 or later, registry:2 among them, take); /healthz's engine.registryTakesItsImages says what it refused";
  }
  return 'is the registry running, and reachable from the Docker engine at that address?';
}

/** Whether an error line inside an engine stream says the registry could not be reached. */
export function isTransient(streamError: string): boolean {
  return REGISTRY_UNREACHABLE.test(streamError);
}

/**
 * POST /build, with the body streamed from `context` (none when BuildKit loads it through the session):
 * dockerode's buildImage, without the session it would open itself for version=2 (ours serves more).
 */
function dialBuild(docker: Dockerode, context: Readable | undefined, signal: AbortSignal, query: Record<string, unknown>): Promise<Readable> {
  // An empty body, not none: without a file docker-modem sends the query again as a JSON body, which the engine
  // reads as the context and ends the build without a word (measured).
  const body = context ?? Readable.from([]);
  return dial(docker, { path: '/build?', method: 'POST', file: body, options: query, isStream: true, abortSignal: signal, statusCodes: { 200: true, 400: 'bad parameter', 500: 'server error' } });
}

/** One request through dockerode's modem, for the engine calls dockerode does not expose with their options. */
function dial<T = Readable>(docker: Dockerode, request: object): Promise<T> {
  return new Promise((resolve, reject) => {
    (docker.modem as unknown as DialingModem<T>).dial(request, (error, answer) => (error ? reject(error) : resolve(answer as T)));
  });
}

interface DialingModem<T> {
  dial(options: object, callback: (error: Error | null, answer?: T) => void): void;
}

export function engineFailure(error: unknown, stage: 'build' | 'push', reference?: string): Error {
  if (error instanceof Error && error.name === 'AbortError') return error;
  const detail = engineMessage(error);
  const { code, statusCode } = (error ?? {}) as { code?: unknown; statusCode?: unknown };
  const denied = code === 'EACCES';
  const unreachable = typeof code === 'string' && NETWORK_CODES.has(code);
  const message = denied
    ? `Docker engine socket refused (${detail}): run ci_service in the socket's group (its image does so itself when started as root with RUN_AS; elsewhere add the group of /var/run/docker.sock: stat -c %g)`
    : unreachable
    ? `Docker engine not reachable (${detail}): is dockerd running, and DOCKER_HOST (or the mounted /var/run/docker.sock) right?`
    : stage === 'build'
      ? `docker build failed: ${detail}`
      : `pushing ${reference} failed: ${detail}`;
  // An engine that refuses the socket, or answers 4xx or 500, will do the same again.
  const retryable = unreachable || (typeof statusCode === 'number' && ENGINE_BUSY_STATUSES.has(statusCode));
  return stage === 'build' ? new ImageBuildError(message, retryable) : new PushError(message, retryable);
}

/** dockerode puts the engine's own sentence in `json.message`; its `message` adds HTTP noise. */
function engineMessage(error: unknown): string {
  const json = (error as { json?: { message?: unknown } } | undefined)?.json;
  if (json && typeof json.message === 'string') return json.message.trim();
  return describeError(error);
}
