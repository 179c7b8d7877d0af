import { ContextError, PushError, SourceError, SpecError } from '../domain/errors.js';
import type { BuildRequest } from '../domain/build-request.js';
import type { ImageBuildOptions } from '../engine/engine.js';
import type { BuildPorts, BuildResult, BuildSession } from './ports.js';
import { buildPlatforms, planPlatforms, STOPPED_BUILD_GRACE_MS, type BuildOnePlatform, type PlatformJobFor } from './build-platforms.js';
import { buildInCheckout, cleanUpEngine, explainFailedStepOf, maskedReporter, missingDockerfile, secretAudience, secretMask, withCheckout, type ExplainFailure } from './build-steps.js';
import { createBuildContext, type BuildContext } from '../source/context.js';
import { planRelease, readReleaseRules } from '../rules/release-rules.js';
import { refuseTagPush } from '../rules/tag-guard.js';
import { imageRepository, parseBuildSpec, resolveSecrets, SPEC_FILE, SPEC_MAX_BYTES, type BuildSpec } from '../rules/build-spec.js';

/**
 * fetch dockerInfo.json → fetch the commit (for BuildKit into this repository's kept folder, only the changed
 * files when few changed; for the legacy builder the tarball, streamed) → build → push every tag.
 * Each step is retried on its own: a failed push does not download the repository again.
 */
export async function runBuild(request: BuildRequest, ports: BuildPorts, session: BuildSession): Promise<BuildResult> {
  const { repository, sha } = request;
  const { reporter, signal, retry } = session;
  reporter.log(`reading ${SPEC_FILE} of ${repository.fullName} at ${sha}`);
  const specText = await retry(`reading ${SPEC_FILE}`, () => ports.source.readFile(repository, sha, SPEC_FILE, SPEC_MAX_BYTES, signal));
  if (specText === undefined) {
    throw new SpecError(
      `${SPEC_FILE} is not in ${repository.fullName} at ${sha.slice(0, 7)}: add it at the repository root, e.g. {"service_name": "my-app", "version": "1.0.0"}`,
    );
  }
  const spec = parseBuildSpec(specText);
  if (spec.unknownKeys.length > 0) reporter.log(`warning: ${SPEC_FILE} keys ignored (unknown): ${spec.unknownKeys.join(', ')}`);
  const { secrets, withheld } = resolveSecrets(spec.secrets, ports.secretGrants, repository.fullName, secretAudience(request));
  for (const reason of Object.values(withheld)) reporter.log(reason);

  const repositoryRef = imageRepository(ports.registry, spec);
  const plan = await planImage(request, spec, ports, session);
  const references = plan.tags.map((tag) => `${repositoryRef}:${tag}`);
  reporter.imageResolved(references[0]!, plan.push ? references : []);

  // Two builds tagging one name on one engine would push each other's image: one at a time.
  return session.exclusive(repositoryRef, async () => {
    if (session.signal.aborted) throw session.signal.reason;
    await checkImageOwner(request, spec, repositoryRef, ports);
    // Before any build: a pull request learns that its version is taken before it is merged.
    const published = await checkTagsMayBePushed(request, spec.serviceName, plan, ports, session);
    // A version not in the registry yet has no layers there to reuse.
    const guarded = plan.guardedTag === undefined ? undefined : `${repositoryRef}:${plan.guardedTag}`;
    const cacheFrom = await cacheSources(spec, repositoryRef, published ? references : references.filter((reference) => reference !== guarded), ports);
    const mask = secretMask(secrets);
    const labels = ociLabels(request, plan.version, ports.now());
    const explain: ExplainFailure = (error, dockerfileText) => explainFailedStepOf(error, spec, dockerfileText, mask, withheld);
    const masked = { ...session, reporter: maskedReporter(session.reporter, mask) };
    const image = { tags: references, secrets, cacheFrom, labels };
    if (spec.platforms) return buildForPlatforms(request, { ...spec, platforms: spec.platforms }, plan, image, ports, masked, explain);
    let imageId: string | undefined;
    try {
      imageId = await buildImage(request, spec, image, ports, masked, explain);
      let digest: string | undefined;
      if (plan.push) {
        digest = await pushTags(spec.serviceName, repositoryRef, plan.tags, ports, session);
        await ports.imageOwners.claim(repositoryRef, repository.fullName);
      } else {
        reporter.log(notPushed(repositoryRef, references[0]!));
      }
      // Not in the build's time: it is done once pushed, and the worker's slot waits for the clean-up.
      return { image: references[0]!, tags: plan.push ? references : [], digest, engineCleanUp: cleanUpEngine([imageId], ports, reporter) };
    } catch (error) {
      if (imageId) await cleanUpEngine([imageId], ports, reporter);
      throw error;
    }
  });
}

function notPushed(repositoryRef: string, image: string): string {
  return `built; nothing pushed: a pull request's build pushes ${image.slice(repositoryRef.length + 1)} only when ${SPEC_FILE} has "pull_requests": {"push": true}`;
}

/**
 * A multi-platform image (build-platforms.ts): one checkout, each platform built from it at once and pushed to the
 * staging repository, then one index under every tag.
 */
async function buildForPlatforms(
  request: BuildRequest,
  spec: BuildSpec & { platforms: string[] },
  plan: ImagePlan,
  image: Pick<ImageBuildOptions, 'tags' | 'secrets' | 'cacheFrom' | 'labels'>,
  ports: BuildPorts,
  session: BuildSession,
  explain: ExplainFailure,
): Promise<BuildResult> {
  if (ports.builder.contextKind !== 'checkout') {
    throw new SpecError(`${SPEC_FILE}: "platforms" needs BuildKit, which builds each platform from the kept checkout: set BUILDER=buildkit on ci_service (the engine's legacy builder builds its own platform only)`);
  }
  const plans = await planPlatforms(spec.platforms, ports);
  const { imageStore } = await ports.builder.describe();
  if (ports.provenance && imageStore !== 'containerd') {
    session.reporter.log(`no provenance attestation on what this host builds: its engine's ${imageStore} image store keeps none (the containerd image store does); PROVENANCE=false says none is wanted`);
  }
  const repositoryRef = imageRepository(ports.registry, spec);
  const options: ImageBuildOptions = { ...image, dockerfile: spec.dockerfile, buildArgs: spec.buildArgs, target: spec.target, ...(ports.provenance ? { provenance: ports.provenance } : {}) };
  const built = await session.retry('downloading and building', () =>
    withCheckout(request, spec, ports, session, (checkout) => {
      session.reporter.log(`building ${image.tags.join(', ')} for ${spec.platforms.join(', ')} (dockerfile ${spec.dockerfile}, context /${spec.context}${spec.target ? `, target ${spec.target}` : ''})`);
      const buildOne: BuildOnePlatform = (platform, reporter, signal) => buildInCheckout(checkout, { ...options, ...platform }, { ports, session: { ...session, reporter, signal }, explain });
      const jobFor: PlatformJobFor = (platform, stagingTag) => ({
        platform,
        stagingTag,
        request,
        spec: { dockerfile: spec.dockerfile, context: spec.context, buildArgs: spec.buildArgs, target: spec.target, secrets: spec.secrets },
        cacheFrom: image.cacheFrom,
        labels: image.labels,
      });
      return buildPlatforms(plans, { serviceName: spec.serviceName, tags: plan.push ? plan.tags : [], push: plan.push }, { buildOne, jobFor }, ports, session).catch(async (error: unknown) => {
        // A failed attempt's images go before the next attempt builds its own, and once more a moment later.
        const images = (error as { imageIds?: string[] }).imageIds ?? [];
        await cleanUpEngine(images, ports, session.reporter);
        setTimeout(() => void cleanUpEngine(images, ports, session.reporter), STOPPED_BUILD_GRACE_MS).unref();
        throw error;
      });
    }),
  );
  const cleanUp = () => cleanUpEngine(built.imageIds, ports, session.reporter);
  try {
    if (plan.push) await ports.imageOwners.claim(repositoryRef, request.repository.fullName);
    else session.reporter.log(notPushed(repositoryRef, image.tags[0]!));
  } catch (error) {
    await cleanUp();
    throw error;
  }
  return { image: image.tags[0]!, tags: plan.push ? image.tags : [], digest: built.digest, platforms: built.platforms, engineCleanUp: cleanUp() };
}

/** What a build tags and pushes, by its trigger; `guardedTag` is the immutable one, never pushed over. */
interface ImagePlan {
  tags: string[];
  push: boolean;
  guardedTag: string | undefined;
  /** The version the image is labelled with: a release's git tag's, otherwise dockerInfo.json's. */
  version: string;
}

async function planImage(request: BuildRequest, spec: BuildSpec, ports: BuildPorts, session: BuildSession): Promise<ImagePlan> {
  const { trigger } = request;
  if (trigger.kind === 'merge') return { tags: spec.tags, push: true, guardedTag: spec.version, version: spec.version };
  // The version guard on a pull request: the version it would publish once merged.
  if (trigger.kind === 'pull_request') return { tags: [`pr-${trigger.prNumber}`], push: spec.pullRequestPush, guardedTag: spec.version, version: spec.version };
  // Release rules are the default branch's (reviewed code), read again: never the pushed commit's own.
  if (!trigger.rulesRef) throw new SpecError(`this release build was stored by an older ci_service, which read release rules from the pushed commit: push ${trigger.ref} again`);
  const rules = await readReleaseRules(request.repository.fullName, trigger.rulesRef, () =>
    session.retry(`reading the release rules on ${trigger.rulesRef}`, () => ports.source.readFile(request.repository, trigger.rulesRef, SPEC_FILE, SPEC_MAX_BYTES, session.signal)),
  );
  const plan = 'ignored' in rules ? rules : planRelease(rules, trigger.ref);
  if ('ignored' in plan) throw new SpecError(plan.ignored);
  return { tags: plan.tags, push: true, guardedTag: plan.immutableTag, version: plan.immutableTag ?? spec.version };
}

/** One repository cannot overwrite another's image: a name belongs to the repository that first pushed it. */
async function checkImageOwner(request: BuildRequest, spec: BuildSpec, repositoryRef: string, ports: BuildPorts): Promise<void> {
  const owner = await ports.imageOwners.owner(repositoryRef);
  const pusher = request.repository.fullName.toLowerCase();
  if (owner === undefined || owner.toLowerCase() === pusher) return;
  if ((ports.imageOwners.allowedWriters[spec.serviceName] ?? []).some((allowed) => allowed.toLowerCase() === pusher)) return;
  throw new SpecError(
    `image name "${spec.serviceName}" belongs to ${owner}, which pushed it first: choose another "service_name" in ${SPEC_FILE}, or let ${request.repository.fullName} push it too with ALLOWED_IMAGE_WRITERS=${spec.serviceName}=${request.repository.fullName} on ci_service`,
  );
}

/**
 * Every tag the build would push, checked before it builds (tag-guard.ts): a published version is never pushed
 * over, and moving tags only move forward. A build that pushes nothing checks its version only, so that a pull
 * request learns it is taken. Says whether the version is in the registry already (from this commit).
 */
async function checkTagsMayBePushed(request: BuildRequest, serviceName: string, plan: ImagePlan, ports: BuildPorts, session: BuildSession): Promise<boolean> {
  const tags = plan.push ? plan.tags : plan.guardedTag === undefined ? [] : [plan.guardedTag];
  let published = false;
  for (const tag of tags) {
    const existing = await session.retry(`checking what ${serviceName}:${tag} holds`, () => ports.publishedImage(serviceName, tag, session.signal));
    const immutable = tag === plan.guardedTag;
    const refusal = refuseTagPush({ tag, sha: request.sha, version: plan.version, immutable }, existing);
    if (refusal) throw new SpecError(refusal);
    if (immutable && existing !== undefined) {
      session.reporter.log(`version ${tag} is already published from this commit: pushing it again`);
      published = true;
    }
  }
  return published;
}

/** The image's last pushed tag and its own tags that may be in the registry, unless dockerInfo.json says otherwise. */
async function cacheSources(spec: BuildSpec, repositoryRef: string, references: string[], ports: BuildPorts): Promise<string[]> {
  if (spec.cacheFrom !== 'default') return spec.cacheFrom;
  const last = await ports.lastPushedImage(repositoryRef);
  return [...new Set([...(last ? [last] : []), ...references])];
}

async function buildImage(
  request: BuildRequest,
  spec: BuildSpec,
  image: Pick<ImageBuildOptions, 'tags' | 'secrets' | 'cacheFrom' | 'labels'>,
  ports: BuildPorts,
  session: BuildSession,
  explain: ExplainFailure,
): Promise<string> {
  const { repository, sha } = request;
  const { reporter, signal, retry } = session;
  const references = image.tags;
  const buildOptions: ImageBuildOptions = {
    ...image,
    dockerfile: spec.dockerfile,
    buildArgs: spec.buildArgs,
    target: spec.target,
    ...(ports.provenance ? { provenance: ports.provenance } : {}),
  };
  // The download and the build are one step: a retry downloads again.
  return retry('downloading and building', async () => {
    const contextOptions = { context: spec.context, dockerfile: spec.dockerfile, ...ports.contextLimits };
    const announce = () => {
      reporter.log(`building ${references.join(', ')} (dockerfile ${spec.dockerfile}, context /${spec.context}${spec.target ? `, target ${spec.target}` : ''})`);
      if (buildOptions.cacheFrom.length > 0) reporter.log(`reusing layers from ${buildOptions.cacheFrom.join(', ')} where the registry has them`);
    };
    if (ports.builder.contextKind === 'checkout') return buildFromCheckout(request, buildOptions, { spec, ports, session, explain, announce });
    reporter.log(`downloading ${repository.fullName} at ${sha}`);
    const tarball = await ports.source.tarball(repository, sha, signal);
    const context = createBuildContext(tarball, contextOptions);
    announce();
    let imageId: string;
    try {
      imageId = (await ports.builder.build({ kind: 'tar', stream: context.stream }, buildOptions, reporter.output, signal)).id;
    } catch (error) {
      const explained = explainFromContext(context, spec) ?? explain(error, context.dockerfileText());
      // The engine may stop reading before the end (a failed step, a closed request): close the download too.
      context.destroy(error instanceof Error ? error : new Error(String(error)));
      throw explained ?? error;
    }
    const summary = await context.finished;
    reporter.log(`context: ${summary.entries} entries, ${summary.bytes} bytes`);
    return imageId;
  });
}

/**
 * The context brought up to date in this repository's kept folder, then built: BuildKit asks for the files it
 * has not got from this repository's last build, so an unchanged file does not travel twice.
 */
async function buildFromCheckout(
  request: BuildRequest,
  buildOptions: ImageBuildOptions,
  { spec, ports, session, explain, announce }: { spec: BuildSpec; ports: BuildPorts; session: BuildSession; explain: ExplainFailure; announce: () => void },
): Promise<string> {
  return withCheckout(request, spec, ports, session, (checkout) => {
    announce();
    return buildInCheckout(checkout, buildOptions, { ports, session, explain });
  });
}

/**
 * Pushes every tag; returns the digest (the same for every tag of one image), as the registry holds it: read back
 * from the registry after each push, and checked against the one the engine reports where it reports one.
 */
async function pushTags(serviceName: string, repositoryRef: string, tags: string[], ports: BuildPorts, session: BuildSession): Promise<string> {
  const { reporter, signal, retry } = session;
  let digest = '';
  for (const tag of tags) {
    const reference = `${repositoryRef}:${tag}`;
    digest = await retry(`pushing ${reference}`, async () => {
      reporter.log(`pushing ${reference}`);
      const reported = await ports.pusher.push(repositoryRef, tag, reporter.output, signal);
      const stored = await ports.manifestDigest(serviceName, tag, signal);
      if (stored === undefined) {
        throw new PushError(
          `the engine pushed ${reference}, but the registry ci_service checks (REGISTRY_URL) has no such tag: REGISTRY_URL must reach the same registry as REGISTRY does from the Docker engine`,
        );
      }
      // Builds of one image name push one at a time: another digest means something else pushed the tag meanwhile.
      if (reported !== undefined && reported !== stored) {
        throw new PushError(`the engine pushed ${reference} as ${reported}, but the registry holds ${stored} under that tag: something else pushed it meanwhile`, true);
      }
      return stored;
    });
    reporter.log(`pushed ${reference} ${digest}`);
  }
  return digest;
}

/** A failed build is better explained by a broken context or a missing Dockerfile, when that is the cause. */
function explainFromContext(context: BuildContext, spec: BuildSpec): Error | undefined {
  const outcome = context.outcome();
  if (outcome === undefined) return undefined;
  // A context that failed (a broken download, a crafted archive) is why the engine saw a broken stream.
  if ('error' in outcome) return outcome.error instanceof ContextError || outcome.error instanceof SourceError ? outcome.error : undefined;
  return outcome.summary.hasDockerfile ? undefined : missingDockerfile(spec);
}

export function ociLabels(request: BuildRequest, version: string, created: Date): Record<string, string> {
  return {
    'org.opencontainers.image.revision': request.sha,
    'org.opencontainers.image.source': request.repository.htmlUrl,
    'org.opencontainers.image.created': created.toISOString(),
    'org.opencontainers.image.version': version,
  };
}
