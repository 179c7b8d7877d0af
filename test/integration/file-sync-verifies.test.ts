import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import axios from 'axios';
import { DockerEngine } from '../../src/engine/docker/docker-engine.js';
import { GitHubSource } from '../../src/github/github-source.js';
import { Checkouts } from '../../src/source/checkout.js';
import { docker, dockerUnavailable } from '../support/docker-environment.js';
import { GitHubStandIn } from '../support/github-stand-in.js';

const skip = await dockerUnavailable();
const OPTIONS = { context: '', dockerfile: 'Dockerfile', maxBytes: 1 << 20, maxArchiveBytes: 1 << 20, maxEntries: 100 };
const BUILD = { dockerfile: 'Dockerfile', buildArgs: {}, labels: {}, target: undefined, secrets: {}, cacheFrom: [] };

/** BuildKit gets a file only as the checkout's manifest describes it: what changed on disk since fails the build. */
describe('the file sync sends what was fetched and verified (a real engine)', { skip }, () => {
  let github: GitHubStandIn;
  let folder: string;
  before(async () => {
    github = await new GitHubStandIn().start();
    folder = await mkdtemp(path.join(tmpdir(), 'file-sync-'));
  });
  after(async () => {
    await github?.close();
    await rm(folder, { recursive: true, force: true });
  });

  it('a file whose bytes changed after the checkout fails the build, naming it; untouched, the same checkout builds', async () => {
    const repo = await mkdtemp(path.join(folder, 'repo-'));
    await writeFile(path.join(repo, 'Dockerfile'), 'FROM scratch\nCOPY app.txt /app.txt\n');
    await writeFile(path.join(repo, 'app.txt'), 'reviewed\n');
    const repository = await github.addRepository('octo/verified', repo);
    const source = new GitHubSource(axios.create({ baseURL: github.url, validateStatus: () => true }), github.url, { mode: 'none' });
    const checkouts = await Checkouts.open(path.join(folder, 'checkouts'), source);
    const engine = new DockerEngine(docker, undefined, 'buildkit');
    const tag = `ci-test-file-sync:${Date.now()}`;
    const checkout = await checkouts.checkout(repository, repository.sha, OPTIONS, 'reviewed', new AbortController().signal);
    try {
      // The same size, other bytes: only the blob id tells them apart.
      await writeFile(path.join(checkout.root, 'app.txt'), 'planted!\n');
      const failed = await engine.build({ kind: 'checkout', checkout }, { ...BUILD, tags: [tag] }, () => {}, new AbortController().signal).catch((error: Error) => error);
      assert.ok(failed instanceof Error, 'the build failed');
      assert.match(failed.message, /the context file "app\.txt" on disk is not the one fetched/);
      await writeFile(path.join(checkout.root, 'app.txt'), 'reviewed\n');
      const built = await engine.build({ kind: 'checkout', checkout }, { ...BUILD, tags: [tag] }, () => {}, new AbortController().signal);
      await engine.removeImage(built.id);
    } finally {
      checkout.release();
    }
  });
});
