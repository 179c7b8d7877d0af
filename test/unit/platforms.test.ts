import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { howBuilt, normalisePlatform, platformSlug } from '../../src/rules/platforms.js';
import { composeIndex } from '../../src/registry/registry-client.js';

describe('platforms', () => {
  it('spells a platform as BuildKit and the OCI index do', () => {
    const cases: [string, string | undefined][] = [
      ['linux/amd64', 'linux/amd64'],
      ['linux/x86_64', 'linux/amd64'],
      ['linux/aarch64', 'linux/arm64'],
      ['linux/arm64/v8', 'linux/arm64'],
      ['linux/arm', 'linux/arm/v7'],
      ['linux/arm/v6', 'linux/arm/v6'],
      ['linux/armhf', 'linux/arm/v7'],
      ['linux/amd64/v3', 'linux/amd64/v3'],
      [' LINUX/ARM64 ', 'linux/arm64'],
      ['linux/arm64/v9', undefined],
      ['linux/sparc', undefined],
      ['darwin/arm64', undefined],
      ['linux', undefined],
      ['linux/amd64/v2/x', undefined],
    ];
    for (const [given, expected] of cases) assert.equal(normalisePlatform(given), expected, given);
  });

  it('says how an engine builds a platform: natively, emulated, or not at all', () => {
    const engine = { native: ['linux/amd64', 'linux/amd64/v2', 'linux/386'], emulated: ['linux/arm64', 'linux/arm/v7'] };
    assert.equal(howBuilt('linux/amd64', engine), 'native');
    assert.equal(howBuilt('linux/arm64', engine), 'emulated');
    assert.equal(howBuilt('linux/arm/v7', engine), 'emulated');
    assert.equal(howBuilt('linux/s390x', engine), undefined);
    assert.equal(platformSlug('linux/arm/v7'), 'linux-arm-v7');
  });

  it("writes Docker's manifest list for Docker manifests, and an OCI index otherwise", () => {
    const docker = { mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: `sha256:${'a'.repeat(64)}`, size: 1, platform: { os: 'linux', architecture: 'amd64' } };
    const oci = { ...docker, mediaType: 'application/vnd.oci.image.manifest.v1+json' };
    assert.equal(composeIndex([docker, docker]).mediaType, 'application/vnd.docker.distribution.manifest.list.v2+json');
    const mixed = composeIndex([docker, oci]);
    assert.equal(mixed.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(JSON.parse(mixed.bytes.toString()), { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [docker, oci] });
  });
});
