import { rebuildAggregates, runAggregation, type RebuildProgress } from '../../lib/app/aggregation';
import { freshDatabase, type TestDatabase } from '../support/database';
import { storeEvents } from '../support/events';
import { dirtyCount, oracleHours, randomEvents, rollupChecksum, storedHours } from './oracle';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/** Full and partial rebuilds from raw events: what a backfill (npm run backfill) does. */
describe('rebuildAggregates', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await freshDatabase();
    await storeEvents(
      t.db,
      randomEvents(21, {
        count: 2000,
        from: '2024-01-01T00:00:00Z',
        hours: 24 * 40,
        metrics: ['x', 'y', 'z'],
        profiles: 50,
        idPrefix: 'rb',
      }),
    );
  });
  afterAll(async () => {
    await t.drop();
  });

  /** Wrong figures, a missing hour and a row for an hour without events, inside and outside a range. */
  async function corrupt(): Promise<void> {
    await t.db.query(
      `UPDATE klaviyo_aggregated_metrics SET event_count = event_count + 1
       WHERE bucket IN ('2024-01-05T00:00:00Z', '2024-01-05T01:00:00Z', '2024-01-25T00:00:00Z', '2024-01-25T01:00:00Z')`,
    );
    await t.db.query(
      `DELETE FROM klaviyo_aggregated_metrics WHERE bucket IN ('2024-01-06T05:00:00Z', '2024-01-26T05:00:00Z')`,
    );
    await t.db.query(
      `INSERT INTO klaviyo_aggregated_metrics (account_id, metric_id, granularity, bucket, event_count, sum_value, unique_profiles)
       VALUES ('default', 'x', 'hour', '2023-06-01T00:00:00Z', 5, 5, 1), ('default', 'y', 'hour', '2024-01-07T00:30:00Z', 1, 1, 1)
       ON CONFLICT DO NOTHING`,
    );
  }

  it('builds every hour from nothing, chunk by chunk, reporting progress, and clears the marks', async () => {
    const marked = await dirtyCount(t.db);
    const progress: RebuildProgress[] = [];
    const result = await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID, {
      chunkHours: 24 * 7,
      onProgress: (p) => progress.push(p),
    });
    expect(result).toMatchObject({
      from: new Date('2024-01-01T00:00:00Z'),
      chunks: 6,
      eventsScanned: 2000,
      marksCleared: marked,
      rowsDeleted: 0,
    });
    expect(progress.map((p) => p.chunksDone)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(progress.every((p) => p.chunksTotal === 6)).toBe(true);
    expect(progress[5]?.eventsScanned).toBe(2000);
    expect(progress[5]?.to).toEqual(result.to);
    expect(await dirtyCount(t.db)).toBe(0);
    const oracle = await oracleHours(t.db);
    expect(await storedHours(t.db)).toEqual(oracle);
    expect(result.bucketsRecomputed).toBe(oracle.length);
    expect(result.rowsWritten).toBe(oracle.length);
  });

  it('a rebuild of correct rollups writes nothing', async () => {
    const checksum = await rollupChecksum(t.db);
    const result = await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID, { chunkHours: 24 });
    expect(result).toMatchObject({ rowsWritten: 0, rowsDeleted: 0, eventsScanned: 2000 });
    expect(await rollupChecksum(t.db)).toBe(checksum);
  });

  it('repairs only the range (and metric) it is given', async () => {
    await corrupt();
    const inside = await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID, {
      from: new Date('2024-01-05T00:00:00Z'),
      to: new Date('2024-01-08T00:00:00Z'),
      metricId: 'y',
      chunkHours: 24,
    });
    expect(inside.chunks).toBe(3);
    await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID, {
      from: new Date('2024-01-05T00:00:00Z'),
      to: new Date('2024-01-08T00:00:00Z'),
      chunkHours: 24,
    });
    const stored = await storedHours(t.db);
    const oracle = await oracleHours(t.db);
    const inRange = (r: { bucket: string }) => r.bucket >= '2024-01-05' && r.bucket < '2024-01-08';
    expect(stored.filter(inRange)).toEqual(oracle.filter(inRange));
    // Outside the range the damage is still there: the rebuild did not touch it.
    expect(stored.filter((r) => !inRange(r))).not.toEqual(oracle.filter((r) => !inRange(r)));
    expect(stored.some((r) => r.bucket === '2023-06-01T00:00:00Z')).toBe(true);
  });

  it('a full rebuild repairs everything, including rows of hours that have no events', async () => {
    const result = await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID);
    expect(result.from).toEqual(new Date('2023-06-01T00:00:00Z'));
    expect(result.rowsDeleted).toBe(1);
    expect(await storedHours(t.db)).toEqual(await oracleHours(t.db));
  });

  it('for one metric, rounds the range out to whole hours and leaves other metrics alone', async () => {
    await t.db.query(`UPDATE klaviyo_aggregated_metrics SET sum_value = sum_value + 1`);
    const result = await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID, {
      metricId: 'z',
      from: new Date('2024-01-10T10:30:00Z'),
      to: new Date('2024-01-10T12:00:01Z'),
    });
    expect(result).toMatchObject({
      from: new Date('2024-01-10T10:00:00Z'),
      to: new Date('2024-01-10T13:00:00Z'),
      chunks: 1,
    });
    const stored = await storedHours(t.db);
    const oracle = await oracleHours(t.db);
    const repaired = (r: { metric_id: string; bucket: string }) =>
      r.metric_id === 'z' && r.bucket >= '2024-01-10T10' && r.bucket < '2024-01-10T13';
    expect(stored.filter(repaired).length).toBeGreaterThan(0);
    expect(stored.filter(repaired)).toEqual(oracle.filter(repaired));
    expect(
      stored
        .filter((r) => !repaired(r))
        .every((r, i) => r.sum_value !== oracle.filter((o) => !repaired(o))[i]?.sum_value),
    ).toBe(true);
    await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID);
    expect(await storedHours(t.db)).toEqual(oracle);
  });

  it('after a rebuild, new ingests are picked up by the incremental run as usual', async () => {
    await storeEvents(t.db, [{ metricId: 'x', profileId: 'p_1', at: '2024-01-03T03:03:03Z', value: '3.3' }]);
    expect(await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 100, timeBudgetMs: 60_000 })).toMatchObject({
      bucketsRecomputed: 1,
    });
    expect(await storedHours(t.db)).toEqual(await oracleHours(t.db));
  });

  it('with nothing stored, does nothing', async () => {
    const empty = await freshDatabase({ setEnv: false });
    try {
      expect(await rebuildAggregates(empty.db, DEFAULT_ACCOUNT_ID)).toMatchObject({ from: null, to: null, chunks: 0 });
    } finally {
      await empty.drop();
    }
  });
});
