import * as events from '../../functions/events';
import { handler as ingest } from '../../functions/ingest';
import * as metrics from '../../functions/metrics';
import * as profiles from '../../functions/profiles';
import { runAggregation } from '../../lib/app/aggregation';
import { closeDb } from '../../lib/db';
import type { HttpHandler } from '../../lib/http/handler';
import { freshDatabase, type TestDatabase } from '../support/database';
import { invoke, type InvokeResult } from '../support/http';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * The GET routes over data that arrived the way production data does: Klaviyo event pages posted
 * to POST /api/events. Expected answers are computed in the test from the events it posted.
 */
const BASE = '2024-03-10T00:00:00Z';
const M_ORDER = 'MtOrd1';
const M_OPEN = 'MtOpn2';
const M_STUB = 'MtStb3'; // referenced by events, never sent as a resource
const P_SARAH = '01HPSARAH000000000000000AA';
const P_JOHN = '01HPJOHN0000000000000000BB';
const P_STUB = '01HPSTUB0000000000000000CC';

interface Sent {
  readonly id: string;
  readonly ms: number;
  readonly metricId: string;
  readonly profileId: string | null;
}

const metricResources = [
  {
    type: 'metric',
    id: M_ORDER,
    attributes: {
      name: 'Placed Order',
      created: '2023-01-01T00:00:00+00:00',
      updated: '2023-06-01T00:00:00+00:00',
      integration: { name: 'Shopify', category: 'eCommerce' },
    },
    links: { self: `https://a.klaviyo.com/api/metrics/${M_ORDER}` },
  },
  {
    type: 'metric',
    id: M_OPEN,
    attributes: {
      name: 'Opened Email',
      created: '2023-01-01T00:00:00+00:00',
      updated: '2023-01-01T00:00:00+00:00',
      integration: { name: 'Klaviyo', category: 'Internal' },
    },
    links: { self: `https://a.klaviyo.com/api/metrics/${M_OPEN}` },
  },
];

function profileResource(id: string, email: string, phone: string, externalId: string) {
  return {
    type: 'profile',
    id,
    attributes: {
      email,
      phone_number: phone,
      external_id: externalId,
      first_name: 'First',
      last_name: 'Last',
      created: '2023-02-01T00:00:00+00:00',
      updated: '2023-02-02T00:00:00+00:00',
      location: { city: 'New York' },
      properties: { tier: 'gold' },
    },
    links: { self: `https://a.klaviyo.com/api/profiles/${id}` },
  };
}

const profileResources = [
  profileResource(P_SARAH, 'Sarah.Mason@Example.com', '+15005550006', 'ext-sarah'),
  profileResource(P_JOHN, 'john@example.com', '+15005550007', 'ext-john'),
];

/** 60 events over three days; every fifth shares its second with the previous one (ties on time order by id). */
function buildEvents(): { sent: Sent[]; resources: Record<string, unknown>[] } {
  const sent: Sent[] = [];
  const resources: Record<string, unknown>[] = [];
  let ms = Date.parse(BASE);
  for (let i = 0; i < 60; i += 1) {
    if (i % 5 !== 0) ms += 3_600_000 + i * 1000;
    const id = `EV${String((i * 37) % 60).padStart(3, '0')}x`;
    const metricId = i % 3 === 0 ? M_OPEN : i % 11 === 0 ? M_STUB : M_ORDER;
    const profileId = i % 2 === 0 ? P_SARAH : i % 7 === 0 ? P_STUB : i % 13 === 0 ? null : P_JOHN;
    sent.push({ id, ms, metricId, profileId });
    resources.push({
      type: 'event',
      id,
      attributes: {
        timestamp: ms / 1000,
        datetime: new Date(ms).toISOString().replace('.000Z', '+00:00'),
        event_properties: {
          $value: (i * 7.25).toFixed(2),
          $event_id: `order-${i}`,
          Items: ['a', `b${i}`],
          nested: { n: i },
        },
        uuid: `uuid-${id}`,
      },
      relationships: {
        metric: {
          data: { type: 'metric', id: metricId },
          links: { self: `https://a.klaviyo.com/api/events/${id}/relationships/metric` },
        },
        ...(profileId ? { profile: { data: { type: 'profile', id: profileId } } } : {}),
      },
      links: { self: `https://a.klaviyo.com/api/events/${id}` },
    });
  }
  return { sent, resources };
}

const { sent: SENT, resources: EVENT_RESOURCES } = buildEvents();

const byTimeThenId = (a: Sent, b: Sent) => a.ms - b.ms || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const ascending = [...SENT].sort(byTimeThenId);

async function get(
  handler: HttpHandler,
  path: string,
  query: Record<string, string> = {},
  pathParams?: Record<string, string>,
): Promise<InvokeResult> {
  return invoke(handler, { method: 'GET', path, query, key: 'read', ...(pathParams ? { pathParams } : {}) });
}

/** Follows links.next from the first page; returns every page's body. */
async function allPages(
  handler: HttpHandler,
  path: string,
  query: Record<string, string>,
  pathParams?: Record<string, string>,
) {
  const pages: InvokeResult['body'][] = [];
  let q: Record<string, string> | undefined = query;
  while (q) {
    const res = await get(handler, path, q, pathParams);
    expect(res.status).toBe(200);
    pages.push(res.body);
    const next: string | undefined = res.body.links.next;
    if (next === undefined) q = undefined;
    else q = Object.fromEntries(new URL(next, 'http://x').searchParams.entries());
    expect(pages.length).toBeLessThan(100);
  }
  return pages;
}

async function postPage(page: unknown): Promise<void> {
  const res = await invoke(ingest, { method: 'POST', path: '/api/events', body: page, key: 'write' });
  expect(res.status).toBe(200);
}

async function snapshot(t: TestDatabase) {
  const ev = await t.db.query(
    `SELECT id, to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS ts, metric_id, profile_id, value::text AS value,
            value_currency, uuid, unique_id, properties, raw_data
       FROM klaviyo_events WHERE account_id = 'default' ORDER BY id`,
  );
  const me = await t.db.query(
    `SELECT id, name, integration, created, updated, raw_data, is_stub FROM klaviyo_metrics WHERE account_id = 'default' ORDER BY id`,
  );
  const pr = await t.db.query(
    `SELECT id, email, phone_number, external_id, first_name, location, properties, created, updated, last_event_date, raw_data, is_stub
       FROM klaviyo_profiles WHERE account_id = 'default' ORDER BY id`,
  );
  return { ev, me, pr };
}

function expectParameterError(res: InvokeResult, parameter: string): void {
  expect(res.status).toBe(400);
  expect(res.headers['content-type']).toBe('application/vnd.api+json');
  expect(res.body.errors[0]).toMatchObject({ status: '400', code: 'invalid', source: { parameter } });
}

describe('GET routes: events, profiles, metrics', () => {
  let t: TestDatabase;

  beforeAll(async () => {
    t = await freshDatabase();
    // Two pages, as a Klaviyo export would arrive; included metrics/profiles on the first only.
    await postPage({ data: EVENT_RESOURCES.slice(0, 30), included: [...metricResources, ...profileResources] });
    await postPage({ data: EVENT_RESOURCES.slice(30) });
  });
  afterAll(async () => {
    await closeDb();
    await t.drop();
  });

  describe('GET /api/events', () => {
    it('pages through every event oldest first by (datetime, id), each exactly once', async () => {
      const pages = await allPages(events.list, '/api/events', { 'page[size]': '7' });
      expect(pages).toHaveLength(Math.ceil(SENT.length / 7));
      const ids = pages.flatMap((p) => p.data.map((e: { id: string }) => e.id));
      expect(ids).toEqual(ascending.map((e) => e.id));
      expect(pages[0].links.self).toContain('/api/events?page[size]=7');
    });

    it('sorts newest first with sort=-datetime, and the default page holds up to 200', async () => {
      const res = await get(events.list, '/api/events', { sort: '-datetime' });
      expect(res.status).toBe(200);
      expect(res.body.data.map((e: { id: string }) => e.id)).toEqual([...ascending].reverse().map((e) => e.id));
      expect(res.body.links.next).toBeUndefined();
      expect(res.body.included).toBeUndefined();
    });

    it('filters by metric, profile and datetime bounds (inclusive and exclusive)', async () => {
      const pivot = ascending[20] as Sent;
      const later = ascending[40] as Sent;
      const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', '');
      const cases: Array<{ filter: string; want: (e: Sent) => boolean }> = [
        { filter: `equals(metric_id,"${M_ORDER}")`, want: (e) => e.metricId === M_ORDER },
        { filter: `equals(profile_id,"${P_SARAH}")`, want: (e) => e.profileId === P_SARAH },
        { filter: `greater-or-equal(datetime,${iso(pivot.ms)})`, want: (e) => e.ms >= pivot.ms },
        { filter: `greater-than(datetime,${iso(pivot.ms)})`, want: (e) => e.ms > pivot.ms },
        { filter: `less-than(datetime,${iso(later.ms)}Z)`, want: (e) => e.ms < later.ms },
        { filter: `less-or-equal(timestamp,${iso(later.ms)}+00:00)`, want: (e) => e.ms <= later.ms },
        { filter: 'has(profile)', want: (e) => e.profileId !== null },
        { filter: `has(metric),equals(metric_id,"${M_OPEN}")`, want: (e) => e.metricId === M_OPEN },
        {
          filter: `equals(metric_id,"${M_ORDER}"),equals(profile_id,"${P_JOHN}"),greater-than(datetime,${iso(pivot.ms)}),less-or-equal(datetime,${iso(later.ms)})`,
          want: (e) => e.metricId === M_ORDER && e.profileId === P_JOHN && e.ms > pivot.ms && e.ms <= later.ms,
        },
      ];
      for (const c of cases) {
        const pages = await allPages(events.list, '/api/events', { filter: c.filter, 'page[size]': '4' });
        const ids = pages.flatMap((p) => p.data.map((e: { id: string }) => e.id));
        const expected = ascending.filter(c.want).map((e) => e.id);
        expect(expected.length).toBeGreaterThan(0);
        expect({ filter: c.filter, ids }).toEqual({ filter: c.filter, ids: expected });
      }
    });

    it('includes the metrics and profiles of the page, leaving out stubs', async () => {
      const res = await get(events.list, '/api/events', { include: 'metric,profile', 'page[size]': '200' });
      expect(res.status).toBe(200);
      const included = res.body.included.map((r: { type: string; id: string }) => `${r.type}:${r.id}`).sort();
      expect(included).toEqual([`metric:${M_OPEN}`, `metric:${M_ORDER}`, `profile:${P_JOHN}`, `profile:${P_SARAH}`]);
      // Included resources are the resources as received.
      expect(res.body.included.find((r: { id: string }) => r.id === P_SARAH)).toEqual(profileResources[0]);
      const stubbed = res.body.data.find(
        (e: { relationships: { metric: { data: { id: string } } } }) => e.relationships.metric.data.id === M_STUB,
      );
      expect(stubbed).toBeDefined();
      const onlyMetric = await get(events.list, '/api/events', { include: 'metric', 'page[size]': '3' });
      expect(onlyMetric.body.included.every((r: { type: string }) => r.type === 'metric')).toBe(true);
    });

    it('exports pages that POST /api/events imports back into the same rows', async () => {
      const before = await snapshot(t);
      const pages = await allPages(events.list, '/api/events', { include: 'metric,profile', 'page[size]': '9' });
      // An empty deployment: every table of the project, whatever bookkeeping tables the schema has.
      await t.db.query(`DO $empty$
        DECLARE tables text;
        BEGIN
          SELECT string_agg(format('%I', tablename), ', ') INTO tables
            FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'klaviyo\\_%';
          EXECUTE 'TRUNCATE ' || tables;
        END
      $empty$`);
      expect((await snapshot(t)).ev).toHaveLength(0);
      for (const page of pages) await postPage({ data: page.data, included: page.included });
      const after = await snapshot(t);
      expect(after.ev).toHaveLength(SENT.length);
      expect(after).toEqual(before);
    });
  });

  describe('GET /api/events/{id}', () => {
    it('returns the event as the list does, with includes', async () => {
      const target = ascending[10] as Sent;
      const listed = (await get(events.list, '/api/events', { 'page[size]': '200' })).body.data.find(
        (e: { id: string }) => e.id === target.id,
      );
      const res = await get(events.get, `/api/events/${target.id}`, { include: 'profile' }, { id: target.id });
      expect(res.status).toBe(200);
      expect(res.body.data).toEqual(listed);
      expect(res.body.data.attributes.event_properties.nested).toEqual({ n: expect.any(Number) });
      expect(res.body.included.map((r: { id: string }) => r.id)).toEqual(
        target.profileId && target.profileId !== P_STUB ? [target.profileId] : [],
      );
    });

    it('answers a JSON:API 404 for an unknown id', async () => {
      const res = await get(events.get, '/api/events/nope', {}, { id: 'nope' });
      expect(res.status).toBe(404);
      expect(res.body.errors[0]).toMatchObject({ status: '404', code: 'not_found', title: 'Not found' });
    });
  });

  describe('profiles', () => {
    it('GET /api/profiles/{id} returns the profile; unknown ids are 404', async () => {
      const res = await get(profiles.get, `/api/profiles/${P_SARAH}`, {}, { id: P_SARAH });
      expect(res.status).toBe(200);
      expect(res.body.data).toMatchObject({
        type: 'profile',
        id: P_SARAH,
        attributes: { email: 'Sarah.Mason@Example.com', external_id: 'ext-sarah', properties: { tier: 'gold' } },
      });
      expect(res.body.data.attributes.last_event_date).toBe(
        new Date(Math.max(...SENT.filter((e) => e.profileId === P_SARAH).map((e) => e.ms)))
          .toISOString()
          .replace('.000Z', '+00:00'),
      );
      const missing = await get(profiles.get, '/api/profiles/none', {}, { id: 'none' });
      expect(missing.status).toBe(404);
      expect(missing.body.errors[0].code).toBe('not_found');
    });

    it('GET /api/profiles filters on email (any case), phone_number, external_id and id', async () => {
      const cases: Array<[string, string[]]> = [
        ['equals(email,"sarah.mason@example.com")', [P_SARAH]],
        ['equals(phone_number,"+15005550007")', [P_JOHN]],
        ["equals(external_id,'ext-sarah')", [P_SARAH]],
        [`any(id,["${P_JOHN}","${P_STUB}","unknown"])`, [P_JOHN, P_STUB].sort()],
        ['any(email,["JOHN@example.com","sarah.mason@EXAMPLE.com"])', [P_JOHN, P_SARAH].sort()],
        ['equals(email,"nobody@example.com")', []],
      ];
      for (const [filter, ids] of cases) {
        const res = await get(profiles.list, '/api/profiles', { filter });
        expect({ filter, status: res.status }).toEqual({ filter, status: 200 });
        expect({ filter, ids: res.body.data.map((p: { id: string }) => p.id) }).toEqual({ filter, ids });
      }
    });

    it('GET /api/profiles pages by id', async () => {
      const pages = await allPages(profiles.list, '/api/profiles', { 'page[size]': '1' });
      expect(pages.flatMap((p) => p.data.map((x: { id: string }) => x.id))).toEqual([P_SARAH, P_JOHN, P_STUB].sort());
    });

    it('GET /api/profiles/{id}/events is the timeline, newest first, paginated, with a metric filter', async () => {
      const mine = SENT.filter((e) => e.profileId === P_SARAH)
        .sort(byTimeThenId)
        .reverse();
      const pages = await allPages(
        profiles.events,
        `/api/profiles/${P_SARAH}/events`,
        { 'page[size]': '4' },
        { id: P_SARAH },
      );
      expect(pages.flatMap((p) => p.data.map((e: { id: string }) => e.id))).toEqual(mine.map((e) => e.id));
      const opens = await allPages(
        profiles.events,
        `/api/profiles/${P_SARAH}/events`,
        { filter: `equals(metric_id,"${M_OPEN}")`, 'page[size]': '3' },
        { id: P_SARAH },
      );
      expect(opens.flatMap((p) => p.data.map((e: { id: string }) => e.id))).toEqual(
        mine.filter((e) => e.metricId === M_OPEN).map((e) => e.id),
      );
      const missing = await get(profiles.events, '/api/profiles/none/events', {}, { id: 'none' });
      expect(missing.status).toBe(404);
      // Another profile's events are not this route's business.
      const other = await get(
        profiles.events,
        `/api/profiles/${P_SARAH}/events`,
        { filter: `equals(profile_id,"${P_JOHN}")` },
        { id: P_SARAH },
      );
      expectParameterError(other, 'filter');
    });
  });

  describe('metrics', () => {
    function expectedSummary(metricId: string) {
      const mine = SENT.filter((e) => e.metricId === metricId);
      const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', '+00:00');
      return {
        event_count: mine.length,
        first_event_datetime: iso(Math.min(...mine.map((e) => e.ms))),
        last_event_datetime: iso(Math.max(...mine.map((e) => e.ms))),
      };
    }

    it('GET /api/metrics lists each metric with its event count and first and last event, before and after an aggregate run', async () => {
      for (const phase of ['dirty', 'rolled up']) {
        if (phase === 'rolled up') expect((await runAggregation(t.db, DEFAULT_ACCOUNT_ID)).status).toBe('done');
        const res = await get(metrics.list, '/api/metrics');
        expect(res.status).toBe(200);
        expect(res.body.data.map((m: { id: string }) => m.id)).toEqual([M_ORDER, M_OPEN, M_STUB].sort());
        for (const m of res.body.data)
          expect({ phase, id: m.id, ...m.attributes }).toMatchObject({ phase, id: m.id, ...expectedSummary(m.id) });
        expect(res.body.data.find((m: { id: string }) => m.id === M_ORDER).attributes).toMatchObject({
          name: 'Placed Order',
          integration: { name: 'Shopify' },
        });
      }
    });

    it('GET /api/metrics filters on the integration and pages', async () => {
      const shopify = await get(metrics.list, '/api/metrics', { filter: 'equals(integration.name,"Shopify")' });
      expect(shopify.body.data.map((m: { id: string }) => m.id)).toEqual([M_ORDER]);
      const pages = await allPages(metrics.list, '/api/metrics', { 'page[size]': '2' });
      expect(pages.flatMap((p) => p.data.map((m: { id: string }) => m.id))).toEqual([M_ORDER, M_OPEN, M_STUB].sort());
      // Back from the last page by links.prev: the first page again, which has no prev.
      expect(pages[0].links.prev).toBeUndefined();
      const prev = pages[pages.length - 1].links.prev as string;
      const back = await get(
        metrics.list,
        '/api/metrics',
        Object.fromEntries(new URL(prev, 'http://x').searchParams.entries()),
      );
      expect(back.body.data.map((m: { id: string }) => m.id)).toEqual(pages[0].data.map((m: { id: string }) => m.id));
      expect(back.body.links.prev).toBeUndefined();
    });

    it('GET /api/metrics/{id} returns one metric with its figures; unknown is 404', async () => {
      const res = await get(metrics.get, `/api/metrics/${M_OPEN}`, {}, { id: M_OPEN });
      expect(res.status).toBe(200);
      expect(res.body.data).toMatchObject({
        type: 'metric',
        id: M_OPEN,
        attributes: { name: 'Opened Email', ...expectedSummary(M_OPEN) },
      });
      const missing = await get(metrics.get, '/api/metrics/none', {}, { id: 'none' });
      expect(missing.status).toBe(404);
      expect(missing.body.errors[0]).toMatchObject({ status: '404', code: 'not_found' });
    });
  });

  describe('bad requests are 400s naming the parameter', () => {
    it('refuses malformed or unsupported parameters', async () => {
      const firstPage = await get(events.list, '/api/events', { 'page[size]': '2' });
      const cursor = new URL(firstPage.body.links.next, 'http://x').searchParams.get('page[cursor]') as string;
      const cases: Array<[HttpHandler, string, Record<string, string>, string]> = [
        [events.list, '/api/events', { 'page[size]': '0' }, 'page[size]'],
        [events.list, '/api/events', { 'page[size]': '1001' }, 'page[size]'],
        [events.list, '/api/events', { 'page[size]': 'ten' }, 'page[size]'],
        [events.list, '/api/events', { 'page[cursor]': 'garbage' }, 'page[cursor]'],
        // A cursor of another query (here: another sort) would skip or repeat rows.
        [events.list, '/api/events', { 'page[cursor]': cursor, sort: '-datetime' }, 'page[cursor]'],
        [events.list, '/api/events', { sort: 'value' }, 'sort'],
        [events.list, '/api/events', { include: 'metric,list' }, 'include'],
        [events.list, '/api/events', { filter: 'equals(metric_id,"x"' }, 'filter'],
        [events.list, '/api/events', { filter: 'equals(uuid,"x")' }, 'filter'],
        [events.list, '/api/events', { filter: 'contains(metric_id,"x")' }, 'filter'],
        [events.list, '/api/events', { filter: 'greater-than(datetime,yesterday)' }, 'filter'],
        [events.list, '/api/events', { filter: 'equals(metric_id,"a"),equals(metric_id,"b")' }, 'filter'],
        // Klaviyo's sparse fieldsets are served; a name outside Klaviyo's list is refused, as is a fieldset
        // Klaviyo does not document on the route and an include of data never stored here.
        [events.list, '/api/events', { 'fields[event]': 'value' }, 'fields[event]'],
        [events.list, '/api/events', { 'fields[list]': 'name' }, 'fields[list]'],
        [events.list, '/api/events', { include: 'attributions' }, 'include'],
        [profiles.list, '/api/profiles', { sort: 'first_name' }, 'sort'],
        [profiles.list, '/api/profiles', { filter: 'contains(updated,"2024")' }, 'filter'],
        [profiles.list, '/api/profiles', { 'additional-fields[profile]': 'everything' }, 'additional-fields[profile]'],
        [metrics.list, '/api/metrics', { include: 'flow-triggers' }, 'include'],
        [profiles.list, '/api/profiles', { filter: 'equals(first_name,"First")' }, 'filter'],
        [profiles.list, '/api/profiles', { filter: 'any(email,[])' }, 'filter'],
        [profiles.list, '/api/profiles', { 'page[size]': '101' }, 'page[size]'],
        [metrics.list, '/api/metrics', { filter: 'equals(name,"Placed Order")' }, 'filter'],
      ];
      for (const [handler, path, query, parameter] of cases) {
        const res = await get(handler, path, query);
        expect({ query, status: res.status, parameter: res.body.errors?.[0]?.source?.parameter }).toEqual({
          query,
          status: 400,
          parameter,
        });
      }
      expectParameterError(await get(events.get, '/api/events/x', { include: 'everything' }, { id: 'x' }), 'include');
    });

    it('needs the read scope', async () => {
      const res = await invoke(events.list, { method: 'GET', path: '/api/events', key: null });
      expect(res.status).toBe(401);
    });
  });
});
