import { backfillDimensions, rebuildAggregates, runAggregation } from '../../lib/app/aggregation';
import { migrate } from '../../lib/db/migrate';
import type { ClosableDb } from '../../lib/db/port';
import { readHourlySeries } from '../../lib/repositories/aggregates';
import { storeEvents } from '../support/events';
import { createTimescalePglite } from '../support/pglite';
import {
  dailyDimensionViolations,
  dimensionContractViolations,
  dimensionProfileViolations,
  dirtyCount,
  oracleHours,
  randomEvents,
  rollupChecksum,
  storedHours,
} from './oracle';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * The same aggregator on the TimescaleDB branch (PGlite + TimescaleDB): events and rollups are
 * hypertables, and late events and their rollups may live in compressed chunks. One mechanism on both
 * databases, the same oracle. (Concurrency is tested on the real server: PGlite has one connection.)
 */
const DAY = 86_400_000;
const options = { batchBuckets: 40, timeBudgetMs: 60_000 };

async function runCompression(db: ClosableDb, table: string): Promise<number> {
  const [job] = await db.query<{ job_id: number }>(
    `SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' AND hypertable_name = $1`,
    [table],
  );
  await db.query(`CALL run_job(${Number(job?.job_id)})`);
  const [compressed] = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM timescaledb_information.chunks WHERE hypertable_name = $1 AND is_compressed`,
    [table],
  );
  return Number(compressed?.n);
}

describe('aggregation on TimescaleDB (PGlite)', () => {
  let db: ClosableDb;
  const now = Date.now();
  const oldStart = new Date(now - 500 * DAY);
  const hourOf = (d: Date) => new Date(Math.floor(d.getTime() / 3_600_000) * 3_600_000);

  beforeAll(async () => {
    db = await createTimescalePglite();
    expect((await migrate(db)).mode).toBe('timescaledb');
  }, 120_000);
  afterAll(async () => {
    await db?.close();
  });

  it('rolls up a year and a half of events exactly', async () => {
    await storeEvents(
      db,
      randomEvents(31, {
        count: 1200,
        from: oldStart.toISOString(),
        hours: 500 * 24,
        metrics: ['m1', 'm2'],
        profiles: 40,
        idPrefix: 'ts',
      }),
    );
    expect(await runAggregation(db, DEFAULT_ACCOUNT_ID, options)).toMatchObject({
      status: 'done',
      eventsScanned: 1200,
      bucketsWaiting: 0,
    });
    expect(await dirtyCount(db)).toBe(0);
    expect(await storedHours(db)).toEqual(await oracleHours(db));
  });

  it('late events into compressed event chunks and compressed rollup chunks end in the right hours', async () => {
    expect(await runCompression(db, 'klaviyo_events')).toBeGreaterThan(0);
    expect(await runCompression(db, 'klaviyo_aggregated_metrics')).toBeGreaterThan(0);
    const [first] = await db.query<{ bucket: Date }>(
      `SELECT min(bucket) AS bucket FROM klaviyo_aggregated_metrics WHERE metric_id = 'm1'`,
    );
    const oldHour = (first as { bucket: Date }).bucket;
    // A profile already counted in that hour: the probe for new profiles reads a compressed chunk.
    const [known] = await db.query<{ profile_id: string }>(
      `SELECT profile_id FROM klaviyo_events WHERE metric_id = 'm1' AND profile_id IS NOT NULL
         AND "timestamp" >= $1::timestamptz AND "timestamp" < $1::timestamptz + interval '1 hour' LIMIT 1`,
      [oldHour.toISOString()],
    );
    expect(known).toBeDefined();
    await storeEvents(db, [
      {
        id: 'late_old',
        metricId: 'm1',
        profileId: 'p_late',
        at: new Date(oldHour.getTime() + 59 * 60_000),
        value: '12.34',
      },
      {
        id: 'late_known',
        metricId: 'm1',
        profileId: known?.profile_id,
        at: new Date(oldHour.getTime() + 58 * 60_000),
        value: '0',
      },
      { id: 'late_mid', metricId: 'm2', profileId: null, at: new Date(now - 200 * DAY), value: null },
    ]);
    // Added from the pending rows: only the three new events read.
    expect(await runAggregation(db, DEFAULT_ACCOUNT_ID, options)).toMatchObject({
      bucketsRecomputed: 2,
      bucketsFromRaw: 0,
      eventsScanned: 3,
    });
    expect(await storedHours(db)).toEqual(await oracleHours(db));
    const series = await readHourlySeries(db, DEFAULT_ACCOUNT_ID, {
      metricId: 'm1',
      from: oldHour,
      to: new Date(oldHour.getTime() + 3_600_000),
    });
    const expected = (await oracleHours(db)).find(
      (r) => r.metric_id === 'm1' && r.bucket === oldHour.toISOString().replace('.000Z', 'Z'),
    );
    expect(series).toEqual([
      {
        bucket: oldHour,
        eventCount: Number(expected?.event_count),
        sumValue: expected?.sum_value,
        minValue: expected?.min_value,
        maxValue: expected?.max_value,
        uniqueProfiles: Number(expected?.unique_profiles),
      },
    ]);
  });

  it('a run with nothing to do changes nothing; a full rebuild of correct rollups neither', async () => {
    const checksum = await rollupChecksum(db, { rowVersions: false });
    expect(await runAggregation(db, DEFAULT_ACCOUNT_ID, options)).toMatchObject({
      bucketsRecomputed: 0,
      rowsChanged: 0,
    });
    expect(await rebuildAggregates(db, DEFAULT_ACCOUNT_ID, { chunkHours: 24 * 30 })).toMatchObject({
      rowsWritten: 0,
      rowsDeleted: 0,
      eventsScanned: 1203,
    });
    expect(await rollupChecksum(db, { rowVersions: false })).toBe(checksum);
  });

  it('a rebuild repairs damaged rollups, also in compressed chunks', async () => {
    await db.query(
      `UPDATE klaviyo_aggregated_metrics SET event_count = event_count + 1 WHERE bucket < $1::timestamptz`,
      [hourOf(new Date(now - 450 * DAY)).toISOString()],
    );
    expect(await storedHours(db)).not.toEqual(await oracleHours(db));
    await rebuildAggregates(db, DEFAULT_ACCOUNT_ID, { chunkHours: 24 * 30 });
    expect(await storedHours(db)).toEqual(await oracleHours(db));
  });

  it('dimension rollups take late events into compressed chunks, and a rebuild repairs them there', async () => {
    // New York's own days (migrations/0016), filled for the events stored so far and kept from then on.
    const zones = await backfillDimensions(db, {
      extraDimensions: [],
      extraUniqueDimensions: [],
      dayZones: ['America/New_York'],
    });
    expect(zones.registeredZones).toEqual(['America/New_York']);
    const flowEvents = randomEvents(37, {
      count: 300,
      from: oldStart.toISOString(),
      hours: 500 * 24,
      metrics: ['m3'],
      profiles: 20,
      idPrefix: 'fl',
    }).map((e, i) => ({ ...e, properties: { $flow: `flow${i % 3}` } }));
    await storeEvents(db, flowEvents);
    await runAggregation(db, DEFAULT_ACCOUNT_ID, options);
    expect(await runCompression(db, 'klaviyo_dimension_rollups')).toBeGreaterThan(0);
    const first = flowEvents.reduce((a, b) => (new Date(a.at) < new Date(b.at) ? a : b));
    await storeEvents(db, [
      { id: 'late_flow', metricId: 'm3', profileId: 'p1', at: first.at, value: '5', properties: { $flow: 'flow0' } },
    ]);
    await runAggregation(db, DEFAULT_ACCOUNT_ID, options);
    expect(await dimensionContractViolations(db)).toEqual([]);
    expect(await dailyDimensionViolations(db)).toEqual([]);
    await db.query(`UPDATE klaviyo_dimension_rollups SET event_count = event_count + 1 WHERE metric_id = 'm3'`);
    expect(await dimensionContractViolations(db)).not.toEqual([]);
    await rebuildAggregates(db, DEFAULT_ACCOUNT_ID, { chunkHours: 24 * 30 });
    expect(await dimensionContractViolations(db)).toEqual([]);
    // The daily rows took the rebuild's corrections too, compressed chunks included.
    await db.query(`UPDATE klaviyo_dimension_daily_rollups SET event_count = event_count + 1 WHERE metric_id = 'm3'`);
    await db.query(
      `UPDATE klaviyo_dimension_zone_daily_rollups SET sum_value = sum_value + 1 WHERE metric_id = 'm3' AND day < now() - interval '450 days'`,
    );
    expect(await dailyDimensionViolations(db)).not.toEqual([]);
    await rebuildAggregates(db, DEFAULT_ACCOUNT_ID, { chunkHours: 24 * 30 });
    expect(await dailyDimensionViolations(db)).toEqual([]);
  });

  it('dimension profiles (unique by a key) take late events into compressed chunks, and a rebuild repairs them', async () => {
    const attributed = randomEvents(41, {
      count: 300,
      from: oldStart.toISOString(),
      hours: 500 * 24,
      metrics: ['m4'],
      profiles: 20,
      idPrefix: 'at',
    }).map((e, i) => ({ ...e, properties: { $attributed_flow: `flow${i % 3}` } }));
    await storeEvents(db, attributed);
    await runAggregation(db, DEFAULT_ACCOUNT_ID, options);
    expect(await runCompression(db, 'klaviyo_dimension_profiles')).toBeGreaterThan(0);
    const first = attributed.reduce((a, b) => (new Date(a.at) < new Date(b.at) ? a : b));
    await storeEvents(db, [
      {
        id: 'late_attributed',
        metricId: 'm4',
        profileId: 'p1',
        at: first.at,
        value: '5',
        properties: { $attributed_flow: 'flow0' },
      },
    ]);
    await runAggregation(db, DEFAULT_ACCOUNT_ID, options);
    expect(await dimensionProfileViolations(db)).toEqual([]);
    await db.query(`UPDATE klaviyo_dimension_profiles SET event_count = event_count + 1 WHERE metric_id = 'm4'`);
    expect(await dimensionProfileViolations(db)).not.toEqual([]);
    await rebuildAggregates(db, DEFAULT_ACCOUNT_ID, { chunkHours: 24 * 30 });
    expect(await dimensionProfileViolations(db)).toEqual([]);
  });
});
