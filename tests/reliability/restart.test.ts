import { handler as health } from '../../functions/health';
import { handler as ingest } from '../../functions/ingest';
import { closeDb } from '../../lib/db';
import { testDriver } from '../support/env';
import { invoke, type InvokeResult } from '../support/http';
import { databaseChecksum, rowCounts } from '../security/support/checksum';
import { holdLock, tablesWrittenBy, untilHeld } from './support/faults';
import { startOwnServer, type OwnServer } from './support/ownServer';
import { makeEvents, pageOf } from './support/pages';

/**
 * The database stopped in the middle of an ingest and started again, on a server of this file's own
 * (the shared test server stays up for the other files). The cut-off batch leaves nothing, every call
 * while the server is down is a retryable 503, and the first call after the restart succeeds on the
 * same warm client.
 */
function expectRetryable503(res: InvokeResult): void {
  expect(res.status).toBe(503);
  expect(res.headers['retry-after']).toMatch(/^\d+$/);
  expect(res.headers['content-type']).toBe('application/vnd.api+json');
  expect(res.body).toEqual({
    errors: [
      {
        id: expect.any(String),
        status: '503',
        code: 'service_unavailable',
        title: 'Service unavailable',
        detail: 'The database is temporarily unavailable; retry shortly.',
      },
    ],
  });
}

function post(body: unknown) {
  return invoke(ingest, { method: 'POST', path: '/api/events', routeKey: 'POST /api/events', body, key: 'write' });
}

// Faults of postgres.js' own TCP connections (terminated, timed out, the server restarted): the Data API
// driver has no connection of its own to lose; its retries and 503s are tested in tests/db/dataApi*.
const describeOnPostgres = testDriver() === 'postgres' ? describe : describe.skip;

describeOnPostgres('the database stopped during an ingest and started again', () => {
  let server: OwnServer;

  beforeAll(async () => {
    server = await startOwnServer('restart');
    process.env.DATABASE_URL = server.url;
    delete process.env.DB_HOST;
    // Fail fast while the server is down rather than after the default connect timeout.
    process.env.DB_CONNECT_TIMEOUT_S = '2';
  }, 120_000);
  afterAll(async () => {
    await closeDb();
    await server.destroy();
  }, 60_000);

  it('loses no committed data, writes no partial batch, answers 503 while down and recovers', async () => {
    const warmup = await post(
      pageOf(
        makeEvents({
          prefix: 'before',
          count: 100,
          from: '2024-05-01T00:00:00Z',
          hours: 24,
          metrics: ['m1', 'm2'],
          profiles: 30,
        }),
      ),
    );
    expect(warmup.status).toBe(200);
    const committed = await databaseChecksum(server.db);
    const counts = await rowCounts(server.db);

    const events = makeEvents({
      prefix: 'cut',
      count: 300,
      from: '2024-05-02T00:00:00Z',
      hours: 48,
      metrics: ['m2', 'm3'],
      profiles: 80,
    });
    // The hold is a transaction of the test's own client that is idle when the server stops and
    // fails after it: postgres.js 3.4.9 would write its ROLLBACK to a closed socket and throw from a
    // timer (porsager/postgres#1208); lib/db/postgres.ts must keep the process alive through it.
    const hold = await holdLock(server.db, 'LOCK TABLE klaviyo_events IN EXCLUSIVE MODE');
    let cut: InvokeResult;
    try {
      const pending = post(pageOf(events));
      const [pid] = await untilHeld(server.db);
      expect(await tablesWrittenBy(server.db, pid as number)).toEqual(
        expect.arrayContaining(['klaviyo_metrics', 'klaviyo_profiles']),
      );

      // A fast shutdown, as `pg_ctl stop` and a failover do: sessions are terminated, open transactions lost.
      await server.stop();
      cut = await pending;
    } finally {
      await hold.release();
    }
    expectRetryable503(cut);

    // While it is down: every route that needs the database answers 503, and nothing hangs.
    expectRetryable503(await post(pageOf(events)));
    expectRetryable503(await invoke(health, { path: '/api/health', key: null }));

    await server.start();
    // The batch cut off by the shutdown left nothing; what was committed before it is all there.
    expect(await rowCounts(server.db)).toEqual(counts);
    expect(await databaseChecksum(server.db)).toEqual(committed);

    // The next call, on the same warm client, succeeds.
    const after = await post(pageOf(events));
    expect(after.status).toBe(200);
    expect(after.body.data.attributes).toMatchObject({ received: 300, inserted: 300, duplicates: 0 });
    expect((await invoke(health, { path: '/api/health', key: null })).status).toBe(200);
    expect((await rowCounts(server.db)).events).toBe(counts.events + 300);
  }, 120_000);
});
