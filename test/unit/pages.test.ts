import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatAge, formatDuration, renderBuildList, renderBuildPage } from '../../src/http/pages.js';
import type { BuildRecord } from '../../src/domain/build-record.js';
import { buildRecord } from '../support/build-records.js';

const now = new Date('2026-11-25T12:00:00Z');
const hostile = '<script>alert(1)</script>';

function build(overrides: Partial<BuildRecord> = {}): BuildRecord {
  const base = buildRecord();
  return buildRecord({
    request: { ...base.request, trigger: { kind: 'merge', prNumber: 7, baseRef: `feature/${hostile}` } },
    error: `docker build failed: ${hostile}`,
    failedStage: 'build',
    ...overrides,
  });
}

describe('builds pages', () => {
  it('escapes everything that comes from a payload or a log', () => {
    const page = renderBuildPage(build(), { lines: [`Step 1/1 : RUN echo "${hostile}"`], cursor: 7 }, now);
    assert.ok(!page.includes('<script>alert'), 'no live script from a branch name, an error or a log');
    assert.match(page, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(page, /data-log-cursor="7"/, 'the page follows the log from where it stopped');
    assert.ok(!renderBuildList([build()], now).includes('<script>alert'));
  });

  it('shows status with a symbol and a word, not by colour alone', () => {
    const list = renderBuildList([build(), build({ id: 'b2', status: 'succeeded', error: undefined }), build({ id: 'b3', status: 'running', finishedAt: undefined })], now);
    for (const label of ['✗ failed', '✓ succeeded', '◐ running']) assert.ok(list.includes(label), label);
    assert.match(list, /<th scope="col">Status<\/th>/);
    assert.match(list, /<caption>/);
    assert.match(list, /<meta http-equiv="refresh" content="5">/, 'refreshes while a build runs');
  });

  it('follows a running build with the script, and stops for a finished one', () => {
    assert.match(renderBuildPage(build({ status: 'running', finishedAt: undefined }), { lines: [], cursor: 0 }, now), /follow-build\.js/);
    assert.doesNotMatch(renderBuildPage(build(), { lines: [], cursor: 0 }, now), /follow-build\.js/);
    assert.match(renderBuildPage(build(), { lines: [], cursor: 0 }, now), /role="status" aria-live="polite"/);
  });

  it('formats durations and ages for people', () => {
    assert.equal(formatDuration(90_000), '1m 30s');
    assert.equal(formatDuration(4_000), '4s');
    assert.equal(formatDuration(7_260_000), '2h 1m');
    assert.equal(formatAge(new Date('2026-11-25T11:55:00Z'), now), '5 min ago');
    assert.equal(formatAge(new Date('2026-11-25T11:59:40Z'), now), 'just now');
  });
});
