import type { Db } from '../db/port';
import type { HourBucket } from './hourBucket';

/**
 * Profile-hours (klaviyo_profile_hours) and the lookback counts they feed (new_profiles_by_lookback
 * of the hourly rollups): what lets a day's distinct profiles be read from 24 rollup rows instead of
 * the day's events (migrations/0002_profile_hours.sql explains the arithmetic).
 *
 * Invariants, kept by the aggregator under its lock (lib/app/aggregation.ts):
 *   - an hour that is not marked dirty has exactly one profile-hour per profile with an event of the
 *     metric in it, and each profile-hour's previous_bucket is the profile's previous such hour when
 *     that lies within the 24 hours before it, NULL otherwise (migrations/0005);
 *   - every hourly rollup's lookback counts are the sums of its profile-hours' spans
 *     (klaviyo_lookback_span), whatever the hour's state.
 * Readers use a stored count of hour h at lookback k only when no hour of [h - k, h] is marked, so the
 * events the rollups have not counted yet never make a stored count wrong: they change a count at
 * lookback k of a later hour only through an event inside that window.
 */

/** What the profile-hours of some hours must become: the marked hours of a batch, or a time range. */
export type ProfileHourScope =
  | { readonly kind: 'marked'; readonly buckets: readonly HourBucket[] }
  | { readonly kind: 'range'; readonly from: Date; readonly to: Date; readonly metricId?: string };

export interface ProfileHourSync {
  readonly added: number;
  readonly removed: number;
  /** Profile-hours whose previous hour changed because a neighbour came or went. */
  readonly relinked: number;
  /** Hours left in klaviyo_aggregate_adjustments for the batch's rollup statement. */
  readonly hoursAdjusted: number;
}

/**
 * `candidates` and `removed` from CTEs `recounted` (the profile-hours raw events give the recounted
 * hours) and `held` (what those hours store): the differences, plus `fresh`, a query of profile-hours
 * that may be new for another reason (a batch's pending rows).
 */
const differences = (fresh?: string): string => `
  candidates AS MATERIALIZED (${
    fresh
      ? `${fresh}
    UNION ALL`
      : ''
  }
    SELECT r.metric_id, r.profile_id, r.bucket FROM recounted r
    WHERE NOT EXISTS (SELECT 1 FROM held s
                      WHERE s.metric_id = r.metric_id AND s.profile_id = r.profile_id AND s.bucket = r.bucket)
  ), removed AS MATERIALIZED (
    SELECT s.metric_id, s.profile_id, s.bucket, s.previous_bucket FROM held s
    WHERE NOT EXISTS (SELECT 1 FROM recounted r
                      WHERE r.metric_id = s.metric_id AND r.profile_id = s.profile_id AND r.bucket = s.bucket)
  )`;

/**
 * `candidates`: profile-hours the scope's hours must hold and that may not be stored yet; `removed`:
 * the stored ones they must lose. Marked hours with pending rows only gain the pending rows' profiles
 * (every event counted before is already there); marked hours without pending rows, and a rebuild's
 * range, are compared as a whole with their raw events, and only the differences go on: a recount
 * that finds what is stored (a rebuild of correct rollups, the hours of deleted events) then costs
 * one read of the hours' events and profile-hours, not a probe per profile.
 */
function scopeSql(accountId: string, scope: ProfileHourScope): { sql: string; params: string[] } {
  if (scope.kind === 'marked') {
    return {
      params: [
        accountId,
        JSON.stringify(scope.buckets.map((b) => ({ metric_id: b.metricId, bucket: b.bucket.toISOString() }))),
      ],
      sql: `
        marked AS MATERIALIZED (
          -- Whether each hour has pending rows, as a probe per hour rather than a join: the pending
          -- table is empty between batches, and a join with an estimate of one row from its
          -- statistics can be planned as a nested loop over every pair of rows.
          SELECT metric_id, bucket,
                 EXISTS (SELECT 1 FROM klaviyo_aggregate_pending p
                          WHERE p.account_id = $1 AND p.metric_id = t.metric_id AND p.bucket = t.bucket) AS has_pending
          FROM jsonb_to_recordset($2::jsonb) AS t(metric_id text, bucket timestamptz)
        ), recounted AS MATERIALIZED (
          SELECT DISTINCT m.metric_id, e.profile_id, m.bucket
          FROM marked m
          JOIN klaviyo_events e
            ON e.account_id = $1 AND e.metric_id = m.metric_id AND e."timestamp" >= m.bucket AND e."timestamp" < m.bucket + interval '1 hour'
          WHERE NOT m.has_pending AND e.profile_id IS NOT NULL
        ), held AS MATERIALIZED (
          SELECT ph.metric_id, ph.profile_id, ph.bucket, ph.previous_bucket
          FROM marked m
          JOIN klaviyo_profile_hours ph ON ph.account_id = $1 AND ph.metric_id = m.metric_id AND ph.bucket = m.bucket
          WHERE NOT m.has_pending
        ), ${differences(`
          SELECT DISTINCT p.metric_id, p.profile_id, p.bucket
          FROM marked m
          JOIN klaviyo_aggregate_pending p ON p.account_id = $1 AND p.metric_id = m.metric_id AND p.bucket = m.bucket
          WHERE m.has_pending AND p.profile_id IS NOT NULL`)}`,
    };
  }
  const params = [
    accountId,
    scope.from.toISOString(),
    scope.to.toISOString(),
    ...(scope.metricId ? [scope.metricId] : []),
  ];
  return {
    params,
    sql: `
      recounted AS MATERIALIZED (
        SELECT DISTINCT m.id AS metric_id, e.profile_id, date_trunc('hour', e."timestamp", 'UTC') AS bucket
        FROM klaviyo_metrics m
        JOIN klaviyo_events e
          ON e.account_id = $1 AND e.metric_id = m.id AND e."timestamp" >= $2::timestamptz AND e."timestamp" < $3::timestamptz
        WHERE m.account_id = $1 AND e.profile_id IS NOT NULL ${scope.metricId ? 'AND m.id = $4' : ''}
      ), held AS MATERIALIZED (
        SELECT ph.metric_id, ph.profile_id, ph.bucket, ph.previous_bucket
        FROM klaviyo_profile_hours ph
        WHERE ph.account_id = $1 AND ph.bucket >= $2::timestamptz AND ph.bucket < $3::timestamptz ${scope.metricId ? 'AND ph.metric_id = $4' : ''}
      ), ${differences()}`,
  };
}

/** k = 0..24: the lookbacks each hourly rollup keeps a count for. */
const LOOKBACKS = Array.from({ length: 25 }, (_, k) => k);
/** SQL literal: 25 zero lookback counts (a new rollup row's, and "no change"). */
export const ZERO_LOOKBACKS = `'{${LOOKBACKS.map(() => 0).join(',')}}'::integer[]`;

/** Aggregate over rows (span, n): the 25 lookback counts that n profile-hours of each span add. */
const SPAN_COUNTS = `ARRAY[${LOOKBACKS.map((k) => `sum(CASE WHEN span > ${k} THEN n ELSE 0 END)::integer`).join(', ')}]`;

/**
 * From a CTE `spans(metric_id, bucket, span, n)` (n profile-hours of that span, negative to take away),
 * the CTE `lookbacks(metric_id, bucket, counts)`: the 25 lookback counts those spans add to each hour,
 * as 25 sums of one grouping pass (written out: a subquery per hour cost more than the rest together).
 */
const LOOKBACKS_FROM_SPANS = `
  lookbacks AS (
    SELECT metric_id, bucket, counts
    FROM (SELECT metric_id, bucket,
                 ${SPAN_COUNTS} AS counts
          FROM spans
          WHERE span > 0
          GROUP BY metric_id, bucket) per_hour
    WHERE counts <> ${ZERO_LOOKBACKS}
  )`;

/**
 * Aggregate: the element-wise sum of a column of lookback arrays (NULLs add nothing), written out for
 * the same reason.
 */
export const sumLookbacks = (column: string): string =>
  `ARRAY[${LOOKBACKS.map((k) => `coalesce(sum(${column}[${k + 1}]), 0)::integer`).join(', ')}]`;

/** Element-wise sum of two 25-element lookback arrays, written out for the same reason. */
export const addLookbacks = (a: string, b: string): string =>
  `ARRAY[${LOOKBACKS.map((k) => `${a}[${k + 1}] + ${b}[${k + 1}]`).join(', ')}]`;

/**
 * The CTEs (text to follow a WITH, ending without a comma) that bring the scope's profile-hours to
 * what its hours must hold: they insert and delete them, re-link every profile-hour whose previous
 * hour changed (for each changed (metric, profile), among its rows from the first change to 24 hours
 * after the last), and define, per hour touched, the profiles new
 * to it and the change of its lookback counts as the CTE
 * `adjustments(metric_id, bucket, new_profiles, lookbacks)`. The CTEs `inserted`, `relinked` and
 * `deleted` return a row per profile-hour written; `marked` (the marked scope only) holds the
 * scope's hours with whether each has pending rows.
 * For the incremental batch they are part of the statement that writes the rollups
 * (recomputeHourBuckets), so each rollup row is written once; a rebuild leaves the adjustments in
 * klaviyo_aggregate_adjustments (syncProfileHours).
 * Must run under the aggregation lock, after the batch has taken its marks and no later than the
 * statement that takes their pending rows: no event can commit into a taken hour meanwhile, since its
 * ingest would first have to re-mark the hour, which waits for this transaction.
 */
export function profileHourSyncCtes(accountId: string, scope: ProfileHourScope): { sql: string; params: string[] } {
  const { sql, params } = scopeSql(accountId, scope);
  return {
    params,
    sql: `${sql},
     pairs AS MATERIALIZED (
       -- Every (metric, profile) the scope may change, with the span of its changes; candidates already
       -- stored are no change and cost only their share of the scans below.
       SELECT metric_id, profile_id, min(bucket) AS lo, max(bucket) AS hi
       FROM (SELECT metric_id, profile_id, bucket FROM candidates UNION ALL SELECT metric_id, profile_id, bucket FROM removed) c
       GROUP BY metric_id, profile_id
     ), nearby AS MATERIALIZED (
       -- One primary-key range scan per pair (LATERAL, so that it stays an index scan: a join would be
       -- planned as a hash of the whole table, since the planner cannot know how few rows a batch
       -- brings). A link only reaches 24 hours back (migrations/0005), so the rows a change can
       -- re-link, and the neighbours they can take, all lie within 24 hours of the changes.
       SELECT c.lo, x.metric_id, x.profile_id, x.bucket, x.previous_bucket
       FROM pairs c
       CROSS JOIN LATERAL (
         SELECT ph.metric_id, ph.profile_id, ph.bucket, ph.previous_bucket FROM klaviyo_profile_hours ph
         WHERE ph.account_id = $1 AND ph.metric_id = c.metric_id AND ph.profile_id = c.profile_id
           AND ph.bucket >= c.lo - interval '24 hours' AND ph.bucket <= c.hi + interval '24 hours'
       ) x
     ), added AS MATERIALIZED (
       SELECT t.metric_id, t.profile_id, t.bucket FROM candidates t
       WHERE NOT EXISTS (SELECT 1 FROM nearby n
                         WHERE n.metric_id = t.metric_id AND n.profile_id = t.profile_id AND n.bucket = t.bucket)
     ), after AS (
       SELECT n.lo, n.metric_id, n.profile_id, n.bucket, n.previous_bucket, false AS is_new
       FROM nearby n
       WHERE NOT EXISTS (SELECT 1 FROM removed r
                         WHERE r.metric_id = n.metric_id AND r.profile_id = n.profile_id AND r.bucket = n.bucket)
       UNION ALL
       SELECT c.lo, a.metric_id, a.profile_id, a.bucket, NULL::timestamptz, true
       FROM added a JOIN pairs c ON c.metric_id = a.metric_id AND c.profile_id = a.profile_id
     ), moved AS MATERIALIZED (
       SELECT metric_id, profile_id, bucket, is_new, old_previous, new_previous
       FROM (SELECT metric_id, profile_id, bucket, is_new, lo, previous_bucket AS old_previous,
                    -- The window holds every row from 24 hours before the first change: a row's
                    -- previous row in it is its previous hour, if that lies within 24 hours.
                    CASE WHEN lag(bucket) OVER by_pair >= bucket - interval '24 hours' THEN lag(bucket) OVER by_pair END
                      AS new_previous
             FROM after
             WINDOW by_pair AS (PARTITION BY metric_id, profile_id ORDER BY bucket)) linked
       -- Rows before the first change keep their links: nothing before them changed.
       WHERE bucket >= lo AND (is_new OR old_previous IS DISTINCT FROM new_previous)
     ), deleted AS (
       DELETE FROM klaviyo_profile_hours ph
       USING removed r
       WHERE ph.account_id = $1 AND ph.metric_id = r.metric_id AND ph.profile_id = r.profile_id AND ph.bucket = r.bucket
       RETURNING 1
     ), inserted AS (
       -- Not stored (they are not among the pair's rows between its first and last change), and only
       -- the aggregator writes this table, under its lock: a plain insert, a third cheaper than an upsert.
       INSERT INTO klaviyo_profile_hours (account_id, metric_id, profile_id, bucket, previous_bucket)
       SELECT $1::text, metric_id, profile_id, bucket, new_previous FROM moved WHERE is_new
       ORDER BY metric_id, profile_id, bucket
       RETURNING 1
     ), relinked AS (
       -- Updated through their key as an upsert that always conflicts: an UPDATE ... FROM would be
       -- planned as a hash join over the whole table.
       INSERT INTO klaviyo_profile_hours AS ph (account_id, metric_id, profile_id, bucket, previous_bucket)
       SELECT $1::text, metric_id, profile_id, bucket, new_previous FROM moved WHERE NOT is_new
       ORDER BY metric_id, profile_id, bucket
       ON CONFLICT (account_id, metric_id, profile_id, bucket) DO UPDATE SET previous_bucket = excluded.previous_bucket
       RETURNING 1
     ), spans AS (
       SELECT metric_id, bucket, klaviyo_lookback_span(bucket, new_previous) AS span, 1 AS n FROM moved
       UNION ALL
       SELECT metric_id, bucket, klaviyo_lookback_span(bucket, old_previous), -1 FROM moved WHERE NOT is_new
       UNION ALL
       SELECT metric_id, bucket, klaviyo_lookback_span(bucket, previous_bucket), -1 FROM removed
     ), ${LOOKBACKS_FROM_SPANS},
     new_profiles AS (
       SELECT metric_id, bucket, count(*) AS n FROM moved WHERE is_new GROUP BY metric_id, bucket
     ), adjustments AS (
       SELECT coalesce(l.metric_id, n.metric_id) AS metric_id, coalesce(l.bucket, n.bucket) AS bucket,
              coalesce(n.n, 0) AS new_profiles, coalesce(l.counts, ${ZERO_LOOKBACKS}) AS lookbacks
       FROM lookbacks l FULL JOIN new_profiles n ON n.metric_id = l.metric_id AND n.bucket = l.bucket
     )`,
  };
}

/**
 * A rebuild's sync: the profile-hours of a time range, in one statement, with the hours' adjustments
 * left in klaviyo_aggregate_adjustments for resetLookbacksInRange and applyLookbackAdjustmentsOutside.
 */
export async function syncProfileHours(
  tx: Db,
  accountId: string,
  range: { readonly from: Date; readonly to: Date; readonly metricId?: string },
): Promise<ProfileHourSync> {
  const { sql, params } = profileHourSyncCtes(accountId, { kind: 'range', ...range });
  const rows = await tx.query<{ added: string; removed: string; relinked: string; adjusted: string }>(
    `WITH ${sql},
     stored AS (
       INSERT INTO klaviyo_aggregate_adjustments (account_id, metric_id, bucket, new_profiles, lookbacks)
       SELECT $1::text, metric_id, bucket, new_profiles, lookbacks FROM adjustments
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM inserted) AS added, (SELECT count(*) FROM deleted) AS removed,
            (SELECT count(*) FROM relinked) AS relinked, (SELECT count(*) FROM stored) AS adjusted`,
    params,
  );
  const row = rows[0];
  return {
    added: Number(row?.added ?? 0),
    removed: Number(row?.removed ?? 0),
    relinked: Number(row?.relinked ?? 0),
    hoursAdjusted: Number(row?.adjusted ?? 0),
  };
}

/** Takes every row of klaviyo_aggregate_adjustments (DELETE ... RETURNING): what syncProfileHours left. */
const TAKE_ADJUSTMENTS = `DELETE FROM klaviyo_aggregate_adjustments WHERE account_id = $1
       RETURNING metric_id, bucket, new_profiles, lookbacks`;

/**
 * A rebuild's counterpart of the batch statement: takes the sync's adjustments and adds the lookback
 * changes of the hours outside [from, to) (the hours after the range whose profiles it re-linked) to
 * their rollups; the range's own hours are set from their profile-hours by resetLookbacksInRange.
 */
export async function applyLookbackAdjustmentsOutside(
  tx: Db,
  accountId: string,
  range: { from: Date; to: Date },
): Promise<number> {
  const rows = await tx.query<{ n: string }>(
    `WITH taken AS (${TAKE_ADJUSTMENTS}
     ), adjusted AS (
       UPDATE klaviyo_aggregated_metrics a
       SET new_profiles_by_lookback = ${addLookbacks('a.new_profiles_by_lookback', 'j.lookbacks')}, updated_at = now()
       FROM taken j
       WHERE a.account_id = $1 AND a.metric_id = j.metric_id AND a.granularity = 'hour' AND a.bucket = j.bucket
         AND (j.bucket < $2::timestamptz OR j.bucket >= $3::timestamptz)
       RETURNING 1
     )
     SELECT count(*) AS n FROM adjusted`,
    [accountId, range.from.toISOString(), range.to.toISOString()],
  );
  return Number(rows[0]?.n ?? 0);
}

/**
 * Sets the lookback counts of every hourly rollup of a range from its profile-hours, whatever they
 * held: the rebuild's last step, which repairs counts that were edited or lost (a truncated rollup
 * table) as the rebuild repairs the other figures. Rows already right are not rewritten.
 */
export async function resetLookbacksInRange(
  tx: Db,
  accountId: string,
  range: { from: Date; to: Date; metricId?: string },
): Promise<number> {
  const params = [
    accountId,
    range.from.toISOString(),
    range.to.toISOString(),
    ...(range.metricId ? [range.metricId] : []),
  ];
  const metricFilter = range.metricId ? 'AND metric_id = $4' : '';
  const rows = await tx.query<{ reset: string }>(
    `WITH wanted AS (
       -- Each rollup row of the range with the counts its profile-hours give, by grouping both rather
       -- than joining them: right after a TRUNCATE the planner has no statistics, and once ran such a
       -- join as a nested loop that re-grouped the range's profile-hours for every rollup row (a
       -- 1M-event rebuild took 433 s instead of ~70 s).
       SELECT metric_id, bucket, bool_or(has_row) AS has_row,
              ${SPAN_COUNTS} AS counts
       FROM (SELECT metric_id, bucket, true AS has_row, 0 AS span, 0 AS n
             FROM klaviyo_aggregated_metrics
             WHERE account_id = $1 AND granularity = 'hour' AND bucket >= $2::timestamptz AND bucket < $3::timestamptz ${metricFilter}
             UNION ALL
             SELECT metric_id, bucket, false, klaviyo_lookback_span(bucket, previous_bucket), 1
             FROM klaviyo_profile_hours
             WHERE account_id = $1 AND bucket >= $2::timestamptz AND bucket < $3::timestamptz ${metricFilter}) known
       GROUP BY metric_id, bucket
     ), reset AS (
       -- Every row conflicts (only rows that exist are offered, under the aggregation lock): an upsert
       -- updates them through the primary key whatever the estimates, where UPDATE ... FROM could not.
       INSERT INTO klaviyo_aggregated_metrics AS a
         (account_id, metric_id, granularity, bucket, event_count, sum_value, unique_profiles, new_profiles_by_lookback)
       SELECT $1::text, metric_id, 'hour', bucket, 0, 0, 0, counts FROM wanted WHERE has_row
       ORDER BY metric_id, bucket
       ON CONFLICT (account_id, metric_id, granularity, bucket) DO UPDATE
         SET new_profiles_by_lookback = excluded.new_profiles_by_lookback, updated_at = now()
         WHERE a.new_profiles_by_lookback IS DISTINCT FROM excluded.new_profiles_by_lookback
       RETURNING 1
     )
     SELECT count(*) AS reset FROM reset`,
    params,
  );
  return Number(rows[0]?.reset ?? 0);
}
