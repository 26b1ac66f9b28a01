import { handler as ingest } from '../../functions/ingest';
import * as metrics from '../../functions/metrics';
import * as profiles from '../../functions/profiles';
import { closeDb } from '../../lib/db';
import { freshDatabase, type TestDatabase } from '../support/database';
import { apiEvent, invoke, type InvokeOptions } from '../support/http';
import { databaseChecksum, rowCounts } from './support/checksum';

/**
 * The inputs the fuzz test sprays, pinned one by one: SQL injection strings stored as data, NUL
 * characters refused as 400 wherever they come from, and the body size limit at its exact edge.
 */
const INJECTIONS = [
  "'; DROP TABLE klaviyo_events; --",
  "x' OR '1'='1",
  '$1); DELETE FROM klaviyo_profiles; --',
  '$$; TRUNCATE klaviyo_metrics; $$',
  'Robert"); DROP TABLE klaviyo_profiles;--',
];
const LIMIT = 32 * 1024;

const post = (path: string, body: unknown, extra: Partial<InvokeOptions> = {}) =>
  invoke(ingest, { method: 'POST', path, routeKey: `POST ${path}`, body, key: 'write', ...extra });

describe('hostile inputs', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    process.env.INGEST_MAX_BODY_BYTES = String(LIMIT);
    t = await freshDatabase();
  });
  afterAll(async () => {
    delete process.env.INGEST_MAX_BODY_BYTES;
    await closeDb();
    await t.drop();
  });

  it('stores SQL injection strings as data, in ids, names and properties, and reads them back verbatim', async () => {
    const res = await post('/api/metrics', {
      data: INJECTIONS.map((s, i) => ({
        type: 'metric',
        id: `inj_${i}${s}`,
        attributes: { name: s, created: '2024-01-01T00:00:00+00:00', updated: '2024-01-01T00:00:00+00:00' },
      })),
    });
    expect(res.status).toBe(200);
    const profileRes = await post('/api/profiles', {
      data: INJECTIONS.map((s, i) => ({
        type: 'profile',
        id: `p${i}${s}`,
        attributes: { first_name: s, properties: { [s]: s }, updated: '2024-01-01T00:00:00+00:00' },
      })),
    });
    expect(profileRes.status).toBe(200);
    const counts = await rowCounts(t.db);
    expect(counts).toMatchObject({ metrics: INJECTIONS.length, profiles: INJECTIONS.length });

    for (const [i, s] of INJECTIONS.entries()) {
      const metric = await invoke(metrics.get, {
        path: '/api/metrics/{id}',
        pathParams: { id: `inj_${i}${s}` },
        key: 'read',
      });
      expect(metric.status).toBe(200);
      expect(metric.body.data.attributes.name).toBe(s);
      const profile = await invoke(profiles.get, {
        path: '/api/profiles/{id}',
        pathParams: { id: `p${i}${s}` },
        key: 'read',
      });
      expect(profile.status).toBe(200);
      expect(profile.body.data.attributes.first_name).toBe(s);
      expect(profile.body.data.attributes.properties).toEqual({ [s]: s });
      // As a filter value too: a row matches only its own id.
      const listed = await invoke(profiles.list, {
        path: '/api/profiles',
        query: { filter: `equals(id,${JSON.stringify(`p${i}${s}`)})` },
        key: 'read',
      });
      if (listed.status === 200) expect(listed.body.data.map((p: { id: string }) => p.id)).toEqual([`p${i}${s}`]);
      else expect(listed.status).toBe(400);
    }
    expect(await rowCounts(t.db)).toEqual(counts);
  });

  it('refuses a NUL character in a path id or a query parameter with a 400 naming it', async () => {
    for (const [handler, path] of [
      [metrics.get, '/api/metrics/{id}'],
      [profiles.get, '/api/profiles/{id}'],
      [profiles.events, '/api/profiles/{id}/events'],
    ] as const) {
      const res = await invoke(handler, { path, pathParams: { id: 'abc\u0000def' }, key: 'read' });
      expect(res.status).toBe(400);
      expect(res.body.errors[0]).toMatchObject({ status: '400', code: 'invalid', source: { parameter: 'id' } });
    }
    const res = await invoke(profiles.list, {
      path: '/api/profiles',
      query: { filter: 'equals(id,"a\u0000")' },
      key: 'read',
    });
    expect(res.status).toBe(400);
    expect(res.body.errors[0].source).toEqual({ parameter: 'filter' });
  });

  it('checks the key before it looks at NUL characters', async () => {
    const res = await invoke(metrics.get, { path: '/api/metrics/{id}', pathParams: { id: 'a\u0000' }, key: null });
    expect(res.status).toBe(401);
  });

  it('refuses NUL characters in stored text and JSON with a 4xx and writes nothing', async () => {
    const before = await databaseChecksum(t.db);
    const bodies = [
      {
        data: [
          { type: 'profile', id: 'nul1', attributes: { first_name: 'a\u0000b', updated: '2024-01-01T00:00:00+00:00' } },
        ],
      },
      {
        data: [
          {
            type: 'profile',
            id: 'nul2',
            attributes: { properties: { note: 'x\u0000y' }, updated: '2024-01-01T00:00:00+00:00' },
          },
        ],
      },
      { data: [{ type: 'profile', id: 'nul\u0000id', attributes: { updated: '2024-01-01T00:00:00+00:00' } }] },
    ];
    for (const body of bodies) {
      const res = await post('/api/profiles', body);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    }
    expect(await databaseChecksum(t.db)).toEqual(before);
  });

  // A text body is parsed as the string it is: an unpaired surrogate in it (API Gateway would not
  // produce one, an in-process caller can) is refused with its pointer, not silently replaced.
  it('decodes a base64 body strictly, and refuses an unpaired surrogate in a text body with its pointer', async () => {
    const before = await databaseChecksum(t.db);
    const page = (firstName: string) =>
      `{"data":[{"type":"profile","id":"sur1","attributes":{"first_name":"${firstName}","updated":"2024-01-01T00:00:00+00:00"}}]}`;
    const notUtf8 = Buffer.concat([
      Buffer.from(page('a')).subarray(0, 70),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from(page('a')).subarray(70),
    ]);
    const encoded = await post('/api/profiles', notUtf8, { base64: true });
    expect(encoded.status).toBe(400);
    expect(encoded.body.errors[0]).toMatchObject({ status: '400', code: 'invalid_encoding' });

    const event = apiEvent({
      method: 'POST',
      path: '/api/profiles',
      routeKey: 'POST /api/profiles',
      body: page('a'),
      key: 'write',
    });
    const raw = await ingest({ ...event, body: page('x\ud800y') });
    expect(raw.statusCode).toBe(400);
    expect(JSON.parse(String(raw.body)).errors[0]).toMatchObject({
      code: 'invalid_character',
      source: { pointer: '/data/0/attributes/first_name' },
    });
    expect(await databaseChecksum(t.db)).toEqual(before);
  });

  it('takes a body of exactly the limit and refuses one byte more with 413, before parsing it', async () => {
    const doc = { data: [] as unknown[], meta: { pad: '' } };
    const base = Buffer.byteLength(JSON.stringify(doc));
    doc.meta.pad = 'p'.repeat(LIMIT - base);
    const exact = JSON.stringify(doc);
    expect(Buffer.byteLength(exact)).toBe(LIMIT);
    expect((await post('/api/events', exact)).status).not.toBe(413);

    const over = await post('/api/events', `${exact} `);
    expect(over.status).toBe(413);
    expect(over.body.errors[0]).toMatchObject({ status: '413', code: 'payload_too_large' });
    // Counted in bytes, not characters: multi-byte text past the limit is refused too.
    const wide = await post('/api/events', JSON.stringify({ data: [], meta: { pad: 'é'.repeat(LIMIT / 2) } }));
    expect(wide.status).toBe(413);
    // Base64 bodies (API Gateway's binary mode) are measured decoded.
    expect((await post('/api/events', exact, { base64: true })).status).not.toBe(413);
    expect((await post('/api/events', 'x'.repeat(LIMIT + 1), { base64: true })).status).toBe(413);
  });
});
