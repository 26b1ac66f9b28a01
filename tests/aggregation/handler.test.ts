import type { Context, ScheduledEvent } from 'aws-lambda';
import { handler } from '../../functions/aggregate';
import { closeDb } from '../../lib/db';
import { setLogLevel, setLogSink } from '../../lib/log';
import { tryLockAggregation } from '../../lib/repositories/aggregates';
import { freshDatabase, type TestDatabase } from '../support/database';
import { storeEvents } from '../support/events';
import { dirtyCount, oracleHours, storedHours } from './oracle';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/** The scheduled function: its result, and exactly one structured log line per run. */
const scheduledEvent = (id: string): ScheduledEvent => ({
  version: '0',
  id,
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '123456789012',
  time: '2024-03-05T10:00:00Z',
  region: 'us-east-1',
  resources: ['arn:aws:events:us-east-1:123456789012:rule/aggregate'],
  detail: {},
});

const context = (remainingMs: number): Partial<Context> => ({ getRemainingTimeInMillis: () => remainingMs });

describe('aggregate handler', () => {
  let t: TestDatabase;
  let lines: Record<string, unknown>[];
  beforeAll(async () => {
    t = await freshDatabase();
    // Read by config() on the handler's first invocation in this file.
    process.env.AGGREGATE_BATCH_BUCKETS = '10';
    setLogLevel('info');
    setLogSink((line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  });
  beforeEach(() => {
    lines = [];
  });
  afterAll(async () => {
    setLogSink(undefined);
    setLogLevel('silent');
    delete process.env.AGGREGATE_BATCH_BUCKETS;
    await closeDb();
    await t.drop();
  });

  it('runs, returns what it did, and logs one line with the figures', async () => {
    await storeEvents(t.db, [
      { metricId: 'm1', profileId: 'p1', at: '2024-03-01T10:15:00Z', value: '2.50' },
      { metricId: 'm1', profileId: 'p2', at: '2024-03-01T10:45:00Z', value: '1' },
      { metricId: 'm2', profileId: 'p1', at: '2024-03-02T00:00:00Z' },
    ]);
    const result = await handler(scheduledEvent('evt-1'), context(60_000));
    expect(result).toMatchObject({
      status: 'done',
      bucketsRecomputed: 2,
      eventsScanned: 3,
      lagSeconds: 0,
      bucketsWaiting: 0,
      scheduledEventId: 'evt-1',
    });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'info',
      message: 'aggregate run done',
      function: 'aggregate',
      scheduled_event_id: 'evt-1',
      status: 'done',
      buckets_recomputed: 2,
      events_scanned: 3,
      lag_seconds: 0,
    });
    expect(typeof lines[0]?.duration_ms).toBe('number');
    expect(await dirtyCount(t.db)).toBe(0);
    expect(await storedHours(t.db)).toEqual(await oracleHours(t.db));
  });

  it('says so when another run holds the lock, and leaves the work to it', async () => {
    await storeEvents(t.db, [{ metricId: 'm1', profileId: 'p3', at: '2024-03-03T01:00:00Z', value: '3' }]);
    const result = await t.db.transaction(async (tx) => {
      expect(await tryLockAggregation(tx, DEFAULT_ACCOUNT_ID)).toBe(true);
      return handler(scheduledEvent('evt-2'), context(60_000));
    });
    expect(result).toMatchObject({ status: 'skipped', bucketsRecomputed: 0, bucketsWaiting: 1 });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'info',
      message: 'aggregate run skipped: another run holds the aggregation lock',
      status: 'skipped',
      buckets_recomputed: 0,
      buckets_waiting: 1,
    });
    expect(await dirtyCount(t.db)).toBe(1);
  });

  it('runs when invoked by hand without an event (osls invoke local)', async () => {
    const result = await handler(undefined);
    expect(result).toMatchObject({ status: 'done', bucketsRecomputed: 1, eventsScanned: 1 });
    expect(lines).toHaveLength(1);
    expect(await storedHours(t.db)).toEqual(await oracleHours(t.db));
  });

  it('keeps within the time the Lambda has left: a nearly spent invocation does one batch', async () => {
    await storeEvents(
      t.db,
      Array.from({ length: 30 }, (_, i) => ({ metricId: 'm3', at: new Date(Date.UTC(2024, 0, 1, i)), value: '1' })),
    );
    const spent = await handler(scheduledEvent('evt-3'), context(1_000));
    expect(spent).toMatchObject({
      status: 'done',
      bucketsRecomputed: 10,
      batches: 1,
      stoppedBy: 'budget',
      bucketsWaiting: 20,
    });
    expect(lines).toHaveLength(1);
    const next = await handler(scheduledEvent('evt-4'), context(60_000));
    expect(next).toMatchObject({ status: 'done', bucketsRecomputed: 20, bucketsWaiting: 0, stoppedBy: 'drained' });
    expect(await storedHours(t.db)).toEqual(await oracleHours(t.db));
  });
});
