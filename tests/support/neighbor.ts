import { runAggregation } from '../../lib/app/aggregation';
import { ingestEventsPage, upsertMetricsDocument, upsertProfilesDocument } from '../../lib/app/ingest';
import type { Db } from '../../lib/db/port';
import { generatePages } from '../../lib/demo/generator';
import { dirtyBacklog } from '../../lib/repositories/aggregates';
import { eventsPage } from '../ingest/helpers';
import { klaviyoFixture } from './fixtures';

/**
 * Another account next to every test (issue 20): globalSetup stores this account's data in the
 * template database that every test file clones, so each suite runs with a neighbour whose Klaviyo ids
 * are the ones the tests themselves use (the fixtures, the ingest helpers' `ev` pages, the demo
 * generator's default seed), aggregated. The tests act on the account 'default'; none may see, count
 * or change these rows.
 */
export const NEIGHBOR_ACCOUNT = 'neighbor';

// Explicit limits: globalSetup has no function configuration to read them from.
const INGEST = { maxResources: 1000 };

export async function seedNeighborAccount(db: Db): Promise<{ events: number }> {
  let events = 0;
  const page = async (body: unknown) => {
    events += (await ingestEventsPage(db, NEIGHBOR_ACCOUNT, body, INGEST)).inserted;
  };
  await upsertMetricsDocument(db, NEIGHBOR_ACCOUNT, { data: [klaviyoFixture('metric.json')] }, INGEST);
  await upsertProfilesDocument(db, NEIGHBOR_ACCOUNT, { data: [klaviyoFixture('profile.json')] }, INGEST);
  await page(klaviyoFixture('events-page.json'));
  await page(eventsPage({ events: 300, prefix: 'ev' }));
  for (const demo of generatePages({
    events: 3000,
    profiles: 500,
    pageSize: 1000,
    start: new Date('2025-01-01T00:00:00Z'),
    end: new Date('2026-01-01T00:00:00Z'),
  })) {
    await page(demo);
  }
  for (let i = 0; i < 100 && (await dirtyBacklog(db, NEIGHBOR_ACCOUNT)).bucketsWaiting > 0; i += 1) {
    await runAggregation(db, NEIGHBOR_ACCOUNT, { batchBuckets: 5000, timeBudgetMs: 600_000, maxValuesPerHour: 200 });
  }
  return { events };
}
