import { acquireLease } from '../../lib/repositories/sync';
import { FakeKlaviyo, eventOf, metricOf, profileOf } from '../support/fakeKlaviyo';
import { useFreshDatabase } from '../support/database';
import {
  API_KEY,
  DAY,
  HOUR,
  SAFETY_MS,
  dataSnapshot,
  eventFilters,
  expectStoredEventsToEqual,
  expectStoredProfilesToEqual,
  harness,
  type Harness,
} from './helpers';

/**
 * The sync against the stand-in Klaviyo (tests/support/fakeKlaviyo.ts), on a real PostgreSQL, with a
 * virtual clock: after each scenario the stored events, profiles and hourly rollups equal the source's.
 */
const NOW0 = Date.parse('2026-06-01T12:00:00Z');
const ORDER = 'MetricOrder1';
const OPEN = 'MetricOpen01';

function seedAccount(fake: FakeKlaviyo, events: number): void {
  fake.addMetric(metricOf(ORDER, 'Placed Order'));
  fake.addMetric(metricOf(OPEN, 'Opened Email'));
  for (let p = 0; p < 10; p += 1) fake.putProfile(profileOf(`P${p}`, NOW0 - 40 * DAY + p * HOUR));
  const span = 20 * DAY;
  for (let i = 0; i < events; i += 1) {
    const at = NOW0 - span + Math.floor((i * span) / events);
    const order = i % 3 === 0;
    fake.addEvent(
      eventOf(`E${i}`, order ? ORDER : OPEN, `P${i % 10}`, at, order ? { $value: (i % 97) + 0.99 } : { Subject: 'Hi' }),
    );
  }
  // Fifty events of one second: a page boundary may fall inside them.
  for (let i = 0; i < 50; i += 1) fake.addEvent(eventOf(`S${i}`, ORDER, 'P1', NOW0 - 3 * DAY, { $value: 10.01 }));
}

describe('Klaviyo sync', () => {
  const database = useFreshDatabase();
  let fake: FakeKlaviyo;
  let h: Harness;

  beforeEach(async () => {
    await database.db.query(
      `TRUNCATE klaviyo_events, klaviyo_aggregate_pending, klaviyo_aggregate_dirty, klaviyo_aggregated_metrics,
                klaviyo_profiles, klaviyo_metrics, klaviyo_sync_streams, klaviyo_sync_leases, klaviyo_sync_rejects CASCADE`,
    );
    fake = new FakeKlaviyo({ apiKey: API_KEY });
    await fake.start();
    h = harness(
      () => database.db,
      () => fake,
      NOW0,
    );
  });
  afterEach(async () => {
    await fake.stop();
  });

  it('backfills newest slice first with >= bounds, sort=datetime and full pages, then pulls what is new', async () => {
    seedAccount(fake, 2600);
    const first = await h.syncUntilCaughtUp();
    expect(first.status).toBe('done');
    await expectStoredEventsToEqual(database.db, fake.allEvents());

    const requests = fake.requests.filter((r) => r.endpoint === 'events');
    for (const r of requests) {
      expect(r.status).toBe(200);
      expect(r.query.get('sort')).toBe('datetime');
      expect(r.query.get('page[size]')).toBe('1000');
      expect(r.query.get('include')).toBe('metric,profile');
    }
    // The backfill's first requests (cursor-less) go down in time: newest slice first.
    const slices = eventFilters(h.sent).filter((f) => !f.cursor && f.to - f.from === 7 * DAY);
    expect(slices.length).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < slices.length; i += 1) expect(slices[i]?.to).toBe(slices[i - 1]?.from);
    // No event was read twice during the backfill: pages partition the range.
    expect(first.streams.events.rows_pulled).toBe(fake.allEvents().length);

    // New events, one of them at exactly the second the cursor stopped at (a `>` would lose it).
    const cursor = Date.parse(first.streams.events.cursor as string);
    expect(cursor).toBeLessThanOrEqual(NOW0 - SAFETY_MS);
    h.clock.advance(10 * 60_000);
    fake.addEvent(eventOf('N0', ORDER, 'P2', cursor, { $value: 5.05 }));
    fake.addEvent(eventOf('N1', OPEN, 'P3', cursor + 60_000));
    const second = await h.sync();
    expect(second.status).toBe('done');
    expect(second.streams.events.inserted).toBe(2);
    await expectStoredEventsToEqual(database.db, fake.allEvents());
    await expectStoredProfilesToEqual(database.db, fake);
  });

  it('waits out a 429 across the whole client, retries 5xx and dropped connections, and loses nothing', async () => {
    seedAccount(fake, 1500);
    fake.fail({ status: 429, retryAfter: '30' }, { endpoint: 'metrics' });
    fake.fail({ status: 503 }, { endpoint: 'events', times: 2 });
    fake.fail({ status: 'drop' }, { endpoint: 'events' });
    const result = await h.syncUntilCaughtUp();
    expect(result.status).toBe('done');
    await expectStoredEventsToEqual(database.db, fake.allEvents());

    // The 429 was on metrics; the request after it, whatever its endpoint, waited the 30 s.
    const throttledAt = fake.requests.findIndex((r) => r.status === 429);
    const sentAfter = h.sent[throttledAt + 1];
    expect(sentAfter).toBeDefined();
    expect((sentAfter?.at ?? 0) - (h.sent[throttledAt]?.at ?? 0)).toBeGreaterThanOrEqual(30_000);
    expect(fake.requests.filter((r) => r.status === 503)).toHaveLength(2);
    await expectStoredProfilesToEqual(database.db, fake);
  });

  it('a 429 on one endpoint also holds back the next endpoint', async () => {
    seedAccount(fake, 10);
    // Metrics fit in one page; the 429 comes on profiles' first page, then events must wait too.
    fake.fail({ status: 429, retryAfter: '45' }, { endpoint: 'profiles' });
    await h.syncUntilCaughtUp();
    const i429 = fake.requests.findIndex((r) => r.status === 429);
    expect(fake.requests[i429]?.endpoint).toBe('profiles');
    const retryAt = h.sent[i429 + 1]?.at ?? 0;
    expect(retryAt - (h.sent[i429]?.at ?? 0)).toBeGreaterThanOrEqual(45_000);
  });

  it('never moves the cursor past now for a future-dated event, and stores that event once its time comes', async () => {
    seedAccount(fake, 300);
    fake.addEvent(eventOf('F1', ORDER, 'P1', NOW0 + 30 * DAY, { $value: 99.99 }));
    const first = await h.syncUntilCaughtUp();
    expect(Date.parse(first.streams.events.cursor as string)).toBeLessThanOrEqual(NOW0 - SAFETY_MS);
    await expectStoredEventsToEqual(
      database.db,
      fake.allEvents().filter((e) => e.id !== 'F1'),
    );

    // An event after the cursor but before now still arrives: the cursor did not jump to F1's time.
    h.clock.advance(5 * 60_000);
    fake.addEvent(eventOf('N1', ORDER, 'P2', NOW0 + 60_000, { $value: 1.5 }));
    const second = await h.sync();
    expect(Date.parse(second.streams.events.cursor as string)).toBeLessThanOrEqual(h.clock.now() - SAFETY_MS);
    await expectStoredEventsToEqual(
      database.db,
      fake.allEvents().filter((e) => e.id !== 'F1'),
    );

    h.clock.advance(31 * DAY);
    await h.sync();
    await expectStoredEventsToEqual(database.db, fake.allEvents());
  });

  it('re-reads the lookback window for late events, storing each once', async () => {
    seedAccount(fake, 300);
    const first = await h.syncUntilCaughtUp();
    const cursor = Date.parse(first.streams.events.cursor as string);
    // Klaviyo accepts an event dated two hours back after the sync read those hours.
    fake.addEvent(eventOf('L1', ORDER, 'P4', cursor - 2 * HOUR, { $value: 12.34 }));
    h.clock.advance(HOUR + 60_000);
    const second = await h.sync();
    expect(second.streams.events.inserted).toBe(1);
    // The sweep re-read the day: every other event came again and was stored nothing twice.
    expect(second.streams.events.rows_pulled).toBeGreaterThan(1);
    await expectStoredEventsToEqual(database.db, fake.allEvents());
  });

  it('pulls profile updates (latest attributes win) and new metrics', async () => {
    seedAccount(fake, 200);
    await h.syncUntilCaughtUp();
    h.clock.advance(10 * 60_000);
    fake.putProfile(profileOf('P3', h.clock.now() - 60_000, { first_name: 'Grace', properties: { tier: 'Gold' } }));
    // A profile updated without any new event: only the profiles stream can bring it.
    fake.putProfile(profileOf('P5', h.clock.now() - 120_000, { first_name: 'Linus' }));
    fake.addMetric(metricOf('MetricNew001', 'Started Checkout'));
    fake.addEvent(eventOf('C1', 'MetricNew001', 'P3', h.clock.now() - 30_000, { $value: 7.25 }));
    const result = await h.sync();
    expect(result.status).toBe('done');

    const profile = await database.db.query<{ first_name: string; properties: unknown; updated: Date }>(
      `SELECT first_name, properties, updated FROM klaviyo_profiles WHERE id = 'P3'`,
    );
    expect(profile[0]?.first_name).toBe('Grace');
    expect(profile[0]?.properties).toEqual({ tier: 'Gold' });
    const metric = await database.db.query<{ name: string; is_stub: boolean }>(
      `SELECT name, is_stub FROM klaviyo_metrics WHERE id = 'MetricNew001'`,
    );
    expect(metric).toEqual([{ name: 'Started Checkout', is_stub: false }]);
    await expectStoredEventsToEqual(database.db, fake.allEvents());
    await expectStoredProfilesToEqual(database.db, fake);
    // Profiles are read from the cursor on, not from the start again.
    const lastProfiles = fake.requests.filter((r) => r.endpoint === 'profiles').at(-1);
    expect(lastProfiles?.query.get('filter')).toMatch(/^greater-than\(updated,/);
    expect(lastProfiles?.query.get('sort')).toBe('updated');
  });

  it('sets aside bad items with their reason and pointer and stores the rest of their page', async () => {
    seedAccount(fake, 200);
    fake.addEvent(eventOf('BADNUL', ORDER, 'P1', NOW0 - DAY, { $value: 3, note: 'a\u0000b' }));
    // Its unix timestamp says 1999 (before Klaviyo's floor), its datetime says yesterday.
    const early = eventOf('BADTS', ORDER, 'P1', NOW0 - DAY + 1000, { $value: 4 });
    early.attributes.timestamp = 946684799;
    fake.addEvent(early);
    // A profile no column can hold: set aside from the events' included resources and from the
    // profiles stream; its events are stored, pointing at a stub of it.
    fake.putProfile(profileOf('P9', NOW0 - 40 * DAY + 9 * HOUR, { properties: { bad: 'x\u0000' } }));
    const result = await h.syncUntilCaughtUp();
    expect(result.status).toBe('done');
    expect(result.streams.events.rejects).toBe(3);
    expect(result.streams.profiles.rejects).toBe(1);
    await expectStoredEventsToEqual(
      database.db,
      fake.allEvents().filter((e) => !e.id.startsWith('BAD')),
    );
    const rejects = await database.db.query<{
      stream: string;
      item_key: string;
      pointer: string;
      code: string;
      reason: string;
      item_json: string;
    }>(`SELECT stream, item_key, pointer, code, reason, item_json FROM klaviyo_sync_rejects ORDER BY stream, item_key`);
    expect(rejects.map((r) => [r.stream, r.item_key, r.code])).toEqual([
      ['events', 'event:BADNUL', 'invalid_character'],
      ['events', 'event:BADTS', 'inconsistent'],
      ['events', 'profile:P9', 'invalid_character'],
      ['profiles', 'profile:P9', 'invalid_character'],
    ]);
    expect(rejects[0]?.pointer).toMatch(/^\/data\/\d+\/attributes\/event_properties\/note$/);
    expect(rejects[1]?.pointer).toMatch(/^\/data\/\d+\/attributes\/timestamp$/);
    expect(rejects[2]?.pointer).toMatch(/^\/included\/\d+\/attributes\/properties\/bad$/);
    expect(rejects[1]?.reason).toMatch(/not the second of datetime/);
    expect(JSON.parse(rejects[0]?.item_json ?? '{}').attributes.event_properties.note).toBe('a\u0000b');
    await expectStoredProfilesToEqual(database.db, fake, ['P9']);
    const stub = await database.db.query<{ is_stub: boolean }>(`SELECT is_stub FROM klaviyo_profiles WHERE id = 'P9'`);
    expect(stub).toEqual([{ is_stub: true }]);

    // A sweep reads the bad items again: still one row each.
    h.clock.advance(2 * HOUR);
    await h.sync();
    const count = await database.db.query<{ n: string }>('SELECT count(*)::text AS n FROM klaviyo_sync_rejects');
    expect(count[0]?.n).toBe('4');
  });

  it('stops at its time budget with its checkpoints, and the next run resumes without starting over', async () => {
    seedAccount(fake, 5200);
    // Each request costs 2 s of virtual time; 5 s of budget ends the run after the first page of the backfill's first slice (of two).
    const stopped = await h.sync({ timeBudgetMs: 5_000, tickPerRequestMs: 2_000 });
    expect(stopped.status).toBe('partial');
    expect(stopped.caughtUp).toBe(false);
    const storedAfterStop = (
      await database.db.query<{ n: string }>('SELECT count(*)::text AS n FROM klaviyo_events')
    )[0]?.n;
    expect(Number(storedAfterStop)).toBeGreaterThan(0);
    const pulledBefore = stopped.streams.events.rows_pulled;

    const resumed = await h.syncUntilCaughtUp();
    expect(resumed.status).toBe('done');
    await expectStoredEventsToEqual(database.db, fake.allEvents());
    await expectStoredProfilesToEqual(database.db, fake);
    // Resuming re-read at most what shares the checkpoint's second, not the stored pages.
    const total = fake.allEvents().length;
    expect(pulledBefore + resumed.streams.events.rows_pulled).toBeLessThanOrEqual(total + 60);
  });

  it('a run with nothing new writes no data', async () => {
    seedAccount(fake, 1200);
    await h.syncUntilCaughtUp();
    await expectStoredEventsToEqual(database.db, fake.allEvents());
    const before = await dataSnapshot(database.db);
    // Past the sweep interval: the run re-reads the lookback day, metrics and the latest profiles.
    h.clock.advance(2 * HOUR);
    const again = await h.sync();
    expect(again.status).toBe('done');
    expect(again.streams.events.rows_pulled).toBeGreaterThan(0);
    expect(again.streams.events.inserted).toBe(0);
    expect(await dataSnapshot(database.db)).toEqual(before);
  });

  it('exits at once when another run holds the lease', async () => {
    seedAccount(fake, 10);
    expect(await acquireLease(database.db, 'default', 'another-run', 60_000)).toBe(true);
    const result = await h.sync();
    expect(result.status).toBe('skipped');
    expect(fake.requests).toHaveLength(0);
  });
});
