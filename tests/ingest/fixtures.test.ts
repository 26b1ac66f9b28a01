import { handler } from '../../functions/ingest';
import { getProfileById } from '../../lib/repositories/profiles';
import { useFreshDatabase } from '../support/database';
import { invoke } from '../support/http';
import { checksums, fixture } from './helpers';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

describe('ingest of Klaviyo example documents', () => {
  const t = useFreshDatabase();

  it('stores an events page with its included metric and profile', async () => {
    const page = fixture('events-page.json');
    const res = await invoke(handler, { method: 'POST', path: '/api/events', body: page, key: 'write' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/vnd.api+json');
    expect(res.body).toEqual({
      data: {
        type: 'ingest-result',
        attributes: { received: 1, inserted: 1, duplicates: 0, metrics_upserted: 1, profiles_upserted: 1 },
      },
    });

    const [event] = await t.db.query(
      `SELECT id, "timestamp", metric_id, profile_id, value, value_currency, uuid, unique_id, properties, raw_data FROM klaviyo_events WHERE account_id = 'default'`,
    );
    expect(event).toEqual({
      id: 'PLACEHOLDER_EVENT_ID',
      timestamp: new Date('2022-11-08T01:23:45Z'),
      metric_id: '0rG4eQ',
      profile_id: '01GDDKASAP8TKDDA2GRZDSVP4H',
      value: null,
      value_currency: null,
      uuid: 'PLACEHOLDER_EVENT_UUID',
      unique_id: null,
      properties: page.data[0].attributes.event_properties,
      raw_data: page.data[0],
    });

    const [metric] = await t.db.query(
      `SELECT id, name, integration, created, updated, raw_data, is_stub FROM klaviyo_metrics WHERE account_id = 'default'`,
    );
    expect(metric).toEqual({
      id: '0rG4eQ',
      name: 'Viewed Product',
      integration: { name: 'PLACEHOLDER_INTEGRATION_NAME', category: 'PLACEHOLDER_INTEGRATION_CATEGORY' },
      created: new Date('2022-11-08T00:00:00Z'),
      updated: new Date('2022-11-08T00:00:00Z'),
      raw_data: page.included[0],
      is_stub: false,
    });

    const [profile] = await t.db.query(
      `SELECT id, email, phone_number, external_id, first_name, last_name, organization, locale, title, image, location,
              properties, created, updated, last_event_date, raw_data, is_stub FROM klaviyo_profiles WHERE account_id = 'default'`,
    );
    const attrs = page.included[1].attributes;
    expect(profile).toEqual({
      id: '01GDDKASAP8TKDDA2GRZDSVP4H',
      email: attrs.email,
      phone_number: attrs.phone_number,
      external_id: null,
      first_name: 'Sarah',
      last_name: 'Mason',
      organization: attrs.organization,
      locale: 'en-US',
      title: attrs.title,
      image: attrs.image,
      location: attrs.location,
      properties: { pseudonym: 'Dr. Octopus' },
      created: new Date('2022-11-08T00:00:00Z'),
      updated: new Date('2022-11-08T00:00:00Z'),
      // The column keeps what Klaviyo stated; readers derive the later event date (below).
      last_event_date: new Date('2022-11-08T00:00:00Z'),
      raw_data: page.included[1],
      is_stub: false,
    });

    // Later than the profile's stated last_event_date: the event in the same page is what readers answer.
    expect((await getProfileById(t.db, DEFAULT_ACCOUNT_ID, '01GDDKASAP8TKDDA2GRZDSVP4H'))?.lastEventDate).toEqual(
      new Date('2022-11-08T01:23:45Z'),
    );

    const dirty = await t.db.query(
      `SELECT metric_id, bucket FROM klaviyo_aggregate_dirty WHERE account_id = 'default'`,
    );
    expect(dirty).toEqual([{ metric_id: '0rG4eQ', bucket: new Date('2022-11-08T01:00:00Z') }]);
  });

  it('answers a re-delivered page with duplicates and changes nothing', async () => {
    const before = await checksums(t.db);
    const res = await invoke(handler, {
      method: 'POST',
      path: '/api/events',
      body: fixture('events-page.json'),
      key: 'write',
    });
    expect(res.body.data.attributes).toEqual({
      received: 1,
      inserted: 0,
      duplicates: 1,
      metrics_upserted: 0,
      profiles_upserted: 0,
    });
    expect(await checksums(t.db)).toEqual(before);
  });

  it("accepts Klaviyo's Create Event body with 202 and resolves the profile by email", async () => {
    const body = fixture('create-event-request.json');
    const res = await invoke(handler, { method: 'POST', path: '/api/events', body, key: 'write' });
    expect(res.status).toBe(202);
    expect(res.raw.body).toBe('');

    // The fixture's profile has the email of the profile stored from the page above.
    const events = await t.db.query<{
      profile_id: string;
      metric_id: string;
      value: string;
      value_currency: string;
      timestamp: Date;
      properties: unknown;
    }>(
      `SELECT profile_id, metric_id, value, value_currency, "timestamp", properties FROM klaviyo_events WHERE account_id = 'default' AND uuid <> 'PLACEHOLDER_EVENT_UUID'`,
    );
    expect(events).toEqual([
      {
        profile_id: '01GDDKASAP8TKDDA2GRZDSVP4H',
        metric_id: '0rG4eQ',
        value: '9.99',
        value_currency: 'USD',
        timestamp: new Date('2022-11-08T00:00:00Z'),
        // The value is also where Klaviyo's Get Events shows it, as event_properties.$value.
        properties: { ...body.data.attributes.properties, $value: 9.99 },
      },
    ]);

    // Sent again (an SDK retry): no unique_id, same time to the second, so the same event.
    const before = await checksums(t.db);
    const again = await invoke(handler, { method: 'POST', path: '/api/events', body, key: 'write' });
    expect(again.status).toBe(202);
    expect(await checksums(t.db)).toEqual(before);
  });

  it('upserts the profile and metric examples through their own routes', async () => {
    const profile = fixture('profile.json');
    profile.id = '01GDDKASAP8TKDDA2GRZDSVP5Z';
    const p = await invoke(handler, { method: 'POST', path: '/api/profiles', body: { data: [profile] }, key: 'write' });
    expect(p.status).toBe(200);
    expect(p.body.data.attributes).toEqual({
      received: 1,
      inserted: 0,
      duplicates: 0,
      metrics_upserted: 0,
      profiles_upserted: 1,
    });

    const metric = fixture('metric.json');
    metric.id = 'XyZ123';
    const m = await invoke(handler, {
      method: 'POST',
      path: '/api/metrics',
      body: { data: [metric] },
      key: 'write',
      contentType: 'application/json',
    });
    expect(m.status).toBe(200);
    expect(m.body.data.attributes).toEqual({
      received: 1,
      inserted: 0,
      duplicates: 0,
      metrics_upserted: 1,
      profiles_upserted: 0,
    });

    const rows = await t.db.query(
      `SELECT id, is_stub, raw_data FROM klaviyo_profiles WHERE account_id = 'default' AND id = $1
                                   UNION ALL SELECT id, is_stub, raw_data FROM klaviyo_metrics WHERE account_id = 'default' AND id = $2`,
      [profile.id, metric.id],
    );
    expect(rows).toEqual([
      { id: profile.id, is_stub: false, raw_data: profile },
      { id: metric.id, is_stub: false, raw_data: metric },
    ]);
  });
});
