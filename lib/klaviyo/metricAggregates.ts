import { createHash } from 'node:crypto';
import { z } from 'zod';
import { firstInstantAtOrAfterWallTime, resolveTimeZone, type CalendarInterval } from '../time/timezone';
import { HttpError, type ErrorItem } from './errors';
import {
  FilterSyntaxError,
  parseDateTime,
  parseFilter,
  valueText,
  type FilterCondition,
  type FilterValue,
} from './filter';
import type { DimensionFilter } from '../repositories/series';

export type { DimensionFilter } from '../repositories/series';

/**
 * Klaviyo's Query Metric Aggregates (POST /api/metric-aggregates), revision 2026-07-15: the request
 * body as Klaviyo's schema MetricAggregateQuery defines it, validated into a MetricAggregateQuery, and
 * the answer (PostMetricAggregateResponse) built from computed rows.
 *
 * Decisions where Klaviyo's documentation is silent (docs/architecture.md, "Metric aggregates"):
 * - A filter datetime without an offset is a wall-clock time in the request's `timezone` (the spec's
 *   own example pairs America/New_York with 2022-12-01T00:00:00); one with an offset (Z, +hh:mm) is
 *   that instant. A wall-clock time that a DST jump skips means the jump itself.
 * - `dates` are the bucket starts written in UTC with an explicit +00:00, as Klaviyo answers
 *   (a US/Eastern month starts 2022-06-01T04:00:00+00:00); the first bucket is the one that holds
 *   the range's start, so it may begin before it.
 * - `by` takes any event property key, not only Klaviyo's 36 named dimensions: ours are free-form.
 * - `sort` by a measurement orders rows by the measurement's total over the range.
 */
export const MEASUREMENTS = ['count', 'sum_value', 'unique'] as const;
export type Measurement = (typeof MEASUREMENTS)[number];
export const INTERVALS = ['hour', 'day', 'week', 'month'] as const;

export const DEFAULT_PAGE_SIZE = 500;
export const MAX_PAGE_SIZE = 10_000;
export const MAX_BY = 10;
export const MAX_DIMENSION_LENGTH = 255;
const MICROS_PER_MS = 1000;
const MICROS_PER_DAY = 86_400_000_000;

export interface SortKey {
  readonly field: string;
  readonly kind: 'dimension' | 'measurement';
  readonly descending: boolean;
}

export interface MetricAggregateQuery {
  readonly metricId: string;
  readonly measurements: readonly Measurement[];
  readonly interval: CalendarInterval;
  readonly timezone: string;
  /** [startUs, endUs) in epoch microseconds: timestamptz's resolution, and exact in a double. */
  readonly startUs: number;
  readonly endUs: number;
  readonly by: readonly string[];
  readonly dimensionFilters: readonly DimensionFilter[];
  readonly sort: SortKey | null;
  readonly pageSize: number;
  readonly pageCursor: string | null;
}

const measurementSchema = z.enum(MEASUREMENTS, {
  error: (issue) => `${JSON.stringify(issue.input)} is not a measurement; use count, sum_value or unique`,
});

const AttributesSchema = z.strictObject(
  {
    metric_id: z
      .string({ error: 'is required and must be a string' })
      .min(1, { error: 'must not be empty' })
      .max(64, { error: 'must be at most 64 characters' }),
    measurements: z.array(measurementSchema, { error: 'is required: a list of count, sum_value, unique' }).min(1, {
      error: 'must name at least one measurement',
    }),
    interval: z
      .enum(INTERVALS, {
        error: (issue) => `${JSON.stringify(issue.input)} is not an interval; use hour, day, week or month`,
      })
      .nullish(),
    filter: z.union([z.array(z.string({ error: 'must be a filter string' })), z.string()], {
      error: 'is required: a list of filter strings holding the datetime range',
    }),
    timezone: z.string({ error: 'must be an IANA time zone name such as America/New_York' }).nullish(),
    by: z
      .array(
        z
          .string({ error: 'must be a string' })
          .min(1, { error: 'must not be empty' })
          .max(MAX_DIMENSION_LENGTH, { error: `must be at most ${MAX_DIMENSION_LENGTH} characters` }),
        { error: 'must be a list of event property keys' },
      )
      .max(MAX_BY, { error: `must have at most ${MAX_BY} dimensions` })
      .nullish(),
    page_size: z
      .number({ error: 'must be a whole number' })
      .int({ error: 'must be a whole number' })
      .min(1, { error: 'must be at least 1' })
      .max(MAX_PAGE_SIZE, { error: `must be at most ${MAX_PAGE_SIZE}` })
      .nullish(),
    page_cursor: z.string({ error: 'must be a string' }).nullish(),
    sort: z.string({ error: 'must be a string' }).nullish(),
    return_fields: z
      .array(z.string({ error: 'must be a string' }), { error: 'must be a list of field names' })
      .nullish(),
  },
  { error: 'must be an object' },
);

const BodySchema = z.object(
  {
    data: z.object(
      {
        type: z.literal('metric-aggregate', { error: 'must be "metric-aggregate"' }),
        attributes: AttributesSchema,
      },
      { error: 'must be an object with type "metric-aggregate" and attributes' },
    ),
  },
  { error: 'must be a JSON:API document with a data object' },
);

function pointerOf(path: readonly PropertyKey[]): string {
  return '/' + path.map((p) => String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
}

function zodItems(error: z.ZodError): ErrorItem[] {
  return error.issues.map((issue) => {
    const pointer = pointerOf(issue.path);
    const detail =
      issue.code === 'unrecognized_keys'
        ? `Unknown attribute${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`
        : `${pointer.split('/').pop() || 'The body'} ${issue.message}`;
    return { code: 'invalid', detail, pointer };
  });
}

const FILTER_POINTER = '/data/attributes/filter';
const RANGE_OPERATORS = new Set(['greater-or-equal', 'greater-than', 'less-than', 'less-or-equal']);
const DIMENSION_OPERATORS = new Set(['equals', 'any', 'contains', 'contains-any', 'contains-all']);

function instantMicros(text: string, timezone: string): number | undefined {
  const dt = parseDateTime(text);
  if (!dt) return undefined;
  const wall = Date.UTC(dt.year, dt.month - 1, dt.day, dt.hour, dt.minute, dt.second);
  const ms =
    dt.offsetMinutes === null ? firstInstantAtOrAfterWallTime(timezone, wall) : wall - dt.offsetMinutes * 60_000;
  return ms * MICROS_PER_MS + dt.micro;
}

function dimensionValues(value: FilterValue | undefined): string[] | undefined {
  if (!value) return undefined;
  const items = value.kind === 'list' ? value.items : [value];
  const texts = items.map((v) => (v.kind === 'null' ? '' : valueText(v)));
  return texts.every((t): t is string => typeof t === 'string') ? texts : undefined;
}

interface FilterOutcome {
  startUs?: number;
  endUs?: number;
  dimensions: DimensionFilter[];
}

function applyCondition(
  c: FilterCondition,
  timezone: string,
  out: FilterOutcome,
  pointer: string,
  errors: ErrorItem[],
): void {
  if (c.field === 'datetime') {
    if (!RANGE_OPERATORS.has(c.operator)) {
      errors.push({
        code: 'invalid',
        detail: `${c.source}: datetime takes greater-or-equal, greater-than, less-than or less-or-equal`,
        pointer,
      });
      return;
    }
    const text = c.value && (c.value.kind === 'bare' || c.value.kind === 'string') ? c.value.value : undefined;
    const at = text === undefined ? undefined : instantMicros(text, timezone);
    if (at === undefined) {
      errors.push({
        code: 'invalid',
        detail: `${c.source}: the value must be an ISO 8601 datetime such as 2022-12-01T00:00:00`,
        pointer,
      });
      return;
    }
    // Internally the range is [start, end): timestamptz has microsecond resolution, so "greater than
    // t" is ">= t + 1 µs" and "at most t" is "< t + 1 µs".
    if (c.operator === 'greater-or-equal' || c.operator === 'greater-than') {
      const start = c.operator === 'greater-than' ? at + 1 : at;
      out.startUs = out.startUs === undefined ? start : Math.max(out.startUs, start);
    } else {
      const end = c.operator === 'less-or-equal' ? at + 1 : at;
      out.endUs = out.endUs === undefined ? end : Math.min(out.endUs, end);
    }
    return;
  }
  if (!DIMENSION_OPERATORS.has(c.operator)) {
    errors.push({
      code: 'invalid',
      detail: `${c.source}: the operator ${c.operator} is not supported on ${c.field}; use equals, any, contains, contains-any or contains-all`,
      pointer,
    });
    return;
  }
  if (c.field.length > MAX_DIMENSION_LENGTH) {
    errors.push({
      code: 'invalid',
      detail: `${c.source}: the field name is longer than ${MAX_DIMENSION_LENGTH} characters`,
      pointer,
    });
    return;
  }
  const values = dimensionValues(c.value);
  const wantsList = c.operator === 'any' || c.operator === 'contains-any' || c.operator === 'contains-all';
  const isList = c.value?.kind === 'list';
  if (!values || values.length === 0 || wantsList !== isList) {
    errors.push({
      code: 'invalid',
      detail: wantsList
        ? `${c.source}: ${c.operator} takes a field and a non-empty list, e.g. ${c.operator}(${c.field},["a","b"])`
        : `${c.source}: ${c.operator} takes a field and one value, e.g. ${c.operator}(${c.field},"value")`,
      pointer,
    });
    return;
  }
  out.dimensions.push({ key: c.field, operator: c.operator as DimensionFilter['operator'], values });
}

/**
 * Validates a Query Metric Aggregates body. Every problem found is reported at once, as a 400 whose
 * errors point at the attribute (and the filter entry) at fault.
 */
export function parseMetricAggregateQuery(body: unknown, limits: { maxRangeDays: number }): MetricAggregateQuery {
  const parsed = BodySchema.safeParse(body);
  if (!parsed.success) throw new HttpError(400, zodItems(parsed.error));
  const a = parsed.data.data.attributes;
  const errors: ErrorItem[] = [];

  const timezoneName = a.timezone ?? 'UTC';
  const timezone = resolveTimeZone(timezoneName);
  if (!timezone) {
    errors.push({
      code: 'invalid',
      detail: `timezone ${JSON.stringify(timezoneName)} is not a known IANA time zone (names are case-sensitive, e.g. America/New_York)`,
      pointer: '/data/attributes/timezone',
    });
  }

  const outcome: FilterOutcome = { dimensions: [] };
  const filterEntries = typeof a.filter === 'string' ? [a.filter] : a.filter;
  filterEntries.forEach((entry, index) => {
    const pointer = typeof a.filter === 'string' ? FILTER_POINTER : `${FILTER_POINTER}/${index}`;
    let conditions: FilterCondition[];
    try {
      conditions = parseFilter(entry);
    } catch (err) {
      if (!(err instanceof FilterSyntaxError)) throw err;
      errors.push({
        code: 'invalid',
        detail: `The filter ${JSON.stringify(entry.slice(0, 200))} is malformed: ${err.message}`,
        pointer,
      });
      return;
    }
    // Without a valid zone the datetimes cannot be read; the zone's own error says why.
    for (const c of conditions) applyCondition(c, timezone ?? 'UTC', outcome, pointer, errors);
  });

  const { startUs, endUs } = outcome;
  if (startUs === undefined || endUs === undefined) {
    errors.push({
      code: 'invalid',
      detail:
        'filter must hold a datetime range: greater-or-equal(datetime,...) (or greater-than) and less-than(datetime,...) (or less-or-equal), e.g. ["greater-or-equal(datetime,2022-12-01T00:00:00)","less-than(datetime,2022-12-08T00:00:00)"]',
      pointer: FILTER_POINTER,
    });
  } else if (endUs <= startUs) {
    errors.push({
      code: 'invalid',
      detail: 'The datetime range is empty: its end must be after its start.',
      pointer: FILTER_POINTER,
    });
  } else if (endUs - startUs > limits.maxRangeDays * MICROS_PER_DAY) {
    errors.push({
      code: 'invalid',
      detail: `The datetime range is longer than ${limits.maxRangeDays} days; query at most ${limits.maxRangeDays} days at a time.`,
      pointer: FILTER_POINTER,
    });
  }

  const measurements = [...new Set(a.measurements)];
  const by = a.by ?? [];
  const duplicate = by.find((key, i) => by.indexOf(key) !== i);
  if (duplicate !== undefined) {
    errors.push({
      code: 'invalid',
      detail: `by names ${JSON.stringify(duplicate)} twice`,
      pointer: '/data/attributes/by',
    });
  }

  let sort: SortKey | null = null;
  if (a.sort !== undefined && a.sort !== null) {
    const descending = a.sort.startsWith('-');
    const field = descending ? a.sort.slice(1) : a.sort;
    if ((MEASUREMENTS as readonly string[]).includes(field) && measurements.includes(field as Measurement)) {
      sort = { field, kind: 'measurement', descending };
    } else if (by.includes(field)) {
      sort = { field, kind: 'dimension', descending };
    } else {
      errors.push({
        code: 'invalid',
        detail: `sort ${JSON.stringify(a.sort)} must name a requested measurement or a dimension of by, with - for descending`,
        pointer: '/data/attributes/sort',
      });
    }
  }

  if (errors.length > 0 || !timezone || startUs === undefined || endUs === undefined) throw new HttpError(400, errors);
  return {
    metricId: a.metric_id,
    measurements,
    interval: a.interval ?? 'day',
    timezone,
    startUs,
    endUs,
    by,
    dimensionFilters: outcome.dimensions,
    sort,
    pageSize: a.page_size ?? DEFAULT_PAGE_SIZE,
    pageCursor: a.page_cursor ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// The answer.

/** One data[] row before paging: its dimension values and each measurement aligned with dates. */
export interface AggregateRow {
  readonly dimensions: readonly string[];
  readonly measurements: Readonly<Partial<Record<Measurement, readonly number[]>>>;
}

export interface MetricAggregateDocument {
  readonly data: {
    readonly type: 'metric-aggregate';
    readonly id: string;
    readonly attributes: { readonly dates: readonly string[]; readonly data: readonly AggregateRow[] };
    readonly links: { readonly self: string };
  };
  readonly links: { readonly self: string; readonly next?: string };
}

/** An instant as Klaviyo writes bucket starts: 2022-11-08T05:00:00+00:00. */
export function formatBucketDate(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, '+00:00');
}

/** Identifies a query's answer (not its page): the aggregate's id, and what a cursor is bound to. */
export function queryFingerprint(q: MetricAggregateQuery, accountId: string): string {
  // The account is part of it: a page_cursor of one account's query is refused in another's.
  const canonical = JSON.stringify([
    accountId,
    q.metricId,
    q.measurements,
    q.interval,
    q.timezone,
    q.startUs,
    q.endUs,
    q.by,
    q.dimensionFilters,
    q.sort,
  ]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 24);
}

type CursorKey = [number | string, ...string[]];

function sortValue(row: AggregateRow, sort: SortKey | null, by: readonly string[]): number | string {
  if (!sort) return '';
  if (sort.kind === 'dimension') return row.dimensions[by.indexOf(sort.field)] ?? '';
  return (row.measurements[sort.field as Measurement] ?? []).reduce((sum, v) => sum + v, 0);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareKeys(a: CursorKey, b: CursorKey, descending: boolean): number {
  const [av, ...ad] = a;
  const [bv, ...bd] = b;
  let c = typeof av === 'number' && typeof bv === 'number' ? av - bv : compareText(String(av), String(bv));
  if (descending) c = -c;
  if (c !== 0) return c;
  // Ties (and every row when unsorted) go by the dimension values, ascending: a total order, so a
  // cursor names one exact place in it.
  for (let i = 0; i < Math.max(ad.length, bd.length); i += 1) {
    const d = compareText(ad[i] ?? '', bd[i] ?? '');
    if (d !== 0) return d;
  }
  return 0;
}

function encodeCursor(fingerprint: string, key: CursorKey): string {
  return Buffer.from(JSON.stringify({ q: fingerprint, k: key }), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string, fingerprint: string): CursorKey {
  const invalid = () =>
    new HttpError(400, {
      code: 'invalid',
      detail:
        'page_cursor is not a cursor of this query: send the body of the first page unchanged, with page_cursor from its links.next',
      pointer: '/data/attributes/page_cursor',
    });
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  const parsed = z
    .object({ q: z.string(), k: z.tuple([z.union([z.number(), z.string()])], z.string()) })
    .safeParse(decoded);
  if (!parsed.success || parsed.data.q !== fingerprint) throw invalid();
  return parsed.data.k;
}

/**
 * Orders the rows, cuts the page that follows the cursor, and builds the document. The cursor is a
 * keyset position (the last row's sort value and dimensions), so pages stay consistent while events
 * keep arriving: no row is skipped or repeated because another one appeared before it.
 */
export function buildMetricAggregateDocument(
  query: MetricAggregateQuery,
  dates: readonly string[],
  rows: readonly AggregateRow[],
  baseUrl: string,
  accountId: string,
): MetricAggregateDocument {
  const fingerprint = queryFingerprint(query, accountId);
  const descending = query.sort?.descending ?? false;
  const keyed = rows.map((row) => ({
    row,
    key: [sortValue(row, query.sort, query.by), ...row.dimensions] as CursorKey,
  }));
  keyed.sort((x, y) => compareKeys(x.key, y.key, descending));
  let start = 0;
  if (query.pageCursor) {
    const after = decodeCursor(query.pageCursor, fingerprint);
    while (start < keyed.length && compareKeys((keyed[start] as { key: CursorKey }).key, after, descending) <= 0)
      start += 1;
  }
  const page = keyed.slice(start, start + query.pageSize);
  const last = page[page.length - 1];
  const hasMore = start + page.length < keyed.length && last !== undefined;
  const self = `${baseUrl}/api/metric-aggregates`;
  return {
    data: {
      type: 'metric-aggregate',
      id: fingerprint,
      attributes: { dates, data: page.map((p) => p.row) },
      links: { self: `${self}/${fingerprint}` },
    },
    links: {
      self,
      ...(hasMore ? { next: `${self}?page_cursor=${encodeURIComponent(encodeCursor(fingerprint, last.key))}` } : {}),
    },
  };
}
