import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';
import { closeDb } from '../../lib/db';
import { generatePages } from '../../lib/demo/generator';
import { startLocalApi, type LocalApi } from '../../scripts/local-api';
import { freshDatabase, type TestDatabase } from '../support/database';
import { TEST_KEYS } from '../support/setupEnv';

/**
 * openapi.yaml against the real handlers: every request goes over HTTP to the functions, routed as
 * serverless.yml says, and every answer (status, content type, body) must be one the document
 * describes. A handler that answers a shape, a status or a media type the document does not list
 * fails here, and so does a route that one of the two files has and the other lacks.
 */
const ROOT = join(__dirname, '..', '..');

interface Operation {
  responses: Record<string, ResponseObject | { $ref: string }>;
}
interface ResponseObject {
  description: string;
  content?: Record<string, { schema?: unknown }>;
  headers?: Record<string, unknown>;
}
interface OpenApi {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: Record<string, Record<string, unknown>>;
}

const doc = parse(readFileSync(join(ROOT, 'openapi.yaml'), 'utf8')) as OpenApi;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, 'openapi');

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function operations(): string[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((m) => METHODS.includes(m))
      .map((m) => `${m.toUpperCase()} ${path}`),
  );
}

function resolveResponse(response: ResponseObject | { $ref: string }): { object: ResponseObject; at: string } {
  if ('$ref' in response) {
    const parts = response.$ref.replace(/^#\//, '').split('/');
    const object = parts.reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], doc) as ResponseObject;
    return { object, at: parts.map((p) => pointer(p)).join('/') };
  }
  return { object: response, at: '' };
}

const validators = new Map<string, ValidateFunction>();
function validatorAt(schemaPointer: string): ValidateFunction {
  let v = validators.get(schemaPointer);
  if (!v) {
    v = ajv.getSchema(`openapi#/${schemaPointer}`);
    if (!v) throw new Error(`openapi.yaml has no schema at ${schemaPointer}`);
    validators.set(schemaPointer, v);
  }
  return v;
}

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly text: string;
}

const covered = new Map<string, Set<number>>();

/** Fails unless the answer is one that openapi.yaml documents for this operation. */
function expectDocumented(operation: string, answer: Answer): void {
  const [method, path] = operation.split(' ') as [string, string];
  const op = doc.paths[path]?.[method.toLowerCase()];
  if (!op) throw new Error(`openapi.yaml does not document ${operation}`);
  const documented = op.responses[String(answer.status)];
  if (!documented) {
    throw new Error(
      `${operation} answered ${answer.status}, which openapi.yaml does not list: ${answer.text.slice(0, 300)}`,
    );
  }
  const { object, at } = resolveResponse(documented);
  const mediaType = answer.contentType.split(';')[0]?.trim() ?? '';
  // A response that documents a body may still come without one where it says so (x-empty-body-allowed:
  // POST /api/events's 202 is Klaviyo's empty Create Event answer, or a queued page's receipt).
  const emptyAllowed = (object as { 'x-empty-body-allowed'?: boolean })['x-empty-body-allowed'] === true;
  if (!object.content || (emptyAllowed && answer.text === '')) {
    expect({ operation, status: answer.status, body: answer.text }).toEqual({
      operation,
      status: answer.status,
      body: '',
    });
  } else {
    const media = object.content[mediaType];
    if (!media)
      throw new Error(
        `${operation} ${answer.status} answered ${mediaType || 'no content type'}; documented: ${Object.keys(object.content).join(', ')}`,
      );
    if (media.schema !== undefined) {
      const schemaPointer = at
        ? `${at}/content/${pointer(mediaType)}/schema`
        : `paths/${pointer(path)}/${method.toLowerCase()}/responses/${answer.status}/content/${pointer(mediaType)}/schema`;
      const validate = validatorAt(schemaPointer);
      const body: unknown = mediaType.includes('json') ? JSON.parse(answer.text) : answer.text;
      if (!validate(body)) {
        throw new Error(
          `${operation} ${answer.status} does not match openapi.yaml: ${ajv.errorsText(validate.errors, { separator: '\n  ' })}\n` +
            `body: ${answer.text.slice(0, 600)}`,
        );
      }
    }
  }
  const statuses = covered.get(operation) ?? new Set<number>();
  statuses.add(answer.status);
  covered.set(operation, statuses);
}

describe('openapi.yaml', () => {
  it('is an OpenAPI 3.1 document whose schemas compile', () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    for (const name of Object.keys(doc.components.schemas ?? {})) {
      expect(() => validatorAt(`components/schemas/${pointer(name)}`)).not.toThrow();
    }
  });

  it('documents exactly the HTTP routes of serverless.yml', async () => {
    const api = await startLocalApi();
    try {
      // API Gateway does not normalise a trailing slash, so Klaviyo's paths are declared twice; the
      // document describes each once, and every slash form must have its twin.
      const declared = api.routes.map((r) => `${r.method} ${r.path}`);
      const withoutSlash = (path: string) => path.replace(/(?<=.)\/$/, '');
      const twinless = api.routes
        .filter((r) => withoutSlash(r.path) !== r.path)
        .filter((r) => !declared.includes(`${r.method} ${withoutSlash(r.path)}`));
      expect(twinless).toEqual([]);
      const routes = [...new Set(api.routes.map((r) => `${r.method} ${withoutSlash(r.path)}`))].sort();
      expect(operations().sort()).toEqual(routes);
    } finally {
      await api.close();
    }
  });
});

describe('real responses conform to openapi.yaml', () => {
  let t: TestDatabase;
  let api: LocalApi;
  let page: {
    data: { id: string; relationships: { metric: { data: { id: string } }; profile?: { data: { id: string } } } }[];
    included: unknown[];
  };

  beforeAll(async () => {
    t = await freshDatabase();
    api = await startLocalApi();
    const [first] = generatePages({
      events: 40,
      profiles: 8,
      seed: 7,
      start: new Date('2025-03-01T00:00:00Z'),
      end: new Date('2025-03-08T00:00:00Z'),
    });
    page = first as unknown as typeof page;
  });

  afterAll(async () => {
    await api?.close();
    await closeDb();
    await t?.drop();
  });

  async function call(
    operation: string,
    options: {
      path?: string;
      body?: unknown;
      key?: keyof typeof TEST_KEYS | null;
      contentType?: string;
      raw?: string;
    } = {},
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are checked against the schema, then indexed freely
  ): Promise<Answer & { json: () => any }> {
    const [method, template] = operation.split(' ') as [string, string];
    const headers: Record<string, string> = {};
    const key = options.key === undefined ? 'admin' : options.key;
    if (key) headers.authorization = `Bearer ${TEST_KEYS[key]}`;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/vnd.api+json';
    const res = await fetch(`${api.url}${options.path ?? template}`, { method, headers, body });
    const text = await res.text();
    const answer = { status: res.status, contentType: res.headers.get('content-type') ?? '', text };
    expectDocumented(operation, answer);
    return { ...answer, json: () => JSON.parse(text) };
  }

  const event = () => page.data[0] as (typeof page.data)[number];
  const metricId = () => event().relationships.metric.data.id;
  const profileId = () => (event().relationships.profile as { data: { id: string } }).data.id;
  const range = ['greater-or-equal(datetime,2025-03-01T00:00:00)', 'less-than(datetime,2025-03-08T00:00:00)'];

  it('public routes: the chart page and the health check', async () => {
    const ui = await call('GET /', { key: null });
    expect(ui.status).toBe(200);
    expect(ui.text).toContain('uPlot');
    expect((await call('GET /api/health', { key: null })).status).toBe(200);
  });

  it('ingest routes: pages, upserts, Klaviyo write shapes and every kind of refusal', async () => {
    const stored = await call('POST /api/events', { body: page, key: 'write' });
    expect(stored.status).toBe(200);
    expect(stored.json().data.attributes.inserted).toBe(page.data.length);
    expect((await call('POST /api/events', { body: page, key: 'write' })).json().data.attributes.duplicates).toBe(
      page.data.length,
    );

    const metrics = page.included.filter((r) => (r as { type: string }).type === 'metric');
    const profiles = page.included.filter((r) => (r as { type: string }).type === 'profile');
    expect((await call('POST /api/metrics', { body: { data: metrics }, key: 'write' })).status).toBe(200);
    expect((await call('POST /api/profiles', { body: { data: profiles }, key: 'write' })).status).toBe(200);

    const createEvent = {
      data: {
        type: 'event',
        attributes: {
          properties: { Brand: 'Kids Book' },
          time: '2025-03-02T10:00:00+00:00',
          value: 9.99,
          metric: { data: { type: 'metric', attributes: { name: 'Viewed Product' } } },
          profile: { data: { type: 'profile', attributes: { email: 'openapi@example.com' } } },
        },
      },
    };
    expect((await call('POST /api/events', { body: createEvent, key: 'write' })).status).toBe(202);
    const bulk = {
      data: {
        type: 'event-bulk-create-job',
        attributes: {
          'events-bulk-create': {
            data: [
              {
                type: 'event-bulk-create',
                attributes: {
                  profile: { data: { type: 'profile', attributes: { email: 'bulk@example.com' } } },
                  events: {
                    data: [{ type: 'event', attributes: { ...createEvent.data.attributes, profile: undefined } }],
                  },
                },
              },
            ],
          },
        },
      },
    };
    expect((await call('POST /api/event-bulk-create-jobs', { body: bulk, key: 'write' })).status).toBe(202);

    // Klaviyo's profile writes; every Klaviyo path answers with a trailing slash too.
    const person = { data: { type: 'profile', attributes: { email: 'created@example.com', first_name: 'Cy' } } };
    const created = await call('POST /api/profiles', { path: '/api/profiles/', body: person, key: 'write' });
    expect(created.status).toBe(201);
    const duplicate = await call('POST /api/profiles', { body: person, key: 'write' });
    expect(duplicate.status).toBe(409);
    expect(duplicate.json().errors[0].meta.duplicate_profile_id).toBe(created.json().data.id);
    const imported = { data: { type: 'profile', attributes: { external_id: 'openapi-1' } } };
    expect((await call('POST /api/profile-import', { body: imported, key: 'write' })).status).toBe(201);
    expect((await call('POST /api/profile-import', { body: imported, key: 'write' })).status).toBe(200);
    const job = {
      data: {
        type: 'profile-bulk-import-job',
        attributes: {
          profiles: { data: [person.data, { type: 'profile', attributes: { phone_number: '+15005550006' } }] },
        },
      },
    };
    expect((await call('POST /api/profile-bulk-import-jobs', { body: job, key: 'write' })).status).toBe(202);
    expect(
      (
        await call('POST /api/profile-bulk-import-jobs', {
          body: { data: { type: 'profile-bulk-import-job' } },
          key: 'write',
        })
      ).status,
    ).toBe(400);
    expect(
      (await call('POST /api/profile-import', { body: { data: { type: 'profile', attributes: {} } }, key: 'write' }))
        .status,
    ).toBe(400);

    const invalid = await call('POST /api/events', {
      body: { data: [{ type: 'event', id: 'x', attributes: {} }] },
      key: 'write',
    });
    expect(invalid.status).toBe(400);
    expect(invalid.json().errors[0].source.pointer).toMatch(/^\/data\/0\//);
    expect((await call('POST /api/profiles', { body: { data: [{ type: 'profile' }] }, key: 'write' })).status).toBe(
      400,
    );
    expect(
      (await call('POST /api/metrics', { body: { data: [{ type: 'metric', id: 'm' }] }, key: 'write' })).status,
    ).toBe(400);
    expect((await call('POST /api/event-bulk-create-jobs', { body: { data: {} }, key: 'write' })).status).toBe(400);
    expect((await call('POST /api/events', { raw: '{"data": [', key: 'write' })).status).toBe(400);
    expect(
      (await call('POST /api/events', { raw: 'a=b', contentType: 'application/x-www-form-urlencoded', key: 'write' }))
        .status,
    ).toBe(415);
    expect((await call('POST /api/events', { body: page, key: null })).status).toBe(401);
    expect((await call('POST /api/events', { body: page, key: 'read' })).status).toBe(403);
    const huge = JSON.stringify({ data: [], padding: 'x'.repeat(5 * 1024 * 1024) });
    expect((await call('POST /api/events', { raw: huge, key: 'write' })).status).toBe(413);
  });

  it('metric aggregates: an answer, a bad request, an unknown metric', async () => {
    const body = (attributes: Record<string, unknown>) => ({ data: { type: 'metric-aggregate', attributes } });
    const ok = await call('POST /api/metric-aggregates', {
      body: body({
        metric_id: metricId(),
        measurements: ['count', 'sum_value', 'unique'],
        interval: 'day',
        filter: range,
        timezone: 'America/New_York',
      }),
      key: 'read',
    });
    expect(ok.status).toBe(200);
    expect(ok.json().data.attributes.dates.length).toBeGreaterThan(0);
    const grouped = await call('POST /api/metric-aggregates', {
      body: body({
        metric_id: metricId(),
        measurements: ['count'],
        interval: 'week',
        filter: range,
        by: ['$attributed_flow'],
      }),
      key: 'read',
    });
    expect(grouped.status).toBe(200);
    expect(
      (
        await call('POST /api/metric-aggregates', {
          body: body({ metric_id: metricId(), measurements: ['nope'], filter: range }),
          key: 'read',
        })
      ).status,
    ).toBe(400);
    expect(
      (
        await call('POST /api/metric-aggregates', {
          body: body({ metric_id: 'NoSuchMetric', measurements: ['count'], filter: range }),
          key: 'read',
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await call('POST /api/metric-aggregates', {
          body: body({ metric_id: metricId(), measurements: ['count'], filter: range }),
          key: 'write',
        })
      ).status,
    ).toBe(403);
  });

  it('metrics, profiles and events: lists, lookups, timelines and refusals', async () => {
    const list = await call('GET /api/metrics', { key: 'read' });
    expect(list.json().data.length).toBeGreaterThan(0);
    expect((await call('GET /api/metrics/{id}', { path: `/api/metrics/${metricId()}`, key: 'read' })).status).toBe(200);
    expect((await call('GET /api/metrics/{id}', { path: '/api/metrics/NoSuchMetric', key: 'read' })).status).toBe(404);

    const profile = await call('GET /api/profiles/{id}', { path: `/api/profiles/${profileId()}`, key: 'read' });
    expect(profile.status).toBe(200);
    expect((await call('GET /api/profiles/{id}', { path: '/api/profiles/NoSuchProfile', key: 'read' })).status).toBe(
      404,
    );
    const email = profile.json().data.attributes.email as string;
    const found = await call('GET /api/profiles', {
      path: `/api/profiles?filter=${encodeURIComponent(`equals(email,"${email}")`)}`,
      key: 'read',
    });
    expect(found.json().data.map((p: { id: string }) => p.id)).toEqual([profileId()]);
    expect(
      (
        await call('GET /api/profiles', {
          path: `/api/profiles?filter=${encodeURIComponent('nonsense(')}`,
          key: 'read',
        })
      ).status,
    ).toBe(400);

    const timeline = await call('GET /api/profiles/{id}/events', {
      path: `/api/profiles/${profileId()}/events?page[size]=2`,
      key: 'read',
    });
    expect(timeline.status).toBe(200);
    expect(timeline.json().data.length).toBeGreaterThan(0);

    const events = await call('GET /api/events', {
      path: `/api/events?include=metric,profile&page[size]=5&filter=${encodeURIComponent(`equals(metric_id,"${metricId()}")`)}`,
      key: 'read',
    });
    expect(events.json().data.length).toBeGreaterThan(0);
    expect(
      (await call('GET /api/events', { path: `/api/events?filter=${encodeURIComponent('bogus(x')}`, key: 'read' }))
        .status,
    ).toBe(400);
    expect(
      (
        await call('GET /api/events/{id}', {
          path: `/api/events/${encodeURIComponent(event().id)}?include=metric,profile`,
          key: 'read',
        })
      ).status,
    ).toBe(200);
    expect((await call('GET /api/events/{id}', { path: '/api/events/NoSuchEvent', key: 'read' })).status).toBe(404);

    const id = encodeURIComponent(event().id);
    const sparse = await call('GET /api/events', {
      path: '/api/events/?page[size]=2&fields[event]=datetime&fields[profile]=email,location.city&include=profile',
      key: 'read',
    });
    expect(Object.keys(sparse.json().data[0].attributes)).toEqual(['datetime']);
    expect(sparse.json().links.next).toBeDefined();
    const second = await call('GET /api/events', {
      path: new URL(sparse.json().links.next).pathname + new URL(sparse.json().links.next).search,
      key: 'read',
    });
    expect(second.json().links.prev).toBeDefined();
    for (const related of ['metric', 'profile', 'relationships/metric', 'relationships/profile']) {
      const op = `GET /api/events/{id}/${related}`;
      expect((await call(op, { path: `/api/events/${id}/${related}`, key: 'read' })).status).toBe(200);
      expect((await call(op, { path: `/api/events/NoSuchEvent/${related}`, key: 'read' })).status).toBe(404);
    }
    const byUpdated = await call('GET /api/profiles', {
      path: `/api/profiles?sort=-updated&filter=${encodeURIComponent('greater-than(updated,2000-01-01T00:00:00Z)')}&fields[profile]=email,updated&additional-fields[profile]=subscriptions`,
      key: 'read',
    });
    expect(byUpdated.json().data.length).toBeGreaterThan(0);
    expect(
      (await call('GET /api/profiles/{id}', { path: `/api/profiles/${profileId()}?include=lists`, key: 'read' }))
        .status,
    ).toBe(400);
    expect(
      (
        await call('GET /api/metrics/{id}', { path: `/api/metrics/${metricId()}?fields[metric]=name`, key: 'read' })
      ).json().data.attributes,
    ).toEqual({ name: expect.any(String) });
    expect((await call('GET /api/events', { key: null })).status).toBe(401);
    expect((await call('GET /api/events', { key: 'write' })).status).toBe(403);
  });

  it('sync status: before any run, and once streams have run', async () => {
    const empty = await call('GET /api/sync-status', { key: 'read' });
    expect(empty.status).toBe(200);
    await t.db.query(
      `INSERT INTO klaviyo_sync_streams (account_id, stream, cursor, backfill_horizon, backfill_next_end, rows_pulled,
         last_run_rows_pulled, last_run_at, last_success_at, last_error_at, last_error)
       VALUES ('default', 'events', now() - interval '1 minute', now() - interval '365 days', now() - interval '30 days',
               1000, 1000, now(), now(), now(), 'Klaviyo answered 503')`,
    );
    const ran = await call('GET /api/sync-status', { key: 'read' });
    expect(ran.json().data.find((s: { id: string }) => s.id === 'events').attributes.rows_pulled).toBe(1000);
    expect((await call('GET /api/sync-status', { key: null })).status).toBe(401);
  });

  it('covered every documented operation with a success', () => {
    const missing = operations().filter((op) => ![...(covered.get(op) ?? [])].some((s) => s >= 200 && s < 300));
    expect(missing).toEqual([]);
  });
});
