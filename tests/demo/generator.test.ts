import {
  AUDIENCE_UTC_OFFSET_HOURS,
  buildProfileResource,
  DEMO_METRICS,
  demoMetricByName,
  generatePages,
  metricResource,
  pageCount,
  profileId,
  type EventResource,
  type EventsPageDocument,
  type GeneratorOptions,
  type MetricResource,
  type ProfileResource,
} from '../../lib/demo/generator';
import { isoSeconds, Random, sequenceId } from '../../lib/demo/random';
import { klaviyoFixture } from '../support/fixtures';

const START = new Date('2025-01-01T00:00:00Z');
const END = new Date('2026-01-01T00:00:00Z');

function pages(options: GeneratorOptions): EventsPageDocument[] {
  return [...generatePages(options)];
}

function events(docs: readonly EventsPageDocument[]): EventResource[] {
  return docs.flatMap((d) => d.data);
}

/** Sorted key paths of a JSON value, array elements collapsed to [] (for comparing shapes). */
function keyPaths(value: unknown, prefix = ''): string[] {
  if (Array.isArray(value)) return value.length === 0 ? [`${prefix}[]`] : keyPaths(value[0], `${prefix}[]`);
  if (value !== null && typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => [
      `${prefix}/${k}`,
      ...keyPaths(v, `${prefix}/${k}`),
    ]);
  }
  return [];
}

describe('generatePages determinism', () => {
  const options: GeneratorOptions = { seed: 42, events: 3_000, profiles: 500, pageSize: 250, start: START, end: END };

  it('gives byte-identical pages for the same seed and options', () => {
    expect(JSON.stringify(pages(options))).toBe(JSON.stringify(pages(options)));
  });

  it('gives different data for a different seed', () => {
    const a = events(pages(options));
    const b = events(pages({ ...options, seed: 43 }));
    expect(a.map((e) => e.id)).not.toEqual(b.map((e) => e.id));
    expect(a.map((e) => e.attributes.timestamp)).not.toEqual(b.map((e) => e.attributes.timestamp));
  });

  it('makes the page size change only how events are cut into pages', () => {
    const small = events(pages(options));
    const large = events(pages({ ...options, pageSize: 1000 }));
    expect(JSON.stringify(large)).toBe(JSON.stringify(small));
  });

  it('emits exactly the requested number of events in ceil(events / pageSize) pages', () => {
    const docs = pages({ ...options, events: 2_501 });
    expect(docs).toHaveLength(pageCount({ ...options, events: 2_501 }));
    expect(docs).toHaveLength(11);
    expect(docs.map((d) => d.data.length)).toEqual([...Array(10).fill(250), 1]);
    expect(pages({ ...options, events: 0 })).toEqual([]);
  });
});

describe('generatePages shape', () => {
  const docs = pages({ seed: 7, events: 4_000, profiles: 1_500, pageSize: 500, start: START, end: END });
  const all = events(docs);
  const fixture = klaviyoFixture<{ data: unknown[]; included: { type: string }[] }>('events-page.json');

  it('puts every referenced metric and profile in its page, once, and nothing else', () => {
    for (const doc of docs) {
      const included = doc.included.map((r) => `${r.type}:${r.id}`);
      expect(new Set(included).size).toBe(included.length);
      const referenced = new Set(
        doc.data.flatMap((e) => [
          `metric:${e.relationships.metric.data.id}`,
          `profile:${e.relationships.profile.data.id}`,
        ]),
      );
      expect(new Set(included)).toEqual(referenced);
    }
  });

  it('writes timestamps (unix seconds) and datetimes (ISO with +00:00) that agree, inside the window', () => {
    for (const event of all) {
      const { timestamp, datetime } = event.attributes;
      expect(Number.isInteger(timestamp)).toBe(true);
      expect(datetime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$/);
      expect(Date.parse(datetime) / 1000).toBe(timestamp);
      expect(timestamp * 1000).toBeGreaterThanOrEqual(START.getTime());
      expect(timestamp * 1000).toBeLessThan(END.getTime());
    }
  });

  it('gives unique Klaviyo-style ids: events, uuids, 26-character profile ULIDs, 6-character metric ids', () => {
    expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
    expect(new Set(all.map((e) => e.attributes.uuid)).size).toBe(all.length);
    for (const event of all) {
      expect(event.type).toBe('event');
      expect(event.id).toMatch(/^[0-9A-Za-z]{12}$/);
      expect(event.attributes.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(event.relationships.profile.data.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
      expect(event.relationships.metric.data.id).toMatch(/^[0-9A-Za-z]{6}$/);
    }
  });

  it("has the key structure of Klaviyo's GET /api/events?include=metric,profile document", () => {
    const doc = docs[0] as EventsPageDocument;
    expect(Object.keys(doc).sort()).toEqual(Object.keys(fixture).sort());
    const withoutProperties = (e: unknown) => {
      const copy = JSON.parse(JSON.stringify(e)) as { attributes: { event_properties: unknown } };
      copy.attributes.event_properties = {};
      return keyPaths(copy).sort();
    };
    expect(withoutProperties(doc.data[0])).toEqual(withoutProperties(fixture.data[0]));

    const fixtureMetric = fixture.included.find((r) => r.type === 'metric');
    const metric = doc.included.find((r): r is MetricResource => r.type === 'metric');
    // Klaviyo's integration object also carries object/id/key; the fixture only has the filterable name and category.
    expect(keyPaths(metric)).toEqual(expect.arrayContaining(keyPaths(fixtureMetric)));

    const fixtureProfile = fixture.included.find((r) => r.type === 'profile');
    const profile = doc.included.find((r): r is ProfileResource => r.type === 'profile');
    // last_event_date changes with every event; a generator that must emit the same resource on every page leaves it out.
    const profilePaths = keyPaths(fixtureProfile).filter(
      (p) => !p.includes('last_event_date') && !p.startsWith('/attributes/properties/'),
    );
    expect(keyPaths(profile)).toEqual(expect.arrayContaining(profilePaths));
  });

  it('links each page to the next, and the last page to none', () => {
    docs.slice(0, -1).forEach((doc, i) => {
      expect(doc.links.next).toMatch(/^https:\/\/a\.klaviyo\.com\/api\/events\?/);
      expect((docs[i + 1] as EventsPageDocument).links.self).toBe(doc.links.next);
    });
    expect((docs[docs.length - 1] as EventsPageDocument).links.next).toBeNull();
  });

  it('leaves links out when asked', () => {
    const [doc] = pages({ seed: 7, events: 50, profiles: 10, links: false });
    expect(doc?.data[0]?.links).toBeUndefined();
    expect(doc?.data[0]?.relationships.metric.links).toBeUndefined();
    expect(doc?.included.every((r) => r.links === undefined)).toBe(true);
  });

  it('uses fake but well-formed contact details on reserved domains and numbers', () => {
    const profiles = docs.flatMap((d) => d.included.filter((r): r is ProfileResource => r.type === 'profile'));
    for (const profile of profiles) {
      const { email, phone_number: phone } = profile.attributes;
      expect(email !== null || phone !== null).toBe(true);
      if (email !== null) expect(email).toMatch(/^[a-z]+\.[a-z]+\d+@example\.(com|org|net)$/);
      if (phone !== null) expect(phone).toMatch(/^\+1555\d{7}$/);
      expect(Date.parse(profile.attributes.created)).toBeLessThanOrEqual(Date.parse(profile.attributes.updated));
      expect(Date.parse(profile.attributes.updated)).toBeLessThan(START.getTime());
    }
  });

  it('gives order metrics a positive $value in whole cents, and Placed Order its Items', () => {
    const orderMetrics = new Set(
      ['Placed Order', 'Ordered Product', 'Started Checkout', 'Fulfilled Order'].map((n) => demoMetricByName(n).id),
    );
    const orders = all.filter((e) => orderMetrics.has(e.relationships.metric.data.id));
    expect(orders.length).toBeGreaterThan(20);
    for (const order of orders) {
      const value = order.attributes.event_properties.$value;
      expect(typeof value).toBe('number');
      expect(value as number).toBeGreaterThan(0);
      expect(Math.abs(Math.round((value as number) * 100) - (value as number) * 100)).toBeLessThan(1e-6);
      expect(typeof order.attributes.event_properties.$event_id).toBe('string');
    }
    const placed = all.find((e) => e.relationships.metric.data.id === demoMetricByName('Placed Order').id);
    expect(Array.isArray(placed?.attributes.event_properties.Items)).toBe(true);
  });

  it('names flows, messages and campaigns on email events, with tens to hundreds of distinct values', () => {
    const emails = all.filter((e) => e.relationships.metric.data.id === demoMetricByName('Received Email').id);
    for (const email of emails) {
      expect(email.attributes.event_properties).toEqual(
        expect.objectContaining({
          $message: expect.any(String),
          'Campaign Name': expect.any(String),
          Subject: expect.any(String),
        }),
      );
    }
    const distinct = (key: string) =>
      new Set(all.map((e) => e.attributes.event_properties[key]).filter((v) => v !== undefined)).size;
    expect(distinct('$flow')).toBeGreaterThanOrEqual(10);
    expect(distinct('$message')).toBeGreaterThanOrEqual(30);
    expect(distinct('URL')).toBeGreaterThanOrEqual(100);
  });
});

describe('generatePages distribution', () => {
  const docs = pages({ seed: 3, events: 40_000, profiles: 20_000, start: START, end: END });
  const all = events(docs);

  it('has daily seasonality: nights are much quieter than afternoons (audience clock UTC-5)', () => {
    const perLocalHour = new Array<number>(24).fill(0);
    for (const e of all) {
      const localHour = (((Math.floor(e.attributes.timestamp / 3600) + AUDIENCE_UTC_OFFSET_HOURS) % 24) + 24) % 24;
      perLocalHour[localHour] = (perLocalHour[localHour] as number) + 1;
    }
    const night = perLocalHour.slice(2, 6).reduce((a, b) => a + b, 0) / 4;
    const afternoon = perLocalHour.slice(12, 20).reduce((a, b) => a + b, 0) / 8;
    expect(night).toBeLessThan(afternoon * 0.3);
  });

  it('has weekly seasonality: weekend days are quieter than weekdays', () => {
    const perWeekday = new Array<number>(7).fill(0);
    for (const e of all) {
      const localDay = Math.floor((e.attributes.timestamp + AUDIENCE_UTC_OFFSET_HOURS * 3600) / 86_400);
      const weekday = (localDay + 4) % 7; // 1970-01-01 was a Thursday
      perWeekday[weekday] = (perWeekday[weekday] as number) + 1;
    }
    const weekend = ((perWeekday[0] as number) + (perWeekday[6] as number)) / 2;
    const weekdays = perWeekday.slice(1, 6).reduce((a, b) => a + b, 0) / 5;
    expect(weekend).toBeLessThan(weekdays * 0.85);
  });

  it('has yearly seasonality: the Black Friday week is busier than an ordinary autumn week', () => {
    const count = (from: string, to: string) =>
      all.filter(
        (e) => e.attributes.timestamp >= Date.parse(from) / 1000 && e.attributes.timestamp < Date.parse(to) / 1000,
      ).length;
    expect(count('2025-11-24T05:00:00Z', '2025-12-01T05:00:00Z')).toBeGreaterThan(
      count('2025-10-06T05:00:00Z', '2025-10-13T05:00:00Z') * 1.3,
    );
  });

  function lateEvents(documents: readonly EventsPageDocument[]): EventResource[] {
    const late: EventResource[] = [];
    let latestBefore = -Infinity;
    for (const doc of documents) {
      for (const e of doc.data) if (e.attributes.timestamp < latestBefore) late.push(e);
      for (const e of doc.data) latestBefore = Math.max(latestBefore, e.attributes.timestamp);
    }
    return late;
  }

  it('emits about lateShare of the events in a later page than their time, days to weeks late', () => {
    // Dense enough (a page spans hours) that a delay of a day or more always crosses pages.
    const dense = pages({
      seed: 3,
      events: 40_000,
      profiles: 5_000,
      pageSize: 500,
      start: START,
      end: new Date('2025-02-15T00:00:00Z'),
    });
    const late = lateEvents(dense);
    expect(late.length / 40_000).toBeGreaterThan(0.016);
    expect(late.length / 40_000).toBeLessThan(0.024);
    // A late event is emitted just before the first on-time event at or after its arrival. On-time
    // events come in time order, so the late ones are those older than something emitted before them.
    const stream = events(dense);
    const lateIds = new Set<string>();
    let newest = -Infinity;
    for (const e of stream) {
      if (e.attributes.timestamp < newest) lateIds.add(e.id);
      newest = Math.max(newest, e.attributes.timestamp);
    }
    expect(lateIds.size).toBeGreaterThanOrEqual(late.length);
    const delaysDays: number[] = [];
    let nextOnTime = Infinity;
    for (let i = stream.length - 1; i >= 0; i -= 1) {
      const e = stream[i] as EventResource;
      if (!lateIds.has(e.id)) nextOnTime = e.attributes.timestamp;
      else if (nextOnTime !== Infinity) delaysDays.push((nextOnTime - e.attributes.timestamp) / 86_400);
    }
    expect(delaysDays.length).toBeGreaterThan(lateIds.size / 2);
    expect(Math.min(...delaysDays)).toBeGreaterThanOrEqual(1 - 1 / 86_400);
    expect(Math.max(...delaysDays)).toBeGreaterThan(10);
    expect(Math.max(...delaysDays)).toBeLessThan(21.1);
  });

  it('emits everything in time order when lateShare is 0', () => {
    const inOrder = pages({ seed: 3, events: 5_000, profiles: 1_000, lateShare: 0 });
    expect(lateEvents(inOrder)).toHaveLength(0);
    const stamps = events(inOrder).map((e) => e.attributes.timestamp);
    expect(stamps).toEqual([...stamps].sort((a, b) => a - b));
  });

  it('orders metric frequencies like a store: received >> opened >> clicked >> placed order', () => {
    const counts = new Map<string, number>();
    for (const e of all)
      counts.set(e.relationships.metric.data.id, (counts.get(e.relationships.metric.data.id) ?? 0) + 1);
    const count = (name: string) => counts.get(demoMetricByName(name).id) ?? 0;
    expect(count('Received Email')).toBeGreaterThan(2 * count('Opened Email'));
    expect(count('Opened Email')).toBeGreaterThan(3 * count('Clicked Email'));
    expect(count('Clicked Email')).toBeGreaterThan(2 * count('Placed Order'));
    expect(count('Placed Order')).toBeGreaterThan(0);
    // About twenty metrics, all of them used.
    expect(DEMO_METRICS.length).toBeGreaterThanOrEqual(20);
    expect(counts.size).toBe(DEMO_METRICS.length);
  });

  it('concentrates site activity on an engaged core of profiles', () => {
    const viewed = demoMetricByName('Viewed Product').id;
    const perProfile = new Map<string, number>();
    for (const e of all) {
      if (e.relationships.metric.data.id !== viewed) continue;
      const id = e.relationships.profile.data.id;
      perProfile.set(id, (perProfile.get(id) ?? 0) + 1);
    }
    const sorted = [...perProfile.values()].sort((a, b) => b - a);
    const total = sorted.reduce((a, b) => a + b, 0);
    const topTenthOfProfiles = Math.ceil(20_000 / 10);
    expect(sorted.slice(0, topTenthOfProfiles).reduce((a, b) => a + b, 0) / total).toBeGreaterThan(0.35);
  });
});

describe('resources and helpers', () => {
  it('builds the same profile for the same seed and index, and a different one for another index', () => {
    expect(buildProfileResource(17, { seed: 5 })).toEqual(buildProfileResource(17, { seed: 5 }));
    expect(buildProfileResource(17, { seed: 5 }).id).toBe(profileId(17, { seed: 5 }));
    expect(buildProfileResource(18, { seed: 5 }).id).not.toBe(buildProfileResource(17, { seed: 5 }).id);
    expect(buildProfileResource(17, { seed: 6 }).id).not.toBe(buildProfileResource(17, { seed: 5 }).id);
  });

  it('gives every profile a unique email, phone number and external id', () => {
    const profiles = Array.from({ length: 20_000 }, (_, i) => buildProfileResource(i, { seed: 9 }).attributes);
    for (const key of ['email', 'phone_number', 'external_id'] as const) {
      const values = profiles.map((p) => p[key]).filter((v): v is string => v !== null);
      expect(values.length).toBeGreaterThan(1000);
      expect(new Set(values).size).toBe(values.length);
    }
  });

  it('has stable metric ids and builds metric resources with their integration', () => {
    expect(demoMetricByName('Placed Order').id).toBe('K9dFhW');
    expect(new Set(DEMO_METRICS.map((m) => m.id)).size).toBe(DEMO_METRICS.length);
    const resource = metricResource(demoMetricByName('Placed Order'));
    expect(resource).toMatchObject({
      type: 'metric',
      id: 'K9dFhW',
      attributes: { name: 'Placed Order', integration: { name: 'Shopify', category: 'eCommerce' } },
    });
  });

  it('formats unix seconds exactly like Date#toISOString, leap days and centuries included', () => {
    const random = new Random(11);
    const samples = [0, 951_782_400 /* 2000-02-29 */, 4_107_542_400 /* 2100-03-01 */, 1_735_689_599, 253_402_300_799];
    for (let i = 0; i < 5_000; i += 1) samples.push(Math.floor(random.next() * 4_102_444_800));
    for (const s of samples) expect(isoSeconds(s)).toBe(new Date(s * 1000).toISOString().slice(0, 19) + '+00:00');
  });

  it('gives distinct sequence ids to distinct sequence numbers whatever the random prefix', () => {
    const random = new Random(1);
    const suffixes = new Set<string>();
    for (let i = 0; i < 100_000; i += 1) suffixes.add(sequenceId(random, i, 12345).slice(5));
    expect(suffixes.size).toBe(100_000);
  });

  it('rejects options it cannot honour', () => {
    expect(() => pages({ events: -1 })).toThrow(RangeError);
    expect(() => pages({ events: 10, pageSize: 0 })).toThrow(RangeError);
    expect(() => pages({ events: 10, start: END, end: START })).toThrow(RangeError);
    expect(() => pages({ events: 10, lateShare: 1.5 })).toThrow(RangeError);
  });
});
