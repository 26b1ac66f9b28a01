import type { Db } from '../db/port';
import { HttpError } from '../klaviyo/errors';
import {
  buildMetricAggregateDocument,
  formatBucketDate,
  parseMetricAggregateQuery,
  type AggregateRow,
  type Measurement,
  type MetricAggregateDocument,
  type MetricAggregateQuery,
} from '../klaviyo/metricAggregates';
import { readSeries, type SeriesResult } from '../repositories/series';
import { planSeries, type SeriesPlan } from '../aggregation/planner';

/**
 * Query Metric Aggregates without HTTP: validate the body, plan, read in one statement, shape the
 * answer. Used by functions/metricAggregates.ts, the benchmark and scripts.
 */
export interface MetricAggregateOptions {
  readonly maxRangeDays: number;
  /** Prefix of the links, e.g. https://api.example.com ('' for relative links). */
  readonly baseUrl: string;
  /** A cursor given outside the body (the query string of links.next); the body's wins. */
  readonly pageCursor?: string;
  /** Zones other than UTC whose days have daily dimension rows (ROLLUP_DAY_ZONES). */
  readonly dayZones?: readonly string[];
}

export interface MetricAggregateOutcome {
  readonly document: MetricAggregateDocument;
  readonly plan: SeriesPlan;
  /** The path that computed the answer (a 'dimension' plan falls back to 'events' for a key not rolled up). */
  readonly servedBy: SeriesPlan['source'];
}

/** Turns bucket figures into data[] rows, every measurement aligned with the buckets, empty ones 0. */
export function rowsFromSeries(query: MetricAggregateQuery, plan: SeriesPlan, series: SeriesResult): AggregateRow[] {
  const bucketCount = plan.boundaries.length - 1;
  const rows = new Map<string, { dimensions: string[]; values: Record<Measurement, number[]> }>();
  const rowFor = (dimensions: readonly string[]) => {
    // A breakdown has thousands of cells: one value is its own key, without a JSON.stringify each.
    const key = dimensions.length === 1 ? (dimensions[0] as string) : JSON.stringify(dimensions);
    let row = rows.get(key);
    if (!row) {
      const zeros = () => new Array<number>(bucketCount).fill(0);
      row = { dimensions: [...dimensions], values: { count: zeros(), sum_value: zeros(), unique: zeros() } };
      rows.set(key, row);
    }
    return row;
  };
  // Without `by`, Klaviyo answers one row even when no event matched.
  if (query.by.length === 0) rowFor([]);
  for (const b of series.buckets) {
    if (b.bucket < 0 || b.bucket >= bucketCount) continue;
    const row = rowFor(b.dimensions);
    row.values.count[b.bucket] = b.count;
    row.values.sum_value[b.bucket] = b.sumValue;
    row.values.unique[b.bucket] = b.unique;
  }
  return [...rows.values()].map((row) => ({
    dimensions: row.dimensions,
    measurements: Object.fromEntries(query.measurements.map((m) => [m, row.values[m]])),
  }));
}

export async function queryMetricAggregates(
  db: Db,
  accountId: string,
  body: unknown,
  options: MetricAggregateOptions,
): Promise<MetricAggregateOutcome> {
  const parsed = parseMetricAggregateQuery(body, { maxRangeDays: options.maxRangeDays });
  const query =
    parsed.pageCursor === null && options.pageCursor ? { ...parsed, pageCursor: options.pageCursor } : parsed;
  const plan = planSeries(query, { dayZones: options.dayZones ?? [] });
  const series = await readSeries(db, accountId, plan);
  if (!series.metricExists) {
    throw new HttpError(404, {
      code: 'not_found',
      detail: `No metric with id ${JSON.stringify(query.metricId)}.`,
      pointer: '/data/attributes/metric_id',
    });
  }
  const dates = plan.boundaries.slice(0, -1).map(formatBucketDate);
  const document = buildMetricAggregateDocument(
    query,
    dates,
    rowsFromSeries(query, plan, series),
    options.baseUrl,
    accountId,
  );
  return { document, plan, servedBy: series.servedBy };
}
