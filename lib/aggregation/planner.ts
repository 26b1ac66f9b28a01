import type { DimensionFilter, MetricAggregateQuery } from '../klaviyo/metricAggregates';
import { bucketBoundaries, HOUR_MS } from './timezone';

/**
 * Decides how a metric aggregate query is computed; lib/repositories/series.ts runs the plan in
 * one SQL statement, so the answer is exact for one snapshot.
 *
 * Bucket boundaries come from lib/aggregation/timezone.ts as explicit instants; SQL assigns a row
 * to bucket i with width_bucket (a binary search), whatever the zone.
 *
 * 'rollups': the hourly rollups serve every UTC hour that is clean (not marked dirty) and lies
 *   inside one bucket and inside the range. Raw events serve the rest: dirty hours, and the hours a
 *   bucket boundary or the range's start or end cuts (in a +05:30 zone, the half hours around each
 *   local midnight). count and sum add across hours; so does `unique` when every bucket lies within
 *   one UTC hour (interval=hour in a whole-hour zone), the only case where an hourly distinct count
 *   is a bucket's distinct count.
 * 'events': everything from raw events in the range, through the covering index (metric_id,
 *   "timestamp" DESC) INCLUDE (value, profile_id): distinct profiles over buckets longer than an
 *   hour, and `by` or dimension filters, which need each event's properties.
 */
export type SeriesSource = 'rollups' | 'events';

export interface SeriesPlan {
  readonly metricId: string;
  readonly startUs: number;
  readonly endUs: number;
  /** b[0] <= start < ... < end <= b[n], epoch ms; bucket i is [b[i], b[i+1]). */
  readonly boundaries: readonly number[];
  readonly source: SeriesSource;
  /** 'rollups' only: UTC hour starts (ms) that a boundary or the range cuts; read from raw events. */
  readonly cutHours: readonly number[];
  readonly by: readonly string[];
  readonly dimensionFilters: readonly DimensionFilter[];
  readonly needsUnique: boolean;
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

export function planSeries(query: MetricAggregateQuery): SeriesPlan {
  const boundaries = bucketBoundaries(query.timezone, query.interval, query.startUs / 1000, query.endUs / 1000);
  const needsUnique = query.measurements.includes('unique');
  const needsProperties = query.by.length > 0 || query.dimensionFilters.length > 0;
  let source: SeriesSource =
    needsProperties || (needsUnique && !bucketsWithinSingleHours(boundaries, query.startUs, query.endUs)) ? 'events' : 'rollups';

  const cut = new Set<number>();
  if (source === 'rollups') {
    const cuts = [query.startUs, query.endUs, ...boundaries.slice(1, -1).map((b) => b * 1000)];
    for (const us of cuts) {
      if (us % HOUR_US !== 0) cut.add(floorHourUs(us) / 1000);
    }
    // Hourly buckets in a half-hour zone cut every UTC hour: every event would be read raw anyway,
    // and the rollups on top would only add work (bench/query.ts: 122 ms against 44 ms raw).
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
    by: query.by,
    dimensionFilters: query.dimensionFilters,
    needsUnique,
  };
}
