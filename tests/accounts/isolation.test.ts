import { backfillDimensions, rebuildAggregates, runAggregation } from '../../lib/app/aggregation';
import { hashApiKey } from '../../lib/http/auth';
import { deployedRoutes, type DeployedRoute } from '../hardening/support/routes';
import { eventsPage } from '../ingest/helpers';
import { useFreshDatabase } from '../support/database';
import { FakeKlaviyo, eventOf, metricOf, profileOf } from '../support/fakeKlaviyo';
import { invoke, type InvokeOptions, type InvokeResult } from '../support/http';
import { TEST_KEYS } from '../support/setupEnv';
import { API_KEY, DAY, HOUR, harness } from '../sync/helpers';

/**
 * Accounts are a security boundary (issue 20). Two accounts hold data with the SAME Klaviyo ids (metric,
 * profile and event ids) and different contents; every route, the aggregator, dimension rollups and the
 * sync run for both, and neither ever sees, changes or counts the other's rows: reads answer from the
 * caller's account only, writes never touch the other's rows (a checksum of each account's rows in every
 * table is compared around each step), cursors and links of one account are refused with the other's
 * key, and an id of the other account is a 404 like an id that does not exist.
 */
const KEYS = {
  acmeRead: 'acme-read-key',
  acmeWrite: 'acme-write-key',
  globexRead: 'globex-read-key',
  globexWrite: 'globex-write-key',
} as const;
const ACME = 'acme';
const GLOBEX = 'globex';

process.env.API_KEYS = [
  `read@${ACME}:${hashApiKey(KEYS.acmeRead)}`,
  `write@${ACME}:${hashApiKey(KEYS.acmeWrite)}`,
  `read@${GLOBEX}:${hashApiKey(KEYS.globexRead)}`,
  `write@${GLOBEX}:${hashApiKey(KEYS.globexWrite)}`,
  `admin:${hashApiKey(TEST_KEYS.admin)}`,
].join(',');

// The same ids in both accounts; globex has 40 events more, other times, values, names and emails.
const acmePage = eventsPage({ events: 60, prefix: 'ev', start: '2025-03-10T00:00:00Z' });
const globexPage = (() => {
  const page = eventsPage({ events: 100, prefix: 'ev', start: '2025-03-12T06:30:00Z' });
  for (const e of page.data) e.attributes.event_properties.$value = 1000;
  for (const r of page.included) {
    if (r.type === 'metric') r.attributes.name = `Globex ${String(r.attributes.name)}`;
    if (r.type === 'profile') r.attributes.email = `globex-${String(r.attributes.email)}`;
  }
  return page;
})();
const SHARED_ID = 'ev000000';
const GLOBEX_ONLY_ID = 'ev000080';
const METRIC = 'Mev0';
const RANGE = ['greater-or-equal(datetime,2025-03-01T00:00:00)', 'less-than(datetime,2025-04-01T00:00:00)'];

function route(method: string, path: string): DeployedRoute {
  const found = deployedRoutes().find((r) => r.method === method && r.path === path);
  if (!found) throw new Error(`no route ${method} ${path}`);
  return found;
}

async function call(
  key: string,
  method: string,
  path: string,
  options: Omit<InvokeOptions, 'method' | 'path' | 'key'> & { id?: string } = {},
): Promise<InvokeResult> {
  const r = route(method, path);
  const { id, headers, ...rest } = options;
  return invoke(r.handler, {
    method,
    routeKey: `${method} ${path}`,
    path: id ? path.replace('{id}', id) : path,
    ...(id ? { pathParams: { id } } : {}),
    key: null,
    headers: { authorization: `Bearer ${key}`, ...headers },
    ...rest,
  });
}

/** Every event id and datetime a key sees through GET /api/events, following links.next. */
async function allEvents(key: string): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  let query: Record<string, string> = { 'page[size]': '25' };
  for (let page = 0; page < 20; page += 1) {
    const answer = await call(key, 'GET', '/api/events', { query });
    expect(answer.status).toBe(200);
    for (const e of answer.body.data) seen.set(e.id, e.attributes.datetime);
    const next: string | undefined = answer.body.links?.next ?? undefined;
    if (!next) return seen;
    query = Object.fromEntries(new URL(next).searchParams);
  }
  throw new Error('more pages than expected');
}

function aggregateBody(attributes: Record<string, unknown>) {
  return {
    data: {
      type: 'metric-aggregate',
      attributes: { metric_id: METRIC, measurements: ['count'], interval: 'day', filter: RANGE, ...attributes },
    },
  };
}

/** Count and sum of one metric's events in a page, as metric aggregates must report them. */
function expected(page: typeof acmePage) {
  const events = page.data.filter((e) => e.relationships.metric.data.id === METRIC);
  return {
    count: events.length,
    sum: events.reduce((s, e) => s + Number(e.attributes.event_properties.$value), 0),
    profiles: new Set(events.map((e) => e.relationships.profile.data.id)).size,
  };
}

const sumOf = (values: number[]) => values.reduce((s, v) => s + v, 0);

describe('two accounts with the same Klaviyo ids never see, change or count each other', () => {
  const database = useFreshDatabase();

  /** A checksum of each account's rows in every account-scoped table. */
  async function checksums(accountId: string): Promise<Record<string, string>> {
    const tables = await database.db.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'account_id'
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1`,
    );
    const out: Record<string, string> = {};
    for (const { name } of tables) {
      const [row] = await database.db.query<{ sum: string | null; n: string }>(
        `SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) AS sum, count(*) AS n FROM ${name} t WHERE t.account_id = $1`,
        [accountId],
      );
      out[name] = `${row?.n}:${row?.sum}`;
    }
    return out;
  }

  /** Runs `work` and checks that the other account's rows did not change. */
  async function leavesUntouched(other: string, work: () => Promise<void>): Promise<void> {
    const before = await checksums(other);
    await work();
    expect(await checksums(other)).toEqual(before);
  }

  beforeAll(async () => {
    const acme = await call(KEYS.acmeWrite, 'POST', '/api/events', { body: acmePage });
    expect(acme.status).toBeLessThan(300);
    await leavesUntouched(ACME, async () => {
      const globex = await call(KEYS.globexWrite, 'POST', '/api/events', { body: globexPage });
      expect(globex.status).toBeLessThan(300);
      // Not one of globex's events is a duplicate of acme's with the same id.
      expect(globex.body.data.attributes).toMatchObject({ received: 100, inserted: 100, duplicates: 0 });
    });
  });

  it('event lists: each key sees its own events, with its own times, through every page', async () => {
    const acme = await allEvents(KEYS.acmeRead);
    const globex = await allEvents(KEYS.globexRead);
    expect(acme.size).toBe(60);
    expect(globex.size).toBe(100);
    for (const e of acmePage.data) expect(acme.get(e.id)).toBe(e.attributes.datetime);
    for (const e of globexPage.data) expect(globex.get(e.id)).toBe(e.attributes.datetime);
  });

  it('a cursor or links.next of one account is refused with the other key, and leaks nothing', async () => {
    const first = await call(KEYS.acmeRead, 'GET', '/api/events', { query: { 'page[size]': '10' } });
    const next = new URL(first.body.links.next as string);
    const replayed = await call(KEYS.globexRead, 'GET', '/api/events', {
      query: Object.fromEntries(next.searchParams),
    });
    expect(replayed.status).toBe(400);
    expect(JSON.stringify(replayed.body)).not.toContain('"type":"event"');
    for (const [path, size] of [
      ['/api/profiles', '5'],
      ['/api/metrics', '1'],
    ] as const) {
      const own = await call(KEYS.acmeRead, 'GET', path, { query: { 'page[size]': size } });
      const link: string | undefined = own.body.links?.next ?? undefined;
      if (!link) continue;
      const other = await call(KEYS.globexRead, 'GET', path, { query: Object.fromEntries(new URL(link).searchParams) });
      expect({ path, status: other.status }).toEqual({ path, status: 400 });
    }
    const profileEvents = await call(KEYS.acmeRead, 'GET', '/api/profiles/{id}/events', {
      id: 'Pev0',
      query: { 'page[size]': '2' },
    });
    const link: string | undefined = profileEvents.body.links?.next ?? undefined;
    expect(link).toBeDefined();
    const other = await call(KEYS.globexRead, 'GET', '/api/profiles/{id}/events', {
      id: 'Pev0',
      query: Object.fromEntries(new URL(link as string).searchParams),
    });
    expect(other.status).toBe(400);
  });

  it('one event by id, its metric, its profile and relationships: own version; the other account’s id is a 404', async () => {
    const own = await call(KEYS.acmeRead, 'GET', '/api/events/{id}', { id: SHARED_ID });
    expect(own.body.data.attributes.datetime).toBe(acmePage.data[0].attributes.datetime);
    const theirs = await call(KEYS.globexRead, 'GET', '/api/events/{id}', { id: SHARED_ID });
    expect(theirs.body.data.attributes.datetime).toBe(globexPage.data[0].attributes.datetime);
    for (const path of [
      '/api/events/{id}',
      '/api/events/{id}/metric',
      '/api/events/{id}/profile',
      '/api/events/{id}/relationships/metric',
      '/api/events/{id}/relationships/profile',
    ]) {
      const guessed = await call(KEYS.acmeRead, 'GET', path, { id: GLOBEX_ONLY_ID });
      const missing = await call(KEYS.acmeRead, 'GET', path, { id: 'NoSuchEvent' });
      expect({ path, status: guessed.status }).toEqual({ path, status: 404 });
      // Indistinguishable from an id that exists nowhere (the detail names the id asked for).
      expect(guessed.body.errors[0].code).toBe(missing.body.errors[0].code);
    }
    const metric = await call(KEYS.acmeRead, 'GET', '/api/events/{id}/metric', { id: SHARED_ID });
    expect(metric.body.data.attributes.name).toBe('Metric 0');
  });

  it('metrics and profiles: own names and emails; a filter on the other account’s email finds nothing', async () => {
    const acmeMetrics = await call(KEYS.acmeRead, 'GET', '/api/metrics');
    const globexMetrics = await call(KEYS.globexRead, 'GET', '/api/metrics');
    expect(acmeMetrics.body.data.map((m: { attributes: { name: string } }) => m.attributes.name).sort()).toEqual([
      'Metric 0',
      'Metric 1',
      'Metric 2',
    ]);
    expect(
      globexMetrics.body.data.every((m: { attributes: { name: string } }) => m.attributes.name.startsWith('Globex')),
    ).toBe(true);
    const metric = await call(KEYS.globexRead, 'GET', '/api/metrics/{id}', { id: METRIC });
    expect(metric.body.data.attributes.name).toBe('Globex Metric 0');

    const profile = await call(KEYS.acmeRead, 'GET', '/api/profiles/{id}', { id: 'Pev0' });
    expect(profile.body.data.attributes.email).toBe('person0@example.com');
    const found = await call(KEYS.acmeRead, 'GET', '/api/profiles', {
      query: { filter: 'equals(email,"globex-person0@example.com")' },
    });
    expect(found.body.data).toEqual([]);
    const events = await call(KEYS.acmeRead, 'GET', '/api/profiles/{id}/events', { id: 'Pev0' });
    expect(events.body.data.length).toBe(
      acmePage.data.filter((e) => e.relationships.profile.data.id === 'Pev0').length,
    );
  });

  describe.each([
    ['before any aggregation (raw events)', async () => undefined],
    [
      'after the aggregator, a rebuild and a dimension backfill of both accounts',
      async (db: ReturnType<typeof useFreshDatabase>['db']) => {
        await runAggregation(db, ACME);
        await runAggregation(db, GLOBEX);
        await rebuildAggregates(db, GLOBEX);
        await backfillDimensions(db, { extraDimensions: ['Campaign Name'] });
      },
    ],
  ])('metric aggregates %s', (_when, prepare) => {
    beforeAll(() => prepare(database.db));

    it.each([
      ['hour', 'UTC'],
      ['day', 'America/New_York'],
      ['week', 'UTC'],
      ['month', 'Asia/Kolkata'],
    ])('count, sum_value and unique by %s in %s: each account its own', async (interval, timezone) => {
      for (const [key, page] of [
        [KEYS.acmeRead, acmePage],
        [KEYS.globexRead, globexPage],
      ] as const) {
        const answer = await call(key, 'POST', '/api/metric-aggregates', {
          body: aggregateBody({ measurements: ['count', 'sum_value', 'unique'], interval, timezone }),
        });
        expect(answer.status).toBe(200);
        const measurements = answer.body.data.attributes.data[0].measurements;
        const want = expected(page);
        expect(sumOf(measurements.count)).toBe(want.count);
        expect(sumOf(measurements.sum_value)).toBeCloseTo(want.sum, 6);
        expect(Math.max(...measurements.unique)).toBeLessThanOrEqual(want.profiles);
      }
    });

    it('a breakdown (by Campaign Name) and a filter on it count each account’s own events', async () => {
      for (const [key, page] of [
        [KEYS.acmeRead, acmePage],
        [KEYS.globexRead, globexPage],
      ] as const) {
        const by = await call(key, 'POST', '/api/metric-aggregates', {
          body: aggregateBody({ measurements: ['count'], by: ['Campaign Name'] }),
        });
        expect(by.status).toBe(200);
        const total = sumOf(
          by.body.data.attributes.data.flatMap((d: { measurements: { count: number[] } }) => d.measurements.count),
        );
        expect(total).toBe(expected(page).count);
        const filtered = await call(key, 'POST', '/api/metric-aggregates', {
          body: aggregateBody({ filter: [...RANGE, 'equals(Campaign Name,"C0")'] }),
        });
        const want = page.data.filter(
          (e) => e.relationships.metric.data.id === METRIC && e.attributes.event_properties['Campaign Name'] === 'C0',
        ).length;
        expect(sumOf(filtered.body.data.attributes.data[0].measurements.count)).toBe(want);
      }
    });
  });

  it('the aggregator of one account leaves the other’s rollups and marks alone', async () => {
    await call(KEYS.globexWrite, 'POST', '/api/events', {
      body: eventsPage({ events: 30, prefix: 'late', start: '2025-03-11T00:00:00Z' }),
    });
    await leavesUntouched(GLOBEX, async () => {
      await runAggregation(database.db, ACME);
      await rebuildAggregates(database.db, ACME);
    });
    await leavesUntouched(ACME, () => runAggregation(database.db, GLOBEX).then(() => undefined));
  });

  it('writes by one key never change the other account: profiles, Klaviyo write shapes, metrics', async () => {
    await leavesUntouched(ACME, async () => {
      const newer = eventsPage({ events: 1, prefix: 'ev', profileUpdated: '2026-01-01T00:00:00+00:00' });
      const profiles = newer.included.filter((r) => r.type === 'profile');
      expect((await call(KEYS.globexWrite, 'POST', '/api/profiles', { body: { data: profiles } })).status).toBeLessThan(
        300,
      );
      // Acme's email, in globex: a new globex profile, never acme's.
      const imported = await call(KEYS.globexWrite, 'POST', '/api/profile-import', {
        body: { data: { type: 'profile', attributes: { email: 'person1@example.com', first_name: 'Globex' } } },
      });
      expect(imported.status).toBeLessThan(300);
      const created = await call(KEYS.globexWrite, 'POST', '/api/events', {
        body: {
          data: {
            type: 'event',
            attributes: {
              properties: { $value: 5 },
              time: '2025-03-20T00:00:00Z',
              metric: { data: { type: 'metric', attributes: { name: 'Metric 0' } } },
              profile: { data: { type: 'profile', attributes: { email: 'person2@example.com' } } },
            },
          },
        },
      });
      expect(created.status).toBeLessThan(300);
    });
    const acmeProfile = await call(KEYS.acmeRead, 'GET', '/api/profiles', {
      query: { filter: 'equals(email,"person1@example.com")' },
    });
    expect(acmeProfile.body.data).toHaveLength(1);
    expect(acmeProfile.body.data[0].attributes.first_name).toBe('First1');
  });

  it('the admin header: a non-admin key naming another account is refused; an admin key acts on it', async () => {
    for (const key of [KEYS.acmeRead, KEYS.acmeWrite]) {
      const refused = await call(key, 'GET', '/api/events', { headers: { 'x-account-id': GLOBEX } });
      expect(refused.status).toBe(403);
      expect(JSON.stringify(refused.body)).not.toContain('"type":"event"');
    }
    const admin = await call(TEST_KEYS.admin, 'GET', '/api/events/{id}', {
      id: GLOBEX_ONLY_ID,
      headers: { 'x-account-id': GLOBEX },
    });
    expect(admin.status).toBe(200);
    const adminAcme = await call(TEST_KEYS.admin, 'GET', '/api/events/{id}', {
      id: GLOBEX_ONLY_ID,
      headers: { 'x-account-id': ACME },
    });
    expect(adminAcme.status).toBe(404);
    const invalid = await call(TEST_KEYS.admin, 'GET', '/api/events', {
      headers: { 'x-account-id': "acme' OR '1'='1" },
    });
    expect(invalid.status).toBe(400);
  });

  it('the sync keeps each account to its own source, with the same ids in both', async () => {
    const now = Date.parse('2026-03-20T12:00:00Z');
    const sources = new Map<string, FakeKlaviyo>();
    for (const [account, events] of [
      [ACME, 40],
      [GLOBEX, 70],
    ] as const) {
      const fake = new FakeKlaviyo({ apiKey: API_KEY });
      await fake.start();
      fake.addMetric(metricOf('SyncShared', `${account} synced`));
      for (let p = 0; p < 4; p += 1) fake.putProfile(profileOf(`SyncP${p}`, now - 10 * DAY + p * HOUR));
      for (let i = 0; i < events; i += 1) {
        fake.addEvent(eventOf(`SyncE${i}`, 'SyncShared', `SyncP${i % 4}`, now - 5 * DAY + i * HOUR, { $value: 1 }));
      }
      sources.set(account, fake);
    }
    try {
      for (const account of [ACME, GLOBEX]) {
        const other = account === ACME ? GLOBEX : ACME;
        await leavesUntouched(other, async () => {
          const h = harness(
            () => database.db,
            () => sources.get(account) as FakeKlaviyo,
            now,
          );
          for (let run = 0; run < 10; run += 1) {
            const result = await h.sync({ accountId: account });
            expect(result.status).not.toBe('error');
            if (result.caughtUp) break;
          }
        });
      }
      const acmeCount = await call(KEYS.acmeRead, 'POST', '/api/metric-aggregates', {
        body: {
          data: {
            type: 'metric-aggregate',
            attributes: {
              metric_id: 'SyncShared',
              measurements: ['count'],
              interval: 'month',
              filter: ['greater-or-equal(datetime,2026-03-01T00:00:00)', 'less-than(datetime,2026-04-01T00:00:00)'],
            },
          },
        },
      });
      expect(sumOf(acmeCount.body.data.attributes.data[0].measurements.count)).toBe(40);
      const status = await call(KEYS.globexRead, 'GET', '/api/sync-status');
      expect(status.status).toBe(200);
    } finally {
      for (const fake of sources.values()) await fake.stop();
    }
  });
});
