import type { CopyRow, Db, Row, SqlParam } from '../../lib/db/port';
import { HttpError } from '../../lib/klaviyo/errors';
import { ingestEventsPage, planEventsPage } from '../../lib/app/ingest';
import { createPostgresDb } from '../../lib/db/postgres';
import { insertEvents } from '../../lib/repositories/events';
import { upsertProfiles } from '../../lib/repositories/profiles';
import { whileHeld as whileHeldOn } from '../reliability/support/faults';
import { tuning } from '../support/env';
import { freshDatabase, type TestDatabase } from '../support/database';
import { eventsPage } from './helpers';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * The two ways a page's events reach klaviyo_events: by COPY into the table itself (postgres.js,
 * inside a transaction) and as one JSON parameter (the Data API, or outside a transaction). Both
 * must store exactly the same bytes, whatever the strings hold, and COPY must stay idempotent
 * under re-deliveries, repeats within a page and a concurrent writer of the same events.
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
const AWKWARD = [
  'tab\there',
  'new\nline',
  'cr\rlf\r\n',
  'back\\slash',
  '\\N',
  '\\.',
  '\\',
  'quote"s\'',
  'ünïcødé ✓ 😀 \u2028',
  '\u0001\u001f',
  ' ',
];

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
      nested: { list: [s, 1.5e-7, 12345678901234567000, true, null], deeper: { s } },
    };
    if (i % 5 === 0) event.attributes.value = '12.50';
    if (i % 7 === 0) event.attributes.event_properties.$value = '-0.0001';
  });
  page.included.forEach((resource, i) => {
    if (resource.type !== 'profile') return;
    const s = AWKWARD[i % AWKWARD.length] as string;
    Object.assign(resource.attributes, {
      first_name: s,
      last_name: i % 2 === 0 ? null : `${s}!`,
      title: s,
      last_event_date: '2024-03-01T10:00:00.123456+00:00',
      location: { city: s, latitude: 1.5e-7, nested: [s, null] },
      properties: { [`key ${s}`]: s, big: 12345678901234567000 },
    });
  });
  // A profile that events name but the page does not include: stored as a stub on both paths.
  page.data[5].relationships.profile.data.id = 'Pstub ✓';
  // An id with a tab and a backslash, and an event with no event_properties at all (its properties
  // column is {} while raw_data has none: the column cannot come from raw_data).
  page.data[1].id = 'id\twith\\odd ✓';
  delete page.data[2].attributes.event_properties;
  return page;
}

const EVENT_ROWS = `SELECT id, "timestamp", metric_id, profile_id, value::text AS value, value_currency, uuid, unique_id,
                           properties::text AS properties, raw_data::text AS raw_data
                      FROM klaviyo_events WHERE account_id = 'default' ORDER BY id, "timestamp"`;
const PENDING_ROWS = `SELECT metric_id, bucket, event_id, "timestamp", profile_id, value::text AS value
                        FROM klaviyo_aggregate_pending WHERE account_id = 'default' ORDER BY metric_id, bucket, event_id, "timestamp"`;
const DIRTY_ROWS = `SELECT metric_id, bucket FROM klaviyo_aggregate_dirty WHERE account_id = 'default' ORDER BY metric_id, bucket`;
// Every column but ingested_at (the time of the write), as text.
const PROFILE_ROWS = `SELECT id, email, phone_number, external_id, anonymous_id, first_name, last_name, organization, locale, title, image,
                             location::text AS location, properties::text AS properties, created::text AS created, updated::text AS updated,
                             last_event_date::text AS last_event_date, raw_data::text AS raw_data, is_stub
                        FROM klaviyo_profiles WHERE account_id = 'default' ORDER BY id`;

const LIMITS = { maxResources: 1000 };

/** How many events with ids starting `prefix` are stored, how many distinct ids, and their pending rows. */
async function storedOnce(db: Db, prefix: string) {
  const rows = await db.query<{ n: string; distinct_ids: string; pending: string }>(
    `SELECT (SELECT count(*) FROM klaviyo_events WHERE account_id = 'default' AND id LIKE $1) AS n,
            (SELECT count(DISTINCT id) FROM klaviyo_events WHERE account_id = 'default' AND id LIKE $1) AS distinct_ids,
            (SELECT count(*) FROM klaviyo_aggregate_pending WHERE account_id = 'default' AND event_id LIKE $1) AS pending`,
    [`${prefix}%`],
  );
  return rows[0];
}

async function stored(db: Db) {
  return {
    events: await db.query(EVENT_ROWS),
    pending: await db.query(PENDING_ROWS),
    dirty: await db.query(DIRTY_ROWS),
    profiles: await db.query(PROFILE_ROWS),
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

  const whileHeld = <H, W>(hold: (tx: Db) => Promise<H>, write: () => Promise<W>) =>
    whileHeldOn(viaDefault.url, hold, write);

  it('takes COPY on the postgres.js driver (JSON on the Data API) and stores the same bytes as the JSON path', async () => {
    const seen: Seen = { copiedInto: [], statements: [] };
    const seenJson: Seen = { copiedInto: [], statements: [] };
    const first = await ingestEventsPage(observed(viaDefault.db, seen), DEFAULT_ACCOUNT_ID, awkwardPage(), LIMITS);
    const second = await ingestEventsPage(
      observed(viaJson.db, seenJson, true),
      DEFAULT_ACCOUNT_ID,
      awkwardPage(),
      LIMITS,
    );
    expect(first).toEqual(second);
    expect(first).toMatchObject({ received: 40, inserted: 40, duplicates: 0 });

    const copies = viaDefault.db.driver === 'postgres';
    // The events, then their pending rows (lib/repositories/events.ts: markCopied).
    expect(seen.copiedInto).toEqual(copies ? ['klaviyo_profiles', 'klaviyo_events', 'klaviyo_aggregate_pending'] : []);
    expect(
      seen.statements.some((s) => s.includes('jsonb_to_recordset($2::jsonb) AS r(\n         id text, ts timestamptz')),
    ).toBe(!copies);
    // New events go in without a read of the stored keys first.
    expect(seen.statements.some((s) => s.includes('WITH ORDINALITY AS k(key, position)'))).toBe(false);
    expect(seenJson.copiedInto).toEqual([]);

    const a = await stored(viaDefault.db);
    const b = await stored(viaJson.db);
    expect(a.events).toHaveLength(40);
    expect(a.pending).toHaveLength(40);
    expect(a.profiles).toHaveLength(8);
    expect(a.profiles.filter((r) => r.is_stub).map((r) => r.id)).toEqual(['Pstub ✓']);
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
    const before = await viaDefault.db.query(
      `SELECT id, xmin::text AS xmin, ingested_at FROM klaviyo_events WHERE account_id = 'default' ORDER BY id, "timestamp"`,
    );
    const seen: Seen = { copiedInto: [], statements: [] };
    const again = await ingestEventsPage(observed(viaDefault.db, seen), DEFAULT_ACCOUNT_ID, awkwardPage(), LIMITS);
    expect(again).toMatchObject({ received: 40, inserted: 0, duplicates: 40 });
    // Refused at its first row, then the read finds every row stored: nothing is copied again.
    if (viaDefault.db.driver === 'postgres') expect(seen.copiedInto).toEqual(['klaviyo_events']);
    expect(
      await viaDefault.db.query(
        `SELECT id, xmin::text AS xmin, ingested_at FROM klaviyo_events WHERE account_id = 'default' ORDER BY id, "timestamp"`,
      ),
    ).toEqual(before);
  });

  it('stores an event a page repeats (same id and time) once', async () => {
    const page = eventsPage({ events: 12, prefix: 'rp', metrics: 2, profiles: 3 });
    page.data.push(structuredClone(page.data[4]), structuredClone(page.data[4]));
    const result = await ingestEventsPage(viaDefault.db, DEFAULT_ACCOUNT_ID, page, LIMITS);
    expect(result).toMatchObject({ received: 14, inserted: 12, duplicates: 2 });
    const rows = await viaDefault.db.query<{ n: string; pending: string }>(
      `SELECT (SELECT count(*) FROM klaviyo_events WHERE account_id = 'default' AND id LIKE 'rp%') AS n,
              (SELECT count(*) FROM klaviyo_aggregate_pending WHERE account_id = 'default' AND event_id LIKE 'rp%') AS pending`,
    );
    expect(rows).toEqual([{ n: '12', pending: '12' }]);
  });

  it('waits for a concurrent writer of the same events, then stores only the others', async () => {
    const page = eventsPage({ events: 40, prefix: 'cc', metrics: 3, profiles: 5 });
    const plan = planEventsPage(page, LIMITS);
    const seen: Seen = { copiedInto: [], statements: [] };
    // The metrics and profiles are stored first, so that the only rows both writers want are events.
    // The holder writes every other event and keeps its transaction open: the other writer's COPY
    // of them has to wait, and is refused once the holder commits.
    await ingestEventsPage(viaDefault.db, DEFAULT_ACCOUNT_ID, { data: [], included: page.included }, LIMITS);
    const [held, written] = await whileHeld(
      (tx) =>
        insertEvents(
          tx,
          DEFAULT_ACCOUNT_ID,
          plan.events.filter((_, i) => i % 2 === 0),
        ),
      () => ingestEventsPage(observed(viaDefault.db, seen), DEFAULT_ACCOUNT_ID, page, LIMITS),
    );
    expect(held).toEqual({ inserted: 20, duplicates: 0 });
    expect(written).toMatchObject({ received: 40, inserted: 20, duplicates: 20 });
    if (viaDefault.db.driver === 'postgres') {
      // Refused after the wait, then the read, then the other twenty by COPY.
      expect(seen.copiedInto).toEqual(['klaviyo_events', 'klaviyo_events', 'klaviyo_aggregate_pending']);
      expect(seen.statements.filter((s) => s.includes('WITH ORDINALITY AS k(key, position)'))).toHaveLength(1);
    } else {
      expect(seen.statements.some((s) => s.includes('ON CONFLICT (account_id, id, "timestamp") DO NOTHING'))).toBe(
        true,
      );
    }
    expect(await storedOnce(viaDefault.db, 'cc')).toEqual({ n: '40', distinct_ids: '40', pending: '40' });
  });

  it('takes ON CONFLICT when an event is committed between the read and the second COPY', async () => {
    const page = eventsPage({ events: 40, prefix: 'cr', metrics: 3, profiles: 5 });
    const plan = planEventsPage(page, LIMITS);
    const seen: Seen = { copiedInto: [], statements: [] };
    await ingestEventsPage(viaDefault.db, DEFAULT_ACCOUNT_ID, { data: [], included: page.included }, LIMITS);
    // Half the page is stored, so the first COPY is refused and the read runs.
    await insertEvents(
      viaDefault.db,
      DEFAULT_ACCOUNT_ID,
      plan.events.filter((_, i) => i % 2 === 0),
    );
    const late = plan.events[1];
    if (!late) throw new Error('the page has no second event');
    const racer = createPostgresDb({ url: viaDefault.url, ...tuning, poolMax: 1 });
    try {
      // Another writer commits one of the events the read has just found missing.
      const racing: Db = {
        ...viaDefault.db,
        transaction: (fn) =>
          observed(viaDefault.db, seen).transaction((tx) =>
            fn({
              ...tx,
              query: async <T extends Row>(text: string, params?: readonly SqlParam[]) => {
                const rows = await tx.query<T>(text, params);
                if (text.includes('WITH ORDINALITY AS k(key, position)'))
                  await insertEvents(racer, DEFAULT_ACCOUNT_ID, [late]);
                return rows;
              },
            }),
          ),
      };
      const written = await ingestEventsPage(racing, DEFAULT_ACCOUNT_ID, page, LIMITS);
      if (viaDefault.db.driver === 'postgres') {
        expect(written).toMatchObject({ received: 40, inserted: 19, duplicates: 21 });
        expect(seen.copiedInto).toEqual(['klaviyo_events', 'klaviyo_events']);
      } else {
        expect(written).toMatchObject({ received: 40, inserted: 20, duplicates: 20 });
      }
      expect(seen.statements.some((s) => s.includes('ON CONFLICT (account_id, id, "timestamp") DO NOTHING'))).toBe(
        true,
      );
    } finally {
      await racer.close();
    }
    expect(await storedOnce(viaDefault.db, 'cr')).toEqual({ n: '40', distinct_ids: '40', pending: '40' });
  });

  it('waits for a concurrent writer of the same new profiles, then stores each once (a refused COPY goes to INSERT ... ON CONFLICT DO NOTHING)', async () => {
    const page = eventsPage({ events: 30, prefix: 'cq', metrics: 2, profiles: 10 });
    const plan = planEventsPage(page, LIMITS);
    const seen: Seen = { copiedInto: [], statements: [] };
    await ingestEventsPage(
      viaDefault.db,
      DEFAULT_ACCOUNT_ID,
      { data: [], included: page.included.filter((r) => r.type === 'metric') },
      LIMITS,
    );
    const [held, written] = await whileHeld(
      (tx) =>
        upsertProfiles(
          tx,
          DEFAULT_ACCOUNT_ID,
          plan.profiles.filter((_, i) => i % 2 === 0),
        ),
      () => ingestEventsPage(observed(viaDefault.db, seen), DEFAULT_ACCOUNT_ID, page, LIMITS),
    );
    expect(held).toEqual({ written: 5 });
    // The holder's copies are the same as the page's: only the other five are written.
    expect(written).toMatchObject({ received: 30, inserted: 30, profiles_upserted: 5 });
    if (viaDefault.db.driver === 'postgres') {
      // Refused once (the holder's five), then the page's ten inserted unless stored; one read only.
      expect(seen.copiedInto).toEqual(['klaviyo_profiles', 'klaviyo_events', 'klaviyo_aggregate_pending']);
      expect(seen.statements.filter((s) => s.includes('ON CONFLICT (account_id, id) DO NOTHING'))).toHaveLength(1);
      expect(
        seen.statements.filter((s) => s.includes('FROM klaviyo_profiles p\n   WHERE p.account_id = $1 AND p.id = ANY')),
      ).toHaveLength(1);
    } else {
      expect(seen.statements.some((s) => s.includes('INSERT INTO klaviyo_profiles AS p'))).toBe(true);
    }
    const rows = await viaDefault.db.query<{ n: string; stubs: string }>(
      `SELECT count(*) AS n, count(*) FILTER (WHERE is_stub) AS stubs FROM klaviyo_profiles WHERE account_id = 'default' AND id LIKE 'Pcq%'`,
    );
    expect(rows).toEqual([{ n: '10', stubs: '0' }]);
  });

  it.each([
    ['older', '2001-01-01T00:00:00Z', 'page'],
    ['newer', '2039-01-01T00:00:00Z', 'held'],
  ])(
    "after a refused COPY, replaces a concurrent writer's %s copy only when the page's wins",
    async (_label, heldUpdated, winner) => {
      const prefix = heldUpdated.startsWith('2001') ? 'co' : 'cn';
      const page = eventsPage({ events: 12, prefix, metrics: 1, profiles: 4 });
      const plan = planEventsPage(page, LIMITS);
      await ingestEventsPage(
        viaDefault.db,
        DEFAULT_ACCOUNT_ID,
        { data: [], included: page.included.filter((r) => r.type === 'metric') },
        LIMITS,
      );
      const heldCopies = plan.profiles
        .filter((p) => !p.isStub)
        .slice(0, 2)
        .map((p) => (p.isStub ? p : { ...p, first_name: 'held', updated: heldUpdated }));
      const [, written] = await whileHeld(
        (tx) => upsertProfiles(tx, DEFAULT_ACCOUNT_ID, heldCopies),
        () => ingestEventsPage(viaDefault.db, DEFAULT_ACCOUNT_ID, page, LIMITS),
      );
      expect(written).toMatchObject({ received: 12, inserted: 12, profiles_upserted: winner === 'page' ? 4 : 2 });
      const names = await viaDefault.db.query<{ first_name: string | null }>(
        `SELECT first_name FROM klaviyo_profiles WHERE account_id = 'default' AND id = ANY($1::text[]) ORDER BY id`,
        [`{${heldCopies.map((p) => p.id).join(',')}}`],
      );
      const expected =
        winner === 'page'
          ? plan.profiles
              .filter((p) => !p.isStub)
              .slice(0, 2)
              .map((p) => (p.isStub ? null : p.first_name))
          : ['held', 'held'];
      expect(names.map((r) => r.first_name)).toEqual(expected);
    },
  );

  it('never gets a NUL to either path: validation answers 400 first and nothing is written', async () => {
    const page = awkwardPage();
    page.data[3].id = 'nul-page';
    page.data[3].attributes.event_properties.note = 'a\u0000b';
    const before = await stored(viaDefault.db);
    const err = await ingestEventsPage(viaDefault.db, DEFAULT_ACCOUNT_ID, page, LIMITS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect((err as HttpError).status).toBe(400);
    expect(await stored(viaDefault.db)).toEqual(before);
  });
});
