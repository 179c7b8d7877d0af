import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BuildView } from '../../src/http/build-view.js';
import { mergedPullRequest, examplePullRequest, sendDelivery } from '../support/deliveries.js';
import { dockerUnavailable, ensureBusyboxImage, fileInImage, pulled } from '../support/docker-environment.js';
import { GitHubStandIn, type StandInRepository } from '../support/github-stand-in.js';
import { freePort, LocalRegistry, waitFor } from '../support/registry.js';
import { startTestService, TEST_SECRET, type TestService } from '../support/service-harness.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');
const GITHUB_TOKEN = 'ghp_testtoken0000000000000000000000000000';
const REGISTRY_PASSWORD = 'registry-password-never-logged';

const skip = await dockerUnavailable();

describe('a merged pull request becomes an image in the registry (real Docker engine and registry)', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;
  let ci: TestService;

  before(async () => {
    await ensureBusyboxImage();
    github = await new GitHubStandIn(GITHUB_TOKEN).start();
    registry = await new LocalRegistry().start();
    ci = await startTestService({
      GITHUB_API_URL: github.url,
      GITHUB_TOKEN,
      REGISTRY: registry.address,
      REGISTRY_USERNAME: 'ci',
      REGISTRY_PASSWORD,
      PUBLIC_URL: 'https://ci.example.com',
      ALLOWED_IMAGE_WRITERS: 'ci-test/shared=octo-org/shared-b',
      WORKER_NAME: 'build-host-1',
    });
  });

  after(async () => {
    await ci?.stop();
    await github?.close();
    await registry?.remove();
  });

  async function mergeAndWait(target: TestService, repository: StandInRepository): Promise<BuildView> {
    const response = await sendDelivery(target.url, mergedPullRequest(repository, repository.sha), { secret: TEST_SECRET });
    assert.equal(response.status, 202, await response.clone().text());
    const { build } = (await response.json()) as { build: BuildView };
    assert.equal(response.headers.get('location'), `/builds/${build.id}`);
    await target.service.worker.onIdle();
    return target.getBuild(build.id);
  }

  it('a signed merged delivery ends with the tags in the registry and a succeeded build with its digest', async () => {
    const repository = await github.addRepository('octo-org/hello', path.join(FIXTURES, 'hello'));
    const build = await mergeAndWait(ci, repository);

    assert.equal(build.status, 'succeeded', build.error);
    assert.equal(build.image, `${registry.address}/ci-test/hello:1.0.0`);
    assert.deepEqual(build.tags, [`${registry.address}/ci-test/hello:1.0.0`, `${registry.address}/ci-test/hello:latest`]);
    assert.deepEqual((await registry.tags('ci-test/hello')).sort(), ['1.0.0', 'latest']);
    assert.equal(build.digest, await registry.digest('ci-test/hello', 'latest'));
    assert.equal(build.sha, repository.sha);
    assert.ok(build.startedAt && build.finishedAt);
    assert.equal(build.worker, 'build-host-1', 'the worker that ran it');
    assert.match(await (await fetch(`${ci.url}/builds/${build.id}`, { headers: { accept: 'text/html' } })).text(), /<dt>Worker<\/dt><dd><code>build-host-1<\/code><\/dd>/);

    const log = await ci.getLog(build.id);
    assert.match(log, /^#\d+ \[1\/2\] COPY message.txt \/message.txt$/m, 'BuildKit\'s steps, as docker build prints them');
    assert.match(log, /pushed .*ci-test\/hello:latest sha256:/);
    // A reader following the log gets only what it has not seen.
    const whole = await fetch(`${ci.url}/builds/${build.id}/log`);
    const cursor = whole.headers.get('x-log-cursor')!;
    assert.match(cursor, /^[0-9]+$/);
    const none = await fetch(`${ci.url}/builds/${build.id}/log?after=${cursor}`);
    assert.equal(await none.text(), '');
    assert.equal(none.headers.get('x-log-cursor'), cursor);
    const fromStart = await (await fetch(`${ci.url}/builds/${build.id}/log?after=0`)).text();
    assert.equal(fromStart, await whole.text());
    assert.equal((await fetch(`${ci.url}/builds/${build.id}/log?after=-1`)).status, 400);
    const tarballRequest = github.requests.find((request) => request.path.includes(`/tarball/${repository.sha}`));
    assert.equal(tarballRequest?.authorization, `Bearer ${GITHUB_TOKEN}`);
  });

  it('a repository over MAX_CONTEXT_ENTRIES fails at the context stage saying so; its log counts nothing it did not count', async () => {
    const limited = await startTestService({ GITHUB_API_URL: github.url, GITHUB_TOKEN, REGISTRY: registry.address, REGISTRY_USERNAME: 'ci', REGISTRY_PASSWORD, MAX_CONTEXT_ENTRIES: '5' });
    try {
      const many = Object.fromEntries(Array.from({ length: 8 }, (_, n) => [`extra-${n}.txt`, `${n}`]));
      const build = await mergeAndWait(limited, await github.addRepository('octo-org/too-many', path.join(FIXTURES, 'hello'), { extraFiles: many, image: 'ci-test/too-many' }));
      assert.equal(build.status, 'failed');
      assert.equal(build.failedStage, 'context');
      assert.match(build.error!, /^the repository has more than MAX_CONTEXT_ENTRIES=5 entries: raise MAX_CONTEXT_ENTRIES/);
      assert.doesNotMatch(await limited.getLog(build.id), /undefined/);
    } finally {
      await limited.stop();
    }
  });

  it('sets the commit status on GitHub: pending when queued, then success naming the image, linking to the build', async () => {
    const repository = await github.addRepository('octo-org/status-ok', path.join(FIXTURES, 'hello'), { image: 'ci-test/status-ok' });
    const build = await mergeAndWait(ci, repository);
    await waitFor(async () => (github.statuses.get(repository.sha) ?? []).length >= 2, 5_000, 'two statuses');
    assert.deepEqual(github.statuses.get(repository.sha), [
      { state: 'pending', description: 'image build queued', context: 'ci_service/image', target_url: `https://ci.example.com/builds/${build.id}` },
      { state: 'success', description: `pushed ${build.image}`, context: 'ci_service/image', target_url: `https://ci.example.com/builds/${build.id}` },
    ]);
  });

  it('sets a failure status with the reason when the repository is at fault', async () => {
    const repository = await github.addRepository('octo-org/status-bad', path.join(FIXTURES, 'bad-spec'));
    await mergeAndWait(ci, repository);
    await waitFor(async () => (github.statuses.get(repository.sha) ?? []).length >= 2, 5_000, 'two statuses');
    const last = github.statuses.get(repository.sha)!.at(-1)!;
    assert.equal(last.state, 'failure');
    assert.match(last.description!, /^dockerInfo.json: "service_name" = "Not A Valid Name"/);
    assert.ok(last.description!.length <= 140);
  });

  it('a commit status GitHub refuses is logged and does not fail the build', async () => {
    const repository = await github.addRepository('octo-org/status-refused', path.join(FIXTURES, 'hello'), { image: 'ci-test/status-refused' });
    github.failNext(new RegExp(`/statuses/${repository.sha}$`), 500, 5);
    const build = await mergeAndWait(ci, repository);
    assert.equal(build.status, 'succeeded', build.error);
    await waitFor(async () => ci.logLines.some((line) => line.includes('could not set the commit status') && line.includes(build.id)), 5_000, 'the warning');
  });

  it('a Dockerfile that COPYs repository files builds them in, symlinks kept as links', async () => {
    const repository = await github.addRepository('octo-org/hello-files', path.join(FIXTURES, 'hello'), { image: 'ci-test/hello-files' });
    const build = await mergeAndWait(ci, repository);
    assert.equal(build.status, 'succeeded', build.error);

    const message = await fileInImage(build.image!, '/message.txt');
    assert.equal(message.content, 'hello from a fixture repository\n');
    assert.equal((await fileInImage(build.image!, '/src/nested/file.txt')).content, 'nested file\n');
    const link = await fileInImage(build.image!, '/src/link-to-file.txt');
    assert.equal(link.type, 'symlink');
    assert.equal(link.linkname, 'nested/file.txt');
  });

  it('builds the "context" folder with the given Dockerfile path, build args and OCI labels', async () => {
    const repository = await github.addRepository('octo-org/subdir', path.join(FIXTURES, 'subdir-context'));
    const build = await mergeAndWait(ci, repository);
    assert.equal(build.status, 'succeeded', build.error);

    const inspected = await (await pulled(build.image!)).inspect();
    const labels = inspected.Config.Labels;
    assert.equal(labels.greeting, 'hello-from-build-args');
    assert.equal(labels['org.opencontainers.image.revision'], repository.sha);
    assert.equal(labels['org.opencontainers.image.source'], 'https://github.com/octo-org/subdir');
    assert.ok(!Number.isNaN(Date.parse(labels['org.opencontainers.image.created']!)));
    assert.equal((await fileInImage(build.image!, '/app.txt')).content, 'only the service folder is the context\n');
    assert.deepEqual(await registry.tags('ci-test/subdir'), ['2.0.0']);
  });

  it('a COPY of a file that is not there fails the build naming the Dockerfile line and Docker\'s reason', async () => {
    const build = await mergeAndWait(ci, await github.addRepository('octo-org/failing-copy', path.join(FIXTURES, 'failing-copy')));
    assert.equal(build.status, 'failed');
    assert.equal(build.failedStage, 'build');
    assert.equal(build.error, 'Dockerfile line 2: COPY does-not-exist.txt / failed ("/does-not-exist.txt" is not in the build context, or .dockerignore leaves it out)');
    assert.deepEqual(await registry.tags('ci-test/failing-copy'), []);
  });

  it('a RUN that exits non-zero fails with one sentence: the instruction, its Dockerfile line, the exit code, the last output', async () => {
    const repository = await github.addRepository('octo-org/failing-run', path.join(FIXTURES, 'failing-run'));
    const build = await mergeAndWait(ci, repository);
    assert.equal(build.status, 'failed');
    const sentence = 'Dockerfile line 2: RUN echo about to fail && exit 3 failed (exit code: 3); last output: about to fail';
    assert.equal(build.error, sentence);
    assert.match(await ci.getLog(build.id), /^#\d+ [0-9.]+ about to fail$/m, 'the step\'s output, live, as docker build prints it');
    await waitFor(async () => (github.statuses.get(repository.sha) ?? []).length >= 2, 5_000, 'the failure status');
    assert.equal(github.statuses.get(repository.sha)!.at(-1)!.description, sentence, 'the commit status says the same');
  });

  it('a bad dockerInfo.json fails naming the key, the value and the rule, before any download', async () => {
    const repository = await github.addRepository('octo-org/bad-spec', path.join(FIXTURES, 'bad-spec'));
    const build = await mergeAndWait(ci, repository);
    assert.equal(build.status, 'failed');
    assert.equal(build.failedStage, 'spec');
    assert.match(build.error!, /"service_name" = "Not A Valid Name" must be lowercase/);
    assert.equal(github.requests.filter((request) => request.path.includes(`/tarball/${repository.sha}`)).length, 0);
  });

  it('a dockerInfo.json of megabytes fails on its size, read no further than 64 KB', async () => {
    const repository = await github.addRepository('octo-org/huge-spec', path.join(FIXTURES, 'hello'), {
      extraFiles: { 'dockerInfo.json': JSON.stringify({ service_name: 'ci-test/huge-spec', version: '1.0.0', padding: 'x'.repeat(8 * 1024 * 1024) }) },
    });
    const build = await mergeAndWait(ci, repository);
    assert.equal(build.failedStage, 'spec');
    assert.match(build.error!, /^dockerInfo.json is larger than 64 KB/);
  });

  it('a repository without the Dockerfile fails saying which file is missing', async () => {
    const build = await mergeAndWait(ci, await github.addRepository('octo-org/no-dockerfile', path.join(FIXTURES, 'no-dockerfile')));
    assert.equal(build.status, 'failed');
    assert.match(build.error!, /Dockerfile "Dockerfile" is not in the repository root/);
  });

  it('a "context" folder that is not in the repository fails saying so', async () => {
    const build = await mergeAndWait(ci, await github.addRepository('octo-org/missing-context', path.join(FIXTURES, 'missing-context')));
    assert.equal(build.status, 'failed');
    assert.equal(build.failedStage, 'context');
    assert.match(build.error!, /"context" folder "services\/web" is not in the repository/);
  });

  it('a private repository builds with GITHUB_TOKEN', async () => {
    const repository = await github.addRepository('octo-org/private-hello', path.join(FIXTURES, 'hello'), { private: true, image: 'ci-test/private-hello' });
    const build = await mergeAndWait(ci, repository);
    assert.equal(build.status, 'succeeded', build.error);
  });

  it('a private repository without GITHUB_TOKEN fails saying to set it', async () => {
    const tokenless = await startTestService({ GITHUB_API_URL: github.url, REGISTRY: registry.address });
    try {
      const repository = await github.addRepository('octo-org/private-no-token', path.join(FIXTURES, 'hello'), { private: true });
      const build = await mergeAndWait(tokenless, repository);
      assert.equal(build.status, 'failed');
      assert.equal(build.failedStage, 'fetch');
      assert.match(build.error!, /octo-org\/private-no-token is private and ci_service has no credentials for GitHub: set up the GitHub App \(\/setup\), or set GITHUB_TOKEN/);
    } finally {
      await tokenless.stop();
    }
  });

  it('an unreachable registry fails the build before it builds, at the version check, saying so', async () => {
    const nowhere = `127.0.0.1:${await freePort()}`;
    const unreachable = await startTestService({ GITHUB_API_URL: github.url, GITHUB_TOKEN, REGISTRY: nowhere });
    try {
      const build = await mergeAndWait(unreachable, await github.addRepository('octo-org/hello-nowhere', path.join(FIXTURES, 'hello')));
      assert.equal(build.status, 'failed');
      assert.equal(build.failedStage, 'push');
      assert.match(build.error!, new RegExp(`the registry at http://${nowhere} is not reachable to check the published versions \\(.*ECONNREFUSED`));
    } finally {
      await unreachable.stop();
    }
  });

  /**
   * A registry of its own that goes away while the build's RUN step runs (the version check has passed by then):
   * the push itself meets it gone. `whileAway` runs once the push has been tried; the build's end is returned.
   */
  async function pushWhileRegistryAway(name: string, retries: string, whileAway: (away: LocalRegistry, log: () => Promise<string>) => Promise<void>) {
    const away = await new LocalRegistry().start();
    const target = await startTestService({ GITHUB_API_URL: github.url, GITHUB_TOKEN, REGISTRY: away.address, BUILD_RETRIES: retries, BUILD_RETRY_DELAY_MS: '1000', SHUTDOWN_GRACE_S: '5' });
    try {
      const repository = await github.addRepository(`octo-org/${name}`, path.join(FIXTURES, 'hello'), {
        image: `ci-test/${name}`,
        // A step of its own each time: a cached one would never run.
        extraFiles: { Dockerfile: `FROM ci-test-busybox:latest\nRUN echo the step runs && sleep 3 && echo ${randomUUID()}\n` },
      });
      const response = await sendDelivery(target.url, mergedPullRequest(repository, repository.sha), { secret: TEST_SECRET });
      const { build } = (await response.json()) as { build: BuildView };
      const log = () => target.getLog(build.id);
      await waitFor(async () => /^#\d+ [0-9.]+ the step runs$/m.test(await log()), 30_000, 'the RUN step to run').catch(async (error: Error) => {
        throw new Error(`${error.message}:\n${await log()}`);
      });
      await away.stop('SIGKILL');
      await whileAway(away, log);
      await target.service.worker.onIdle();
      const digest = await away.digest(`ci-test/${name}`, '1.0.0').catch(() => null);
      return { build: await target.getBuild(build.id), log: await log(), digest };
    } finally {
      await target.stop();
      await away.remove();
    }
  }

  it('a registry that goes away during the build fails the push, at the push stage, after its retries', async () => {
    const { build, log } = await pushWhileRegistryAway('push-fails', '1', async () => {});
    assert.equal(build.status, 'failed', log);
    assert.equal(build.failedStage, 'push', build.error);
    assert.match(build.error!, /^pushing .*push-fails:1\.0\.0 failed: .*connection refused/, build.error);
    assert.match(log, /pushing .*push-fails:1\.0\.0 failed \(.*\); retry 1 of 1 in [0-9.]+ s/);
    assert.equal((log.match(/^\[ci_service\] pushing .*push-fails:1\.0\.0$/gm) ?? []).length, 2, `the push and its one retry:\n${log}`);
  });

  it('a registry that comes back within the retries: the push succeeds, and the digest is the registry\'s', async () => {
    const { build, digest, log } = await pushWhileRegistryAway('push-recovers', '4', async (registry, readLog) => {
      await waitFor(async () => /push-recovers:1\.0\.0 failed \(.*\); retry 1 of 4/.test(await readLog()), 60_000, 'a failed push');
      await registry.start();
    });
    assert.equal(build.status, 'succeeded', `${build.error}\n${log}`);
    assert.ok(digest);
    assert.equal(build.digest, digest);
  });

  it('a registry that asks for a login (htpasswd, as registry:2): a wrong password fails saying so, the right one pushes and reads', async () => {
    const locked = await new LocalRegistry({ username: 'ci', password: REGISTRY_PASSWORD }).start();
    const withPassword = (password: string) =>
      startTestService({ GITHUB_API_URL: github.url, GITHUB_TOKEN, REGISTRY: locked.address, REGISTRY_USERNAME: 'ci', REGISTRY_PASSWORD: password });
    try {
      const repository = await github.addRepository('octo-org/locked', path.join(FIXTURES, 'hello'), { image: 'ci-test/locked' });
      const wrong = await withPassword('not-the-password');
      try {
        const refused = await mergeAndWait(wrong, repository);
        assert.equal(refused.status, 'failed');
        assert.equal(refused.failedStage, 'push');
        assert.match(refused.error!, /the registry refused to show \/v2\/ci-test\/locked\/manifests\/1\.0\.0 \(401\): set REGISTRY_USERNAME and REGISTRY_PASSWORD/);
      } finally {
        await wrong.stop();
      }
      assert.deepEqual(await locked.tags('ci-test/locked'), [], 'nothing pushed');

      const right = await withPassword(REGISTRY_PASSWORD);
      try {
        const pushed = await mergeAndWait(right, repository);
        assert.equal(pushed.status, 'succeeded', pushed.error);
        assert.deepEqual((await locked.tags('ci-test/locked')).sort(), ['1.0.0', 'latest']);
        assert.equal(pushed.digest, await locked.digest('ci-test/locked', '1.0.0'));
        // The version check reads the published image with the login: the same commit may push again.
        const rebuilt = await mergeAndWait(right, { ...repository });
        assert.equal(rebuilt.status, 'succeeded', rebuilt.error);
        assert.match(await right.getLog(rebuilt.id), /version 1\.0\.0 is already published from this commit: pushing it again/);
      } finally {
        await right.stop();
      }
    } finally {
      await locked.remove();
    }
  });

  it('a registry the engine pushes to but ci_service does not read (REGISTRY_URL elsewhere) fails the push naming both', async () => {
    const elsewhere = await new LocalRegistry().start();
    const split = await startTestService({ GITHUB_API_URL: github.url, GITHUB_TOKEN, REGISTRY: registry.address, REGISTRY_URL: elsewhere.url, BUILD_RETRIES: '0' });
    try {
      const build = await mergeAndWait(split, await github.addRepository('octo-org/split-registry', path.join(FIXTURES, 'hello'), { image: 'ci-test/split-registry' }));
      assert.equal(build.status, 'failed');
      assert.equal(build.failedStage, 'push');
      assert.match(build.error!, /the engine pushed .*ci-test\/split-registry:1\.0\.0, but the registry ci_service checks \(REGISTRY_URL\) has no such tag: REGISTRY_URL must reach the same registry as REGISTRY does/);
      assert.deepEqual(await registry.tags('ci-test/split-registry'), ['1.0.0'], 'the engine did push, to REGISTRY');
    } finally {
      await split.stop();
      await elsewhere.remove();
    }
  });

  it('versions are immutable: the same version from another commit fails before building; the same commit pushes again', async () => {
    const first = await github.addRepository('octo-org/versioned', path.join(FIXTURES, 'hello'), { image: 'ci-test/versioned' });
    assert.equal((await mergeAndWait(ci, first)).status, 'succeeded');
    const published = await registry.digest('ci-test/versioned', '1.0.0');

    const other = await github.addRepository('octo-org/versioned', path.join(FIXTURES, 'hello'), { image: 'ci-test/versioned', extraFiles: { 'nonce.txt': 'another commit' } });
    const refused = await mergeAndWait(ci, other);
    assert.equal(refused.status, 'failed');
    assert.equal(refused.failedStage, 'spec');
    assert.equal(refused.error, `version 1.0.0 is already published (from ${first.sha.slice(0, 7)}): bump "version" in dockerInfo.json`);
    assert.equal(github.requests.filter((request) => request.path.includes(`/tarball/${other.sha}`)).length, 0, 'nothing was downloaded');
    assert.equal(await registry.digest('ci-test/versioned', '1.0.0'), published);

    const again = await mergeAndWait(ci, first);
    assert.equal(again.status, 'succeeded', again.error);
    assert.match(await ci.getLog(again.id), /version 1\.0\.0 is already published from this commit: pushing it again/);
  });

  it('an image name belongs to the repository that first pushed it, unless ALLOWED_IMAGE_WRITERS says otherwise', async () => {
    const owner = await github.addRepository('octo-org/owner', path.join(FIXTURES, 'hello'), { image: 'ci-test/owned' });
    assert.equal((await mergeAndWait(ci, owner)).status, 'succeeded');
    const intruder = await github.addRepository('octo-org/intruder', path.join(FIXTURES, 'hello'), {
      image: 'ci-test/owned',
      extraFiles: { 'dockerInfo.json': JSON.stringify({ service_name: 'x', version: '9.9.9' }) },
    });
    const refused = await mergeAndWait(ci, intruder);
    assert.equal(refused.failedStage, 'spec');
    assert.equal(
      refused.error,
      'image name "ci-test/owned" belongs to octo-org/owner, which pushed it first: choose another "service_name" in dockerInfo.json, or let octo-org/intruder push it too with ALLOWED_IMAGE_WRITERS=ci-test/owned=octo-org/intruder on ci_service',
    );
    assert.deepEqual((await registry.tags('ci-test/owned')).sort(), ['1.0.0', 'latest'], 'nothing of the intruder reached the registry');

    const shared = await github.addRepository('octo-org/shared-a', path.join(FIXTURES, 'hello'), { image: 'ci-test/shared' });
    assert.equal((await mergeAndWait(ci, shared)).status, 'succeeded');
    const allowed = await github.addRepository('octo-org/shared-b', path.join(FIXTURES, 'hello'), {
      image: 'ci-test/shared',
      extraFiles: { 'dockerInfo.json': JSON.stringify({ service_name: 'x', version: '2.0.0' }) },
    });
    const byAllowed = await mergeAndWait(ci, allowed);
    assert.equal(byAllowed.status, 'succeeded', byAllowed.error);
  });

  it('a pull request closed without merging builds nothing', async () => {
    const before = (await ci.service.store.list(500)).length;
    const payload = examplePullRequest('closed');
    payload.pull_request.merged = false;
    const response = await sendDelivery(ci.url, payload, { secret: TEST_SECRET });
    assert.equal(response.status, 200);
    // What it still built would be cancelled; it builds nothing.
    assert.deepEqual(await response.json(), { cancelled: [], reason: `pull request #${payload.number} was closed` });
    await ci.service.worker.onIdle();
    assert.equal((await ci.service.store.list(500)).length, before);
  });

  it('never writes the webhook secret, the GitHub token or the registry password to its log', async () => {
    const everything = ci.logLines.join('\n');
    assert.ok(ci.logLines.length > 10, 'the daemon logged its work');
    assert.ok(ci.logLines.some((line) => line.includes('"buildId"') && line.includes('"deliveryId"')));
    for (const secret of [TEST_SECRET, GITHUB_TOKEN, REGISTRY_PASSWORD]) {
      assert.ok(!everything.includes(secret), `the log contains ${secret}`);
    }
    for (const build of await ci.service.store.list(500)) {
      const log = await ci.getLog(build.id);
      for (const secret of [TEST_SECRET, GITHUB_TOKEN, REGISTRY_PASSWORD]) assert.ok(!log.includes(secret));
    }
  });
});
