import { handler } from '../../functions/ingest';
import { getProfileById } from '../../lib/repositories/profiles';
import { useFreshDatabase } from '../support/database';
import { invoke } from '../support/http';
import { checksums, eventsPage } from './helpers';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * What ingest writes: idempotent re-deliveries, values, stubs filled in later, newest `updated`
 * wins, Klaviyo's Create Event / Bulk Create de-duplication and profile resolution, and a transient
 * failure part-way that writes nothing and answers 503.
 */
const post = (path: string, body: unknown) => invoke(handler, { method: 'POST', path, body, key: 'write' });

function createEventBody(options: {
  name: string;
  email?: string;
  phone?: string;
  externalId?: string;
  time?: string;
  uniqueId?: string;
  value?: number;
}) {
  return {
    data: {
      type: 'event',
      attributes: {
        properties: { source: 'test' },
        ...(options.time ? { time: options.time } : {}),
        ...(options.uniqueId ? { unique_id: options.uniqueId } : {}),
        ...(options.value !== undefined ? { value: options.value } : {}),
        metric: { data: { type: 'metric', attributes: { name: options.name } } },
        profile: {
          data: {
            type: 'profile',
            attributes: {
              ...(options.email ? { email: options.email } : {}),
              ...(options.phone ? { phone_number: options.phone } : {}),
              ...(options.externalId ? { external_id: options.externalId } : {}),
            },
          },
        },
      },
    },
  };
}

describe('ingest writes', () => {
  const t = useFreshDatabase();

  it('leaves identical rows after three deliveries of the same page, and reports the repeats as duplicates', async () => {
    const page = eventsPage({ events: 300, prefix: 'idem', metrics: 4, profiles: 30 });
    const first = await post('/api/events', page);
    expect(first.status).toBe(200);
    expect(first.body.data.attributes).toEqual({
      received: 300,
      inserted: 300,
      duplicates: 0,
      metrics_upserted: 4,
      profiles_upserted: 30,
    });
    const once = await checksums(t.db);
    for (let delivery = 2; delivery <= 3; delivery += 1) {
      const again = await post('/api/events', page);
      expect(again.body.data.attributes).toEqual({
        received: 300,
        inserted: 0,
        duplicates: 300,
        metrics_upserted: 0,
        profiles_upserted: 0,
      });
      expect(await checksums(t.db)).toEqual(once);
    }
    // A page that repeats one of its own events stores it once.
    const repeated = eventsPage({ events: 2, prefix: 'rep' });
    repeated.data.push(repeated.data[0]);
    expect((await post('/api/events', repeated)).body.data.attributes).toMatchObject({
      received: 3,
      inserted: 2,
      duplicates: 1,
    });
  });

  it('takes the value from attributes.value, else event_properties.$value, and keeps unknown fields in raw_data', async () => {
    const page = eventsPage({ events: 3, prefix: 'val' });
    page.data[0].attributes.value = 42.5;
    page.data[0].attributes.event_properties.$value = 1;
    page.data[1].attributes.event_properties.$value = '19.90';
    page.data[2].attributes.event_properties.$value = 'n/a';
    page.data[2].attributes.brand_new_field = { kept: true };
    page.data[2].meta = { cursor: 'x' };
    expect((await post('/api/events', page)).status).toBe(200);
    const rows = await t.db.query<{ id: string; value: string | null; raw_data: Record<string, unknown> }>(
      `SELECT id, value, raw_data FROM klaviyo_events WHERE account_id = 'default' AND id LIKE 'val%' ORDER BY id`,
    );
    expect(rows.map((r) => r.value)).toEqual(['42.5', '19.90', null]);
    expect(rows[2]?.raw_data).toEqual(page.data[2]);
  });

  it('keeps events whose metric and profile are unknown as minimal rows, filled in later whatever their updated', async () => {
    const page = eventsPage({
      events: 2,
      prefix: 'stub',
      metrics: 1,
      profiles: 1,
      includeMetrics: false,
      includeProfiles: false,
    });
    const res = await post('/api/events', page);
    expect(res.body.data.attributes).toEqual({
      received: 2,
      inserted: 2,
      duplicates: 0,
      metrics_upserted: 1,
      profiles_upserted: 1,
    });
    expect(
      await t.db.query(
        `SELECT id, name, is_stub, raw_data FROM klaviyo_metrics WHERE account_id = 'default' AND id = 'Mstub0'`,
      ),
    ).toEqual([{ id: 'Mstub0', name: 'Mstub0', is_stub: true, raw_data: null }]);
    expect(
      await t.db.query(
        `SELECT id, email, is_stub, last_event_date FROM klaviyo_profiles WHERE account_id = 'default' AND id = 'Pstub0'`,
      ),
    ).toEqual([{ id: 'Pstub0', email: null, is_stub: true, last_event_date: null }]);
    // Derived from the stub's events when read.
    expect((await getProfileById(t.db, DEFAULT_ACCOUNT_ID, 'Pstub0'))?.lastEventDate).toEqual(
      new Date('2024-03-10T00:01:01Z'),
    );

    // The real resources arrive later, with an `updated` older than the events: they fill the stubs in.
    const metric = {
      type: 'metric',
      id: 'Mstub0',
      attributes: { name: 'Placed Order', updated: '2001-01-01T00:00:00Z' },
    };
    expect((await post('/api/metrics', { data: [metric] })).body.data.attributes.metrics_upserted).toBe(1);
    const profile = {
      type: 'profile',
      id: 'Pstub0',
      attributes: { email: 'late@example.com', updated: '2001-01-01T00:00:00Z' },
    };
    expect((await post('/api/profiles', { data: [profile] })).body.data.attributes.profiles_upserted).toBe(1);
    expect(
      await t.db.query(
        `SELECT name, is_stub, raw_data FROM klaviyo_metrics WHERE account_id = 'default' AND id = 'Mstub0'`,
      ),
    ).toEqual([{ name: 'Placed Order', is_stub: false, raw_data: metric }]);
    // last_event_date, learnt from the events, is not moved back by a profile that does not state one.
    expect(
      await t.db.query(`SELECT email, is_stub FROM klaviyo_profiles WHERE account_id = 'default' AND id = 'Pstub0'`),
    ).toEqual([{ email: 'late@example.com', is_stub: false }]);
    expect((await getProfileById(t.db, DEFAULT_ACCOUNT_ID, 'Pstub0'))?.lastEventDate).toEqual(
      new Date('2024-03-10T00:01:01Z'),
    );
    // A later page that only references them again does not turn them back into stubs.
    await post(
      '/api/events',
      eventsPage({
        events: 1,
        prefix: 'stub',
        metrics: 1,
        profiles: 1,
        includeMetrics: false,
        includeProfiles: false,
        start: '2024-05-01T00:00:00Z',
      }),
    );
    expect(
      await t.db.query(
        `SELECT is_stub FROM klaviyo_profiles WHERE account_id = 'default' AND id = 'Pstub0' UNION ALL SELECT is_stub FROM klaviyo_metrics WHERE account_id = 'default' AND id = 'Mstub0'`,
      ),
    ).toEqual([{ is_stub: false }, { is_stub: false }]);
  });

  it('writes no profile row for a later page that names known, unchanged profiles; their last_event_date still moves on', async () => {
    await post('/api/events', eventsPage({ events: 4, prefix: 'known', profiles: 2 }));
    const profileVersions = () =>
      t.db.query(
        `SELECT id, xmin::text AS version, ingested_at FROM klaviyo_profiles WHERE account_id = 'default' AND id LIKE 'Pknown%' ORDER BY id`,
      );
    const before = await profileVersions();
    expect(before).toHaveLength(2);

    const later = await post(
      '/api/events',
      eventsPage({ events: 4, prefix: 'known', profiles: 2, start: '2024-06-01T00:00:00Z' }),
    );
    // The same ids at another time are other events (the key is (id, timestamp)): four new rows.
    expect(later.body.data.attributes).toMatchObject({ inserted: 4, profiles_upserted: 0 });
    expect(await profileVersions()).toEqual(before);
    expect((await getProfileById(t.db, DEFAULT_ACCOUNT_ID, 'Pknown1'))?.lastEventDate).toEqual(
      new Date(Date.parse('2024-06-01T00:00:00Z') + 3 * 61_000),
    );
  });

  it('lets the newest updated win, whatever order the copies arrive in', async () => {
    const copy = (name: string, updated: string) => ({
      type: 'profile',
      id: 'Pnewest',
      attributes: { first_name: name, updated },
    });
    const firstName = async () =>
      (
        await t.db.query<{ first_name: string }>(
          `SELECT first_name FROM klaviyo_profiles WHERE account_id = 'default' AND id = 'Pnewest'`,
        )
      )[0]?.first_name;

    expect(
      (await post('/api/profiles', { data: [copy('February', '2024-02-01T00:00:00Z')] })).body.data.attributes
        .profiles_upserted,
    ).toBe(1);
    const before = await checksums(t.db);
    expect(
      (await post('/api/profiles', { data: [copy('January', '2024-01-01T00:00:00Z')] })).body.data.attributes
        .profiles_upserted,
    ).toBe(0);
    expect(await checksums(t.db)).toEqual(before);
    // Two copies in one request: the newer one wins even when it comes first.
    await post('/api/profiles', {
      data: [copy('April', '2024-04-01T00:00:00Z'), copy('March', '2024-03-01T00:00:00Z')],
    });
    expect(await firstName()).toBe('April');
    // Newer by microseconds only (a JS Date would see them as equal).
    await post('/api/profiles', { data: [copy('A', '2024-05-01T00:00:00.000100Z')] });
    await post('/api/profiles', { data: [copy('B', '2024-05-01T00:00:00.000900Z')] });
    expect(await firstName()).toBe('B');
    // The same rule for profiles included in an events page.
    const page = eventsPage({ events: 1, prefix: 'newest', profiles: 1 });
    page.included = page.included.filter((r) => r.type === 'metric');
    page.included.push(copy('Older in a page', '2024-01-15T00:00:00Z'));
    page.data[0].relationships.profile.data.id = 'Pnewest';
    await post('/api/events', page);
    expect(await firstName()).toBe('B');

    const metric = (name: string, updated: string) => ({
      type: 'metric',
      id: 'Mnewest',
      attributes: { name, updated },
    });
    await post('/api/metrics', { data: [metric('New name', '2024-02-01T00:00:00Z')] });
    expect(
      (await post('/api/metrics', { data: [metric('Old name', '2023-01-01T00:00:00Z')] })).body.data.attributes
        .metrics_upserted,
    ).toBe(0);
    expect(
      await t.db.query(`SELECT name FROM klaviyo_metrics WHERE account_id = 'default' AND id = 'Mnewest'`),
    ).toEqual([{ name: 'New name' }]);
  });

  it('de-duplicates Create Event by unique_id per profile and metric, else by the time to the second', async () => {
    const email = 'Dedup@Example.com';
    const a = await post(
      '/api/events',
      createEventBody({ name: 'Started Checkout', email, uniqueId: 'order-1', time: '2024-06-01T10:00:00Z', value: 5 }),
    );
    expect(a.status).toBe(202);
    expect(a.raw.body).toBe('');
    // Same unique_id, another time and value: Klaviyo keeps the first.
    await post(
      '/api/events',
      createEventBody({
        name: 'Started Checkout',
        email: 'dedup@example.com',
        uniqueId: 'order-1',
        time: '2024-06-02T10:00:00Z',
        value: 6,
      }),
    );
    // Same unique_id under another metric, and another unique_id: two more events.
    await post(
      '/api/events',
      createEventBody({ name: 'Placed Order', email, uniqueId: 'order-1', time: '2024-06-01T10:00:00Z' }),
    );
    await post(
      '/api/events',
      createEventBody({ name: 'Started Checkout', email, uniqueId: 'order-2', time: '2024-06-01T10:00:00Z' }),
    );
    // Without unique_id: the same second is the same event, another second another one.
    await post('/api/events', createEventBody({ name: 'Started Checkout', email, time: '2024-06-03T10:00:00.100Z' }));
    await post('/api/events', createEventBody({ name: 'Started Checkout', email, time: '2024-06-03T10:00:00.900Z' }));
    await post('/api/events', createEventBody({ name: 'Started Checkout', email, time: '2024-06-03T10:00:01Z' }));

    const rows = await t.db.query<{
      name: string;
      unique_id: string | null;
      timestamp: Date;
      value: string | null;
      profile_id: string;
      metric_id: string;
    }>(
      `SELECT m.name, e.unique_id, e."timestamp", e.value, e.profile_id, e.metric_id
         FROM klaviyo_events e JOIN klaviyo_metrics m ON m.account_id = e.account_id AND m.id = e.metric_id
         JOIN klaviyo_profiles p ON p.account_id = e.account_id AND p.id = e.profile_id
        WHERE e.account_id = 'default' AND lower(p.email) = 'dedup@example.com' ORDER BY m.name, e."timestamp", e.unique_id`,
    );
    expect(rows.map((r) => [r.name, r.unique_id, r.timestamp.toISOString(), r.value])).toEqual([
      ['Placed Order', 'order-1', '2024-06-01T10:00:00.000Z', null],
      ['Started Checkout', 'order-1', '2024-06-01T10:00:00.000Z', '5'],
      ['Started Checkout', 'order-2', '2024-06-01T10:00:00.000Z', null],
      ['Started Checkout', null, '2024-06-03T10:00:00.000Z', null],
      ['Started Checkout', null, '2024-06-03T10:00:01.000Z', null],
    ]);
    // One profile (emails match case-insensitively) with a Klaviyo-style id; metrics with 6-character ids.
    expect(new Set(rows.map((r) => r.profile_id)).size).toBe(1);
    expect(rows[0]?.profile_id).toMatch(/^[0-7][0-9A-HJKMNP-TV-Z]{25}$/);
    for (const r of rows) expect(r.metric_id).toMatch(/^[0-9A-Za-z]{6}$/);
    expect(
      await t.db.query(
        `SELECT count(*)::int AS n FROM klaviyo_metrics WHERE account_id = 'default' AND name = 'Started Checkout'`,
      ),
    ).toEqual([{ n: 1 }]);
  });

  it('resolves Create Event profiles by id, then email, phone_number and external_id', async () => {
    // A write also stores the identifiers it names on the profile it resolves to, so each case has its own profiles.
    await post('/api/profiles', {
      data: [
        { type: 'profile', id: 'A1', attributes: { email: 'a1@example.com' } },
        { type: 'profile', id: 'A2', attributes: {} },
        { type: 'profile', id: 'B1', attributes: { email: 'b1@example.com' } },
        { type: 'profile', id: 'B2', attributes: { phone_number: '+15550002' } },
        { type: 'profile', id: 'C1', attributes: { phone_number: '+15550003' } },
        { type: 'profile', id: 'C2', attributes: { external_id: 'c-2' } },
        { type: 'profile', id: 'D1', attributes: { external_id: 'd-1' } },
      ],
    });
    const send = (profile: Record<string, unknown>, second: number) =>
      post('/api/events', {
        data: {
          type: 'event',
          attributes: {
            properties: {},
            time: `2024-07-01T00:00:${String(second).padStart(2, '0')}Z`,
            metric: { data: { type: 'metric', attributes: { name: 'Resolved' } } },
            profile: { data: { type: 'profile', ...profile } },
          },
        },
      });
    await send({ id: 'A2', attributes: { email: 'a1@example.com' } }, 1); // id beats email
    await send({ attributes: { email: 'B1@Example.com', phone_number: '+15550002' } }, 2); // email beats phone
    await send({ attributes: { phone_number: '+15550003', external_id: 'c-2' } }, 3); // phone beats external_id
    await send({ attributes: { external_id: 'd-1' } }, 4);
    await send({ attributes: { external_id: 'x-new', first_name: 'New' } }, 5); // none: created
    const rows = await t.db.query<{ profile_id: string }>(
      `SELECT e.profile_id FROM klaviyo_events e JOIN klaviyo_metrics m ON m.account_id = e.account_id AND m.id = e.metric_id
        WHERE e.account_id = 'default' AND m.name = 'Resolved' ORDER BY e."timestamp"`,
    );
    expect(rows.slice(0, 4).map((r) => r.profile_id)).toEqual(['A2', 'B1', 'C1', 'D1']);
    const created = await t.db.query(
      `SELECT external_id, first_name, is_stub FROM klaviyo_profiles WHERE account_id = 'default' AND id = $1`,
      [rows[4]?.profile_id ?? ''],
    );
    expect(created).toEqual([{ external_id: 'x-new', first_name: 'New', is_stub: false }]);
  });

  it('processes Bulk Create Events synchronously with 202, idempotently', async () => {
    const body = {
      data: {
        type: 'event-bulk-create-job',
        attributes: {
          'events-bulk-create': {
            data: ['bulk1@example.com', 'bulk2@example.com'].map((email, i) => ({
              type: 'event-bulk-create',
              attributes: {
                profile: { data: { type: 'profile', attributes: { email } } },
                events: {
                  data: [0, 1, 2].map((k) => ({
                    type: 'event',
                    attributes: {
                      properties: { k },
                      time: `2024-08-0${i + 1}T0${k}:00:00Z`,
                      value: k + 0.25,
                      unique_id: `b-${i}-${k}`,
                      metric: { data: { type: 'metric', attributes: { name: 'Bulk Metric' } } },
                    },
                  })),
                },
              },
            })),
          },
        },
      },
    };
    const res = await post('/api/event-bulk-create-jobs', body);
    expect(res.status).toBe(202);
    const stored = await t.db.query<{ n: number; total: string }>(
      `SELECT count(*)::int AS n, sum(e.value)::text AS total FROM klaviyo_events e
        JOIN klaviyo_metrics m ON m.account_id = e.account_id AND m.id = e.metric_id
        WHERE e.account_id = 'default' AND m.name = 'Bulk Metric'`,
    );
    expect(stored).toEqual([{ n: 6, total: '7.50' }]);
    const once = await checksums(t.db);
    expect((await post('/api/event-bulk-create-jobs', body)).status).toBe(202);
    expect(await checksums(t.db)).toEqual(once);
  });

  it('writes nothing and answers 503 with Retry-After when the database fails part-way with a transient error', async () => {
    // The events statement fails after the metrics and profiles of the same request were written.
    await t.db.query(`CREATE FUNCTION fail_transiently() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'simulated serialization failure' USING ERRCODE = '40001'; END $$`);
    await t.db.query(
      `CREATE TRIGGER fail_transiently BEFORE INSERT ON klaviyo_events FOR EACH STATEMENT EXECUTE FUNCTION fail_transiently()`,
    );
    const page = eventsPage({ events: 5, prefix: 'fail', metrics: 2, profiles: 2 });
    const before = await checksums(t.db);
    const res = await post('/api/events', page);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    expect(res.body.errors[0].status).toBe('503');
    expect(await checksums(t.db)).toEqual(before);

    await t.db.query(`DROP TRIGGER fail_transiently ON klaviyo_events`);
    const retried = await post('/api/events', page);
    expect(retried.body.data.attributes).toEqual({
      received: 5,
      inserted: 5,
      duplicates: 0,
      metrics_upserted: 2,
      profiles_upserted: 2,
    });
  });
});
