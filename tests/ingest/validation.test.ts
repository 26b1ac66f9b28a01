import { getDb } from '../../lib/db';
import { handler } from '../../functions/ingest';
import { ingestEventsPage } from '../../lib/app/ingest';
import { useFreshDatabase } from '../support/database';
import { invoke } from '../support/http';
import { counts, eventsPage } from './helpers';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * Every validation rule answers 400 (as Klaviyo does) with a pointer to the offending item, lists all of them at
 * once, and writes nothing. Transport rules (size, content type, JSON) answer 413/415/400.
 */
const NOTHING = { metrics: 0, profiles: 0, events: 0, dirty: 0 };

function pointers(body: { errors: { source?: { pointer?: string } }[] }): string[] {
  return body.errors.map((e) => e.source?.pointer ?? '').sort();
}

describe('ingest validation', () => {
  const t = useFreshDatabase();

  it('rejects a page with every invalid event listed by pointer, and writes none of the valid ones', async () => {
    const page = eventsPage({ events: 20, prefix: 'bad' });
    const d = page.data;
    d[3].attributes.datetime = 'yesterday';
    d[17].attributes.datetime = '1989-12-31T23:59:59+00:00';
    delete d[17].attributes.timestamp;
    d[9].attributes.datetime = '2099-01-01T00:00:00+00:00';
    delete d[9].attributes.timestamp;
    d[4].attributes.timestamp += 3600; // disagrees with its datetime
    d[5].id = '';
    d[6].id = 'x'.repeat(65);
    delete d[8].relationships.metric;
    d[10].attributes.event_properties.note = 'a\u0000b';
    d[11].attributes.event_properties.blob = 'y'.repeat(100 * 1024 + 1);
    d[12].attributes.event_properties['\ud800'] = 1;
    d[13].attributes.value = 'twelve';
    d[14].type = 'profile';
    page.included[0].attributes.updated = 'not a date';
    page.included[1].attributes = 'nope';

    const res = await invoke(handler, { method: 'POST', path: '/api/events', body: page, key: 'write' });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/vnd.api+json');
    expect(pointers(res.body)).toEqual(
      [
        '/data/3/attributes/datetime',
        '/data/4/attributes/timestamp',
        '/data/5/id',
        '/data/6/id',
        '/data/8/relationships/metric',
        '/data/9/attributes/datetime',
        '/data/10/attributes/event_properties/note',
        '/data/11/attributes/event_properties/blob',
        '/data/12/attributes/event_properties/\ud800',
        '/data/13/attributes/value',
        '/data/14/type',
        '/data/17/attributes/datetime',
        '/included/0/attributes/updated',
        '/included/1/attributes',
      ].sort(),
    );
    for (const e of res.body.errors) {
      expect(e.status).toBe('400');
      expect(typeof e.code).toBe('string');
      expect(e.detail.length).toBeGreaterThan(0);
    }
    expect(await counts(t.db)).toEqual(NOTHING);
  });

  it('accepts a string of exactly 100 kB, and the key of a nested object is checked too', async () => {
    const ok = eventsPage({ events: 1, prefix: 'edge' });
    ok.data[0].attributes.event_properties.blob = 'y'.repeat(100 * 1024);
    expect((await invoke(handler, { method: 'POST', path: '/api/events', body: ok, key: 'write' })).status).toBe(200);

    const bad = eventsPage({ events: 1, prefix: 'edge2' });
    bad.data[0].attributes.event_properties.items = [{ ['k\u0000']: 1 }];
    const res = await invoke(handler, { method: 'POST', path: '/api/events', body: bad, key: 'write' });
    expect(res.status).toBe(400);
    expect(pointers(res.body)).toEqual(['/data/0/attributes/event_properties/items/0/k\u0000']);
    await t.db.query(`DELETE FROM klaviyo_events WHERE account_id = 'default'`);
    await t.db.query(`DELETE FROM klaviyo_aggregate_dirty WHERE account_id = 'default'`);
    await t.db.query(`DELETE FROM klaviyo_profiles WHERE account_id = 'default'`);
    await t.db.query(`DELETE FROM klaviyo_metrics WHERE account_id = 'default'`);
  });

  it('accepts a page of exactly the limit and rejects one more event, before reading any of them', async () => {
    const atLimit = eventsPage({ events: 1000, prefix: 'lim', metrics: 5, profiles: 50 });
    const res = await invoke(handler, { method: 'POST', path: '/api/events', body: atLimit, key: 'write' });
    expect(res.status).toBe(200);
    expect(res.body.data.attributes.inserted).toBe(1000);

    const over = eventsPage({ events: 1001, prefix: 'over', metrics: 5, profiles: 50 });
    const before = await counts(t.db);
    const rejected = await invoke(handler, { method: 'POST', path: '/api/events', body: over, key: 'write' });
    expect(rejected.status).toBe(400);
    expect(rejected.body.errors).toEqual([
      expect.objectContaining({ status: '400', code: 'too_many_resources', source: { pointer: '/data' } }),
    ]);
    expect(await counts(t.db)).toEqual(before);

    // The limit is an option of the library entry point (INGEST_MAX_RESOURCES for the handler).
    const small = eventsPage({ events: 11, prefix: 'opt' });
    await expect(ingestEventsPage(getDb(), DEFAULT_ACCOUNT_ID, small, { maxResources: 10 })).rejects.toMatchObject({
      status: 400,
    });
    await expect(ingestEventsPage(getDb(), DEFAULT_ACCOUNT_ID, small, { maxResources: 11 })).resolves.toMatchObject({
      inserted: 11,
    });
  });

  it('answers 413 past 5 MB and accepts a body of exactly 5 MB', async () => {
    const limit = 5 * 1024 * 1024;
    const exact = (size: number): Buffer => {
      const head = '{"data":[],"padding":[';
      const chunks: string[] = [];
      let used = head.length + 2;
      while (used < size) {
        const room = size - used - 3; // quotes and a comma
        const n = Math.min(100 * 1024, room);
        if (n <= 0) break;
        chunks.push(`"${'p'.repeat(n)}"`);
        used += n + 3;
      }
      let text = `${head}${chunks.join(',')}]}`;
      text = text.replace('{"data"', `{${' '.repeat(size - Buffer.byteLength(text))}"data"`);
      return Buffer.from(text, 'utf8');
    };
    const atLimit = exact(limit);
    expect(atLimit.length).toBe(limit);
    const ok = await invoke(handler, { method: 'POST', path: '/api/events', body: atLimit, key: 'write' });
    expect(ok.status).toBe(200);
    expect(ok.body.data.attributes.received).toBe(0);

    const over = exact(limit + 1);
    const res = await invoke(handler, { method: 'POST', path: '/api/events', body: over, key: 'write' });
    expect(res.status).toBe(413);
    expect(res.body.errors[0].status).toBe('413');
  });

  it('answers 415 to a wrong content type, accepts application/json, and 400 to malformed JSON', async () => {
    const page = eventsPage({ events: 2, prefix: 'ct' });
    const before = await counts(t.db);
    const wrong = await invoke(handler, {
      method: 'POST',
      path: '/api/events',
      body: page,
      key: 'write',
      contentType: 'text/plain',
    });
    expect(wrong.status).toBe(415);
    const malformed = await invoke(handler, { method: 'POST', path: '/api/events', body: '{"data": [', key: 'write' });
    expect(malformed.status).toBe(400);
    expect(malformed.body.errors[0].code).toBe('invalid_json');
    expect(await counts(t.db)).toEqual(before);

    const json = await invoke(handler, {
      method: 'POST',
      path: '/api/events',
      body: page,
      key: 'write',
      contentType: 'application/json; charset=utf-8',
    });
    expect(json.status).toBe(200);
    expect(json.body.data.attributes.inserted).toBe(2);
  });

  it('needs the write scope', async () => {
    const page = eventsPage({ events: 1, prefix: 'auth' });
    expect((await invoke(handler, { method: 'POST', path: '/api/events', body: page, key: 'read' })).status).toBe(403);
    expect((await invoke(handler, { method: 'POST', path: '/api/events', body: page, key: null })).status).toBe(401);
  });

  it('rejects invalid profile and metric upserts with pointers and writes nothing', async () => {
    const before = await counts(t.db);
    const profiles = await invoke(handler, {
      method: 'POST',
      path: '/api/profiles',
      key: 'write',
      body: {
        data: [
          { type: 'profile', id: 'ok1', attributes: { email: 'a@example.com' } },
          { type: 'profile', id: 'ok2', attributes: { updated: '2024-13-01T00:00:00Z' } },
          { type: 'metric', id: 'ok3', attributes: {} },
          { type: 'profile', attributes: { location: [] } },
        ],
      },
    });
    expect(profiles.status).toBe(400);
    expect(pointers(profiles.body)).toEqual([
      '/data/1/attributes/updated',
      '/data/2/type',
      '/data/3/attributes/location',
      '/data/3/id',
    ]);

    const metrics = await invoke(handler, {
      method: 'POST',
      path: '/api/metrics',
      key: 'write',
      body: {
        data: [
          { type: 'metric', id: 'm1', attributes: { name: 'Placed Order' } },
          { type: 'metric', id: 'm2', attributes: { name: '' } },
        ],
      },
    });
    expect(metrics.status).toBe(400);
    expect(pointers(metrics.body)).toEqual(['/data/1/attributes/name']);
    expect(await counts(t.db)).toEqual(before);
  });

  it('rejects Create Event and Bulk Create bodies item by item with Klaviyo-shaped pointers', async () => {
    const before = await counts(t.db);
    const create = await invoke(handler, {
      method: 'POST',
      path: '/api/events',
      key: 'write',
      body: {
        data: {
          type: 'event',
          attributes: {
            properties: {},
            time: '1989-01-01T00:00:00+00:00',
            metric: { data: { type: 'metric', attributes: { name: 'Viewed Product' } } },
            profile: { data: { type: 'profile', attributes: { first_name: 'No identifier' } } },
          },
        },
      },
    });
    expect(create.status).toBe(400);
    expect(pointers(create.body)).toEqual(['/data/attributes/profile/data', '/data/attributes/time']);

    const entry = (events: unknown[], email = 'bulk@example.com') => ({
      type: 'event-bulk-create',
      attributes: { profile: { data: { type: 'profile', attributes: { email } } }, events: { data: events } },
    });
    const event = (time: string, name = 'Placed Order') => ({
      type: 'event',
      attributes: { properties: {}, time, metric: { data: { type: 'metric', attributes: { name } } } },
    });
    const bulk = await invoke(handler, {
      method: 'POST',
      path: '/api/event-bulk-create-jobs',
      key: 'write',
      body: {
        data: {
          type: 'event-bulk-create-job',
          attributes: {
            'events-bulk-create': {
              data: [
                entry([event('2024-01-01T00:00:00Z')]),
                entry([
                  event('2024-01-01T00:00:00Z'),
                  event('2199-01-01T00:00:00Z'),
                  event('2024-01-01T00:00:00Z', 'x'.repeat(128)),
                ]),
              ],
            },
          },
        },
      },
    });
    expect(bulk.status).toBe(400);
    const base = '/data/attributes/events-bulk-create/data/1/attributes/events/data';
    expect(pointers(bulk.body)).toEqual([
      `${base}/1/attributes/time`,
      `${base}/2/attributes/metric/data/attributes/name`,
    ]);

    const tooMany = await invoke(handler, {
      method: 'POST',
      path: '/api/event-bulk-create-jobs',
      key: 'write',
      body: {
        data: {
          type: 'event-bulk-create-job',
          attributes: {
            'events-bulk-create': {
              data: [
                entry(Array.from({ length: 600 }, () => event('2024-01-01T00:00:00Z'))),
                entry(
                  Array.from({ length: 401 }, () => event('2024-01-01T00:00:00Z')),
                  'b@example.com',
                ),
              ],
            },
          },
        },
      },
    });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.errors).toEqual([expect.objectContaining({ code: 'too_many_resources' })]);
    expect(await counts(t.db)).toEqual(before);
  });
});
