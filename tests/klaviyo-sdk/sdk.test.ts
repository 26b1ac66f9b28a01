import { ApiKeySession, EventsApi, MetricsApi, ProfilesApi } from 'klaviyo-api';
import { closeDb } from '../../lib/db';
import { startLocalApi, type LocalApi } from '../../scripts/local-api';
import { freshDatabase, type TestDatabase } from '../support/database';
import { TEST_KEYS } from '../support/setupEnv';

/**
 * Klaviyo's own Node SDK (klaviyo-api) against the real handlers over HTTP, routed as serverless.yml
 * routes them: the calls a new user, an ETL tool or a dashboard makes first must work as they do on
 * Klaviyo, with the SDK's own request building (its query parameters, its revision header, its
 * Klaviyo-API-Key authorization) and its own response handling. The SDK's models list every attribute
 * Klaviyo has (absent ones as undefined), so what a sparse fieldset left out is checked on the JSON
 * the SDK received (`response.data`).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the SDK's error is an AxiosError
type AnyError = any;

describe("Klaviyo's Node SDK against this backend", () => {
  let t: TestDatabase;
  let api: LocalApi;
  let profilesApi: ProfilesApi;
  let eventsApi: EventsApi;
  let metricsApi: MetricsApi;

  beforeAll(async () => {
    t = await freshDatabase();
    api = await startLocalApi();
    const session = new ApiKeySession(TEST_KEYS.admin);
    profilesApi = new ProfilesApi(session);
    eventsApi = new EventsApi(session);
    metricsApi = new MetricsApi(session);
    for (const client of [profilesApi, eventsApi, metricsApi]) client.basePath = api.url;
  });

  afterAll(async () => {
    await api?.close();
    await closeDb();
    await t?.drop();
  });

  async function failure(call: Promise<unknown>): Promise<{ status: number; body: AnyError }> {
    try {
      await call;
    } catch (err: AnyError) {
      return { status: err.response?.status, body: err.response?.data };
    }
    throw new Error('the call succeeded');
  }

  /** Follows a link the API emitted, with the SDK's authorization. */
  async function follow(link: string): Promise<{ status: number; body: AnyError }> {
    expect(link.startsWith(api.url)).toBe(true);
    const res = await fetch(link, {
      headers: { authorization: `Klaviyo-API-Key ${TEST_KEYS.admin}`, revision: '2026-07-15' },
    });
    return { status: res.status, body: await res.json() };
  }

  let sarahId = '';

  it('createProfile answers 201 with the profile; a duplicate is 409 duplicate_profile with the existing id', async () => {
    const created = await profilesApi.createProfile({
      data: {
        type: 'profile',
        attributes: {
          email: 'sarah.mason@klaviyo-demo.com',
          firstName: 'Sarah',
          lastName: 'Mason',
          location: { city: 'Boston', country: 'United States' },
          properties: { plan: 'gold' },
        },
      },
    } as never);
    expect(created.response.status).toBe(201);
    const data = created.body.data;
    sarahId = data.id as string;
    expect(sarahId).toBeTruthy();
    expect(data.attributes).toMatchObject({
      email: 'sarah.mason@klaviyo-demo.com',
      firstName: 'Sarah',
      location: { city: 'Boston' },
      properties: { plan: 'gold' },
    });
    expect(data.attributes.created).toBeInstanceOf(Date);

    const duplicate = await failure(
      profilesApi.createProfile({
        data: { type: 'profile', attributes: { email: 'SARAH.MASON@klaviyo-demo.com' } },
      } as never),
    );
    expect(duplicate.status).toBe(409);
    expect(duplicate.body.errors[0]).toMatchObject({
      status: '409',
      code: 'duplicate_profile',
      meta: { duplicate_profile_id: sarahId },
    });
    expect(typeof duplicate.body.errors[0].id).toBe('string');
  });

  it('createOrUpdateProfile answers 201 when it creates, 200 when it updates', async () => {
    const created = await profilesApi.createOrUpdateProfile({
      data: { type: 'profile', attributes: { externalId: 'pos-42', firstName: 'Jo' } },
    } as never);
    expect(created.response.status).toBe(201);
    const updated = await profilesApi.createOrUpdateProfile({
      data: { type: 'profile', id: sarahId, attributes: { lastName: 'Mason-Lee', properties: { tier: 2 } } },
    } as never);
    expect(updated.response.status).toBe(200);
    expect(updated.body.data.id).toBe(sarahId);
    // Given attributes merge over the stored ones; those left out are kept.
    expect(updated.body.data.attributes).toMatchObject({
      firstName: 'Sarah',
      lastName: 'Mason-Lee',
      properties: { plan: 'gold', tier: 2 },
    });
  });

  it('bulkImportProfiles answers the job, complete, and the profiles are there', async () => {
    const job = await profilesApi.bulkImportProfiles({
      data: {
        type: 'profile-bulk-import-job',
        attributes: {
          profiles: {
            data: [
              { type: 'profile', attributes: { email: 'bulk1@example.com', firstName: 'One' } },
              { type: 'profile', attributes: { email: 'bulk2@example.com', firstName: 'Two' } },
              { type: 'profile', attributes: { email: 'sarah.mason@klaviyo-demo.com', title: 'CTO' } },
            ],
          },
        },
      },
    } as never);
    expect(job.response.status).toBe(202);
    expect(job.body.data.type).toBe('profile-bulk-import-job');
    expect(job.body.data.attributes).toMatchObject({ status: 'complete', totalCount: 3, completedCount: 3 });
    const found = await profilesApi.getProfiles({ filter: 'any(email,["bulk1@example.com","bulk2@example.com"])' });
    expect(found.body.data.map((p) => p.attributes.firstName).sort()).toEqual(['One', 'Two']);
    const sarah = await profilesApi.getProfile(sarahId);
    expect(sarah.body.data.attributes.title).toBe('CTO');
    // Create or Update Profile clears an attribute sent as null, and keeps those left out.
    const cleared = await profilesApi.createOrUpdateProfile({
      data: { type: 'profile', id: sarahId, attributes: { title: null } },
    } as never);
    expect(cleared.response.status).toBe(200);
    expect(cleared.response.data.data.attributes).toMatchObject({ title: null, first_name: 'Sarah' });
  });

  it('getProfiles by updated, sorted, with fields[profile]: an incremental reader pages every profile once', async () => {
    const all = await profilesApi.getProfiles({ sort: 'updated' });
    expect(all.body.data.length).toBe(4);
    const since = new Date(Date.parse('2000-01-01T00:00:00Z'));
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await profilesApi.getProfiles({
        filter: `greater-than(updated,${since.toISOString()})`,
        sort: 'updated',
        fieldsProfile: ['email', 'updated', 'location.city'],
        additionalFieldsProfile: ['subscriptions'],
        pageSize: 1,
        ...(cursor ? { pageCursor: cursor } : {}),
      });
      for (const p of page.response.data.data as AnyError[]) {
        seen.push(p.id as string);
        // Only what was asked for, nested names included; no subscriptions were ever stored here.
        expect(p.attributes).toEqual({
          email: p.attributes.email === null ? null : expect.any(String),
          updated: expect.any(String),
          location: p.id === sarahId ? { city: 'Boston' } : null,
        });
      }
      const next = page.body.links?.next;
      cursor = next ? (new URL(next).searchParams.get('page[cursor]') ?? undefined) : undefined;
    } while (cursor);
    expect(seen).toEqual(all.body.data.map((p) => p.id));
    const newestFirst = await profilesApi.getProfiles({ sort: '-updated' });
    expect(newestFirst.body.data.map((p) => p.id)).toEqual([...seen].reverse());
    // additional-fields[profile] adds what is stored: none of these profiles came with subscriptions.
    const withAdditional = await profilesApi.getProfile(sarahId, {
      additionalFieldsProfile: ['subscriptions', 'predictive_analytics'],
    });
    expect(withAdditional.response.data.data.attributes).toMatchObject({
      subscriptions: null,
      predictive_analytics: null,
    });
  });

  let eventId = '';

  it('createEvent identifies profiles by any identifier, anonymous_id and _kx included; Get Events shows $value', async () => {
    const send = (profile: Record<string, unknown>, uniqueId: string, minute: number) =>
      eventsApi.createEvent({
        data: {
          type: 'event',
          attributes: {
            properties: { Brand: 'Kids Book' },
            time: new Date(Date.UTC(2025, 2, 2, 10, minute)),
            value: 9.99,
            valueCurrency: 'USD',
            uniqueId,
            metric: { data: { type: 'metric', attributes: { name: 'Placed Order' } } },
            profile: { data: { type: 'profile', attributes: profile } },
          },
        },
      } as never);
    expect((await send({ email: 'sarah.mason@klaviyo-demo.com' }, 'o-1', 1)).response.status).toBe(202);
    expect((await send({ anonymousId: 'anon-7' }, 'o-2', 2)).response.status).toBe(202);
    expect((await send({ anonymousId: 'anon-7', email: 'anon@example.com' }, 'o-3', 3)).response.status).toBe(202);
    expect((await send({ kx: 'kx-token-1' }, 'o-4', 4)).response.status).toBe(202);

    const events = await eventsApi.getEvents({
      fieldsEvent: ['datetime', 'event_properties'],
      fieldsMetric: ['name'],
      fieldsProfile: ['email'],
      include: ['metric', 'profile'],
      sort: 'datetime',
    });
    expect(events.body.data).toHaveLength(4);
    for (const e of events.response.data.data as AnyError[]) {
      expect(Object.keys(e.attributes).sort()).toEqual(['datetime', 'event_properties']);
      expect(e.attributes.event_properties).toMatchObject({ Brand: 'Kids Book', $value: 9.99 });
    }
    const profileIds = events.body.data.map((e) => e.relationships?.profile?.data?.id);
    expect(profileIds[0]).toBe(sarahId);
    // The anonymous visitor is one profile, found again by anonymous_id.
    expect(profileIds[2]).toBe(profileIds[1]);
    expect(new Set(profileIds).size).toBe(3);
    const included = (events.response.data.included ?? []) as AnyError[];
    expect(included.find((r) => r.type === 'metric')?.attributes).toEqual({ name: 'Placed Order' });
    const includedProfiles = included.filter((r) => r.type === 'profile');
    expect(includedProfiles).toHaveLength(3);
    for (const r of includedProfiles) expect(Object.keys(r.attributes)).toEqual(['email']);
    eventId = events.body.data[0]?.id as string;

    const kx = await profilesApi.getProfiles({ filter: 'equals(_kx,"kx-token-1")' });
    expect(kx.body.data.map((p) => p.id)).toEqual([profileIds[3]]);
  });

  it('getEvent with fields and include; getMetric with fields[metric]', async () => {
    const event = await eventsApi.getEvent(eventId, { fieldsEvent: ['timestamp'], include: ['metric'] });
    expect(event.response.data.data.attributes).toEqual({ timestamp: expect.any(Number) });
    const metricId = event.body.data.relationships?.metric?.data?.id as string;
    expect(event.body.included?.map((r) => r.id)).toEqual([metricId]);
    const metric = await metricsApi.getMetric(metricId, { fieldsMetric: ['name', 'integration'] });
    expect(Object.keys(metric.response.data.data.attributes).sort()).toEqual(['integration', 'name']);
    expect(metric.body.data.attributes.name).toBe('Placed Order');
  });

  it('every relationship link an event carries resolves', async () => {
    const event = await eventsApi.getEvent(eventId);
    const raw = event.response.data.data;
    const links: string[] = [raw.links.self];
    for (const relation of ['metric', 'profile']) {
      links.push(raw.relationships[relation].links.self, raw.relationships[relation].links.related);
    }
    // And the links of a list page and of the profile and metric the event names.
    const page = await eventsApi.getEvents({ pageSize: 1, sort: '-datetime' });
    links.push(page.response.data.links.self, page.response.data.links.next);
    const next = await follow(page.response.data.links.next);
    links.push(next.body.links.prev);
    // Followed breadth-first, each once: the links of what a link answers are followed too.
    const seen = new Set<string>();
    for (let i = 0; i < links.length; i++) {
      const link = links[i] as string;
      if (seen.has(link)) continue;
      seen.add(link);
      const res = await follow(link);
      expect({ link, status: res.status }).toEqual({ link, status: 200 });
      const data = res.body.data;
      if (data?.links?.self) links.push(data.links.self);
      if (data?.links?.related) links.push(data.links.related);
    }
    expect(seen.size).toBeGreaterThanOrEqual(9);
    const viaSdk = await eventsApi.getProfileForEvent(eventId, { fieldsProfile: ['email'] });
    expect(viaSdk.body.data).toMatchObject({ id: sarahId, attributes: { email: 'sarah.mason@klaviyo-demo.com' } });
    const metricId = await eventsApi.getMetricIdForEvent(eventId);
    expect(metricId.body.data?.type).toBe('metric');
  });

  it('a parameter Klaviyo documents but this backend cannot honour is a 400 naming it', async () => {
    const res = await failure(eventsApi.getEvents({ include: ['attributions'] }));
    expect(res.status).toBe(400);
    expect(res.body.errors[0]).toMatchObject({ source: { parameter: 'include' } });
    expect(res.body.errors[0].detail).toContain('attributions');
  });
});
