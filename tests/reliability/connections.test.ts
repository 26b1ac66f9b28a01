import { handler as aggregate } from '../../functions/aggregate';
import { handler as health } from '../../functions/health';
import { handler as ingest } from '../../functions/ingest';
import { closeDb } from '../../lib/db';
import { createPostgresDb } from '../../lib/db/postgres';
import type { ClosableDb } from '../../lib/db/port';
import { contractViolations, dirtyCount, oracleHours, storedHours } from '../aggregation/oracle';
import { freshDatabase, type TestDatabase } from '../support/database';
import { testDriver, tuning } from '../support/env';
import { invoke, type InvokeResult } from '../support/http';
import { databaseChecksum, rowCounts } from '../security/support/checksum';
import {
  holdLock,
  tablesWrittenBy,
  terminate,
  terminateHandlerConnections,
  terminateWhileWaiting,
  untilHeld,
} from './support/faults';
import { makeEvents, pageOf } from './support/pages';

/**
 * Connections terminated (pg_terminate_backend, as a failover, a proxy or an operator does) between
 * invocations and in the middle of one. The handlers' shared client must recover by itself, a batch
 * cut off must leave nothing behind, and while the fault lasts the answer is a retryable 503.
 */
const METRICS = ['mA', 'mB', 'mC'];

function expectRetryable503(res: InvokeResult): void {
  expect(res.status).toBe(503);
  expect(res.headers['retry-after']).toMatch(/^\d+$/);
  expect(res.headers['content-type']).toBe('application/vnd.api+json');
  expect(res.body.errors).toHaveLength(1);
  expect(res.body.errors[0]).toEqual({
    id: expect.any(String),
    status: '503',
    code: 'service_unavailable',
    title: 'Service unavailable',
    detail: 'The database is temporarily unavailable; retry shortly.',
  });
}

function post(body: unknown) {
  return invoke(ingest, { method: 'POST', path: '/api/events', routeKey: 'POST /api/events', body, key: 'write' });
}

// Faults of postgres.js' own TCP connections (terminated, timed out, the server restarted): the Data API
// driver has no connection of its own to lose; its retries and 503s are tested in tests/db/dataApi*.
const describeOnPostgres = testDriver() === 'postgres' ? describe : describe.skip;

describeOnPostgres('terminated connections', () => {
  let t: TestDatabase;
  /** The test's own client; its application_name keeps it out of the handlers' connections. */
  let db: ClosableDb;

  beforeAll(async () => {
    t = await freshDatabase();
    db = createPostgresDb({ url: t.url, ...tuning, applicationName: 'reliability-test' });
  });
  afterAll(async () => {
    await closeDb();
    await db.close();
    await t.drop();
  });

  it('recovers on the next invocation when the connection was terminated between invocations', async () => {
    const first = await post(
      pageOf(
        makeEvents({
          prefix: 'between1',
          count: 50,
          from: '2024-03-01T00:00:00Z',
          hours: 10,
          metrics: METRICS,
          profiles: 20,
        }),
      ),
    );
    expect(first.status).toBe(200);
    expect(await terminateHandlerConnections(db)).toBeGreaterThan(0);

    // The warm client's socket is dead; the invocation must not fail because of it.
    const second = await post(
      pageOf(
        makeEvents({
          prefix: 'between2',
          count: 50,
          from: '2024-03-01T00:00:00Z',
          hours: 10,
          metrics: METRICS,
          profiles: 20,
        }),
      ),
    );
    expect(second.status).toBe(200);
    expect(second.body.data.attributes).toMatchObject({ received: 50, inserted: 50, duplicates: 0 });

    expect(await terminateHandlerConnections(db)).toBeGreaterThan(0);
    expect((await invoke(health, { path: '/api/health', key: null })).status).toBe(200);
    expect((await rowCounts(db)).events).toBe(100);
  });

  it('writes nothing and answers 503 while every attempt is terminated mid-transaction, then succeeds', async () => {
    const events = makeEvents({
      prefix: 'during',
      count: 200,
      from: '2024-03-02T00:00:00Z',
      hours: 30,
      metrics: ['mD', ...METRICS],
      profiles: 60,
    });
    const before = await databaseChecksum(db);
    const countsBefore = await rowCounts(db);

    // The ingest writes metrics and profiles, then waits at its insert into klaviyo_events.
    const hold = await holdLock(db, 'LOCK TABLE klaviyo_events IN EXCLUSIVE MODE');
    let outcome: { result: InvokeResult; terminated: number };
    try {
      const pending = post(pageOf(events));
      const [pid] = await untilHeld(db);
      // Proof that the batch was really cut in the middle: it had written the other tables.
      expect(await tablesWrittenBy(db, pid as number)).toEqual(
        expect.arrayContaining(['klaviyo_metrics', 'klaviyo_profiles']),
      );
      await terminate(db, [pid as number]);
      outcome = await terminateWhileWaiting(db, pending);
    } finally {
      await hold.release();
    }
    expectRetryable503(outcome.result);
    expect(outcome.terminated).toBeGreaterThanOrEqual(1);
    expect(await rowCounts(db)).toEqual(countsBefore);
    expect(await databaseChecksum(db)).toEqual(before);

    const retried = await post(pageOf(events));
    expect(retried.status).toBe(200);
    expect(retried.body.data.attributes).toMatchObject({ received: 200, inserted: 200, duplicates: 0 });
    expect((await rowCounts(db)).events).toBe(countsBefore.events + 200);
  });

  it('retries a unit of work cut off once on a new connection, and stores it exactly once', async () => {
    const events = makeEvents({
      prefix: 'once',
      count: 120,
      from: '2024-03-03T00:00:00Z',
      hours: 12,
      metrics: METRICS,
      profiles: 30,
    });
    const eventsBefore = (await rowCounts(db)).events;
    const hold = await holdLock(db, 'LOCK TABLE klaviyo_events IN EXCLUSIVE MODE');
    let res: InvokeResult;
    try {
      const pending = post(pageOf(events));
      await terminate(db, await untilHeld(db));
      // The retry waits on the same lock: releasing it lets the retry through.
      await untilHeld(db);
      await hold.release();
      res = await pending;
    } finally {
      await hold.release();
    }
    expect(res.status).toBe(200);
    expect(res.body.data.attributes).toMatchObject({ received: 120, inserted: 120 });
    expect((await rowCounts(db)).events).toBe(eventsBefore + 120);
  });

  it('leaves the rollups and their dirty marks untouched when an aggregator batch is cut off, and catches up next run', async () => {
    expect(await dirtyCount(db)).toBeGreaterThan(0);
    const before = await databaseChecksum(db);
    // The batch takes its dirty marks, then waits to write the rollups.
    const hold = await holdLock(db, 'LOCK TABLE klaviyo_aggregated_metrics IN EXCLUSIVE MODE');
    let outcome: { result: Awaited<ReturnType<typeof aggregate>>; terminated: number };
    try {
      outcome = await terminateWhileWaiting(db, aggregate());
    } finally {
      await hold.release();
    }
    expect(outcome.terminated).toBeGreaterThanOrEqual(1);
    expect(outcome.result.status).toBe('error');
    expect(await databaseChecksum(db)).toEqual(before);

    const next = await aggregate();
    expect(next.status).toBe('done');
    expect(await dirtyCount(db)).toBe(0);
    expect(await contractViolations(db)).toEqual([]);
    expect(await storedHours(db)).toEqual(await oracleHours(db));
  });
});
