import type { Db, SqlParam } from '../db/port';
import type { HourBucket } from './hourBucket';
import { countedFromMarked, rangeFilters } from './dimensions';

/**
 * Dimension profiles (klaviyo_dimension_profiles, migrations/0011_dimension_unique.sql): per (metric,
 * dimension, UTC hour, value, profile) the number of the profile's events of the hour whose property
 * `dimension` has that value, for the keys registered in klaviyo_rollup_unique_dimensions. They let
 * `unique` by a key, or filtered on it, be counted exactly from rollups (docs/breakdowns.md).
 *
 * Contract with readers, the dimension rollups' own (lib/repositories/dimensions.ts): for an hour that
 * is not marked dirty, a ready key's rows hold exactly the events of the hour that have a profile and
 * a non-empty value, unless the (metric, key) pair has a fallback row (the dimension statement records
 * it first, in the same transaction, and recordFallbacks removes this table's rows of the pair).
 *
 * Writers, all under the aggregation lock and in the same transactions as the dimension rollups:
 *   - applyDimensionProfileBatch: the incremental batch, after the marks are taken and before the
 *     statement that takes their pending rows. It reads the same pending rows as the dimension
 *     statement: none can commit into a taken hour meanwhile (lib/app/aggregation.ts);
 *   - rebuildDimensionProfileRange: a rebuild's range, or a new key's backfill, from the events that
 *     have no pending row (what the stored rollups have counted).
 */

/**
 * From a CTE `counted(metric_id, bucket, properties, profile_id, is_delta)`: the CTEs `tracked`,
 * `figures(metric_id, dimension, bucket, dimension_value, profile_id, event_count, is_delta)` for the
 * tracked keys without a fallback for the metric. The registry holds a handful of keys, so each event
 * is probed for each of them.
 */
const FIGURES = `
  valued AS MATERIALIZED (
    SELECT c.metric_id, t.dimension, c.bucket, c.properties->>t.dimension AS dimension_value, c.profile_id, c.is_delta
    FROM counted c
    CROSS JOIN tracked t
    WHERE coalesce(c.properties->>t.dimension, '') <> ''
      AND NOT EXISTS (SELECT 1 FROM klaviyo_dimension_fallbacks f
                      WHERE f.account_id = $1 AND f.metric_id = c.metric_id AND f.dimension = t.dimension)
  ), figures AS MATERIALIZED (
    SELECT metric_id, dimension, bucket, dimension_value, profile_id, count(*)::integer AS event_count,
           bool_and(is_delta) AS is_delta
    FROM valued
    GROUP BY metric_id, dimension, bucket, dimension_value, profile_id
  )`;

/** Upserts CTE `figures` (added when is_delta, set otherwise) and removes the rows of CTE `previous` they no longer give. */
const WRITE_FIGURES = `
  added AS (
    INSERT INTO klaviyo_dimension_profiles AS r
      (account_id, metric_id, dimension, bucket, dimension_value, profile_id, event_count)
    SELECT $1::text, metric_id, dimension, bucket, dimension_value, profile_id, event_count FROM figures WHERE is_delta
    ORDER BY metric_id, dimension, bucket, dimension_value, profile_id
    ON CONFLICT (account_id, metric_id, dimension, bucket, dimension_value, profile_id) DO UPDATE SET
      event_count = r.event_count + excluded.event_count
    RETURNING 1
  ), recounted AS (
    INSERT INTO klaviyo_dimension_profiles AS r
      (account_id, metric_id, dimension, bucket, dimension_value, profile_id, event_count)
    SELECT $1::text, metric_id, dimension, bucket, dimension_value, profile_id, event_count FROM figures WHERE NOT is_delta
    ORDER BY metric_id, dimension, bucket, dimension_value, profile_id
    ON CONFLICT (account_id, metric_id, dimension, bucket, dimension_value, profile_id) DO UPDATE SET
      event_count = excluded.event_count
    WHERE r.event_count <> excluded.event_count
    RETURNING 1
  ), emptied AS (
    DELETE FROM klaviyo_dimension_profiles r
    USING previous p
    WHERE r.account_id = $1 AND r.metric_id = p.metric_id AND r.dimension = p.dimension AND r.bucket = p.bucket
      AND r.dimension_value = p.dimension_value AND r.profile_id = p.profile_id
      AND NOT EXISTS (SELECT 1 FROM figures f
                      WHERE f.metric_id = p.metric_id AND f.dimension = p.dimension AND f.bucket = p.bucket
                        AND f.dimension_value = p.dimension_value AND f.profile_id = p.profile_id)
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM added) + (SELECT count(*) FROM recounted) + (SELECT count(*) FROM emptied) AS changed`;

/**
 * The batch's dimension profiles for the hours whose marks it took, in one statement: an hour with
 * pending rows adds their events, an hour without is
 * recounted from its raw events and loses the rows they no longer give. Returns the rows changed.
 * Pending rows that carry their keys' values (migration 0012) are added without reading the event.
 */
export async function applyDimensionProfileBatch(
  tx: Db,
  accountId: string,
  buckets: readonly HourBucket[],
): Promise<number> {
  if (buckets.length === 0) return 0;
  const rows = await tx.query<{ changed: string }>(
    `WITH tracked AS MATERIALIZED (
       SELECT dimension FROM klaviyo_rollup_unique_dimensions
     ), marked AS MATERIALIZED (
       SELECT metric_id, bucket,
              EXISTS (SELECT 1 FROM klaviyo_aggregate_pending p
                       WHERE p.account_id = $1 AND p.metric_id = t.metric_id AND p.bucket = t.bucket) AS has_pending
       FROM jsonb_to_recordset($2::jsonb) AS t(metric_id text, bucket timestamptz)
       WHERE EXISTS (SELECT 1 FROM tracked)
     ), carried AS MATERIALIZED (
       -- The generation pending rows' carried values must have been taken against (migration 0012), or
       -- none when a tracked key is not a registered dimension key: ingest carries only those.
       SELECT g.generation FROM klaviyo_rollup_dimension_generation g
       WHERE NOT EXISTS (SELECT 1 FROM tracked t
                          WHERE NOT EXISTS (SELECT 1 FROM klaviyo_rollup_dimensions d WHERE d.dimension = t.dimension))
     ), counted AS MATERIALIZED (${countedFromMarked('profile_id', 'carried')}
     ), ${FIGURES},
     previous AS MATERIALIZED (
       -- What the recounted hours hold now.
       SELECT r.metric_id, r.dimension, r.bucket, r.dimension_value, r.profile_id
       FROM marked m
       JOIN tracked t ON true
       JOIN klaviyo_dimension_profiles r
         ON r.account_id = $1 AND r.metric_id = m.metric_id AND r.dimension = t.dimension AND r.bucket = m.bucket
       WHERE NOT m.has_pending
     ), ${WRITE_FIGURES}`,
    [accountId, JSON.stringify(buckets.map((b) => ({ metric_id: b.metricId, bucket: b.bucket.toISOString() })))],
  );
  return Number(rows[0]?.changed ?? 0);
}

/**
 * Recomputes the dimension profiles of a time range (whole UTC hours) from the events the rollups
 * have counted (every event of the range without a pending row): for every unique key, or only
 * `dimensions` (a backfill); for every metric or one. Rows the events no longer give are removed.
 */
export async function rebuildDimensionProfileRange(
  tx: Db,
  accountId: string,
  range: { from: Date; to: Date; metricId?: string; dimensions?: readonly string[] },
): Promise<number> {
  const params: SqlParam[] = [accountId, range.from.toISOString(), range.to.toISOString()];
  const { metricFilter, rowMetricFilter, dimensionFilter } = rangeFilters(params, range);
  const rows = await tx.query<{ changed: string }>(
    `WITH tracked AS MATERIALIZED (
       SELECT dimension FROM klaviyo_rollup_unique_dimensions ${dimensionFilter}
     ), counted AS MATERIALIZED (
       SELECT e.metric_id, date_trunc('hour', e."timestamp", 'UTC') AS bucket, e.properties, e.profile_id, false AS is_delta
       FROM klaviyo_events e
       WHERE e.account_id = $1 AND e."timestamp" >= $2::timestamptz AND e."timestamp" < $3::timestamptz ${metricFilter}
         AND e.profile_id IS NOT NULL AND EXISTS (SELECT 1 FROM tracked)
         AND NOT EXISTS (SELECT 1 FROM klaviyo_aggregate_pending p
                         WHERE p.account_id = $1 AND p.metric_id = e.metric_id AND p.bucket = date_trunc('hour', e."timestamp", 'UTC')
                           AND p.event_id = e.id AND p."timestamp" = e."timestamp")
     ), ${FIGURES},
     previous AS MATERIALIZED (
       SELECT r.metric_id, r.dimension, r.bucket, r.dimension_value, r.profile_id
       FROM klaviyo_dimension_profiles r
       JOIN tracked t ON r.dimension = t.dimension
       WHERE r.account_id = $1 AND r.bucket >= $2::timestamptz AND r.bucket < $3::timestamptz ${rowMetricFilter}
     ), ${WRITE_FIGURES}`,
    params,
  );
  return Number(rows[0]?.changed ?? 0);
}
