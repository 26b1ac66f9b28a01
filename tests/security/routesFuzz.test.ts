import fc from 'fast-check';
import { closeDb } from '../../lib/db';
import { setLogLevel, setLogSink } from '../../lib/log';
import { deployedRoutes } from '../hardening/support/routes';
import { freshDatabase, type TestDatabase } from '../support/database';
import { testDriver } from '../support/env';
import { apiEvent } from '../support/http';
import { makeEvents, pageOf } from '../reliability/support/pages';
import { handler as ingest } from '../../functions/ingest';
import { invoke } from '../support/http';
import { databaseChecksum, type TableChecksum } from './support/checksum';

/**
 * Every HTTP route serverless.yml deploys (read from it, so routes added on other branches are
 * fuzzed without editing this file), through its real handler and the real database: generated
 * methods, path ids, query strings, headers (hostile Host and X-Forwarded-Host, odd content types,
 * garbage Authorization) and bodies. No answer is 500 or more, links never carry a client-chosen
 * host, and read-scope or unauthenticated requests write nothing.
 *
 * FUZZ_RUNS sets the number of requests (2,000 here by default); FUZZ_SEED replays a run.
 */
const TOTAL = Number(process.env.FUZZ_RUNS ?? (testDriver() === 'data-api' ? 300 : 2_000));
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;

const routes = deployedRoutes();
const HOSTILE_HOST = 'attacker.example';

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom("'; DROP TABLE klaviyo_events; --", '\u0000', '%00', '../../etc/passwd', 'Ω≈ç√', '{"a":1}', ''),
  fc.integer({ min: 1_000, max: 20_000 }).map((n) => 'x'.repeat(n)),
);
const body = fc.oneof(
  fc.constant(undefined),
  fc.jsonValue({ maxDepth: 4 }),
  text,
  fc.record({
    data: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 })),
  }),
);
const request = fc.record({
  route: fc.integer({ min: 0, max: routes.length - 1 }),
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'),
  id: text,
  query: fc.dictionary(
    fc.constantFrom('filter', 'sort', 'page[size]', 'page[cursor]', 'include', 'fields[event]', 'x', "'"),
    text,
    { maxKeys: 4 },
  ),
  key: fc.constantFrom('read', 'write', 'admin', null),
  contentType: fc.constantFrom(
    'application/vnd.api+json',
    'application/json',
    'text/plain',
    'multipart/form-data',
    null,
  ),
  body,
  base64: fc.boolean(),
  // Mostly a configured key, so that most requests get past authentication to the handler.
  authorization: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: text }),
});
type Generated = typeof request extends fc.Arbitrary<infer T> ? T : never;

describe(`${TOTAL} generated requests over every deployed route`, () => {
  let t: TestDatabase;
  let lastError = '';
  let baseline: TableChecksum[];

  beforeAll(async () => {
    setLogSink((line) => {
      lastError = line;
    });
    setLogLevel('error');
    t = await freshDatabase();
    const page = pageOf(
      makeEvents({ prefix: 'fz', count: 20, from: '2024-05-01T00:00:00Z', hours: 24, metrics: ['m1'], profiles: 5 }),
    );
    expect((await invoke(ingest, { method: 'POST', path: '/api/events', body: page, key: 'write' })).status).toBe(200);
    baseline = await databaseChecksum(t.db);
  });
  afterAll(async () => {
    setLogSink(undefined);
    setLogLevel('silent');
    await closeDb();
    await t.drop();
  });

  it('covers every route of serverless.yml', () => {
    expect(routes.length).toBeGreaterThanOrEqual(14);
  });

  const statuses = new Map<number, number>();

  async function send(r: Generated): Promise<void> {
    const route = routes[r.route] as (typeof routes)[number];
    const headers: Record<string, string> = {
      host: HOSTILE_HOST,
      'x-forwarded-host': HOSTILE_HOST,
      'x-forwarded-proto': 'http',
    };
    if (r.authorization !== undefined) headers.authorization = r.authorization;
    const event = apiEvent({
      method: r.method,
      path: route.path.replace('{id}', 'fuzzed'),
      routeKey: `${route.method} ${route.path}`,
      pathParams: route.path.includes('{id}') ? { id: r.id } : undefined,
      query: r.query,
      headers,
      body: r.body,
      contentType: r.contentType,
      base64: r.base64,
      key: r.authorization === undefined ? r.key : null,
    });
    const raw = await route.handler(event);
    const status = raw.statusCode ?? 0;
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    if (status >= 500 || status < 100) {
      throw new Error(
        `${r.method} ${route.path} answered ${status}: ${String(raw.body).slice(0, 300)}\nlogged: ${lastError.slice(0, 800)}`,
      );
    }
    expect(String(raw.body ?? '')).not.toContain(HOSTILE_HOST);
  }

  it('with a read key or none: below 500, no client-chosen host in links, and nothing written', async () => {
    const readOnly = request.map((r) => ({ ...r, key: r.key === 'read' ? ('read' as const) : null }));
    await fc.assert(fc.asyncProperty(readOnly, send), {
      numRuns: Math.round(TOTAL / 2),
      ...(seed === undefined ? {} : { seed }),
    });
    expect(await databaseChecksum(t.db)).toEqual(baseline);
  }, 600_000);

  it('with any key: below 500, no client-chosen host in links', async () => {
    await fc.assert(fc.asyncProperty(request, send), {
      numRuns: Math.round(TOTAL / 2),
      ...(seed === undefined ? {} : { seed }),
    });
    // Enough of them reached the handlers' own validation and the database, not only authentication.
    const past401 = [...statuses.entries()].filter(([s]) => s !== 401 && s !== 403).reduce((n, [, c]) => n + c, 0);
    expect(past401).toBeGreaterThan(TOTAL / 4);
  }, 600_000);
});
