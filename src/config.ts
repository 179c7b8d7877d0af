import type { SecretGrant } from './rules/build-spec.js';
import { hostname } from 'node:os';
import { z } from 'zod';
import { ConfigError } from './domain/errors.js';
import { normalisePlatform } from './rules/platforms.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** host[:port][/namespace], as the Docker engine spells a registry prefix. */
const REGISTRY_PATTERN = /^[a-zA-Z0-9.-]+(:[0-9]{1,5})?(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/;

const commaList = z
  .string()
  .optional()
  .transform((value) =>
    (value ?? '')
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item.length > 0),
  );

const integer = (fallback: number, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined || value.trim() === '') return fallback;
      const parsed = Number(value);
      if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}` });
        return z.NEVER;
      }
      return parsed;
    });

const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value.trim()));

const environmentSchema = z.object({
  PORT: integer(8080, 0, 65535),
  WEBHOOK_SECRET: optionalText,
  GITHUB_API_URL: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL such as https://api.github.com' })
    .default('https://api.github.com')
    .transform((url) => url.replace(/\/+$/, '')),
  GITHUB_TOKEN: optionalText,
  GITHUB_APP_ID: optionalText.pipe(z.string().regex(/^[0-9]{1,12}$/, "must be the GitHub App's numeric id (its settings page shows it as App ID)").optional()),
  GITHUB_APP_PRIVATE_KEY: optionalText,
  GITHUB_APP_PRIVATE_KEY_FILE: optionalText,
  REGISTRY: z
    .string()
    .trim()
    .default('localhost:83')
    .refine((value) => REGISTRY_PATTERN.test(value), {
      message: 'must be host[:port][/namespace] as the Docker engine sees it, e.g. localhost:83 or registry.example.com/team',
    }),
  REGISTRY_URL: optionalText.pipe(
    z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as http://registry_service:5000' }).optional(),
  ),
  REGISTRY_USERNAME: optionalText,
  REGISTRY_PASSWORD: optionalText,
  DATABASE_URL: optionalText.pipe(
    z.url({ protocol: /^postgres(ql)?$/, error: 'must be a PostgreSQL URL such as postgres://ci:password@db:5432/ci_service' }).optional(),
  ),
  DOCKER_HOST: z
    .string()
    .trim()
    .default('unix:///var/run/docker.sock')
    .refine((value) => /^(unix:\/\/\/.+|tcp:\/\/[^/:]+:[0-9]+\/?)$/.test(value), {
      message: 'must be unix:///path/to/docker.sock or tcp://host:port',
    }),
  DATA_DIR: z.string().trim().min(1).default('./data'),
  WORKER_NAME: z
    .string()
    .trim()
    .default(() => hostname())
    .refine((value) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(value), { message: 'must be a name of letters, digits, ".", "_" or "-", at most 63 characters' }),
  NATIVE_PLATFORMS: commaList.superRefine((platforms, ctx) => {
    const bad = platforms.filter((platform) => normalisePlatform(platform) === undefined);
    if (bad.length > 0) ctx.addIssue({ code: 'custom', message: `must list platforms such as linux/arm64,linux/arm/v7; not ${bad.join(', ')}` });
  }),
  BUILD_CONCURRENCY: integer(2, 1, 64),
  BUILD_TIMEOUT_S: integer(1800, 1, 86400),
  BUILD_RETRIES: integer(3, 0, 10),
  BUILD_RETRY_DELAY_MS: integer(2000, 1, 600_000),
  SHUTDOWN_GRACE_S: integer(60, 0, 86400),
  REQUEST_TIMEOUT_S: integer(15, 1, 3600),
  RETENTION_DAYS: integer(30, 0, 36_500),
  MAX_QUEUED_BUILDS: integer(1000, 1, 1_000_000),
  MAX_CONTEXT_MB: integer(2048, 1, 1_048_576),
  MAX_REPOSITORY_MB: integer(4096, 1, 1_048_576),
  // Each entry costs about 650 bytes of the daemon's memory at its peak (bench/README.md): 100,000 keep any
  // repository's build within 200 MB, and match the most entries GitHub's trees API lists.
  MAX_CONTEXT_ENTRIES: integer(100_000, 1, 100_000_000),
  BUILD_CACHE_MB: integer(20_480, 0, 10_485_760),
  BUILD_MEMORY_MB: integer(0, 0, 1_048_576),
  BUILD_CPUS: z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined || value.trim() === '') return 0;
      const cpus = Number(value);
      if (!Number.isFinite(cpus) || cpus < 0 || cpus > 1024) {
        ctx.addIssue({ code: 'custom', message: 'must be a number of CPUs from 0 (no limit) to 1024, e.g. 1.5' });
        return z.NEVER;
      }
      return cpus;
    }),
  ALLOWED_REPOSITORIES: commaList,
  BASE_BRANCHES: commaList,
  WEBHOOK_REPOSITORIES: commaList,
  PUBLIC_URL: optionalText.pipe(z.url({ protocol: /^https?$/, error: 'must be the http(s) URL where GitHub reaches ci_service' }).optional()),
  NGROK_API_URL: optionalText.pipe(z.url({ protocol: /^https?$/, error: 'must be the ngrok agent API, e.g. http://ngrok_service:4040' }).optional()),
  WEBHOOK_SYNC_INTERVAL_S: integer(30, 5, 86400),
  ADMIN_TOKEN: optionalText.pipe(z.string().min(16, 'must be at least 16 characters (make one with `openssl rand -hex 32`)').optional()),
  OPEN_PAGES: z.enum(['true', 'false'], { error: 'must be true or false' }).default('false'),
  BUILD_REF: z.enum(['head', 'merge'], { error: 'must be "head" or "merge"' }).default('head'),
  PULL_REQUEST_BUILDS: z.enum(['true', 'false'], { error: 'must be true or false' }).default('true'),
  BUILD_DRAFTS: z.enum(['true', 'false'], { error: 'must be true or false' }).default('false'),
  TRUST_FORKS: z.enum(['true', 'false'], { error: 'must be true or false' }).default('false'),
  FORK_LABEL: z.string().trim().min(1, 'must be a label name').max(50, 'must be at most 50 characters (GitHub\'s limit)').default('ci:build-fork'),
  DELIVERY_RECOVERY_INTERVAL_S: integer(300, 0, 86400),
  CI_ROLE: z.enum(['all', 'server', 'worker'], { error: 'must be "all" (the default: one process does everything), "server" or "worker"' }).default('all'),
  BUILDER: z.enum(['buildkit', 'legacy'], { error: 'must be "buildkit" (the default) or "legacy" (for engines without BuildKit)' }).default('buildkit'),
  PROVENANCE: z.enum(['min', 'max', 'false'], { error: 'must be "min" (the default), "max" (with the build\'s arguments and steps) or "false"' }).default('min'),
  BUILD_SECRETS: commaList,
  PULL_REQUEST_SECRETS: commaList,
  ALLOWED_IMAGE_WRITERS: commaList,
  RUN_AS: optionalText.pipe(z.string().regex(/^[0-9]+:[0-9]+$/, 'must be uid:gid, e.g. 1000:1000').optional()),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
});

/** Every variable ci_service reads (besides those BUILD_SECRETS names): README.md's table lists them. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(environmentSchema.shape);

export type DockerAddress = { socketPath: string } | { host: string; port: number };

export interface Config {
  port: number;
  /** Unset: generated at first start and kept under DATA_DIR (kept-secrets.ts). */
  webhookSecret: string | undefined;
  githubApiUrl: string;
  githubToken: string | undefined;
  /** A GitHub App set by hand (GITHUB_APP_ID and its key); one made with /setup is kept under DATA_DIR instead. */
  githubApp: { id: string; privateKey: string } | { id: string; privateKeyFile: string } | undefined;
  /** Where GitHub's pages are (the App set-up posts there): from GITHUB_API_URL. */
  githubWebUrl: string;
  registry: string;
  /** Where ci_service itself reaches the registry's /v2/ (health); the engine uses `registry`. */
  registryUrl: string;
  registryAuth: { username: string; password: string } | undefined;
  docker: DockerAddress;
  dataDir: string;
  /** Recorded on every build this process runs; default the host name. */
  workerName: string;
  /**
   * The platforms this worker's engine builds natively, where the engine's own CPU is not the answer (a host
   * that runs arm64 binaries through a faster path than QEMU, or a test's stand-in for an arm64 host); empty:
   * as the engine says.
   */
  nativePlatforms: string[];
  /** PostgreSQL for builds, logs and delivery ids; undefined: SQLite under DATA_DIR. */
  databaseUrl: string | undefined;
  buildConcurrency: number;
  buildTimeoutMs: number;
  buildRetries: number;
  buildRetryDelayMs: number;
  shutdownGraceMs: number;
  /** Finished builds and their logs are deleted this long after they ended; 0 keeps them forever. */
  retentionMs: number;
  /** A request (headers and body) must have arrived by then; GitHub itself waits 10 s for an answer. */
  requestTimeoutMs: number;
  maxQueuedBuilds: number;
  maxContextBytes: number;
  maxRepositoryBytes: number;
  maxContextEntries: number;
  /** BuildKit's cache on the engine is pruned down to this beside the builds (at most once a minute); 0 never prunes. */
  buildCacheBytes: number;
  /** Memory and CPUs of a build's containers (0: no limit); the engine applies them with BUILDER=legacy only. */
  buildLimits: { memoryBytes: number; cpus: number };
  allowedRepositories: string[];
  baseBranches: string[];
  webhookRepositories: string[];
  publicUrl: string | undefined;
  ngrokApiUrl: string | undefined;
  webhookSyncIntervalMs: number;
  /** Unset and pages not open: generated at first start and kept under DATA_DIR. */
  adminToken: string | undefined;
  /** OPEN_PAGES=true: the pages, the builds API and /metrics answer without a token; rebuild and cancel still need ADMIN_TOKEN. */
  openPages: boolean;
  /** What pull request events build (PULL_REQUEST_BUILDS, BUILD_DRAFTS, TRUST_FORKS, FORK_LABEL). */
  pullRequests: { build: boolean; drafts: boolean; trustForks: boolean; forkLabel: string };
  /** How often the hooks' recent deliveries are checked for ones that failed; 0: only at start. */
  deliveryRecoveryIntervalMs: number;
  buildRef: 'head' | 'merge';
  builder: 'buildkit' | 'legacy';
  /** BuildKit's SLSA provenance on multi-platform images, where the engine's store keeps it; undefined: none. */
  provenance: 'min' | 'max' | undefined;
  /** all: one process does everything; server: webhooks, pages, API, no builds; worker: builds, no HTTP port. */
  role: 'all' | 'server' | 'worker';
  /**
   * Which repository's builds may be handed which environment variable through dockerInfo.json's "secrets"
   * (BUILD_SECRETS; PULL_REQUEST_SECRETS for its own pull requests' heads too), with the value; undefined where
   * one is listed but not set.
   */
  buildSecrets: SecretGrant[];
  /** ALLOWED_IMAGE_WRITERS: image name → further repositories (owner/name) that may push it. */
  allowedImageWriters: Record<string, string[]>;
  /** Started as root (ci_service's image): the user to run as once the socket's group is known. */
  runAs: { uid: number; gid: number } | undefined;
  logLevel: (typeof LOG_LEVELS)[number];
}

/**
 * Never handed to a build: what ci_service itself reads (its tokens, DATABASE_URL) and what libpq reads (PG*),
 * which a build could otherwise print or send anywhere.
 */
function reservedVariable(name: string): boolean {
  return CONFIG_VARIABLES.includes(name) || /^PG[A-Z]/.test(name);
}

function secretGrants(list: string[], setting: string, given: Record<string, string | undefined>): Omit<SecretGrant, 'pullRequests'>[] {
  return list.map((entry) => {
    const match = /^([^/\s:]+\/[^/\s:]+):([A-Za-z_][A-Za-z0-9_]*)$/.exec(entry);
    if (!match) throw new ConfigError(`invalid configuration: ${setting} entry "${entry}" must be <owner/repository>:<VARIABLE>, e.g. octo/app:NPM_TOKEN`);
    const [, repository, variable] = match as unknown as [string, string, string];
    if (reservedVariable(variable)) {
      throw new ConfigError(`invalid configuration: ${setting} must not hand ${variable}, which ci_service itself reads, to builds: give builds a variable of their own`);
    }
    return { repository, variable, value: given[variable] };
  });
}


/** The GitHub App the environment names (its key, or the file holding it), checked for what goes together. */
function githubAppOf(values: z.infer<typeof environmentSchema>): Config['githubApp'] {
  const { GITHUB_APP_ID: id, GITHUB_APP_PRIVATE_KEY: key, GITHUB_APP_PRIVATE_KEY_FILE: keyFile } = values;
  if (!id && !key && !keyFile) return undefined;
  if (key && keyFile) throw new ConfigError('invalid configuration: set GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE, not both');
  if (!id) throw new ConfigError('invalid configuration: GITHUB_APP_PRIVATE_KEY needs GITHUB_APP_ID, the App\'s numeric id (its settings page shows it)');
  if (!key && !keyFile) throw new ConfigError('invalid configuration: GITHUB_APP_ID needs the App\'s private key: GITHUB_APP_PRIVATE_KEY (the .pem file\'s text) or GITHUB_APP_PRIVATE_KEY_FILE (its path)');
  if (values.GITHUB_TOKEN) throw new ConfigError('invalid configuration: set GITHUB_TOKEN or a GitHub App (GITHUB_APP_ID), not both: ci_service acts on GitHub as one of them');
  // Compose files and .env lines carry the key's newlines as "\n".
  return { id, ...(key ? { privateKey: key.replace(/\\n/g, '\n') } : { privateKeyFile: keyFile! }) };
}

/** GitHub's web pages for its API: github.com for api.github.com, the host itself for GitHub Enterprise's /api/v3. */
export function githubWebUrl(apiUrl: string): string {
  const url = new URL(apiUrl);
  if (url.hostname === 'api.github.com') return 'https://github.com';
  return `${url.origin}${url.pathname.replace(/\/api\/v3\/?$/, '').replace(/\/+$/, '')}`;
}

/** Reads and validates the environment once; a bad value throws a ConfigError saying how to fix it. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // An empty variable means "not set" (compose passes every variable, empty ones included).
  const given = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ''));
  const result = environmentSchema.safeParse(given);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${String(issue.path[0] ?? 'environment')} ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const values = result.data;
  const githubApp = githubAppOf(values);
  if (githubApp && values.WEBHOOK_REPOSITORIES.length > 0) {
    throw new ConfigError("invalid configuration: a GitHub App's webhook is the App's own (ci_service keeps its URL current): leave WEBHOOK_REPOSITORIES unset with GITHUB_APP_ID");
  }
  if (values.WEBHOOK_REPOSITORIES.length > 0 && !values.GITHUB_TOKEN) {
    throw new ConfigError(
      'invalid configuration: WEBHOOK_REPOSITORIES needs GITHUB_TOKEN, a token allowed to manage the repositories\' webhooks ("Webhooks: read and write")',
    );
  }
  if (values.WEBHOOK_REPOSITORIES.length > 0 && !values.PUBLIC_URL && !values.NGROK_API_URL) {
    throw new ConfigError(
      'invalid configuration: WEBHOOK_REPOSITORIES needs to know where GitHub reaches ci_service: set PUBLIC_URL, or NGROK_API_URL for an ngrok tunnel',
    );
  }
  const badRepository = values.WEBHOOK_REPOSITORIES.find((name) => !/^[^/\s]+\/[^/\s]+$/.test(name));
  if (badRepository) throw new ConfigError(`invalid configuration: WEBHOOK_REPOSITORIES entry "${badRepository}" must be owner/name`);
  const allowedImageWriters: Record<string, string[]> = {};
  for (const entry of values.ALLOWED_IMAGE_WRITERS) {
    const match = /^([a-z0-9][a-z0-9._/-]*)=([^/\s=]+\/[^/\s=]+)$/.exec(entry);
    if (!match) throw new ConfigError(`invalid configuration: ALLOWED_IMAGE_WRITERS entry "${entry}" must be <service_name>=<owner/repository>, e.g. team/app=octo/app-tools`);
    (allowedImageWriters[match[1]!] ??= []).push(match[2]!);
  }
  // Replaced by BUILD_SECRETS (scoped per repository): refused with how to move, never silently ignored.
  if (given.BUILD_SECRET_VARIABLES !== undefined) {
    const example = given.BUILD_SECRET_VARIABLES.split(',').map((name) => `<owner/repository>:${name.trim()}`).join(',');
    throw new ConfigError(`invalid configuration: BUILD_SECRET_VARIABLES is replaced by BUILD_SECRETS, which names the repository each secret is for: BUILD_SECRETS=${example}`);
  }
  const forPullRequests = secretGrants(values.PULL_REQUEST_SECRETS, 'PULL_REQUEST_SECRETS', given);
  const grantKey = (grant: { repository: string; variable: string }) => `${grant.repository.toLowerCase()}:${grant.variable}`;
  const pullRequestKeys = new Set(forPullRequests.map(grantKey));
  const buildSecrets = secretGrants(values.BUILD_SECRETS, 'BUILD_SECRETS', given).map((grant) => ({ ...grant, pullRequests: pullRequestKeys.has(grantKey(grant)) }));
  const ungranted = forPullRequests.find((grant) => !buildSecrets.some((granted) => grantKey(granted) === grantKey(grant)));
  if (ungranted) {
    throw new ConfigError(`invalid configuration: PULL_REQUEST_SECRETS entry "${ungranted.repository}:${ungranted.variable}" is not in BUILD_SECRETS: a secret goes to pull requests only beside merges and releases`);
  }
  if (values.CI_ROLE !== 'all' && !values.DATABASE_URL) {
    throw new ConfigError(`invalid configuration: CI_ROLE=${values.CI_ROLE} shares builds with other processes through PostgreSQL: set DATABASE_URL`);
  }
  if (Boolean(values.REGISTRY_USERNAME) !== Boolean(values.REGISTRY_PASSWORD)) {
    throw new ConfigError(
      'invalid configuration: REGISTRY_USERNAME and REGISTRY_PASSWORD go together: set both, or neither for a registry without login',
    );
  }
  return {
    port: values.PORT,
    webhookSecret: values.WEBHOOK_SECRET,
    githubApiUrl: values.GITHUB_API_URL,
    githubToken: values.GITHUB_TOKEN,
    githubApp,
    githubWebUrl: githubWebUrl(values.GITHUB_API_URL),
    registry: values.REGISTRY,
    registryUrl: (values.REGISTRY_URL ?? defaultRegistryUrl(values.REGISTRY)).replace(/\/+$/, ''),
    registryAuth:
      values.REGISTRY_USERNAME && values.REGISTRY_PASSWORD
        ? { username: values.REGISTRY_USERNAME, password: values.REGISTRY_PASSWORD }
        : undefined,
    docker: dockerAddress(values.DOCKER_HOST),
    dataDir: values.DATA_DIR,
    databaseUrl: values.DATABASE_URL,
    workerName: values.WORKER_NAME,
    nativePlatforms: values.NATIVE_PLATFORMS.map((platform) => normalisePlatform(platform)!),
    buildConcurrency: values.BUILD_CONCURRENCY,
    buildTimeoutMs: values.BUILD_TIMEOUT_S * 1000,
    buildRetries: values.BUILD_RETRIES,
    buildRetryDelayMs: values.BUILD_RETRY_DELAY_MS,
    shutdownGraceMs: values.SHUTDOWN_GRACE_S * 1000,
    requestTimeoutMs: values.REQUEST_TIMEOUT_S * 1000,
    retentionMs: values.RETENTION_DAYS * 24 * 60 * 60 * 1000,
    maxQueuedBuilds: values.MAX_QUEUED_BUILDS,
    maxContextBytes: values.MAX_CONTEXT_MB * 1024 * 1024,
    maxRepositoryBytes: values.MAX_REPOSITORY_MB * 1024 * 1024,
    maxContextEntries: values.MAX_CONTEXT_ENTRIES,
    buildCacheBytes: values.BUILD_CACHE_MB * 1024 * 1024,
    buildLimits: { memoryBytes: values.BUILD_MEMORY_MB * 1024 * 1024, cpus: values.BUILD_CPUS },
    allowedRepositories: values.ALLOWED_REPOSITORIES,
    baseBranches: values.BASE_BRANCHES,
    webhookRepositories: values.WEBHOOK_REPOSITORIES,
    publicUrl: values.PUBLIC_URL?.replace(/\/+$/, ''),
    ngrokApiUrl: values.NGROK_API_URL?.replace(/\/+$/, ''),
    webhookSyncIntervalMs: values.WEBHOOK_SYNC_INTERVAL_S * 1000,
    adminToken: values.ADMIN_TOKEN,
    openPages: values.OPEN_PAGES === 'true',
    pullRequests: { build: values.PULL_REQUEST_BUILDS === 'true', drafts: values.BUILD_DRAFTS === 'true', trustForks: values.TRUST_FORKS === 'true', forkLabel: values.FORK_LABEL },
    deliveryRecoveryIntervalMs: values.DELIVERY_RECOVERY_INTERVAL_S * 1000,
    buildRef: values.BUILD_REF,
    builder: values.BUILDER,
    provenance: values.PROVENANCE === 'false' ? undefined : values.PROVENANCE,
    role: values.CI_ROLE,
    allowedImageWriters,
    buildSecrets,
    runAs: values.RUN_AS ? { uid: Number(values.RUN_AS.split(':')[0]), gid: Number(values.RUN_AS.split(':')[1]) } : undefined,
    logLevel: values.LOG_LEVEL,
  };
}

/** Docker talks plain HTTP only to registries on loopback; anything else is HTTPS. */
function defaultRegistryUrl(registry: string): string {
  const host = registry.split('/')[0] ?? registry;
  const hostname = host.replace(/:[0-9]+$/, '');
  const local = hostname === 'localhost' || hostname.startsWith('127.') || hostname === '[::1]';
  return `${local ? 'http' : 'https'}://${host}`;
}

function dockerAddress(dockerHost: string): DockerAddress {
  if (dockerHost.startsWith('unix://')) return { socketPath: dockerHost.slice('unix://'.length) };
  const url = new URL(dockerHost);
  return { host: url.hostname, port: Number(url.port) };
}
