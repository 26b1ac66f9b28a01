import { runAggregation } from '../../lib/app/aggregation';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';
import { bulkCreateEvents, createEvent, ingestEventsPage } from '../../lib/app/ingest';
import { consumeIngestMessages } from '../../lib/app/ingest/consume';
import { ingestMessages } from '../../lib/app/ingest/enqueue';
import type { Db } from '../../lib/db/port';
import { insertEvents, type NewEvent } from '../../lib/repositories/events';
import { useFreshDatabase } from '../support/database';
import { storeEvents, type SimpleEvent } from '../support/events';
import { eventsPage } from '../ingest/helpers';
import { dailyDimensionViolations, dimensionContractViolations, oracleHours, storedHours } from './oracle';
import { NEIGHBOR_ACCOUNT } from '../support/neighbor';

/**
 * What ingest writes for the aggregator (migrations/0012_ingest_bookkeeping.sql, docs/bookkeeping.md):
 * each pending row carries the event's non-empty values of the registered dimension keys and the
 * registry's generation, and the aggregator's dimension statement adds the event from those values
 * instead of reading it back, unless the registry has changed since (then it reads the event).
 * Every test runs on both write paths: COPY (postgres project) and one JSON statement (data-api
 * project), and the first also on the JSON path inside the postgres project.
 */
const METRIC = 'BkMetric';
const FLOW = '$attributed_flow';
const CHANNEL = '$attributed_channel';
const NEW_KEY = 'Bk Custom Key';

function eventsOf(prefix: string, count: number): SimpleEvent[] {
  return Array.from({ length: count }, (_, i) => {
    const shapes: Record<string, unknown>[] = [
      { [FLOW]: `Flow ${i % 3}`, [CHANNEL]: 'email', [NEW_KEY]: `v${i % 2}`, Unregistered: 'x' },
      { [FLOW]: null, [CHANNEL]: '', [NEW_KEY]: 7 },
      { [FLOW]: 42, nested: { a: 1 }, [NEW_KEY]: { deep: true } },
      { [FLOW]: false, [CHANNEL]: 'sms' },
      {},
    ];
    return {
      id: `${prefix}${i}`,
      metricId: METRIC,
      profileId: `p${i % 4}`,
      at: new Date(Date.parse('2024-05-01T00:00:00Z') + i * 900_000),
      value: i % 5 === 0 ? null : `${i}.25`,
      properties: shapes[i % shapes.length],
    };
  });
}

/** The values a pending row must carry, computed here from the properties independently of the SQL. */
function expectedCarried(
  properties: Record<string, unknown>,
  registered: ReadonlySet<string>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(properties)) {
    if (registered.has(key) && value !== null && value !== '') out[key] = value;
  }
  return out;
}

async function registered(db: Db): Promise<Set<string>> {
  const rows = await db.query<{ dimension: string }>('SELECT dimension FROM klaviyo_rollup_dimensions');
  return new Set(rows.map((r) => r.dimension));
}

async function generation(db: Db): Promise<string> {
  const rows = await db.query<{ generation: string }>(
    'SELECT generation::text AS generation FROM klaviyo_rollup_dimension_generation',
  );
  return rows[0]?.generation ?? '';
}

async function pendingRows(db: Db): Promise<{ event_id: string; dimension_values: unknown; generation: string }[]> {
  return db.query(
    `SELECT event_id, dimension_values, dimension_generation::text AS generation
     FROM klaviyo_aggregate_pending ORDER BY event_id`,
  );
}

/** The transaction as the Data API's driver offers it: no COPY, so events take the JSON statement. */
function withoutCopy(db: Db): Db {
  return {
    driver: db.driver,
    query: (text, params) => db.query(text, params),
    transaction: (fn) => db.transaction((inner) => fn(withoutCopy(inner))),
  };
}

async function expectExact(db: Db): Promise<void> {
  expect(await dimensionContractViolations(db)).toEqual([]);
  expect(await dailyDimensionViolations(db)).toEqual([]);
  expect(await storedHours(db)).toEqual(await oracleHours(db));
}

describe('pending rows carry the registered keys’ values', () => {
  const t = useFreshDatabase();

  beforeAll(async () => {
    await t.db.query(`INSERT INTO klaviyo_rollup_dimensions (dimension, ready_at) VALUES ($1, now())`, [NEW_KEY]);
  });

  it.each([
    ['the driver’s own path', 'c', (db: Db) => db],
    ['the JSON statement', 'j', withoutCopy],
  ])('through %s: exactly the non-empty values of registered keys, and the generation', async (_, prefix, wrap) => {
    const events = eventsOf(prefix, 25);
    await storeEvents(wrap(t.db), events);
    const keys = await registered(t.db);
    const current = await generation(t.db);
    const rows = (await pendingRows(t.db)).filter((r) => r.event_id.startsWith(prefix));
    expect(rows).toHaveLength(events.length);
    const byId = new Map(events.map((e) => [e.id as string, e]));
    for (const row of rows) {
      const event = byId.get(row.event_id);
      expect({ id: row.event_id, values: row.dimension_values }).toEqual({
        id: row.event_id,
        values: expectedCarried(event?.properties ?? {}, keys),
      });
      expect(row.generation).toBe(current);
    }
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await expectExact(t.db);
  });

  it('through the queue consumer, which reads them from the properties as COPY text: the same', async () => {
    const events = eventsOf('q', 25);
    const page = {
      data: events.map((e) => ({
        type: 'event',
        id: e.id,
        attributes: {
          datetime: (e.at as Date).toISOString(),
          timestamp: (e.at as Date).getTime() / 1000,
          event_properties: e.properties,
          ...(e.value === null ? {} : { value: Number(e.value) }),
        },
        relationships: {
          metric: { data: { type: 'metric', id: e.metricId } },
          profile: { data: { type: 'profile', id: e.profileId } },
        },
      })),
    };
    const { messages } = ingestMessages('events-page', page, {
      accountId: DEFAULT_ACCOUNT_ID,
      acceptedAt: new Date(),
      requestId: 'q',
      maxMessageBytes: 262_144,
    });
    const outcome = await consumeIngestMessages(
      t.db,
      messages.map((body, i) => ({ messageId: `q-${i}`, body })),
    );
    expect(outcome.failed).toEqual([]);
    const keys = await registered(t.db);
    const rows = (await pendingRows(t.db)).filter((r) => r.event_id.startsWith('q'));
    expect(rows).toHaveLength(events.length);
    const byId = new Map(events.map((e) => [e.id as string, e]));
    for (const row of rows)
      expect({ id: row.event_id, values: row.dimension_values }).toEqual({
        id: row.event_id,
        values: expectedCarried(byId.get(row.event_id)?.properties ?? {}, keys),
      });
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await expectExact(t.db);
  });

  it('are what the aggregator adds: it does not read the events back', async () => {
    await storeEvents(t.db, eventsOf('tamper', 3));
    // A value no event has: only a statement that uses the carried values can write it.
    await t.db.query(
      `UPDATE klaviyo_aggregate_pending SET dimension_values = jsonb_build_object($1::text, 'Carried only')`,
      [FLOW],
    );
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    const rows = await t.db.query<{ event_count: string }>(
      `SELECT event_count::text FROM klaviyo_dimension_rollups WHERE dimension = $1 AND dimension_value = 'Carried only'`,
      [FLOW],
    );
    expect(rows).toEqual([{ event_count: '3' }]);
  });
});

describe('pending rows and dirty marks, whatever the spelling of the time', () => {
  const t = useFreshDatabase();

  // Times as a sender may spell them: offsets, seconds' fractions to the microsecond and beyond (the
  // database rounds a seventh digit, which can carry into the next hour), the last instant of an hour.
  const TIMES = [
    '2024-05-01T10:00:00Z',
    '2024-05-01T10:59:59.999999Z',
    '2024-05-01T12:30:00+05:30',
    '2024-04-30T23:10:00-03:00',
    // UTC spelled with an offset, the last instant of a day, and 24:00 (the next day's first hour).
    '2024-05-01T13:45:00+00:00',
    '2024-05-01T23:59:59.123+00:00',
    '2024-05-02T24:00:00Z',
    '2024-05-01T11:59:59.9999996Z',
  ];
  const AS_MAPPED = TIMES.filter((time) => !time.includes('.9999996'));

  function spelled(prefix: string, times: readonly string[]): NewEvent[] {
    return times.map((timestamp, i) => {
      const properties = { [FLOW]: `Flow ${i}`, [CHANNEL]: i % 2 === 0 ? '' : 'email' };
      return {
        id: `${prefix}${i}`,
        timestamp,
        metricId: METRIC,
        profileId: i % 2 === 0 ? `p${i}` : null,
        value: i % 3 === 0 ? null : `${i}.5`,
        valueCurrency: null,
        uuid: null,
        uniqueId: null,
        properties,
        rawData: {
          type: 'event',
          id: `${prefix}${i}`,
          attributes: { datetime: timestamp, event_properties: properties },
        },
      };
    });
  }

  /** Every pending row of the prefix's events that disagrees with its event, and every event without its mark. */
  async function disagreements(db: Db, prefix: string): Promise<unknown[]> {
    return db.query(
      `SELECT e.id, p.bucket, p."timestamp", p.profile_id, p.value, m.bucket AS mark
         FROM klaviyo_events e
         LEFT JOIN klaviyo_aggregate_pending p
           ON p.account_id = e.account_id AND p.event_id = e.id AND p."timestamp" = e."timestamp"
         LEFT JOIN klaviyo_aggregate_dirty m
           ON m.account_id = e.account_id AND m.metric_id = e.metric_id AND m.bucket = date_trunc('hour', e."timestamp", 'UTC')
        WHERE e.account_id = $1 AND e.id LIKE $2 || '%'
          AND (p.event_id IS NULL OR m.bucket IS NULL
               OR p.bucket <> date_trunc('hour', e."timestamp", 'UTC') OR p.metric_id <> e.metric_id
               OR p.profile_id IS DISTINCT FROM e.profile_id OR p.value IS DISTINCT FROM e.value)`,
      [DEFAULT_ACCOUNT_ID, prefix],
    );
  }

  it.each([
    ['the driver’s own path, times as the mapping writes them', 'wa', AS_MAPPED, (db: Db) => db],
    ['the driver’s own path, with a seventh digit of a second', 'wb', TIMES, (db: Db) => db],
    ['the JSON statement', 'wj', TIMES, withoutCopy],
  ])(
    'through %s: each event’s pending row in its own UTC hour, and its hour marked',
    async (_, prefix, times, wrap) => {
      const events = spelled(prefix, times);
      await t.db.query(
        `INSERT INTO klaviyo_metrics (account_id, id, name) VALUES ($1, $2, 'Bookkeeping') ON CONFLICT (account_id, id) DO NOTHING`,
        [DEFAULT_ACCOUNT_ID, METRIC],
      );
      const result = await t.db.transaction((tx) => insertEvents(wrap(tx), DEFAULT_ACCOUNT_ID, events));
      expect(result).toEqual({ inserted: events.length, duplicates: 0 });
      expect(await disagreements(t.db, prefix)).toEqual([]);
      const keys = await registered(t.db);
      const rows = (await pendingRows(t.db)).filter((r) => r.event_id.startsWith(prefix));
      expect(rows.map((r) => r.dimension_values)).toEqual(events.map((e) => expectedCarried(e.properties, keys)));
      await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
      await expectExact(t.db);
    },
  );
});

describe('the registry changing while events are pending', () => {
  const t = useFreshDatabase();

  it('registering a key already registered keeps the generation', async () => {
    const before = await generation(t.db);
    await t.db.query(
      `INSERT INTO klaviyo_rollup_dimensions (dimension) VALUES ($1), ($2) ON CONFLICT (dimension) DO NOTHING`,
      [FLOW, CHANNEL],
    );
    expect(await generation(t.db)).toBe(before);
  });

  it('a key registered after the events were written is counted from the events themselves', async () => {
    await storeEvents(t.db, eventsOf('r', 40));
    const before = await generation(t.db);
    await t.db.query(`INSERT INTO klaviyo_rollup_dimensions (dimension, ready_at) VALUES ($1, now())`, [NEW_KEY]);
    expect(await generation(t.db)).not.toBe(before);
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    const counted = await t.db.query<{ n: string }>(
      `SELECT sum(event_count)::text AS n FROM klaviyo_dimension_rollups WHERE dimension = $1`,
      [NEW_KEY],
    );
    expect(counted).toEqual([{ n: '24' }]);
    await expectExact(t.db);
  });

  it('a key removed and registered again, and rows written before migration 0012, are read from the events', async () => {
    await storeEvents(t.db, eventsOf('s', 40));
    await t.db.query(`DELETE FROM klaviyo_rollup_dimensions WHERE dimension = $1`, [NEW_KEY]);
    await t.db.query(`INSERT INTO klaviyo_rollup_dimensions (dimension, ready_at) VALUES ($1, now())`, [NEW_KEY]);
    await storeEvents(t.db, eventsOf('u', 20));
    // As a row written before the migration: nothing carried.
    await t.db.query(
      `UPDATE klaviyo_aggregate_pending SET dimension_values = NULL, dimension_generation = NULL WHERE event_id LIKE 'u%'`,
    );
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await expectExact(t.db);
  });
});

describe('every stored event names a stored metric and profile (migration 0012 dropped the foreign keys)', () => {
  const t = useFreshDatabase();

  async function orphans(db: Db): Promise<Record<string, unknown>[]> {
    return db.query(
      `SELECT e.id, e.metric_id, e.profile_id FROM klaviyo_events e
       WHERE NOT EXISTS (SELECT 1 FROM klaviyo_metrics m WHERE m.account_id = e.account_id AND m.id = e.metric_id)
          OR (e.profile_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM klaviyo_profiles p
                                                       WHERE p.account_id = e.account_id AND p.id = e.profile_id))
       ORDER BY e.id`,
    );
  }

  it('on every ingest path, with the metrics and profiles named but not included', async () => {
    await ingestEventsPage(
      t.db,
      DEFAULT_ACCOUNT_ID,
      eventsPage({ events: 30, prefix: 'fk', includeMetrics: false, includeProfiles: false }),
    );
    await ingestEventsPage(
      t.db,
      DEFAULT_ACCOUNT_ID,
      eventsPage({ events: 30, prefix: 'fj', includeMetrics: true, includeProfiles: false }),
    );
    const attributes = (name: string, email: string, uniqueId: string) => ({
      properties: { source: 'test' },
      time: '2024-06-01T10:00:00Z',
      unique_id: uniqueId,
      metric: { data: { type: 'metric', attributes: { name } } },
      profile: { data: { type: 'profile', attributes: { email } } },
    });
    await createEvent(t.db, DEFAULT_ACCOUNT_ID, {
      data: { type: 'event', attributes: attributes('Fk Created', 'fk1@example.com', 'u1') },
    });
    await bulkCreateEvents(t.db, DEFAULT_ACCOUNT_ID, {
      data: {
        type: 'event-bulk-create-job',
        attributes: {
          'events-bulk-create': {
            data: [
              {
                type: 'event-bulk-create',
                attributes: {
                  profile: { data: { type: 'profile', attributes: { email: 'fk2@example.com' } } },
                  events: { data: [{ type: 'event', attributes: attributes('Fk Bulk', 'fk2@example.com', 'u2') }] },
                },
              },
            ],
          },
        },
      },
    });
    // The same Klaviyo ids in a second account: its own stubs, not the first account's rows.
    await ingestEventsPage(
      t.db,
      'bk-other-account',
      eventsPage({ events: 30, prefix: 'fk', includeMetrics: false, includeProfiles: false }),
    );
    const stored = await t.db.query<{ n: string }>('SELECT count(*) AS n FROM klaviyo_events WHERE account_id <> $1', [
      NEIGHBOR_ACCOUNT,
    ]);
    expect(stored).toEqual([{ n: '92' }]);
    expect(await orphans(t.db)).toEqual([]);
  });
});
