import type { MetricAggregateQuery } from '../klaviyo/metricAggregates';
import { bucketBoundaries, HOUR_MS } from '../time/timezone';
import type { DayPart, SeriesPlan, SeriesSource } from '../repositories/series';

export type { SeriesPlan } from '../repositories/series';

/**
 * Decides how a metric aggregate query is computed; lib/repositories/series.ts runs the plan in
 * one SQL statement, so the answer is exact for one snapshot.
 *
 * Bucket boundaries come from lib/time/timezone.ts as explicit instants; SQL assigns a row
 * to bucket i with width_bucket (a binary search), whatever the zone.
 *
 * 'rollups': the hourly rollups serve every UTC hour that is clean (not marked dirty) and lies
 *   inside one bucket and inside the range. Raw events serve the rest: dirty hours, and the hours a
 *   bucket boundary or the range's start or end cuts (in a +05:30 zone, the half hours around each
 *   local midnight). count and sum add across hours; so does `unique` when every bucket lies within
 *   one UTC hour (interval=hour in a whole-hour zone), the only case where an hourly distinct count
 *   is a bucket's distinct count.
 * 'lookback': `unique` over buckets longer than an hour (days in a whole-hour zone). A bucket made of
 *   whole UTC hours, at most 25 of them, takes count and sum from its hours' rollups and its distinct
 *   profiles from their lookback counts: hour h adds its profiles with no event in the (h - start)
 *   hours before it (migrations/0002_profile_hours.sql). A bucket with a dirty hour, or one that is
 *   cut (not whole hours: a +05:30 zone's days, the range's ends) or longer than 25 hours, is counted
 *   from raw events as a whole.
 * 'dimension': count, sum and unique broken down by one event property, or filtered on it with equals/any
 *   (with or without `by` on the same key), from the dimension rollups (migrations/0007, docs/
 *   breakdowns.md). A whole UTC day of the range comes from its daily row, given to the bucket that
 *   holds at least half of it (all of it in UTC days, weeks and months; 19-20 hours of a New York
 *   day); its other hours, and its dirty ones, are taken out of that row by subtracting their hourly
 *   rows. Those hours and the hours of no such day are split as for 'rollups': clean hours from the
 *   hourly dimension rollups, dirty and cut hours from raw events; events without the property are
 *   the clean hours' total minus their rows. `unique` counts distinct profiles per bucket and value
 *   over the dimension profiles of the clean uncut hours (migrations/0011) and the raw events of the
 *   others, so it is exact for any bucket in any zone. The statement itself checks that the key is
 *   rolled up (registered, backfilled, for unique too; no fallback for the metric); when it is not,
 *   the answer comes from raw events.
 * 'events': everything from raw events in the range, through the covering index (metric_id,
 *   "timestamp" DESC) INCLUDE (value, profile_id): distinct profiles over weeks and months (and over
 *   days that no lookback can serve), and the `by` or dimension filters no rollup serves (two keys,
 *   contains operators, keys not rolled up), which need each event's properties.
 */

const DAY_MS = 24 * HOUR_MS;

/**
 * Below half a day in one bucket, the hourly rows the reader would move cost more than they save
 * (hourly buckets: a day row and 23 hours moved instead of 24 hours read).
 */
const MIN_DAY_SHARE_MS = 12 * HOUR_MS;

/** The starts of the whole UTC days in the range, and the end of the last one. */
function utcDayStarts(startMs: number, endMs: number): number[] {
  const starts: number[] = [];
  for (let day = Math.ceil(startMs / DAY_MS) * DAY_MS; day <= endMs; day += DAY_MS) starts.push(day);
  return starts;
}

/** The starts of the whole days of `zone` in the range (local midnights), and the end of the last one. */
function zoneDayStarts(zone: string, startMs: number, endMs: number): number[] {
  return bucketBoundaries(zone, 'day', startMs, endMs).filter((t) => t >= startMs && t <= endMs);
}

/** The days between consecutive `starts` and, for each, the bucket that holds most of its whole hours. */
function dayParts(starts: readonly number[], boundaries: readonly number[]): DayPart[] {
  const parts: DayPart[] = [];
  let first = 0;
  for (let k = 0; k + 1 < starts.length; k += 1) {
    const day = starts[k] as number;
    const end = starts[k + 1] as number;
    while (first + 2 < boundaries.length && (boundaries[first + 1] as number) <= day) first += 1;
    let best: DayPart | null = null;
    for (let i = first; i + 1 < boundaries.length && (boundaries[i] as number) < end; i += 1) {
      const lo = Math.ceil(Math.max(boundaries[i] as number, day) / HOUR_MS) * HOUR_MS;
      const hi = Math.floor(Math.min(boundaries[i + 1] as number, end) / HOUR_MS) * HOUR_MS;
      if (hi - lo >= MIN_DAY_SHARE_MS && (best === null || hi - lo > best.hi - best.lo)) {
        best = { day, end, bucket: i + 1, lo, hi, alone: boundaries[i] === day && boundaries[i + 1] === end };
      }
    }
    if (best !== null) parts.push(best);
  }
  return parts;
}

/**
 * The days a 'dimension' plan reads daily rows of: the query's zone's own when it has them (the
 * buckets' days then coincide with them), UTC's otherwise.
 */
function dimensionDays(
  query: MetricAggregateQuery,
  boundaries: readonly number[],
  isDimension: boolean,
  dayZones: readonly string[],
): Pick<SeriesPlan, 'dayZone' | 'days' | 'utcDays'> {
  if (!isDimension) return { dayZone: 'UTC', days: [], utcDays: null };
  const startMs = Math.ceil(query.startUs / 1000);
  const endMs = Math.floor(query.endUs / 1000);
  const utcDays = dayParts(utcDayStarts(startMs, endMs), boundaries);
  if (!dayZones.includes(query.timezone)) return { dayZone: 'UTC', days: utcDays, utcDays: null };
  return {
    dayZone: query.timezone,
    days: dayParts(zoneDayStarts(query.timezone, startMs, endMs), boundaries),
    utcDays,
  };
}

export interface PlanOptions {
  /** Zones other than UTC whose days have daily dimension rows (ROLLUP_DAY_ZONES). */
  readonly dayZones?: readonly string[];
}

const HOUR_US = HOUR_MS * 1000;

function floorHourUs(us: number): number {
  return Math.floor(us / HOUR_US) * HOUR_US;
}

/** True when every bucket, clipped to the range, lies within a single UTC hour. */
function bucketsWithinSingleHours(boundaries: readonly number[], startUs: number, endUs: number): boolean {
  for (let i = 0; i + 1 < boundaries.length; i += 1) {
    const lo = Math.max((boundaries[i] as number) * 1000, startUs);
    const hi = Math.min((boundaries[i + 1] as number) * 1000, endUs);
    if (hi - floorHourUs(lo) > HOUR_US) return false;
  }
  return true;
}

/** Lookback counts reach 24 hours back: a bucket of up to 25 whole hours. */
const MAX_LOOKBACK_BUCKET_US = 25 * HOUR_US;

/** 0-based numbers of the buckets that are not a run of at most 25 whole UTC hours once clipped to the range. */
function bucketsWithoutLookback(boundaries: readonly number[], startUs: number, endUs: number): number[] {
  const raw: number[] = [];
  for (let i = 0; i + 1 < boundaries.length; i += 1) {
    const lo = Math.max((boundaries[i] as number) * 1000, startUs);
    const hi = Math.min((boundaries[i + 1] as number) * 1000, endUs);
    if (lo % HOUR_US !== 0 || hi % HOUR_US !== 0 || hi - lo > MAX_LOOKBACK_BUCKET_US) raw.push(i);
  }
  return raw;
}

/**
 * The key and allowed values when the dimension rollups can serve the query (count, sum and unique), `by`
 * and the filters naming one key together, filters equals or any (a row's value either is in the
 * list or not; contains-* look inside values, which a rollup has lost).
 */
export function dimensionShape(
  query: MetricAggregateQuery,
): { dimension: string; values: readonly string[] | null } | null {
  const keys = new Set([...query.by, ...query.dimensionFilters.map((f) => f.key)]);
  if (keys.size !== 1 || query.by.length > 1) return null;
  if (!query.dimensionFilters.every((f) => f.operator === 'equals' || f.operator === 'any')) return null;
  const [dimension] = [...keys] as [string];
  let values: string[] | null = null;
  for (const f of query.dimensionFilters) {
    values = values === null ? [...new Set(f.values)] : values.filter((v) => f.values.includes(v));
  }
  return { dimension, values };
}

function chooseSource(
  query: MetricAggregateQuery,
  boundaries: readonly number[],
): { source: SeriesSource; rawBuckets: number[] } {
  if (query.by.length > 0 || query.dimensionFilters.length > 0) {
    return { source: dimensionShape(query) ? 'dimension' : 'events', rawBuckets: [] };
  }
  if (!query.measurements.includes('unique') || bucketsWithinSingleHours(boundaries, query.startUs, query.endUs)) {
    return { source: 'rollups', rawBuckets: [] };
  }
  const rawBuckets = bucketsWithoutLookback(boundaries, query.startUs, query.endUs);
  // Nothing for the lookbacks to serve (weeks, months, a half-hour zone's days): one pass over the events.
  if (rawBuckets.length === boundaries.length - 1) return { source: 'events', rawBuckets: [] };
  return { source: 'lookback', rawBuckets };
}

export function planSeries(query: MetricAggregateQuery, options: PlanOptions = {}): SeriesPlan {
  const boundaries = bucketBoundaries(query.timezone, query.interval, query.startUs / 1000, query.endUs / 1000);
  const needsUnique = query.measurements.includes('unique');
  const chosen = chooseSource(query, boundaries);
  const shape = dimensionShape(query);
  let source = chosen.source;

  const cut = new Set<number>();
  if (source === 'rollups' || source === 'dimension') {
    const cuts = [query.startUs, query.endUs, ...boundaries.slice(1, -1).map((b) => b * 1000)];
    for (const us of cuts) {
      if (us % HOUR_US !== 0) cut.add(floorHourUs(us) / 1000);
    }
    // Hourly buckets in a half-hour zone cut every UTC hour: every event would be read raw anyway,
    // and the rollups on top would only add work (the query bench measured it slower than raw).
    const hoursInRange = (floorHourUs(query.endUs - 1) - floorHourUs(query.startUs)) / HOUR_US + 1;
    if (cut.size * 2 > hoursInRange) {
      source = 'events';
      cut.clear();
    }
  }
  return {
    metricId: query.metricId,
    startUs: query.startUs,
    endUs: query.endUs,
    boundaries,
    source,
    cutHours: [...cut].sort((a, b) => a - b),
    rawBuckets: chosen.rawBuckets,
    by: query.by,
    dimensionFilters: query.dimensionFilters,
    needsUnique,
    dimension: source === 'dimension' ? (shape?.dimension ?? null) : null,
    dimensionValues: source === 'dimension' ? (shape?.values ?? null) : null,
    ...dimensionDays(query, boundaries, source === 'dimension', options.dayZones ?? []),
  };
}
