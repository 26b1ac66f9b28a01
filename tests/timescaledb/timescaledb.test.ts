import { databaseMode, migrate, readMigrations } from '../../lib/db/migrate';
import type { ClosableDb } from '../../lib/db/port';
import { insertEvents, type NewEvent } from '../../lib/repositories/events';
import { createTimescalePglite } from '../support/pglite';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * The TimescaleDB branch of the migrations and the write path, on PGlite + TimescaleDB 2.23 (WASM).
 * Plain PostgreSQL runs the other branch in every other test file.
 */
const DAY = 86_400_000;

function event(id: string, at: Date, metricId = 'm1', profileId = 'p1', value: string | null = '1'): NewEvent {
  const timestamp = at.toISOString();
  return {
    id,
    timestamp,
    metricId,
    profileId,
    value,
    valueCurrency: null,
    uuid: null,
    uniqueId: null,
    properties: { $value: value },
    rawData: { type: 'event', id, attributes: { datetime: timestamp } },
  };
}

describe('TimescaleDB branch (PGlite + TimescaleDB)', () => {
  let db: ClosableDb;
  beforeAll(async () => {
    db = await createTimescalePglite();
  }, 120_000);
  afterAll(async () => {
    await db?.close();
  });

  it('migrates with the real runner and reports TimescaleDB mode', async () => {
    const result = await migrate(db);
    expect(result.applied).toEqual(readMigrations().map((f) => f.name));
    expect(result.mode).toBe('timescaledb');
    expect(await databaseMode(db)).toBe('timescaledb');
  });

  it('makes events and rollups hypertables with compression enabled and a policy each', async () => {
    const hypertables = await db.query<{ hypertable_name: string; compression_enabled: boolean }>(
      `SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables ORDER BY hypertable_name`,
    );
    expect(hypertables).toEqual([
      { hypertable_name: 'klaviyo_aggregated_metrics', compression_enabled: true },
      { hypertable_name: 'klaviyo_dimension_daily_rollups', compression_enabled: true },
      { hypertable_name: 'klaviyo_dimension_profiles', compression_enabled: true },
      { hypertable_name: 'klaviyo_dimension_rollups', compression_enabled: true },
      { hypertable_name: 'klaviyo_dimension_zone_daily_rollups', compression_enabled: true },
      { hypertable_name: 'klaviyo_events', compression_enabled: true },
    ]);
    const dims = await db.query<{ hypertable_name: string; column_name: string; days: number }>(
      `SELECT hypertable_name, column_name, (extract(epoch FROM time_interval) / 86400)::int AS days
       FROM timescaledb_information.dimensions ORDER BY hypertable_name`,
    );
    expect(dims).toEqual([
      { hypertable_name: 'klaviyo_aggregated_metrics', column_name: 'bucket', days: 90 },
      { hypertable_name: 'klaviyo_dimension_daily_rollups', column_name: 'day', days: 365 },
      { hypertable_name: 'klaviyo_dimension_profiles', column_name: 'bucket', days: 90 },
      { hypertable_name: 'klaviyo_dimension_rollups', column_name: 'bucket', days: 90 },
      { hypertable_name: 'klaviyo_dimension_zone_daily_rollups', column_name: 'day', days: 365 },
      { hypertable_name: 'klaviyo_events', column_name: 'timestamp', days: 7 },
    ]);
    const policies = await db.query<{ hypertable_name: string; compress_after: string }>(
      `SELECT hypertable_name, config->>'compress_after' AS compress_after FROM timescaledb_information.jobs
       WHERE proc_name = 'policy_compression' ORDER BY hypertable_name`,
    );
    expect(policies).toEqual([
      { hypertable_name: 'klaviyo_aggregated_metrics', compress_after: '400 days' },
      { hypertable_name: 'klaviyo_dimension_daily_rollups', compress_after: '400 days' },
      { hypertable_name: 'klaviyo_dimension_profiles', compress_after: '400 days' },
      { hypertable_name: 'klaviyo_dimension_rollups', compress_after: '400 days' },
      { hypertable_name: 'klaviyo_dimension_zone_daily_rollups', compress_after: '400 days' },
      { hypertable_name: 'klaviyo_events', compress_after: '60 days' },
    ]);
  });

  it('inserts idempotently across chunks, also into chunks the policy has compressed', async () => {
    await db.query(`INSERT INTO klaviyo_metrics (account_id, id, name) VALUES ('default', 'm1', 'Placed Order')`);
    await db.query(`INSERT INTO klaviyo_profiles (account_id, id) VALUES ('default', 'p1'), ('default', 'p2')`);
    const now = Date.now();
    const old = [0, 1, 2, 3].map((i) => event(`old${i}`, new Date(now - (100 + i * 8) * DAY)));
    const recent = [event('new1', new Date(now - DAY)), event('new2', new Date(now - 2 * DAY), 'm1', 'p2', '2.5')];
    expect(await insertEvents(db, DEFAULT_ACCOUNT_ID, [...old, ...recent])).toEqual({ inserted: 6, duplicates: 0 });
    const chunks = await db.query<{ n: string }>(`SELECT count(*) AS n FROM show_chunks('klaviyo_events')`);
    expect(Number(chunks[0]?.n)).toBeGreaterThanOrEqual(5);

    // Background jobs do not run by themselves here: run the compression policy by hand.
    const [job] = await db.query<{ job_id: number }>(
      `SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' AND hypertable_name = 'klaviyo_events'`,
    );
    await db.query(`CALL run_job(${Number(job?.job_id)})`);
    const compressed = await db.query<{ n: string }>(
      `SELECT count(*) AS n FROM timescaledb_information.chunks WHERE hypertable_name = 'klaviyo_events' AND is_compressed`,
    );
    expect(Number(compressed[0]?.n)).toBe(4);

    // Re-delivery into compressed chunks is still recognised; a late new event still lands.
    const late = event('late1', new Date(now - 101 * DAY), 'm1', 'p2', '7');
    expect(await insertEvents(db, DEFAULT_ACCOUNT_ID, [...old, late])).toEqual({ inserted: 1, duplicates: 4 });
    const [totals] = await db.query<{ n: string; total: string }>(
      `SELECT count(*) AS n, sum(value) AS total FROM klaviyo_events`,
    );
    expect(totals).toEqual({ n: '7', total: '14.5' });
  });

  it('marks the UTC hour of every inserted event dirty', async () => {
    const rows = await db.query<{ n: string }>(
      `SELECT count(*) AS n FROM klaviyo_aggregate_dirty d
       WHERE EXISTS (SELECT 1 FROM klaviyo_events e WHERE e.metric_id = d.metric_id
                     AND date_trunc('hour', e."timestamp", 'UTC') = d.bucket)`,
    );
    const expected = await db.query<{ n: string }>(
      `SELECT count(DISTINCT (metric_id, date_trunc('hour', "timestamp", 'UTC'))) AS n FROM klaviyo_events`,
    );
    expect(rows[0]?.n).toBe(expected[0]?.n);
  });
});
