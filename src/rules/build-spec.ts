import path from 'node:path';
import { z } from 'zod';
import { compileGlob } from '../patterns/glob.js';
import { SpecError } from '../domain/errors.js';
import { MAX_PLATFORMS, normalisePlatform, PLATFORM_RULE } from './platforms.js';

export const SPEC_FILE = 'dockerInfo.json';
/** A dockerInfo.json is a few hundred bytes; the source reads at most one byte more than this. */
export const SPEC_MAX_BYTES = 64 * 1024;
const MAX_TAGS = 32;
const MAX_BUILD_ARGS = 64;
const MAX_BUILD_ARG_CHARS = 4096;
/** Keys that name an object's machinery rather than data: refused wherever they stand. */
const FORBIDDEN_KEYS = ['__proto__', 'constructor', 'prototype'];
/** How much of a bad value an error quotes. */
const QUOTED_CHARS = 60;

/** What dockerInfo.json asks for, validated and normalised. */
export interface BuildSpec {
  serviceName: string;
  version: string;
  /** Path of the Dockerfile inside the context. */
  dockerfile: string;
  /** Folder of the repository used as context; '' is the root. */
  context: string;
  buildArgs: Record<string, string>;
  /** version first, then the extra tags, without repeats. */
  tags: string[];
  /** The stage of a multi-stage Dockerfile to build; undefined builds the last one. */
  target: string | undefined;
  /** Secret id (as `RUN --mount=type=secret,id=…` names it) → the ci_service environment variable that holds it. */
  secrets: Record<string, string>;
  /** Images whose layer cache the build may reuse: 'default' (the image's own tags), or none, or these. */
  cacheFrom: 'default' | string[];
  /** A pull request's build pushes `pr-<number>` (otherwise it pushes nothing). */
  pullRequestPush: boolean;
  /** Which pushed git tags and branches build, and to what image tags (release-rules.ts). */
  releases: ReleaseRules;
  /**
   * The platforms the image is built for, each its own build, pushed as one image index under every tag
   * (normalised, without repeats); undefined builds the build host's own platform as a single image.
   */
  platforms: string[] | undefined;
  /** Keys we do not know; the build goes on, the log says they were ignored. */
  unknownKeys: string[];
}

const NAME_RULE = 'lowercase letters and digits, separated by one of . _ - and "/" between path components (e.g. "my-app" or "team/my-app")';
const TAG_RULE = 'letters, digits, _ . - only, starting with a letter, digit or _, at most 128 characters (e.g. "1.2.0")';
const PATH_RULE = 'a relative path inside the repository (no "..", not absolute)';

const NAME_PATTERN = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;
const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const KNOWN_KEYS = ['service_name', 'version', 'dockerfile', 'context', 'build_args', 'tags', 'target', 'secrets', 'cache_from', 'pull_requests', 'releases', 'platforms'];
/**
 * The registry repository (under REGISTRY's namespace) where each platform's image waits, pushed by the engine,
 * until the image index that names them all is written under the image's own tags: no image takes this name.
 */
export const STAGING_REPOSITORY = 'ci-service-staging';

const STAGE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const SECRET_ID_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;
const VARIABLE_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** An image reference as the engine takes it: [host[:port]/]path[:tag][@digest]. */
const REFERENCE_PATTERN = /^[a-zA-Z0-9.-]+(:[0-9]{1,5})?(\/[a-z0-9]+([._-][a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$/;
const MAX_SECRETS = 32;
const MAX_BRANCH_RULES = 32;
/** A git branch name as `refs/heads/<name>` carries it (git check-ref-format, loosely). */
const BRANCH_PATTERN = /^(?!\/)(?!.*\.\.)(?!.*\/\/)[A-Za-z0-9._\/-]{1,255}$/;

export interface ReleaseRules {
  /** A glob (`*`, `?`, `[…]`) the pushed git tag matches, e.g. "v*"; its semantic version names the image tags. */
  gitTags: string | undefined;
  /** A release tag that is not a prerelease also moves `latest`. */
  latest: boolean;
  /** Branch name → the image tag a push to it moves, e.g. {"main": "edge"}. */
  branches: Record<string, string>;
}
const MAX_CACHE_FROM = 10;

const insideRepository = (value: string) => normaliseRelativePath(value) !== undefined;

const specSchema = z.object({
  service_name: z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .max(200, 'must be at most 200 characters')
    .regex(NAME_PATTERN, `must be ${NAME_RULE}`)
    .refine((name) => name !== STAGING_REPOSITORY && !name.startsWith(`${STAGING_REPOSITORY}/`), `is taken by ci_service for the platforms' images of multi-platform builds: choose another name`),
  version: z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .regex(TAG_PATTERN, `must be ${TAG_RULE}`),
  dockerfile: z
    .string({ error: 'must be a string' })
    .refine((value) => insideRepository(value) && normaliseRelativePath(value) !== '', `must be ${PATH_RULE}`)
    .default('Dockerfile'),
  context: z.string({ error: 'must be a string' }).refine(insideRepository, `must be ${PATH_RULE}`).default(''),
  build_args: z
    .record(
      z.string(),
      z.string({ error: 'must be a string (build args are text)' }).max(MAX_BUILD_ARG_CHARS, `must be at most ${MAX_BUILD_ARG_CHARS} characters`),
      { error: 'must be an object of strings' },
    )
    .refine((args) => Object.keys(args).length <= MAX_BUILD_ARGS, `must have at most ${MAX_BUILD_ARGS} entries`)
    .default({}),
  tags: z
    .array(z.string({ error: 'must be a string' }).regex(TAG_PATTERN, `must be ${TAG_RULE}`), { error: 'must be a list of tags' })
    .max(MAX_TAGS, `must list at most ${MAX_TAGS} tags`)
    .default([]),
  target: z
    .string({ error: 'must be a string' })
    .regex(STAGE_PATTERN, 'must be the name of a stage ("FROM … AS <name>"): letters, digits, _ . -')
    .optional(),
  secrets: z
    .record(
      z.string().regex(SECRET_ID_PATTERN, 'must be a secret id: letters, digits, _ . - (as in RUN --mount=type=secret,id=<id>)'),
      z.string({ error: 'must be the name of an environment variable of ci_service' }).regex(VARIABLE_PATTERN, 'must be an environment variable name such as NPM_TOKEN'),
      {
        error: (issue) =>
          issue.code === 'invalid_key'
            ? 'must be a secret id: letters, digits, _ . - (as in RUN --mount=type=secret,id=<id>)'
            : 'must be an object of secret id → environment variable, e.g. {"npm_token": "NPM_TOKEN"}',
      },
    )
    .refine((secrets) => Object.keys(secrets).length <= MAX_SECRETS, `must name at most ${MAX_SECRETS} secrets`)
    .default({}),
  cache_from: z
    .union(
      [
        z.literal(false),
        z
          .array(z.string({ error: 'must be a string' }).regex(REFERENCE_PATTERN, 'must be an image reference such as registry.example.com/app:latest'))
          .max(MAX_CACHE_FROM, `must name at most ${MAX_CACHE_FROM} images`),
      ],
      { error: 'must be false (no cache from the registry) or a list of image references' },
    )
    .optional(),
  pull_requests: z
    .object({ push: z.boolean({ error: 'must be true (push pr-<number>) or false' }).default(false) }, { error: 'must be an object such as {"push": true}' })
    .strict()
    .optional(),
  platforms: z
    .array(z.string({ error: 'must be a string' }).refine((value) => normalisePlatform(value) !== undefined, `must be a Linux platform, ${PLATFORM_RULE}`), {
      error: 'must be a list of platforms such as ["linux/amd64", "linux/arm64"]',
    })
    .min(1, 'must name at least one platform, such as ["linux/amd64", "linux/arm64"]; leave it out to build for the build host\'s own')
    .max(MAX_PLATFORMS, `must name at most ${MAX_PLATFORMS} platforms`)
    .optional(),
  releases: z
    .object(
      {
        git_tags: z
          .string({ error: 'must be a pattern such as "v*"' })
          .min(1, 'must be a pattern such as "v*"')
          .max(128, 'must be at most 128 characters')
          .refine(isGlob, 'must be a glob such as "v*" (*, ?, [a-z], {a,b})')
          .optional(),
        latest: z.boolean({ error: 'must be true or false' }).default(true),
        branches: z
          .record(
            z.string().regex(BRANCH_PATTERN, 'must be a branch name such as "main"'),
            z.string({ error: 'must be the image tag a push to the branch moves, e.g. "edge"' }).regex(TAG_PATTERN, `must be ${TAG_RULE}`),
            { error: 'must be an object of branch → image tag, e.g. {"main": "edge"}' },
          )
          .refine((branches) => Object.keys(branches).length <= MAX_BRANCH_RULES, `must name at most ${MAX_BRANCH_RULES} branches`)
          .default({}),
      },
      { error: 'must be an object such as {"git_tags": "v*", "branches": {"main": "edge"}}' },
    )
    .strict()
    .optional(),
});

/** Pure: the text of dockerInfo.json to a BuildSpec, or a SpecError naming the key, the value and the rule. */
export function parseBuildSpec(text: string): BuildSpec {
  if (Buffer.byteLength(text, 'utf8') > SPEC_MAX_BYTES) {
    throw new SpecError(`${SPEC_FILE} is larger than ${SPEC_MAX_BYTES / 1024} KB; it needs only a few keys, e.g. {"service_name": "my-app", "version": "1.0.0"}`);
  }
  let json: unknown;
  try {
    // Windows editors start a UTF-8 file with a byte order mark, which JSON does not allow: it is not content.
    json = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (error) {
    throw new SpecError(`${SPEC_FILE} is not valid JSON (${(error as Error).message}); it must be an object such as {"service_name": "my-app", "version": "1.0.0"}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SpecError(`${SPEC_FILE} must be a JSON object such as {"service_name": "my-app", "version": "1.0.0"}`);
  }
  const forbidden = forbiddenKeyPath(json);
  if (forbidden) throw new SpecError(`${SPEC_FILE}: "${forbidden}" is not allowed: ${FORBIDDEN_KEYS.join(', ')} cannot be keys`);
  const result = specSchema.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = issue.path.map(String).join('.');
      // For a bad key, the value under it is not what is wrong.
      const value = issue.code === 'invalid_key' ? undefined : valueAt(json, issue.path);
      const shown = value === undefined ? '' : ` = ${quote(value)}`;
      return `"${key}"${shown} ${issue.message}`;
    });
    throw new SpecError(`${SPEC_FILE}: ${problems.join('; ')}`);
  }
  const spec = result.data;
  return {
    serviceName: spec.service_name,
    version: spec.version,
    dockerfile: normaliseRelativePath(spec.dockerfile) ?? 'Dockerfile',
    context: normaliseRelativePath(spec.context) ?? '',
    buildArgs: spec.build_args,
    tags: [...new Set([spec.version, ...spec.tags])],
    target: spec.target,
    secrets: spec.secrets,
    cacheFrom: spec.cache_from === undefined ? 'default' : spec.cache_from === false ? [] : spec.cache_from,
    pullRequestPush: spec.pull_requests?.push ?? false,
    releases: { gitTags: spec.releases?.git_tags, latest: spec.releases?.latest ?? true, branches: spec.releases?.branches ?? {} },
    platforms: spec.platforms && [...new Set(spec.platforms.map((platform) => normalisePlatform(platform)!))],
    unknownKeys: Object.keys(json).filter((key) => !KNOWN_KEYS.includes(key)),
  };
}

/** One variable a repository's builds may be handed (BUILD_SECRETS), and its own pull requests' heads too (PULL_REQUEST_SECRETS). */
export interface SecretGrant {
  /** owner/name */
  repository: string;
  variable: string;
  /** undefined: listed, but not set on ci_service. */
  value: string | undefined;
  pullRequests: boolean;
}

/** Whose code a build runs: reviewed (a merge, a release), a pull request's head of the repository itself, or a fork's. */
export type SecretAudience = 'reviewed' | 'pull_request' | 'fork';

/**
 * Pure: each secret's value, from what BUILD_SECRETS grants this repository; a SpecError names the grant to add or
 * the variable to set. Code nobody has reviewed gets less: a pull request's head only what PULL_REQUEST_SECRETS
 * grants, a fork's head nothing. What is withheld is said, by secret id (for the log, and to explain a step that
 * needed it); the build runs without it.
 */
export function resolveSecrets(
  secrets: Record<string, string>,
  grants: SecretGrant[],
  repository: string,
  audience: SecretAudience,
): { secrets: Record<string, string>; withheld: Record<string, string> } {
  const resolved: Record<string, string> = {};
  const withheld: Record<string, string> = {};
  for (const [id, variable] of Object.entries(secrets)) {
    const grant = grants.find((candidate) => candidate.variable === variable && candidate.repository.toLowerCase() === repository.toLowerCase());
    if (!grant) {
      throw new SpecError(
        `${SPEC_FILE}: secret "${id}" names ${variable}, which ci_service does not hand to builds of ${repository}: add ${repository}:${variable} to BUILD_SECRETS on ci_service and set ${variable}`,
      );
    }
    if (grant.value === undefined || grant.value === '') {
      throw new SpecError(`${SPEC_FILE}: secret "${id}" needs the environment variable ${variable} on ci_service, which is not set: set it and restart ci_service`);
    }
    if (audience === 'fork') {
      withheld[id] = `secret "${id}" (${variable}) is not handed to a fork's pull request, whose code nobody has reviewed: the build runs without it`;
    } else if (audience === 'pull_request' && !grant.pullRequests) {
      withheld[id] =
        `secret "${id}" (${variable}) is not handed to pull request builds, whose code nobody has reviewed yet: the build runs without it (PULL_REQUEST_SECRETS=${repository}:${variable} hands it to this repository's own pull requests, never a fork's)`;
    } else {
      resolved[id] = grant.value;
    }
  }
  return { secrets: resolved, withheld };
}

function isGlob(pattern: string): boolean {
  try {
    compileGlob(pattern, { braces: true });
    return true;
  } catch {
    return false;
  }
}

/** `<registry>/<service_name>` — the repository part of every tag we push. */
export function imageRepository(registry: string, spec: Pick<BuildSpec, 'serviceName'>): string {
  return `${registry}/${spec.serviceName}`;
}

/** 'a/./b/' → 'a/b', '.' → '', escapes and absolute paths → undefined. */
export function normaliseRelativePath(value: string): string | undefined {
  if (value.includes('\0') || path.posix.isAbsolute(value) || /^[A-Za-z]:/.test(value)) return undefined;
  const normal = path.posix.normalize(value.replace(/\\/g, '/')).replace(/\/+$/, '');
  if (normal === '..' || normal.startsWith('../')) return undefined;
  return normal === '.' ? '' : normal;
}

/** A bad value as an error shows it: JSON, cut short, so that a huge value cannot make a huge error. */
function quote(value: unknown): string {
  if (typeof value === 'string' && value.length > QUOTED_CHARS) return JSON.stringify(`${value.slice(0, QUOTED_CHARS - 1)}…`);
  const json = JSON.stringify(value) ?? String(value);
  return json.length > QUOTED_CHARS ? `${json.slice(0, QUOTED_CHARS - 1)}…` : json;
}

/** The path of the first key named like object machinery (`__proto__`, …), at any depth. */
function forbiddenKeyPath(value: unknown, path: string[] = []): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  for (const key of Object.keys(value)) {
    if (FORBIDDEN_KEYS.includes(key)) return [...path, key].join('.');
    const below = forbiddenKeyPath((value as Record<string, unknown>)[key], [...path, key]);
    if (below) return below;
  }
  return undefined;
}

function valueAt(root: unknown, keys: PropertyKey[]): unknown {
  let current: unknown = root;
  for (const key of keys) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}
