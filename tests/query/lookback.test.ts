import { rebuildAggregates, runAggregation } from '../../lib/aggregation/rollup';
import { queryMetricAggregates } from '../../lib/aggregation/query';
import { useFreshDatabase } from '../support/database';
import { storeEvents, type SimpleEvent } from '../support/events';
import { prng } from '../support/random';
import { contractViolations } from '../aggregation/oracle';

/**
 * Distinct profiles per day served from lookback counts (the 'lookback' plan), against a plain
 * count(DISTINCT profile_id) per local day, in every state the rollups pass through: freshly rolled
 * up, with late events marked but not rolled up (before a day and inside it), rolled up again, and
 * after events were deleted and a range rebuilt. Profiles are few and their events cluster around
 * local midnights, so most days hold profiles whose previous event lies hours before the day starts.
 */
const METRIC = 'QmLook';
const FROM = '2024-10-20T00:00:00';
const TO = '2024-11-10T00:00:00';
const ZONES = ['UTC', 'America/New_York'] as const;

function eventsAroundMidnights(seed: number, count: number, idPrefix: string): SimpleEvent[] {
  const random = prng(seed);
  return Array.from({ length: count }, (_, i) => {
    // A midnight of UTC or of New York (04:00 or 05:00 UTC around the 2024-11-03 DST change), +-30 hours.
    const day = Date.UTC(2024, 9, 20 + Math.floor(random() * 21));
    const midnight = day + (random() < 0.5 ? 0 : (random() < 0.5 ? 4 : 5) * 3_600_000);
    const at = new Date(Math.floor(midnight + (random() * 60 - 30) * 3_600_000));
    return { id: `${idPrefix}${i}`, metricId: METRIC, profileId: random() < 0.05 ? null : `p${Math.floor(random() * 12)}`, at, value: 1 };
  });
}

describe('unique per day from lookback counts', () => {
  const t = useFreshDatabase();

  async function served(timezone: string): Promise<{ source: string; unique: readonly number[]; count: readonly number[] }> {
    const { document, plan } = await queryMetricAggregates(
      t.db,
      {
        data: {
          type: 'metric-aggregate',
          attributes: {
            metric_id: METRIC,
            measurements: ['unique', 'count'],
            interval: 'day',
            timezone,
            filter: [`greater-or-equal(datetime,${FROM})`, `less-than(datetime,${TO})`],
          },
        },
      },
      { maxRangeDays: 366, baseUrl: '' },
    );
    const measurements = document.data.attributes.data[0]?.measurements ?? {};
    return { source: plan.source, unique: measurements.unique ?? [], count: measurements.count ?? [] };
  }

  async function expected(timezone: string): Promise<{ unique: number[]; count: number[] }> {
    const rows = await t.db.query<{ unique: string; count: string }>(
      `WITH days AS (
         SELECT d AS day FROM generate_series($2::timestamp, $3::timestamp - interval '1 day', interval '1 day') AS d
       )
       SELECT (SELECT count(DISTINCT e.profile_id) FROM klaviyo_events e
                WHERE e.metric_id = $1 AND e."timestamp" >= days.day AT TIME ZONE $4
                  AND e."timestamp" < (days.day + interval '1 day') AT TIME ZONE $4)::text AS unique,
              (SELECT count(*) FROM klaviyo_events e
                WHERE e.metric_id = $1 AND e."timestamp" >= days.day AT TIME ZONE $4
                  AND e."timestamp" < (days.day + interval '1 day') AT TIME ZONE $4)::text AS count
       FROM days ORDER BY days.day`,
      [METRIC, FROM, TO, timezone],
    );
    return { unique: rows.map((r) => Number(r.unique)), count: rows.map((r) => Number(r.count)) };
  }

  async function expectExact(): Promise<void> {
    for (const zone of ZONES) {
      const answer = await served(zone);
      expect({ zone, source: answer.source }).toEqual({ zone, source: 'lookback' });
      expect({ zone, unique: answer.unique, count: answer.count }).toEqual({ zone, ...(await expected(zone)) });
    }
  }

  it('is exact once rolled up', async () => {
    await storeEvents(t.db, eventsAroundMidnights(1, 1500, 'a'));
    await runAggregation(t.db);
    await expectExact();
  });

  it('is exact with late events marked but not rolled up, before a day and inside it', async () => {
    // Profiles whose next event is hours later, across a midnight: the stored lookbacks of those later
    // hours still count them as new, which stays right for days that start after the late event.
    await storeEvents(t.db, eventsAroundMidnights(2, 60, 'late'));
    await expectExact();
    await runAggregation(t.db);
    await expectExact();
  });

  it('is exact after events are deleted and their range rebuilt', async () => {
    await t.db.query(`DELETE FROM klaviyo_events WHERE metric_id = $1 AND id LIKE 'a1%'`, [METRIC]);
    await rebuildAggregates(t.db, { from: new Date('2024-10-18T00:00:00Z'), to: new Date('2024-11-12T00:00:00Z') });
    await expectExact();
  });

  it('is exact after the rollups and profile-hours are truncated and rebuilt', async () => {
    await t.db.query('TRUNCATE klaviyo_aggregated_metrics, klaviyo_profile_hours');
    await rebuildAggregates(t.db);
    await expectExact();
    // A rebuild of correct rollups changes nothing.
    const before = await t.db.query(`SELECT xmin::text FROM klaviyo_aggregated_metrics ORDER BY metric_id, bucket`);
    await rebuildAggregates(t.db);
    expect(await t.db.query(`SELECT xmin::text FROM klaviyo_aggregated_metrics ORDER BY metric_id, bucket`)).toEqual(before);
  });
});

describe('a batch of 5,000 hours', () => {
  const t = useFreshDatabase();

  it('keeps every lookback exact, and its statements within the Data API limits', async () => {
    // One event per hour for 6,000 hours, 40 profiles taking turns: every profile-hour is re-linked
    // by the next one, and one batch takes 5,000 marks (the sync's per-hour output stays in a table,
    // not in a result over the Data API's 1 MiB).
    const start = Date.UTC(2024, 0, 1);
    const events: SimpleEvent[] = Array.from({ length: 6000 }, (_, i) => ({
      id: `h${i}`,
      metricId: 'QmBig',
      profileId: `p${(i * 7) % 40}`,
      at: new Date(start + i * 3_600_000 + 60_000),
      value: 1,
    }));
    await storeEvents(t.db, events);
    const run = await runAggregation(t.db, { batchBuckets: 5000, timeBudgetMs: 600_000 });
    expect(run).toMatchObject({ status: 'done', bucketsRecomputed: 6000, batches: 2, bucketsWaiting: 0 });
    expect(await contractViolations(t.db)).toEqual([]);
    expect((await t.db.query('SELECT 1 FROM klaviyo_aggregate_adjustments')).length).toBe(0);
  });
});
