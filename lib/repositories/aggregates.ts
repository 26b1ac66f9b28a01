import type { Db } from '../db/port';
import type { HourBucket } from './hourBucket';
import { addLookbacks, profileHourSyncCtes, sumLookbacks, ZERO_LOOKBACKS } from './profileHours';

export type { HourBucket } from './hourBucket';

/**
 * Hourly rollups (klaviyo_aggregated_metrics, granularity 'hour') and the dirty marks that say which
 * (metric, UTC hour) buckets are stale (klaviyo_aggregate_dirty).
 *
 * Contract with readers: a 'hour' row holds the exact figures of its metric and UTC hour whenever
 * that hour is not marked dirty; a marked hour may be stale and is recomputed from raw events by
 * whoever reads it (readHourlySeries does). Hours without events have no row. A mark is removed in
 * the same transaction that writes its rollup, so one statement reading both tables sees a consistent
 * pair.
 */

export interface RecomputeResult {
  /** Buckets brought up to date (from pending rows or from raw events). */
  readonly bucketsRecomputed: number;
  /** Of those, the buckets recomputed from all their raw events (no pending rows to add). */
  readonly bucketsFromRaw: number;
  /** Rollup rows inserted or changed. */
  readonly rowsWritten: number;
  /** Rollup rows removed because their hour no longer has events. */
  readonly rowsDeleted: number;
  /** Events read to compute them: pending rows taken, plus every event of the buckets recomputed from raw. */
  readonly eventsScanned: number;
}

export interface HourlyFigures {
  readonly bucket: Date;
  readonly eventCount: number;
  /** Decimal text: exact. */
  readonly sumValue: string;
  readonly minValue: string | null;
  readonly maxValue: string | null;
  readonly uniqueProfiles: number;
}

export interface DirtyBacklog {
  readonly bucketsWaiting: number;
  /** Age of the oldest waiting mark; 0 when nothing waits. */
  readonly oldestAgeSeconds: number;
}

/**
 * Only one aggregator writes an account's rollups at a time: the lock is the row lock of the
 * account's klaviyo_accounts row (ensureAccount creates it), so accounts aggregate in parallel, and a
 * row lock behaves the same on Citus, where the row lives on the account's shard. FOR NO KEY UPDATE:
 * it conflicts with another writer's lock but not with the key-share locks a foreign key would take.
 * Transaction-scoped: released by the commit (or the rollback) that ends the batch, so a crashed run
 * never leaves it held. False when another transaction holds it (SKIP LOCKED: no wait), or when the
 * account has no row.
 */
export async function tryLockAggregation(tx: Db, accountId: string): Promise<boolean> {
  const rows = await tx.query<{ account_id: string }>(
    `SELECT account_id FROM klaviyo_accounts WHERE account_id = $1 FOR NO KEY UPDATE SKIP LOCKED`,
    [accountId],
  );
  return rows.length === 1;
}

/**
 * For the rest of the batch's transaction, prepared statements use their generic plan: planned once
 * per connection instead of at every run, the foreign-key checks' internal queries included (each
 * row a batch inserts into a rollup table checks its metric). The connection's default is custom plans
 * (lib/db/postgres.ts), right for the time-range reads; the batch's statements do not depend on their
 * parameters for their plan: their shapes are fixed by MATERIALIZED CTEs and LATERAL probes, and the
 * buckets arrive as one JSON parameter whose row count no plan knows. Only the postgres.js driver
 * prepares statements; the Data API plans every statement anyway, so it is spared the round trip.
 */
export async function planBatchStatementsOnce(tx: Db): Promise<void> {
  if (tx.driver !== 'postgres') return;
  await tx.query(`SET LOCAL plan_cache_mode = force_generic_plan`);
}

/** A rebuild waits for the running batch instead of giving up: it is an operator's explicit request. */
export async function waitLockAggregation(tx: Db, accountId: string): Promise<void> {
  const rows = await tx.query<{ account_id: string }>(
    `SELECT account_id FROM klaviyo_accounts WHERE account_id = $1 FOR NO KEY UPDATE`,
    [accountId],
  );
  if (rows.length !== 1)
    throw new Error('waitLockAggregation: the account has no klaviyo_accounts row (ensureAccount)');
}

interface BucketRow extends Record<string, unknown> {
  metric_id: string;
  bucket: Date;
}

/**
 * Removes up to `limit` dirty marks, oldest first, and returns them. Marks row-locked by an ingest
 * transaction that has not committed yet are skipped: their events are not visible yet, and the mark
 * stays for the next run. Must run in the transaction that then recomputes the returned buckets, as a
 * statement of its own that ends before the recomputation starts (see lib/app/aggregation.ts).
 */
export async function takeDirtyBuckets(tx: Db, accountId: string, limit: number): Promise<HourBucket[]> {
  // The marks to take are chosen once (a MATERIALIZED CTE): as an IN (subquery) the planner may
  // rescan the subquery per row, and marks written together share first_marked_at, so each rescan
  // could pick another `limit` of them. The key breaks the ties.
  const rows = await tx.query<BucketRow>(
    `WITH chosen AS MATERIALIZED (
       SELECT metric_id, bucket FROM klaviyo_aggregate_dirty
       WHERE account_id = $1
       ORDER BY first_marked_at, metric_id, bucket
       LIMIT $2
       FOR UPDATE SKIP LOCKED
     )
     DELETE FROM klaviyo_aggregate_dirty d
     USING chosen c
     WHERE d.account_id = $1 AND d.metric_id = c.metric_id AND d.bucket = c.bucket
     RETURNING d.metric_id, d.bucket`,
    [accountId, limit],
  );
  return rows.map((r) => ({ metricId: r.metric_id, bucket: r.bucket }));
}

/** The rebuild's counterpart of takeDirtyBuckets: every unlocked mark of a time range (and metric). */
export async function takeDirtyBucketsInRange(
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
  const rows = await tx.query<{ taken: string }>(
    `WITH taken AS (
       DELETE FROM klaviyo_aggregate_dirty
       WHERE account_id = $1 AND (metric_id, bucket) IN (
         SELECT metric_id, bucket FROM klaviyo_aggregate_dirty
         WHERE account_id = $1 AND bucket >= $2::timestamptz AND bucket < $3::timestamptz ${range.metricId ? 'AND metric_id = $4' : ''}
         FOR UPDATE SKIP LOCKED)
       RETURNING 1
     )
     SELECT count(*) AS taken FROM taken`,
    params,
  );
  return Number(rows[0]?.taken ?? 0);
}

// What an hour's rollup holds, over raw events `e`: one definition for the aggregator's recounts,
// rebuilds and readers, so that a stored hour and a recomputed one cannot disagree.
const HOUR_FIGURES = `count(*) AS event_count,
  coalesce(sum(e.value), 0) AS sum_value,
  min(e.value) AS min_value,
  max(e.value) AS max_value,
  count(DISTINCT e.profile_id) AS unique_profiles`;

/** One (metric, UTC hour) recounted from its raw events, through the covering index. */
const recountHour = (metric: string, bucket: string): string => `SELECT ${HOUR_FIGURES}
  FROM klaviyo_events e
  WHERE e.account_id = $1 AND e.metric_id = ${metric} AND e."timestamp" >= ${bucket} AND e."timestamp" < ${bucket} + interval '1 hour'`;

// The upsert writes only what changed: a recomputation that finds the same figures (and has no
// lookback adjustment) leaves the row, its updated_at and the table's pages as they were. `computed`
// carries each hour's lookback adjustment (lib/repositories/profileHours.ts): added to what is
// stored; a new row starts from zero.
const UPSERT_HOURS = `
  INSERT INTO klaviyo_aggregated_metrics AS a
    (account_id, metric_id, granularity, bucket, event_count, sum_value, min_value, max_value, unique_profiles,
     new_profiles_by_lookback)
  SELECT $1::text, metric_id, 'hour', bucket, event_count, sum_value, min_value, max_value, unique_profiles, lookbacks
  FROM computed
  WHERE event_count > 0
  ORDER BY metric_id, bucket
  ON CONFLICT (account_id, metric_id, granularity, bucket) DO UPDATE SET
    event_count = excluded.event_count,
    sum_value = excluded.sum_value,
    min_value = excluded.min_value,
    max_value = excluded.max_value,
    unique_profiles = excluded.unique_profiles,
    new_profiles_by_lookback = ${addLookbacks('a.new_profiles_by_lookback', 'excluded.new_profiles_by_lookback')},
    updated_at = now()
  WHERE (a.event_count, a.sum_value, a.min_value, a.max_value, a.unique_profiles)
        IS DISTINCT FROM (excluded.event_count, excluded.sum_value, excluded.min_value, excluded.max_value, excluded.unique_profiles)
     OR excluded.new_profiles_by_lookback <> ${ZERO_LOOKBACKS}
  RETURNING 1`;

interface RecomputeRow extends Record<string, unknown> {
  recomputed: string;
  written: string;
  deleted: string;
  scanned: string;
  from_raw?: string;
}

function recomputeResult(row: RecomputeRow | undefined): RecomputeResult {
  return {
    bucketsRecomputed: Number(row?.recomputed ?? 0),
    bucketsFromRaw: Number(row?.from_raw ?? row?.recomputed ?? 0),
    rowsWritten: Number(row?.written ?? 0),
    rowsDeleted: Number(row?.deleted ?? 0),
    eventsScanned: Number(row?.scanned ?? 0),
  };
}

/**
 * Brings the given (metric, hour) buckets, whose dirty marks the caller has just taken, up to date in
 * one statement (one snapshot):
 *   - a bucket with pending rows: takes ALL of them (DELETE ... RETURNING) and adds their figures to
 *     the stored row: count and sum added, min / max by least / greatest (which ignore NULL, as min()
 *     and max() do), and the profiles new to the hour: the profile-hours the same statement inserts for
 *     the taken rows (profileHourSyncCtes: the table holds one per profile with a counted event in
 *     the hour). In this snapshot every visible event of the bucket is either among
 *     the taken rows or already counted (its pending row was taken by a committed batch, or a rebuild
 *     counted it and removed its row in one snapshot), and every taken row's event is visible (both
 *     commit together), so the deltas are exact.
 *     Adding is exact only because events are never updated or deleted: ingest inserts them ON
 *     CONFLICT DO NOTHING, so a counted event never changes or goes away.
 *   - a bucket without pending rows (its events were counted by a rebuild that left an ingest's mark,
 *     or they were written by a path that marks without pending rows, such as a COPY followed by a
 *     rebuild): recomputed from raw events as a whole, through the covering index; an hour left
 *     without events loses its row. Any writer of events that does not write pending rows must leave
 *     every hour it touched to a rebuild (or to this path) before ingest writes there again: pending
 *     rows are added to what is stored, and cannot know about events nobody counted.
 * Every hour the profile-hour sync adjusts also adds its lookback change, whether it is one of the
 * buckets or an hour after them whose profiles it re-linked, so each rollup row is written once. The
 * sync is part of this statement rather than one before it: a statement less, and no round trip of
 * the adjustments through klaviyo_aggregate_adjustments (which only the rebuild still uses).
 * The cost of the first kind follows the new events, not the hour's size.
 */
export async function recomputeHourBuckets(
  tx: Db,
  accountId: string,
  buckets: readonly HourBucket[],
): Promise<RecomputeResult> {
  if (buckets.length === 0) return recomputeResult(undefined);
  const sync = profileHourSyncCtes(accountId, { kind: 'marked', buckets });
  const rows = await tx.query<RecomputeRow>(
    `WITH ${sync.sql},
     taken AS (
       DELETE FROM klaviyo_aggregate_pending p
       USING marked m
       WHERE m.has_pending AND p.account_id = $1 AND p.metric_id = m.metric_id AND p.bucket = m.bucket
       RETURNING p.metric_id, p.bucket, p.value
     ), rollup_hours AS MATERIALIZED (
       -- Everything the batch knows about each hour whose rollup it writes, brought together by
       -- grouping, not by joins: the planner estimates a DELETE ... RETURNING of a table that is empty
       -- between batches at one row, and once joined two of them as a nested loop of 5,000 x 5,000
       -- rows (3.4 s at 10M).
       SELECT metric_id, bucket, bool_or(is_marked) AS is_marked,
              sum(events) AS event_count, coalesce(sum(value), 0) AS sum_value, min(value) AS min_value,
              max(value) AS max_value, sum(new_profiles) AS new_profiles, ${sumLookbacks('lookbacks')} AS lookbacks
       FROM (SELECT metric_id, bucket, true AS is_marked, 0 AS events, NULL::numeric AS value, 0 AS new_profiles,
                    NULL::integer[] AS lookbacks
             FROM marked
             UNION ALL
             SELECT metric_id, bucket, false, 1, value, 0, NULL FROM taken
             UNION ALL
             SELECT metric_id, bucket, false, 0, NULL, new_profiles, lookbacks FROM adjustments) known
       GROUP BY metric_id, bucket
     ), summed AS (
       -- Marked hours with pending rows: their figures are added to the stored row.
       INSERT INTO klaviyo_aggregated_metrics AS a
         (account_id, metric_id, granularity, bucket, event_count, sum_value, min_value, max_value, unique_profiles,
          new_profiles_by_lookback)
       SELECT $1::text, metric_id, 'hour', bucket, event_count, sum_value, min_value, max_value, new_profiles, lookbacks
       FROM rollup_hours
       WHERE is_marked AND event_count > 0
       ORDER BY metric_id, bucket
       ON CONFLICT (account_id, metric_id, granularity, bucket) DO UPDATE SET
         event_count = a.event_count + excluded.event_count,
         sum_value = a.sum_value + excluded.sum_value,
         min_value = least(a.min_value, excluded.min_value),
         max_value = greatest(a.max_value, excluded.max_value),
         unique_profiles = a.unique_profiles + excluded.unique_profiles,
         new_profiles_by_lookback = ${addLookbacks('a.new_profiles_by_lookback', 'excluded.new_profiles_by_lookback')},
         updated_at = now()
       RETURNING 1
     ), computed AS (
       -- Marked hours without pending rows: recounted from raw events.
       SELECT h.metric_id, h.bucket, s.event_count, s.sum_value, s.min_value, s.max_value, s.unique_profiles, h.lookbacks
       FROM rollup_hours h
       CROSS JOIN LATERAL (${recountHour('h.metric_id', 'h.bucket')}) s
       WHERE h.is_marked AND h.event_count = 0
     ), upserted AS (${UPSERT_HOURS}
     ), emptied AS (
       DELETE FROM klaviyo_aggregated_metrics a
       USING computed c
       WHERE c.event_count = 0
         AND a.account_id = $1 AND a.metric_id = c.metric_id AND a.granularity = 'hour' AND a.bucket = c.bucket
       RETURNING 1
     ), outside AS (
       -- Hours outside the batch whose profiles' previous hour moved: only their lookbacks change.
       UPDATE klaviyo_aggregated_metrics a
       SET new_profiles_by_lookback = ${addLookbacks('a.new_profiles_by_lookback', 'h.lookbacks')}, updated_at = now()
       FROM rollup_hours h
       WHERE NOT h.is_marked AND a.account_id = $1 AND a.metric_id = h.metric_id AND a.granularity = 'hour'
         AND a.bucket = h.bucket
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM marked) AS recomputed,
            (SELECT count(*) FROM rollup_hours WHERE is_marked AND event_count = 0) AS from_raw,
            (SELECT count(*) FROM summed) + (SELECT count(*) FROM upserted) + (SELECT count(*) FROM outside) AS written,
            (SELECT count(*) FROM emptied) AS deleted,
            (SELECT coalesce(sum(event_count), 0) FROM rollup_hours WHERE is_marked)
              + (SELECT coalesce(sum(event_count), 0) FROM computed) AS scanned`,
    sync.params,
  );
  return recomputeResult(rows[0]);
}

/**
 * Recomputes every hour of a time range (whole UTC hours; `to` exclusive) from raw events, for all
 * metrics or one, in one statement: upserts the hours that have events and deletes the range's rollup
 * rows that have none. Metrics drive the scan so that each one reads its part of the covering index.
 * In the same statement, so in the same snapshot as the events it counts, it removes the range's
 * pending rows: each one it can see belongs to an event it counted (they commit together), and one it
 * cannot see belongs to an event it did not count, which keeps its row and its mark for the next run.
 */
export async function rebuildHourRange(
  tx: Db,
  accountId: string,
  range: { from: Date; to: Date; metricId?: string },
): Promise<RecomputeResult> {
  const params = [
    accountId,
    range.from.toISOString(),
    range.to.toISOString(),
    ...(range.metricId ? [range.metricId] : []),
  ];
  const metricFilter = range.metricId ? 'AND m.id = $4' : '';
  const rollupFilter = range.metricId ? 'AND a.metric_id = $4' : '';
  const pendingFilter = range.metricId ? 'AND p.metric_id = $4' : '';
  const rows = await tx.query<RecomputeRow>(
    `WITH computed AS (
       SELECT m.id AS metric_id,
              date_trunc('hour', e."timestamp", 'UTC') AS bucket,
              ${HOUR_FIGURES},
              -- The rebuild sets its range's lookbacks from the profile-hours afterwards.
              ${ZERO_LOOKBACKS} AS lookbacks
       FROM klaviyo_metrics m
       JOIN klaviyo_events e
         ON e.account_id = $1 AND e.metric_id = m.id
        AND e."timestamp" >= $2::timestamptz AND e."timestamp" < $3::timestamptz
       WHERE m.account_id = $1 ${metricFilter}
       GROUP BY m.id, date_trunc('hour', e."timestamp", 'UTC')
     ), upserted AS (${UPSERT_HOURS}
     ), removed AS (
       DELETE FROM klaviyo_aggregated_metrics a
       WHERE a.account_id = $1 AND a.granularity = 'hour' AND a.bucket >= $2::timestamptz AND a.bucket < $3::timestamptz ${rollupFilter}
         AND NOT EXISTS (SELECT 1 FROM computed c WHERE c.metric_id = a.metric_id AND c.bucket = a.bucket)
       RETURNING 1
     ), counted AS (
       DELETE FROM klaviyo_aggregate_pending p
       WHERE p.account_id = $1 AND p.bucket >= $2::timestamptz AND p.bucket < $3::timestamptz ${pendingFilter}
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM computed) AS recomputed,
            (SELECT count(*) FROM upserted) AS written,
            (SELECT count(*) FROM removed) AS deleted,
            (SELECT count(*) FROM counted) AS pending_cleared,
            (SELECT coalesce(sum(event_count), 0) FROM computed) AS scanned`,
    params,
  );
  return recomputeResult(rows[0]);
}

/** The span a full rebuild must cover: every raw event and every stored hourly row (for a metric). */
export async function aggregationSpan(
  db: Db,
  accountId: string,
  metricId?: string,
): Promise<{ from: Date; to: Date } | null> {
  const rows = await db.query<{ first: Date | null; last: Date | null }>(
    metricId
      ? `SELECT least((SELECT min("timestamp") FROM klaviyo_events WHERE account_id = $1 AND metric_id = $2),
                      (SELECT min(bucket) FROM klaviyo_aggregated_metrics
                        WHERE account_id = $1 AND metric_id = $2 AND granularity = 'hour')) AS first,
                greatest((SELECT max("timestamp") FROM klaviyo_events WHERE account_id = $1 AND metric_id = $2),
                         (SELECT max(bucket) FROM klaviyo_aggregated_metrics
                           WHERE account_id = $1 AND metric_id = $2 AND granularity = 'hour')) AS last`
      : `SELECT least((SELECT min("timestamp") FROM klaviyo_events WHERE account_id = $1),
                      (SELECT min(bucket) FROM klaviyo_aggregated_metrics WHERE account_id = $1 AND granularity = 'hour')) AS first,
                greatest((SELECT max("timestamp") FROM klaviyo_events WHERE account_id = $1),
                         (SELECT max(bucket) FROM klaviyo_aggregated_metrics
                           WHERE account_id = $1 AND granularity = 'hour')) AS last`,
    metricId ? [accountId, metricId] : [accountId],
  );
  const row = rows[0];
  if (!row?.first || !row.last) return null;
  return { from: row.first, to: row.last };
}

/** How far behind an account's rollups are: marks still waiting, and the age of the oldest. */
export async function dirtyBacklog(db: Db, accountId: string): Promise<DirtyBacklog> {
  const rows = await db.query<{ waiting: string; oldest_age: string | null }>(
    `SELECT count(*) AS waiting,
            extract(epoch FROM clock_timestamp() - min(first_marked_at)) AS oldest_age
     FROM klaviyo_aggregate_dirty WHERE account_id = $1`,
    [accountId],
  );
  const row = rows[0];
  const age = row?.oldest_age === null || row?.oldest_age === undefined ? 0 : Number(row.oldest_age);
  return { bucketsWaiting: Number(row?.waiting ?? 0), oldestAgeSeconds: Math.max(0, Math.round(age)) };
}

interface FiguresRow extends Record<string, unknown> {
  bucket: Date;
  event_count: string;
  sum_value: string;
  min_value: string | null;
  max_value: string | null;
  unique_profiles: string;
}

/**
 * The exact hourly figures of one metric over [from, to) (whole UTC hours), ascending, hours without
 * events left out. Stored rollups serve the hours that are not marked dirty; marked hours are
 * recomputed from raw events in the same statement, so the answer is exact for one snapshot even while
 * ingest and the aggregator run.
 */
export async function readHourlySeries(
  db: Db,
  accountId: string,
  query: { metricId: string; from: Date; to: Date },
): Promise<HourlyFigures[]> {
  const rows = await db.query<FiguresRow>(
    `WITH dirty AS (
       SELECT bucket FROM klaviyo_aggregate_dirty
       WHERE account_id = $1 AND metric_id = $2 AND bucket >= $3::timestamptz AND bucket < $4::timestamptz
     ), stored AS (
       SELECT a.bucket, a.event_count, a.sum_value, a.min_value, a.max_value, a.unique_profiles
       FROM klaviyo_aggregated_metrics a
       WHERE a.account_id = $1 AND a.metric_id = $2 AND a.granularity = 'hour'
         AND a.bucket >= $3::timestamptz AND a.bucket < $4::timestamptz
         AND NOT EXISTS (SELECT 1 FROM dirty d WHERE d.bucket = a.bucket)
     ), fresh AS (
       SELECT d.bucket, s.event_count, s.sum_value, s.min_value, s.max_value, s.unique_profiles
       FROM dirty d
       CROSS JOIN LATERAL (${recountHour('$2', 'd.bucket')}) s
       WHERE s.event_count > 0
     )
     SELECT bucket, event_count, sum_value, min_value, max_value, unique_profiles FROM stored
     UNION ALL
     SELECT bucket, event_count, sum_value, min_value, max_value, unique_profiles FROM fresh
     ORDER BY bucket`,
    [accountId, query.metricId, query.from.toISOString(), query.to.toISOString()],
  );
  return rows.map((r) => ({
    bucket: r.bucket,
    eventCount: Number(r.event_count),
    sumValue: String(r.sum_value),
    minValue: r.min_value === null ? null : String(r.min_value),
    maxValue: r.max_value === null ? null : String(r.max_value),
    uniqueProfiles: Number(r.unique_profiles),
  }));
}
