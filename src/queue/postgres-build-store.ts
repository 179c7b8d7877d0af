import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import type { BuildRecord, PlatformImage, BuildStatus } from '../domain/build-record.js';
import { storedRequest, triggerKey, type BuildRequest } from '../domain/build-request.js';
import type { FailureStage } from '../domain/errors.js';
import { BUILD_COLUMNS, LostClaimError, type AddOutcome, type BuildChanges, type BuildStore, type WorkerSeen } from './build-store.js';

/** Arbitrary, fixed keys of transaction-scoped advisory locks: one per kind of work that must not interleave. */
const MIGRATION_LOCK = 7_306_001;
const ADMISSION_LOCK = 7_306_002;

/** Schema versions, applied in order at start; `ci_service_schema` records how many ran. */
const MIGRATIONS = [
  `CREATE TABLE builds (
     seq          BIGSERIAL PRIMARY KEY,
     id           UUID NOT NULL UNIQUE,
     repository   TEXT NOT NULL,
     sha          TEXT NOT NULL,
     request      JSONB NOT NULL,
     status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
     image        TEXT,
     tags         JSONB NOT NULL DEFAULT '[]',
     digest       TEXT,
     error        TEXT,
     failed_stage TEXT,
     resumed      BOOLEAN NOT NULL DEFAULT false,
     created_at   TIMESTAMPTZ NOT NULL,
     started_at   TIMESTAMPTZ,
     finished_at  TIMESTAMPTZ
   );
   CREATE INDEX builds_unfinished ON builds (status, repository, sha);
   CREATE INDEX builds_by_image ON builds (image, seq) WHERE status = 'succeeded';
   CREATE TABLE deliveries (
     delivery_id TEXT PRIMARY KEY,
     build_id    UUID NOT NULL REFERENCES builds (id)
   );
   CREATE INDEX deliveries_by_build ON deliveries (build_id);
   CREATE TABLE build_logs (
     seq      BIGSERIAL PRIMARY KEY,
     build_id UUID NOT NULL REFERENCES builds (id),
     line     TEXT NOT NULL
   );
   CREATE INDEX build_logs_by_build ON build_logs (build_id, seq);
   CREATE TABLE image_owners (
     image      TEXT PRIMARY KEY,
     repository TEXT NOT NULL,
     claimed_at TIMESTAMPTZ NOT NULL
   );`,
  // Which worker ran a build (WORKER_NAME).
  `ALTER TABLE builds ADD COLUMN worker TEXT;`,
  // Runs started: a worker's writes hold only while its run is the current one.
  `ALTER TABLE builds ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;`,
  // The worker processes seen, for /metrics.
  `CREATE TABLE workers (name TEXT PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL);`,
  // Cancelled builds, and the trigger a build answers (a merge, a pull request, a release ref).
  `ALTER TABLE builds DROP CONSTRAINT builds_status_check;
   ALTER TABLE builds ADD CONSTRAINT builds_status_check CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled'));
   ALTER TABLE builds ADD COLUMN trigger_key TEXT NOT NULL DEFAULT 'merge';`,
  // The engine a build ran on and each worker's (version, image store), as the engine describes itself.
  `ALTER TABLE builds ADD COLUMN engine TEXT;
   ALTER TABLE workers ADD COLUMN engine TEXT;`,
  // A pull request's unfinished builds, found by its trigger: every merged delivery asks (to cancel them), and
  // without this each ask read every unfinished build of the repository (measured: most of a merged ack's time
  // with 3,500 builds queued).
  `CREATE INDEX builds_unfinished_by_trigger ON builds (repository, trigger_key, status);`,
  // A multi-platform build's images (platform, digest, worker, how built, how long), and the platforms each worker
  // builds natively, which the build that runs a platform elsewhere asks.
  `ALTER TABLE builds ADD COLUMN platforms JSONB;
   ALTER TABLE workers ADD COLUMN native_platforms JSONB;`,
  // Admission in one statement (ci_admit) where there were three, and no work that grows with the queue: the
  // builds waiting are counted as they change (queued_count), not by a count(*) of every queued build at each
  // admission (1.1 ms of database time with 3,500 waiting, measured). The count's triggers are deferred to the
  // commit, so its one row is locked only while a transaction commits: admissions do not queue on it for their
  // round trips, and no two transactions wait on each other for it (each has taken its row locks by then). A
  // commit's unfinished build is found through an index of exactly its key: the trigger index alone read every
  // unfinished build of the repository.
  `CREATE INDEX builds_unfinished_commit ON builds (repository, sha, trigger_key) WHERE status IN ('queued', 'running');
   CREATE TABLE queued_count (one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one), queued BIGINT NOT NULL);
   INSERT INTO queued_count (queued) SELECT count(*) FROM builds WHERE status = 'queued';
   CREATE FUNCTION ci_count_queued() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     UPDATE queued_count SET queued = queued
       + CASE WHEN TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'queued' THEN 1 ELSE 0 END
       - CASE WHEN TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'queued' THEN 1 ELSE 0 END;
     RETURN NULL;
   END $$;
   CREATE CONSTRAINT TRIGGER builds_count_inserted AFTER INSERT ON builds DEFERRABLE INITIALLY DEFERRED
     FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION ci_count_queued();
   CREATE CONSTRAINT TRIGGER builds_count_updated AFTER UPDATE OF status ON builds DEFERRABLE INITIALLY DEFERRED
     FOR EACH ROW WHEN ((OLD.status = 'queued') <> (NEW.status = 'queued')) EXECUTE FUNCTION ci_count_queued();
   CREATE CONSTRAINT TRIGGER builds_count_deleted AFTER DELETE ON builds DEFERRABLE INITIALLY DEFERRED
     FOR EACH ROW WHEN (OLD.status = 'queued') EXECUTE FUNCTION ci_count_queued();
   -- What PostgresBuildStore.add stores: this delivery's build (redelivery), the unfinished build of this commit and
   -- trigger it joins (coalesced), nothing when MAX_QUEUED_BUILDS wait (queue_full), else a new build (created).
   CREATE FUNCTION ci_admit(a_delivery TEXT, a_repository TEXT, a_sha TEXT, a_trigger TEXT, a_request JSONB, a_created TIMESTAMPTZ,
       a_id UUID, a_max_queued BIGINT, OUT outcome TEXT, OUT queued BIGINT, OUT build builds)
   LANGUAGE plpgsql AS $$
   BEGIN
     -- One commit at a time across every server: two copies of a delivery, or two merges of one commit, each see
     -- what the other committed.
     PERFORM pg_advisory_xact_lock(${ADMISSION_LOCK}, hashtext(a_repository || '@' || a_sha));
     SELECT b.* INTO build FROM deliveries d JOIN builds b ON b.id = d.build_id WHERE d.delivery_id = a_delivery;
     IF FOUND THEN outcome := 'redelivery'; RETURN; END IF;
     SELECT b.* INTO build FROM builds b
       WHERE b.repository = a_repository AND b.sha = a_sha AND b.trigger_key = a_trigger AND b.status IN ('queued', 'running')
       ORDER BY b.seq LIMIT 1;
     IF FOUND THEN
       INSERT INTO deliveries (delivery_id, build_id) VALUES (a_delivery, build.id);
       outcome := 'coalesced'; RETURN;
     END IF;
     SELECT c.queued INTO queued FROM queued_count c;
     IF queued >= a_max_queued THEN outcome := 'queue_full'; RETURN; END IF;
     INSERT INTO builds (id, repository, sha, trigger_key, request, status, created_at)
       VALUES (a_id, a_repository, a_sha, a_trigger, a_request, 'queued', a_created) RETURNING * INTO build;
     INSERT INTO deliveries (delivery_id, build_id) VALUES (a_delivery, a_id);
     outcome := 'created';
   END $$;`,
];

/**
 * Something to do in the transaction that stores a new build, through its connection (the shared queue's job: a
 * build is stored and queued, or neither). Its statements are prepared once per connection, as the store's are.
 */
export type AdmissionHook = (build: BuildRecord, transaction: { executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> }) => Promise<void>;

/** A name for a statement someone else writes (pg-boss's job), so that it is planned once per connection. */
function statementName(text: string): string {
  return `hook-${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
}

interface BuildRow {
  seq: string;
  id: string;
  request: BuildRequest;
  status: BuildStatus;
  image: string | null;
  tags: string[];
  digest: string | null;
  error: string | null;
  failed_stage: string | null;
  resumed: boolean;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  worker: string | null;
  engine: string | null;
  platforms: PlatformImage[] | null;
  attempt: number;
}

/**
 * Builds, logs, delivery ids and image owners in PostgreSQL (DATABASE_URL), shared by every ci_service process
 * that points at it. A statement is committed when its promise resolves: a delivery answered `202` is stored.
 */
export class PostgresBuildStore implements BuildStore {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly onAdmit: AdmissionHook | undefined,
  ) {}

  /**
   * Connects and brings the schema up to date (one process at a time: a lock held while migrating). `onAdmit`
   * runs inside the transaction that stores a new build: the shared queue's job is committed with it, or neither.
   */
  static async connect(url: string, onAdmit?: AdmissionHook): Promise<PostgresBuildStore> {
    const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 10_000 });
    // An idle connection the server closed (a restart) is an event, not a crash; the next query reconnects.
    pool.on('error', () => {});
    const store = new PostgresBuildStore(pool, onAdmit);
    try {
      await store.migrate();
    } catch (error) {
      await pool.end();
      throw error;
    }
    return store;
  }

  async add(request: BuildRequest, createdAt: Date, maxQueued: number): Promise<AddOutcome> {
    // MAX_QUEUED_BUILDS may be passed by as many builds as are admitted at that moment: each reads the count
    // before the others' commits. Three round trips and the queue's job, each statement planned once per
    // connection: the ack waits for them all (bench/README.md, "Acks by store").
    return this.transaction(async (client) => {
      const { rows } = await client.query<BuildRow & { outcome: AddOutcome['kind']; queued: string }>({
        name: 'admission',
        text: 'SELECT a.outcome, a.queued, (a.build).* FROM ci_admit($1, $2, $3, $4, $5, $6, $7, $8) a',
        values: [request.deliveryId, request.repository.fullName, request.sha, triggerKey(request.trigger), JSON.stringify(request), createdAt, randomUUID(), maxQueued],
      });
      const row = rows[0]!;
      if (row.outcome === 'queue_full') return { kind: 'queue_full', queued: Number(row.queued) };
      const build = toRecord(row);
      if (row.outcome === 'created') await this.onAdmit?.(build, { executeSql: (text, values) => client.query({ name: statementName(text), text, values }) });
      return { kind: row.outcome, build };
    });
  }

  async get(id: string): Promise<BuildRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const row = (await this.pool.query<BuildRow>('SELECT * FROM builds WHERE id = $1', [id])).rows[0];
    return row && toRecord(row);
  }

  async list(limit: number): Promise<BuildRecord[]> {
    return (await this.pool.query<BuildRow>('SELECT * FROM builds ORDER BY seq DESC LIMIT $1', [limit])).rows.map(toRecord);
  }

  async lastPushedImage(repositoryRef: string): Promise<string | undefined> {
    const prefix = `${repositoryRef}:`;
    const row = await this.pool.query<{ image: string }>(
      "SELECT image FROM builds WHERE status = 'succeeded' AND digest IS NOT NULL AND left(image, $1) = $2 ORDER BY seq DESC LIMIT 1",
      [prefix.length, prefix],
    );
    return row.rows[0]?.image;
  }

  async unfinished(): Promise<BuildRecord[]> {
    return (await this.pool.query<BuildRow>("SELECT * FROM builds WHERE status IN ('queued', 'running') ORDER BY seq")).rows.map(toRecord);
  }

  async unfinishedOfTrigger(repository: string, key: string): Promise<BuildRecord[]> {
    const { rows } = await this.pool.query<BuildRow>({
      name: 'unfinished-of-trigger',
      text: "SELECT * FROM builds WHERE repository = $1 AND trigger_key = $2 AND status IN ('queued', 'running') ORDER BY seq",
      values: [repository, key],
    });
    return rows.map(toRecord);
  }

  async cancel(id: string, reason: string, at: Date): Promise<BuildRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.pool.query<BuildRow>(
      "UPDATE builds SET status = 'cancelled', error = $2, finished_at = $3, attempt = attempt + 1 WHERE id = $1 AND status IN ('queued', 'running') RETURNING *",
      [id, reason, at],
    );
    return rows[0] && toRecord(rows[0]);
  }

  async claim(id: string, worker: string, startedAt: Date): Promise<BuildRecord | undefined> {
    const row = await this.pool.query<BuildRow>(
      `UPDATE builds SET status = 'running', attempt = attempt + 1, worker = $2, started_at = $3, resumed = (resumed OR attempt > 0)
       WHERE id = $1 AND status IN ('queued', 'running') RETURNING *`,
      [id, worker, startedAt],
    );
    return row.rows[0] && toRecord(row.rows[0]);
  }

  async update(id: string, changes: BuildChanges, attempt?: number): Promise<BuildRecord> {
    const entries = Object.entries(changes).filter(([, value]) => value !== undefined) as [keyof BuildChanges, unknown][];
    const assignments = entries.map(([key], index) => `${BUILD_COLUMNS[key]} = $${index + 3}`);
    const values = entries.map(([, value]) => (Array.isArray(value) ? JSON.stringify(value) : value));
    const fence = attempt !== undefined ? ' AND attempt = $2' : ' AND $2::int IS NULL';
    const sql = assignments.length > 0 ? `UPDATE builds SET ${assignments.join(', ')} WHERE id = $1${fence} RETURNING *` : `SELECT * FROM builds WHERE id = $1${fence}`;
    const row = (await this.pool.query<BuildRow>(sql, [id, attempt ?? null, ...values])).rows[0];
    if (!row && attempt !== undefined) throw new LostClaimError(id, attempt);
    if (!row) throw new Error(`no build ${id}`);
    return toRecord(row);
  }

  async appendLog(id: string, text: string, attempt?: number): Promise<void> {
    if (attempt === undefined) {
      await this.pool.query('INSERT INTO build_logs (build_id, line) VALUES ($1, $2)', [id, text]);
      return;
    }
    const inserted = await this.pool.query('INSERT INTO build_logs (build_id, line) SELECT id, $2 FROM builds WHERE id = $1 AND attempt = $3', [id, text, attempt]);
    if (inserted.rowCount === 0) throw new LostClaimError(id, attempt);
  }

  async readLogAfter(id: string, cursor: number, limit: number): Promise<{ lines: string[]; cursor: number } | undefined> {
    if (!(await this.get(id))) return undefined;
    const rows = (await this.pool.query<{ seq: string; line: string }>('SELECT seq, line FROM build_logs WHERE build_id = $1 AND seq > $2 ORDER BY seq LIMIT $3', [id, cursor, limit])).rows;
    return { lines: rows.map((row) => row.line), cursor: rows.length > 0 ? Number(rows.at(-1)!.seq) : cursor };
  }

  async imageOwner(repositoryRef: string): Promise<string | undefined> {
    return (await this.pool.query<{ repository: string }>('SELECT repository FROM image_owners WHERE image = $1', [repositoryRef])).rows[0]?.repository;
  }

  async claimImage(repositoryRef: string, repository: string): Promise<string> {
    await this.pool.query('INSERT INTO image_owners (image, repository, claimed_at) VALUES ($1, $2, now()) ON CONFLICT (image) DO NOTHING', [repositoryRef, repository]);
    return (await this.imageOwner(repositoryRef))!;
  }

  async deleteFinishedBefore(cutoff: Date): Promise<number> {
    return this.transaction(async (client) => {
      const old = "SELECT id FROM builds WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < $1";
      await client.query(`DELETE FROM build_logs WHERE build_id IN (${old})`, [cutoff]);
      await client.query(`DELETE FROM deliveries WHERE build_id IN (${old})`, [cutoff]);
      return (await client.query(`DELETE FROM builds WHERE id IN (${old})`, [cutoff])).rowCount ?? 0;
    });
  }

  async counts(): Promise<{ queued: number; running: number }> {
    const { rows } = await this.pool.query<{ status: string; count: string }>("SELECT status, count(*) AS count FROM builds WHERE status IN ('queued', 'running') GROUP BY status");
    const of = (status: string) => Number(rows.find((row) => row.status === status)?.count ?? 0);
    return { queued: of('queued'), running: of('running') };
  }

  async recordWorker(name: string, seenAt: Date, engine?: string, nativePlatforms?: string[]): Promise<void> {
    await this.pool.query(
      'INSERT INTO workers (name, seen_at, engine, native_platforms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at, engine = COALESCE(excluded.engine, workers.engine), native_platforms = COALESCE(excluded.native_platforms, workers.native_platforms)',
      [name, seenAt, engine ?? null, nativePlatforms ? JSON.stringify(nativePlatforms) : null],
    );
  }

  async workers(): Promise<WorkerSeen[]> {
    const { rows } = await this.pool.query<{ name: string; seen_at: Date; engine: string | null; native_platforms: string[] | null }>('SELECT name, seen_at, engine, native_platforms FROM workers ORDER BY name');
    return rows.map((row) => ({
      name: row.name,
      seenAt: row.seen_at,
      ...(row.engine !== null ? { engine: row.engine } : {}),
      ...(row.native_platforms !== null ? { nativePlatforms: row.native_platforms } : {}),
    }));
  }

  /** Answers when the database does: for /healthz. */
  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async migrate(): Promise<void> {
    await this.transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query('CREATE TABLE IF NOT EXISTS ci_service_schema (version INTEGER NOT NULL)');
      const current = (await client.query<{ version: number }>('SELECT version FROM ci_service_schema')).rows[0];
      if (!current) await client.query('INSERT INTO ci_service_schema (version) VALUES (0)');
      const applied = current?.version ?? 0;
      if (applied > MIGRATIONS.length) {
        throw new Error(`the database at DATABASE_URL has schema version ${applied}, newer than this ci_service knows (${MIGRATIONS.length}): upgrade ci_service`);
      }
      for (let version = applied; version < MIGRATIONS.length; version += 1) {
        await client.query(MIGRATIONS[version]!);
        await client.query('UPDATE ci_service_schema SET version = $1', [version + 1]);
      }
    });
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let failed = false;
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      failed = true;
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      // After a failure the connection may be the broken one (a server restart): it is closed, not reused.
      client.release(failed);
    }
  }
}

function isUuid(id: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id);
}

function toRecord(row: BuildRow): BuildRecord {
  return {
    id: row.id,
    seq: Number(row.seq),
    request: storedRequest(row.request),
    status: row.status,
    ...(row.image !== null ? { image: row.image } : {}),
    tags: row.tags,
    ...(row.digest !== null ? { digest: row.digest } : {}),
    ...(row.error !== null ? { error: row.error } : {}),
    ...(row.failed_stage !== null ? { failedStage: row.failed_stage as FailureStage } : {}),
    resumed: row.resumed,
    createdAt: row.created_at,
    ...(row.started_at !== null ? { startedAt: row.started_at } : {}),
    ...(row.finished_at !== null ? { finishedAt: row.finished_at } : {}),
    ...(row.worker !== null ? { worker: row.worker } : {}),
    ...(row.engine !== null ? { engine: row.engine } : {}),
    ...(row.platforms !== null ? { platforms: row.platforms } : {}),
    attempt: row.attempt,
  };
}
