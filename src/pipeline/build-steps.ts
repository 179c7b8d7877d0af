import { describeError, ImageBuildError, SpecError } from '../domain/errors.js';
import type { BuildRequest } from '../domain/build-request.js';
import type { BuiltImage, ImageBuildOptions } from '../engine/engine.js';
import { explainFailedStep, locateInDockerfile } from '../engine/explain-build-failure.js';
import { SPEC_FILE, type BuildSpec, type SecretAudience } from '../rules/build-spec.js';
import type { Checkout, Fetched } from '../source/checkout.js';
import type { BuildPorts, BuildReporter, BuildSession } from './ports.js';

/**
 * The steps every image build takes, whichever host runs it and for whichever platform: the commit's context held
 * in the kept checkout, one image built from it, a failure explained with its Dockerfile line, secrets masked in the
 * log, the engine cleaned up after.
 */

/** This commit's context in the repository's kept folder, held while `use` builds from it. */

export async function withCheckout<T>(request: BuildRequest, spec: Pick<BuildSpec, 'context' | 'dockerfile'>, ports: BuildPorts, session: BuildSession, use: (checkout: Checkout) => Promise<T>): Promise<T> {
  const { repository, sha } = request;
  session.reporter.log(`fetching ${repository.fullName} at ${sha}`);
  const scope = request.trigger.kind === 'pull_request' ? 'pull_request' : 'reviewed';
  const contextOptions = { context: spec.context, dockerfile: spec.dockerfile, ...ports.contextLimits };
  const checkout = await ports.checkouts.checkout(repository, sha, contextOptions, scope, session.signal);
  try {
    session.reporter.log(`context: ${checkout.summary.entries} entries, ${checkout.summary.bytes} bytes; ${describeFetch(checkout.fetched)}`);
    if (!checkout.summary.hasDockerfile) throw missingDockerfile(spec);
    return await use(checkout);
  } finally {
    checkout.release();
  }
}

/** One image built from a checkout; returns the engine's image id. */

export async function buildInCheckout(checkout: Checkout, buildOptions: ImageBuildOptions, { ports, session, explain }: { ports: BuildPorts; session: BuildSession; explain: ExplainFailure }): Promise<string> {
  let built: BuiltImage;
  try {
    built = await ports.builder.build({ kind: 'checkout', checkout }, buildOptions, session.reporter.output, session.signal);
  } catch (error) {
    throw explain(error, checkout.dockerfileText) ?? error;
  }
  if (built.contextSent) {
    const files = checkout.entries.filter((entry) => entry.type === 'file').length;
    const { paths, bytes } = built.contextSent;
    const which = paths.length > 0 && paths.length <= LISTED_SENT_FILES ? `: ${paths.join(', ')}` : '';
    session.reporter.log(`context: sent ${paths.length} of ${files} files (${bytes} bytes)${which}; BuildKit kept the others from this repository's last build, or did not need them`);
  }
  return built.id;
}

/** A few files sent are named in the log; more are counted only. */

const LISTED_SENT_FILES = 10;

export function describeFetch(fetched: Fetched): string {
  if (fetched.kind === 'unchanged') return 'the same commit as this host last built: nothing fetched';
  if (fetched.kind === 'tarball') return "downloaded the repository's tarball";
  return `fetched the ${fetched.files} changed files (${fetched.bytes} bytes) since this host's last build of the repository`;
}

export function missingDockerfile(spec: Pick<BuildSpec, 'context' | 'dockerfile'>): SpecError {
  const where = spec.context === '' ? 'the repository root' : `the context folder "${spec.context}"`;
  return new SpecError(`Dockerfile "${spec.dockerfile}" is not in ${where}: add it, or set "dockerfile" (a path inside the context) in ${SPEC_FILE}`);
}

/**
 * The engine keeps nothing of a build but its cache: the pushed image lives in the registry. A failure here is
 * logged, never the build's: the next build tries again.
 */

export async function cleanUpEngine(imageIds: string[], ports: BuildPorts, reporter: BuildReporter): Promise<void> {
  try {
    for (const imageId of imageIds) await ports.builder.removeImage(imageId);
    ports.builder.pruneBuildCache();
  } catch (error) {
    reporter.log(`could not clean up the engine (${describeError(error)}); the next build tries again`);
  }
}

/** A failed build explained with the Dockerfile it ran (its text, when the context carried it). */

export type ExplainFailure = (error: unknown, dockerfileText: string | undefined) => ImageBuildError | undefined;

/** A failed Dockerfile step (or an error BuildKit gave without one), named with its line in the Dockerfile the context carried. */

export function explainFailedStepOf(
  error: unknown,
  spec: Pick<BuildSpec, 'dockerfile'>,
  dockerfileText: string | undefined,
  mask: (text: string) => string,
  withheld: Record<string, string>,
): ImageBuildError | undefined {
  if (!(error instanceof ImageBuildError)) return undefined;
  if (!error.failedStep) {
    const located = locateInDockerfile(error.message, dockerfileText);
    return located === error.message ? undefined : new ImageBuildError(located, error.retryable);
  }
  const dockerfile = { path: spec.dockerfile, text: dockerfileText };
  return new ImageBuildError(mask(explainFailedStep(error.failedStep, error.message, dockerfile, withheld)), error.retryable);
}

/** Replaces each secret's value with ***: a step that prints one (`RUN cat /run/secrets/x`) does not leak it. */

export function secretMask(secrets: Record<string, string>): (text: string) => string {
  const values = Object.values(secrets).filter((value) => value.length > 0);
  return (text) => values.reduce((masked, value) => masked.split(value).join('***'), text);
}

export function maskedReporter(reporter: BuildReporter, mask: (text: string) => string): BuildReporter {
  return {
    log: (text) => reporter.log(mask(text)),
    output: (text) => reporter.output(mask(text)),
    imageResolved: (image, tags) => reporter.imageResolved(image, tags),
  };
}

/** A build stored before pull requests knew whether they came from a fork counts as a fork's: the safe side. */

export function secretAudience(request: BuildRequest): SecretAudience {
  if (request.trigger.kind !== 'pull_request') return 'reviewed';
  return request.trigger.fork === false ? 'pull_request' : 'fork';
}
