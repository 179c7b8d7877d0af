import { randomUUID } from 'node:crypto';
import { BuildFailure, BuildTimeoutError, ContextError, ImageBuildError, PushError, SourceError, SpecError, type FailureStage } from '../domain/errors.js';
import type { PlatformImage } from '../domain/build-record.js';
import type { ImageBuildOptions } from '../engine/engine.js';
import { engineLabel } from '../engine/engine.js';
import { howBuilt, platformSlug } from '../rules/platforms.js';
import { resolveSecrets, SPEC_FILE, STAGING_REPOSITORY } from '../rules/build-spec.js';
import type { BuildPorts, BuildReporter, BuildSession, PlatformHosts, PlatformJob, PlatformJobResult } from './ports.js';
import { buildInCheckout, cleanUpEngine, explainFailedStepOf, maskedReporter, secretAudience, secretMask, withCheckout, type ExplainFailure } from './build-steps.js';

/** How one platform of the image is built: here (natively or emulated), or by another worker that runs it natively. */
export interface PlatformPlan {
  platform: string;
  how: 'native' | 'emulated';
  /** Another worker builds it: one of these, whichever takes its job first. */
  elsewhere?: string[];
}

/**
 * Each platform dockerInfo.json asks for, and how this host's engine builds it: natively where its CPU runs it,
 * else under QEMU's emulation. A platform the engine can do neither for fails the build before anything is built.
 */
export async function planPlatforms(platforms: string[], ports: BuildPorts): Promise<PlatformPlan[]> {
  const engine = await ports.builder.describe();
  const plans = await Promise.all(
    platforms.map(async (platform) => {
      const how = howBuilt(platform, engine.platforms);
      if (how === 'native' || !ports.platformHosts) return { platform, how };
      // Emulation is the last resort: a worker whose CPU runs the platform builds it many times faster.
      const hosts = await ports.platformHosts.nativeHosts(platform);
      return hosts.length > 0 ? { platform, how: 'native' as const, elsewhere: hosts } : { platform, how };
    }),
  );
  const unbuildable = plans.filter((plan) => plan.how === undefined).map((plan) => plan.platform);
  if (unbuildable.length > 0) {
    const emulated = engine.platforms.emulated.length > 0 ? `emulates ${engine.platforms.emulated.join(', ')}` : 'emulates none (no QEMU binfmt handlers are registered)';
    throw new SpecError(
      `${SPEC_FILE}: "platforms" names ${unbuildable.join(', ')}, which this build host cannot build: its engine (${engineLabel(engine)}) builds ${engine.platforms.native.join(', ')} natively and ${emulated}. Register QEMU's handlers on the build host (apt-get install qemu-user-static binfmt-support), or remove ${unbuildable.length === 1 ? 'it' : 'them'} from "platforms"`,
    );
  }
  return plans as PlatformPlan[];
}

/** Builds one platform's image from the build's context, tagged as asked; returns the engine's image id. */
export type BuildOnePlatform = (options: Pick<ImageBuildOptions, 'tags' | 'platform'>, reporter: BuildReporter, signal: AbortSignal) => Promise<string>;

/** The job that hands one platform to another worker, given its staging tag. */
export type PlatformJobFor = (platform: string, stagingTag: string) => PlatformJob;

export interface PlatformsBuilt {
  platforms: PlatformImage[];
  /** The index's digest, once written under every tag. */
  digest: string | undefined;
  /** The engine's images, to remove once pushed (or failed). */
  imageIds: string[];
}

/**
 * How long after a platform's build was stopped its image may still be tagged: the engine ends a build whose
 * request was closed, but one that was exporting still names its image (measured: an amd64 image left behind when
 * its arm64 sibling failed). The failed build's images are removed by name once more after this.
 */
export const STOPPED_BUILD_GRACE_MS = 5_000;

/**
 * Every platform at once (BuildKit interleaves their steps; an emulated one is CPU-bound under QEMU), each pushed by
 * the engine under a staging tag of its own; then one index naming them all, written under each tag of the image
 * through the registry's API. The first platform to fail stops the others: the build fails naming it.
 */
export async function buildPlatforms(
  plans: PlatformPlan[],
  image: { serviceName: string; tags: string[]; push: boolean },
  { buildOne, jobFor }: { buildOne: BuildOnePlatform; jobFor: PlatformJobFor },
  ports: BuildPorts,
  session: BuildSession,
): Promise<PlatformsBuilt> {
  const run = randomUUID();
  const stagingRepository = stagingRepositoryOf(ports);
  const imageIds: string[] = [];
  const stop = new AbortController();
  const unfinished = new Set(plans);
  const stopAll = () => {
    // Which platforms a timeout or a cancel stopped: an emulated step can hang (README, "A limit of emulation").
    for (const plan of unfinished) platformReporter(session.reporter, plan.platform).log(`still building (${plan.elsewhere ? 'on another worker' : plan.how}) when the build was stopped`);
    stop.abort(session.signal.reason);
  };
  session.signal.addEventListener('abort', stopAll, { once: true });
  let firstFailure: unknown;

  const buildPlatform = async (plan: PlatformPlan): Promise<PlatformImage & { tag: string }> => {
    const started = Date.now();
    const tag = `${run}-${platformSlug(plan.platform)}`;
    const reporter = platformReporter(session.reporter, plan.platform);
    try {
      if (plan.elsewhere) {
        reporter.log(`building for ${plan.platform} on a worker whose engine runs it natively (${plan.elsewhere.join(', ')})`);
        const remote = await buildElsewhere(jobFor(plan.platform, tag), ports.platformHosts!, reporter, stop.signal);
        unfinished.delete(plan);
        return { platform: plan.platform, how: 'native', worker: remote.worker, seconds: (Date.now() - started) / 1000, tag };
      }
      reporter.log(`building for ${plan.platform}, ${plan.how === 'native' ? "on the engine's own CPU" : "emulated by QEMU (slower than a native host)"}`);
      imageIds.push(await buildOne({ tags: [`${stagingRepository}:${tag}`], platform: plan.platform }, reporter, stop.signal));
      if (image.push) await pushStaged(plan.platform, tag, ports, { ...session, reporter, signal: stop.signal });
      unfinished.delete(plan);
      return { platform: plan.platform, how: plan.how, worker: ports.workerName, seconds: (Date.now() - started) / 1000, tag };
    } catch (error) {
      unfinished.delete(plan);
      firstFailure ??= stop.signal.aborted && !session.signal.aborted ? undefined : failureOf(plan, error);
      stop.abort(error);
      throw error;
    }
  };

  try {
    const settled = await Promise.allSettled(plans.map(buildPlatform));
    const built = settled.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
    if (built.length < plans.length) throw firstFailure ?? (settled.find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult).reason;
    const platforms = built.map(({ tag: _tag, ...platform }) => platform);
    // Another worker pushes what it built to its staging tag: nothing else is wanted of it.
    if (!image.push) {
      await Promise.all(built.map((each) => ports.imageIndex.discardStaged(each.tag, session.signal).catch(() => undefined)));
      return { platforms, digest: undefined, imageIds };
    }

    const staged = built.map(({ platform, tag }) => ({ platform, tag }));
    const index = await session.retry('writing the image index', () => ports.imageIndex.write(staged, image.serviceName, image.tags, session.signal));
    for (const tag of image.tags) session.reporter.log(`pushed ${ports.registry}/${image.serviceName}:${tag} ${index.digest}: one index of ${plans.map((plan) => plan.platform).join(', ')}`);
    await Promise.all(staged.map((each) => ports.imageIndex.discardStaged(each.tag, session.signal).catch(() => undefined)));
    return { platforms: platforms.map((platform) => ({ ...platform, digest: index.manifests[platform.platform] })), digest: index.digest, imageIds };
  } catch (error) {
    // The engine's images are the caller's to remove, failed or not: by id, and by the staging names of the
    // platforms built here, whose build may have been stopped after the engine named its image.
    const names = plans.filter((plan) => !plan.elsewhere).map((plan) => `${stagingRepository}:${run}-${platformSlug(plan.platform)}`);
    throw Object.assign(error instanceof Error ? error : new Error(String(error)), { imageIds: [...imageIds, ...names] });
  } finally {
    session.signal.removeEventListener('abort', stopAll);
  }
}

/** Where the engine pushes one platform's image: the staging repository of ci_service, under REGISTRY. */
function stagingRepositoryOf(ports: BuildPorts): string {
  return `${ports.registry}/${STAGING_REPOSITORY}`;
}

/** One platform's image pushed by the engine under its staging tag, and found there by ci_service's registry client. */
async function pushStaged(platform: string, tag: string, ports: BuildPorts, session: BuildSession): Promise<void> {
  const stagingRepository = stagingRepositoryOf(ports);
  await session.retry(`pushing ${platform}'s image`, async () => {
    await ports.pusher.push(stagingRepository, tag, session.reporter.output, session.signal);
    if ((await ports.imageIndex.stagedDigest(tag, session.signal)) === undefined) {
      throw new PushError(
        `the engine of worker ${ports.workerName} pushed ${stagingRepository}:${tag}, but the registry ci_service checks (REGISTRY_URL) has no such tag: REGISTRY_URL must reach the same registry as REGISTRY does from the Docker engine`,
      );
    }
  });
}

/** A platform built by another worker: its log joins the build's, its failure is the build's. */
async function buildElsewhere(job: PlatformJob, hosts: PlatformHosts, reporter: BuildReporter, signal: AbortSignal): Promise<PlatformJobResult> {
  const result = await hosts.build(job, signal);
  for (const line of result.log) (line.own ? reporter.log : reporter.output)(line.text);
  if (result.failure) throw failureFrom(result.failure);
  reporter.log(`built and pushed by worker ${result.worker} in ${result.seconds.toFixed(1)} s`);
  return result;
}

/** A failure another worker reported, as the error of its kind. */
function failureFrom(failure: NonNullable<PlatformJobResult['failure']>): BuildFailure {
  const kinds: Record<FailureStage, new (message: string, retryable: boolean) => BuildFailure> = {
    fetch: SourceError,
    spec: SpecError,
    context: ContextError,
    build: ImageBuildError,
    push: PushError,
    timeout: BuildTimeoutError,
  };
  return new kinds[failure.stage](failure.message, failure.retryable);
}

/**
 * One platform's image, built here for another worker's multi-platform build (its PlatformJob), pushed under its
 * staging tag. The secrets are this host's own grants for the repository, by the names dockerInfo.json gave.
 */
export async function runPlatformJob(job: PlatformJob, ports: BuildPorts, session: BuildSession): Promise<void> {
  const { request, spec } = job;
  const { secrets, withheld } = resolveSecrets(spec.secrets, ports.secretGrants, request.repository.fullName, secretAudience(request));
  for (const reason of Object.values(withheld)) session.reporter.log(reason);
  const mask = secretMask(secrets);
  const masked = { ...session, reporter: maskedReporter(session.reporter, mask) };
  const explain: ExplainFailure = (error, dockerfileText) => explainFailedStepOf(error, spec, dockerfileText, mask, withheld);
  const stagingRepository = stagingRepositoryOf(ports);
  const options: ImageBuildOptions = {
    ...spec,
    tags: [`${stagingRepository}:${job.stagingTag}`],
    secrets,
    cacheFrom: job.cacheFrom,
    labels: job.labels,
    platform: job.platform,
    ...(ports.provenance ? { provenance: ports.provenance } : {}),
  };
  session.reporter.log(`building for ${job.platform} on this worker's engine, natively`);
  const imageId = await session.retry('downloading and building', () => withCheckout(request, spec, ports, masked, (checkout) => buildInCheckout(checkout, options, { ports, session: masked, explain })));
  try {
    await pushStaged(job.platform, job.stagingTag, ports, masked);
  } finally {
    await cleanUpEngine([imageId], ports, session.reporter);
  }
}

/** Each line of a platform's build carries its platform: the builds run at once, into one log. */
function platformReporter(reporter: BuildReporter, platform: string): BuildReporter {
  const prefix = (text: string) =>
    text
      .split('\n')
      .map((line) => (line === '' ? line : `[${platform}] ${line}`))
      .join('\n');
  return { log: (text) => reporter.log(prefix(text)), output: (text) => reporter.output(prefix(text)), imageResolved: (image, tags) => reporter.imageResolved(image, tags) };
}

/** A step killed by a signal (exit code 128 + n) under QEMU: the emulator's limits, as often as the program's. */
function emulatedCrash(message: string): string {
  const code = /\(exit code: (\d+)\)/.exec(message);
  if (!code || Number(code[1]) <= 128) return '';
  return `; the step was killed by signal ${Number(code[1]) - 128} under QEMU's emulation: if it passes natively, build this platform on a host of its own architecture`;
}

/** A platform's failure, named by its platform (`linux/arm64: Dockerfile line 4: RUN … failed`). */
function failureOf(plan: PlatformPlan, error: unknown): unknown {
  if (!(error instanceof BuildFailure)) return error;
  const message = `${plan.platform}: ${error.message}${plan.how === 'emulated' ? emulatedCrash(error.message) : ''}`;
  if (error instanceof ImageBuildError) return new ImageBuildError(message, error.retryable, error.failedStep);
  return new (error.constructor as new (message: string, retryable: boolean) => BuildFailure)(message, error.retryable);
}
