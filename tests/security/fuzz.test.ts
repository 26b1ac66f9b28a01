import fc from 'fast-check';
import { handler as ingest } from '../../functions/ingest';
import * as events from '../../functions/events';
import { handler as metricAggregates } from '../../functions/metricAggregates';
import * as metrics from '../../functions/metrics';
import * as profiles from '../../functions/profiles';
import { closeDb } from '../../lib/db';
import { setLogLevel, setLogSink } from '../../lib/log';
import type { HttpHandler } from '../../lib/http/handler';
import { freshDatabase, type TestDatabase } from '../support/database';
import { testDriver } from '../support/env';
import { invoke, type InvokeResult } from '../support/http';
import { makeEvents, pageOf } from '../reliability/support/pages';
import { databaseChecksum, type TableChecksum } from './support/checksum';
import { klaviyoFixture } from '../support/fixtures';

/**
 * Generated bad requests through the real handlers and the real database: wrong types, missing
 * fields, huge strings, deep nesting, invalid dates and time zones, SQL injection strings, NUL bytes,
 * invalid UTF-8, wrong content types and oversize bodies. No answer may be 500 or more, every bad
 * write must be refused with a 4xx, and afterwards every table is byte for byte what it was.
 *
 * FUZZ_RUNS sets the total number of requests (10,000 by default); FUZZ_SEED replays a run.
 */
// The data-api project repeats the suites on the second driver; bad requests mostly stop before the
// database, so a tenth of the count there keeps `npm test` short without losing a driver.
const TOTAL = Number(process.env.FUZZ_RUNS ?? (testDriver() === 'data-api' ? 1_000 : 10_000));
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
const runs = (share: number) => ({
  numRuns: Math.max(1, Math.round(TOTAL * share)),
  ...(seed === undefined ? {} : { seed }),
});
// Small enough that oversize bodies are cheap to make; every valid base document fits well below it.
const MAX_BODY = 64 * 1024;

type Json = unknown;
type Path = readonly (string | number)[];

const fixture = (name: string): Json => klaviyoFixture(name);

const SQL_INJECTION = [
  "'; DROP TABLE klaviyo_events; --",
  "' OR '1'='1",
  '1; DELETE FROM klaviyo_profiles WHERE true; --',
  "\\'; TRUNCATE klaviyo_metrics CASCADE; --",
  '$1::text); DROP TABLE klaviyo_aggregated_metrics; --',
  "x') UNION SELECT email, phone_number FROM klaviyo_profiles --",
  'pg_sleep(10)',
  "E'\\\\x00'",
  '"); SELECT pg_terminate_backend(pg_backend_pid()); --',
  '$$; DROP SCHEMA public CASCADE; $$',
];
const INVALID_DATES = [
  '2024-13-01T00:00:00+00:00',
  '2024-02-30T00:00:00+00:00',
  '2024-01-01T25:00:00Z',
  '2024-01-01T00:00:00+25:00',
  '2024-01-01T00:00:00 America/New_York',
  'yesterday',
  '',
  '0000-00-00T00:00:00Z',
  '275760-09-13T00:00:00.001Z',
  '-infinity',
  'infinity',
  'NaN',
  '2024-01-01T00:00:00\u0000Z',
];
const INVALID_ZONES = [
  'Mars/Olympus_Mons',
  'UTC+25',
  '',
  'America/New York',
  '../../etc/passwd',
  'EST5EDT,M3.2.0,M11.1.0',
  '\u0000',
];

const nulString = fc
  .tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }))
  .map(([a, b]) => `${a}\u0000${b}`);
const loneSurrogate = fc
  .tuple(fc.string({ maxLength: 5 }), fc.constantFrom('\ud800', '\udfff', '\udc00x'))
  .map(([a, b]) => a + b);
const hugeString = fc.integer({ min: 5_000, max: 40_000 }).map((n) => 'x'.repeat(n));
const deepNesting = fc.integer({ min: 50, max: 600 }).map((depth) => {
  let v: Json = 'bottom';
  for (let i = 0; i < depth; i += 1) v = i % 2 ? [v] : { k: v };
  return v;
});
const nastyString = fc.oneof(
  fc.constantFrom(...SQL_INJECTION),
  fc.constantFrom(...INVALID_DATES),
  nulString,
  loneSurrogate,
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  hugeString,
);
const wrongType = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant([]),
  fc.constant({}),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
);
const anyBad: fc.Arbitrary<Json> = fc.oneof(wrongType, nastyString, deepNesting);

function setAt(doc: Json, path: Path, value: Json): Json {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  const base = (doc !== null && typeof doc === 'object' ? doc : {}) as Record<string | number, Json>;
  const copy: Record<string | number, Json> = Array.isArray(base)
    ? ([...(base as Json[])] as unknown as Record<number, Json>)
    : { ...base };
  copy[head as string | number] = setAt(base[head as string | number], rest, value);
  return copy;
}

function removeAt(doc: Json, path: Path): Json {
  if (path.length === 0 || doc === null || typeof doc !== 'object') return doc;
  const [head, ...rest] = path;
  const copy = (Array.isArray(doc) ? [...doc] : { ...doc }) as Record<string | number, Json>;
  if (rest.length === 0) delete copy[head as string | number];
  else copy[head as string | number] = removeAt(copy[head as string | number], rest);
  return copy;
}

/** Every path to a value in doc, so noise can land anywhere. */
function pathsOf(doc: Json, prefix: Path = [], out: Path[] = []): Path[] {
  out.push(prefix);
  if (doc !== null && typeof doc === 'object') {
    for (const [k, v] of Object.entries(doc)) pathsOf(v, [...prefix, Array.isArray(doc) ? Number(k) : k], out);
  }
  return out;
}

/** A mutation that must make the document invalid, at a path the route requires. */
interface Fatal {
  readonly path: Path;
  readonly bad: fc.Arbitrary<unknown>; // a JSON value, or MISSING to remove the member
}
const MISSING = Symbol('missing');
const notThe = (literal: string) =>
  fc.oneof(
    wrongType,
    nastyString.filter((s) => s !== literal),
    fc.constant(MISSING),
  );
const notAString = fc.oneof(wrongType, deepNesting, fc.constant(MISSING));

interface WriteRoute {
  readonly path: string;
  readonly base: Json;
  readonly fatal: readonly Fatal[];
}

const eventsPage = pageOf(
  makeEvents({ prefix: 'fz', count: 3, from: '2024-01-01T00:00:00Z', hours: 3, metrics: ['fzM'], profiles: 2 }),
);
const WRITES: readonly WriteRoute[] = [
  {
    path: '/api/events',
    base: eventsPage,
    fatal: [
      {
        path: ['data'],
        bad: fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.constant(true), fc.constant(MISSING)),
      },
      { path: ['data', 0, 'type'], bad: notThe('event') },
      { path: ['data', 0, 'id'], bad: notAString },
      // datetime may be missing when timestamp is there: only a present, invalid one is fatal.
      {
        path: ['data', 0, 'attributes', 'datetime'],
        bad: fc.oneof(fc.constantFrom(...INVALID_DATES), fc.boolean(), fc.constant({})),
      },
      { path: ['data', 1, 'relationships', 'metric', 'data', 'id'], bad: notAString },
    ],
  },
  {
    path: '/api/events',
    base: fixture('create-event-request.json'),
    fatal: [
      { path: ['data', 'type'], bad: notThe('event') },
      // time is optional (Klaviyo takes the time of receipt): only a present, invalid one is fatal.
      {
        path: ['data', 'attributes', 'time'],
        bad: fc.oneof(fc.constantFrom(...INVALID_DATES), fc.boolean(), fc.constant({})),
      },
      { path: ['data', 'attributes', 'metric', 'data', 'attributes', 'name'], bad: notAString },
      {
        path: ['data', 'attributes', 'metric'],
        bad: fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.constant(MISSING)),
      },
    ],
  },
  {
    path: '/api/profiles',
    base: { data: [fixture('profile.json')] },
    fatal: [
      { path: ['data', 0, 'type'], bad: notThe('profile') },
      { path: ['data', 0, 'id'], bad: notAString },
      {
        path: ['data', 0, 'attributes', 'updated'],
        bad: fc.oneof(fc.constantFrom(...INVALID_DATES.filter((d) => d !== '')), fc.integer()),
      },
    ],
  },
  {
    path: '/api/metrics',
    base: { data: [fixture('metric.json')] },
    fatal: [
      { path: ['data', 0, 'type'], bad: notThe('metric') },
      { path: ['data', 0, 'id'], bad: notAString },
      { path: ['data', 0, 'attributes', 'name'], bad: notAString },
    ],
  },
  {
    path: '/api/event-bulk-create-jobs',
    base: {
      data: {
        type: 'event-bulk-create-job',
        attributes: {
          'events-bulk-create': {
            data: [
              {
                type: 'event-bulk-create',
                attributes: {
                  profile: { data: { type: 'profile', attributes: { email: 'fuzz@example.com' } } },
                  events: { data: [(fixture('create-event-request.json') as { data: Json }).data] },
                },
              },
            ],
          },
        },
      },
    },
    fatal: [
      { path: ['data', 'type'], bad: notThe('event-bulk-create-job') },
      {
        path: ['data', 'attributes', 'events-bulk-create', 'data'],
        bad: fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.constant(MISSING)),
      },
      {
        path: [
          'data',
          'attributes',
          'events-bulk-create',
          'data',
          0,
          'attributes',
          'events',
          'data',
          0,
          'attributes',
          'time',
        ],
        bad: fc.oneof(fc.constantFrom(...INVALID_DATES), fc.boolean(), fc.constant({})),
      },
    ],
  },
];

/** A write request that is wrong in at least one way a route must refuse, plus noise elsewhere. */
const badWrite = fc
  .constantFrom(...WRITES)
  .chain((route) =>
    fc.record({
      route: fc.constant(route),
      fatal: fc.constantFrom(...route.fatal).chain((f) => fc.tuple(fc.constant(f.path), f.bad)),
      noise: fc.array(fc.tuple(fc.constantFrom(...pathsOf(route.base).slice(1)), anyBad), { maxLength: 3 }),
    }),
  )
  .map(({ route, fatal, noise }) => {
    let doc = route.base;
    // Noise above the fatal path would replace the structure the fatal mutation needs (data: [] is a
    // valid empty page): it lands everywhere else.
    const above = (path: Path) => path.length <= fatal[0].length && path.every((p, i) => p === fatal[0][i]);
    for (const [path, value] of noise) if (!above(path)) doc = setAt(doc, path, value);
    doc = fatal[1] === MISSING ? removeAt(doc, fatal[0]) : setAt(doc, fatal[0], fatal[1]);
    return { path: route.path, body: doc };
  });

const JSON_TYPES = ['application/json', 'application/vnd.api+json', 'application/json; charset=utf-8'];
/** Bodies broken before they are JSON: bytes, media types and sizes. */
const badBytes = fc.oneof(
  // Invalid UTF-8: lone continuation bytes, overlong forms, surrogates encoded in UTF-8, truncation.
  fc
    .tuple(
      fc.constantFrom([0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82], [0xff]),
      fc.boolean(),
    )
    .map(([bytes, wrapped]) => ({
      body: wrapped
        ? Buffer.concat([Buffer.from('{"data":[{"type":"event","id":"'), Buffer.from(bytes), Buffer.from('"}]}')])
        : Buffer.from(bytes),
      contentType: 'application/json',
    })),
  // Not JSON, or truncated JSON.
  fc
    .oneof(
      fc.string({ maxLength: 60 }),
      fc.constantFrom('{', '{"data":', '[1,2', 'NaN', '{"data":[}', "{'data':[]}", '\u0000', '{"a":1}{"b":2}'),
    )
    .filter((text) => {
      try {
        JSON.parse(text);
        return false;
      } catch {
        return true;
      }
    })
    .map((text) => ({
      body: Buffer.from(text),
      contentType: fc.sample(fc.constantFrom(...JSON_TYPES), 1)[0] as string,
    })),
  // A valid document sent with a media type that is not JSON, or none.
  fc
    .constantFrom(
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/jsonx',
      'application/xml',
      'json',
      '',
      null,
    )
    .map((contentType) => ({ body: Buffer.from(JSON.stringify(eventsPage)), contentType })),
  // Oversize: a valid document padded past the limit.
  {
    weight: 1,
    arbitrary: fc.integer({ min: 1, max: MAX_BODY }).map((extra) => ({
      body: Buffer.from(JSON.stringify({ ...eventsPage, pad: 'p'.repeat(MAX_BODY + extra) })),
      contentType: 'application/vnd.api+json',
    })),
  },
  // Deep nesting as text, past what a recursive parser or validator could walk.
  {
    weight: 1,
    arbitrary: fc.integer({ min: 1_000, max: 20_000 }).map((depth) => ({
      body: Buffer.from(`{"data":${'['.repeat(depth)}${']'.repeat(depth)}}`),
      contentType: 'application/json',
    })),
  },
);

const GETS: readonly { readonly path: string; readonly handler: HttpHandler; readonly id?: boolean }[] = [
  { path: '/api/events', handler: events.list },
  { path: '/api/events/{id}', handler: events.get, id: true },
  { path: '/api/metrics', handler: metrics.list },
  { path: '/api/metrics/{id}', handler: metrics.get, id: true },
  { path: '/api/profiles', handler: profiles.list },
  { path: '/api/profiles/{id}', handler: profiles.get, id: true },
  { path: '/api/profiles/{id}/events', handler: profiles.events, id: true },
];
const FIELDS = [
  'datetime',
  'timestamp',
  'metric_id',
  'profile_id',
  'id',
  'email',
  'phone_number',
  'name',
  'created',
  'updated',
  'integration.name',
  'x',
];
const OPERATORS = [
  'equals',
  'greater-than',
  'greater-or-equal',
  'less-than',
  'less-or-equal',
  'any',
  'contains',
  'has',
  'and',
  'or',
  'not',
];
const filterValue = fc.oneof(
  nastyString.map((s) => JSON.stringify(s)),
  fc.constantFrom(...INVALID_DATES),
  fc.constantFrom(...SQL_INJECTION),
  fc.integer().map(String),
  fc
    .array(
      fc.constantFrom(...SQL_INJECTION).map((s) => JSON.stringify(s)),
      { maxLength: 3 },
    )
    .map((xs) => `[${xs.join(',')}]`),
  fc.string({ maxLength: 20 }),
);
const filterText = fc.oneof(
  fc
    .array(fc.tuple(fc.constantFrom(...OPERATORS), fc.constantFrom(...FIELDS), filterValue), {
      minLength: 1,
      maxLength: 4,
    })
    .map((conds) => conds.map(([op, field, value]) => `${op}(${field},${value})`).join(',')),
  fc.constantFrom(...SQL_INJECTION),
  fc.string({ maxLength: 80 }),
  fc.integer({ min: 5_000, max: 30_000 }).map((n) => `equals(id,"${'a'.repeat(n)}")`),
  fc.integer({ min: 100, max: 5_000 }).map((n) => `${'and('.repeat(n)}equals(id,"a")${')'.repeat(n)}`),
);
const queryValue = fc.oneof(
  nastyString,
  fc.constantFrom('-datetime', 'datetime', '0', '-1', '1e9', '99999999999', 'metric,profile', 'metric,metric,x'),
);
const badQuery = fc.record(
  {
    filter: filterText,
    sort: queryValue,
    'page[size]': queryValue,
    'page[cursor]': fc.oneof(queryValue, fc.base64String({ maxLength: 60 })),
    include: queryValue,
    'fields[event]': queryValue,
    [fc.sample(fc.constantFrom('unknown', "'; DROP TABLE x; --"), 1)[0] as string]: queryValue,
  },
  { requiredKeys: [] },
);
const badGet = fc.record({
  // By path: a counterexample then prints the route, not the handler's source.
  route: fc.constantFrom(...GETS.map((g) => g.path)),
  id: fc.oneof(nastyString, fc.constantFrom('0rG4eQ', '01GDDKASAP8TKDDA2GRZDSVP4H', 'fz_0')),
  query: badQuery,
});

const aggregatesBase = fixture('metric-aggregates-request.json');
const AGGREGATE_PATHS: Path[] = [
  ['data', 'type'],
  ['data', 'attributes', 'metric_id'],
  ['data', 'attributes', 'measurements'],
  ['data', 'attributes', 'measurements', 0],
  ['data', 'attributes', 'interval'],
  ['data', 'attributes', 'page_size'],
  ['data', 'attributes', 'by'],
  ['data', 'attributes', 'by', 0],
  ['data', 'attributes', 'filter'],
  ['data', 'attributes', 'filter', 0],
  ['data', 'attributes', 'filter', 1],
  ['data', 'attributes', 'timezone'],
  ['data', 'attributes', 'sort'],
  ['data', 'attributes', 'return_fields'],
  ['data'],
];
const aggregateValue = fc.oneof(
  anyBad,
  fc.constantFrom(...INVALID_ZONES),
  filterText,
  fc.constantFrom('hour', 'day', 'week', 'month', 'year', 'minute', 'count', 'sum_value', 'unique', 'fzM'),
  fc.integer({ min: -10, max: 100_000 }),
  fc.constantFrom(
    ['greater-or-equal(datetime,1900-01-01T00:00:00)', 'less-than(datetime,2200-01-01T00:00:00)'],
    ['greater-or-equal(datetime,2024-01-01T00:00:00)', 'less-than(datetime,2023-01-01T00:00:00)'],
    ['greater-or-equal(datetime,2024-03-10T02:30:00)', 'less-than(datetime,2024-03-10T03:30:00)'],
  ),
);
const badAggregate = fc
  .array(fc.tuple(fc.constantFrom(...AGGREGATE_PATHS), fc.oneof(aggregateValue, fc.constant(MISSING))), {
    minLength: 1,
    maxLength: 4,
  })
  .map((mutations) => {
    let doc = setAt(aggregatesBase, ['data', 'attributes', 'metric_id'], 'fzM');
    for (const [path, value] of mutations) doc = value === MISSING ? removeAt(doc, path) : setAt(doc, path, value);
    return doc;
  });

describe(`${TOTAL} generated bad requests through the real handlers and database`, () => {
  let t: TestDatabase;
  let before: TableChecksum[];
  const statuses = new Map<number, number>();
  const count = (res: InvokeResult) => statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);

  /** The last error line the handlers logged: a failure message then says why it was a 500. */
  let lastError = '';

  beforeAll(async () => {
    setLogSink((line) => {
      lastError = line;
    });
    setLogLevel('error');
    process.env.INGEST_MAX_BODY_BYTES = String(MAX_BODY);
    t = await freshDatabase();
    // Something to read, and to protect: every write below must leave it as it is.
    expect((await invoke(ingest, { method: 'POST', path: '/api/events', body: eventsPage, key: 'write' })).status).toBe(
      200,
    );
    before = await databaseChecksum(t.db);
  });
  afterAll(async () => {
    setLogSink(undefined);
    setLogLevel('silent');
    delete process.env.INGEST_MAX_BODY_BYTES;
    await closeDb();
    await t.drop();
  });

  const expectRefused = (res: InvokeResult, what: string) => {
    count(res);
    if (res.status < 400 || res.status >= 500)
      throw new Error(
        `${what} answered ${res.status}: ${String(res.raw.body).slice(0, 500)}\nlogged: ${lastError.slice(0, 800)}`,
      );
    expect(res.headers['content-type']).toBe('application/vnd.api+json');
    expect(Array.isArray(res.body.errors) && res.body.errors.length > 0).toBe(true);
  };

  it('refuses every broken write document with a 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(badWrite, async ({ path, body }) => {
        const res = await invoke(ingest, { method: 'POST', path, routeKey: `POST ${path}`, body, key: 'write' });
        expectRefused(res, `POST ${path}`);
      }),
      runs(0.3),
    );
  });

  it('refuses invalid UTF-8, non-JSON, wrong media types, oversize bodies and deep nesting with a 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        badBytes,
        fc.constantFrom(...WRITES.map((w) => w.path), '/api/metric-aggregates'),
        fc.boolean(),
        async (bad, path, base64) => {
          const handler = path === '/api/metric-aggregates' ? metricAggregates : ingest;
          const res = await invoke(handler, {
            method: 'POST',
            path,
            routeKey: `POST ${path}`,
            body: bad.body,
            contentType: bad.contentType,
            base64,
            key: 'admin',
          });
          expectRefused(res, `POST ${path} (${bad.contentType}, ${bad.body.length} bytes)`);
        },
      ),
      runs(0.2),
    );
  });

  it('answers every generated read (filters, sorts, cursors, includes, ids) below 500', async () => {
    await fc.assert(
      fc.asyncProperty(badGet, async ({ route: routePath, id, query }) => {
        const route = GETS.find((g) => g.path === routePath) as (typeof GETS)[number];
        // The handlers read the id from pathParameters; the raw path only has to look like the route.
        const path = route.path.replace('{id}', 'fuzzed');
        const res = await invoke(route.handler, {
          method: 'GET',
          path,
          routeKey: `GET ${route.path}`,
          pathParams: route.id ? { id } : undefined,
          query: query as Record<string, string>,
          key: 'read',
        });
        count(res);
        if (res.status >= 500)
          throw new Error(
            `GET ${path} ${JSON.stringify(query).slice(0, 300)} answered ${res.status}: ${String(res.raw.body).slice(0, 300)}\nlogged: ${lastError.slice(0, 800)}`,
          );
      }),
      runs(0.3),
    );
  });

  it('answers every generated Query Metric Aggregates request below 500', async () => {
    await fc.assert(
      fc.asyncProperty(badAggregate, async (body) => {
        const res = await invoke(metricAggregates, {
          method: 'POST',
          path: '/api/metric-aggregates',
          body,
          key: 'read',
        });
        count(res);
        if (res.status >= 500)
          throw new Error(
            `POST /api/metric-aggregates ${JSON.stringify(body).slice(0, 500)} answered ${res.status}\nlogged: ${lastError.slice(0, 800)}`,
          );
      }),
      runs(0.2),
    );
  });

  it('left every table exactly as it was', async () => {
    expect(await databaseChecksum(t.db)).toEqual(before);
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThanOrEqual(Math.round(TOTAL * 0.3) + Math.round(TOTAL * 0.2) * 3);
    expect([...statuses.keys()].every((s) => s < 500)).toBe(true);
  });
});
