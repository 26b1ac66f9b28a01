import { rebuildAggregates, runAggregation } from '../../lib/app/aggregation';
import { queryMetricAggregates } from '../../lib/app/metricAggregates';
import { useFreshDatabase } from '../support/database';
import { storeEvents, type SimpleEvent } from '../support/events';
import { prng } from '../support/random';
import { contractViolations } from '../aggregation/oracle';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * The fast paths against plain SQL over raw events. First, distinct profiles per day served from
 * lookback counts (the 'lookback' plan), against a plain count(DISTINCT profile_id) per local day, in every state the rollups pass through: freshly rolled
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
    return {
      id: `${idPrefix}${i}`,
      metricId: METRIC,
      profileId: random() < 0.05 ? null : `p${Math.floor(random() * 12)}`,
      at,
      value: 1,
    };
  });
}

describe('unique per day from lookback counts', () => {
  const t = useFreshDatabase();

  async function served(
    timezone: string,
  ): Promise<{ source: string; unique: readonly number[]; count: readonly number[] }> {
    const { document, plan } = await queryMetricAggregates(
      t.db,
      DEFAULT_ACCOUNT_ID,
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
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await expectExact();
  });

  it('is exact with late events marked but not rolled up, before a day and inside it', async () => {
    // Profiles whose next event is hours later, across a midnight: the stored lookbacks of those later
    // hours still count them as new, which stays right for days that start after the late event.
    await storeEvents(t.db, eventsAroundMidnights(2, 60, 'late'));
    await expectExact();
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await expectExact();
  });

  it('is exact after events are deleted and their range rebuilt', async () => {
    await t.db.query(`DELETE FROM klaviyo_events WHERE metric_id = $1 AND id LIKE 'a1%'`, [METRIC]);
    await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID, {
      from: new Date('2024-10-18T00:00:00Z'),
      to: new Date('2024-11-12T00:00:00Z'),
    });
    await expectExact();
  });

  it('is exact after the rollups and profile-hours are truncated and rebuilt', async () => {
    await t.db.query('TRUNCATE klaviyo_aggregated_metrics, klaviyo_profile_hours');
    await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID);
    await expectExact();
    // A rebuild of correct rollups changes nothing.
    const before = await t.db.query(`SELECT xmin::text FROM klaviyo_aggregated_metrics ORDER BY metric_id, bucket`);
    await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID);
    expect(await t.db.query(`SELECT xmin::text FROM klaviyo_aggregated_metrics ORDER BY metric_id, bucket`)).toEqual(
      before,
    );
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
    const run = await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { batchBuckets: 5000, timeBudgetMs: 600_000 });
    expect(run).toMatchObject({ status: 'done', bucketsRecomputed: 6000, batches: 2, bucketsWaiting: 0 });
    expect(await contractViolations(t.db)).toEqual([]);
    expect((await t.db.query('SELECT 1 FROM klaviyo_aggregate_adjustments')).length).toBe(0);
  });
});

describe('count and sum of dirty hours: their rollup plus their pending rows', () => {
  const t = useFreshDatabase();
  const metric = 'QmPend';

  async function answer(interval: string, timezone: string, from: string, to: string) {
    const { document, plan } = await queryMetricAggregates(
      t.db,
      DEFAULT_ACCOUNT_ID,
      {
        data: {
          type: 'metric-aggregate',
          attributes: {
            metric_id: metric,
            measurements: ['count', 'sum_value'],
            interval,
            timezone,
            filter: [`greater-or-equal(datetime,${from})`, `less-than(datetime,${to})`],
          },
        },
      },
      { maxRangeDays: 366, baseUrl: '' },
    );
    const m = document.data.attributes.data[0]?.measurements ?? {};
    // Each bucket's instants, clipped to the range: what the oracle counts over.
    const windows = plan.boundaries
      .slice(0, -1)
      .map((b, i) => [
        new Date(Math.max(b, plan.startUs / 1000)).toISOString(),
        new Date(Math.min(plan.boundaries[i + 1] as number, plan.endUs / 1000)).toISOString(),
      ]);
    return { source: plan.source, windows, count: m.count ?? [], sum: m.sum_value ?? [] };
  }

  async function expectRaw(interval: string, timezone: string, from: string, to: string): Promise<void> {
    const served = await answer(interval, timezone, from, to);
    expect(served.source).toBe('rollups');
    const rows = await t.db.query<{ n: string; s: string }>(
      `SELECT count(e.id)::text AS n, coalesce(sum(e.value), 0)::text AS s
       FROM jsonb_to_recordset($2::jsonb) AS w(i integer, lo timestamptz, hi timestamptz)
       LEFT JOIN klaviyo_events e ON e.metric_id = $1 AND e."timestamp" >= w.lo AND e."timestamp" < w.hi
       GROUP BY w.i ORDER BY w.i`,
      [metric, JSON.stringify(served.windows.map(([lo, hi], i) => ({ i, lo, hi })))],
    );
    expect({ interval, timezone, count: served.count, sum: served.sum.map((x) => Math.round(x * 100) / 100) }).toEqual({
      interval,
      timezone,
      count: rows.map((r) => Number(r.n)),
      sum: rows.map((r) => Number(r.s)),
    });
  }

  it('equals raw events before and after the aggregator takes the pending rows, and for cut and unmarked-by-pending hours', async () => {
    const random = prng(7);
    const at = (i: number) => new Date(Date.UTC(2024, 2, 1) + Math.floor(random() * 20 * 86_400_000) + i);
    await storeEvents(
      t.db,
      Array.from({ length: 800 }, (_, i) => ({
        id: `s${i}`,
        metricId: metric,
        profileId: `p${i % 30}`,
        at: at(i),
        value: (i % 97) + 0.25,
      })),
    );
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    // Late events: their hours are marked and hold pending rows until the next run.
    await storeEvents(
      t.db,
      Array.from({ length: 150 }, (_, i) => ({
        id: `l${i}`,
        metricId: metric,
        profileId: `p${i % 30}`,
        at: at(i),
        value: (i % 13) + 0.5,
      })),
    );
    // An hour marked without pending rows (what a rebuild or a deletion leaves): recounted from raw.
    await t.db.query(
      `WITH gone AS (DELETE FROM klaviyo_events WHERE id IN ('s1', 's2') RETURNING date_trunc('hour', "timestamp", 'UTC') AS hour),
            unpended AS (DELETE FROM klaviyo_aggregate_pending WHERE metric_id = $1 AND bucket IN (SELECT hour FROM gone))
       INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket) SELECT 'default', $1, hour FROM gone ON CONFLICT DO NOTHING`,
      [metric],
    );
    const pending = await t.db.query<{ n: string }>('SELECT count(*) AS n FROM klaviyo_aggregate_pending');
    expect(Number(pending[0]?.n)).toBeGreaterThan(100);
    for (const [interval, zone, from, to] of [
      ['day', 'UTC', '2024-03-01T00:00:00', '2024-03-22T00:00:00'],
      ['day', 'America/New_York', '2024-03-01T00:00:00', '2024-03-22T00:00:00'],
      ['hour', 'UTC', '2024-03-05T00:00:00', '2024-03-09T00:00:00'],
      ['day', 'UTC', '2024-03-01T10:30:00', '2024-03-21T07:15:00'],
    ] as const) {
      await expectRaw(interval, zone, from, to);
    }
  });
});
