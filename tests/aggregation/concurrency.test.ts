import { rebuildAggregates, runAggregation } from '../../lib/app/aggregation';
import type { ClosableDb } from '../../lib/db/port';
import { tryLockAggregation } from '../../lib/repositories/aggregates';
import { createPostgresDb } from '../../lib/db/postgres';
import { freshDatabase, type TestDatabase } from '../support/database';
import { tuning } from '../support/env';
import { storeEvents } from '../support/events';
import { contractViolations, dirtyCount, oracleHours, randomEvents, storedHours } from './oracle';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * Overlapping runs and the race the dirty marks exist for, played out on separate connections, with
 * transactions held open at chosen points. Each client has one connection, named, so that the test can
 * see in pg_stat_activity when a session waits for a lock.
 */
interface Gate {
  readonly opened: Promise<void>;
  open(): void;
}

function gate(): Gate {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

describe('concurrency', () => {
  let t: TestDatabase;
  const clients: ClosableDb[] = [];
  const client = (name: string): ClosableDb => {
    const db = createPostgresDb({ url: t.url, ...tuning, poolMax: 1, applicationName: name });
    clients.push(db);
    return db;
  };

  beforeAll(async () => {
    t = await freshDatabase();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await t.drop();
  });

  async function waitUntilBlocked(applicationName: string): Promise<void> {
    for (;;) {
      const rows = await t.db.query<{ waiting: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                        WHERE datname = current_database() AND application_name = $1 AND wait_event_type = 'Lock') AS waiting`,
        [applicationName],
      );
      if (rows[0]?.waiting) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async function expectExact(): Promise<void> {
    expect(await dirtyCount(t.db)).toBe(0);
    expect(await storedHours(t.db)).toEqual(await oracleHours(t.db));
  }

  async function hourFigures(metricId: string, bucket: string) {
    return t.db.query(
      `SELECT event_count::text, sum_value::text FROM klaviyo_aggregated_metrics
       WHERE metric_id = $1 AND granularity = 'hour' AND bucket = $2::timestamptz`,
      [metricId, bucket],
    );
  }

  async function isMarked(metricId: string, bucket: string): Promise<boolean> {
    const rows = await t.db.query(
      `SELECT 1 FROM klaviyo_aggregate_dirty WHERE metric_id = $1 AND bucket = $2::timestamptz`,
      [metricId, bucket],
    );
    return rows.length === 1;
  }

  it('two overlapping runs: no bucket counted twice or missed, no deadlock, one skips or both finish', async () => {
    await storeEvents(
      t.db,
      randomEvents(11, {
        count: 3000,
        from: '2024-02-01T00:00:00Z',
        hours: 24 * 20,
        metrics: ['a', 'b', 'c', 'd'],
        profiles: 80,
        idPrefix: 'conc',
      }),
    );
    const marked = await dirtyCount(t.db);
    expect(marked).toBeGreaterThan(500);
    const [one, two] = await Promise.all([
      runAggregation(client('run-one'), DEFAULT_ACCOUNT_ID, { batchBuckets: 20, timeBudgetMs: 60_000 }),
      runAggregation(client('run-two'), DEFAULT_ACCOUNT_ID, { batchBuckets: 20, timeBudgetMs: 60_000 }),
    ]);
    for (const result of [one, two]) expect(['done', 'skipped']).toContain(result.status);
    expect(one.bucketsRecomputed + two.bucketsRecomputed).toBe(marked);
    expect(one.eventsScanned + two.eventsScanned).toBe(3000);
    await expectExact();
  });

  it('a run that finds the lock taken skips cleanly and leaves the marks', async () => {
    await storeEvents(t.db, [{ metricId: 'a', profileId: 'p_1', at: '2024-04-01T00:00:00Z', value: '1' }]);
    const holder = client('holder');
    const release = gate();
    const held = gate();
    const holding = holder.transaction(async (tx) => {
      expect(await tryLockAggregation(tx, DEFAULT_ACCOUNT_ID)).toBe(true);
      held.open();
      await release.opened;
    });
    await held.opened;
    const result = await runAggregation(client('skipper'), DEFAULT_ACCOUNT_ID, {
      batchBuckets: 20,
      timeBudgetMs: 60_000,
    });
    release.open();
    await holding;
    expect(result).toMatchObject({
      status: 'skipped',
      bucketsRecomputed: 0,
      batches: 0,
      bucketsWaiting: 1,
      stoppedBy: 'lock',
    });
    expect(await dirtyCount(t.db)).toBe(1);
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 20, timeBudgetMs: 60_000 });
    await expectExact();
  });

  it('a rebuild and an incremental run at the same time end exact', async () => {
    await storeEvents(
      t.db,
      randomEvents(12, {
        count: 2000,
        from: '2024-02-10T00:00:00Z',
        hours: 24 * 30,
        metrics: ['a', 'b', 'e'],
        profiles: 50,
        idPrefix: 'rebuild_conc',
      }),
    );
    const [rebuilt, ran] = await Promise.all([
      rebuildAggregates(client('rebuilder'), DEFAULT_ACCOUNT_ID, { chunkHours: 24 }),
      runAggregation(client('runner'), DEFAULT_ACCOUNT_ID, { batchBuckets: 20, timeBudgetMs: 60_000 }),
    ]);
    expect(rebuilt.chunks).toBeGreaterThan(10);
    expect(['done', 'skipped']).toContain(ran.status);
    // Whatever is left marked (the run may have stopped at the rebuild's lock) is still exact to read.
    expect(await contractViolations(t.db)).toEqual([]);
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 100, timeBudgetMs: 60_000 });
    await expectExact();
  });

  it('an ingest still open during a run: its new hour is not taken, and the next run after its commit is exact', async () => {
    const ingest = client('ingest-open-new');
    const inserted = gate();
    const commit = gate();
    const ingesting = ingest.transaction(async (tx) => {
      await storeEvents(tx, [
        { id: 'open_new', metricId: 'a', profileId: 'p_77', at: '2023-12-31T23:30:00Z', value: '4.5' },
      ]);
      inserted.open();
      await commit.opened;
    });
    await inserted.opened;
    const during = await runAggregation(client('agg-1'), DEFAULT_ACCOUNT_ID, {
      batchBuckets: 20,
      timeBudgetMs: 60_000,
    });
    expect(during).toMatchObject({ status: 'done', bucketsRecomputed: 0 });
    expect(await hourFigures('a', '2023-12-31T23:00:00Z')).toEqual([]);
    commit.open();
    await ingesting;
    expect(await isMarked('a', '2023-12-31T23:00:00Z')).toBe(true);
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 20, timeBudgetMs: 60_000 });
    await expectExact();
    expect(await hourFigures('a', '2023-12-31T23:00:00Z')).toEqual([{ event_count: '1', sum_value: '4.5' }]);
  });

  it('an ingest still open re-marking a marked hour: the run skips that hour (SKIP LOCKED) instead of computing it early', async () => {
    const [stored] = await t.db.query<{ bucket: Date }>(
      `SELECT bucket FROM klaviyo_aggregated_metrics WHERE metric_id = 'a' AND granularity = 'hour' ORDER BY bucket LIMIT 1`,
    );
    const bucket = (stored as { bucket: Date }).bucket.toISOString();
    const before = await hourFigures('a', bucket);
    expect(before).toHaveLength(1);
    const inHour = (minutes: number) => new Date(new Date(bucket).getTime() + minutes * 60_000);
    // Committed but not yet aggregated: the hour is marked.
    await storeEvents(t.db, [
      { id: 'remark_committed', metricId: 'a', profileId: 'p_1', at: inHour(10), value: '100' },
    ]);
    const ingest = client('ingest-open-remark');
    const inserted = gate();
    const commit = gate();
    const ingesting = ingest.transaction(async (tx) => {
      await storeEvents(tx, [{ id: 'remark_open', metricId: 'a', profileId: 'p_1', at: inHour(20), value: '1000' }]);
      inserted.open();
      await commit.opened;
    });
    await inserted.opened;
    const during = await runAggregation(client('agg-2'), DEFAULT_ACCOUNT_ID, {
      batchBuckets: 20,
      timeBudgetMs: 60_000,
    });
    expect(during).toMatchObject({ status: 'done', bucketsRecomputed: 0, bucketsWaiting: 1 });
    expect(await hourFigures('a', bucket)).toEqual(before);
    commit.open();
    await ingesting;
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 20, timeBudgetMs: 60_000 });
    await expectExact();
  });

  it('an ingest that arrives after a run took the mark waits for it, re-marks the hour, and the next run is exact', async () => {
    const bucket = '2024-02-02T07:00:00Z';
    await storeEvents(t.db, [
      { id: 'race_first', metricId: 'b', profileId: 'p_2', at: '2024-02-02T07:05:00Z', value: '10' },
    ]);
    // Hold the run between its two statements: it has taken the mark and now waits to write rollups.
    const blocker = client('rollup-blocker');
    const locked = gate();
    const unlock = gate();
    const blocking = blocker.transaction(async (tx) => {
      await tx.query('LOCK TABLE klaviyo_aggregated_metrics IN EXCLUSIVE MODE');
      locked.open();
      await unlock.opened;
    });
    await locked.opened;
    const running = runAggregation(client('agg-3'), DEFAULT_ACCOUNT_ID, { batchBuckets: 20, timeBudgetMs: 60_000 });
    await waitUntilBlocked('agg-3');
    expect(await isMarked('b', bucket)).toBe(true); // the run's DELETE is not committed yet

    const ingest = client('ingest-late');
    const ingesting = ingest.transaction((tx) =>
      storeEvents(tx, [
        { id: 'race_second', metricId: 'b', profileId: 'p_3', at: '2024-02-02T07:55:00Z', value: '20' },
      ]),
    );
    // The ingest's mark upsert meets the run's deleted, uncommitted mark and waits for the run.
    await waitUntilBlocked('ingest-late');

    unlock.open();
    await blocking;
    const result = await running;
    expect(result).toMatchObject({ status: 'done', bucketsRecomputed: 1 });
    expect(await ingesting).toEqual({ inserted: 1, duplicates: 0 });
    // The run could not see the second event, and the ingest left a fresh mark for it.
    expect(await hourFigures('b', bucket)).toEqual([{ event_count: '1', sum_value: '10' }]);
    expect(await isMarked('b', bucket)).toBe(true);
    expect(await contractViolations(t.db)).toEqual([]);

    await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 20, timeBudgetMs: 60_000 });
    await expectExact();
    expect(await hourFigures('b', bucket)).toEqual([{ event_count: '2', sum_value: '30' }]);
  });
});
