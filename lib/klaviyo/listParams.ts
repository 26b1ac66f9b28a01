import { createHash } from 'node:crypto';
import { z } from 'zod';
import { HttpError, type ErrorItem } from './errors';
import { FilterSyntaxError, parseDateTime, parseFilter, valueText, type FilterCondition } from './filter';

/**
 * The query string of Klaviyo's GET list routes (filter, sort, page[size], page[cursor], include),
 * validated: every problem becomes a 400 whose source.parameter names the parameter, and a
 * parameter these routes do not serve (fields[...], additional-fields[...]) is refused rather than
 * silently ignored, so a client never gets a shape it did not ask for.
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
    detail: `The query parameter ${JSON.stringify(k)} is not supported here; this route takes ${allowed.join(', ')}.`,
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

/** The related resources named in include=a,b (each at most once, all in `allowed`). */
export function includes<T extends string>(query: QueryParams, allowed: readonly T[]): Set<T> {
  const text = query.include;
  const out = new Set<T>();
  if (text === undefined) return out;
  for (const raw of text.split(',')) {
    const name = raw.trim();
    if (!(allowed as readonly string[]).includes(name)) {
      throw parameterError(
        'include',
        `include takes ${allowed.join(', ')} (comma-separated), not ${JSON.stringify(name.slice(0, 100))}.`,
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

const CursorSchema = z.object({ f: z.string(), k: z.array(z.string()).min(1).max(4) });

export function encodeCursor(print: string, key: readonly string[]): string {
  return Buffer.from(JSON.stringify({ f: print, k: key }), 'utf8').toString('base64url');
}

export function decodeCursor(query: QueryParams, print: string, length: number): string[] | undefined {
  const text = query['page[cursor]'];
  if (text === undefined) return undefined;
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    decoded = undefined;
  }
  const parsed = CursorSchema.safeParse(decoded);
  if (!parsed.success || parsed.data.f !== print || parsed.data.k.length !== length) {
    throw parameterError(
      'page[cursor]',
      'page[cursor] is not a cursor of this query: follow links.next of the previous page without changing the other parameters.',
    );
  }
  return parsed.data.k;
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
): { self: string; next?: string } {
  const self = linkTo(baseUrl, path, query);
  if (nextCursor === undefined) return { self };
  return { self, next: linkTo(baseUrl, path, { ...query, 'page[cursor]': nextCursor }) };
}
