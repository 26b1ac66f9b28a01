import type { Db, SqlParam } from '../db/port';
import { textArray, TOTALS_KEY } from './dimensions';

/** A condition on an event property; a missing (or null) property compares as "". */
export interface DimensionFilter {
  readonly key: string;
  readonly operator: 'equals' | 'any' | 'contains' | 'contains-any' | 'contains-all';
  readonly values: readonly string[];
}

/** Where a plan's figures come from; lib/aggregation/planner.ts says when each is chosen. */
export type SeriesSource = 'rollups' | 'lookback' | 'dimension' | 'events';

/** What the planner (lib/aggregation/planner.ts) decided, and this reader executes in one statement. */
export interface SeriesPlan {
  readonly metricId: string;
  readonly startUs: number;
  readonly endUs: number;
  /** b[0] <= start < ... < end <= b[n], epoch ms; bucket i is [b[i], b[i+1]). */
  readonly boundaries: readonly number[];
  readonly source: SeriesSource;
  /** 'rollups' only: UTC hour starts (ms) that a boundary or the range cuts; read from raw events. */
  readonly cutHours: readonly number[];
  /** 'lookback' only: 0-based numbers of the buckets no lookback can serve; read from raw events. */
  readonly rawBuckets: readonly number[];
  readonly by: readonly string[];
  readonly dimensionFilters: readonly DimensionFilter[];
  readonly needsUnique: boolean;
  /** 'dimension' only: the one property key that `by` and the filters name. */
  readonly dimension: string | null;
  /** 'dimension' only: the values the filters allow (their intersection), null when unfiltered. */
  readonly dimensionValues: readonly string[] | null;
  /**
   * 'dimension' only: the zone whose days `days` are: 'UTC' (klaviyo_dimension_daily_rollups), or the
   * query's zone when it has daily rows of its own (ROLLUP_DAY_ZONES, migrations/0016).
   */
  readonly dayZone: string;
  /** 'dimension' only: the whole days of `dayZone` in the range that daily dimension rows serve. */
  readonly days: readonly DayPart[];
  /** 'dimension' with a zone's days only: the UTC days to use while that zone's rows are being filled. */
  readonly utcDays: readonly DayPart[] | null;
}

/**
 * A whole day [day, end) of the range that a daily dimension row serves (epoch ms; a UTC day, or a
 * zone's day of 23 to 25 hours): its hours [lo, hi) lie whole in bucket `bucket` (1-based,
 * width_bucket's numbering) and make at least half of the day. The day's row goes to that bucket; the
 * reader moves the day's other hours to their own buckets (or to raw events) by subtracting their
 * hourly rows, exact because a daily row is always the sum of its day's hourly rows
 * (lib/repositories/dimensions.ts).
 */
export interface DayPart {
  readonly day: number;
  readonly end: number;
  readonly bucket: number;
  /** The bucket is this day, whole: nothing else is added to its daily rows unless an hour is raw. */
  readonly alone: boolean;
  readonly lo: number;
  readonly hi: number;
}

/**
 * The reads behind POST /api/metric-aggregates. Each plan runs as ONE statement, so it sees one
 * snapshot: the aggregator removes a dirty mark and writes its hour's rollup in one transaction,
 * and a single statement reading both tables therefore always meets a consistent pair (the rollups
 * contract in lib/repositories/aggregates.ts). Ingest marks the hour in the statement that inserts
 * the events, so an event this statement sees has its hour marked (or already rolled up).
 *
 * Buckets are given as boundary instants ($3, a timestamptz[]); width_bucket maps an hour or an
 * event to its 1-based bucket number by binary search.
 *
 * The range bounds travel as text and are cast in SQL ($4::text::timestamptz): a parameter typed
 * timestamptz goes through postgres.js's Date serializer, which drops the microseconds that
 * greater-than(datetime,...) adds (its start is t + 1 µs).
 */
export interface BucketFigures {
  /** 0-based bucket number. */
  readonly bucket: number;
  readonly dimensions: readonly string[];
  readonly count: number;
  readonly sumValue: number;
  /** Meaningful only when the plan asked for it (needsUnique). */
  readonly unique: number;
}

export interface SeriesResult {
  readonly metricExists: boolean;
  readonly buckets: readonly BucketFigures[];
  /** The path that computed the figures: the plan's, or 'events' when a 'dimension' plan found its key not rolled up. */
  readonly servedBy: SeriesPlan['source'];
}

interface SeriesRow extends Record<string, unknown> {
  metric_exists: boolean;
  buckets: unknown;
  served?: boolean;
  zone_ready?: boolean;
}

/** Epoch microseconds as ISO 8601 text with all six fraction digits. */
export function isoMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  const micro = us - ms * 1000;
  return new Date(ms).toISOString().replace('Z', `${String(micro).padStart(3, '0')}Z`);
}

function timestampArray(ms: readonly number[]): string {
  return `{${ms.map((t) => new Date(t).toISOString()).join(',')}}`;
}

const HOUR_US = 3_600_000_000;
const HOUR_MS = 3_600_000;

const METRIC_EXISTS = 'EXISTS (SELECT 1 FROM klaviyo_metrics m WHERE m.account_id = $1 AND m.id = $2)';

/**
 * The answer as one JSON value, a column per figure: [i, n, s, u, [d0...], ...] (bucket numbers,
 * counts, sums, distinct profiles, then each `by` value), in bucket order when `ordered`. The figures
 * travel as comma-separated text and the values as arrays: columns cost less to build than an array
 * per bucket and value, and text less than a JSON array of numerics, since a breakdown over a year has
 * thousands of cells (docs/breakdowns.md, "Where a breakdown's time goes"). A figure the plan does not
 * ask for (`null`: distinct profiles without unique) is left out. toResult reads it.
 */
function figureColumns(
  from: string,
  figures: readonly [string, string, string, string | null],
  values: readonly string[],
  ordered: boolean,
): string {
  const order = ordered ? ` ORDER BY ${figures[0]}` : '';
  const columns = [
    ...figures.map((f) => (f === null ? 'NULL' : `string_agg((${f})::text, ','${order})`)),
    ...values.map((v) => `array_agg(${v}${order})`),
  ];
  return `(SELECT json_build_array(${columns.join(', ')}) FROM ${from})`;
}

/** The end of both fast paths: bucket figures from `stored` and `fresh` (CTEs i, n, s, u) added up. */
const STORED_PLUS_FRESH = `, combined AS (
    SELECT i, sum(n) AS n, sum(s) AS s, sum(u) AS u
      FROM (SELECT i, n, s, u FROM stored UNION ALL SELECT i, n, s, u FROM fresh) x
     GROUP BY i
  )
  SELECT ${METRIC_EXISTS} AS metric_exists,
         ${figureColumns('combined', ['i', 'n', 's', 'u'], [], true)} AS buckets`;

/**
 * Clean hours from rollups, cut hours from raw events. $6 is the start of the UTC hour that holds the
 * range's start, $7 the cut hours. A dirty hour that has pending rows is its rollup plus its pending
 * rows when $8 (count and sum only: distinct profiles do not add), exactly as the aggregator will
 * make it: pending rows are the events its rollup has not counted (both change in one transaction,
 * and the aggregator relies on the same sum). Other dirty hours are recounted from raw events.
 */
const FROM_ROLLUPS = `
  WITH dirty AS MATERIALIZED (
    SELECT d.bucket AS hour,
           $8::boolean AND EXISTS (SELECT 1 FROM klaviyo_aggregate_pending p
                                   WHERE p.account_id = $1 AND p.metric_id = $2 AND p.bucket = d.bucket) AS adds_pending
      FROM klaviyo_aggregate_dirty d
     WHERE d.account_id = $1 AND d.metric_id = $2 AND d.bucket >= $6::text::timestamptz AND d.bucket < $5::text::timestamptz
  ), raw_hours AS (
    SELECT hour FROM dirty WHERE NOT adds_pending
    UNION
    SELECT unnest($7::timestamptz[])
  ), stored AS (
    SELECT width_bucket(a.bucket, (SELECT $3::timestamptz[])) AS i, a.event_count AS n, a.sum_value AS s, a.unique_profiles AS u
      FROM klaviyo_aggregated_metrics a
     WHERE a.account_id = $1 AND a.metric_id = $2 AND a.granularity = 'hour'
       AND a.bucket >= $6::text::timestamptz AND a.bucket < $5::text::timestamptz
       AND NOT EXISTS (SELECT 1 FROM raw_hours r WHERE r.hour = a.bucket)
  ), fresh AS (
    SELECT width_bucket(e."timestamp", (SELECT $3::timestamptz[])) AS i, count(*) AS n, coalesce(sum(e.value), 0) AS s,
           count(DISTINCT e.profile_id) AS u
      FROM raw_hours r
     -- One index range scan per hour (OFFSET 0 keeps it from being flattened): as a join, without
     -- fresh statistics, the planner once read the metric's events once and tested each of them
     -- against every hour, past the statement timeout.
     CROSS JOIN LATERAL (
       SELECT e."timestamp", e.value, e.profile_id FROM klaviyo_events e
        WHERE e.account_id = $1 AND e.metric_id = $2
          AND e."timestamp" >= greatest(r.hour, $4::text::timestamptz)
          AND e."timestamp" < least(r.hour + interval '1 hour', $5::text::timestamptz)
       OFFSET 0
     ) e
     GROUP BY 1
    UNION ALL
    SELECT width_bucket(p."timestamp", (SELECT $3::timestamptz[])) AS i, count(*) AS n, coalesce(sum(p.value), 0) AS s, 0 AS u
      FROM dirty d
      JOIN klaviyo_aggregate_pending p ON p.account_id = $1 AND p.metric_id = $2 AND p.bucket = d.hour
     WHERE d.adds_pending AND NOT EXISTS (SELECT 1 FROM raw_hours r WHERE r.hour = d.hour)
     GROUP BY 1
  )${STORED_PLUS_FRESH}`;

/**
 * `unique` over buckets of whole hours (the 'lookback' plan): a bucket that is neither listed in $7
 * (1-based numbers of the buckets no lookback serves) nor holds a dirty hour adds its hours' counts,
 * sums and, for distinct profiles, each hour's lookback count at k = hours since the bucket's start.
 * The other buckets are counted from raw events as a whole. A dirty hour before a bucket cannot make
 * its lookbacks wrong: an uncounted event before the bucket's start only moves a profile's previous
 * hour within "before the start". $8 is the number of buckets.
 */
const FROM_LOOKBACKS = `
  WITH bounds AS MATERIALIZED (SELECT $3::timestamptz[] AS b
  ), raw_buckets AS (
    SELECT width_bucket(d.bucket, (SELECT b FROM bounds)) AS i FROM klaviyo_aggregate_dirty d
     WHERE d.account_id = $1 AND d.metric_id = $2 AND d.bucket >= $6::text::timestamptz AND d.bucket < $5::text::timestamptz
    UNION
    SELECT unnest($7::int[])
  ), stored AS (
    SELECT h.i, a.event_count AS n, a.sum_value AS s,
           a.new_profiles_by_lookback[
             floor(extract(epoch FROM a.bucket - greatest((SELECT b FROM bounds)[h.i], $4::text::timestamptz)) / 3600)::int + 1] AS u
      FROM klaviyo_aggregated_metrics a
     CROSS JOIN LATERAL (SELECT width_bucket(a.bucket, (SELECT b FROM bounds)) AS i) h
     WHERE a.account_id = $1 AND a.metric_id = $2 AND a.granularity = 'hour'
       AND a.bucket >= $4::text::timestamptz AND a.bucket < $5::text::timestamptz
       AND NOT EXISTS (SELECT 1 FROM raw_buckets r WHERE r.i = h.i)
  ), fresh AS (
    SELECT r.i, count(*) AS n, coalesce(sum(e.value), 0) AS s, count(DISTINCT e.profile_id) AS u
      FROM raw_buckets r
     -- One index range scan per bucket, as in FROM_ROLLUPS.
     CROSS JOIN LATERAL (
       SELECT e.value, e.profile_id FROM klaviyo_events e
        WHERE e.account_id = $1 AND e.metric_id = $2
          AND e."timestamp" >= greatest((SELECT b FROM bounds)[r.i], $4::text::timestamptz)
          AND e."timestamp" < least((SELECT b FROM bounds)[r.i + 1], $5::text::timestamptz)
       OFFSET 0
     ) e
     WHERE r.i BETWEEN 1 AND $8
     GROUP BY r.i
  )${STORED_PLUS_FRESH}`;

/** SQL text of one dimension filter on e.properties; pushes its parameters. */
function dimensionPredicate(filter: DimensionFilter, params: SqlParam[]): string {
  params.push(filter.key);
  const key = `$${params.length}`;
  const text = `coalesce(e.properties->>${key}, '')`;
  const json = `e.properties->${key}`;
  if (filter.operator === 'equals' || filter.operator === 'contains') {
    params.push(filter.values[0] as string);
    const v = `$${params.length}`;
    if (filter.operator === 'equals') return `${text} = ${v}`;
    return `(CASE WHEN jsonb_typeof(${json}) = 'array'
                  THEN EXISTS (SELECT 1 FROM jsonb_array_elements_text(${json}) el WHERE el = ${v})
                  ELSE strpos(${text}, ${v}) > 0 END)`;
  }
  params.push(JSON.stringify(filter.values));
  const list = `jsonb_array_elements_text($${params.length}::jsonb)`;
  if (filter.operator === 'any') return `${text} IN (SELECT ${list})`;
  if (filter.operator === 'contains-any') {
    return `(CASE WHEN jsonb_typeof(${json}) = 'array'
                  THEN EXISTS (SELECT 1 FROM jsonb_array_elements_text(${json}) el WHERE el IN (SELECT ${list}))
                  ELSE EXISTS (SELECT 1 FROM ${list} w WHERE strpos(${text}, w) > 0) END)`;
  }
  return `(CASE WHEN jsonb_typeof(${json}) = 'array'
                THEN NOT EXISTS (SELECT 1 FROM ${list} w
                                  WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(${json}) el WHERE el = w))
                ELSE NOT EXISTS (SELECT 1 FROM ${list} w WHERE strpos(${text}, w) = 0) END)`;
}

/** Everything from raw events of the range, grouped by bucket and by the `by` properties. */
function fromEventsSql(plan: SeriesPlan, params: SqlParam[]): string {
  const dims = plan.by.map((key) => {
    params.push(key);
    return `coalesce(e.properties->>$${params.length}, '')`;
  });
  const predicates = plan.dimensionFilters.map((f) => dimensionPredicate(f, params));
  const dimColumns = dims.map((d, i) => `, ${d} AS d${i}`).join('');
  const groupBy = ['1', ...dims.map((_, i) => String(i + 2))].join(', ');
  const unique = plan.needsUnique ? 'count(DISTINCT e.profile_id)' : '0';
  return `
    WITH grouped AS (
      SELECT width_bucket(e."timestamp", (SELECT $3::timestamptz[])) AS i${dimColumns},
             count(*) AS n, coalesce(sum(e.value), 0) AS s, ${unique} AS u
        FROM klaviyo_events e
       WHERE e.account_id = $1 AND e.metric_id = $2 AND e."timestamp" >= $4::text::timestamptz AND e."timestamp" < $5::text::timestamptz
             ${predicates.map((p) => `AND ${p}`).join('\n             ')}
       GROUP BY ${groupBy}
    )
    SELECT ${METRIC_EXISTS} AS metric_exists,
           ${figureColumns(
             'grouped',
             ['i', 'n', 's', plan.needsUnique ? 'u' : null],
             dims.map((_, i) => `d${i}`),
             false,
           )} AS buckets`;
}

/**
 * Whether the statement of fromDimensionsSql has hours no day covers (its CTE spans would have rows:
 * computed the same way, from the range's first hour $6 to its end $5) and days with hours outside
 * their bucket's share (moved).
 */
function dayCoverage(plan: SeriesPlan): { readonly spans: boolean; readonly moved: boolean } {
  const days = [...plan.days].sort((a, b) => a.day - b.day);
  let coveredUntilUs = Math.floor(plan.startUs / HOUR_US) * HOUR_US;
  let spans = false;
  for (const d of days) {
    if (coveredUntilUs < d.day * 1000) spans = true;
    coveredUntilUs = d.end * 1000;
  }
  // After the last day (days do not overlap: the last one's end is the latest).
  if (coveredUntilUs < plan.endUs) spans = true;
  return { spans, moved: days.some((d) => d.day < d.lo || d.hi < d.end) };
}

/**
 * Count and sum by one property, or filtered on it (the 'dimension' plan), from three sources added
 * up with signs:
 *   - the daily rows of the days in $9..$13 (day, 1-based bucket, [lo, hi), the day's hours that lie
 *     whole in that bucket, and its length in hours) of the zone $14, each given to its bucket;
 *   - the hourly rows of the hours those days do not cover ("spans") and of each day's hours outside
 *     its [lo, hi): each is added to its own bucket (unless its hour is raw) and, for a day's hour,
 *     subtracted from the day's bucket, whose daily row counted it; the hourly rows of the raw hours
 *     inside a day's [lo, hi) are subtracted from the day's bucket;
 *   - raw events for the raw hours: dirty hours, and hours a boundary or the range cuts ($7).
 * Per bucket, that is the sum of the hourly rows of its clean uncut hours, because a daily row is
 * always the sum of its day's hourly rows (both change in one statement). $15 says which days are
 * their bucket alone. $8 is the key, $16 the allowed values (a JSON array; absent: all). Events without the property have no rollup row: when
 * the "" value is wanted (no filter, or a filter that lists ""), they are the totals' rows (the
 * pseudo-key TOTALS_KEY, read through the same days, spans and moved hours) minus the key's rows. The first CTE checks, in this statement's snapshot, that the key's rollups can be used
 * (registered and backfilled, no fallback for the metric) and the zone's days (filled); `served` false
 * tells the caller to read raw events, or UTC days when `zone_ready` is false. `unique` (distinct profiles) comes from the dimension profiles
 * (uniqueFromDimensionsCtes); the raw hours' events are then kept as CTE raw_events, which both parts read.
 */
function fromDimensionsSql(plan: SeriesPlan): string {
  const values = plan.dimensionValues;
  const needsEmpty = values === null || values.includes('');
  const valueFilter = values === null ? '' : 'AND v IN (SELECT jsonb_array_elements_text($16::jsonb))';
  const storedFilter = (alias: string) =>
    needsEmpty ? '' : `AND ${alias}.dimension_value IN (SELECT jsonb_array_elements_text($16::jsonb))`;
  // With the "" value wanted, every stored read takes the totals' rows (TOTALS_KEY) beside the key's,
  // through the same days, spans and moved hours: the "" row is the totals minus the key's rows.
  // As an array parameter after the values ($16 when filtered): pg_stat_statements would record an
  // IN list with a constant in it renumbered, which the statement check then cannot bind to one account.
  const keys = needsEmpty ? `= ANY(${values === null ? '$16' : '$17'}::text[])` : '= $8';
  // A zone's days come from its own table (migrations/0016), UTC's from klaviyo_dimension_daily_rollups.
  const zoned = plan.dayZone !== 'UTC';
  const dailyTable = zoned ? 'klaviyo_dimension_zone_daily_rollups' : 'klaviyo_dimension_daily_rollups';
  const zoneFilter = zoned ? 'AND y.zone = $14' : '';
  const byValue = plan.by.length > 0;
  // With `by`, a day that is its bucket whole and holds no raw hour needs nothing added to its daily
  // rows: they are read apart (whole_rows) and skip the grouping, whose numeric sums and hashing
  // cost the most per cell of a long breakdown (docs/breakdowns.md, "Where a breakdown's time goes").
  const wholeDays = byValue;
  // A range of whole days leaves no hour outside them, nor any hour of a day outside its bucket: those
  // parts are left out of the text, which then plans and runs in less time.
  const coverage = dayCoverage(plan);
  const withoutValue = needsEmpty
    ? `UNION ALL
       SELECT i, '' AS v, CASE WHEN k = '${TOTALS_KEY}' THEN n ELSE -n END AS n,
              CASE WHEN k = '${TOTALS_KEY}' THEN s ELSE -s END AS s
         FROM stored`
    : '';
  const uniqueReady = plan.needsUnique
    ? 'AND EXISTS (SELECT 1 FROM klaviyo_rollup_unique_dimensions WHERE dimension = $8 AND ready_at IS NOT NULL)'
    : '';
  const hourlyRows = (lo: string, hi: string) => `
               SELECT x.dimension, x.bucket, x.dimension_value, x.event_count, x.sum_value FROM klaviyo_dimension_rollups x
                WHERE x.account_id = $1 AND x.metric_id = $2 AND x.dimension ${keys} AND x.bucket >= ${lo} AND x.bucket < ${hi} ${storedFilter('x')}
               OFFSET 0`;
  return `
  WITH zone_ready AS MATERIALIZED (
    SELECT ${zoned ? 'EXISTS (SELECT 1 FROM klaviyo_rollup_day_zones WHERE zone = $14 AND ready_at IS NOT NULL)' : 'true'} AS ok
  ), served AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM klaviyo_rollup_dimensions WHERE dimension = $8 AND ready_at IS NOT NULL) ${uniqueReady}
           AND NOT EXISTS (SELECT 1 FROM klaviyo_dimension_fallbacks WHERE account_id = $1 AND metric_id = $2 AND dimension = $8)
           AND (SELECT ok FROM zone_ready) AS ok
  ), dirty AS MATERIALIZED (
    -- A dirty hour whose pending rows all carry their values for the registry as this statement sees
    -- it is its rollup rows plus its pending rows, exactly as the aggregator will make it (count and
    -- sum only: distinct profiles do not add); any other dirty hour is read from raw events.
    SELECT d.bucket AS hour,
           ${
             plan.needsUnique
               ? 'false'
               : `EXISTS (SELECT 1 FROM klaviyo_aggregate_pending p
                           WHERE p.account_id = $1 AND p.metric_id = $2 AND p.bucket = d.bucket)
           AND NOT EXISTS (SELECT 1 FROM klaviyo_aggregate_pending p
                            WHERE p.account_id = $1 AND p.metric_id = $2 AND p.bucket = d.bucket
                              AND (p.dimension_values IS NULL
                                   OR p.dimension_generation IS DISTINCT FROM (SELECT generation FROM klaviyo_rollup_dimension_generation)))`
           } AS adds_pending
      FROM klaviyo_aggregate_dirty d
     WHERE (SELECT ok FROM served) AND d.account_id = $1 AND d.metric_id = $2 AND d.bucket >= $6::text::timestamptz AND d.bucket < $5::text::timestamptz
  ), raw_hours AS MATERIALIZED (
    SELECT hour FROM dirty WHERE NOT adds_pending
    UNION
    SELECT unnest($7::timestamptz[])
  ), days AS MATERIALIZED (
    -- The share's bounds travel as hours after the day's start: integers parse faster than instants.
    SELECT c.day, c.i, c.day + c.lo_h * interval '1 hour' AS lo, c.day + c.hi_h * interval '1 hour' AS hi,
           c.day + c.hours * interval '1 hour' AS day_end, c.alone
      FROM unnest($9::timestamptz[], $10::int[], $11::int[], $12::int[], $13::int[], $15::boolean[]) AS c(day, i, lo_h, hi_h, hours, alone)
     WHERE (SELECT ok FROM served)
  ),${
    wholeDays
      ? ` whole_days AS MATERIALIZED (
    -- Only a dirty hour can be raw inside such a day: no boundary and neither end of the range cuts it.
    SELECT c.day, c.i FROM days c
     WHERE c.alone AND NOT EXISTS (SELECT 1 FROM dirty h WHERE h.hour >= c.day AND h.hour < c.day_end)
  ), whole_rows AS NOT MATERIALIZED (
    -- The range's daily rows in one index range scan, matched to the whole days by hash (OFFSET 0
    -- keeps the planner from turning it back into one index search per day, 2-3 times slower). Its
    -- two readers each scan the range again: cheaper than storing thousands of rows to read twice.
    SELECT w.i, y.dimension AS k, y.dimension_value AS v, y.event_count AS n, y.sum_value AS s
      FROM (SELECT y.day, y.dimension, y.dimension_value, y.event_count, y.sum_value FROM ${dailyTable} y
             WHERE y.account_id = $1 AND y.metric_id = $2 AND y.dimension ${keys} ${zoneFilter}
               AND y.day >= $6::text::timestamptz AND y.day < $5::text::timestamptz ${storedFilter('y')}
            OFFSET 0) y
      JOIN whole_days w ON w.day = y.day
  ),`
      : ''
  }${
    coverage.spans
      ? ` spans AS MATERIALIZED (
    -- The hours no day covers, as ranges: before the first day, between two, after the last.
    SELECT lo, hi
      FROM (SELECT coalesce(lag(day_end) OVER (ORDER BY day), $6::text::timestamptz) AS lo, day AS hi FROM days
            UNION ALL
            SELECT coalesce(max(day_end), $6::text::timestamptz), $5::text::timestamptz FROM days) g
     WHERE lo < hi AND (SELECT ok FROM served)
  ),`
      : ''
  }${
    coverage.moved
      ? ` moved AS MATERIALIZED (
    -- The days' hours outside their bucket's share: at most one range before it and one after.
    SELECT i, day AS lo, lo AS hi FROM days WHERE day < lo
    UNION ALL
    SELECT i, hi, day_end FROM days WHERE hi < day_end
  ), moved_rows AS MATERIALIZED (
    SELECT m.i AS day_i, r.dimension AS k, r.bucket, r.dimension_value AS v, r.event_count AS n, r.sum_value AS s
      FROM moved m
     -- One index range scan per range (OFFSET 0 keeps it from being flattened into a join: as a hash
     -- join the planner read every hourly row of the key in the range, 4-5 times the moved ones).
     CROSS JOIN LATERAL (${hourlyRows('m.lo', 'm.hi')}) r
  ),`
      : ''
  } stored AS MATERIALIZED (
    -- Every stored row's share, signed, not grouped: the one grouping is in combined, whose cost
    -- follows the rows it meets (each grouping of thousands of numeric sums is a measurable part of a
    -- breakdown's time).
    SELECT i, k, v, n, s
      FROM (${
        coverage.spans
          ? `SELECT width_bucket(r.bucket, (SELECT $3::timestamptz[])) AS i, r.dimension AS k, r.dimension_value AS v,
                   r.event_count AS n, r.sum_value AS s
              FROM spans g
             CROSS JOIN LATERAL (${hourlyRows('g.lo', 'g.hi')}) r
             WHERE NOT EXISTS (SELECT 1 FROM raw_hours h WHERE h.hour = r.bucket)
            UNION ALL
            `
          : ''
      }SELECT c.i AS i, y.dimension AS k, y.dimension_value AS v, y.event_count AS n, y.sum_value AS s
              FROM ${dailyTable} y
              JOIN days c ON c.day = y.day
             WHERE y.account_id = $1 AND y.metric_id = $2 AND y.dimension ${keys} ${zoneFilter}
               AND y.day >= $6::text::timestamptz AND y.day < $5::text::timestamptz ${storedFilter('y')}
               ${wholeDays ? 'AND NOT EXISTS (SELECT 1 FROM whole_days w WHERE w.day = c.day)' : ''}
            UNION ALL${
              coverage.moved
                ? `
            SELECT day_i, k, v, -n, -s FROM moved_rows
            UNION ALL
            SELECT width_bucket(bucket, (SELECT $3::timestamptz[])), k, v, n, s FROM moved_rows r
             WHERE NOT EXISTS (SELECT 1 FROM raw_hours h WHERE h.hour = r.bucket)
            UNION ALL`
                : ''
            }
            -- Raw hours inside a day's share: their day row counted their hourly rows.
            SELECT c.i, x.dimension, x.dimension_value, -x.event_count, -x.sum_value
              FROM raw_hours h
              JOIN days c ON c.day = date_trunc('day', h.hour, $14) AND h.hour >= c.lo AND h.hour < c.hi
              JOIN klaviyo_dimension_rollups x ON x.account_id = $1 AND x.metric_id = $2 AND x.dimension ${keys} AND x.bucket = h.hour
             WHERE true ${storedFilter('x')}
            UNION ALL
            -- The pending rows of the dirty hours that add them: the events their rollup rows lack, under
            -- the key's value they carry, and under the totals' pseudo-key (every event).
            SELECT width_bucket(p."timestamp", (SELECT $3::timestamptz[])), x.k, x.v, count(*), coalesce(sum(p.value), 0)
              FROM dirty d
              JOIN klaviyo_aggregate_pending p ON p.account_id = $1 AND p.metric_id = $2 AND p.bucket = d.hour
             CROSS JOIN LATERAL (SELECT $8 AS k, p.dimension_values->>$8 AS v
                                 ${needsEmpty ? `UNION ALL SELECT '${TOTALS_KEY}', ''` : ''}) x
             WHERE d.adds_pending AND NOT EXISTS (SELECT 1 FROM raw_hours r WHERE r.hour = d.hour)
               AND (x.k = '${TOTALS_KEY}' OR coalesce(x.v, '') <> '')
               ${needsEmpty ? '' : `AND x.v IN (SELECT jsonb_array_elements_text($16::jsonb))`}
             GROUP BY 1, 2, 3) z
  ), ${plan.needsUnique ? 'raw_events AS MATERIALIZED' : 'fresh AS'} (
    SELECT width_bucket(e."timestamp", (SELECT $3::timestamptz[])) AS i, coalesce(e.properties->>$8, '') AS v,
           ${plan.needsUnique ? 'e.value, e.profile_id' : 'count(*) AS n, coalesce(sum(e.value), 0) AS s'}
      FROM raw_hours h
     -- One index range scan per raw hour. As a plain join, the planner (which estimates a few
     -- hundred hours) read every event of the metric in the range with its properties and tested
     -- each against each hour (docs/breakdowns.md). OFFSET 0 keeps the subquery from being
     -- flattened into that join.
     CROSS JOIN LATERAL (
       SELECT e."timestamp", e.value, e.properties, e.profile_id FROM klaviyo_events e
        WHERE e.account_id = $1 AND e.metric_id = $2
          AND e."timestamp" >= greatest(h.hour, $4::text::timestamptz)
          AND e."timestamp" < least(h.hour + interval '1 hour', $5::text::timestamptz)
       OFFSET 0
     ) e
     WHERE (SELECT ok FROM served)
     ${
       plan.needsUnique
         ? // With unique, the raw hours' events are read once for the figures and the profiles.
           `), fresh AS (
    SELECT i, v, count(*) AS n, coalesce(sum(value), 0) AS s FROM raw_events GROUP BY 1, 2`
         : 'GROUP BY 1, 2'
     }
  ), combined AS (
    SELECT i, ${byValue ? 'v' : "''"} AS v, sum(n) AS n, sum(s) AS s
      FROM (SELECT i, v, n, s FROM stored WHERE k = $8
            ${withoutValue}
            UNION ALL
            SELECT i, v, n, s FROM fresh) x
     WHERE true ${valueFilter}
     GROUP BY 1, 2
    HAVING sum(n) > 0${
      wholeDays
        ? `
    UNION ALL
    -- The whole days' buckets, which no other part of this statement adds to.
    SELECT i, v, n, s FROM whole_rows WHERE k = $8 AND n > 0 ${valueFilter}${
      needsEmpty
        ? `
    UNION ALL
    -- The totals' row less the values' rows, as twice the totals less all rows: no per-row sign.
    SELECT i, '' AS v, 2 * sum(n) FILTER (WHERE k = '${TOTALS_KEY}') - sum(n), 2 * sum(s) FILTER (WHERE k = '${TOTALS_KEY}') - sum(s)
      FROM whole_rows GROUP BY i
    HAVING 2 * sum(n) FILTER (WHERE k = '${TOTALS_KEY}') > sum(n)`
        : ''
    }`
        : ''
    }
  )${plan.needsUnique ? uniqueFromDimensionsCtes(plan) : ''}
  SELECT (SELECT ok FROM served) AS served, (SELECT ok FROM zone_ready) AS zone_ready, ${METRIC_EXISTS} AS metric_exists,
         ${figureColumns(
           `combined c ${plan.needsUnique ? 'LEFT JOIN uniques q ON q.i = c.i AND q.v = c.v' : ''}`,
           ['c.i', 'c.n', 'c.s', plan.needsUnique ? 'coalesce(q.u, 0)' : null],
           byValue ? ['c.v'] : [],
           false,
         )} AS buckets`;
}

/**
 * The CTE `uniques(i, v, u)` of the 'dimension' plan: distinct profiles per bucket and value (v is ""
 * when `by` is empty: the allowed values together). Clean uncut hours come from the dimension profiles
 * (migrations/0011), dirty and cut hours from raw events, and a profile counts once per bucket and
 * value however many hours and sources name it. Events without the property have no row: a profile
 * has one in a bucket's clean hours exactly when its events there outnumber its rows' events, and its
 * events are counted from the covering index (metric_id, "timestamp") INCLUDE (value, profile_id),
 * without reading properties. Only when the "" value is wanted.
 */
function uniqueFromDimensionsCtes(plan: SeriesPlan): string {
  const values = plan.dimensionValues;
  const needsEmpty = values === null || values.includes('');
  const valueFilter = values === null ? '' : 'AND v IN (SELECT jsonb_array_elements_text($16::jsonb))';
  const storedFilter = needsEmpty ? '' : 'AND x.dimension_value IN (SELECT jsonb_array_elements_text($16::jsonb))';
  const withoutValue = needsEmpty
    ? `, profile_events AS MATERIALIZED (
    SELECT width_bucket(e."timestamp", (SELECT $3::timestamptz[])) AS i, e.profile_id, count(*) AS n
      FROM klaviyo_events e
     WHERE (SELECT ok FROM served) AND e.account_id = $1 AND e.metric_id = $2
       AND e."timestamp" >= $6::text::timestamptz AND e."timestamp" < $5::text::timestamptz AND e.profile_id IS NOT NULL
       -- date_bin, not date_trunc(..., 'UTC'): the same UTC hour without a time zone lookup per event.
       AND NOT EXISTS (SELECT 1 FROM raw_hours h
                        WHERE h.hour = date_bin('1 hour', e."timestamp", timestamptz '2000-01-01 00:00:00+00'))
     GROUP BY 1, 2
  ), without_value AS (
    SELECT pe.i, '' AS v, pe.profile_id
      FROM profile_events pe
      LEFT JOIN (SELECT i, profile_id, sum(n) AS n FROM profile_rows GROUP BY 1, 2) pr
        ON pr.i = pe.i AND pr.profile_id = pe.profile_id
     WHERE pe.n > coalesce(pr.n, 0)
  )`
    : '';
  return `, profile_rows AS MATERIALIZED (
    SELECT width_bucket(x.bucket, (SELECT $3::timestamptz[])) AS i, x.dimension_value AS v, x.profile_id, x.event_count AS n
      FROM klaviyo_dimension_profiles x
     WHERE (SELECT ok FROM served) AND x.account_id = $1 AND x.metric_id = $2 AND x.dimension = $8
       AND x.bucket >= $6::text::timestamptz AND x.bucket < $5::text::timestamptz ${storedFilter}
       AND NOT EXISTS (SELECT 1 FROM raw_hours h WHERE h.hour = x.bucket)
  )${withoutValue}, fresh_profiles AS (
    -- The raw hours' events, read once by fromDimensionsSql for the figures too.
    SELECT i, v, profile_id FROM raw_events WHERE profile_id IS NOT NULL
  ), uniques AS (
    -- DISTINCT and then count, rather than count(DISTINCT ...): a hash of the rows instead of a sort of
    -- them under the text columns' collation, which cost most of the statement.
    SELECT i, v, count(*) AS u
      FROM (SELECT DISTINCT i, ${plan.by.length > 0 ? 'v' : "''"} AS v, profile_id
              FROM (SELECT i, v, profile_id FROM profile_rows
                    ${needsEmpty ? 'UNION ALL SELECT i, v, profile_id FROM without_value' : ''}
                    UNION ALL
                    SELECT i, v, profile_id FROM fresh_profiles) x
             WHERE true ${valueFilter}) d
     GROUP BY 1, 2
  )`;
}

function toResult(row: SeriesRow | undefined, dimensionCount: number, servedBy: SeriesPlan['source']): SeriesResult {
  // figureColumns: the figures as comma-separated text, the values as arrays; null when there is no
  // bucket, or for a figure left out. JSON.parse reads a list of numbers several times faster than
  // split and Number, and a breakdown has thousands.
  const columns: unknown[] = Array.isArray(row?.buckets) ? (row.buckets as unknown[]) : [];
  const figure = (k: number): unknown[] => {
    const c = columns[k];
    const parsed: unknown = typeof c === 'string' ? JSON.parse(`[${c}]`) : [];
    return Array.isArray(parsed) ? parsed : [];
  };
  const [i, n, s, u] = [figure(0), figure(1), figure(2), figure(3)];
  const values = columns.slice(4, 4 + dimensionCount).map((c): unknown[] => (Array.isArray(c) ? (c as unknown[]) : []));
  const buckets = new Array<BucketFigures>(i.length);
  for (let k = 0; k < i.length; k += 1) {
    buckets[k] = {
      bucket: Number(i[k]) - 1,
      count: Number(n[k]),
      sumValue: Number(s[k]),
      unique: u.length > 0 ? Number(u[k]) : 0,
      dimensions: values.map((column) => String(column[k])),
    };
  }
  return { metricExists: row?.metric_exists === true, buckets, servedBy };
}

/** $1-$6 of every rollup statement: account, metric, bucket boundaries, the range, and its first hour. */
function rangeParams(accountId: string, plan: SeriesPlan): SqlParam[] {
  return [
    accountId,
    plan.metricId,
    timestampArray(plan.boundaries),
    isoMicros(plan.startUs),
    isoMicros(plan.endUs),
    isoMicros(Math.floor(plan.startUs / HOUR_US) * HOUR_US),
  ];
}

/** Runs a plan: the fast path it chose, in one statement. */
export async function readSeries(db: Db, accountId: string, plan: SeriesPlan): Promise<SeriesResult> {
  if (plan.source === 'events') return readSeriesFromEvents(db, accountId, plan);
  if (plan.source === 'dimension') return readSeriesFromDimensions(db, accountId, plan);
  const params = rangeParams(accountId, plan);
  if (plan.source === 'lookback') {
    params.push(`{${plan.rawBuckets.map((i) => i + 1).join(',')}}`, plan.boundaries.length - 1);
  } else {
    params.push(timestampArray(plan.cutHours), !plan.needsUnique);
  }
  const rows = await db.query<SeriesRow>(plan.source === 'lookback' ? FROM_LOOKBACKS : FROM_ROLLUPS, params);
  return toResult(rows[0], 0, plan.source);
}

/**
 * The 'dimension' plan; raw events when the statement finds the key not rolled up for the metric. A
 * plan on a zone's days whose rows are still being filled (npm run backfill) runs again on UTC days.
 */
export async function readSeriesFromDimensions(db: Db, accountId: string, plan: SeriesPlan): Promise<SeriesResult> {
  if (plan.dimension === null) throw new Error('readSeriesFromDimensions needs a dimension plan');
  const days = plan.days;
  const params: SqlParam[] = [
    ...rangeParams(accountId, plan),
    timestampArray(plan.cutHours),
    plan.dimension,
    timestampArray(days.map((d) => d.day)),
    `{${days.map((d) => d.bucket).join(',')}}`,
    `{${days.map((d) => (d.lo - d.day) / HOUR_MS).join(',')}}`,
    `{${days.map((d) => (d.hi - d.day) / HOUR_MS).join(',')}}`,
    `{${days.map((d) => (d.end - d.day) / HOUR_MS).join(',')}}`,
    plan.dayZone,
    `{${days.map((d) => (d.alone ? 't' : 'f')).join(',')}}`,
  ];
  if (plan.dimensionValues !== null) params.push(JSON.stringify(plan.dimensionValues));
  if (plan.dimensionValues === null || plan.dimensionValues.includes('')) {
    params.push(textArray([plan.dimension, TOTALS_KEY]));
  }
  const rows = await db.query<SeriesRow>(fromDimensionsSql(plan), params);
  if (rows[0]?.zone_ready === false && plan.utcDays !== null) {
    return readSeriesFromDimensions(db, accountId, { ...plan, dayZone: 'UTC', days: plan.utcDays, utcDays: null });
  }
  if (rows[0]?.served !== true) return readSeriesFromEvents(db, accountId, plan);
  return toResult(rows[0], plan.by.length, 'dimension');
}

/**
 * The same answer computed from raw events alone, whatever the plan chose: the path of `by` and of
 * distinct counts over long buckets, and the reference the benchmark compares the fast path with.
 */
export async function readSeriesFromEvents(db: Db, accountId: string, plan: SeriesPlan): Promise<SeriesResult> {
  const params: SqlParam[] = [
    accountId,
    plan.metricId,
    timestampArray(plan.boundaries),
    isoMicros(plan.startUs),
    isoMicros(plan.endUs),
  ];
  const sql = fromEventsSql(plan, params);
  const rows = await db.query<SeriesRow>(sql, params);
  return toResult(rows[0], plan.by.length, 'events');
}
