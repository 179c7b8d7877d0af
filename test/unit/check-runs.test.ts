import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BuildRecord } from '../../src/domain/build-record.js';
import { buildRecord } from '../support/build-records.js';
import { annotationsOf, checkRunFor, OUTPUT_FIELD_LIMIT } from '../../src/github/check-runs.js';
import { appManifest } from '../../src/http/setup-routes.js';

const build = buildRecord;

describe('a build as a check run (pure)', () => {
  it('annotates the failing step on its Dockerfile at its line, a platform\'s too; a bad dockerInfo.json on that file', () => {
    const step = annotationsOf(build({ failedStage: 'build', error: 'docker/app.Dockerfile line 6: RUN make failed (exit code: 2); last output: no rule' }));
    assert.deepEqual(step.map((a) => [a.path, a.start_line, a.end_line, a.annotation_level]), [['docker/app.Dockerfile', 6, 6, 'failure']]);
    const platform = annotationsOf(build({ failedStage: 'build', error: 'linux/arm64: Dockerfile line 4: RUN uname failed (exit code: 1)' }));
    assert.deepEqual(platform.map((a) => [a.path, a.start_line]), [['Dockerfile', 4]]);
    const parse = annotationsOf(build({ failedStage: 'build', error: 'Dockerfile parse error line 3: unknown instruction: RUNN' }));
    assert.deepEqual(parse.map((a) => [a.path, a.start_line]), [['Dockerfile', 3]]);
    const spec = annotationsOf(build({ failedStage: 'spec', error: 'dockerInfo.json: "version" is required' }));
    assert.deepEqual(spec.map((a) => a.path), ['dockerInfo.json']);
    // Not the repository's file: the registry, a timeout, a success.
    assert.deepEqual(annotationsOf(build({ failedStage: 'push', error: 'pushing r/a:1 failed: line 3: x' })), []);
    assert.deepEqual(annotationsOf(build({ status: 'succeeded' })), []);
  });

  it('maps each state to GitHub\'s: queued, in progress with Cancel, and the conclusions, within GitHub\'s limits', () => {
    assert.equal(checkRunFor(build({ status: 'queued' }), undefined, []).status, 'queued');
    const running = checkRunFor(build({ status: 'running', worker: 'w1' }), 'https://ci.example.com', []);
    assert.equal(running.status, 'in_progress');
    assert.deepEqual(running.actions?.map((action) => action.identifier), ['cancel']);
    assert.equal(running.details_url, 'https://ci.example.com/builds/b1');
    const conclusion = (overrides: Partial<BuildRecord>) => (checkRunFor(build(overrides), undefined, []) as { conclusion?: string }).conclusion;
    assert.equal(conclusion({ status: 'succeeded', digest: 'sha256:' + 'b'.repeat(64), image: 'r/a:1' }), 'success');
    assert.equal(conclusion({ failedStage: 'build', error: 'x' }), 'failure');
    assert.equal(conclusion({ failedStage: 'timeout', error: 'build did not finish' }), 'timed_out');
    assert.equal(conclusion({ status: 'cancelled', error: 'by hand' }), 'cancelled');
    const huge = checkRunFor(build({ error: 'e'.repeat(100_000) }), undefined, ['x'.repeat(100_000), 'last line']);
    assert.ok(huge.output.title.length <= 200);
    assert.ok((huge.output as { text?: string }).text!.length <= OUTPUT_FIELD_LIMIT);
    assert.match((huge.output as { text?: string }).text!, /last line\n```$/);
    const cached = checkRunFor(build({ status: 'succeeded', tags: ['r/a:1', 'r/a:latest'] }), undefined, ['#4 [1/2] FROM base', '#4 CACHED', '#5 [2/2] COPY . .', '#5 DONE 0.1s']);
    assert.match(cached.output.summary, /\| Tags \| r\/a:1, r\/a:latest \|/);
    assert.match(cached.output.summary, /\| Cache \| 1 step from the build cache \|/);
    assert.equal(checkRunFor(build({ request: { ...build().request, trigger: { kind: 'pull_request', prNumber: 1, baseRef: 'main', headRef: 't' } } }), undefined, []).name, 'ci_service/pr-build');
  });

  it('asks GitHub for the App with the permissions and events the README names, its webhook and way back at PUBLIC_URL', () => {
    const manifest = appManifest('https://ci.example.com', 'ci_service ci.example.com');
    assert.deepEqual(manifest.hook_attributes, { url: 'https://ci.example.com/webhook', active: true });
    assert.equal(manifest.redirect_url, 'https://ci.example.com/setup/callback');
    assert.deepEqual(manifest.default_permissions, { contents: 'read', checks: 'write', statuses: 'write', pull_requests: 'read', metadata: 'read' });
    assert.deepEqual(manifest.default_events, ['pull_request', 'push', 'check_run', 'check_suite']);
  });
});
