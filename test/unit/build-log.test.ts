import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BuildLog, cleanLine } from '../../src/queue/build-log.js';

describe('build logs', () => {
  it('never pass control characters or escape sequences to a reader', () => {
    assert.equal(cleanLine('\x1b[1;31mred\x1b[0m and \x1b]0;title\x07plain\ttab'), 'red and plain\ttab');
    assert.equal(cleanLine('bell\x07 null\x00 del\x7f c1\x9b'), 'bell null del c1');
    assert.equal(cleanLine('progress 10%\rprogress 50%\rprogress 100%'), 'progress 100%', 'what a terminal would show');
  });

  it('mark ci_service\'s own lines, and split what arrives in one piece', () => {
    const lines: string[] = [];
    const log = new BuildLog((line) => lines.push(line));
    log.own('reading dockerInfo.json');
    log.output('#5 one\n#5 two');
    assert.deepEqual(lines, ['[ci_service] reading dockerInfo.json', '#5 one', '#5 two']);
  });

  it('stop at their size, with one line saying so, whatever comes after', () => {
    const lines: string[] = [];
    const log = new BuildLog((line) => lines.push(line), 100);
    for (let n = 0; n < 1000; n += 1) log.output(`line ${n} ${'x'.repeat(20)}`);
    log.own('FAILED: after the cut');
    assert.equal(lines.length, 4);
    assert.match(lines[3]!, /^\[ci_service\] the log was cut here: it reached 0 MB/);
    assert.ok(lines.slice(0, 3).join('\n').length <= 100);
  });
});
