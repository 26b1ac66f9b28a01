import { runAggregation } from '../../lib/app/aggregation';
import { readHourlySeries } from '../../lib/repositories/aggregates';
import { freshDatabase, type TestDatabase } from '../support/database';
import { storeEvents, type SimpleEvent } from '../support/events';
import {
  contractViolations,
  dirtyCount,
  oracleHours,
  randomEvents,
  rollupChecksum,
  storedHours,
  type FiguresText,
} from './oracle';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * The incremental aggregator, scenario after scenario on one database: after each run, every stored
 * hour equals the oracle's recomputation from raw events, and no hour is missing.
 */
const run = (t: TestDatabase, batchBuckets = 50) =>
  runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets, timeBudgetMs: 60_000 });

async function expectExact(t: TestDatabase): Promise<void> {
  expect(await dirtyCount(t.db)).toBe(0);
  const oracle = await oracleHours(t.db);
  expect(oracle.length).toBeGreaterThan(0);
  expect(await storedHours(t.db)).toEqual(oracle);
  const others = await t.db.query(
    `SELECT 1 FROM klaviyo_aggregated_metrics WHERE account_id = 'default' AND granularity <> 'hour'`,
  );
  expect(others).toEqual([]);
}

describe('runAggregation', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await freshDatabase();
  });
  afterAll(async () => {
    await t.drop();
  });

  const fresh = randomEvents(1, {
    count: 1500,
    from: '2024-03-01T00:00:00Z',
    hours: 24 * 5,
    metrics: ['placed', 'opened', 'clicked'],
    profiles: 60,
    idPrefix: 'fresh',
  });

  it('a fresh ingest: every hour exact, in batches, reporting what it did', async () => {
    await storeEvents(t.db, fresh);
    const marked = await dirtyCount(t.db);
    const result = await run(t, 50);
    expect(result).toMatchObject({
      status: 'done',
      bucketsRecomputed: marked,
      eventsScanned: 1500,
      // Each hour's rollup and its totals' row in the dimension tables (the events carry no rolled-up key).
      rowsChanged: marked * 2,
      batches: Math.ceil(marked / 50) + (marked % 50 === 0 ? 1 : 0),
      bucketsWaiting: 0,
      lagSeconds: 0,
      stoppedBy: 'drained',
    });
    await expectExact(t);
  });

  it('late events into old hours land in exactly those hours', async () => {
    const late: SimpleEvent[] = [
      { id: 'late1', metricId: 'placed', profileId: 'p_1', at: '2024-03-01T00:00:00Z', value: '0.01' },
      { id: 'late2', metricId: 'placed', profileId: 'p_new', at: '2024-03-02T13:59:59.999Z', value: '99999.99' },
      { id: 'late3', metricId: 'opened', profileId: 'p_2', at: '2024-01-15T08:30:00Z', value: '5' },
      // The first instant of the next hour belongs to that hour only.
      { id: 'late4', metricId: 'placed', profileId: 'p_new', at: '2024-03-02T14:00:00Z', value: '7' },
    ];
    const before = await storedHours(t.db);
    await storeEvents(t.db, late);
    const result = await run(t);
    expect(result).toMatchObject({ status: 'done', bucketsRecomputed: 4 });
    await expectExact(t);
    // Only the four touched hours changed their figures (one of them new).
    const after = await storedHours(t.db);
    const figures = ({ new_profiles_by_lookback: _lookbacks, ...rest }: FiguresText) => JSON.stringify(rest);
    const changed = after.filter((row) => !before.some((b) => figures(b) === figures(row)));
    const touched = [
      'opened 2024-01-15T08:00:00Z',
      'placed 2024-03-01T00:00:00Z',
      'placed 2024-03-02T13:00:00Z',
      'placed 2024-03-02T14:00:00Z',
    ];
    expect(changed.map((r) => `${r.metric_id} ${r.bucket}`).sort()).toEqual(touched);
    // Other hours may change their lookback counts only: a late event of a profile changes how new the
    // profile is in its next hour with an event, if that hour lies within the following 24.
    const relinked = after.filter(
      (row) => !changed.includes(row) && !before.some((b) => JSON.stringify(b) === JSON.stringify(row)),
    );
    for (const row of relinked) {
      const hour = Date.parse(row.bucket);
      const near = touched.some((key) => {
        const [metric, bucket] = key.split(' ') as [string, string];
        return metric === row.metric_id && hour > Date.parse(bucket) && hour - Date.parse(bucket) <= 24 * 3_600_000;
      });
      expect({ row: `${row.metric_id} ${row.bucket}`, near }).toEqual({
        row: `${row.metric_id} ${row.bucket}`,
        near: true,
      });
    }
  });

  it('re-deliveries mark nothing and change nothing', async () => {
    const checksum = await rollupChecksum(t.db);
    expect(await storeEvents(t.db, fresh.slice(0, 400))).toEqual({ inserted: 0, duplicates: 400 });
    const result = await run(t);
    expect(result).toMatchObject({ status: 'done', bucketsRecomputed: 0, eventsScanned: 0, rowsChanged: 0 });
    expect(await rollupChecksum(t.db)).toBe(checksum);
    await expectExact(t);
  });

  it('a re-delivery mixed with new events counts each event once', async () => {
    const batch = [
      ...fresh.slice(400, 450),
      { id: 'mixed1', metricId: 'clicked', profileId: 'p_3', at: '2024-03-03T10:10:00Z', value: '1.5' },
    ];
    expect(await storeEvents(t.db, batch)).toEqual({ inserted: 1, duplicates: 50 });
    expect(await run(t)).toMatchObject({ bucketsRecomputed: 1 });
    await expectExact(t);
  });

  it('a new metric gets its own hours', async () => {
    await storeEvents(
      t.db,
      randomEvents(2, {
        count: 200,
        from: '2024-03-02T00:00:00Z',
        hours: 30,
        metrics: ['subscribed'],
        profiles: 10,
        idPrefix: 'sub',
      }),
    );
    await run(t);
    await expectExact(t);
    const metrics = await t.db.query<{ metric_id: string }>(
      `SELECT DISTINCT metric_id FROM klaviyo_aggregated_metrics WHERE account_id = 'default' ORDER BY metric_id`,
    );
    expect(metrics.map((m) => m.metric_id)).toEqual(['clicked', 'opened', 'placed', 'subscribed']);
  });

  it('a run between two ingests into the same hours', async () => {
    const first = randomEvents(3, {
      count: 300,
      from: '2024-03-04T00:00:00Z',
      hours: 6,
      metrics: ['placed', 'opened'],
      profiles: 20,
      idPrefix: 'between_a',
    });
    const second = randomEvents(4, {
      count: 300,
      from: '2024-03-04T00:00:00Z',
      hours: 6,
      metrics: ['placed', 'opened'],
      profiles: 40,
      idPrefix: 'between_b',
    });
    await storeEvents(t.db, first);
    await run(t);
    await expectExact(t);
    await storeEvents(t.db, second);
    // The same hours, stale until the next run: the contract says readers recompute them.
    expect(await dirtyCount(t.db)).toBeGreaterThan(0);
    expect(await contractViolations(t.db)).toEqual([]);
    await run(t);
    await expectExact(t);
  });

  it('keeps decimals exact, and counts events without a profile or a value', async () => {
    await storeEvents(t.db, [
      { id: 'dec1', metricId: 'refund', profileId: 'p_1', at: '2024-05-01T10:00:00Z', value: '0.1' },
      { id: 'dec2', metricId: 'refund', profileId: 'p_1', at: '2024-05-01T10:15:00Z', value: '0.2' },
      {
        id: 'dec3',
        metricId: 'refund',
        profileId: null,
        at: '2024-05-01T10:30:00Z',
        value: '12345678901234567890.123456789',
      },
      { id: 'dec4', metricId: 'refund', profileId: null, at: '2024-05-01T10:45:00Z', value: null },
      { id: 'dec5', metricId: 'refund', profileId: 'p_2', at: '2024-05-01T10:59:59Z', value: '-3.50' },
      { id: 'noval1', metricId: 'viewed', profileId: null, at: '2024-05-01T11:00:00Z', value: null },
      { id: 'noval2', metricId: 'viewed', profileId: null, at: '2024-05-01T11:01:00Z', value: null },
    ]);
    await run(t);
    await expectExact(t);
    const rows = await t.db.query(
      `SELECT metric_id, event_count::text, sum_value::text, min_value::text, max_value::text, unique_profiles::text
       FROM klaviyo_aggregated_metrics WHERE account_id = 'default' AND metric_id IN ('refund', 'viewed') ORDER BY metric_id`,
    );
    expect(rows).toEqual([
      {
        metric_id: 'refund',
        event_count: '5',
        sum_value: '12345678901234567886.923456789',
        min_value: '-3.50',
        max_value: '12345678901234567890.123456789',
        unique_profiles: '2',
      },
      { metric_id: 'viewed', event_count: '2', sum_value: '0', min_value: null, max_value: null, unique_profiles: '0' },
    ]);
  });

  it('removes the row of an hour that no longer has events', async () => {
    await storeEvents(t.db, [
      { id: 'gone', metricId: 'placed', profileId: 'p_1', at: '2024-06-01T00:30:00Z', value: '1' },
    ]);
    await run(t);
    await t.db.transaction(async (tx) => {
      await tx.query(`DELETE FROM klaviyo_events WHERE account_id = 'default' AND id = 'gone'`);
      await tx.query(
        `INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket) VALUES ('default', 'placed', '2024-06-01T00:00:00Z')`,
      );
    });
    // The hour's rollup and its totals' row.
    expect(await run(t)).toMatchObject({ bucketsRecomputed: 1, rowsChanged: 2, eventsScanned: 0 });
    await expectExact(t);
  });

  it('a run with nothing to do changes nothing and reports zero', async () => {
    const checksum = await rollupChecksum(t.db);
    const result = await run(t);
    expect(result).toMatchObject({
      status: 'done',
      bucketsRecomputed: 0,
      eventsScanned: 0,
      rowsChanged: 0,
      batches: 1,
      bucketsWaiting: 0,
      lagSeconds: 0,
      stoppedBy: 'drained',
    });
    expect(await rollupChecksum(t.db)).toBe(checksum);
  });

  it('recomputes a bucket whose figures did not change without rewriting its row', async () => {
    const checksum = await rollupChecksum(t.db);
    await t.db.query(
      `INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket) VALUES ('default', 'placed', '2024-03-01T00:00:00Z')`,
    );
    expect(await run(t)).toMatchObject({ bucketsRecomputed: 1, rowsChanged: 0 });
    expect(await rollupChecksum(t.db)).toBe(checksum);
  });

  it('stops at the time budget with the rest still marked, and reports the lag', async () => {
    await storeEvents(
      t.db,
      randomEvents(5, {
        count: 400,
        from: '2024-07-01T00:00:00Z',
        hours: 200,
        metrics: ['placed'],
        profiles: 30,
        idPrefix: 'budget',
      }),
    );
    await t.db.query(`UPDATE klaviyo_aggregate_dirty SET first_marked_at = now() - interval '90 seconds'`);
    const marked = await dirtyCount(t.db);
    // A budget of 1 ms lets exactly one batch run.
    const result = await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 10, timeBudgetMs: 1 });
    expect(result).toMatchObject({
      status: 'done',
      bucketsRecomputed: 10,
      batches: 1,
      stoppedBy: 'budget',
      bucketsWaiting: marked - 10,
    });
    expect(result.lagSeconds).toBeGreaterThanOrEqual(90);
    expect(await contractViolations(t.db)).toEqual([]);
    await run(t);
    await expectExact(t);
  });

  it('takes the oldest marks first', async () => {
    await storeEvents(t.db, [
      { id: 'old_mark', metricId: 'placed', at: '2024-08-01T05:00:00Z', value: '1' },
      { id: 'new_mark', metricId: 'placed', at: '2024-08-01T01:00:00Z', value: '1' },
    ]);
    await t.db.query(
      `UPDATE klaviyo_aggregate_dirty SET first_marked_at = now() - interval '1 hour' WHERE bucket = '2024-08-01T05:00:00Z'`,
    );
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 1, timeBudgetMs: 1 });
    const left = await t.db.query<{ bucket: Date }>(
      `SELECT bucket FROM klaviyo_aggregate_dirty WHERE account_id = 'default'`,
    );
    expect(left).toEqual([{ bucket: new Date('2024-08-01T01:00:00Z') }]);
    await run(t);
  });

  it('readHourlySeries answers exactly for marked hours before the aggregator has run', async () => {
    await storeEvents(t.db, [
      { id: 'series1', metricId: 'placed', profileId: 'p_9', at: '2024-03-01T00:10:00Z', value: '2.25' },
      { id: 'series2', metricId: 'placed', profileId: 'p_9', at: '2024-03-01T04:10:00Z', value: '1' },
    ]);
    const from = new Date('2024-03-01T00:00:00Z');
    const to = new Date('2024-03-02T00:00:00Z');
    const expected = (await oracleHours(t.db))
      .filter((r) => r.metric_id === 'placed' && r.bucket >= '2024-03-01T00' && r.bucket < '2024-03-02T00')
      .map((r) => ({
        bucket: new Date(r.bucket),
        eventCount: Number(r.event_count),
        sumValue: r.sum_value,
        minValue: r.min_value,
        maxValue: r.max_value,
        uniqueProfiles: Number(r.unique_profiles),
      }));
    expect(expected.length).toBeGreaterThan(5);
    expect(await dirtyCount(t.db)).toBe(2);
    expect(await readHourlySeries(t.db, DEFAULT_ACCOUNT_ID, { metricId: 'placed', from, to })).toEqual(expected);
    await run(t);
    expect(await readHourlySeries(t.db, DEFAULT_ACCOUNT_ID, { metricId: 'placed', from, to })).toEqual(expected);
  });
});
