import { runAggregation } from '../../lib/app/aggregation';
import { errorCode } from '../../lib/db/errors';
import { createPostgresDb } from '../../lib/db/postgres';
import type { ClosableDb } from '../../lib/db/port';
import { bulkCreateEvents, ingestEventsPage } from '../../lib/app/ingest';
import { contractViolations, dirtyCount, oracleHours, storedHours } from '../aggregation/oracle';
import { prng } from '../support/random';
import { freshDatabase, type TestDatabase } from '../support/database';
import { tuning } from '../support/env';
import { rowCounts } from '../security/support/checksum';
import { makeEvents, pageOf, profileEmail, type PageEvent } from './support/pages';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * Eight ingest streams on eight connections deliver the same events again and again, in different
 * orders and overlapping pages (as overlapping sync jobs and API Gateway retries do), while the
 * aggregator runs in a loop on a ninth connection. Afterwards every event is stored exactly once,
 * the deliveries' own counts add up to that, no call failed (a deadlock, 40P01, would be one), and
 * after one last aggregator run every hourly rollup equals the oracle computed from raw events.
 */
const STREAMS = 8;
const POOL_EVENTS = 4800;
const PAGE_EVENTS = 200;

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** Stream s's pages: every event of the pool, in windows offset by half a page for odd streams, in its own order. */
function pagesOfStream(pool: readonly PageEvent[], stream: number): PageEvent[][] {
  const random = prng(1000 + stream);
  const offset = (stream % 2) * (PAGE_EVENTS / 2);
  const windows: PageEvent[][] = [];
  for (let start = 0; start < pool.length; start += PAGE_EVENTS) {
    const page: PageEvent[] = [];
    for (let i = 0; i < PAGE_EVENTS; i += 1) page.push(pool[(start + offset + i) % pool.length] as PageEvent);
    windows.push(shuffled(page, random));
  }
  return shuffled(windows, random);
}

interface StreamOutcome {
  readonly failures: { stream: number; code: string | undefined; message: string }[];
  readonly inserted: number;
  readonly duplicates: number;
  readonly deliveries: number;
  readonly aggregatorRuns: number;
}

/**
 * Runs one stream per client (each delivering its pages in turn) while the aggregator runs again and
 * again on the last client, until every stream is done.
 */
async function runStreams<P>(
  clients: readonly ClosableDb[],
  pagesOf: (stream: number) => readonly P[],
  deliver: (db: ClosableDb, page: P) => Promise<{ received: number; inserted: number; duplicates: number }>,
): Promise<StreamOutcome> {
  const failures: StreamOutcome['failures'] = [];
  let inserted = 0;
  let duplicates = 0;
  let deliveries = 0;
  let ingesting = true;
  let aggregatorRuns = 0;
  const aggregator = (async () => {
    const db = clients[STREAMS] as ClosableDb;
    while (ingesting) {
      try {
        // Small batches: many transactions that race with the ingests' dirty marks.
        await runAggregation(db, DEFAULT_ACCOUNT_ID, { batchBuckets: 25, timeBudgetMs: 60_000 });
        aggregatorRuns += 1;
      } catch (err) {
        failures.push({ stream: -1, code: errorCode(err), message: (err as Error).message });
      }
    }
  })();
  await Promise.all(
    Array.from({ length: STREAMS }, async (_, stream) => {
      const db = clients[stream] as ClosableDb;
      for (const page of pagesOf(stream)) {
        try {
          const counts = await deliver(db, page);
          inserted += counts.inserted;
          duplicates += counts.duplicates;
          deliveries += counts.received;
        } catch (err) {
          failures.push({ stream, code: errorCode(err), message: (err as Error).message });
        }
      }
    }),
  );
  ingesting = false;
  await aggregator;
  return { failures, inserted, duplicates, deliveries, aggregatorRuns };
}

async function expectRollupsEqualOracle(db: ClosableDb): Promise<void> {
  const last = await runAggregation(db, DEFAULT_ACCOUNT_ID, { batchBuckets: 10_000, timeBudgetMs: 60_000 });
  expect(last.status).toBe('done');
  expect(await dirtyCount(db)).toBe(0);
  expect(await contractViolations(db)).toEqual([]);
  const oracle = await oracleHours(db);
  expect(oracle.length).toBeGreaterThan(0);
  expect(await storedHours(db)).toEqual(oracle);
}

/** Klaviyo's Bulk Create Events body: each entry a profile (by email only) and its events. */
interface BulkEntry {
  readonly profile: number;
  readonly events: { name: string; time: string; uniqueId: string; value: number }[];
}

function bulkBody(entries: readonly BulkEntry[]): unknown {
  return {
    data: {
      type: 'event-bulk-create-job',
      attributes: {
        'events-bulk-create': {
          data: entries.map((entry) => ({
            type: 'event-bulk-create',
            attributes: {
              profile: {
                data: {
                  type: 'profile',
                  attributes: { email: profileEmail(entry.profile), first_name: `P${entry.profile}` },
                },
              },
              events: {
                data: entry.events.map((e) => ({
                  type: 'event',
                  attributes: {
                    properties: { Source: 'bulk' },
                    time: e.time,
                    value: e.value,
                    unique_id: e.uniqueId,
                    metric: { data: { type: 'metric', attributes: { name: e.name } } },
                  },
                })),
              },
            },
          })),
        },
      },
    },
  };
}

describe('8 concurrent ingest streams with re-deliveries while the aggregator runs', () => {
  let t: TestDatabase;
  const clients: ClosableDb[] = [];

  beforeAll(async () => {
    // DATABASE_URL too: ingest reads its limits from the configuration.
    t = await freshDatabase();
    for (let i = 0; i <= STREAMS; i += 1) {
      clients.push(createPostgresDb({ url: t.url, ...tuning, poolMax: 1, applicationName: `stream-${i}` }));
    }
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await t.drop();
  });

  it('events pages: stores every event once, never deadlocks, and rollups equal the raw-event oracle', async () => {
    const pool = makeEvents({
      prefix: 'cc',
      count: POOL_EVENTS,
      from: '2024-07-01T00:00:00Z',
      hours: 72,
      metrics: ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'],
      profiles: 150,
    });
    const outcome = await runStreams(
      clients,
      (stream) => pagesOfStream(pool, stream),
      (db, page) => ingestEventsPage(db, DEFAULT_ACCOUNT_ID, pageOf(page)),
    );

    // A deadlock shows here as code 40P01, with the statement that lost the cycle in the message.
    expect(outcome.failures).toEqual([]);
    expect(outcome.aggregatorRuns).toBeGreaterThan(0);
    expect(outcome.deliveries).toBe(STREAMS * POOL_EVENTS);
    // Exactly once across concurrent deliveries: one delivery of each event reported it inserted.
    expect(outcome.inserted).toBe(POOL_EVENTS);
    expect(outcome.duplicates).toBe(outcome.deliveries - POOL_EVENTS);
    expect(await rowCounts(t.db)).toMatchObject({ events: POOL_EVENTS, metrics: 6, profiles: 150 });
    await expectRollupsEqualOracle(t.db);
  }, 180_000);

  it('Bulk Create Events: profiles resolved by email and unique_ids stay exactly once under concurrency', async () => {
    const before = await rowCounts(t.db);
    const PROFILES = 120;
    const PER_PROFILE = 10;
    const random = prng(77);
    const names = ['Placed Order', 'Viewed Product', 'Opened Email'];
    const entries: BulkEntry[] = Array.from({ length: PROFILES }, (_, p) => ({
      profile: 1000 + p,
      events: Array.from({ length: PER_PROFILE }, (_, k) => ({
        name: names[(p + k) % names.length] as string,
        time: new Date(
          Date.parse('2024-07-05T00:00:00Z') + Math.floor(random() * 48) * 3_600_000 + k * 1000,
        ).toISOString(),
        uniqueId: `order-${p}-${k}`,
        value: Math.round(random() * 10_000) / 100,
      })),
    }));
    // 20 entries (200 events) per request; odd streams shift by half a request, each stream in its own order.
    const pagesOf = (stream: number): BulkEntry[][] => {
      const r = prng(2000 + stream);
      const offset = (stream % 2) * 10;
      const pages: BulkEntry[][] = [];
      for (let start = 0; start < entries.length; start += 20) {
        pages.push(
          shuffled(
            Array.from({ length: 20 }, (_, i) => entries[(start + offset + i) % entries.length] as BulkEntry),
            r,
          ),
        );
      }
      return shuffled(pages, r);
    };
    const outcome = await runStreams(clients, pagesOf, (db, page) =>
      bulkCreateEvents(db, DEFAULT_ACCOUNT_ID, bulkBody(page)),
    );

    expect(outcome.failures).toEqual([]);
    expect(outcome.deliveries).toBe(STREAMS * PROFILES * PER_PROFILE);
    expect(outcome.inserted).toBe(PROFILES * PER_PROFILE);
    expect(await rowCounts(t.db)).toMatchObject({
      events: before.events + PROFILES * PER_PROFILE,
      profiles: before.profiles + PROFILES,
      metrics: before.metrics + names.length,
    });
    await expectRollupsEqualOracle(t.db);
  }, 180_000);
});
