import { handler as aggregate } from '../../functions/aggregate';
import * as events from '../../functions/events';
import { handler as ingest } from '../../functions/ingest';
import { handler as metricAggregates } from '../../functions/metricAggregates';
import * as profiles from '../../functions/profiles';
import { closeDb } from '../../lib/db';
import { createPostgresDb } from '../../lib/db/postgres';
import type { ClosableDb } from '../../lib/db/port';
import { hashApiKey } from '../../lib/http/auth';
import { setLogLevel, setLogSink } from '../../lib/log';
import { freshDatabase, type TestDatabase } from '../support/database';
import { testDriver, tuning } from '../support/env';
import { invoke, type InvokeOptions, type InvokeResult } from '../support/http';
import { TEST_KEYS } from '../support/setupEnv';
import { terminateHandlerConnections } from '../reliability/support/faults';
import { makeEvents, pageOf, profileEmail, profilePhone } from '../reliability/support/pages';

/**
 * Every log line written while the real handlers serve a full session on the real database, at
 * debug level with SQL logging on: ingest of profiles carrying emails and phone numbers (both API
 * key schemes), Klaviyo's Create Event and Bulk Create, refused documents that echo personal data,
 * reads filtered by email, wrong keys, a connection lost and retried, a database error whose message
 * carries an email and a phone number, and the aggregator. No line may contain an email, a phone
 * number or an API key; and each HTTP invocation writes exactly one request line.
 */
const WRONG_KEYS = ['sk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0', 'pk_b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8'];
const EXTRA_EMAILS = [
  'sarah.mason@klaviyo-demo.com',
  'Trigger.Victim@Example-Shop.com',
  'bulk.buyer@example.org',
  'not-quite@valid',
];
const EXTRA_PHONES = ['+15005550006', '+447700900123', '+16175550199'];

describe('log privacy across real invocations', () => {
  let t: TestDatabase;
  let db: ClosableDb;
  const lines: string[] = [];
  let httpInvocations = 0;

  const call = async (handler: Parameters<typeof invoke>[0], options: InvokeOptions): Promise<InvokeResult> => {
    httpInvocations += 1;
    return invoke(handler, options);
  };
  const post = (path: string, body: unknown, extra: Partial<InvokeOptions> = {}) =>
    call(ingest, { method: 'POST', path, routeKey: `POST ${path}`, body, key: 'write', ...extra });

  beforeAll(async () => {
    process.env.LOG_SQL = 'true';
    t = await freshDatabase();
    db =
      testDriver() === 'postgres'
        ? createPostgresDb({ url: t.url, ...tuning, applicationName: 'reliability-test' })
        : t.db;
    setLogSink((line) => lines.push(line));
    setLogLevel('debug');
  });
  afterAll(async () => {
    setLogSink(undefined);
    setLogLevel('silent');
    delete process.env.LOG_SQL;
    await closeDb();
    if (db !== t.db) await db.close();
    await t.drop();
  });

  it('runs a full session', async () => {
    const page = pageOf(
      makeEvents({
        prefix: 'priv',
        count: 60,
        from: '2024-04-01T00:00:00Z',
        hours: 12,
        metrics: ['mPriv'],
        profiles: 25,
      }),
    );
    expect((await post('/api/events', page)).status).toBe(200);
    // Klaviyo's scheme, as its SDKs send it.
    const again = await post('/api/events', page, {
      key: null,
      headers: { authorization: `Klaviyo-API-Key ${TEST_KEYS.write}` },
    });
    expect(again.status).toBe(200);

    const createEvent = {
      data: {
        type: 'event',
        attributes: {
          properties: { ProductName: 'Pooh', contact: 'sarah.mason@klaviyo-demo.com' },
          time: '2024-04-01T05:00:00+00:00',
          value: 9.99,
          metric: { data: { type: 'metric', attributes: { name: 'Viewed Product' } } },
          profile: {
            data: {
              type: 'profile',
              attributes: { email: 'sarah.mason@klaviyo-demo.com', phone_number: '+15005550006' },
            },
          },
        },
      },
    };
    expect((await post('/api/events', createEvent)).status).toBe(202);
    const bulk = {
      data: {
        type: 'event-bulk-create-job',
        attributes: {
          'events-bulk-create': {
            data: [
              {
                type: 'event-bulk-create',
                attributes: {
                  profile: {
                    data: {
                      type: 'profile',
                      attributes: { email: 'bulk.buyer@example.org', phone_number: '+447700900123' },
                    },
                  },
                  events: { data: [createEvent.data] },
                },
              },
            ],
          },
        },
      },
    };
    expect((await post('/api/event-bulk-create-jobs', bulk)).status).toBe(202);

    // Refused documents whose error details may echo what was sent.
    const badProfiles = {
      data: [
        {
          type: 'profile',
          id: 'bad1',
          attributes: { email: 'not-quite@valid', phone_number: '+16175550199', updated: 'yesterday' },
        },
        { type: 'profile', id: 42, attributes: { email: profileEmail(3) } },
      ],
    };
    const refused = await post('/api/profiles', badProfiles);
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(500);

    // Reads, one filtered by an email (the filter text is request data, not a log field).
    const read = (handler: Parameters<typeof invoke>[0], path: string, extra: Partial<InvokeOptions> = {}) =>
      call(handler, { method: 'GET', path, routeKey: `GET ${path}`, key: 'read', ...extra });
    expect(
      (await read(profiles.list, '/api/profiles', { query: { filter: `equals(email,"${profileEmail(3)}")` } })).status,
    ).toBeLessThan(500);
    expect((await read(profiles.get, '/api/profiles/{id}', { pathParams: { id: 'prof_3' } })).status).toBe(200);
    expect((await read(events.list, '/api/events', { query: { include: 'profile' } })).status).toBe(200);
    const aggregates = await call(metricAggregates, {
      method: 'POST',
      path: '/api/metric-aggregates',
      key: 'read',
      body: {
        data: {
          type: 'metric-aggregate',
          attributes: {
            metric_id: 'mPriv',
            measurements: ['count', 'unique'],
            interval: 'hour',
            filter: ['greater-or-equal(datetime,2024-04-01T00:00:00)', 'less-than(datetime,2024-04-02T00:00:00)'],
            timezone: 'UTC',
          },
        },
      },
    });
    expect(aggregates.status).toBe(200);

    // Wrong keys, in both schemes and where no key belongs.
    for (const key of WRONG_KEYS) {
      expect(
        (await read(profiles.list, '/api/profiles', { key: null, headers: { authorization: `Bearer ${key}` } })).status,
      ).toBe(401);
      expect(
        (await post('/api/events', page, { key: null, headers: { authorization: `Klaviyo-API-Key ${key}` } })).status,
      ).toBe(401);
      expect((await read(profiles.list, '/api/profiles', { query: { api_key: key } })).status).toBe(400);
    }
    expect((await post('/api/events', page, { key: 'read' })).status).toBe(403);

    if (testDriver() === 'postgres') {
      // A connection lost between invocations: when postgres.js meets the dead socket on use, the
      // driver's retry writes a warning carrying the error (checked with the other lines below). It
      // may also notice the close first and reconnect silently: that race is why no test here
      // requires the warning (tests/reliability/connections.test.ts covers the retry itself).
      await terminateHandlerConnections(db);
      expect((await post('/api/events', page)).status).toBe(200);
    }

    // A database error whose message carries an email and a phone number reaches the error log line.
    await db.query(`
      CREATE FUNCTION reject_profile() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'profile % (%) rejected', NEW.email, NEW.phone_number USING ERRCODE = 'P0001';
      END $$`);
    await db.query(
      'CREATE TRIGGER reject_profile BEFORE INSERT OR UPDATE ON klaviyo_profiles FOR EACH ROW EXECUTE FUNCTION reject_profile()',
    );
    const failing = await post('/api/profiles', {
      data: [
        {
          type: 'profile',
          id: 'trigger_victim',
          attributes: {
            email: 'Trigger.Victim@Example-Shop.com',
            phone_number: '+16175550199',
            updated: '2024-05-01T00:00:00+00:00',
          },
        },
      ],
    });
    expect(failing.status).toBe(500);
    expect(failing.raw.body).not.toContain('Trigger.Victim');
    await db.query('DROP TRIGGER reject_profile ON klaviyo_profiles');

    const run = await aggregate({}, {});
    expect(run.status).toBe('done');
  });

  it('captured the session: SQL at debug, an error, and one request line per invocation', () => {
    const entries = lines.map(
      (line) => JSON.parse(line) as { level: string; message: string; error?: { message?: string } },
    );
    expect(entries.some((e) => e.level === 'debug' && e.message === 'sql')).toBe(true);
    expect(entries.some((e) => e.level === 'error' && /rejected/.test(e.error?.message ?? ''))).toBe(true);
    const requestLines = entries.filter((e) => e.message === 'request' || e.message === 'request failed');
    expect(requestLines).toHaveLength(httpInvocations);
  });

  it('never logged an email, a phone number or an API key', () => {
    const log = lines.join('\n');
    const emails = [...Array.from({ length: 25 }, (_, n) => profileEmail(n)), ...EXTRA_EMAILS];
    const phones = [...Array.from({ length: 25 }, (_, n) => profilePhone(n)), ...EXTRA_PHONES];
    const keys = [...Object.values(TEST_KEYS), ...WRONG_KEYS];
    for (const email of emails)
      expect({ email, found: log.toLowerCase().includes(email.toLowerCase()) }).toEqual({ email, found: false });
    // Anything shaped like an email, not only the ones sent.
    expect(log.match(/[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g) ?? []).toEqual([]);
    for (const phone of phones) {
      const national = phone.replace(/^\+1?/, '');
      expect({ phone, found: log.includes(phone) || log.includes(national) }).toEqual({ phone, found: false });
    }
    for (const key of keys) {
      expect({ key, found: log.includes(key) }).toEqual({ key, found: false });
      expect({ key, hashFound: log.includes(hashApiKey(key)) }).toEqual({ key, hashFound: false });
    }
    expect(log).not.toMatch(/(bearer|klaviyo-api-key)\s+(?!\[redacted\])\S/i);
  });
});
