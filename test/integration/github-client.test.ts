import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GitHubAuth } from '../../src/github/github-auth.js';
import { createGitHubClient } from '../../src/github/github-client.js';
import { GitHubSource } from '../../src/github/github-source.js';
import { GitHubStandIn } from '../support/github-stand-in.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'repos');

/** Every call to GitHub gives up: a GitHub that does not answer, or stops sending, holds nothing for long. */
describe('the GitHub client has a timeout (the stand-in, 300 ms instead of 30 s)', () => {
  let github: GitHubStandIn;

  before(async () => {
    github = await new GitHubStandIn().start();
  });

  after(async () => {
    await github.close();
  });

  it('a request that gets no answer fails', async () => {
    github.hang(/^\/repos\/octo-org\/silent\//);
    const client = createGitHubClient(github.url, new GitHubAuth(github.url, undefined), 300);
    const started = Date.now();
    await assert.rejects(client.get('/repos/octo-org/silent/hooks'), /timeout of 300ms exceeded/);
    assert.ok(Date.now() - started < 2000);
  });

  it('a download that stops sending halfway fails', async () => {
    const repository = await github.addRepository('octo-org/stalling', path.join(FIXTURES, 'hello'), { extraFiles: { 'large.txt': 'x'.repeat(4 * 1024 * 1024) } });
    github.breakTarball(repository.sha, 'stall');
    const source = new GitHubSource(createGitHubClient(github.url, new GitHubAuth(github.url, undefined), 300), github.url, { mode: 'none' });
    const download = await source.tarball(repository, repository.sha, new AbortController().signal);
    const started = Date.now();
    await assert.rejects(
      (async () => {
        for await (const _chunk of download);
      })(),
    );
    assert.ok(Date.now() - started < 3000, `${Date.now() - started} ms`);
  });
});
