import { handler as ingest } from '../../functions/ingest';
import { closeDb } from '../../lib/db';
import { createPostgresDb } from '../../lib/db/postgres';
import type { ClosableDb } from '../../lib/db/port';
import { freshDatabase, type TestDatabase } from '../support/database';
import { testDriver, tuning } from '../support/env';
import { invoke } from '../support/http';
import { databaseChecksum, rowCounts } from '../security/support/checksum';
import { holdLock, tablesWrittenBy, untilHeld } from './support/faults';
import { makeEvents, pageOf } from './support/pages';

/**
 * A statement that runs past DB_STATEMENT_TIMEOUT_MS is cancelled by PostgreSQL (57014): the whole
 * batch rolls back, the answer is a retryable 503, and the same request succeeds once the cause (here
 * a lock held by another session) is gone.
 */
// Faults of postgres.js' own TCP connections (terminated, timed out, the server restarted): the Data API
// driver has no connection of its own to lose; its retries and 503s are tested in tests/db/dataApi*.
const describeOnPostgres = testDriver() === 'postgres' ? describe : describe.skip;

describeOnPostgres('a statement timeout in the middle of an ingest', () => {
  let t: TestDatabase;
  let db: ClosableDb;

  beforeAll(async () => {
    // Read by the handlers' client when it is created, at the first invocation below. Long enough
    // for every statement of a batch on a loaded machine, and for the test to see the insert wait.
    process.env.DB_STATEMENT_TIMEOUT_MS = '5000';
    t = await freshDatabase();
    db = createPostgresDb({ url: t.url, ...tuning, applicationName: 'reliability-test' });
  });
  afterAll(async () => {
    await closeDb();
    await db.close();
    await t.drop();
    delete process.env.DB_STATEMENT_TIMEOUT_MS;
  });

  it('rolls the batch back, answers 503 with Retry-After, and succeeds after the cause is gone', async () => {
    const post = (body: unknown) =>
      invoke(ingest, { method: 'POST', path: '/api/events', routeKey: 'POST /api/events', body, key: 'write' });
    expect(
      (
        await post(
          pageOf(
            makeEvents({
              prefix: 'seed',
              count: 40,
              from: '2024-06-01T00:00:00Z',
              hours: 5,
              metrics: ['m1'],
              profiles: 10,
            }),
          ),
        )
      ).status,
    ).toBe(200);
    const before = await databaseChecksum(db);
    const counts = await rowCounts(db);

    const page = pageOf(
      makeEvents({
        prefix: 'slow',
        count: 150,
        from: '2024-06-02T00:00:00Z',
        hours: 20,
        metrics: ['m1', 'm2'],
        profiles: 40,
      }),
    );
    const hold = await holdLock(db, 'LOCK TABLE klaviyo_events IN EXCLUSIVE MODE');
    let timedOut;
    try {
      const pending = post(page);
      const [pid] = await untilHeld(db);
      expect(await tablesWrittenBy(db, pid as number)).toEqual(
        expect.arrayContaining(['klaviyo_metrics', 'klaviyo_profiles']),
      );
      timedOut = await pending;
    } finally {
      await hold.release();
    }
    expect(timedOut.status).toBe(503);
    expect(timedOut.headers['retry-after']).toMatch(/^\d+$/);
    expect(timedOut.body.errors).toEqual([
      {
        id: expect.any(String),
        status: '503',
        code: 'service_unavailable',
        title: 'Service unavailable',
        detail: 'The database is temporarily unavailable; retry shortly.',
      },
    ]);
    expect(await rowCounts(db)).toEqual(counts);
    expect(await databaseChecksum(db)).toEqual(before);

    const retried = await post(page);
    expect(retried.status).toBe(200);
    expect(retried.body.data.attributes).toMatchObject({ received: 150, inserted: 150, duplicates: 0 });
    expect((await rowCounts(db)).events).toBe(counts.events + 150);
  });
});
