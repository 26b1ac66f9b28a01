import { createHash } from 'node:crypto';
import { z } from 'zod';
import { HttpError, type ErrorItem } from './errors';
import { FilterSyntaxError, parseDateTime, parseFilter, valueText, type FilterCondition } from './filter';

/**
 * The query string of Klaviyo's GET list routes (filter, sort, page[size], page[cursor], include),
 * validated: every problem becomes a 400 whose source.parameter names the parameter. Each route
 * takes the parameters Klaviyo documents on it (fieldsets.ts applies `fields[...]`); anything else is
 * refused rather than silently ignored, so a client never gets a shape it did not ask for.
 */
export type QueryParams = Readonly<Record<string, string>>;

export function parameterError(parameter: string, detail: string): HttpError {
  return new HttpError(400, { code: 'invalid', detail, parameter });
}

/** Refuses parameters outside `allowed`, naming each. */
export function checkKnownParams(query: QueryParams, allowed: readonly string[]): void {
  const unknown = Object.keys(query).filter((k) => !allowed.includes(k));
  if (unknown.length === 0) return;
  const items: ErrorItem[] = unknown.map((k) => ({
    code: 'invalid',
    detail: `The query parameter ${JSON.stringify(k.slice(0, 100))} is not one this route takes: ${allowed.join(', ') || 'none'}.`,
    parameter: k,
  }));
  throw new HttpError(400, items);
}

export function pageSize(query: QueryParams, defaults: { readonly size: number; readonly max: number }): number {
  const text = query['page[size]'];
  if (text === undefined) return defaults.size;
  const n = /^\d{1,7}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > defaults.max) {
    throw parameterError('page[size]', `page[size] must be a whole number from 1 to ${defaults.max}.`);
  }
  return n;
}

/**
 * The related resources named in include=a,b (each at most once, all in `allowed`). Those Klaviyo
 * documents on the route but this backend never stores (`unavailable`) are a 400 saying so.
 */
export function includes<T extends string>(
  query: QueryParams,
  allowed: readonly T[],
  unavailable: readonly string[] = [],
): Set<T> {
  const text = query.include;
  const out = new Set<T>();
  if (text === undefined) return out;
  for (const raw of text.split(',')) {
    const name = raw.trim();
    if (unavailable.includes(name)) {
      throw parameterError(
        'include',
        `include=${name} is not available here: this backend stores events, metrics and profiles only` +
          (allowed.length > 0 ? `; include takes ${allowed.join(', ')}.` : '.'),
      );
    }
    if (!(allowed as readonly string[]).includes(name)) {
      throw parameterError(
        'include',
        `include takes ${allowed.length > 0 ? allowed.join(', ') : 'nothing here'} (comma-separated), not ${JSON.stringify(name.slice(0, 100))}.`,
      );
    }
    out.add(name as T);
  }
  return out;
}

export function parseFilterParam(query: QueryParams): FilterCondition[] {
  const text = query.filter;
  if (text === undefined) return [];
  try {
    return parseFilter(text);
  } catch (err) {
    if (err instanceof FilterSyntaxError) throw parameterError('filter', `The filter is malformed: ${err.message}`);
    throw err;
  }
}

/** The string a condition compares with (a quoted or bare value), or an error naming the condition. */
export function conditionText(c: FilterCondition): string {
  const text = c.value && c.value.kind !== 'list' && c.value.kind !== 'null' ? valueText(c.value) : null;
  if (text === null || text === '')
    throw parameterError(
      'filter',
      `${c.source}: ${c.operator} takes a field and one value, e.g. ${c.operator}(${c.field},"value")`,
    );
  return text;
}

/** The strings of a list condition such as any(email,["a","b"]). */
export function conditionList(c: FilterCondition): string[] {
  const items = c.value?.kind === 'list' ? c.value.items.map((v) => valueText(v)) : [];
  if (items.length === 0 || items.length > 100 || !items.every((v): v is string => typeof v === 'string' && v !== '')) {
    throw parameterError(
      'filter',
      `${c.source}: ${c.operator} takes a field and a list of 1 to 100 values, e.g. ${c.operator}(${c.field},["a","b"])`,
    );
  }
  return items;
}

/** Epoch microseconds as ISO 8601 text with six fraction digits (timestamptz's resolution). */
export function isoFromMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  return new Date(ms).toISOString().replace('Z', `${String(us - ms * 1000).padStart(3, '0')}Z`);
}

/**
 * An instant in a filter: ISO 8601 (without an offset it is UTC, as Klaviyo reads it), or, for the
 * `timestamp` field, unix seconds. Epoch microseconds.
 */
export function conditionInstantMicros(c: FilterCondition): number {
  const v = c.value;
  if (v?.kind === 'number' && c.field === 'timestamp' && Number.isFinite(v.value))
    return Math.round(v.value * 1_000_000);
  const text = v && (v.kind === 'bare' || v.kind === 'string') ? v.value : undefined;
  const dt = text === undefined ? undefined : parseDateTime(text);
  if (!dt)
    throw parameterError('filter', `${c.source}: the value must be an ISO 8601 datetime such as 2022-12-01T00:00:00Z`);
  const ms = Date.UTC(dt.year, dt.month - 1, dt.day, dt.hour, dt.minute, dt.second) - (dt.offsetMinutes ?? 0) * 60_000;
  return ms * 1000 + dt.micro;
}

/**
 * Opaque keyset cursors: the last row's sort key, bound to a fingerprint of the request (filter,
 * sort, route), so a cursor cannot be replayed against another query and skip or repeat rows.
 */
export function fingerprint(parts: readonly unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

// k: the key of the row the page starts after (or, with d = "prev", before); null is a sort value
// the row does not have (a profile without `updated`).
const CursorSchema = z.object({
  f: z.string(),
  k: z.array(z.string().nullable()).min(1).max(4),
  d: z.literal('prev').optional(),
});

export function encodeCursor(print: string, key: readonly (string | null)[], backward = false): string {
  return Buffer.from(JSON.stringify({ f: print, k: key, ...(backward ? { d: 'prev' } : {}) }), 'utf8').toString(
    'base64url',
  );
}

/** A cursor of links.next (forward) or links.prev (backward). */
export interface KeysetCursor {
  readonly key: readonly (string | null)[];
  readonly backward: boolean;
}

export function decodeKeyset(query: QueryParams, print: string, length: number): KeysetCursor | undefined {
  const text = query['page[cursor]'];
  if (text === undefined) return undefined;
  const parsed = parseCursor(text, print, length);
  return { key: parsed.k, backward: parsed.d === 'prev' };
}

function cursorError(): HttpError {
  return parameterError(
    'page[cursor]',
    'page[cursor] is not a cursor of this query: follow links.next or links.prev of the previous page without changing the other parameters.',
  );
}

function parseCursor(text: string, print: string, length: number): z.infer<typeof CursorSchema> {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    decoded = undefined;
  }
  const parsed = CursorSchema.safeParse(decoded);
  if (!parsed.success || parsed.data.f !== print || parsed.data.k.length !== length) throw cursorError();
  return parsed.data;
}

/** The URL of this route with these parameters (brackets left readable, as Klaviyo writes its links). */
export function linkTo(baseUrl: string, path: string, query: QueryParams): string {
  const pairs = Object.entries(query).map(
    ([k, v]) => `${encodeURIComponent(k).replace(/%5B/g, '[').replace(/%5D/g, ']')}=${encodeURIComponent(v)}`,
  );
  return `${baseUrl}${path}${pairs.length > 0 ? `?${pairs.join('&')}` : ''}`;
}

export function pageLinks(
  baseUrl: string,
  path: string,
  query: QueryParams,
  nextCursor: string | undefined,
  prevCursor?: string,
): { self: string; next?: string; prev?: string } {
  const self = linkTo(baseUrl, path, query);
  return {
    self,
    ...(nextCursor !== undefined ? { next: linkTo(baseUrl, path, { ...query, 'page[cursor]': nextCursor }) } : {}),
    ...(prevCursor !== undefined ? { prev: linkTo(baseUrl, path, { ...query, 'page[cursor]': prevCursor }) } : {}),
  };
}

/**
 * One keyset page, forwards or (from a links.prev cursor) backwards. `fetch` reads up to `limit`
 * rows after `after` in the sort order, or in the reverse order when `reversed`. The first page has no
 * prev; a page reached backwards always has a next (the page it came from).
 */
export async function keysetPage<R>(
  cursor: KeysetCursor | undefined,
  size: number,
  print: string,
  keyOf: (row: R) => readonly (string | null)[],
  fetch: (after: readonly (string | null)[] | undefined, reversed: boolean, limit: number) => Promise<R[]>,
): Promise<{ rows: R[]; next?: string; prev?: string }> {
  const backward = cursor?.backward ?? false;
  const fetched = await fetch(cursor?.key, backward, size + 1);
  const more = fetched.length > size;
  const rows = backward ? fetched.slice(0, size).reverse() : fetched.slice(0, size);
  const first = rows[0];
  const last = rows[rows.length - 1];
  const hasNext = backward ? true : more;
  const hasPrev = backward ? more : cursor !== undefined;
  return {
    rows,
    ...(hasNext && last ? { next: encodeCursor(print, keyOf(last)) } : {}),
    ...(hasPrev && first ? { prev: encodeCursor(print, keyOf(first), true) } : {}),
  };
}
