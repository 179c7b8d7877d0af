import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemon, type Daemon } from '../support/daemon.js';
import { examplePayloads, sendDelivery } from '../support/deliveries.js';

const SECRET = 'bounded-secret-4b1d';
const MB = 1024 * 1024;

/** An unsigned POST /webhook announcing `announced` bytes, of which only `sent` are sent: then nothing. */
function stalledBody(port: number, announced: number, sent: number): { socket: Socket; answer: Promise<string>; closed: Promise<void> } {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write(`POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Event: ping\r\nContent-Length: ${announced}\r\n\r\n`);
  socket.write(Buffer.alloc(sent, 0x20));
  let received = '';
  const answer = new Promise<string>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      resolve(received.split('\r\n')[0]!);
    });
    socket.on('close', () => resolve(received.split('\r\n')[0] ?? ''));
  });
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  return { socket, answer, closed };
}

async function peakRssMb(pid: number): Promise<number> {
  return Number(/VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

describe('bounded under attack: unsigned bodies cannot take the daemon\'s memory or its deliveries (the daemon process)', () => {
  let daemon: Daemon;

  before(async () => {
    daemon = await startDaemon({ WEBHOOK_SECRET: SECRET, DATA_DIR: path.join(tmpdir(), `ci-bounded-${process.pid}`), REQUEST_TIMEOUT_S: '3', GITHUB_API_URL: 'http://127.0.0.1:9' });
  });

  after(async () => {
    daemon?.child.kill('SIGKILL');
  });

  it('40 slow unsigned 24 MB bodies: the excess is refused at once, a signed delivery is answered, memory stays bounded, the slow ones are cut', async () => {
    const port = Number(new URL(daemon.url).port);
    const before = await peakRssMb(daemon.child.pid!);
    const attackers = Array.from({ length: 40 }, () => stalledBody(port, 24 * MB, 8 * MB));
    // The ones beyond the budget are answered 503 without being read; within 1.5 s, long before the timeout.
    const pending = new Promise<string>((resolve) => setTimeout(() => resolve('(no answer yet)'), 1500));
    const answered = await Promise.all(attackers.map((a) => Promise.race([a.answer, pending])));
    // Refused: a 503, or the connection closed by the daemon while the client was still writing a body it will not read.
    const held = answered.filter((line) => line === '(no answer yet)').length;
    assert.ok(held <= 2, `the budget (64 MB of large bodies) holds two 24 MB bodies at most: ${JSON.stringify(answered)}`);
    assert.ok(answered.every((line) => line === '(no answer yet)' || line === '' || line === 'HTTP/1.1 503 Service Unavailable'), JSON.stringify(answered));

    const [ping] = examplePayloads('ping');
    const started = Date.now();
    const response = await sendDelivery(daemon.url, ping, { secret: SECRET, event: 'ping' });
    assert.equal(response.status, 200, await response.clone().text());
    assert.ok(Date.now() - started < 2000, 'the signed delivery did not wait for the attack');

    // Slow bodies are cut at REQUEST_TIMEOUT_S (3 s here), so they hold nothing for long.
    await Promise.all(attackers.map((a) => a.closed));
    const peak = await peakRssMb(daemon.child.pid!);
    assert.ok(peak - before < 120, `peak RSS grew by ${(peak - before).toFixed(0)} MB (from ${before.toFixed(0)})`);
    assert.equal(daemon.child.exitCode, null);
  });

  it('a refused delivery\'s log line does not echo long headers in full', async () => {
    const huge = 'x'.repeat(8000);
    const response = await fetch(`${daemon.url}/webhook`, { method: 'POST', headers: { 'x-github-delivery': huge, 'x-github-event': huge, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(response.status, 401);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const line = daemon.output().split('\n').filter((l) => l.includes('delivery refused')).at(-1)!;
    assert.ok(line.length < 700, `${line.length} characters: ${line.slice(0, 200)}`);
    assert.match(line, /"deliveryId":"x{100}…"/);
  });
});
