import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { FailureStage } from '../domain/errors.js';
import type { BuildRecord, PlatformImage, BuildStatus } from '../domain/build-record.js';
import { storedRequest, triggerKey, type BuildRequest } from '../domain/build-request.js';
import { BUILD_COLUMNS, LostClaimError, type AddOutcome, type BuildChanges, type BuildStore, type WorkerSeen } from './build-store.js';
import { WalCheckpointer } from './wal-checkpointer.js';

const CHECKPOINT_EVERY_MS = 1000;
const BACKSTOP_CHECKPOINT_PAGES = 50_000;

/** Schema versions, applied in order; `PRAGMA user_version` records how many ran. */
const MIGRATIONS = [
  `CREATE TABLE builds (
     seq          INTEGER PRIMARY KEY AUTOINCREMENT,
     id           TEXT NOT NULL UNIQUE,
     repository   TEXT NOT NULL,
     sha          TEXT NOT NULL,
     request      TEXT NOT NULL,
     status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
     image        TEXT,
     tags         TEXT NOT NULL DEFAULT '[]',
     digest       TEXT,
     error        TEXT,
     failed_stage TEXT,
     resumed      INTEGER NOT NULL DEFAULT 0,
     created_at   TEXT NOT NULL,
     started_at   TEXT,
     finished_at  TEXT
   );
   CREATE INDEX builds_unfinished ON builds (status, repository, sha);
   CREATE TABLE deliveries (
     delivery_id TEXT PRIMARY KEY,
     build_id    TEXT NOT NULL REFERENCES builds (id)
   );
   CREATE TABLE build_logs (
     seq      INTEGER PRIMARY KEY AUTOINCREMENT,
     build_id TEXT NOT NULL REFERENCES builds (id),
     line     TEXT NOT NULL
   );
   CREATE INDEX build_logs_by_build ON build_logs (build_id, seq);`,
  // An image name belongs to the repository that first pushed it.
  `CREATE TABLE image_owners (
     image      TEXT PRIMARY KEY,
     repository TEXT NOT NULL,
     claimed_at TEXT NOT NULL
   );`,
  // Which worker ran a build (WORKER_NAME).
  `ALTER TABLE builds ADD COLUMN worker TEXT;`,
  // Runs started: a worker's writes hold only while its run is the current one.
  `ALTER TABLE builds ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;`,
  // The worker processes seen, for /metrics.
  `CREATE TABLE workers (name TEXT PRIMARY KEY, seen_at TEXT NOT NULL);`,
  // Cancelled builds, and the trigger a build answers (a merge, a pull request, a release ref). SQLite cannot
  // change a CHECK constraint in place: the table is copied (its documented procedure, foreign keys off).
  `CREATE TABLE builds_v6 (
     seq          INTEGER PRIMARY KEY AUTOINCREMENT,
     id           TEXT NOT NULL UNIQUE,
     repository   TEXT NOT NULL,
     sha          TEXT NOT NULL,
     request      TEXT NOT NULL,
     status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
     image        TEXT,
     tags         TEXT NOT NULL DEFAULT '[]',
     digest       TEXT,
     error        TEXT,
     failed_stage TEXT,
     resumed      INTEGER NOT NULL DEFAULT 0,
     created_at   TEXT NOT NULL,
     started_at   TEXT,
     finished_at  TEXT,
     worker       TEXT,
     attempt      INTEGER NOT NULL DEFAULT 0,
     trigger_key  TEXT NOT NULL DEFAULT 'merge'
   );
   INSERT INTO builds_v6 (seq, id, repository, sha, request, status, image, tags, digest, error, failed_stage, resumed, created_at, started_at, finished_at, worker, attempt)
     SELECT seq, id, repository, sha, request, status, image, tags, digest, error, failed_stage, resumed, created_at, started_at, finished_at, worker, attempt FROM builds;
   DROP TABLE builds;
   ALTER TABLE builds_v6 RENAME TO builds;
   CREATE INDEX builds_unfinished ON builds (status, repository, sha);`,
  // The engine a build ran on and each worker's (version, image store), as the engine describes itself.
  `ALTER TABLE builds ADD COLUMN engine TEXT;
   ALTER TABLE workers ADD COLUMN engine TEXT;`,
  // A pull request's unfinished builds, found by its trigger: every merged delivery asks (to cancel them), and
  // without this each ask read every unfinished build of the repository (measured: most of a merged ack's time
  // with 3,500 builds queued).
  `CREATE INDEX builds_unfinished_by_trigger ON builds (repository, trigger_key, status);`,
  // A multi-platform build's images (platform, digest, worker, how built, how long), and the platforms each worker
  // builds natively, which the build that runs a platform elsewhere asks.
  `ALTER TABLE builds ADD COLUMN platforms TEXT;
   ALTER TABLE workers ADD COLUMN native_platforms TEXT;`,
  // A commit's unfinished build, which every delivery asks for (to join it), found through an index of exactly
  // its key: the trigger index, which the planner chose, read every unfinished build of the repository
  // (measured: 0.64 ms of an admission with 3,500 waiting, 0.2 with this).
  `CREATE INDEX builds_unfinished_commit ON builds (repository, sha, trigger_key) WHERE status IN ('queued', 'running');`,
];

interface BuildRow {
  seq: number;
  id: string;
  request: string;
  status: BuildStatus;
  image: string | null;
  tags: string;
  digest: string | null;
  error: string | null;
  failed_stage: string | null;
  resumed: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  worker: string | null;
  engine: string | null;
  platforms: string | null;
  attempt: number;
  trigger_key: string;
}

/**
 * Builds and logs in one SQLite file under DATA_DIR (or ':memory:').
 * WAL mode: every statement is durable once it returns, through a crash of this process.
 */
export class SqliteBuildStore implements BuildStore {
  private readonly db: Database.Database;
  /** Compiled once: preparing a statement costs more than running it, and a delivery's ack waits for it. */
  private readonly sql;
  private readonly updates = new Map<string, Database.Statement>();
  private readonly checkpointer: WalCheckpointer | undefined;
  /**
   * Builds with status 'queued', counted once at open and then kept by `add` and `update`: counting rows
   * on every delivery cost it as much as the queue was long (bench/README.md).
   */
  private queued: number;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    // Checkpoints run on a thread of their own, not inside whichever commit fills 1,000 pages of WAL
    // (a delivery's ack waits for its commit). Should that thread fail, SQLite's own checkpoints take over.
    // They also stay as a backstop at 50,000 pages (200 MB): the WAL starts over only after a checkpoint no
    // write overlapped, and under writes without a pause for long enough it would otherwise keep growing.
    if (file !== ':memory:') {
      this.db.pragma(`wal_autocheckpoint = ${BACKSTOP_CHECKPOINT_PAGES}`);
      this.checkpointer = new WalCheckpointer(file, CHECKPOINT_EVERY_MS, () => this.db.open && this.db.pragma('wal_autocheckpoint = 1000'));
    }
    this.sql = {
      byDelivery: this.db.prepare<[string], BuildRow>('SELECT b.* FROM deliveries d JOIN builds b ON b.id = d.build_id WHERE d.delivery_id = ?'),
      unfinishedOfCommit: this.db.prepare<[string, string, string], BuildRow>(
        "SELECT * FROM builds WHERE repository = ? AND sha = ? AND trigger_key = ? AND status IN ('queued', 'running') ORDER BY seq LIMIT 1",
      ),
      unfinishedOfTrigger: this.db.prepare<[string, string], BuildRow>(
        "SELECT * FROM builds WHERE repository = ? AND trigger_key = ? AND status IN ('queued', 'running') ORDER BY seq",
      ),
      cancel: this.db.prepare(
        "UPDATE builds SET status = 'cancelled', error = ?, finished_at = ?, attempt = attempt + 1 WHERE id = ? AND status IN ('queued', 'running')",
      ),
      countQueued: this.db.prepare<[], { queued: number }>("SELECT count(*) AS queued FROM builds WHERE status = 'queued'"),
      countRunning: this.db.prepare<[], { running: number }>("SELECT count(*) AS running FROM builds WHERE status = 'running'"),
      recordWorker: this.db.prepare(
        'INSERT INTO workers (name, seen_at, engine, native_platforms) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at, engine = COALESCE(excluded.engine, workers.engine), native_platforms = COALESCE(excluded.native_platforms, workers.native_platforms)',
      ),
      workers: this.db.prepare<[], { name: string; seen_at: string; engine: string | null; native_platforms: string | null }>('SELECT name, seen_at, engine, native_platforms FROM workers ORDER BY name'),
      statusOf: this.db.prepare<[string], { status: BuildStatus }>('SELECT status FROM builds WHERE id = ?'),
      insertBuild: this.db.prepare('INSERT INTO builds (id, repository, sha, trigger_key, request, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      insertDelivery: this.db.prepare('INSERT INTO deliveries (delivery_id, build_id) VALUES (?, ?)'),
      byId: this.db.prepare<[string], BuildRow>('SELECT * FROM builds WHERE id = ?'),
      newest: this.db.prepare<[number], BuildRow>('SELECT * FROM builds ORDER BY seq DESC LIMIT ?'),
      lastPushed: this.db.prepare<[number, string], { image: string }>(
        "SELECT image FROM builds WHERE status = 'succeeded' AND digest IS NOT NULL AND substr(image, 1, ?) = ? ORDER BY seq DESC LIMIT 1",
      ),
      imageOwner: this.db.prepare<[string], { repository: string }>('SELECT repository FROM image_owners WHERE image = ?'),
      claimImage: this.db.prepare('INSERT INTO image_owners (image, repository, claimed_at) VALUES (?, ?, ?) ON CONFLICT (image) DO NOTHING'),
      unfinished: this.db.prepare<[], BuildRow>("SELECT * FROM builds WHERE status IN ('queued', 'running') ORDER BY seq"),
      appendLog: this.db.prepare('INSERT INTO build_logs (build_id, line) VALUES (?, ?)'),
      appendLogOfAttempt: this.db.prepare('INSERT INTO build_logs (build_id, line) SELECT id, ? FROM builds WHERE id = ? AND attempt = ?'),
      claim: this.db.prepare(
        "UPDATE builds SET status = 'running', attempt = attempt + 1, worker = ?, started_at = ?, resumed = CASE WHEN attempt > 0 THEN 1 ELSE resumed END WHERE id = ? AND status IN ('queued', 'running')",
      ),
      logLinesAfter: this.db.prepare<[string, number, number], { seq: number; line: string }>(
        'SELECT seq, line FROM build_logs WHERE build_id = ? AND seq > ? ORDER BY seq LIMIT ?',
      ),
    };
    this.queued = this.sql.countQueued.get()!.queued;
  }

  static inDataDir(dataDir: string): SqliteBuildStore {
    return new SqliteBuildStore(path.join(dataDir, 'ci_service.sqlite'));
  }

  async add(request: BuildRequest, createdAt: Date, maxQueued: number): Promise<AddOutcome> {
    // One transaction: concurrent copies of a delivery see each other's row, never a half of it.
    const outcome = this.db.transaction((): AddOutcome => {
      const seen = this.sql.byDelivery.get(request.deliveryId);
      if (seen) return { kind: 'redelivery', build: toRecord(seen) };

      const sameCommit = this.sql.unfinishedOfCommit.get(request.repository.fullName, request.sha, triggerKey(request.trigger));
      if (sameCommit) {
        this.sql.insertDelivery.run(request.deliveryId, sameCommit.id);
        return { kind: 'coalesced', build: toRecord(sameCommit) };
      }

      if (this.queued >= maxQueued) return { kind: 'queue_full', queued: this.queued };

      const id = randomUUID();
      this.sql.insertBuild.run(id, request.repository.fullName, request.sha, triggerKey(request.trigger), JSON.stringify(request), 'queued', createdAt.toISOString());
      this.sql.insertDelivery.run(request.deliveryId, id);
      return { kind: 'created', build: this.mustGet(id) };
    }).immediate();
    if (outcome.kind === 'created') this.queued += 1; // once committed
    return outcome;
  }

  async get(id: string): Promise<BuildRecord | undefined> {
    const row = this.sql.byId.get(id);
    return row && toRecord(row);
  }

  async list(limit: number): Promise<BuildRecord[]> {
    return this.sql.newest.all(limit).map(toRecord);
  }

  async lastPushedImage(repositoryRef: string): Promise<string | undefined> {
    const prefix = `${repositoryRef}:`;
    return this.sql.lastPushed.get(prefix.length, prefix)?.image;
  }

  async unfinished(): Promise<BuildRecord[]> {
    return this.sql.unfinished.all().map(toRecord);
  }

  async unfinishedOfTrigger(repository: string, key: string): Promise<BuildRecord[]> {
    return this.sql.unfinishedOfTrigger.all(repository, key).map(toRecord);
  }

  async cancel(id: string, reason: string, at: Date): Promise<BuildRecord | undefined> {
    const before = this.sql.statusOf.get(id)?.status;
    if (this.sql.cancel.run(reason, at.toISOString(), id).changes === 0) return undefined;
    if (before === 'queued') this.queued -= 1;
    return this.mustGet(id);
  }

  async claim(id: string, worker: string, startedAt: Date): Promise<BuildRecord | undefined> {
    const before = this.sql.statusOf.get(id)?.status;
    if (this.sql.claim.run(worker, startedAt.toISOString(), id).changes === 0) return undefined;
    if (before === 'queued') this.queued -= 1;
    return this.mustGet(id);
  }

  async update(id: string, changes: BuildChanges, attempt?: number): Promise<BuildRecord> {
    const entries = Object.entries(changes).filter(([, value]) => value !== undefined) as [keyof BuildChanges, unknown][];
    if (entries.length > 0) {
      const assignments = entries.map(([key]) => `${BUILD_COLUMNS[key]} = @${key}`).join(', ');
      const fenced = attempt !== undefined;
      const values = Object.fromEntries(entries.map(([key, value]) => [key, toColumn(value)]));
      const sql = `UPDATE builds SET ${assignments} WHERE id = @id${fenced ? ' AND attempt = @attempt' : ''}`;
      let statement = this.updates.get(sql);
      if (!statement) {
        statement = this.db.prepare(sql);
        this.updates.set(sql, statement);
      }
      const before = changes.status && this.sql.statusOf.get(id)?.status;
      const changed = statement.run({ ...values, id, ...(fenced ? { attempt } : {}) }).changes;
      if (fenced && changed === 0) throw new LostClaimError(id, attempt);
      if (before) this.queued += Number(changes.status === 'queued') - Number(before === 'queued');
    }
    return this.mustGet(id);
  }

  async appendLog(id: string, text: string, attempt?: number): Promise<void> {
    if (attempt === undefined) this.sql.appendLog.run(id, text);
    else if (this.sql.appendLogOfAttempt.run(text, id, attempt).changes === 0) throw new LostClaimError(id, attempt);
  }


  async readLogAfter(id: string, cursor: number, limit: number): Promise<{ lines: string[]; cursor: number } | undefined> {
    if (!this.sql.byId.get(id)) return undefined;
    const rows = this.sql.logLinesAfter.all(id, cursor, limit);
    return { lines: rows.map((row) => row.line), cursor: rows.at(-1)?.seq ?? cursor };
  }

  async imageOwner(repositoryRef: string): Promise<string | undefined> {
    return this.sql.imageOwner.get(repositoryRef)?.repository;
  }

  async claimImage(repositoryRef: string, repository: string): Promise<string> {
    this.sql.claimImage.run(repositoryRef, repository, new Date().toISOString());
    return this.sql.imageOwner.get(repositoryRef)!.repository;
  }

  async deleteFinishedBefore(cutoff: Date): Promise<number> {
    // Logs and delivery ids first: they refer to the build. One transaction: never half a build.
    return this.db.transaction(() => {
      const old = "SELECT id FROM builds WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?";
      const at = cutoff.toISOString();
      this.db.prepare(`DELETE FROM build_logs WHERE build_id IN (${old})`).run(at);
      this.db.prepare(`DELETE FROM deliveries WHERE build_id IN (${old})`).run(at);
      return this.db.prepare(`DELETE FROM builds WHERE id IN (${old})`).run(at).changes;
    })();
  }

  async counts(): Promise<{ queued: number; running: number }> {
    const running = this.sql.countRunning.get()!.running;
    return { queued: this.queued, running };
  }

  async recordWorker(name: string, seenAt: Date, engine?: string, nativePlatforms?: string[]): Promise<void> {
    this.sql.recordWorker.run(name, seenAt.toISOString(), engine ?? null, nativePlatforms ? JSON.stringify(nativePlatforms) : null);
  }

  async workers(): Promise<WorkerSeen[]> {
    return this.sql.workers.all().map((row) => ({
      name: row.name,
      seenAt: new Date(row.seen_at),
      ...(row.engine !== null ? { engine: row.engine } : {}),
      ...(row.native_platforms !== null ? { nativePlatforms: JSON.parse(row.native_platforms) as string[] } : {}),
    }));
  }

  async ping(): Promise<void> {
    this.sql.countQueued.get();
  }

  async close(): Promise<void> {
    await this.checkpointer?.stop();
    if (this.db.open) this.db.close();
  }

  private mustGet(id: string): BuildRecord {
    const row = this.sql.byId.get(id);
    if (!row) throw new Error(`no build ${id}`);
    return toRecord(row);
  }

  private migrate(): void {
    const applied = this.db.pragma('user_version', { simple: true }) as number;
    // A migration that copies a table drops the old one, which rows of other tables refer to: checked after.
    this.db.pragma('foreign_keys = OFF');
    for (let version = applied; version < MIGRATIONS.length; version += 1) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[version]!);
        const broken = this.db.pragma('foreign_key_check') as unknown[];
        if (broken.length > 0) throw new Error(`schema migration ${version + 1} broke ${broken.length} references between tables`);
        this.db.pragma(`user_version = ${version + 1}`);
      })();
    }
    this.db.pragma('foreign_keys = ON');
  }
}

function toColumn(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return JSON.stringify(value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  return value;
}

function toRecord(row: BuildRow): BuildRecord {
  return {
    id: row.id,
    seq: row.seq,
    request: storedRequest(JSON.parse(row.request) as BuildRequest),
    status: row.status,
    ...(row.image !== null ? { image: row.image } : {}),
    tags: JSON.parse(row.tags) as string[],
    ...(row.digest !== null ? { digest: row.digest } : {}),
    ...(row.error !== null ? { error: row.error } : {}),
    ...(row.failed_stage !== null ? { failedStage: row.failed_stage as FailureStage } : {}),
    resumed: row.resumed === 1,
    createdAt: new Date(row.created_at),
    ...(row.started_at !== null ? { startedAt: new Date(row.started_at) } : {}),
    ...(row.finished_at !== null ? { finishedAt: new Date(row.finished_at) } : {}),
    ...(row.worker !== null ? { worker: row.worker } : {}),
    ...(row.engine !== null ? { engine: row.engine } : {}),
    ...(row.platforms !== null ? { platforms: JSON.parse(row.platforms) as PlatformImage[] } : {}),
    attempt: row.attempt,
  };
}
