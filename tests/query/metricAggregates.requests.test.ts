import { handler } from '../../functions/metricAggregates';
import { runAggregation } from '../../lib/app/aggregation';
import { closeDb } from '../../lib/db';
import { freshDatabase, type TestDatabase } from '../support/database';
import { storeEvents, type SimpleEvent } from '../support/events';
import { invoke, type InvokeResult } from '../support/http';
import { oracleRows, type OracleEvent } from './oracle';
import { prng } from '../support/random';
import { klaviyoFixture } from '../support/fixtures';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * POST /api/metric-aggregates beyond the matrix: `by` grouping and dimension filters against the
 * oracle, exact range bounds, pagination with cursors, the spec's own example request, and every
 * kind of bad request.
 */
const METRIC = 'QmReq1';
const FLOWS = ['Welcome', 'Abandoned Cart', 'Winback'];
const CHANNELS = ['email', 'sms'];

function makeEvents(seed: number, count: number): SimpleEvent[] {
  const random = prng(seed);
  const lo = Date.UTC(2022, 11, 1);
  const hi = Date.UTC(2022, 11, 9);
  return Array.from({ length: count }, (_, i) => {
    const r = random();
    const properties: Record<string, unknown> = {};
    if (r < 0.8) properties.$attributed_flow = FLOWS[Math.floor(random() * FLOWS.length)];
    if (random() < 0.9) properties.$attributed_channel = CHANNELS[Math.floor(random() * CHANNELS.length)];
    if (i % 10 === 0) properties.Items = ['shoe', i % 20 === 0 ? 'hat' : 'sock'];
    // Whole seconds, so that several events share an instant and range bounds meet them exactly.
    const ms = Math.floor(lo + random() * (hi - lo));
    return {
      metricId: METRIC,
      at: new Date(ms - (ms % 10_000)),
      profileId: random() < 0.05 ? null : `p${Math.floor(random() * 40)}`,
      value: Math.round(random() * 10_000) / 100,
      properties,
    };
  });
}

const EVENTS = makeEvents(11, 1200);
const ORACLE: OracleEvent[] = EVENTS.map((e) => ({
  at: e.at as Date,
  profileId: e.profileId ?? null,
  value: e.value === null || e.value === undefined ? null : Number(e.value),
  properties: e.properties ?? {},
}));

function body(attributes: Record<string, unknown>): unknown {
  return {
    data: {
      type: 'metric-aggregate',
      attributes: {
        metric_id: METRIC,
        measurements: ['count', 'sum_value', 'unique'],
        interval: 'day',
        filter: ['greater-or-equal(datetime,2022-12-01T00:00:00)', 'less-than(datetime,2022-12-09T00:00:00)'],
        ...attributes,
      },
    },
  };
}

const query = (
  attributes: Record<string, unknown>,
  extra: { query?: Record<string, string> } = {},
): Promise<InvokeResult> =>
  invoke(handler, { path: '/api/metric-aggregates', key: 'read', body: body(attributes), ...extra });

const round = (xs: readonly number[]) => xs.map((x) => Math.round(x * 1e6) / 1e6);

type Row = { dimensions: string[]; measurements: Record<string, number[]> };

function normalise(rows: readonly Row[]) {
  return [...rows]
    .map((r) => ({
      dimensions: r.dimensions,
      count: r.measurements.count,
      sum: round(r.measurements.sum_value ?? []),
      unique: r.measurements.unique,
    }))
    .sort((a, b) => (JSON.stringify(a.dimensions) < JSON.stringify(b.dimensions) ? -1 : 1));
}

describe('POST /api/metric-aggregates: by, filters, paging, errors', () => {
  let t: TestDatabase;

  beforeAll(async () => {
    t = await freshDatabase();
    await storeEvents(t.db, EVENTS);
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
  });
  afterAll(async () => {
    await closeDb();
    await t.drop();
  });

  it('groups by one and two dimensions; events without the key fall into ""', async () => {
    for (const by of [['$attributed_flow'], ['$attributed_flow', '$attributed_channel']]) {
      for (const zone of ['UTC', 'Asia/Kolkata']) {
        const res = await query({ by, timezone: zone, interval: 'day' });
        expect(res.status).toBe(200);
        const start = zone === 'UTC' ? Date.UTC(2022, 11, 1) : Date.UTC(2022, 11, 1) - 5.5 * 3_600_000;
        const end = start + 8 * 86_400_000;
        const expected = oracleRows(ORACLE, {
          zone,
          interval: 'day',
          start,
          end,
          dates: res.body.data.attributes.dates,
          by,
        });
        expect(normalise(res.body.data.attributes.data)).toEqual(normalise(expected as Row[]));
        expect(res.body.data.attributes.data.some((r: Row) => r.dimensions[0] === '')).toBe(true);
      }
    }
  });

  it('applies dimension filters (equals, any, contains on lists)', async () => {
    const cases: Array<[string, (e: OracleEvent) => boolean]> = [
      ['equals($attributed_channel,"sms")', (e) => e.properties.$attributed_channel === 'sms'],
      [
        'any($attributed_flow,["Welcome","Winback"])',
        (e) => ['Welcome', 'Winback'].includes(e.properties.$attributed_flow as string),
      ],
      [
        'contains(Items,"hat")',
        (e) => Array.isArray(e.properties.Items) && (e.properties.Items as string[]).includes('hat'),
      ],
    ];
    for (const [filter, where] of cases) {
      const res = await query({
        filter: ['greater-or-equal(datetime,2022-12-01T00:00:00)', 'less-than(datetime,2022-12-09T00:00:00)', filter],
      });
      expect({ filter, status: res.status }).toEqual({ filter, status: 200 });
      const expected = oracleRows(ORACLE, {
        zone: 'UTC',
        interval: 'day',
        start: Date.UTC(2022, 11, 1),
        end: Date.UTC(2022, 11, 9),
        dates: res.body.data.attributes.dates,
        where,
      });
      expect((expected[0] as Row).measurements.count?.some((n) => n > 0)).toBe(true);
      expect({ filter, rows: normalise(res.body.data.attributes.data) }).toEqual({
        filter,
        rows: normalise(expected as Row[]),
      });
    }
  });

  it('honours exclusive and inclusive bounds to the second, joined by commas or as a list', async () => {
    const pivot = EVENTS[0]?.at as Date;
    const at = pivot.toISOString().replace('.000Z', '');
    const end = '2022-12-09T00:00:00';
    const count = (res: InvokeResult) =>
      (res.body.data.attributes.data[0].measurements.count as number[]).reduce((a, b) => a + b, 0);
    const same = ORACLE.filter((e) => e.at.getTime() === pivot.getTime()).length;
    expect(same).toBeGreaterThan(0);
    const ge = await query({
      measurements: ['count'],
      filter: `greater-or-equal(datetime,${at}),less-than(datetime,${end})`,
    });
    const gt = await query({
      measurements: ['count'],
      filter: [`greater-than(datetime,${at})`, `less-than(datetime,${end})`],
    });
    expect(ge.status).toBe(200);
    expect(count(ge)).toBe(ORACLE.filter((e) => e.at.getTime() >= pivot.getTime()).length);
    expect(count(gt)).toBe(count(ge) - same);
    const le = await query({
      measurements: ['count'],
      filter: ['greater-or-equal(datetime,2022-12-01T00:00:00)', `less-or-equal(datetime,${at}Z)`],
    });
    const lt = await query({
      measurements: ['count'],
      filter: ['greater-or-equal(datetime,2022-12-01T00:00:00)', `less-than(datetime,${at}+00:00)`],
    });
    expect(count(le)).toBe(ORACLE.filter((e) => e.at.getTime() <= pivot.getTime()).length);
    expect(count(lt)).toBe(count(le) - same);
  });

  it('pages rows with page_size and a cursor, sorted by a measurement', async () => {
    const all = await query({ by: ['$attributed_flow', '$attributed_channel'], sort: '-count' });
    const rows: Row[] = all.body.data.attributes.data;
    expect(rows.length).toBeGreaterThan(6);
    const totals = rows.map((r) => (r.measurements.count as number[]).reduce((a, b) => a + b, 0));
    expect([...totals].sort((a, b) => b - a)).toEqual(totals);
    const paged: Row[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 20; i += 1) {
      const res = await query({
        by: ['$attributed_flow', '$attributed_channel'],
        sort: '-count',
        page_size: 4,
        ...(cursor ? { page_cursor: cursor } : {}),
      });
      expect(res.status).toBe(200);
      paged.push(...res.body.data.attributes.data);
      const next: string | undefined = res.body.links.next;
      if (!next) break;
      cursor = new URL(next, 'http://x').searchParams.get('page_cursor') ?? undefined;
    }
    expect(paged).toEqual(rows);
    // A cursor belongs to its query.
    const foreign = await query({ by: ['$attributed_flow'], page_cursor: cursor });
    expect(foreign.status).toBe(400);
  });

  it("accepts the spec's example request shape", async () => {
    const example = klaviyoFixture<{ data: { attributes: Record<string, unknown> } }>('metric-aggregates-request.json');
    example.data.attributes.metric_id = METRIC;
    const res = await invoke(handler, { path: '/api/metric-aggregates', key: 'read', body: example });
    expect(res.status).toBe(200);
    expect(res.body.data.type).toBe('metric-aggregate');
    expect(res.body.data.attributes.dates[0]).toBe('2022-12-01T05:00:00+00:00');
    expect(res.body.data.attributes.dates).toHaveLength(7);
    expect(res.body.data.attributes.data[0].dimensions).toEqual(['']);
  });

  it('answers 404 for an unknown metric and 400 for each kind of bad request', async () => {
    const missing = await query({ metric_id: 'nope' });
    expect(missing.status).toBe(404);
    expect(missing.body.errors[0]).toMatchObject({
      status: '404',
      code: 'not_found',
      source: { pointer: '/data/attributes/metric_id' },
    });
    const range = (from: string, to: string) => [`greater-or-equal(datetime,${from})`, `less-than(datetime,${to})`];
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ measurements: ['count', 'median'] }, '/data/attributes/measurements/1'],
      [{ measurements: [] }, '/data/attributes/measurements'],
      [{ interval: 'minute' }, '/data/attributes/interval'],
      [{ timezone: 'Mars/Olympus' }, '/data/attributes/timezone'],
      [{ timezone: 'america/new_york' }, '/data/attributes/timezone'],
      [{ filter: ['greater-or-equal(datetime,2022-12-01T00:00:00)'] }, '/data/attributes/filter'],
      [{ filter: range('2022-01-01T00:00:00', '2023-03-01T00:00:00') }, '/data/attributes/filter'],
      [{ filter: range('2022-12-09T00:00:00', '2022-12-01T00:00:00') }, '/data/attributes/filter'],
      [
        { filter: ['greater-or-equal(datetime,2022-13-01T00:00:00)', 'less-than(datetime,2022-12-09T00:00:00)'] },
        '/data/attributes/filter/0',
      ],
      [
        { filter: ['greater-or-equal(datetime,2022-12-01', 'less-than(datetime,2022-12-09T00:00:00)'] },
        '/data/attributes/filter/0',
      ],
      [
        { filter: [...range('2022-12-01T00:00:00', '2022-12-09T00:00:00'), 'or(equals(a,"b"),equals(a,"c"))'] },
        '/data/attributes/filter/2',
      ],
      [
        { filter: [...range('2022-12-01T00:00:00', '2022-12-09T00:00:00'), 'any($flow,"x")'] },
        '/data/attributes/filter/2',
      ],
      [
        { filter: [...range('2022-12-01T00:00:00', '2022-12-09T00:00:00'), 'greater-than(value,3)'] },
        '/data/attributes/filter/2',
      ],
      [{ by: ['$flow', '$flow'] }, '/data/attributes/by'],
      [{ sort: 'median' }, '/data/attributes/sort'],
      [{ page_size: 0 }, '/data/attributes/page_size'],
      [{ page_cursor: 'not-a-cursor' }, '/data/attributes/page_cursor'],
      [{ metric_id: 42 }, '/data/attributes/metric_id'],
      [{ colour: 'red' }, '/data/attributes'],
    ];
    for (const [attributes, pointer] of bad) {
      const res = await query(attributes);
      expect({
        attributes,
        status: res.status,
        pointers: res.body.errors?.map((e: { source?: { pointer?: string } }) => e.source?.pointer),
      }).toEqual({
        attributes,
        status: 400,
        pointers: expect.arrayContaining([pointer]),
      });
    }
    const wrongType = await invoke(handler, {
      path: '/api/metric-aggregates',
      key: 'read',
      body: { data: { type: 'metric', attributes: {} } },
    });
    expect(wrongType.status).toBe(400);
    const noKey = await invoke(handler, { path: '/api/metric-aggregates', key: null, body: body({}) });
    expect(noKey.status).toBe(401);
  });
});
