import Dockerode from 'dockerode';
import path from 'node:path';
import type { Config } from '../config.js';
import { BuildFailure, describeError } from '../domain/errors.js';
import { DockerEngine } from '../engine/docker/docker-engine.js';
import { engineLabel, type EngineDescription } from '../engine/engine.js';
import type { Logger } from '../logger.js';
import type { BuildPorts, PlatformHosts, PlatformJob, PlatformJobResult } from '../pipeline/ports.js';
import { runPlatformJob } from '../pipeline/build-platforms.js';
import { normalisePlatform } from '../rules/platforms.js';
import { createRetry } from '../queue/retry.js';
import type { SharedBuildQueue } from '../queue/shared-queue.js';
import { runBuild } from '../pipeline/run-build.js';
import { STAGING_REPOSITORY } from '../rules/build-spec.js';
import type { BuildWorker } from '../queue/build-worker.js';
import { Checkouts } from '../source/checkout.js';
import type { Core } from './core.js';
import { createWorker } from './worker.js';

/** How often a build host says it is alive, with its engine (ci_service_worker_last_seen_seconds). */
const WORKER_PRESENCE_MS = 15_000;

/** What runs builds (CI_ROLE all and worker): the engine, the kept checkouts, the pipeline's ports, the worker. */
export interface BuildHost {
  worker: BuildWorker;
  /** What the engine is, for /healthz (the same process serves it with CI_ROLE=all). */
  engine: { ping(): Promise<void>; describe(): Promise<EngineDescription> };
  /** Takes builds: the shared queue's, or those this process stored and those a previous one left. */
  start(): Promise<void>;
  /** Stops recording this worker as seen. */
  stop(): void;
  /** Once its builds are done: lets another process have DATA_DIR's checkouts. */
  close(): Promise<void>;
}

export async function openBuildHost(config: Config, logger: Logger, core: Core): Promise<BuildHost> {
  const engine = new DockerEngine(
    new Dockerode(config.docker),
    config.registryAuth && { ...config.registryAuth, serveraddress: config.registry.split('/')[0] ?? config.registry },
    config.builder,
    config.buildCacheBytes,
    config.buildLimits,
    (reason) => logger.warn({ reason }, 'could not prune the build cache; trying again after the next build'),
    config.nativePlatforms,
  );
  const { store, registry } = core;
  const checkouts = await Checkouts.open(path.join(config.dataDir, 'checkouts'), core.source, (reason) =>
    logger.error({ reason }, 'lost the lock on DATA_DIR/checkouts: another process may use them; give each worker a DATA_DIR of its own'),
  );
  const ports: BuildPorts = {
    source: core.source,
    checkouts,
    builder: engine,
    pusher: core.metrics.timedPusher(engine),
    registry: config.registry,
    contextLimits: { maxBytes: config.maxContextBytes, maxArchiveBytes: config.maxRepositoryBytes, maxEntries: config.maxContextEntries },
    secretGrants: config.buildSecrets,
    lastPushedImage: (repositoryRef) => store.lastPushedImage(repositoryRef),
    imageOwners: {
      owner: (repositoryRef) => store.imageOwner(repositoryRef),
      claim: (repositoryRef, repository) => store.claimImage(repositoryRef, repository),
      allowedWriters: config.allowedImageWriters,
    },
    publishedImage: (serviceName, tag, signal) => registry.publishedImage(serviceName, tag, signal),
    manifestDigest: (serviceName, tag, signal) => registry.manifestDigest(serviceName, tag, signal),
    imageIndex: {
      write: (staged, serviceName, tags, signal) => registry.writeIndex(STAGING_REPOSITORY, staged, serviceName, tags, signal),
      stagedDigest: (tag, signal) => registry.manifestDigest(STAGING_REPOSITORY, tag, signal),
      discardStaged: async (tag, signal) => {
        await registry.deleteStaged(STAGING_REPOSITORY, tag, signal);
      },
    },
    workerName: config.workerName,
    provenance: config.provenance,
    ...(core.shared ? { platformHosts: platformHosts(config, core, core.shared.queue) } : {}),
    now: core.now,
  };
  // The engine as it last described itself: named on each build it finishes, and (with whether the registry takes
  // what its image store pushes) on this worker's record, which /metrics shows.
  let engineName: string | undefined;
  let workerEngine: string | undefined;
  let nativePlatforms: string[] | undefined;
  const describeEngine = async () => {
    const described = await engine.describe();
    engineName = engineLabel(described);
    nativePlatforms = described.platforms.native.map((platform) => normalisePlatform(platform) ?? platform);
    return described;
  };
  const describeForRecord = async () => {
    const described = await describeEngine();
    // Remembered by the registry client (ten minutes; a refusal one): a beat does not try the registry each time.
    const takes = await core.registry.takesImagesOf(described.imageStore, STAGING_REPOSITORY);
    workerEngine = `${engineLabel(described)}; ${takes === true ? 'the registry takes its images' : 'the registry refuses its images'}`;
  };
  const worker = createWorker(config, logger, core, (request, session) => runBuild(request, ports, session), () => engineName);

  await describeEngine().then(
    (described) => {
      const fields = { builder: config.builder, engine: described };
      if (config.builder === 'buildkit' && !described.buildKit) logger.warn(fields, 'this Docker engine cannot build with BuildKit: set BUILDER=legacy');
      else logger.info(fields, `building with ${config.builder === 'buildkit' ? 'BuildKit' : "the engine's legacy builder"}`);
      // Not awaited: a registry that is slow to answer does not hold up the start.
      void core.registry.takesImagesOf(described.imageStore, STAGING_REPOSITORY).then((takes) => {
        if (takes === true) logger.info({ imageStore: described.imageStore, registry: config.registry }, 'the registry takes what this engine pushes');
        else logger.warn({ imageStore: described.imageStore, registry: config.registry, reason: takes }, "the registry does not take what this engine's image store pushes: builds will fail at their push");
      });
    },
    (error: unknown) => logger.warn({ error: describeError(error) }, 'the Docker engine does not answer yet; builds wait for it'),
  );

  let presence: NodeJS.Timeout | undefined;
  return {
    worker,
    engine,
    async start() {
      // Seen on /metrics (ci_service_worker_last_seen_seconds, ci_service_worker_engine_info) while it runs.
      const beat = () =>
        describeForRecord()
          .catch(() => undefined)
          .then(() => store.recordWorker(config.workerName, core.now(), workerEngine, nativePlatforms))
          .catch((error: unknown) => logger.warn({ error: describeError(error) }, 'could not record this worker as seen'));
      await beat();
      presence = setInterval(beat, WORKER_PRESENCE_MS);
      presence.unref();
      if (!core.shared) {
        const resumed = await worker.resumeUnfinished();
        if (resumed > 0) logger.info({ resumed }, 'took up builds left by the previous process');
        return;
      }
      await core.shared.queue.work(config.buildConcurrency, async (id) => {
        const build = await store.get(id);
        if (build) await worker.execute(build);
      });
      // Other workers' multi-platform builds hand this one the platforms its engine builds natively.
      const native = [...new Set(nativePlatforms ?? [])];
      await core.shared.queue.workPlatforms(native, config.buildConcurrency, (job, signal) => runPlatformJobHere(job, ports, config, logger, signal));
      logger.info({ worker: config.workerName, concurrency: config.buildConcurrency, platforms: native }, 'taking builds from the shared queue');
    },
    stop() {
      clearInterval(presence);
    },
    async close() {
      await checkouts.close();
    },
  };
}

/** Live workers are seen at least this often (WORKER_PRESENCE_MS), with a margin for a slow beat. */
const WORKER_LIVE_MS = 3 * WORKER_PRESENCE_MS;
/** The log a platform built here hands back to the build it belongs to: its last lines, at most. */
const PLATFORM_LOG_LINES = 5_000;

/** The other live workers, by the platforms they build natively: where a multi-platform build sends a platform. */
function platformHosts(config: Config, core: Core, queue: SharedBuildQueue): PlatformHosts {
  return {
    async nativeHosts(platform) {
      const now = core.now().getTime();
      const workers = await core.store.workers();
      return workers
        .filter((worker) => worker.name !== config.workerName && now - worker.seenAt.getTime() < WORKER_LIVE_MS && (worker.nativePlatforms ?? []).includes(platform))
        .map((worker) => worker.name);
    },
    build: (job, signal) => queue.buildPlatform(job, signal),
  };
}

/** One platform of another worker's build, run here within BUILD_TIMEOUT_S; its log and any failure go back in the result. */
async function runPlatformJobHere(job: PlatformJob, ports: BuildPorts, config: Config, logger: Logger, jobSignal: AbortSignal): Promise<PlatformJobResult> {
  const started = Date.now();
  const log: PlatformJobResult['log'] = [];
  const keep = (own: boolean) => (text: string) => {
    for (const line of text.split('\n')) if (line !== '') log.push({ own, text: line });
    if (log.length > PLATFORM_LOG_LINES) log.splice(0, log.length - PLATFORM_LOG_LINES);
  };
  const signal = AbortSignal.any([jobSignal, AbortSignal.timeout(config.buildTimeoutMs)]);
  const reporter = { log: keep(true), output: keep(false), imageResolved: () => {} };
  const retry = createRetry({ retries: config.buildRetries, baseDelayMs: config.buildRetryDelayMs, maxDelayMs: 60_000 }, signal, keep(true));
  const session = { reporter, signal, retry, exclusive: <T>(_name: string, action: () => Promise<T>) => action() };
  const result = (failure?: PlatformJobResult['failure']) => ({ worker: config.workerName, seconds: (Date.now() - started) / 1000, log, ...(failure ? { failure } : {}) });
  try {
    await runPlatformJob(job, ports, session);
    logger.info({ repository: job.request.repository.fullName, sha: job.request.sha, platform: job.platform }, "built a platform of another worker's build");
    return result();
  } catch (error) {
    const failure = error instanceof BuildFailure ? { stage: error.stage, message: error.message, retryable: error.retryable } : { stage: 'build' as const, message: describeError(error), retryable: true };
    logger.warn({ platform: job.platform, error: failure.message }, "a platform of another worker's build failed");
    return result(failure);
  }
}
