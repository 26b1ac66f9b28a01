import { copyFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { rebuildAggregates } from '../../lib/app/aggregation';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';
import { DEFAULT_MIGRATIONS_DIR, migrate } from '../../lib/db/migrate';
import type { ClosableDb, Db } from '../../lib/db/port';
import { createPostgresDb } from '../../lib/db/postgres';
import { insertEvents, type NewEvent } from '../../lib/repositories/events';
import { upsertMetrics } from '../../lib/repositories/metrics';
import { adminUrl, urlOf } from '../support/database';
import { tuning } from '../support/env';
import { createTimescalePglite } from '../support/pglite';
import { contractViolations, oracleHours, storedHours } from '../aggregation/oracle';

/**
 * Migration 0010 on a populated database, on both backends: a schema at 0009 with rows in every table
 * the migration changes, migrated in place. Every row is still there, now in the account 'default';
 * the keys lead with account_id; the aggregator works on the migrated rows; and a second account can
 * reuse the same Klaviyo ids.
 */

/** The migrations up to and including `last`, in a folder of their own. */
function migrationsThrough(last: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'migrations-0010-'));
  for (const name of readdirSync(DEFAULT_MIGRATIONS_DIR)) {
    if (Number(name.slice(0, 4)) <= last) copyFileSync(join(DEFAULT_MIGRATIONS_DIR, name), join(dir, name));
  }
  return dir;
}

const TABLES = [
  'klaviyo_metrics',
  'klaviyo_profiles',
  'klaviyo_events',
  'klaviyo_aggregated_metrics',
  'klaviyo_aggregate_dirty',
  'klaviyo_aggregate_pending',
  'klaviyo_profile_hours',
  'klaviyo_dimension_rollups',
  'klaviyo_dimension_daily_rollups',
  'klaviyo_dimension_fallbacks',
  'klaviyo_aggregate_adjustments',
] as const;

const HOUR = 3_600_000;

/** Rows in every table, written as the 0009 schema takes them (no account column yet). */
async function populateAt0009(db: Db, base: number): Promise<void> {
  await db.query(`INSERT INTO klaviyo_metrics (id, name) VALUES ('m1', 'Placed Order'), ('m2', 'Opened Email')`);
  await db.query(`INSERT INTO klaviyo_profiles (id, email) VALUES ('p1', 'a@example.com'), ('p2', NULL), ('p3', NULL)`);
  const events: string[] = [];
  for (let i = 0; i < 60; i += 1) {
    const at = new Date(base + (i % 12) * HOUR + i * 1000).toISOString();
    events.push(
      `('e${i}', '${at}', '${i % 3 === 0 ? 'm2' : 'm1'}', ${i % 7 === 0 ? 'NULL' : `'p${(i % 3) + 1}'`}, ${i % 5 === 0 ? 'NULL' : `${i}.25`},
        '{"$flow": "f${i % 2}"}'::jsonb, '{"type": "event"}'::jsonb)`,
    );
  }
  await db.query(
    `INSERT INTO klaviyo_events (id, "timestamp", metric_id, profile_id, value, properties, raw_data) VALUES ${events.join(', ')}`,
  );
  // Rollups as an earlier run left them (deliberately stale: the rebuild after the migration repairs them),
  // marks and pending rows of an ingest not yet aggregated, and the aggregator's other tables.
  const hour = new Date(base).toISOString();
  await db.query(
    `INSERT INTO klaviyo_aggregated_metrics (metric_id, granularity, bucket, event_count, sum_value, unique_profiles)
     VALUES ('m1', 'hour', '${hour}', 1, 1, 1)`,
  );
  await db.query(`INSERT INTO klaviyo_aggregate_dirty (metric_id, bucket) VALUES ('m1', '${hour}'), ('m2', '${hour}')`);
  await db.query(
    `INSERT INTO klaviyo_aggregate_pending (metric_id, bucket, event_id, "timestamp", profile_id, value)
     VALUES ('m1', '${hour}', 'e1', '${new Date(base + 1000).toISOString()}', 'p2', 1.25)`,
  );
  await db.query(`INSERT INTO klaviyo_profile_hours (metric_id, profile_id, bucket) VALUES ('m1', 'p2', '${hour}')`);
  await db.query(
    `INSERT INTO klaviyo_dimension_rollups (metric_id, dimension, bucket, dimension_value, event_count, sum_value)
     VALUES ('m1', '$flow', '${hour}', 'f1', 1, 1.25)`,
  );
  await db.query(
    `INSERT INTO klaviyo_dimension_daily_rollups (metric_id, dimension, day, dimension_value, event_count, sum_value)
     VALUES ('m1', '$flow', date_trunc('day', '${hour}'::timestamptz, 'UTC'), 'f1', 1, 1.25)`,
  );
  await db.query(
    `INSERT INTO klaviyo_dimension_fallbacks (metric_id, dimension, reason, bucket, distinct_values)
     VALUES ('m2', 'URL', 'cardinality', '${hour}', 5000)`,
  );
  await db.query(
    `INSERT INTO klaviyo_aggregate_adjustments (metric_id, bucket, new_profiles, lookbacks)
     VALUES ('m9', '${hour}', 0, '{0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0}')`,
  );
}

/** Each table's rows as text (without the account column), to compare before and after. */
async function contents(db: Db): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const table of TABLES) {
    const rows = await db.query<{ row: string }>(
      // Without what migrations after 0010 add: 0012, the pending rows' carried dimension values; 0014,
      // the totals' rows under the pseudo-key "" (checked on their own in checkMigrated).
      `SELECT (to_jsonb(t) - 'account_id' - 'dimension_values' - 'dimension_generation')::text AS row FROM ${table} t
        WHERE coalesce(to_jsonb(t)->>'dimension', '-') <> '' ORDER BY 1`,
    );
    out[table] = rows.map((r) => r.row);
  }
  return out;
}

async function checkMigrated(db: Db, before: Record<string, string[]>): Promise<void> {
  expect(await contents(db)).toEqual(before);
  // Migration 0014 fills the totals' rows from the hourly rollups, hourly and daily.
  const totals = await db.query<Record<string, string>>(
    `SELECT metric_id, bucket::text, event_count::text, sum_value::text FROM klaviyo_dimension_rollups
      WHERE dimension = '' AND dimension_value = '' ORDER BY 1, 2`,
  );
  expect(totals).toEqual(
    await db.query(
      `SELECT metric_id, bucket::text, event_count::text, sum_value::text FROM klaviyo_aggregated_metrics
        WHERE granularity = 'hour' AND event_count > 0 ORDER BY 1, 2`,
    ),
  );
  expect(totals).toHaveLength(1);
  expect(
    await db.query(
      `SELECT metric_id, day::text, event_count::text, sum_value::text FROM klaviyo_dimension_daily_rollups
        WHERE dimension = '' ORDER BY 1, 2`,
    ),
  ).toEqual(
    await db.query(
      `SELECT metric_id, date_trunc('day', bucket, 'UTC')::text AS day, sum(event_count)::text AS event_count,
              sum(sum_value)::text AS sum_value
         FROM klaviyo_aggregated_metrics WHERE granularity = 'hour' AND event_count > 0 GROUP BY 1, 2 ORDER BY 1, 2`,
    ),
  );
  for (const table of TABLES) {
    const accounts = await db.query<{ account_id: string; n: string }>(
      `SELECT account_id, count(*) AS n FROM ${table} GROUP BY 1`,
    );
    expect(accounts.map((a) => a.account_id)).toEqual(before[table]?.length ? [DEFAULT_ACCOUNT_ID] : []);
  }
  // Every key, unique constraint, foreign key and index of these tables leads with account_id; the only
  // exceptions are the time indexes TimescaleDB makes for each hypertable itself.
  const leading = await db.query<{ table_name: string; index_name: string; first_column: string }>(
    `SELECT c.relname AS table_name, i.relname AS index_name, a.attname AS first_column
       FROM pg_index x
       JOIN pg_class c ON c.oid = x.indrelid
       JOIN pg_class i ON i.oid = x.indexrelid
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
      WHERE c.relname = ANY($1::text[])
        AND i.relname NOT IN ('klaviyo_events_timestamp_idx', 'klaviyo_aggregated_metrics_bucket_idx',
                              'klaviyo_dimension_rollups_bucket_idx', 'klaviyo_dimension_daily_rollups_day_idx')`,
    [`{${TABLES.join(',')}}`],
  );
  expect(leading.length).toBeGreaterThanOrEqual(TABLES.length);
  expect(leading.filter((l) => l.first_column !== 'account_id')).toEqual([]);
  const foreignKeys = await db.query<{ definition: string }>(
    `SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint
      WHERE contype = 'f' AND conrelid = ANY(ARRAY['klaviyo_events', 'klaviyo_aggregated_metrics']::regclass[])
      ORDER BY 1`,
  );
  // The rollups' key; migration 0012 drops the events' two (docs/bookkeeping.md).
  expect(foreignKeys.map((f) => f.definition)).toEqual([
    'FOREIGN KEY (account_id, metric_id) REFERENCES klaviyo_metrics(account_id, id)',
  ]);
  const accounts = await db.query<{ account_id: string }>('SELECT account_id FROM klaviyo_accounts');
  expect(accounts).toEqual([{ account_id: DEFAULT_ACCOUNT_ID }]);

  // No default is left: a writer that forgets the account fails instead of writing into 'default'.
  await expect(db.query(`INSERT INTO klaviyo_metrics (id, name) VALUES ('m3', 'x')`)).rejects.toMatchObject({
    code: '23502',
  });
  // That an event names a stored metric and profile of its own account is no longer a foreign key
  // after migration 0012 but the ingest transaction's guarantee: tests/aggregation/bookkeeping.test.ts.
}

/** The migrated rows serve the aggregator, and a second account reuses the same ids beside them. */
async function checkUsable(db: Db, base: number): Promise<void> {
  await db.query('DELETE FROM klaviyo_aggregate_adjustments');
  await rebuildAggregates(db, DEFAULT_ACCOUNT_ID);
  expect(await contractViolations(db)).toEqual([]);
  expect(await storedHours(db)).toEqual(await oracleHours(db));

  const other = 'acme';
  await upsertMetrics(db, other, [{ id: 'm1', isStub: true }]);
  const event: NewEvent = {
    id: 'e1',
    // The 'default' account's e1 (populateAt0009): the same id and time.
    timestamp: new Date(base + HOUR + 1000).toISOString(),
    metricId: 'm1',
    profileId: null,
    value: '1000',
    valueCurrency: null,
    uuid: null,
    uniqueId: null,
    properties: {},
    rawData: { type: 'event', id: 'e1' },
  };
  expect(await db.transaction((tx) => insertEvents(tx, other, [event]))).toEqual({ inserted: 1, duplicates: 0 });
  expect(await db.transaction((tx) => insertEvents(tx, DEFAULT_ACCOUNT_ID, [event]))).toEqual({
    inserted: 0,
    duplicates: 1,
  });
  await rebuildAggregates(db, other);
  expect(await storedHours(db, other)).toEqual(await oracleHours(db, other));
  expect(await storedHours(db)).toEqual(await oracleHours(db));
  expect((await storedHours(db, other)).map((h) => h.sum_value)).toEqual(['1000']);
}

describe('migration 0010 (accounts) on a populated database', () => {
  const base = Date.UTC(2024, 4, 1);

  it('plain PostgreSQL: keeps every row, in the account "default", with keys led by account_id', async () => {
    const name = `m_${randomBytes(6).toString('hex')}`;
    const admin = postgres(adminUrl(), { max: 1, onnotice: () => undefined });
    await admin.unsafe(`CREATE DATABASE ${name}`);
    let db: ClosableDb | undefined;
    try {
      db = createPostgresDb({ url: urlOf(name), ...tuning });
      await migrate(db, migrationsThrough(9));
      await populateAt0009(db, base);
      const before = await contents(db);
      const result = await migrate(db);
      expect(result.applied).toContain('0010_accounts.sql');
      await checkMigrated(db, before);
      await checkUsable(db, base);
    } finally {
      await db?.close();
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end({ timeout: 5 });
    }
  }, 120_000);

  it('TimescaleDB: also with compressed chunks; compression comes back segmented by account first', async () => {
    const db = await createTimescalePglite();
    try {
      await migrate(db, migrationsThrough(9));
      // Old enough for the compression policy (60 days), so the migration meets compressed chunks.
      const old = Date.now() - 200 * 86_400_000;
      const start = Math.floor(old / HOUR) * HOUR;
      await populateAt0009(db, start);
      const [job] = await db.query<{ job_id: number }>(
        `SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' AND hypertable_name = 'klaviyo_events'`,
      );
      await db.query(`CALL run_job(${Number(job?.job_id)})`);
      const compressed = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM timescaledb_information.chunks WHERE hypertable_name = 'klaviyo_events' AND is_compressed`,
      );
      expect(Number(compressed[0]?.n)).toBeGreaterThan(0);
      const before = await contents(db);

      await migrate(db);
      await checkMigrated(db, before);
      const settings = await db.query<{ hypertable_name: string; attname: string; segmentby_column_index: number }>(
        `SELECT hypertable_name, attname, segmentby_column_index FROM timescaledb_information.compression_settings
          WHERE segmentby_column_index = 1 ORDER BY hypertable_name`,
      );
      expect(settings.map((s) => [s.hypertable_name, s.attname])).toEqual([
        ['klaviyo_aggregated_metrics', 'account_id'],
        ['klaviyo_dimension_daily_rollups', 'account_id'],
        ['klaviyo_dimension_profiles', 'account_id'],
        ['klaviyo_dimension_rollups', 'account_id'],
        ['klaviyo_dimension_zone_daily_rollups', 'account_id'],
        ['klaviyo_events', 'account_id'],
      ]);
      const policies = await db.query<{ hypertable_name: string }>(
        `SELECT hypertable_name FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' ORDER BY 1`,
      );
      expect(policies).toHaveLength(6);
      await checkUsable(db, start);
      // The policy compresses the migrated chunks again, and the rows stay as they were.
      const after = await contents(db);
      const [again] = await db.query<{ job_id: number }>(
        `SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' AND hypertable_name = 'klaviyo_events'`,
      );
      await db.query(`CALL run_job(${Number(again?.job_id)})`);
      const recompressed = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM timescaledb_information.chunks WHERE hypertable_name = 'klaviyo_events' AND is_compressed`,
      );
      expect(Number(recompressed[0]?.n)).toBeGreaterThan(0);
      expect(await contents(db)).toEqual(after);
    } finally {
      await db.close();
    }
  }, 180_000);
});
