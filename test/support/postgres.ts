import { execFile } from 'node:child_process';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './registry.js';

const run = promisify(execFile);
/** Debian's postgresql-15 (installed by .ci/run): its programs are not on PATH. */
const BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

/**
 * A PostgreSQL server of the tests' own: a new cluster in a temporary folder, on a loopback port. PostgreSQL
 * refuses to run as root, so as root it runs as the `postgres` user Debian's package creates.
 */
export class LocalPostgres {
  private dir = '';
  port = 0;

  get url(): string {
    return `postgres://ci@127.0.0.1:${this.port}/postgres`;
  }

  async start(): Promise<this> {
    if (!this.dir) {
      this.dir = await mkdtemp(path.join(tmpdir(), 'postgres-'));
      this.port = await freePort();
      if (process.getuid?.() === 0) {
        const { stdout } = await run('id', ['-u', 'postgres']);
        const uid = Number(stdout.trim());
        await chown(this.dir, uid, uid);
      }
      await this.asServerUser('initdb', ['-D', this.data, '-U', 'ci', '-A', 'trust', '--no-sync', '-E', 'UTF8']);
    }
    await this.asServerUser('pg_ctl', ['-D', this.data, '-l', path.join(this.dir, 'server.log'), '-w', '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
    return this;
  }

  /** Stops the server, keeping its data: `start()` brings it back on the same port with the same data. */
  async stop(): Promise<void> {
    await this.asServerUser('pg_ctl', ['-D', this.data, '-m', 'fast', '-w', 'stop']);
  }

  /** A new empty database on this server; its URL. */
  async createDatabase(): Promise<string> {
    const name = `ci_${Math.random().toString(36).slice(2, 10)}`;
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    await client.query(`CREATE DATABASE ${name}`);
    await client.end();
    return `postgres://ci@127.0.0.1:${this.port}/${name}`;
  }

  async remove(): Promise<void> {
    if (!this.dir) return;
    await this.stop().catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
  }

  private get data(): string {
    return path.join(this.dir, 'data');
  }

  private async asServerUser(program: string, args: string[]): Promise<void> {
    const command = path.join(BIN, program);
    if (process.getuid?.() === 0) await run('runuser', ['-u', 'postgres', '--', command, ...args]);
    else await run(command, args);
  }
}
