import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * The thread's code: plain CommonJS, so that it runs the same from dist/ and from the sources under
 * tsx (whose loader does not reach worker threads on Node 20). PASSIVE never waits for, nor blocks, the
 * daemon's writes: what it cannot copy back now, it copies next time. An error (a failing disk) also
 * fails the daemon's next write, which reports it; the next tick tries again.
 */
const THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.betterSqlite3);
const db = new Database(workerData.file, { fileMustExist: true });
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch {}
}, workerData.everyMs);
parentPort.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Checkpoints a WAL-mode SQLite file from a thread of its own, every `everyMs`. SQLite would otherwise
 * checkpoint inside whichever commit fills 1,000 pages of WAL, and on the event loop a checkpoint of a busy
 * second's WAL takes 10–20 ms, which every delivery in flight waits for (bench/README.md).
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  constructor(file: string, everyMs: number, onError: (error: Error) => void) {
    const betterSqlite3 = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(THREAD, { eval: true, workerData: { file, everyMs, betterSqlite3 } });
    this.worker.on('error', onError);
    this.worker.unref();
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
  }

  /** Stops checkpointing and closes the thread's connection. */
  async stop(): Promise<void> {
    this.worker.ref(); // keeps the process up until the thread has closed its connection
    this.worker.postMessage('stop');
    await this.exited;
  }
}
