import type { Db, SqlParam } from '../db/port';
import type { HourBucket } from './hourBucket';

/**
 * Dimension rollups (klaviyo_dimension_rollups): per (metric, dimension, UTC hour, value) the count
 * and sum of the events whose property `dimension` has that value, for the property keys registered
 * in klaviyo_rollup_dimensions (migrations/0007_dimension_rollups.sql, docs/breakdowns.md).
 *
 * Contract with readers, the hourly rollups' own (lib/repositories/aggregates.ts): for an hour that is
 * not marked dirty, a ready dimension's rows hold exactly the events of the hour with a non-empty
 * value, unless the (metric, dimension) pair has a fallback row. Events without a value (absent, JSON
 * null, "") have no row: they are the hour's total minus its rows. The hour's total is a row of its own,
 * under the pseudo-key TOTALS_KEY (every event of the metric, value ""), kept by the same writers as the
 * keys' rows, so that readers find a day's total in the daily table as well (migrations/0014).
 *
 * A value is the text `properties->>dimension` gives, the same expression the raw path groups by, so
 * both paths name a value alike (numbers, booleans and objects as their JSON text).
 *
 * Writers, all under the aggregation lock:
 *   - applyDimensionBatch: the incremental batch, for the hours whose marks it took, before the
 *     statement that takes their pending rows (it reads the same pending rows; none can appear or go
 *     in between, see lib/app/aggregation.ts);
 *   - rebuildDimensionRange: a rebuild's range, or a new dimension's backfill; it counts the events
 *     that have no pending row, which is what the stored rollups have counted.
 */

/** A value longer than this (in bytes) cannot be part of an index key safely: the pair falls back to raw events. */
export const MAX_DIMENSION_VALUE_BYTES = 1000;

export interface DimensionFallback {
  readonly metricId: string;
  readonly dimension: string;
  readonly reason: 'cardinality' | 'value_length';
  readonly bucket: Date;
  readonly distinctValues: number;
}

export interface DimensionWrite {
  /** Dimension rollup rows inserted, changed or removed. */
  readonly rowsChanged: number;
  /** Pairs found too wide (cardinality or value length) in this write; already recorded and cleared. */
  readonly fallbacks: readonly DimensionFallback[];
}

/**
 * The pseudo-key of the metric's totals in the dimension tables: per hour and day the count and sum of
 * all the metric's events. A configured key cannot be "" (lib/config.ts), and an event property named ""
 * is never registered, so no real key shares it.
 */
export const TOTALS_KEY = '';

/**
 * `figures(metric_id, dimension, bucket, dimension_value, event_count, sum_value, is_delta)` from a CTE
 * `counted(metric_id, bucket, properties, value, is_delta)`, for the registered dimensions that have no
 * fallback for the metric, and `wide(metric_id, dimension, bucket, reason, distinct_values)`: the
 * groups over the limits, left out of `figures`. Keys are matched through the event's own keys (a hash
 * join with the registered ones) rather than by probing every registered key in every event.
 */
function figuresCtes(trackedKeys: string, withTotals: boolean): string {
  // The metric's own totals, as the pseudo-key "" (TOTALS_KEY): one row per hour and day holding
  // every event, which readers subtract the key's rows from for the events without a value.
  const totals = withTotals
    ? `UNION ALL
    SELECT c.metric_id, '${TOTALS_KEY}' AS dimension, c.bucket, '' AS dimension_value, c.value, c.is_delta FROM counted c`
    : '';
  return `
  tracked AS MATERIALIZED (
    ${trackedKeys}
  ), valued AS MATERIALIZED (
    SELECT c.metric_id, t.dimension, c.bucket, c.properties->>t.dimension AS dimension_value, c.value, c.is_delta
    FROM counted c
    CROSS JOIN LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(c.properties) = 'object' THEN c.properties ELSE '{}'::jsonb END) AS k(key)
    JOIN tracked t ON t.dimension = k.key
    WHERE coalesce(c.properties->>t.dimension, '') <> ''
      AND NOT EXISTS (SELECT 1 FROM klaviyo_dimension_fallbacks f
                      WHERE f.account_id = $1 AND f.metric_id = c.metric_id AND f.dimension = t.dimension)
    ${totals}
  ), grouped AS MATERIALIZED (
    SELECT metric_id, dimension, bucket, dimension_value, bool_and(is_delta) AS is_delta,
           count(*) AS event_count, coalesce(sum(value), 0) AS sum_value
    FROM valued
    GROUP BY metric_id, dimension, bucket, dimension_value
  ), hours AS (
    -- Each (metric, key, hour)'s values from the grouped rows: window functions over the grouping
    -- made the planner sort every event's row by key, a large share of the statement.
    SELECT metric_id, dimension, bucket, count(*) AS values_in_hour, max(octet_length(dimension_value)) AS longest
    FROM grouped
    GROUP BY metric_id, dimension, bucket
  ), wide AS MATERIALIZED (
    SELECT metric_id, dimension, min(bucket) AS bucket,
           CASE WHEN max(longest) > ${MAX_DIMENSION_VALUE_BYTES} THEN 'value_length' ELSE 'cardinality' END AS reason,
           max(values_in_hour)::integer AS distinct_values
    FROM hours
    WHERE values_in_hour > $3::integer OR longest > ${MAX_DIMENSION_VALUE_BYTES}
    GROUP BY metric_id, dimension
  ), figures AS MATERIALIZED (
    SELECT g.metric_id, g.dimension, g.bucket, g.dimension_value, g.event_count, g.sum_value, g.is_delta
    FROM grouped g
    WHERE NOT EXISTS (SELECT 1 FROM wide w WHERE w.metric_id = g.metric_id AND w.dimension = g.dimension)
  )`;
}

/** Upserts CTE `figures`: added to what is stored when is_delta, set as a recount otherwise. */
/** Recounted hours: rows whose value the hour's events no longer give (after `previous` and `figures`). */
const DELETE_EMPTIED = `emptied AS (
       DELETE FROM klaviyo_dimension_rollups r
       USING previous p
       WHERE r.account_id = $1 AND r.metric_id = p.metric_id AND r.dimension = p.dimension AND r.bucket = p.bucket
         AND r.dimension_value = p.dimension_value
         AND NOT EXISTS (SELECT 1 FROM figures f
                         WHERE f.metric_id = p.metric_id AND f.dimension = p.dimension
                           AND f.bucket = p.bucket AND f.dimension_value = p.dimension_value)
       RETURNING 1
     )`;

const WRITE_FIGURES = `
  added AS (
    INSERT INTO klaviyo_dimension_rollups AS r
      (account_id, metric_id, dimension, bucket, dimension_value, event_count, sum_value)
    SELECT $1::text, metric_id, dimension, bucket, dimension_value, event_count, sum_value FROM figures WHERE is_delta
    ORDER BY metric_id, dimension, bucket, dimension_value
    ON CONFLICT (account_id, metric_id, dimension, bucket, dimension_value) DO UPDATE SET
      event_count = r.event_count + excluded.event_count,
      sum_value = r.sum_value + excluded.sum_value
    RETURNING 1
  ), recounted AS (
    INSERT INTO klaviyo_dimension_rollups AS r
      (account_id, metric_id, dimension, bucket, dimension_value, event_count, sum_value)
    SELECT $1::text, metric_id, dimension, bucket, dimension_value, event_count, sum_value FROM figures WHERE NOT is_delta
    ORDER BY metric_id, dimension, bucket, dimension_value
    ON CONFLICT (account_id, metric_id, dimension, bucket, dimension_value) DO UPDATE SET
      event_count = excluded.event_count,
      sum_value = excluded.sum_value
    WHERE (r.event_count, r.sum_value) IS DISTINCT FROM (excluded.event_count, excluded.sum_value)
    RETURNING 1
  ), day_deltas AS (
    -- The days take the same change as their hours: added figures, and for recounted hours the new
    -- figures minus the rows they replace (CTE previous; pairs found too wide are cleared anyway).
    SELECT metric_id, dimension, bucket, dimension_value, event_count, sum_value FROM figures
    UNION ALL
    SELECT metric_id, dimension, bucket, dimension_value, -event_count, -sum_value FROM previous p
    WHERE NOT EXISTS (SELECT 1 FROM wide w WHERE w.metric_id = p.metric_id AND w.dimension = p.dimension)
  ), daily AS (
    INSERT INTO klaviyo_dimension_daily_rollups AS d
      (account_id, metric_id, dimension, day, dimension_value, event_count, sum_value)
    SELECT $1::text, metric_id, dimension, date_trunc('day', bucket, 'UTC'), dimension_value, sum(event_count), sum(sum_value)
    FROM day_deltas
    GROUP BY metric_id, dimension, date_trunc('day', bucket, 'UTC'), dimension_value
    HAVING sum(event_count) <> 0 OR sum(sum_value) <> 0
    ORDER BY 2, 3, 4, 5
    ON CONFLICT (account_id, metric_id, dimension, day, dimension_value) DO UPDATE SET
      event_count = d.event_count + excluded.event_count,
      sum_value = d.sum_value + excluded.sum_value
    RETURNING 1
  ), zone_daily AS (
    -- The same for the days of every registered zone (migrations/0016), ready or still being filled:
    -- the backfill resets a zone's days from the hourly rows under the same lock.
    INSERT INTO klaviyo_dimension_zone_daily_rollups AS d
      (account_id, metric_id, zone, dimension, day, dimension_value, event_count, sum_value)
    SELECT $1::text, c.metric_id, z.zone, c.dimension, date_trunc('day', c.bucket, z.zone), c.dimension_value,
           sum(c.event_count), sum(c.sum_value)
    FROM day_deltas c CROSS JOIN klaviyo_rollup_day_zones z
    GROUP BY c.metric_id, z.zone, c.dimension, date_trunc('day', c.bucket, z.zone), c.dimension_value
    HAVING sum(c.event_count) <> 0 OR sum(c.sum_value) <> 0
    ORDER BY 2, 3, 4, 5, 6
    ON CONFLICT (account_id, metric_id, zone, dimension, day, dimension_value) DO UPDATE SET
      event_count = d.event_count + excluded.event_count,
      sum_value = d.sum_value + excluded.sum_value
    RETURNING 1
  )`;

interface WriteRow extends Record<string, unknown> {
  changed: string;
  wide: unknown;
}

function parseWide(raw: unknown): DimensionFallback[] {
  if (!Array.isArray(raw)) return [];
  return raw.map((entry) => {
    const w = entry as Record<string, unknown>;
    return {
      metricId: String(w.metric_id),
      dimension: String(w.dimension),
      reason: w.reason === 'value_length' ? 'value_length' : 'cardinality',
      bucket: new Date(String(w.bucket)),
      distinctValues: Number(w.distinct_values),
    };
  });
}

const WIDE_JSON = `(SELECT coalesce(jsonb_agg(jsonb_build_object('metric_id', metric_id, 'dimension', dimension,
                       'bucket', bucket, 'reason', reason, 'distinct_values', distinct_values)), '[]'::jsonb) FROM wide)`;

/**
 * The body of CTE `counted(metric_id, bucket, properties, <figure>, is_delta)` over CTE `marked(metric_id,
 * bucket, has_pending)`, shared by the dimension writers of a batch: for an hour with pending rows, each
 * row's carried values when taken against the generation CTE `generationCte` names, otherwise the event's
 * properties read by primary key (rows written before migration 0012, or while a key was being
 * registered or removed); for an hour without, its events, recounted. `figure` is what each writer adds
 * up: the value, or the profile (then events without one are left out).
 */
export function countedFromMarked(figure: 'value' | 'profile_id', generationCte: string): string {
  const withProfile = figure === 'profile_id' ? 'AND p.profile_id IS NOT NULL' : '';
  const eventWithProfile = figure === 'profile_id' ? 'AND e.profile_id IS NOT NULL' : '';
  return `
       SELECT p.metric_id, p.bucket, p.dimension_values AS properties, p.${figure}, true AS is_delta
       FROM marked m
       CROSS JOIN LATERAL (
         SELECT p.metric_id, p.bucket, p.${figure}, p.dimension_values FROM klaviyo_aggregate_pending p
         WHERE p.account_id = $1 AND p.metric_id = m.metric_id AND p.bucket = m.bucket ${withProfile}
           AND p.dimension_values IS NOT NULL AND p.dimension_generation = (SELECT generation FROM ${generationCte})
         OFFSET 0
       ) p
       WHERE m.has_pending
       UNION ALL
       SELECT p.metric_id, p.bucket, e.properties, p.${figure}, true AS is_delta
       FROM marked m
       -- The hour's pending rows, then one primary-key probe per pending row (OFFSET 0 keeps both
       -- probes): without statistics on the pending table (empty between batches) the planner once
       -- joined all of the account's pending rows with the events before it joined the marked hours.
       CROSS JOIN LATERAL (
         SELECT p.metric_id, p.bucket, p.event_id, p."timestamp", p.${figure} FROM klaviyo_aggregate_pending p
         WHERE p.account_id = $1 AND p.metric_id = m.metric_id AND p.bucket = m.bucket ${withProfile}
           AND (p.dimension_values IS NULL OR p.dimension_generation IS DISTINCT FROM (SELECT generation FROM ${generationCte}))
         OFFSET 0
       ) p
       CROSS JOIN LATERAL (
         SELECT e.properties FROM klaviyo_events e
         WHERE e.account_id = $1 AND e.id = p.event_id AND e."timestamp" = p."timestamp"
         OFFSET 0
       ) e
       WHERE m.has_pending
       UNION ALL
       SELECT m.metric_id, m.bucket, e.properties, e.${figure}, false
       FROM marked m
       -- One index range scan per recounted hour (OFFSET 0 keeps it from being flattened): as a join,
       -- with the events' properties wanted, the planner read the metrics' events against every hour
       -- (docs/breakdowns.md).
       CROSS JOIN LATERAL (
         SELECT e.properties, e.${figure} FROM klaviyo_events e
         WHERE e.account_id = $1 AND e.metric_id = m.metric_id AND e."timestamp" >= m.bucket AND e."timestamp" < m.bucket + interval '1 hour'
           ${eventWithProfile}
         OFFSET 0
       ) e
       WHERE NOT m.has_pending`;
}

/**
 * The batch's dimension rollups for the hours whose marks it took, in one statement: an hour with
 * pending rows adds their events (the values the pending rows carry, or, for a row whose values were
 * taken against another generation of the registry, the event's properties read by primary key;
 * migrations/0012_ingest_bookkeeping.sql), an hour without is
 * recounted from its raw events and loses the rows its events no longer give. Pairs over the limits
 * are recorded as fallbacks (a second statement, only when there are some).
 * Must run after the marks are taken and before the statement that takes their pending rows.
 * `maxValuesPerHour`: the cardinality limit (docs/breakdowns.md). For an hour with pending rows the
 * check sees the values of this batch, so a key whose values trickle into an hour over many batches
 * is caught by the next rebuild or backfill of that hour instead (both see whole hours).
 */
export async function applyDimensionBatch(
  tx: Db,
  accountId: string,
  buckets: readonly HourBucket[],
  maxValuesPerHour: number,
): Promise<DimensionWrite> {
  if (buckets.length === 0) return { rowsChanged: 0, fallbacks: [] };
  const rows = await tx.query<WriteRow>(
    `WITH marked AS MATERIALIZED (
       SELECT metric_id, bucket,
              EXISTS (SELECT 1 FROM klaviyo_aggregate_pending p
                       WHERE p.account_id = $1 AND p.metric_id = t.metric_id AND p.bucket = t.bucket) AS has_pending
       FROM jsonb_to_recordset($2::jsonb) AS t(metric_id text, bucket timestamptz)
     ), generation AS MATERIALIZED (
       SELECT generation FROM klaviyo_rollup_dimension_generation
     ), counted AS MATERIALIZED (${countedFromMarked('value', 'generation')}
     ), ${figuresCtes('SELECT dimension FROM klaviyo_rollup_dimensions', true)},
     previous AS MATERIALIZED (
       -- What the recounted hours hold now.
       SELECT r.metric_id, r.dimension, r.bucket, r.dimension_value, r.event_count, r.sum_value
       FROM marked m
       JOIN (SELECT dimension FROM tracked UNION ALL SELECT '${TOTALS_KEY}') t ON true
       JOIN klaviyo_dimension_rollups r
         ON r.account_id = $1 AND r.metric_id = m.metric_id AND r.dimension = t.dimension AND r.bucket = m.bucket
       WHERE NOT m.has_pending
     ), ${WRITE_FIGURES},
     ${DELETE_EMPTIED}
     SELECT (SELECT count(*) FROM added) + (SELECT count(*) FROM recounted) + (SELECT count(*) FROM emptied) AS changed,
            ${WIDE_JSON} AS wide`,
    [
      accountId,
      JSON.stringify(buckets.map((b) => ({ metric_id: b.metricId, bucket: b.bucket.toISOString() }))),
      maxValuesPerHour,
    ],
  );
  return finishWrite(tx, accountId, rows[0]);
}

/**
 * Recomputes the dimension rollups of a time range (whole UTC hours) from the events the rollups have
 * counted: every event of the range without a pending row. For all registered dimensions, or only
 * `dimensions` (a backfill); for all metrics or one. Rows the events no longer give are removed.
 */
export async function rebuildDimensionRange(
  tx: Db,
  accountId: string,
  range: { from: Date; to: Date; metricId?: string; dimensions?: readonly string[] },
  maxValuesPerHour: number,
): Promise<DimensionWrite> {
  const params: SqlParam[] = [accountId, range.from.toISOString(), maxValuesPerHour, range.to.toISOString()];
  const { metricFilter, rowMetricFilter: rollupMetricFilter, dimensionFilter } = rangeFilters(params, range);
  // A backfill of some keys leaves the totals alone; a rebuild recounts them with every key.
  const withTotals = range.dimensions === undefined;
  const figures = figuresCtes(`SELECT dimension FROM klaviyo_rollup_dimensions ${dimensionFilter}`, withTotals);
  const rows = await tx.query<WriteRow>(
    `WITH counted AS MATERIALIZED (
       SELECT e.metric_id, date_trunc('hour', e."timestamp", 'UTC') AS bucket, e.properties, e.value, false AS is_delta
       FROM klaviyo_events e
       WHERE e.account_id = $1 AND e."timestamp" >= $2::timestamptz AND e."timestamp" < $4::timestamptz ${metricFilter}
         AND NOT EXISTS (SELECT 1 FROM klaviyo_aggregate_pending p
                         WHERE p.account_id = $1 AND p.metric_id = e.metric_id AND p.bucket = date_trunc('hour', e."timestamp", 'UTC')
                           AND p.event_id = e.id AND p."timestamp" = e."timestamp")
     ), ${figures},
     previous AS MATERIALIZED (
       SELECT r.metric_id, r.dimension, r.bucket, r.dimension_value, r.event_count, r.sum_value
       FROM klaviyo_dimension_rollups r
       JOIN (SELECT dimension FROM tracked ${withTotals ? `UNION ALL SELECT '${TOTALS_KEY}'` : ''}) t ON r.dimension = t.dimension
       WHERE r.account_id = $1 AND r.bucket >= $2::timestamptz AND r.bucket < $4::timestamptz ${rollupMetricFilter}
     ), ${WRITE_FIGURES},
     ${DELETE_EMPTIED}
     SELECT (SELECT count(*) FROM added) + (SELECT count(*) FROM recounted) + (SELECT count(*) FROM emptied)
              + (SELECT count(*) FROM daily) + (SELECT count(*) FROM zone_daily) AS changed,
            ${WIDE_JSON} AS wide`,
    params,
  );
  return finishWrite(tx, accountId, rows[0]);
}

/**
 * The days a reset covers: UTC's in klaviyo_dimension_daily_rollups, or a registered zone's in
 * klaviyo_dimension_zone_daily_rollups (migrations/0016).
 */
type DayTier = { readonly kind: 'utc' } | { readonly kind: 'zones'; readonly zones?: readonly string[] };

/**
 * Sets the daily rows of every day that meets [from, to) to the sum of the day's hourly rows, whatever
 * they held: a rebuild's last dimension step, so that it repairs daily rows damaged on their own as it
 * repairs hours (the incremental deltas keep a correct pair correct, but cannot repair one), and the
 * backfill of a newly registered zone. Without `tier`, UTC's days and every registered zone's.
 */
export async function resetDailyDimensionRange(
  tx: Db,
  accountId: string,
  range: { from: Date; to: Date; metricId?: string; dimensions?: readonly string[] },
  tier?: DayTier,
): Promise<number> {
  if (tier === undefined) {
    return (
      (await resetDailyDimensionRange(tx, accountId, range, { kind: 'utc' })) +
      (await resetDailyDimensionRange(tx, accountId, range, { kind: 'zones' }))
    );
  }
  const params: SqlParam[] = [accountId, range.from.toISOString(), range.to.toISOString()];
  let filters = '';
  let dailyFilters = '';
  if (range.metricId) {
    params.push(range.metricId);
    filters += ` AND r.metric_id = $${params.length}`;
    dailyFilters += ` AND y.metric_id = $${params.length}`;
  }
  if (range.dimensions) {
    params.push(textArray(range.dimensions));
    filters += ` AND r.dimension = ANY($${params.length}::text[])`;
    dailyFilters += ` AND y.dimension = ANY($${params.length}::text[])`;
  }
  let zones = `SELECT 'UTC'::text AS zone`;
  if (tier.kind === 'zones') {
    zones = 'SELECT zone FROM klaviyo_rollup_day_zones';
    if (tier.zones) {
      params.push(textArray(tier.zones));
      zones += ` WHERE zone = ANY($${params.length}::text[])`;
    }
  }
  const zoned = tier.kind === 'zones';
  const table = zoned ? 'klaviyo_dimension_zone_daily_rollups' : 'klaviyo_dimension_daily_rollups';
  const zoneColumn = zoned ? 'zone, ' : '';
  const rows = await tx.query<{ n: string }>(
    `WITH bounds AS MATERIALIZED (
       -- The zone's days that meet the range, whole: from the start of the first to the start of the
       -- day after the last (26 hours past a day's start always lies in the next day).
       SELECT zone, date_trunc('day', $2::timestamptz, zone) AS lo,
              date_trunc('day', date_trunc('day', $3::timestamptz - interval '1 microsecond', zone) + interval '26 hours', zone) AS hi
       FROM (${zones}) z
     ), wanted AS MATERIALIZED (
       SELECT r.metric_id, b.zone, r.dimension, date_trunc('day', r.bucket, b.zone) AS day, r.dimension_value,
              sum(r.event_count) AS event_count, sum(r.sum_value) AS sum_value
       FROM bounds b
       JOIN klaviyo_dimension_rollups r ON r.account_id = $1 AND r.bucket >= b.lo AND r.bucket < b.hi ${filters}
       GROUP BY 1, 2, 3, 4, 5
     ), upserted AS (
       INSERT INTO ${table} AS y
         (account_id, metric_id, ${zoneColumn}dimension, day, dimension_value, event_count, sum_value)
       SELECT $1::text, metric_id, ${zoneColumn}dimension, day, dimension_value, event_count, sum_value FROM wanted
       ORDER BY metric_id, ${zoneColumn}dimension, day, dimension_value
       ON CONFLICT (account_id, metric_id, ${zoneColumn}dimension, day, dimension_value) DO UPDATE SET
         event_count = excluded.event_count, sum_value = excluded.sum_value
       WHERE (y.event_count, y.sum_value) IS DISTINCT FROM (excluded.event_count, excluded.sum_value)
       RETURNING 1
     ), removed AS (
       DELETE FROM ${table} y
       USING bounds b
       WHERE y.account_id = $1 ${zoned ? 'AND y.zone = b.zone' : ''} AND y.day >= b.lo AND y.day < b.hi ${dailyFilters}
         AND NOT EXISTS (SELECT 1 FROM wanted w
                         WHERE w.metric_id = y.metric_id AND w.zone = b.zone AND w.dimension = y.dimension AND w.day = y.day
                           AND w.dimension_value = y.dimension_value)
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM upserted) + (SELECT count(*) FROM removed) AS n`,
    params,
  );
  return Number(rows[0]?.n ?? 0);
}

async function finishWrite(tx: Db, accountId: string, row: WriteRow | undefined): Promise<DimensionWrite> {
  const fallbacks = parseWide(row?.wide);
  if (fallbacks.length > 0) await recordFallbacks(tx, accountId, fallbacks);
  return { rowsChanged: Number(row?.changed ?? 0), fallbacks };
}

/**
 * Leaves each pair to raw events: records why, and removes its rollups, in the writer's transaction,
 * so a reader's statement sees either the rows and no fallback or the fallback and no rows.
 */
async function recordFallbacks(tx: Db, accountId: string, fallbacks: readonly DimensionFallback[]): Promise<void> {
  await tx.query(
    `WITH wide AS (
       SELECT metric_id, dimension, reason, bucket, distinct_values
       FROM jsonb_to_recordset($2::jsonb) AS w(metric_id text, dimension text, reason text, bucket timestamptz, distinct_values integer)
     ), recorded AS (
       INSERT INTO klaviyo_dimension_fallbacks (account_id, metric_id, dimension, reason, bucket, distinct_values)
       SELECT $1::text, metric_id, dimension, reason, bucket, distinct_values FROM wide
       ON CONFLICT (account_id, metric_id, dimension) DO NOTHING
       RETURNING 1
     ), cleared_days AS (
       DELETE FROM klaviyo_dimension_daily_rollups r USING wide w
        WHERE r.account_id = $1 AND r.metric_id = w.metric_id AND r.dimension = w.dimension
       RETURNING 1
     ), cleared_zone_days AS (
       DELETE FROM klaviyo_dimension_zone_daily_rollups r USING wide w
        WHERE r.account_id = $1 AND r.metric_id = w.metric_id AND r.dimension = w.dimension
       RETURNING 1
     ), cleared_profiles AS (
       DELETE FROM klaviyo_dimension_profiles r USING wide w
        WHERE r.account_id = $1 AND r.metric_id = w.metric_id AND r.dimension = w.dimension
       RETURNING 1
     )
     DELETE FROM klaviyo_dimension_rollups r USING wide w
      WHERE r.account_id = $1 AND r.metric_id = w.metric_id AND r.dimension = w.dimension`,
    [
      accountId,
      JSON.stringify(
        fallbacks.map((f) => ({
          metric_id: f.metricId,
          dimension: f.dimension,
          reason: f.reason,
          bucket: f.bucket.toISOString(),
          distinct_values: f.distinctValues,
        })),
      ),
    ],
  );
}

/**
 * The filters of a range rebuild on one metric and on some keys, as SQL on events `e`, stored rows `r`
 * and a registry's `dimension`; their values are pushed onto `params`.
 */
export function rangeFilters(
  params: SqlParam[],
  range: { metricId?: string; dimensions?: readonly string[] },
): { metricFilter: string; rowMetricFilter: string; dimensionFilter: string } {
  let metricFilter = '';
  let rowMetricFilter = '';
  if (range.metricId) {
    params.push(range.metricId);
    metricFilter = `AND e.metric_id = $${params.length}`;
    rowMetricFilter = `AND r.metric_id = $${params.length}`;
  }
  let dimensionFilter = '';
  if (range.dimensions) {
    params.push(textArray(range.dimensions));
    dimensionFilter = `WHERE dimension = ANY($${params.length}::text[])`;
  }
  return { metricFilter, rowMetricFilter, dimensionFilter };
}

/**
 * The registries of rolled-up keys: `klaviyo_rollup_dimensions` (counts and sums, the operator's
 * ROLLUP_DIMENSIONS) and `klaviyo_rollup_unique_dimensions` (distinct profiles, ROLLUP_UNIQUE_DIMENSIONS;
 * each also a rolled-up key), and of the zones with days of their own, `klaviyo_rollup_day_zones`
 * (ROLLUP_DAY_ZONES). They are configuration shared by every account (reference tables on Citus):
 * these three statements are the only ones here that do not name an account; the backfill runs per
 * account.
 */
export type KeyRegistry = 'klaviyo_rollup_dimensions' | 'klaviyo_rollup_unique_dimensions' | 'klaviyo_rollup_day_zones';

const REGISTRY_KEY: Readonly<Record<KeyRegistry, string>> = {
  klaviyo_rollup_dimensions: 'dimension',
  klaviyo_rollup_unique_dimensions: 'dimension',
  klaviyo_rollup_day_zones: 'zone',
};

export function textArray(values: readonly string[]): string {
  return `{${values.map((d) => JSON.stringify(d)).join(',')}}`;
}

/**
 * Registers keys. A key new to the registry is ready at once when no event is stored; otherwise it
 * waits for its backfill. Returns the keys added.
 */
export async function registerKeys(db: Db, registry: KeyRegistry, keys: readonly string[]): Promise<string[]> {
  if (keys.length === 0) return [];
  const column = REGISTRY_KEY[registry];
  const rows = await db.query<{ key: string }>(
    `INSERT INTO ${registry} (${column}, ready_at)
     SELECT d, CASE WHEN EXISTS (SELECT 1 FROM klaviyo_events) THEN NULL ELSE now() END
     FROM unnest($1::text[]) AS d
     ON CONFLICT (${column}) DO NOTHING
     RETURNING ${column} AS key`,
    [textArray(keys)],
  );
  return rows.map((r) => r.key);
}

/** Registered keys whose rows do not cover the events stored before they were registered. */
export async function keysAwaitingBackfill(db: Db, registry: KeyRegistry): Promise<string[]> {
  const column = REGISTRY_KEY[registry];
  const rows = await db.query<{ key: string }>(
    `SELECT ${column} AS key FROM ${registry} WHERE ready_at IS NULL ORDER BY ${column}`,
  );
  return rows.map((r) => r.key);
}

/**
 * Unregisters the zones not in `zones` (ROLLUP_DAY_ZONES no longer lists them): from the next statement
 * on, the writers leave their days alone. Returns the zones removed; their rows go with deleteZoneDays.
 */
export async function unregisterDayZonesExcept(db: Db, zones: readonly string[]): Promise<string[]> {
  const rows = await db.query<{ zone: string }>(
    `DELETE FROM klaviyo_rollup_day_zones WHERE zone <> ALL($1::text[]) RETURNING zone`,
    [textArray(zones)],
  );
  return rows.map((r) => r.zone).sort();
}

/** Removes an account's daily rows of unregistered zones; under the account's aggregation lock. */
export async function deleteZoneDays(tx: Db, accountId: string, zones: readonly string[]): Promise<number> {
  const rows = await tx.query<{ n: string }>(
    `WITH gone AS (
       DELETE FROM klaviyo_dimension_zone_daily_rollups WHERE account_id = $1 AND zone = ANY($2::text[]) RETURNING 1
     )
     SELECT count(*) AS n FROM gone`,
    [accountId, textArray(zones)],
  );
  return Number(rows[0]?.n ?? 0);
}

/** Declares the keys' rows complete: readers use them from the next statement on. */
export async function markKeysReady(tx: Db, registry: KeyRegistry, keys: readonly string[]): Promise<void> {
  await tx.query(`UPDATE ${registry} SET ready_at = now() WHERE ${REGISTRY_KEY[registry]} = ANY($1::text[])`, [
    textArray(keys),
  ]);
}
