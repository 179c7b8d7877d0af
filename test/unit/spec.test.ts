import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { imageRepository, normaliseRelativePath, parseBuildSpec, resolveSecrets } from '../../src/rules/build-spec.js';
import { SpecError } from '../../src/domain/errors.js';

const spec = (value: unknown) => parseBuildSpec(JSON.stringify(value));
const minimal = { service_name: 'my-app', version: '1.0.0' };

function rejects(value: unknown, message: RegExp) {
  assert.throws(() => (typeof value === 'string' ? parseBuildSpec(value) : spec(value)), (error: unknown) => {
    assert.ok(error instanceof SpecError);
    assert.match(error.message, message);
    return true;
  });
}

describe('dockerInfo.json rules', () => {
  it('fills the defaults for the optional keys', () => {
    assert.deepEqual(spec(minimal), {
      serviceName: 'my-app',
      version: '1.0.0',
      dockerfile: 'Dockerfile',
      context: '',
      buildArgs: {},
      tags: ['1.0.0'],
      target: undefined,
      secrets: {},
      cacheFrom: 'default',
      pullRequestPush: false,
      releases: { gitTags: undefined, latest: true, branches: {} },
      platforms: undefined,
      unknownKeys: [],
    });
  });

  it('reads "platforms" as the OCI index spells them, without repeats', () => {
    assert.deepEqual(spec({ ...minimal, platforms: ['linux/amd64', 'linux/aarch64', 'linux/arm64/v8', 'linux/arm', 'Linux/x86_64'] }).platforms, ['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
  });

  it('refuses a platform that is not os/architecture[/variant] of Linux, an empty list, and too many', () => {
    rejects({ ...minimal, platforms: ['linux/sparc'] }, /"platforms\.0" = "linux\/sparc" must be a Linux platform, os\/architecture\[\/variant\], such as "linux\/amd64" or "linux\/arm64"/);
    rejects({ ...minimal, platforms: ['windows/amd64'] }, /"platforms\.0" = "windows\/amd64" must be a Linux platform/);
    rejects({ ...minimal, platforms: ['linux/arm64', 'arm64'] }, /"platforms\.1" = "arm64"/);
    rejects({ ...minimal, platforms: ['linux/arm/v9'] }, /"platforms\.0"/);
    rejects({ ...minimal, platforms: [] }, /"platforms" = \[\] must name at least one platform/);
    rejects({ ...minimal, platforms: 'linux/arm64' }, /"platforms" = "linux\/arm64" must be a list of platforms/);
    rejects({ ...minimal, platforms: Array.from({ length: 9 }, () => 'linux/amd64') }, /must name at most 8 platforms/);
  });

  it('keeps the staging repository of multi-platform builds from being an image name', () => {
    rejects({ ...minimal, service_name: 'ci-service-staging' }, /"service_name" = "ci-service-staging" is taken by ci_service/);
    rejects({ ...minimal, service_name: 'ci-service-staging/x' }, /is taken by ci_service/);
    assert.equal(spec({ ...minimal, service_name: 'ci-service-staging-not' }).serviceName, 'ci-service-staging-not');
  });

  it('reads "target", "secrets" and "cache_from"', () => {
    const parsed = spec({ ...minimal, target: 'runtime', secrets: { npm_token: 'NPM_TOKEN' }, cache_from: ['registry.example.com:5000/team/app:latest'] });
    assert.equal(parsed.target, 'runtime');
    assert.deepEqual(parsed.secrets, { npm_token: 'NPM_TOKEN' });
    assert.deepEqual(parsed.cacheFrom, ['registry.example.com:5000/team/app:latest']);
    assert.deepEqual(spec({ ...minimal, cache_from: false }).cacheFrom, []);
  });

  it('refuses a bad "target", "secrets" or "cache_from", naming the key', () => {
    rejects({ ...minimal, target: 'has space' }, /"target" = "has space" must be the name of a stage/);
    rejects({ ...minimal, target: 3 }, /"target" = 3 must be a string/);
    rejects({ ...minimal, secrets: ['NPM_TOKEN'] }, /"secrets" .*must be an object of secret id → environment variable/);
    rejects({ ...minimal, secrets: { npm_token: 'npm-token' } }, /"secrets.npm_token" = "npm-token" must be an environment variable name/);
    rejects({ ...minimal, secrets: { 'bad id': 'NPM_TOKEN' } }, /"secrets.bad id" must be a secret id/);
    rejects({ ...minimal, secrets: Object.fromEntries(Array.from({ length: 33 }, (_, n) => [`s${n}`, 'X'])) }, /"secrets" .*at most 32 secrets/);
    rejects({ ...minimal, cache_from: true }, /"cache_from" = true must be false \(no cache from the registry\) or a list of image references/);
    rejects({ ...minimal, cache_from: ['not a ref'] }, /"cache_from.0" = "not a ref" must be an image reference/);
  });

  it('reads every optional key, normalising paths and dropping repeated tags', () => {
    const parsed = spec({
      ...minimal,
      service_name: 'team/my_app.web',
      dockerfile: './docker//Dockerfile.prod',
      context: 'services/web/',
      build_args: { NODE_ENV: 'production' },
      tags: ['latest', '1.0.0', 'stable'],
    });
    assert.equal(parsed.serviceName, 'team/my_app.web');
    assert.equal(parsed.dockerfile, 'docker/Dockerfile.prod');
    assert.equal(parsed.context, 'services/web');
    assert.deepEqual(parsed.buildArgs, { NODE_ENV: 'production' });
    assert.deepEqual(parsed.tags, ['1.0.0', 'latest', 'stable']);
  });

  it('keeps going past unknown keys, and lists them', () => {
    assert.deepEqual(spec({ ...minimal, value: 3 }).unknownKeys, ['value']);
  });

  it('refuses text that is not JSON, or JSON that is not an object', () => {
    rejects('{"service_name": ', /not valid JSON/);
    rejects('["my-app"]', /must be a JSON object/);
    rejects('null', /must be a JSON object/);
  });

  it('requires service_name and version', () => {
    rejects({}, /"service_name" is required; "version" is required/);
    rejects({ version: '1' }, /"service_name" is required/);
  });

  it('refuses a service_name that is not a lowercase Docker path, naming the value', () => {
    rejects({ ...minimal, service_name: 'My-App' }, /"service_name" = "My-App" must be lowercase/);
    for (const bad of ['-app', 'app-', 'a..b', 'team//app', '/app', 'app/', 'my app', 'app:1', 12]) {
      rejects({ ...minimal, service_name: bad }, /"service_name"/);
    }
  });

  it('refuses a version that is not a Docker tag', () => {
    rejects({ ...minimal, version: '.1' }, /"version" = ".1" must be letters, digits/);
    rejects({ ...minimal, version: 'x'.repeat(129) }, /"version"/);
    rejects({ ...minimal, version: 'v1+build' }, /"version"/);
    rejects({ ...minimal, version: 1 }, /"version" = 1 must be a string/);
    assert.equal(spec({ ...minimal, version: '_v1.2-rc.3' }).version, '_v1.2-rc.3');
  });

  it('refuses a context or dockerfile outside the repository', () => {
    rejects({ ...minimal, context: '../other' }, /"context" = "..\/other" must be a relative path inside the repository/);
    rejects({ ...minimal, context: '/etc' }, /"context"/);
    rejects({ ...minimal, context: 'a/../../b' }, /"context"/);
    rejects({ ...minimal, dockerfile: '../Dockerfile' }, /"dockerfile"/);
    rejects({ ...minimal, dockerfile: '.' }, /"dockerfile"/);
  });

  it('requires build_args to be text and tags to be a list of tags', () => {
    rejects({ ...minimal, build_args: { PORT: 8080 } }, /"build_args.PORT" = 8080 must be a string/);
    rejects({ ...minimal, build_args: ['A=1'] }, /"build_args"/);
    rejects({ ...minimal, tags: 'latest' }, /"tags" = "latest" must be a list of tags/);
    rejects({ ...minimal, tags: ['ok', 'not ok'] }, /"tags.1" = "not ok"/);
  });

  it('is bounded: file size, tags, build args; an error quotes only a short piece of a bad value', () => {
    rejects(JSON.stringify({ ...minimal, padding: 'x'.repeat(64 * 1024) }), /dockerInfo.json is larger than 64 KB/);
    rejects({ ...minimal, tags: Array.from({ length: 33 }, (_, n) => `t${n}`) }, /"tags" .*must list at most 32 tags/);
    rejects({ ...minimal, build_args: Object.fromEntries(Array.from({ length: 65 }, (_, n) => [`A${n}`, '1'])) }, /"build_args" .*at most 64 entries/);
    rejects({ ...minimal, build_args: { BIG: 'x'.repeat(4097) } }, /"build_args.BIG" = "x+…" must be at most 4096 characters/);
    assert.throws(() => spec({ ...minimal, version: 'v'.repeat(50_000) }), (error: unknown) => {
      assert.ok(error instanceof SpecError);
      assert.ok(error.message.length < 300, `${error.message.length} characters`);
      return true;
    });
  });

  it('refuses keys that name object machinery, by name, at any depth', () => {
    rejects('{"service_name": "a", "version": "1", "__proto__": {"x": 1}}', /"__proto__" is not allowed: __proto__, constructor, prototype cannot be keys/);
    rejects('{"service_name": "a", "version": "1", "build_args": {"__proto__": "x"}}', /"build_args.__proto__" is not allowed/);
    rejects({ ...minimal, secrets: { constructor: 'NPM_TOKEN' } }, /"secrets.constructor" is not allowed/);
  });

  it('names every broken rule at once', () => {
    rejects({ service_name: 'A', version: '-' }, /"service_name" = "A".*; "version" = "-"/);
  });
});

describe('dockerInfo.json as editors write it', () => {
  it('accepts a UTF-8 byte order mark, which Windows editors write first', () => {
    assert.equal(parseBuildSpec('\uFEFF{"service_name": "app", "version": "1.0.0"}').serviceName, 'app');
    assert.throws(() => parseBuildSpec('{"service_name": "app"\uFEFF, "version": "1.0.0"}'), /is not valid JSON/, 'only at the start');
  });
});

describe('build secrets', () => {
  const grant = (repository: string, variable: string, value: string | undefined, pullRequests = false) => ({ repository, variable, value, pullRequests });
  const GRANTS = [grant('octo/app', 'NPM_TOKEN', 'v', true), grant('octo/app', 'PIP_TOKEN', 'p'), grant('octo/other', 'DEPLOY_KEY', 'k'), grant('octo/app', 'UNSET', undefined)];

  it("takes each secret from what BUILD_SECRETS grants the build's own repository", () => {
    assert.deepEqual(resolveSecrets({ npm_token: 'NPM_TOKEN', pip: 'PIP_TOKEN' }, GRANTS, 'Octo/App', 'reviewed'), { secrets: { npm_token: 'v', pip: 'p' }, withheld: {} });
    assert.deepEqual(resolveSecrets({}, [], 'octo/app', 'reviewed'), { secrets: {}, withheld: {} });
  });

  it("names the grant to add, or the variable to set; another repository's grant is not this one's", () => {
    assert.throws(() => resolveSecrets({ t: 'DEPLOY_KEY' }, GRANTS, 'octo/app', 'reviewed'), /secret "t" names DEPLOY_KEY, which ci_service does not hand to builds of octo\/app: add octo\/app:DEPLOY_KEY to BUILD_SECRETS/);
    assert.throws(() => resolveSecrets({ t: 'UNSET' }, GRANTS, 'octo/app', 'reviewed'), /secret "t" needs the environment variable UNSET on ci_service, which is not set/);
    assert.throws(() => resolveSecrets({ t: 'toString' }, GRANTS, 'octo/app', 'reviewed'), /names toString, which ci_service does not hand to builds/);
  });

  it("a pull request's head gets only what PULL_REQUEST_SECRETS grants; a fork's head nothing, ever", () => {
    const pullRequest = resolveSecrets({ npm: 'NPM_TOKEN', pip: 'PIP_TOKEN' }, GRANTS, 'octo/app', 'pull_request');
    assert.deepEqual(pullRequest.secrets, { npm: 'v' });
    assert.deepEqual(Object.keys(pullRequest.withheld), ['pip']);
    assert.match(pullRequest.withheld.pip!, /secret "pip" \(PIP_TOKEN\) is not handed to pull request builds.*PULL_REQUEST_SECRETS=octo\/app:PIP_TOKEN/);
    const fork = resolveSecrets({ npm: 'NPM_TOKEN', pip: 'PIP_TOKEN' }, GRANTS, 'octo/app', 'fork');
    assert.deepEqual(fork.secrets, {});
    assert.deepEqual(Object.keys(fork.withheld), ['npm', 'pip']);
    assert.match(fork.withheld.npm!, /not handed to a fork's pull request/);
  });
});

describe('paths and image names', () => {
  it('normalises relative paths and refuses escapes', () => {
    assert.equal(normaliseRelativePath('.'), '');
    assert.equal(normaliseRelativePath('./a/b/'), 'a/b');
    assert.equal(normaliseRelativePath('a/./b/../c'), 'a/c');
    assert.equal(normaliseRelativePath('..'), undefined);
    assert.equal(normaliseRelativePath('/abs'), undefined);
    assert.equal(normaliseRelativePath('C:/x'), undefined);
  });

  it('prefixes the registry to the service name', () => {
    assert.equal(imageRepository('localhost:83', { serviceName: 'team/app' }), 'localhost:83/team/app');
  });
});
