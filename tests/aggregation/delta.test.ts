import { rebuildAggregates, runAggregation } from '../../lib/app/aggregation';
import type { ClosableDb } from '../../lib/db/port';
import { createPostgresDb } from '../../lib/db/postgres';
import { freshDatabase, type TestDatabase } from '../support/database';
import { tuning } from '../support/env';
import { storeEvents, type SimpleEvent } from '../support/events';
import { dirtyCount, oracleHours, storedHours } from './oracle';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * The incremental path adds the new events' pending rows to the stored rollups instead of recounting
 * the hour. Each scenario is built so that a wrong delta (unique profiles always grown, or never; the
 * probe not excluding the taken rows, or not filtering the metric; min/max or NULLs mishandled;
 * pending rows counted twice after a rebuild) gives figures that differ from the oracle's. Each also
 * checks that the run took the delta path (no bucket recomputed from raw, only the new events read),
 * since a recount from raw would pass the figures whatever the delta code does.
 */
const run = (t: TestDatabase) => runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 50, timeBudgetMs: 60_000 });

interface HourText extends Record<string, unknown> {
  event_count: string;
  sum_value: string;
  min_value: string | null;
  max_value: string | null;
  unique_profiles: string;
}

async function hour(t: TestDatabase, metricId: string, bucket: string): Promise<HourText | undefined> {
  const rows = await t.db.query<HourText>(
    `SELECT event_count::text, sum_value::text, min_value::text, max_value::text, unique_profiles::text
     FROM klaviyo_aggregated_metrics WHERE metric_id = $1 AND granularity = 'hour' AND bucket = $2::timestamptz`,
    [metricId, bucket],
  );
  return rows[0];
}

async function pendingCount(t: TestDatabase): Promise<number> {
  const rows = await t.db.query<{ n: string }>('SELECT count(*) AS n FROM klaviyo_aggregate_pending');
  return Number(rows[0]?.n);
}

async function expectExact(t: TestDatabase): Promise<void> {
  expect(await dirtyCount(t.db)).toBe(0);
  expect(await pendingCount(t)).toBe(0);
  expect(await storedHours(t.db)).toEqual(await oracleHours(t.db));
}

/** Stores the events, runs once, and checks that the run only added pending rows (no recount from raw). */
async function ingestAndRunByDelta(t: TestDatabase, events: SimpleEvent[], buckets: number): Promise<void> {
  await storeEvents(t.db, events);
  expect(await pendingCount(t)).toBe(events.length);
  expect(await run(t)).toMatchObject({ bucketsRecomputed: buckets, bucketsFromRaw: 0, eventsScanned: events.length });
  await expectExact(t);
}

describe('delta rollups', () => {
  let t: TestDatabase;
  const clients: ClosableDb[] = [];

  beforeAll(async () => {
    t = await freshDatabase();
    // The base every scenario adds to: metric 'm', 10:00 holds p1 (twice) and p2, values 5 and 7 and
    // one without a value; metric 'other' holds p3 in the same hour; 11:00 holds p4.
    await storeEvents(t.db, [
      { id: 'base1', metricId: 'm', profileId: 'p1', at: '2024-04-01T10:05:00Z', value: '5' },
      { id: 'base2', metricId: 'm', profileId: 'p1', at: '2024-04-01T10:15:00Z', value: '7' },
      { id: 'base3', metricId: 'm', profileId: 'p2', at: '2024-04-01T10:25:00Z', value: null },
      { id: 'base4', metricId: 'other', profileId: 'p3', at: '2024-04-01T10:35:00Z', value: '1' },
      { id: 'base5', metricId: 'm', profileId: 'p4', at: '2024-04-01T11:00:00Z', value: '2' },
    ]);
    await run(t);
    await expectExact(t);
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await t.drop();
  });

  it('a profile already counted in the hour adds an event but no unique profile', async () => {
    await ingestAndRunByDelta(
      t,
      [{ id: 'again_p1', metricId: 'm', profileId: 'p1', at: '2024-04-01T10:45:00Z', value: '6' }],
      1,
    );
    expect(await hour(t, 'm', '2024-04-01T10:00:00Z')).toEqual({
      event_count: '4',
      sum_value: '18',
      min_value: '5',
      max_value: '7',
      unique_profiles: '2',
    });
  });

  it('a new profile grows the unique count, also when it has events in the next hour or under another metric', async () => {
    await ingestAndRunByDelta(
      t,
      [
        { id: 'new_p5', metricId: 'm', profileId: 'p5', at: '2024-04-01T10:50:00Z', value: '6' },
        // p3 is counted in this hour for 'other' only; p4 in the next hour only.
        { id: 'new_p3', metricId: 'm', profileId: 'p3', at: '2024-04-01T10:51:00Z', value: '6' },
        { id: 'new_p4', metricId: 'm', profileId: 'p4', at: '2024-04-01T10:59:59.999Z', value: '6' },
      ],
      1,
    );
    expect(await hour(t, 'm', '2024-04-01T10:00:00Z')).toMatchObject({ event_count: '7', unique_profiles: '5' });
  });

  it('two events of one new profile in one batch grow the count by one', async () => {
    await ingestAndRunByDelta(
      t,
      [
        { id: 'twice_a', metricId: 'm', profileId: 'p6', at: '2024-04-01T10:01:00Z', value: '6' },
        { id: 'twice_b', metricId: 'm', profileId: 'p6', at: '2024-04-01T10:02:00Z', value: '6' },
      ],
      1,
    );
    expect(await hour(t, 'm', '2024-04-01T10:00:00Z')).toMatchObject({ event_count: '9', unique_profiles: '6' });
  });

  it('two ingests of one new profile before a run grow the count by one, and an old profile mixed in by none', async () => {
    await storeEvents(t.db, [
      { id: 'split_a', metricId: 'm', profileId: 'p7', at: '2024-04-01T10:03:00Z', value: '6' },
    ]);
    await storeEvents(t.db, [
      { id: 'split_b', metricId: 'm', profileId: 'p7', at: '2024-04-01T10:04:00Z', value: '6' },
      { id: 'split_c', metricId: 'm', profileId: 'p2', at: '2024-04-01T10:06:00Z', value: '6' },
    ]);
    expect(await pendingCount(t)).toBe(3);
    expect(await run(t)).toMatchObject({ bucketsRecomputed: 1, bucketsFromRaw: 0, eventsScanned: 3 });
    await expectExact(t);
    expect(await hour(t, 'm', '2024-04-01T10:00:00Z')).toMatchObject({ event_count: '12', unique_profiles: '7' });
  });

  it('min and max move only when a new value passes them', async () => {
    await ingestAndRunByDelta(
      t,
      [
        { id: 'low', metricId: 'm', profileId: 'p1', at: '2024-04-01T10:20:00Z', value: '-0.50' },
        { id: 'high', metricId: 'm', profileId: 'p1', at: '2024-04-01T10:21:00Z', value: '100.25' },
        { id: 'inside', metricId: 'm', profileId: 'p4', at: '2024-04-01T11:10:00Z', value: '1.5' },
        { id: 'above', metricId: 'm', profileId: 'p4', at: '2024-04-01T11:11:00Z', value: '3' },
      ],
      2,
    );
    expect(await hour(t, 'm', '2024-04-01T10:00:00Z')).toMatchObject({ min_value: '-0.50', max_value: '100.25' });
    expect(await hour(t, 'm', '2024-04-01T11:00:00Z')).toEqual({
      event_count: '3',
      sum_value: '6.5',
      min_value: '1.5',
      max_value: '3',
      unique_profiles: '1',
    });
  });

  it('NULL values and profiles: counted as events, not in sum, min, max or unique profiles', async () => {
    // An hour that so far has only events without a value or a profile.
    await ingestAndRunByDelta(
      t,
      [
        { id: 'null1', metricId: 'n', profileId: null, at: '2024-04-02T00:10:00Z', value: null },
        { id: 'null2', metricId: 'n', profileId: null, at: '2024-04-02T00:20:00Z', value: null },
      ],
      1,
    );
    expect(await hour(t, 'n', '2024-04-02T00:00:00Z')).toEqual({
      event_count: '2',
      sum_value: '0',
      min_value: null,
      max_value: null,
      unique_profiles: '0',
    });
    // The first value of that hour sets min and max; a NULL added to an hour with values changes neither.
    await ingestAndRunByDelta(
      t,
      [
        { id: 'first_value', metricId: 'n', profileId: null, at: '2024-04-02T00:30:00Z', value: '4.20' },
        { id: 'null_into_values', metricId: 'm', profileId: null, at: '2024-04-01T11:30:00Z', value: null },
      ],
      2,
    );
    expect(await hour(t, 'n', '2024-04-02T00:00:00Z')).toEqual({
      event_count: '3',
      sum_value: '4.20',
      min_value: '4.20',
      max_value: '4.20',
      unique_profiles: '0',
    });
    expect(await hour(t, 'm', '2024-04-01T11:00:00Z')).toEqual({
      event_count: '4',
      sum_value: '6.5',
      min_value: '1.5',
      max_value: '3',
      unique_profiles: '1',
    });
  });

  it('re-delivered events write no pending row and change nothing', async () => {
    const before = await storedHours(t.db);
    expect(
      await storeEvents(t.db, [
        { id: 'low', metricId: 'm', profileId: 'p1', at: '2024-04-01T10:20:00Z', value: '-0.50' },
        { id: 'base5', metricId: 'm', profileId: 'p4', at: '2024-04-01T11:00:00Z', value: '2' },
      ]),
    ).toEqual({ inserted: 0, duplicates: 2 });
    expect(await pendingCount(t)).toBe(0);
    expect(await run(t)).toMatchObject({ bucketsRecomputed: 0, eventsScanned: 0 });
    expect(await storedHours(t.db)).toEqual(before);
  });

  it('a marked hour without pending rows (events written by another path) is recomputed from raw events', async () => {
    await t.db.transaction(async (tx) => {
      await tx.query(`INSERT INTO klaviyo_profiles (account_id, id) VALUES ('default', 'p8')`);
      await tx.query(
        `INSERT INTO klaviyo_events (account_id, id, "timestamp", metric_id, profile_id, value, raw_data)
         VALUES ('default', 'copied', '2024-04-01T10:30:00Z', 'm', 'p8', 1000, '{}'::jsonb)`,
      );
      await tx.query(
        `INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket) VALUES ('default', 'm', '2024-04-01T10:00:00Z')`,
      );
    });
    const events = (await oracleHours(t.db)).find((r) => r.metric_id === 'm' && r.bucket === '2024-04-01T10:00:00Z');
    expect(await run(t)).toMatchObject({
      bucketsRecomputed: 1,
      bucketsFromRaw: 1,
      eventsScanned: Number(events?.event_count),
    });
    await expectExact(t);
    expect(await hour(t, 'm', '2024-04-01T10:00:00Z')).toMatchObject({ max_value: '1000' });
  });

  it('a rebuild clears the pending rows it counted, so the next run adds nothing twice', async () => {
    await storeEvents(t.db, [
      { id: 'before_rebuild1', metricId: 'm', profileId: 'p9', at: '2024-04-01T12:00:00Z', value: '3' },
      { id: 'before_rebuild2', metricId: 'other', profileId: 'p9', at: '2024-04-03T12:00:00Z', value: '3' },
    ]);
    // A rebuild of one day only: the other day's pending row and mark stay for the run.
    const rebuilt = await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID, {
      from: new Date('2024-04-01T00:00:00Z'),
      to: new Date('2024-04-02T00:00:00Z'),
    });
    expect(rebuilt.marksCleared).toBe(1);
    expect(await pendingCount(t)).toBe(1);
    expect(await run(t)).toMatchObject({ bucketsRecomputed: 1, bucketsFromRaw: 0, eventsScanned: 1 });
    await expectExact(t);
  });

  it('a rebuild meeting an open ingest: the ingest counted once, by the next run', async () => {
    const ingest = createPostgresDb({ url: t.url, ...tuning, poolMax: 1, applicationName: 'delta-ingest' });
    clients.push(ingest);
    // The mark exists already, so the open ingest holds its row lock.
    await storeEvents(t.db, [
      { id: 'open_a', metricId: 'm', profileId: 'p10', at: '2024-04-01T13:00:00Z', value: '1' },
    ]);
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let stored!: () => void;
    const inserted = new Promise<void>((resolve) => {
      stored = resolve;
    });
    const open = ingest.transaction(async (tx) => {
      await storeEvents(tx, [
        { id: 'open_b', metricId: 'm', profileId: 'p10', at: '2024-04-01T13:30:00Z', value: '9' },
      ]);
      stored();
      await released;
    });
    await inserted;
    const rebuilt = await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID);
    // The open ingest's mark was skipped; open_a was counted and its pending row cleared.
    expect(rebuilt.marksCleared).toBe(0);
    expect(await pendingCount(t)).toBe(0);
    expect(await hour(t, 'm', '2024-04-01T13:00:00Z')).toMatchObject({ event_count: '1', unique_profiles: '1' });
    release();
    await open;
    expect(await run(t)).toMatchObject({ bucketsRecomputed: 1, bucketsFromRaw: 0, eventsScanned: 1 });
    await expectExact(t);
    expect(await hour(t, 'm', '2024-04-01T13:00:00Z')).toMatchObject({
      event_count: '2',
      max_value: '9',
      unique_profiles: '1',
    });
  });

  it('links a profile-hour to its previous hour only within 24 hours, and re-links only there', async () => {
    // Profile pw of metric w: hours 00:00 and 30:00 (30 hours apart: no link), then late events at
    // 10:00 (links 30:00 to it), 05:00 (25 hours before 30:00: links nothing there) and 54:00 (exactly
    // 24 hours after 30:00: linked). The oracle checks every hour's 25 lookback counts; the links are
    // checked as stored, since a link kept too far back gives the same spans until a later change.
    const at = (hours: number) => new Date(Date.parse('2024-05-01T00:00:00Z') + hours * 3_600_000).toISOString();
    const links = async () =>
      (
        await t.db.query<{ bucket: Date; previous_bucket: Date | null }>(
          `SELECT bucket, previous_bucket FROM klaviyo_profile_hours WHERE metric_id = 'w' AND profile_id = 'pw' ORDER BY bucket`,
        )
      ).map((r) => [r.bucket.toISOString(), r.previous_bucket?.toISOString() ?? null]);
    await ingestAndRunByDelta(
      t,
      [
        { id: 'w0', metricId: 'w', profileId: 'pw', at: at(0), value: null },
        { id: 'w30', metricId: 'w', profileId: 'pw', at: at(30), value: null },
      ],
      2,
    );
    expect(await links()).toEqual([
      [at(0), null],
      [at(30), null],
    ]);
    await ingestAndRunByDelta(t, [{ id: 'w10', metricId: 'w', profileId: 'pw', at: at(10), value: null }], 1);
    expect(await links()).toEqual([
      [at(0), null],
      [at(10), at(0)],
      [at(30), at(10)],
    ]);
    await ingestAndRunByDelta(
      t,
      [
        { id: 'w5', metricId: 'w', profileId: 'pw', at: at(5), value: null },
        { id: 'w54', metricId: 'w', profileId: 'pw', at: at(54), value: null },
        { id: 'w79', metricId: 'w', profileId: 'pw', at: at(79), value: null },
      ],
      3,
    );
    expect(await links()).toEqual([
      [at(0), null],
      [at(5), at(0)],
      [at(10), at(5)],
      [at(30), at(10)],
      [at(54), at(30)],
      [at(79), null],
    ]);
  });
});
