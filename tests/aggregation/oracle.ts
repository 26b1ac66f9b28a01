import { DEFAULT_ACCOUNT_ID } from '../../lib/config';
import type { Db } from '../../lib/db/port';
import type { SimpleEvent } from '../support/events';
import { prng } from '../support/random';

/**
 * The oracle: hourly figures recomputed from raw events, written independently of the aggregator's
 * SQL (date_bin instead of date_trunc, a plain GROUP BY over the table, no index assumptions), and
 * compared as text so that numeric scale and NULLs count. Each function reads one account ($1 in its
 * statement; 'default' unless told otherwise).
 */
export interface FiguresText {
  metric_id: string;
  bucket: string;
  event_count: string;
  sum_value: string;
  min_value: string | null;
  max_value: string | null;
  unique_profiles: string;
  /** The 25 lookback counts, as array text. */
  new_profiles_by_lookback: string;
  [key: string]: unknown;
}

const ZERO_LOOKBACKS = `'{${Array.from({ length: 25 }, () => 0).join(',')}}'`;

/**
 * Each hour's lookback counts as their definition states them, for k = 0..24: the distinct profiles
 * with an event in the hour and none of the same metric in the k hours before it (a NOT EXISTS over
 * raw events, nothing shared with the aggregator's profile-hours). CTEs `lookbacks(metric_id, bucket,
 * lookback)` over HOUR_OF_EVENT.
 */
const HOUR_OF_EVENT = `date_bin('1 hour', "timestamp", timestamptz '2000-01-01 00:00:00+00')`;
const ORACLE_LOOKBACKS = `
  presence AS (
    SELECT DISTINCT metric_id, ${HOUR_OF_EVENT} AS bucket, profile_id FROM klaviyo_events
     WHERE account_id = $1 AND profile_id IS NOT NULL
  ), per_lookback AS (
    SELECT p.metric_id, p.bucket, k,
           count(*) FILTER (WHERE NOT EXISTS (
             SELECT 1 FROM klaviyo_events e
             WHERE e.account_id = $1 AND e.metric_id = p.metric_id AND e.profile_id = p.profile_id
               AND e."timestamp" >= p.bucket - make_interval(hours => k) AND e."timestamp" < p.bucket)) AS n
    FROM presence p CROSS JOIN generate_series(0, 24) AS k
    GROUP BY 1, 2, 3
  ), lookbacks AS (
    SELECT metric_id, bucket, array_agg(n ORDER BY k)::text AS lookback FROM per_lookback GROUP BY 1, 2
  )`;

export async function oracleHours(db: Db, accountId: string = DEFAULT_ACCOUNT_ID): Promise<FiguresText[]> {
  return db.query<FiguresText>(
    `WITH ${ORACLE_LOOKBACKS}, figures AS (
       SELECT metric_id, ${HOUR_OF_EVENT} AS bucket,
              count(*)::text AS event_count,
              coalesce(sum(value), 0)::text AS sum_value,
              min(value)::text AS min_value,
              max(value)::text AS max_value,
              count(DISTINCT profile_id)::text AS unique_profiles
       FROM klaviyo_events
       WHERE account_id = $1
       GROUP BY 1, 2
     )
     SELECT f.metric_id,
            to_char(f.bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS bucket,
            f.event_count, f.sum_value, f.min_value, f.max_value, f.unique_profiles,
            coalesce(l.lookback, ${ZERO_LOOKBACKS}) AS new_profiles_by_lookback
     FROM figures f LEFT JOIN lookbacks l ON l.metric_id = f.metric_id AND l.bucket = f.bucket
     ORDER BY 1, 2`,
    [accountId],
  );
}

export async function storedHours(db: Db, accountId: string = DEFAULT_ACCOUNT_ID): Promise<FiguresText[]> {
  return db.query<FiguresText>(
    `SELECT metric_id,
            to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS bucket,
            event_count::text AS event_count,
            sum_value::text AS sum_value,
            min_value::text AS min_value,
            max_value::text AS max_value,
            unique_profiles::text AS unique_profiles,
            new_profiles_by_lookback::text AS new_profiles_by_lookback
     FROM klaviyo_aggregated_metrics
     WHERE account_id = $1 AND granularity = 'hour'
     ORDER BY 1, 2`,
    [accountId],
  );
}

export async function dirtyCount(db: Db, accountId: string = DEFAULT_ACCOUNT_ID): Promise<number> {
  const rows = await db.query<{ n: string }>(
    'SELECT count(*) AS n FROM klaviyo_aggregate_dirty WHERE account_id = $1',
    [accountId],
  );
  return Number(rows[0]?.n);
}

/**
 * The readers' contract, checked in one statement (one snapshot): every hour that is not marked dirty
 * has exactly the oracle's figures, or no row when it has no events. Returns the offending hours.
 */
export async function contractViolations(
  db: Db,
  accountId: string = DEFAULT_ACCOUNT_ID,
): Promise<Record<string, unknown>[]> {
  return db.query(
    `WITH ${ORACLE_LOOKBACKS}, oracle AS (
       SELECT e.metric_id, ${HOUR_OF_EVENT} AS bucket,
              count(*) AS event_count, coalesce(sum(value), 0) AS sum_value, min(value) AS min_value,
              max(value) AS max_value, count(DISTINCT profile_id) AS unique_profiles
       FROM klaviyo_events e WHERE e.account_id = $1 GROUP BY 1, 2
     ), stored AS (
       SELECT metric_id, bucket, event_count, sum_value, min_value, max_value, unique_profiles,
              new_profiles_by_lookback::text AS lookback
       FROM klaviyo_aggregated_metrics WHERE account_id = $1 AND granularity = 'hour'
     ), compared AS (
       SELECT coalesce(o.metric_id, s.metric_id) AS metric_id, coalesce(o.bucket, s.bucket) AS bucket,
              o.event_count::text AS expected_count, s.event_count::text AS stored_count,
              (o.event_count, o.sum_value::text, o.min_value::text, o.max_value::text, o.unique_profiles)
                IS DISTINCT FROM (s.event_count, s.sum_value::text, s.min_value::text, s.max_value::text, s.unique_profiles)
                AS figures_differ,
              coalesce(l.lookback, ${ZERO_LOOKBACKS}) IS DISTINCT FROM coalesce(s.lookback, ${ZERO_LOOKBACKS}) AS lookbacks_differ,
              l.lookback AS expected_lookback, s.lookback AS stored_lookback
       FROM oracle o
       FULL JOIN stored s ON s.metric_id = o.metric_id AND s.bucket = o.bucket
       LEFT JOIN lookbacks l ON l.metric_id = coalesce(o.metric_id, s.metric_id) AND l.bucket = coalesce(o.bucket, s.bucket)
     )
     -- Figures must be exact in every unmarked hour; lookback counts in every hour whose 24 hours
     -- before it are unmarked too (readers use a count at lookback k only then).
     SELECT metric_id, bucket, expected_count, stored_count, expected_lookback, stored_lookback
     FROM compared c
     WHERE (c.figures_differ
            AND NOT EXISTS (SELECT 1 FROM klaviyo_aggregate_dirty d
                            WHERE d.account_id = $1 AND d.metric_id = c.metric_id AND d.bucket = c.bucket))
        OR (c.lookbacks_differ
            AND NOT EXISTS (SELECT 1 FROM klaviyo_aggregate_dirty d
                            WHERE d.account_id = $1 AND d.metric_id = c.metric_id
                              AND d.bucket BETWEEN c.bucket - interval '24 hours' AND c.bucket))`,
    [accountId],
  );
}

/**
 * Every row of the rollups with its row version: any rewrite, even to equal values, changes it.
 * TimescaleDB's compressed chunks have no xmin/ctid; there updated_at (set by every rewrite) has to do.
 */
export async function rollupChecksum(
  db: Db,
  options: { rowVersions?: boolean; accountId?: string } = {},
): Promise<string> {
  const versions = (options.rowVersions ?? true) ? `, xmin::text, ctid::text` : '';
  const rows = await db.query<{ checksum: string | null; n: string }>(
    `SELECT md5(string_agg(concat_ws('|', metric_id, granularity, bucket, event_count, sum_value, min_value, max_value,
                                     unique_profiles, updated_at${versions}), ',' ORDER BY metric_id, granularity, bucket)) AS checksum,
            count(*) AS n
     FROM klaviyo_aggregated_metrics WHERE account_id = $1`,
    [options.accountId ?? DEFAULT_ACCOUNT_ID],
  );
  return `${rows[0]?.n}:${rows[0]?.checksum ?? 'empty'}`;
}

/**
 * Random events over [from, from + hours): several metrics and profiles, decimal values with up to
 * 2 places, some events without a profile and some without a value.
 */
export function randomEvents(
  seed: number,
  options: { count: number; from: string; hours: number; metrics: string[]; profiles: number; idPrefix: string },
): SimpleEvent[] {
  const random = prng(seed);
  const start = new Date(options.from).getTime();
  return Array.from({ length: options.count }, (_, i) => {
    const r = random();
    const value = r < 0.15 ? null : (Math.floor(random() * 100_000) / 100).toFixed(random() < 0.5 ? 2 : 0);
    return {
      id: `${options.idPrefix}_${i}`,
      metricId: options.metrics[Math.floor(random() * options.metrics.length)] as string,
      profileId: random() < 0.1 ? null : `p_${Math.floor(random() * options.profiles)}`,
      at: new Date(start + Math.floor(random() * options.hours * 3_600_000)),
      value,
    };
  });
}

/**
 * The dimension rollups' contract (lib/repositories/dimensions.ts), checked in one statement: for every
 * hour that is not marked dirty, each registered key without a fallback for the metric has one row per
 * non-empty value with the count and sum of that value's events, the totals' pseudo-key "" one row with
 * all of the hour's events, and nothing else. The oracle reads
 * values through jsonb_each (a string's text, any other JSON's text), not the aggregator's ->>.
 */
export async function dimensionContractViolations(
  db: Db,
  accountId: string = DEFAULT_ACCOUNT_ID,
): Promise<Record<string, unknown>[]> {
  return db.query(
    `WITH oracle AS (
       SELECT e.metric_id, kv.key AS dimension, ${HOUR_OF_EVENT} AS bucket,
              CASE jsonb_typeof(kv.value) WHEN 'string' THEN kv.value #>> '{}' ELSE kv.value::text END AS dimension_value,
              count(*) AS event_count, coalesce(sum(e.value), 0) AS sum_value
       FROM klaviyo_events e, jsonb_each(e.properties) AS kv(key, value)
       WHERE e.account_id = $1 AND jsonb_typeof(kv.value) <> 'null' AND kv.value <> '""'::jsonb
         AND kv.key IN (SELECT dimension FROM klaviyo_rollup_dimensions)
       GROUP BY 1, 2, 3, 4
       UNION ALL
       -- The totals' rows: the pseudo-key "" holds every event of the hour under the value "".
       SELECT e.metric_id, '', ${HOUR_OF_EVENT}, '', count(*), coalesce(sum(e.value), 0)
       FROM klaviyo_events e
       WHERE e.account_id = $1
       GROUP BY 1, 3
     ), stored AS (
       SELECT metric_id, dimension, bucket, dimension_value, event_count, sum_value FROM klaviyo_dimension_rollups
        WHERE account_id = $1
     )
     SELECT coalesce(o.metric_id, s.metric_id) AS metric_id, coalesce(o.dimension, s.dimension) AS dimension,
            to_char(coalesce(o.bucket, s.bucket) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS bucket,
            coalesce(o.dimension_value, s.dimension_value) AS dimension_value,
            o.event_count::text AS expected_count, s.event_count::text AS stored_count,
            o.sum_value::text AS expected_sum, s.sum_value::text AS stored_sum
     FROM oracle o
     FULL JOIN stored s
       ON s.metric_id = o.metric_id AND s.dimension = o.dimension AND s.bucket = o.bucket AND s.dimension_value = o.dimension_value
     WHERE (o.event_count, o.sum_value::text) IS DISTINCT FROM (s.event_count, s.sum_value::text)
       AND NOT EXISTS (SELECT 1 FROM klaviyo_aggregate_dirty d
                       WHERE d.account_id = $1 AND d.metric_id = coalesce(o.metric_id, s.metric_id)
                         AND d.bucket = coalesce(o.bucket, s.bucket))
       AND NOT EXISTS (SELECT 1 FROM klaviyo_dimension_fallbacks f
                       WHERE f.account_id = $1 AND f.metric_id = coalesce(o.metric_id, s.metric_id)
                         AND f.dimension = coalesce(o.dimension, s.dimension))
     ORDER BY 1, 2, 3, 4`,
    [accountId],
  );
}

/**
 * The daily dimension rollups' invariant, whatever is marked: each UTC day's row is the sum of its hours'
 * rows (a row of zeros standing for none), and so is each local day's row of every registered zone
 * (migrations/0016; the local day found from the hour's local date, not as the writers find it).
 * Returns the days that differ.
 */
export async function dailyDimensionViolations(
  db: Db,
  accountId: string = DEFAULT_ACCOUNT_ID,
): Promise<Record<string, unknown>[]> {
  const utc = await db.query(
    `WITH hours AS (
       SELECT metric_id, dimension, date_bin('1 day', bucket, timestamptz '2000-01-01 00:00:00+00') AS day, dimension_value,
              sum(event_count) AS event_count, sum(sum_value) AS sum_value
       FROM klaviyo_dimension_rollups WHERE account_id = $1 GROUP BY 1, 2, 3, 4
     ), days AS (
       SELECT metric_id, dimension, day, dimension_value, event_count, sum_value
       FROM klaviyo_dimension_daily_rollups WHERE account_id = $1 AND (event_count <> 0 OR sum_value <> 0)
     )
     SELECT coalesce(h.metric_id, d.metric_id) AS metric_id, coalesce(h.dimension, d.dimension) AS dimension,
            coalesce(h.day, d.day)::text AS day, coalesce(h.dimension_value, d.dimension_value) AS dimension_value,
            h.event_count::text AS hours_count, d.event_count::text AS day_count
     FROM hours h
     FULL JOIN days d ON d.metric_id = h.metric_id AND d.dimension = h.dimension AND d.day = h.day AND d.dimension_value = h.dimension_value
     WHERE (h.event_count, h.sum_value) IS DISTINCT FROM (d.event_count, d.sum_value)
     ORDER BY 1, 2, 3, 4`,
    [accountId],
  );
  const zoned = await db.query(
    `WITH hours AS (
       SELECT r.metric_id, z.zone, r.dimension, ((r.bucket AT TIME ZONE z.zone)::date)::timestamp AT TIME ZONE z.zone AS day,
              r.dimension_value, sum(r.event_count) AS event_count, sum(r.sum_value) AS sum_value
       FROM klaviyo_dimension_rollups r CROSS JOIN klaviyo_rollup_day_zones z
       WHERE r.account_id = $1 GROUP BY 1, 2, 3, 4, 5
     ), days AS (
       SELECT metric_id, zone, dimension, day, dimension_value, event_count, sum_value
       FROM klaviyo_dimension_zone_daily_rollups WHERE account_id = $1 AND (event_count <> 0 OR sum_value <> 0)
     )
     SELECT coalesce(h.metric_id, d.metric_id) AS metric_id, coalesce(h.zone, d.zone) AS zone,
            coalesce(h.dimension, d.dimension) AS dimension, coalesce(h.day, d.day)::text AS day,
            coalesce(h.dimension_value, d.dimension_value) AS dimension_value,
            h.event_count::text AS hours_count, d.event_count::text AS day_count
     FROM hours h
     FULL JOIN days d ON d.metric_id = h.metric_id AND d.zone = h.zone AND d.dimension = h.dimension AND d.day = h.day
                     AND d.dimension_value = h.dimension_value
     WHERE (h.event_count, h.sum_value) IS DISTINCT FROM (d.event_count, d.sum_value)
     ORDER BY 1, 2, 3, 4, 5`,
    [accountId],
  );
  return [...utc, ...zoned];
}

/**
 * The dimension profiles' contract (lib/repositories/dimensionProfiles.ts), checked in one statement:
 * for every hour that is not marked dirty, each unique key without a fallback for the metric has one
 * row per (non-empty value, profile) with the number of that profile's events of that value, and
 * nothing else. Values are read through jsonb_each, as in dimensionContractViolations.
 */
export async function dimensionProfileViolations(
  db: Db,
  accountId: string = DEFAULT_ACCOUNT_ID,
): Promise<Record<string, unknown>[]> {
  return db.query(
    `WITH oracle AS (
       SELECT e.metric_id, kv.key AS dimension, ${HOUR_OF_EVENT} AS bucket,
              CASE jsonb_typeof(kv.value) WHEN 'string' THEN kv.value #>> '{}' ELSE kv.value::text END AS dimension_value,
              e.profile_id, count(*) AS event_count
       FROM klaviyo_events e, jsonb_each(e.properties) AS kv(key, value)
       WHERE e.account_id = $1 AND jsonb_typeof(kv.value) <> 'null' AND kv.value <> '""'::jsonb AND e.profile_id IS NOT NULL
         AND kv.key IN (SELECT dimension FROM klaviyo_rollup_unique_dimensions)
       GROUP BY 1, 2, 3, 4, 5
     ), stored AS (
       SELECT metric_id, dimension, bucket, dimension_value, profile_id, event_count FROM klaviyo_dimension_profiles
        WHERE account_id = $1
     )
     SELECT coalesce(o.metric_id, s.metric_id) AS metric_id, coalesce(o.dimension, s.dimension) AS dimension,
            to_char(coalesce(o.bucket, s.bucket) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS bucket,
            coalesce(o.dimension_value, s.dimension_value) AS dimension_value,
            coalesce(o.profile_id, s.profile_id) AS profile_id,
            o.event_count::text AS expected_count, s.event_count::text AS stored_count
     FROM oracle o
     FULL JOIN stored s
       ON s.metric_id = o.metric_id AND s.dimension = o.dimension AND s.bucket = o.bucket
      AND s.dimension_value = o.dimension_value AND s.profile_id = o.profile_id
     WHERE o.event_count IS DISTINCT FROM s.event_count
       AND NOT EXISTS (SELECT 1 FROM klaviyo_aggregate_dirty d
                       WHERE d.account_id = $1 AND d.metric_id = coalesce(o.metric_id, s.metric_id)
                         AND d.bucket = coalesce(o.bucket, s.bucket))
       AND NOT EXISTS (SELECT 1 FROM klaviyo_dimension_fallbacks f
                       WHERE f.account_id = $1 AND f.metric_id = coalesce(o.metric_id, s.metric_id)
                         AND f.dimension = coalesce(o.dimension, s.dimension))
     ORDER BY 1, 2, 3, 4, 5`,
    [accountId],
  );
}
