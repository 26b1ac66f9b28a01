import type { Db } from '../../lib/db/port';
import { closeDb } from '../../lib/db';
import { demoYearEndingOn, generatePages } from '../../lib/demo/generator';
import { ingestEventsPage } from '../../lib/app/ingest';
import { defaultDemoProfiles, demoWindow, seedDemoData, type SeedProgress } from '../../scripts/seed';
import { freshDatabase, type TestDatabase } from '../support/database';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

const EVENTS = 2500;
const PROFILES = 400;
const SEED = 7;
/** A pinned window keeps these tests' data the same whatever today is. */
const WINDOW = demoYearEndingOn(new Date('2026-01-01T00:00:00Z'));
const DAY_MS = 86_400_000;

/** Everything ingest stores, minus the wall-clock columns (ingested_at, first_marked_at). */
async function contents(db: Db): Promise<Record<string, string>> {
  const tables = {
    metrics: `SELECT id, name, integration, created, updated, raw_data, is_stub FROM klaviyo_metrics WHERE account_id = 'default'`,
    profiles: `SELECT id, email, phone_number, external_id, first_name, last_name, location, properties, created, updated,
                      last_event_date, raw_data, is_stub FROM klaviyo_profiles WHERE account_id = 'default'`,
    events: `SELECT id, "timestamp", metric_id, profile_id, value, value_currency, uuid, unique_id, properties, raw_data FROM klaviyo_events WHERE account_id = 'default'`,
    dirty: `SELECT metric_id, bucket FROM klaviyo_aggregate_dirty WHERE account_id = 'default'`,
  };
  const out: Record<string, string> = {};
  for (const [name, select] of Object.entries(tables)) {
    const rows = await db.query<{ n: string; digest: string | null }>(
      `SELECT count(*) AS n, md5(string_agg(t::text, '|' ORDER BY t::text)) AS digest FROM (${select}) AS t`,
    );
    out[name] = `${rows[0]?.n}:${rows[0]?.digest}`;
  }
  return out;
}

describe('seedDemoData', () => {
  let seeded: TestDatabase;
  let ingested: TestDatabase;

  beforeAll(async () => {
    seeded = await freshDatabase();
    ingested = await freshDatabase({ setEnv: false });
  });

  afterAll(async () => {
    await closeDb();
    await seeded.drop();
    await ingested.drop();
  });

  it('stores exactly what ingesting the generator pages one by one stores, reporting progress page by page', async () => {
    const progress: SeedProgress[] = [];
    const result = await seedDemoData(seeded.db, { events: EVENTS, seed: SEED, profiles: PROFILES, ...WINDOW }, (p) =>
      progress.push(p),
    );
    for (const page of generatePages({ events: EVENTS, seed: SEED, profiles: PROFILES, ...WINDOW })) {
      await ingestEventsPage(ingested.db, DEFAULT_ACCOUNT_ID, page, { maxResources: 1000 });
    }

    expect(result).toMatchObject({
      events: EVENTS,
      pages: 3,
      inserted: EVENTS,
      duplicates: 0,
      profiles: PROFILES,
      seed: SEED,
    });
    expect(progress).toEqual([
      { events: 1000, pages: 1 },
      { events: 2000, pages: 2 },
      { events: 2500, pages: 3 },
    ]);
    const mine = await contents(seeded.db);
    expect(mine.events).toMatch(new RegExp(`^${EVENTS}:`));
    expect(Number(mine.dirty?.split(':')[0])).toBeGreaterThan(0);
    expect(mine).toEqual(await contents(ingested.db));
  });

  it('changes nothing when run again with the same options: every event is a duplicate', async () => {
    const before = await contents(seeded.db);
    const again = await seedDemoData(seeded.db, { events: EVENTS, seed: SEED, profiles: PROFILES, ...WINDOW });
    expect(again).toMatchObject({ events: EVENTS, inserted: 0, duplicates: EVENTS });
    expect(await contents(seeded.db)).toEqual(before);
  });

  it('stores the same rows when writing two pages at a time', async () => {
    const parallel = await freshDatabase({ setEnv: false });
    try {
      const result = await seedDemoData(parallel.db, {
        events: EVENTS,
        seed: SEED,
        profiles: PROFILES,
        ...WINDOW,
        concurrency: 2,
      });
      expect(result).toMatchObject({ events: EVENTS, pages: 3, inserted: EVENTS });
      expect(await contents(parallel.db)).toEqual(await contents(ingested.db));
    } finally {
      await parallel.drop();
    }
  });

  it('adds different events for a different seed', async () => {
    const other = await seedDemoData(seeded.db, { events: 500, seed: SEED + 1, profiles: PROFILES, ...WINDOW });
    expect(other).toMatchObject({ events: 500, inserted: 500, duplicates: 0 });
  });

  it('by default spans the year up to today (UTC midnight): the demo has data in its last 30 days', async () => {
    const recent = await freshDatabase({ setEnv: false });
    try {
      const result = await seedDemoData(recent.db, { events: 1000, seed: SEED, profiles: PROFILES });
      const now = new Date();
      const midnight = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
      expect(result.end.getTime()).toBe(midnight);
      const [span] = await recent.db.query<{ first: Date; last: Date; last30: string }>(
        `SELECT min("timestamp") AS first, max("timestamp") AS last,
                count(*) FILTER (WHERE "timestamp" >= $1::timestamptz) AS last30
           FROM klaviyo_events WHERE account_id = 'default'`,
        [new Date(midnight - 30 * DAY_MS).toISOString()],
      );
      expect(span?.last.getTime()).toBeLessThan(midnight);
      expect(span?.first.getTime()).toBeGreaterThanOrEqual(result.start.getTime());
      expect(Number(span?.last30)).toBeGreaterThan(0);
    } finally {
      await recent.drop();
    }
  });

  it('dates the window by the given day: the same day gives the same year', () => {
    expect(demoWindow({}, new Date('2026-03-01T15:30:00Z'))).toEqual({
      start: new Date('2025-03-01T00:00:00Z'),
      end: new Date('2026-03-01T00:00:00Z'),
    });
    expect(demoWindow({ end: new Date('2026-07-04T00:00:00Z') })).toEqual({
      start: new Date('2025-07-04T00:00:00Z'),
      end: new Date('2026-07-04T00:00:00Z'),
    });
  });

  it('sizes the demo audience at about ten events per profile, within bounds', () => {
    expect(defaultDemoProfiles(100)).toBe(1000);
    expect(defaultDemoProfiles(100_000)).toBe(10_000);
    expect(defaultDemoProfiles(10_000_000)).toBe(200_000);
  });
});
