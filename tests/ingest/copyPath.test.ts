import type { CopyRow, Db } from '../../lib/db/port';
import { HttpError } from '../../lib/http/errors';
import { ingestEventsPage, planEventsPage } from '../../lib/ingest';
import { insertEvents } from '../../lib/repositories/events';
import { freshDatabase, type TestDatabase } from '../support/database';
import { eventsPage } from './helpers';

/**
 * The two ways a page's events reach klaviyo_events: by COPY into a staging table (postgres.js,
 * inside a transaction) and as one JSON parameter (the Data API, or outside a transaction). Both
 * must store exactly the same bytes, whatever the strings hold.
 */

interface Seen {
  copiedInto: string[];
  statements: string[];
}

/** The db, with its transactions observed; `withoutCopy` hides copyRows, which forces the JSON path. */
function observed(db: Db, seen: Seen, withoutCopy = false): Db {
  const wrap = (inner: Db): Db => {
    const out: Db = {
      driver: inner.driver,
      query: (text, params) => {
        seen.statements.push(text);
        return inner.query(text, params);
      },
      transaction: (fn) => inner.transaction((tx) => fn(wrap(tx))),
    };
    const copyRows = inner.copyRows?.bind(inner);
    if (copyRows && !withoutCopy) {
      out.copyRows = (table: string, columns: readonly string[], rows: readonly CopyRow[]) => {
        seen.copiedInto.push(table);
        return copyRows(table, columns, rows);
      };
    }
    return out;
  };
  return wrap(db);
}

// Every character that means something to COPY's text format or to JSON, and some that mean nothing.
const AWKWARD = ['tab\there', 'new\nline', 'cr\rlf\r\n', 'back\\slash', '\\N', '\\.', '\\', 'quote"s\'', 'ünïcødé ✓ 😀 \u2028', '\u0001\u001f', ' '];

function awkwardPage() {
  const page = eventsPage({ events: 40, prefix: 'cp', metrics: 3, profiles: 7 });
  page.data.forEach((event, i) => {
    const s = AWKWARD[i % AWKWARD.length] as string;
    event.attributes.uuid = `${s}-${i}`;
    event.attributes.event_properties = {
      ...event.attributes.event_properties,
      $event_id: `${s}#${i}`,
      $value_currency: s,
      [`key ${s}`]: s,
      nested: { list: [s, 1.5e-7, 12345678901234567890, true, null], deeper: { s } },
    };
    if (i % 5 === 0) event.attributes.value = '12.50';
    if (i % 7 === 0) event.attributes.event_properties.$value = '-0.0001';
  });
  // An id with a tab and a backslash, and an event with no event_properties at all (its properties
  // column is {} while raw_data has none: the column cannot come from raw_data).
  page.data[1].id = 'id\twith\\odd ✓';
  delete page.data[2].attributes.event_properties;
  return page;
}

const EVENT_ROWS = `SELECT id, "timestamp", metric_id, profile_id, value::text AS value, value_currency, uuid, unique_id,
                           properties::text AS properties, raw_data::text AS raw_data
                      FROM klaviyo_events ORDER BY id, "timestamp"`;
const PENDING_ROWS = `SELECT metric_id, bucket, event_id, "timestamp", profile_id, value::text AS value
                        FROM klaviyo_aggregate_pending ORDER BY metric_id, bucket, event_id, "timestamp"`;
const DIRTY_ROWS = 'SELECT metric_id, bucket FROM klaviyo_aggregate_dirty ORDER BY metric_id, bucket';

const LIMITS = { maxResources: 1000 };

async function stored(db: Db) {
  return {
    events: await db.query(EVENT_ROWS),
    pending: await db.query(PENDING_ROWS),
    dirty: await db.query(DIRTY_ROWS),
  };
}

describe('ingest: the COPY path and the JSON path', () => {
  let viaDefault: TestDatabase;
  let viaJson: TestDatabase;
  beforeAll(async () => {
    viaDefault = await freshDatabase({ setEnv: false });
    viaJson = await freshDatabase({ setEnv: false });
  });
  afterAll(async () => {
    await viaDefault.drop();
    await viaJson.drop();
  });

  it('takes COPY on the postgres.js driver (JSON on the Data API) and stores the same bytes as the JSON path', async () => {
    const seen: Seen = { copiedInto: [], statements: [] };
    const seenJson: Seen = { copiedInto: [], statements: [] };
    const first = await ingestEventsPage(observed(viaDefault.db, seen), awkwardPage(), LIMITS);
    const second = await ingestEventsPage(observed(viaJson.db, seenJson, true), awkwardPage(), LIMITS);
    expect(first).toEqual(second);
    expect(first).toMatchObject({ received: 40, inserted: 40, duplicates: 0 });

    const copies = viaDefault.db.driver === 'postgres';
    expect(seen.copiedInto).toEqual(copies ? ['klaviyo_events_staging'] : []);
    expect(seen.statements.some((s) => s.includes('jsonb_to_recordset($1::jsonb) AS r(\n         id text, ts timestamptz'))).toBe(!copies);
    expect(seenJson.copiedInto).toEqual([]);

    const a = await stored(viaDefault.db);
    const b = await stored(viaJson.db);
    expect(a.events).toHaveLength(40);
    expect(a.pending).toHaveLength(40);
    expect(a).toEqual(b);

    // And the bytes are the sender's, not merely the same mistake twice.
    const page = awkwardPage();
    const byId = new Map(a.events.map((r) => [r.id as string, r]));
    for (const event of page.data) {
      const row = byId.get(event.id);
      expect(row?.uuid).toBe(event.attributes.uuid);
      expect(JSON.parse(row?.raw_data as string)).toEqual(event);
      expect(JSON.parse(row?.properties as string)).toEqual(event.attributes.event_properties ?? {});
    }
    expect(byId.get('id\twith\\odd ✓')?.value_currency).toBe(AWKWARD[1]);
  });

  it('reports a re-delivery through COPY as duplicates and changes nothing', async () => {
    const before = await viaDefault.db.query('SELECT id, xmin::text AS xmin, ingested_at FROM klaviyo_events ORDER BY id, "timestamp"');
    const again = await ingestEventsPage(viaDefault.db, awkwardPage(), LIMITS);
    expect(again).toMatchObject({ received: 40, inserted: 0, duplicates: 40 });
    expect(await viaDefault.db.query('SELECT id, xmin::text AS xmin, ingested_at FROM klaviyo_events ORDER BY id, "timestamp"')).toEqual(before);
  });

  it('starts each batch of a transaction from an empty staging table', async () => {
    const page = eventsPage({ events: 30, prefix: 'tw', metrics: 2, profiles: 3 });
    const plan = planEventsPage(page, LIMITS);
    const results = await viaDefault.db.transaction(async (tx) => {
      await ingestEventsPage(tx, { data: [], included: page.included }, LIMITS);
      const one = await insertEvents(tx, plan.events.slice(0, 10));
      // Rows a first batch left staged would come back with the second one.
      await tx.query(`DELETE FROM klaviyo_aggregate_pending WHERE event_id LIKE 'tw%'`);
      await tx.query(`DELETE FROM klaviyo_events WHERE id LIKE 'tw%'`);
      const two = await insertEvents(tx, plan.events.slice(10, 30));
      return [one, two];
    });
    expect(results).toEqual([
      { inserted: 10, duplicates: 0 },
      { inserted: 20, duplicates: 0 },
    ]);
    const ids = await viaDefault.db.query<{ id: string }>(`SELECT id FROM klaviyo_events WHERE id LIKE 'tw%' ORDER BY id`);
    expect(ids.map((r) => r.id)).toEqual(plan.events.slice(10, 30).map((e) => e.id));
  });

  it('never gets a NUL to either path: validation answers 422 first and nothing is written', async () => {
    const page = awkwardPage();
    page.data[3].id = 'nul-page';
    page.data[3].attributes.event_properties.note = 'a\u0000b';
    const before = await stored(viaDefault.db);
    const err = await ingestEventsPage(viaDefault.db, page, LIMITS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect((err as HttpError).status).toBe(422);
    expect(await stored(viaDefault.db)).toEqual(before);
  });
});
