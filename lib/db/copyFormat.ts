import type { CopyRow } from './port';

/**
 * PostgreSQL's COPY text format, for drivers that can stream COPY FROM STDIN. Only backslash,
 * newline, carriage return and tab (the delimiter) mean something inside a field; `\N` is NULL,
 * and escaping every backslash keeps a value from ever spelling it (or the `\.` end marker).
 */

export const COPY_NULL = '\\N';

const SPECIAL = /[\\\n\r\t]/;
const SPECIAL_ALL = /[\\\n\r\t]/g;
const ESCAPED: Readonly<Record<string, string>> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

export function copyField(value: string | null): string {
  if (value === null) return COPY_NULL;
  return SPECIAL.test(value) ? value.replace(SPECIAL_ALL, (c) => ESCAPED[c] ?? c) : value;
}

/**
 * Refused here rather than sent: PostgreSQL rejects NUL in text, and a lone UTF-16 surrogate would be
 * turned into U+FFFD by the UTF-8 encoder on the way, storing something the caller never had (the
 * JSON path refuses both, so the two paths must too).
 */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function assertStorable(value: string, row: number, column: number): void {
  if (value.includes('\u0000') || LONE_SURROGATE.test(value)) {
    throw new Error(`COPY row ${row}, column ${column}: NUL or an unpaired UTF-16 surrogate cannot be stored`);
  }
}

/** The rows as one COPY text payload; every row must have `width` fields. */
export function copyTextOf(rows: readonly CopyRow[], width: number): string {
  let out = '';
  for (let r = 0; r < rows.length; r += 1) {
    const row = rows[r] as CopyRow;
    if (row.length !== width) throw new Error(`COPY row ${r} has ${row.length} fields, not ${width}`);
    for (let c = 0; c < width; c += 1) {
      const value = row[c] ?? null;
      if (value !== null) assertStorable(value, r, c);
      out += (c === 0 ? '' : '\t') + copyField(value);
    }
    out += '\n';
  }
  return out;
}
