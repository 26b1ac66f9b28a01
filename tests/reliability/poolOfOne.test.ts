import { handler as aggregate } from '../../functions/aggregate';
import * as events from '../../functions/events';
import { handler as ingest } from '../../functions/ingest';
import { handler as metricAggregates } from '../../functions/metricAggregates';
import * as metrics from '../../functions/metrics';
import * as profiles from '../../functions/profiles';
import { closeDb } from '../../lib/db';
import { createPostgresDb } from '../../lib/db/postgres';
import type { ClosableDb } from '../../lib/db/port';
import { contractViolations, dirtyCount, oracleHours, storedHours } from '../aggregation/oracle';
import { freshDatabase, type TestDatabase } from '../support/database';
import { testDriver, tuning } from '../support/env';
import { invoke, type InvokeResult } from '../support/http';
import { rowCounts } from '../security/support/checksum';
import { makeEvents, pageOf } from './support/pages';

/**
 * A Lambda container's client has a pool of ONE connection (DB_POOL_MAX=1, the default). A
 * serverless-offline process, or a test, runs many invocations at once on that one client: a code
 * path that asks for a second connection while it holds the first (getDb() inside a transaction)
 * would wait for itself forever. Every route and the aggregator run here at once on that client.
 */
const describeOnPostgres = testDriver() === 'postgres' ? describe : describe.skip;

describeOnPostgres('every route at once on a pool of one connection', () => {
  let t: TestDatabase;
  let db: ClosableDb;

  beforeAll(async () => {
    process.env.DB_POOL_MAX = '1';
    t = await freshDatabase();
    db = createPostgresDb({ url: t.url, ...tuning, applicationName: 'reliability-test' });
  });
  afterAll(async () => {
    delete process.env.DB_POOL_MAX;
    await closeDb();
    await db.close();
    await t.drop();
  });

  it('serves them all, on one connection, without a deadlock, and the rollups end equal to the oracle', async () => {
    const pages = Array.from({ length: 8 }, (_, i) =>
      makeEvents({
        prefix: `p1_${i}`,
        count: 80,
        from: '2024-08-01T00:00:00Z',
        hours: 30,
        metrics: ['mA', 'mB', 'mC'],
        profiles: 40,
      }),
    );
    // Seed one page so that the reads have something to find.
    expect(
      (await invoke(ingest, { method: 'POST', path: '/api/events', body: pageOf(pages[0] ?? []), key: 'write' }))
        .status,
    ).toBe(200);

    let running = true;
    let mostConnections = 0;
    const sampler = (async () => {
      while (running) {
        const rows = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'klaviyo-analytics'`,
        );
        mostConnections = Math.max(mostConnections, rows[0]?.n ?? 0);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    const post = (path: string, body: unknown) =>
      invoke(ingest, { method: 'POST', path, routeKey: `POST ${path}`, body, key: 'write' });
    const get = (handler: Parameters<typeof invoke>[0], path: string, id?: string, query?: Record<string, string>) =>
      invoke(handler, { method: 'GET', path, pathParams: id === undefined ? undefined : { id }, query, key: 'read' });
    const aggregates = () =>
      invoke(metricAggregates, {
        method: 'POST',
        path: '/api/metric-aggregates',
        key: 'read',
        body: {
          data: {
            type: 'metric-aggregate',
            attributes: {
              metric_id: 'mA',
              measurements: ['count', 'sum_value', 'unique'],
              interval: 'day',
              filter: ['greater-or-equal(datetime,2024-08-01T00:00:00)', 'less-than(datetime,2024-08-03T00:00:00)'],
              timezone: 'America/New_York',
            },
          },
        },
      });

    const work: { name: string; expected: number[]; run: Promise<InvokeResult | { status: number }> }[] = [];
    const add = (name: string, expected: number[], run: Promise<InvokeResult | { status: number }>) =>
      work.push({ name, expected, run });
    for (const [i, page] of pages.entries()) {
      add(`ingest ${i}`, [200], post('/api/events', pageOf(page)));
      // A re-delivery of the neighbour's page, racing its first delivery.
      add(`redelivery ${i}`, [200], post('/api/events', pageOf(pages[(i + 1) % pages.length] ?? [])));
      add(`events list ${i}`, [200], get(events.list, '/api/events', undefined, { include: 'metric,profile' }));
      add(`event ${i}`, [200], get(events.get, '/api/events/{id}', 'p1_0_1'));
      add(`profiles ${i}`, [200], get(profiles.list, '/api/profiles'));
      add(`profile ${i}`, [200], get(profiles.get, '/api/profiles/{id}', 'prof_1'));
      add(`profile events ${i}`, [200], get(profiles.events, '/api/profiles/{id}/events', 'prof_1'));
      add(`metrics ${i}`, [200], get(metrics.list, '/api/metrics'));
      add(`metric ${i}`, [200], get(metrics.get, '/api/metrics/{id}', 'mA'));
      add(`missing ${i}`, [404], get(metrics.get, '/api/metrics/{id}', 'nope'));
      add(`aggregates ${i}`, [200], aggregates());
      add(
        `aggregator ${i}`,
        [0],
        aggregate({}, {}).then((r) => ({ status: r.status === 'error' ? 1 : 0 })),
      );
    }
    const results = await Promise.all(work.map((w) => w.run));
    running = false;
    await sampler;

    const unexpected = work
      .map((w, i) => ({ name: w.name, status: results[i]?.status }))
      .filter((r, i) => !work[i]?.expected.includes(r.status ?? -1));
    expect(unexpected).toEqual([]);
    expect(mostConnections).toBe(1);
    expect((await rowCounts(db)).events).toBe(8 * 80);

    const last = await aggregate({}, {});
    expect(last.status).toBe('done');
    expect(await dirtyCount(db)).toBe(0);
    expect(await contractViolations(db)).toEqual([]);
    expect(await storedHours(db)).toEqual(await oracleHours(db));
  });
});
