import path from 'node:path';
import { z } from 'zod';
import { SpecError } from '../errors.js';

export const SPEC_FILE = 'dockerInfo.json';

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
  /** Keys we do not know; the build goes on, the log says they were ignored. */
  unknownKeys: string[];
}

const NAME_RULE = 'lowercase letters and digits, separated by one of . _ - and "/" between path components (e.g. "my-app" or "team/my-app")';
const TAG_RULE = 'letters, digits, _ . - only, starting with a letter, digit or _, at most 128 characters (e.g. "1.2.0")';
const PATH_RULE = 'a relative path inside the repository (no "..", not absolute)';

const NAME_PATTERN = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;
const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const KNOWN_KEYS = ['service_name', 'version', 'dockerfile', 'context', 'build_args', 'tags'];

const insideRepository = (value: string) => normaliseRelativePath(value) !== undefined;

const specSchema = z.object({
  service_name: z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .max(200, 'must be at most 200 characters')
    .regex(NAME_PATTERN, `must be ${NAME_RULE}`),
  version: z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .regex(TAG_PATTERN, `must be ${TAG_RULE}`),
  dockerfile: z
    .string({ error: 'must be a string' })
    .refine((value) => insideRepository(value) && normaliseRelativePath(value) !== '', `must be ${PATH_RULE}`)
    .default('Dockerfile'),
  context: z.string({ error: 'must be a string' }).refine(insideRepository, `must be ${PATH_RULE}`).default(''),
  build_args: z
    .record(z.string(), z.string({ error: 'must be a string (build args are text)' }), { error: 'must be an object of strings' })
    .default({}),
  tags: z
    .array(z.string({ error: 'must be a string' }).regex(TAG_PATTERN, `must be ${TAG_RULE}`), { error: 'must be a list of tags' })
    .default([]),
});

/** Pure: the text of dockerInfo.json to a BuildSpec, or a SpecError naming the key, the value and the rule. */
export function parseBuildSpec(text: string): BuildSpec {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new SpecError(`${SPEC_FILE} is not valid JSON (${(error as Error).message}); it must be an object such as {"service_name": "my-app", "version": "1.0.0"}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SpecError(`${SPEC_FILE} must be a JSON object such as {"service_name": "my-app", "version": "1.0.0"}`);
  }
  const result = specSchema.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = issue.path.map(String).join('.');
      const value = valueAt(json, issue.path);
      const shown = value === undefined ? '' : ` = ${JSON.stringify(value)}`;
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
    unknownKeys: Object.keys(json).filter((key) => !KNOWN_KEYS.includes(key)),
  };
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

function valueAt(root: unknown, keys: PropertyKey[]): unknown {
  let current: unknown = root;
  for (const key of keys) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}
