import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { CONFIG_VARIABLES, loadConfig, type Config } from '../../src/config.js';
import { ConfigError } from '../../src/domain/errors.js';

const base = { WEBHOOK_SECRET: 'secret' };

describe('configuration', () => {
  it('leaves an unset WEBHOOK_SECRET or ADMIN_TOKEN to be generated and kept; pages open only when told', () => {
    for (const env of [{}, { WEBHOOK_SECRET: '' }, { WEBHOOK_SECRET: '   ' }]) {
      const config = loadConfig(env);
      assert.equal(config.webhookSecret, undefined);
      assert.equal(config.adminToken, undefined);
      assert.equal(config.openPages, false);
    }
    assert.equal(loadConfig({ OPEN_PAGES: 'true' }).openPages, true);
    assert.throws(() => loadConfig({ OPEN_PAGES: 'yes' }), /OPEN_PAGES must be true or false/);
    // Pages open for reading; rebuild and cancel still need the token.
    const both = loadConfig({ OPEN_PAGES: 'true', ADMIN_TOKEN: 'x'.repeat(32) });
    assert.deepEqual([both.openPages, both.adminToken], [true, 'x'.repeat(32)]);
  });

  it('reads the pull request settings, and refuses bad ones with the rule', () => {
    const config = loadConfig({ ...base, PULL_REQUEST_BUILDS: 'false', BUILD_DRAFTS: 'true', TRUST_FORKS: 'true', FORK_LABEL: ' safe to build ', DELIVERY_RECOVERY_INTERVAL_S: '0' });
    assert.deepEqual(config.pullRequests, { build: false, drafts: true, trustForks: true, forkLabel: 'safe to build' });
    assert.equal(config.deliveryRecoveryIntervalMs, 0);
    assert.throws(() => loadConfig({ ...base, TRUST_FORKS: 'yes' }), /TRUST_FORKS must be true or false/);
    assert.throws(() => loadConfig({ ...base, FORK_LABEL: 'x'.repeat(51) }), /FORK_LABEL must be at most 50 characters/);
  });

  it('has the documented defaults', () => {
    const config = loadConfig(base);
    assert.equal(config.port, 8080);
    assert.equal(config.githubApiUrl, 'https://api.github.com');
    assert.equal(config.githubToken, undefined);
    assert.equal(config.registry, 'localhost:83');
    assert.equal(config.registryUrl, 'http://localhost:83');
    assert.deepEqual(config.docker, { socketPath: '/var/run/docker.sock' });
    assert.equal(config.dataDir, './data');
    assert.equal(config.buildConcurrency, 2);
    assert.equal(config.buildTimeoutMs, 1_800_000);
    assert.deepEqual(config.allowedRepositories, []);
    assert.deepEqual(config.baseBranches, []);
    assert.equal(config.buildRef, 'head');
    assert.deepEqual(config.pullRequests, { build: true, drafts: false, trustForks: false, forkLabel: 'ci:build-fork' });
    assert.equal(config.deliveryRecoveryIntervalMs, 300_000);
    assert.equal(config.builder, 'buildkit');
    assert.deepEqual(config.buildSecrets, []);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.workerName, hostname());
    assert.equal(config.databaseUrl, undefined);
  });

  it('takes a PostgreSQL DATABASE_URL and a WORKER_NAME, and says what is wrong with bad ones', () => {
    const config = loadConfig({ ...base, DATABASE_URL: 'postgres://ci:pw@db:5432/ci_service', WORKER_NAME: 'build-host-2' });
    assert.equal(config.databaseUrl, 'postgres://ci:pw@db:5432/ci_service');
    assert.equal(config.workerName, 'build-host-2');
    assert.throws(() => loadConfig({ ...base, DATABASE_URL: 'mysql://db/ci' }), /DATABASE_URL must be a PostgreSQL URL such as postgres:\/\//);
    assert.throws(() => loadConfig({ ...base, WORKER_NAME: 'a host' }), /WORKER_NAME must be a name of letters, digits/);
    assert.deepEqual(loadConfig({ ...base, NATIVE_PLATFORMS: 'linux/aarch64, linux/arm/v7' }).nativePlatforms, ['linux/arm64', 'linux/arm/v7']);
    assert.deepEqual(loadConfig(base).nativePlatforms, []);
    assert.throws(() => loadConfig({ ...base, NATIVE_PLATFORMS: 'linux/arm64,sparc' }), /NATIVE_PLATFORMS must list platforms such as linux\/arm64,linux\/arm\/v7; not sparc/);
    assert.equal(loadConfig(base).role, 'all');
    assert.equal(loadConfig({ ...base, CI_ROLE: 'worker', DATABASE_URL: 'postgres://db/ci' }).role, 'worker');
    assert.throws(() => loadConfig({ ...base, CI_ROLE: 'server' }), /CI_ROLE=server shares builds with other processes through PostgreSQL: set DATABASE_URL/);
    assert.throws(() => loadConfig({ ...base, CI_ROLE: 'builder' }), /CI_ROLE must be "all" \(the default/);
  });

  it("reads every variable of README.md's table, and the table lists every variable it reads", async () => {
    const readme = await readFile(path.join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 1));
    const documented = [...table.matchAll(/^\| ((?:`[A-Z_]+`(?:, )?)+) \|/gm)].flatMap((row) => [...row[1]!.matchAll(/`([A-Z_]+)`/g)].map((name) => name[1]!));
    assert.deepEqual([...documented].sort(), [...CONFIG_VARIABLES].sort(), 'README.md\'s configuration table and the loader name the same variables');

    // Each variable: a value other than its default, and where the loader puts it (units converted).
    const expectations: Record<string, [value: string, read: (config: Config) => unknown, expected: unknown]> = {
      WEBHOOK_SECRET: ['s3cret', (c) => c.webhookSecret, 's3cret'],
      PORT: ['9000', (c) => c.port, 9000],
      GITHUB_API_URL: ['https://github.example.com/api/v3/', (c) => c.githubApiUrl, 'https://github.example.com/api/v3'],
      GITHUB_TOKEN: ['ghp_x', (c) => c.githubToken, 'ghp_x'],
      REGISTRY: ['registry.example.com:5000/team', (c) => c.registry, 'registry.example.com:5000/team'],
      REGISTRY_URL: ['https://reg.internal:5000/', (c) => c.registryUrl, 'https://reg.internal:5000'],
      REGISTRY_USERNAME: ['ci', (c) => c.registryAuth?.username, 'ci'],
      REGISTRY_PASSWORD: ['pw', (c) => c.registryAuth?.password, 'pw'],
      DOCKER_HOST: ['tcp://docker:2375', (c) => c.docker, { host: 'docker', port: 2375 }],
      DATA_DIR: ['/data', (c) => c.dataDir, '/data'],
      WORKER_NAME: ['host-7', (c) => c.workerName, 'host-7'],
      NATIVE_PLATFORMS: ['linux/arm64', (c) => c.nativePlatforms, ['linux/arm64']],
      PROVENANCE: ['max', (c) => c.provenance, 'max'],
      DATABASE_URL: ['postgres://ci:pw@db:5432/ci', (c) => c.databaseUrl, 'postgres://ci:pw@db:5432/ci'],
      CI_ROLE: ['worker', (c) => c.role, 'worker'],
      BUILD_CONCURRENCY: ['4', (c) => c.buildConcurrency, 4],
      BUILD_TIMEOUT_S: ['60', (c) => c.buildTimeoutMs, 60_000],
      BUILD_RETRIES: ['5', (c) => c.buildRetries, 5],
      BUILD_RETRY_DELAY_MS: ['750', (c) => c.buildRetryDelayMs, 750],
      MAX_QUEUED_BUILDS: ['12', (c) => c.maxQueuedBuilds, 12],
      MAX_CONTEXT_MB: ['3', (c) => c.maxContextBytes, 3 * 1024 * 1024],
      MAX_REPOSITORY_MB: ['5', (c) => c.maxRepositoryBytes, 5 * 1024 * 1024],
      BUILD_MEMORY_MB: ['512', (c) => c.buildLimits.memoryBytes, 512 * 1024 * 1024],
      BUILD_CPUS: ['1.5', (c) => c.buildLimits.cpus, 1.5],
      BUILD_CACHE_MB: ['100', (c) => c.buildCacheBytes, 100 * 1024 * 1024],
      MAX_CONTEXT_ENTRIES: ['1000', (c) => c.maxContextEntries, 1000],
      RETENTION_DAYS: ['2', (c) => c.retentionMs, 2 * 24 * 3600 * 1000],
      REQUEST_TIMEOUT_S: ['20', (c) => c.requestTimeoutMs, 20_000],
      SHUTDOWN_GRACE_S: ['30', (c) => c.shutdownGraceMs, 30_000],
      ALLOWED_REPOSITORIES: ['octo/a, octo/b,', (c) => c.allowedRepositories, ['octo/a', 'octo/b']],
      BASE_BRANCHES: ['main, release', (c) => c.baseBranches, ['main', 'release']],
      BUILD_REF: ['merge', (c) => c.buildRef, 'merge'],
      PULL_REQUEST_BUILDS: ['false', (c) => c.pullRequests.build, false],
      BUILD_DRAFTS: ['true', (c) => c.pullRequests.drafts, true],
      TRUST_FORKS: ['true', (c) => c.pullRequests.trustForks, true],
      FORK_LABEL: ['ok to build', (c) => c.pullRequests.forkLabel, 'ok to build'],
      DELIVERY_RECOVERY_INTERVAL_S: ['60', (c) => c.deliveryRecoveryIntervalMs, 60_000],
      BUILDER: ['legacy', (c) => c.builder, 'legacy'],
      ALLOWED_IMAGE_WRITERS: ['team/app=octo/tools, team/app=octo/more', (c) => c.allowedImageWriters, { 'team/app': ['octo/tools', 'octo/more'] }],
      BUILD_SECRETS: [
        'octo/app:NPM_TOKEN, octo/app:PIP_TOKEN, octo/other:NPM_TOKEN',
        (c) => c.buildSecrets,
        [
          { repository: 'octo/app', variable: 'NPM_TOKEN', value: 'npm-value', pullRequests: true },
          { repository: 'octo/app', variable: 'PIP_TOKEN', value: undefined, pullRequests: false },
          { repository: 'octo/other', variable: 'NPM_TOKEN', value: 'npm-value', pullRequests: false },
        ],
      ],
      PULL_REQUEST_SECRETS: ['Octo/App:NPM_TOKEN', (c) => c.buildSecrets.filter((grant) => grant.pullRequests).length, 1],
      WEBHOOK_REPOSITORIES: ['octo/a', (c) => c.webhookRepositories, ['octo/a']],
      PUBLIC_URL: ['https://ci.example.com/', (c) => c.publicUrl, 'https://ci.example.com'],
      NGROK_API_URL: ['http://ngrok:4040/', (c) => c.ngrokApiUrl, 'http://ngrok:4040'],
      WEBHOOK_SYNC_INTERVAL_S: ['45', (c) => c.webhookSyncIntervalMs, 45_000],
      ADMIN_TOKEN: ['a'.repeat(24), (c) => c.adminToken, 'a'.repeat(24)],
      OPEN_PAGES: ['true', (c) => c.openPages, true],
      RUN_AS: ['1000:999', (c) => c.runAs, { uid: 1000, gid: 999 }],
      LOG_LEVEL: ['debug', (c) => c.logLevel, 'debug'],
      // A GitHub App instead of GITHUB_TOKEN and WEBHOOK_REPOSITORIES: tried apart from them (below).
      GITHUB_APP_ID: ['12345', (c) => c.githubApp?.id, '12345'],
      GITHUB_APP_PRIVATE_KEY: ['-----BEGIN RSA PRIVATE KEY-----\\nMII\\n-----END RSA PRIVATE KEY-----', (c) => c.githubApp && 'privateKey' in c.githubApp && c.githubApp.privateKey, '-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----'],
      GITHUB_APP_PRIVATE_KEY_FILE: ['/run/secrets/app.pem', (c) => c.githubApp && 'privateKeyFile' in c.githubApp && c.githubApp.privateKeyFile, '/run/secrets/app.pem'],
    };
    assert.deepEqual(Object.keys(expectations).sort(), [...documented].sort(), 'a value to try for every documented variable');
    const app = ['GITHUB_APP_ID', 'GITHUB_APP_PRIVATE_KEY', 'GITHUB_APP_PRIVATE_KEY_FILE'];
    const env = Object.fromEntries(Object.entries(expectations).filter(([name]) => !app.includes(name)).map(([name, [value]]) => [name, value]));
    const config = loadConfig({ ...env, NPM_TOKEN: 'npm-value' });
    for (const [name, [, read, expected]] of Object.entries(expectations)) {
      if (app.includes(name)) {
        const key = name === 'GITHUB_APP_PRIVATE_KEY_FILE' ? 'GITHUB_APP_PRIVATE_KEY_FILE' : 'GITHUB_APP_PRIVATE_KEY';
        assert.deepEqual(read(loadConfig({ ...base, GITHUB_APP_ID: expectations.GITHUB_APP_ID![0], [key]: expectations[key]![0] })), expected, name);
      } else {
        assert.deepEqual(read(config), expected, name);
      }
    }
  });

  it('names every bad value and its rule in one message', () => {
    assert.throws(
      () => loadConfig({ ...base, PORT: 'eighty', BUILD_CONCURRENCY: '0', BUILD_REF: 'tip', REGISTRY: 'http://reg', DOCKER_HOST: '/var/run/docker.sock' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        for (const expected of [/PORT must be a whole number/, /BUILD_CONCURRENCY must be a whole number from 1/, /BUILD_REF must be "head" or "merge"/, /REGISTRY must be host\[:port\]/, /DOCKER_HOST must be unix:/]) {
          assert.match(error.message, expected);
        }
        return true;
      },
    );
  });

  it('takes a GitHub App or a token, not both, and the App whole; finds GitHub\'s pages from its API', () => {
    assert.throws(() => loadConfig({ ...base, GITHUB_APP_ID: '1' }), /GITHUB_APP_ID needs the App's private key: GITHUB_APP_PRIVATE_KEY/);
    assert.throws(() => loadConfig({ ...base, GITHUB_APP_PRIVATE_KEY: 'k' }), /GITHUB_APP_PRIVATE_KEY needs GITHUB_APP_ID/);
    assert.throws(() => loadConfig({ ...base, GITHUB_APP_ID: '1', GITHUB_APP_PRIVATE_KEY: 'k', GITHUB_APP_PRIVATE_KEY_FILE: '/k' }), /set GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE, not both/);
    assert.throws(() => loadConfig({ ...base, GITHUB_APP_ID: '1', GITHUB_APP_PRIVATE_KEY: 'k', GITHUB_TOKEN: 't' }), /set GITHUB_TOKEN or a GitHub App \(GITHUB_APP_ID\), not both/);
    assert.throws(() => loadConfig({ ...base, GITHUB_APP_ID: '1', GITHUB_APP_PRIVATE_KEY: 'k', WEBHOOK_REPOSITORIES: 'octo/app' }), /leave WEBHOOK_REPOSITORIES unset with GITHUB_APP_ID/);
    assert.throws(() => loadConfig({ ...base, GITHUB_APP_ID: 'my-app', GITHUB_APP_PRIVATE_KEY: 'k' }), /GITHUB_APP_ID must be the GitHub App's numeric id/);
    assert.equal(loadConfig(base).githubWebUrl, 'https://github.com');
    assert.equal(loadConfig({ ...base, GITHUB_API_URL: 'https://ghe.example.com/api/v3/' }).githubWebUrl, 'https://ghe.example.com');
    assert.equal(loadConfig({ ...base, GITHUB_API_URL: 'http://127.0.0.1:9000' }).githubWebUrl, 'http://127.0.0.1:9000');
  });

  it('wants a token and a public URL for webhook set-up', () => {
    assert.throws(() => loadConfig({ ...base, WEBHOOK_REPOSITORIES: 'octo/app' }), /WEBHOOK_REPOSITORIES needs GITHUB_TOKEN/);
    assert.throws(() => loadConfig({ ...base, WEBHOOK_REPOSITORIES: 'octo/app', GITHUB_TOKEN: 't' }), /set PUBLIC_URL, or NGROK_API_URL/);
    assert.throws(() => loadConfig({ ...base, WEBHOOK_REPOSITORIES: 'app', GITHUB_TOKEN: 't', PUBLIC_URL: 'https://ci.example.com' }), /"app" must be owner\/name/);
    const config = loadConfig({ ...base, WEBHOOK_REPOSITORIES: 'octo/app', GITHUB_TOKEN: 't', NGROK_API_URL: 'http://ngrok_service:4040/' });
    assert.deepEqual(config.webhookRepositories, ['octo/app']);
    assert.equal(config.ngrokApiUrl, 'http://ngrok_service:4040');
    assert.equal(config.webhookSyncIntervalMs, 30_000);
  });

  it('refuses a builder it does not know, and never hands its own secrets to builds', () => {
    assert.throws(() => loadConfig({ ...base, BUILDER: 'kaniko' }), /BUILDER must be "buildkit" \(the default\) or "legacy"/);
    assert.throws(() => loadConfig({ ...base, BUILD_SECRETS: 'octo/app:NPM-TOKEN' }), /BUILD_SECRETS entry "octo\/app:NPM-TOKEN" must be <owner\/repository>:<VARIABLE>/);
    assert.throws(() => loadConfig({ ...base, BUILD_SECRETS: 'NPM_TOKEN' }), /BUILD_SECRETS entry "NPM_TOKEN" must be <owner\/repository>:<VARIABLE>, e.g. octo\/app:NPM_TOKEN/);
    for (const own of ['GITHUB_TOKEN', 'WEBHOOK_SECRET', 'REGISTRY_PASSWORD', 'ADMIN_TOKEN', 'DATABASE_URL', 'PGPASSWORD', 'PGHOST', 'REGISTRY_USERNAME']) {
      assert.throws(() => loadConfig({ ...base, BUILD_SECRETS: `octo/app:NPM_TOKEN,octo/app:${own}` }), new RegExp(`BUILD_SECRETS must not hand ${own}, which ci_service itself reads, to builds`));
    }
    assert.throws(() => loadConfig({ ...base, PULL_REQUEST_SECRETS: 'octo/app:DATABASE_URL' }), /PULL_REQUEST_SECRETS must not hand DATABASE_URL/);
    assert.throws(() => loadConfig({ ...base, PULL_REQUEST_SECRETS: 'octo/app:NPM_TOKEN' }), /PULL_REQUEST_SECRETS entry "octo\/app:NPM_TOKEN" is not in BUILD_SECRETS/);
    assert.throws(
      () => loadConfig({ ...base, BUILD_SECRET_VARIABLES: 'NPM_TOKEN, PIP_TOKEN' }),
      /BUILD_SECRET_VARIABLES is replaced by BUILD_SECRETS, which names the repository each secret is for: BUILD_SECRETS=<owner\/repository>:NPM_TOKEN,<owner\/repository>:PIP_TOKEN/,
    );
  });

  it('wants the registry user and password together', () => {
    assert.throws(() => loadConfig({ ...base, REGISTRY_USERNAME: 'ci' }), /REGISTRY_USERNAME and REGISTRY_PASSWORD go together/);
  });
});
