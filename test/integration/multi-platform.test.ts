import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import type { BuildView } from '../../src/http/build-view.js';
import { STOPPED_BUILD_GRACE_MS } from '../../src/pipeline/build-platforms.js';
import { mergedPullRequest, sendDelivery } from '../support/deliveries.js';
import { docker, dockerUnavailable } from '../support/docker-environment.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { GitHubStandIn, type StandInRepository } from '../support/github-stand-in.js';
import { pushPlatformBase } from '../support/platform-base.js';
import { LocalRegistry, waitFor } from '../support/registry.js';
import { startTestService, TEST_SECRET, type TestService } from '../support/service-harness.js';

const FIXTURE = path.join(import.meta.dirname, '..', 'fixtures', 'repos', 'multi-platform');
const GITHUB_TOKEN = 'ghp_testtoken0000000000000000000000000000';
const INDEX_TYPES = 'application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json';

const skip = await dockerUnavailable();
const run = promisify(execFile);

interface Index {
  mediaType: string;
  manifests: { digest: string; platform: { os: string; architecture: string }; annotations?: Record<string, string> }[];
}

/**
 * Images for two platforms under one tag, on the real engine (amd64, emulating arm64 with QEMU's handlers, which
 * .ci/run registers) and a real registry: what each platform's image runs, the index read back, each failure.
 */
describe('multi-platform images (real engine and registry)', { skip }, () => {
  let github: GitHubStandIn;
  let registry: LocalRegistry;
  let ci: TestService;
  let base: string;
  let amd64Only: string;

  before(async () => {
    github = await new GitHubStandIn(GITHUB_TOKEN).start();
    registry = await new LocalRegistry().start();
    await pushPlatformBase(registry.url, 'ci-test/platform-base', '1');
    await pushPlatformBase(registry.url, 'ci-test/platform-base', 'amd64-only', ['linux/amd64']);
    base = `${registry.address}/ci-test/platform-base:1`;
    amd64Only = `${registry.address}/ci-test/platform-base:amd64-only`;
    ci = await startTestService({ GITHUB_API_URL: github.url, GITHUB_TOKEN, REGISTRY: registry.address });
  });

  after(async () => {
    await ci?.stop();
    await github?.close();
    await registry?.remove();
  });

  function repository(name: string, spec: Record<string, unknown>, files: Record<string, string> = {}): Promise<StandInRepository> {
    const dockerInfo = { service_name: `ci-test/${name}`, version: '1.0.0', platforms: ['linux/amd64', 'linux/arm64'], build_args: { BASE: base }, ...spec };
    return github.addRepository(`octo-org/${name}`, FIXTURE, { extraFiles: { 'nonce.txt': randomUUID(), 'dockerInfo.json': JSON.stringify(dockerInfo), ...files } });
  }

  async function built(repo: StandInRepository): Promise<BuildView> {
    const response = await sendDelivery(ci.url, mergedPullRequest(repo, repo.sha), { secret: TEST_SECRET });
    assert.equal(response.status, 202, await response.clone().text());
    const { build } = (await response.json()) as { build: BuildView };
    await ci.service.worker.onIdle();
    return ci.getBuild(build.id);
  }

  async function readIndex(name: string, tag: string): Promise<{ index: Index; digest: string | null }> {
    const response = await fetch(`${registry.url}/v2/${name}/manifests/${tag}`, { headers: { accept: INDEX_TYPES } });
    assert.equal(response.status, 200);
    return { index: (await response.json()) as Index, digest: response.headers.get('docker-content-digest') };
  }

  /** The in-toto statement an attestation manifest holds (its one layer). */
  async function provenanceOf(name: string, digest: string): Promise<{ predicateType: string; predicate: unknown }> {
    const manifest = (await (await fetch(`${registry.url}/v2/${name}/manifests/${digest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { layers: { digest: string; mediaType: string }[] };
    assert.equal(manifest.layers[0]?.mediaType, 'application/vnd.in-toto+json');
    return (await (await fetch(`${registry.url}/v2/${name}/blobs/${manifest.layers[0]!.digest}`)).json()) as never;
  }

  /** A file of one platform's image, pulled by its manifest's digest (never run: only read). */
  async function fileOfManifest(reference: string, file: string): Promise<string> {
    const stream = await docker.pull(reference, { authconfig: {} });
    await new Promise((resolve, reject) => docker.modem.followProgress(stream, (error) => (error ? reject(error) : resolve(undefined))));
    const container = await docker.createContainer({ Image: reference, Cmd: ['/none'] });
    try {
      const extract = tar.extract();
      (await container.getArchive({ path: file })).pipe(extract as unknown as NodeJS.WritableStream);
      for await (const entry of extract) {
        const chunks: Buffer[] = [];
        for await (const chunk of entry) chunks.push(chunk as Buffer);
        return Buffer.concat(chunks).toString('utf8');
      }
      throw new Error(`${file} not in ${reference}`);
    } finally {
      await container.remove();
      await docker.getImage(reference).remove({ force: true }).catch(() => {});
    }
  }

  it('one tag, one index: the arm64 image says aarch64 and the amd64 one x86_64; the record, the page and each log name every platform', async () => {
    const build = await built(await repository('two-platforms', { tags: ['stable'] }));
    assert.equal(build.status, 'succeeded', build.error);
    assert.deepEqual(build.platforms?.map((image) => [image.platform, image.how, image.worker]), [
      ['linux/amd64', 'native', build.worker],
      ['linux/arm64', 'emulated', build.worker],
    ]);

    const { index, digest } = await readIndex('ci-test/two-platforms', '1.0.0');
    assert.equal(digest, build.digest, "the build's digest is the index's");
    assert.equal((await readIndex('ci-test/two-platforms', 'stable')).digest, build.digest, 'every tag is the same index');
    const images = index.manifests.filter((manifest) => manifest.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
    assert.deepEqual(
      images.map((manifest) => `${manifest.platform.os}/${manifest.platform.architecture}`),
      ['linux/amd64', 'linux/arm64'],
    );
    for (const image of build.platforms!) {
      const manifest = images.find((each) => `${each.platform.os}/${each.platform.architecture}` === image.platform);
      assert.equal(manifest?.digest, image.digest, `${image.platform}'s digest on the record is the index's`);
      assert.ok(image.seconds > 0);
    }
    const amd64 = build.platforms!.find((image) => image.platform === 'linux/amd64')!;
    const arm64 = build.platforms!.find((image) => image.platform === 'linux/arm64')!;
    assert.equal(await fileOfManifest(`${registry.address}/ci-test/two-platforms@${arm64.digest}`, '/arch'), 'aarch64\n');
    assert.equal(await fileOfManifest(`${registry.address}/ci-test/two-platforms@${amd64.digest}`, '/arch'), 'x86_64\n');

    // Nothing but the real tags under the image's name; the staging tags are gone (this registry deletes).
    assert.deepEqual((await registry.tags('ci-test/two-platforms')).sort(), ['1.0.0', 'stable']);
    assert.deepEqual(await registry.tags('ci-service-staging'), []);

    // BuildKit's provenance: one attestation manifest per platform where the store keeps them (containerd).
    const attestations = index.manifests.filter((manifest) => manifest.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest');
    const info = (await docker.info()) as { DriverStatus?: [string, string][] };
    const containerdStore = (info.DriverStatus ?? []).some(([key, value]) => key === 'driver-type' && value === 'io.containerd.snapshotter.v1');
    if (containerdStore) {
      assert.deepEqual(attestations.map((manifest) => manifest.annotations?.['vnd.docker.reference.digest']).sort(), [amd64.digest, arm64.digest].sort());
      const statement = await provenanceOf('ci-test/two-platforms', attestations[0]!.digest);
      assert.match(statement.predicateType, /^https:\/\/slsa\.dev\/provenance\//);
      assert.match(JSON.stringify(statement.predicate), /dockerfile\.v0|Dockerfile/);
    } else {
      assert.deepEqual(attestations, []);
      assert.match(await ci.getLog(build.id), /no provenance attestation on what this host builds: its engine's overlay2 image store keeps none/);
    }

    const armLog = await (await fetch(`${ci.url}/builds/${build.id}/log?platform=linux/arm64`)).text();
    const armLines = armLog.trimEnd().split('\n');
    assert.ok(armLines.length > 3 && armLines.every((line) => /^(\[ci_service\] )?\[linux\/arm64\] /.test(line)), armLog);
    assert.match(armLog, /emulated by QEMU/);
    const page = await (await fetch(`${ci.url}/builds/${build.id}`, { headers: { accept: 'text/html' } })).text();
    assert.match(page, /<code>linux\/arm64<\/code><\/td><td>emulated \(QEMU\)<\/td>/);
    assert.ok(page.includes(arm64.digest!), 'the page shows each platform digest');
    assert.equal((await fetch(`${ci.url}/builds/${build.id}/log?platform=sparc`)).status, 400);
  });

  it('the version guard and image ownership hold for an index: a version published from one commit is not pushed over from another', async () => {
    const first = await built(await repository('guarded-index', {}));
    assert.equal(first.status, 'succeeded', first.error);
    const second = await built(await repository('guarded-index', {}));
    assert.equal(second.status, 'failed');
    assert.equal(second.failedStage, 'spec');
    assert.match(second.error!, /1\.0\.0 .*already|already .*1\.0\.0/, second.error);
    assert.equal((await readIndex('ci-test/guarded-index', '1.0.0')).digest, first.digest, 'the published index is untouched');
    const other = await github.addRepository('octo-org/not-the-owner', FIXTURE, {
      extraFiles: { 'nonce.txt': randomUUID(), 'dockerInfo.json': JSON.stringify({ service_name: 'ci-test/guarded-index', version: '2.0.0', platforms: ['linux/amd64', 'linux/arm64'], build_args: { BASE: base } }) },
    });
    const taken = await built(other);
    assert.equal(taken.status, 'failed');
    assert.match(taken.error!, /belongs to octo-org\/guarded-index/, taken.error);
  });

  it("PROVENANCE=max: the attestation holds the build's definition where min's does not; a classic store keeps none and says so", async () => {
    const info = (await docker.info()) as { DriverStatus?: [string, string][] };
    const containerdStore = (info.DriverStatus ?? []).some(([key, value]) => key === 'driver-type' && value === 'io.containerd.snapshotter.v1');
    const max = await startTestService({ GITHUB_API_URL: github.url, REGISTRY: registry.address, PROVENANCE: 'max' });
    try {
      const repo = await repository('provenance-max', {});
      const response = await sendDelivery(max.url, mergedPullRequest(repo, repo.sha), { secret: TEST_SECRET });
      const { build: queued } = (await response.json()) as { build: BuildView };
      await max.service.worker.onIdle();
      const build = await max.getBuild(queued.id);
      assert.equal(build.status, 'succeeded', build.error);
      const { index } = await readIndex('ci-test/provenance-max', '1.0.0');
      if (!containerdStore) {
        assert.equal(index.manifests.length, 2, 'two images, no attestation');
        assert.match(await max.getLog(build.id), /no provenance attestation on what this host builds: its engine's overlay2 image store keeps none/);
        return;
      }
      const attestation = index.manifests.find((manifest) => manifest.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest')!;
      const maxStatement = JSON.stringify((await provenanceOf('ci-test/provenance-max', attestation.digest)).predicate);
      const minIndex = (await readIndex('ci-test/two-platforms', '1.0.0')).index;
      const minAttestation = minIndex.manifests.find((manifest) => manifest.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest')!;
      const minStatement = JSON.stringify((await provenanceOf('ci-test/two-platforms', minAttestation.digest)).predicate);
      assert.match(maxStatement, /llbDefinition/, 'mode=max records the build definition');
      assert.doesNotMatch(minStatement, /llbDefinition/, 'mode=min does not');
    } finally {
      await max.stop();
    }
  });

  it('a single-platform build carries provenance too where the store keeps it: its tag is then an index of the image and its attestation', async () => {
    const repo = await repository('single-with-provenance', { platforms: undefined });
    const build = await built(repo);
    assert.equal(build.status, 'succeeded', build.error);
    assert.equal(build.platforms, undefined);
    const response = await fetch(`${registry.url}/v2/ci-test/single-with-provenance/manifests/1.0.0`, { headers: { accept: `${INDEX_TYPES}, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json` } });
    assert.equal(response.headers.get('docker-content-digest'), build.digest);
    const manifest = (await response.json()) as Index & { mediaType: string };
    const info = (await docker.info()) as { DriverStatus?: [string, string][] };
    if ((info.DriverStatus ?? []).some(([key, value]) => key === 'driver-type' && value === 'io.containerd.snapshotter.v1')) {
      const attestation = manifest.manifests.find((each) => each.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest');
      assert.ok(attestation, JSON.stringify(manifest));
      assert.match((await provenanceOf('ci-test/single-with-provenance', attestation.digest)).predicateType, /^https:\/\/slsa\.dev\/provenance\//);
    } else {
      assert.equal(manifest.mediaType, 'application/vnd.docker.distribution.manifest.v2+json', 'one image, as the classic store pushes it');
    }
  });

  it('a step that fails on one platform only fails the build naming that platform and its Dockerfile line, in the commit status too', async () => {
    const repo = await repository('fails-on-arm', {}, { Dockerfile: `ARG BASE\nFROM \${BASE}\nRUN echo building\nRUN [ "$(uname -m)" = x86_64 ]\n` });
    const build = await built(repo);
    assert.equal(build.status, 'failed');
    assert.equal(build.failedStage, 'build');
    assert.match(build.error!, /^linux\/arm64: Dockerfile line 4: RUN \[ "\$\(uname -m\)" = x86_64 \]/, build.error);
    assert.doesNotMatch(build.error!, /emulation/, 'an ordinary failure is not blamed on the emulator');
    await waitFor(async () => (github.statuses.get(repo.sha) ?? []).length >= 2, 5_000, 'the final commit status');
    const status = github.statuses.get(repo.sha)?.at(-1);
    assert.equal(status?.state, 'failure');
    assert.match(status?.description ?? '', /linux\/arm64/);
    assert.deepEqual(await registry.tags('ci-test/fails-on-arm'), [], 'nothing pushed under the name');
    // The amd64 build, stopped when arm64 failed, may have named its image as it was stopped: it goes a moment later.
    const left = async () => (await docker.listImages()).filter((image) => (image.RepoTags ?? []).some((tag) => tag.startsWith(`${registry.address}/ci-service-staging:`)));
    await waitFor(async () => (await left()).length === 0, STOPPED_BUILD_GRACE_MS + 5_000, 'the engine to keep no platform image of the failed build').catch(async (error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify((await left()).map((image) => image.RepoTags))}`);
    });
  });

  it('an unknown or malformed platform fails the build saying what a platform looks like', async () => {
    for (const platforms of [['linux/sparc'], ['windows/amd64'], ['arm64'], []]) {
      const build = await built(await repository(`bad-platform-${randomUUID().slice(0, 8)}`, { platforms }));
      assert.equal(build.status, 'failed');
      assert.equal(build.failedStage, 'spec');
      assert.match(build.error!, /"platforms(\.0)?"/, build.error);
      assert.match(build.error!, /linux\/arm64/, build.error);
    }
  });

  it('a platform this host neither runs nor emulates fails before anything is built, naming what it can build', async () => {
    const engine = (await (await fetch(`${ci.url}/healthz`)).json()) as { engine: { platforms: { native: string[]; emulated: string[] } } };
    const known = [...engine.engine.platforms.native, ...engine.engine.platforms.emulated];
    const missing = ['linux/arm/v5', 'linux/loong64', 'linux/mips64le', 'linux/riscv64', 'linux/s390x', 'linux/ppc64le', 'linux/386'].find((platform) => !known.includes(platform));
    assert.ok(missing, `this engine builds every platform we could ask for: ${known.join(', ')}`);
    const build = await built(await repository('unbuildable', { platforms: ['linux/amd64', missing] }));
    assert.equal(build.status, 'failed');
    assert.equal(build.failedStage, 'spec');
    assert.match(build.error!, new RegExp(`names ${missing}, which this build host cannot build: its engine \\(docker `), build.error);
    assert.match(build.error!, /qemu-user-static/);
    assert.doesNotMatch(await ci.getLog(build.id), /building for/);
  });

  it('a base image that has no image for a platform fails the build naming the platform and the base', async () => {
    const build = await built(await repository('base-lacks-arm', { build_args: { BASE: amd64Only } }));
    assert.equal(build.status, 'failed');
    assert.match(build.error!, /^linux\/arm64: /, build.error);
    assert.match(build.error!, /platform-base:amd64-only/, build.error);
    assert.match(build.error!, /has no image for this platform/, build.error);
  });

  it("QEMU's crash of a step's first process hangs it: the build times out, its log names the platform still building, and the engine stops the step", async () => {
    const short = await startTestService({ GITHUB_API_URL: github.url, REGISTRY: registry.address, BUILD_TIMEOUT_S: '20' });
    try {
      // `kill -SEGV $$` as the step's own process (PID 1 of its container): natively a signal PID 1 ignores, under
      // QEMU a crash it cannot deliver (measured: the process never ends).
      const repo = await repository('hangs-on-arm', {}, { Dockerfile: `ARG BASE\nFROM \${BASE}\nRUN kill -SEGV $$\n` });
      const response = await sendDelivery(short.url, mergedPullRequest(repo, repo.sha), { secret: TEST_SECRET });
      const { build: queued } = (await response.json()) as { build: BuildView };
      const hung = async () => (await run('pgrep', ['-f', 'kill -SEGV [$][$]']).then(() => true, () => false));
      await waitFor(hung, 15_000, 'the crashed step, hung under QEMU');
      await short.service.worker.onIdle();
      const build = await short.getBuild(queued.id);
      assert.equal(build.status, 'failed');
      assert.equal(build.failedStage, 'timeout');
      const log = await short.getLog(build.id);
      assert.match(log, /\[linux\/arm64\] still building \(emulated\) when the build was stopped/, log);
      assert.doesNotMatch(log, /\[linux\/amd64\] still building/, 'amd64 had finished');
      await waitFor(async () => !(await hung()), 15_000, 'the hung step to be stopped by the engine');
    } finally {
      await short.stop();
    }
  });

  it('an emulated step that crashes fails the build naming the platform, the step, the signal and the emulation', async () => {
    // A program the step starts, as a compiler is. Not the step's own process: the shell would exec a last command
    // as PID 1 of the container, and QEMU's crash of PID 1 is never delivered: it hangs until BUILD_TIMEOUT_S
    // (README, measured). `exit $?` keeps the crashing program from being the last.
    const crash = `RUN if [ "$(uname -m)" = aarch64 ]; then sh -c 'kill -SEGV $$'; exit $?; fi`;
    const build = await built(await repository('crashes-on-arm', {}, { Dockerfile: `ARG BASE\nFROM \${BASE}\n${crash}\n` }));
    assert.equal(build.status, 'failed');
    assert.match(build.error!, /^linux\/arm64: Dockerfile line 3: RUN if/, build.error);
    assert.match(build.error!, /killed by signal 11 under QEMU's emulation/, build.error);
  });
});
