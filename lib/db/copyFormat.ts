import type { CopyFields, CopyLine, CopyRow } from './port';

/**
 * PostgreSQL's COPY text format, for drivers that can stream COPY FROM STDIN. Only backslash,
 * newline, carriage return and tab (the delimiter) mean something inside a field; `\N` is NULL,
 * and escaping every backslash keeps a value from ever spelling it (or the `\.` end marker).
 */

export const COPY_NULL = '\\N';

const SPECIAL = /[\\\n\r\t]/;
const SPECIAL_ALL = /[\\\n\r\t]/g;
const ESCAPED: Readonly<Record<string, string>> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const UNESCAPED: Readonly<Record<string, string>> = { '\\': '\\', n: '\n', r: '\r', t: '\t' };

export function copyField(value: string | null): string {
  if (value === null) return COPY_NULL;
  return SPECIAL.test(value) ? value.replace(SPECIAL_ALL, (c) => ESCAPED[c] ?? c) : value;
}

// ES2024's String.prototype.isWellFormed (Node 20 and later): one native pass, where the regular
// expression that finds a lone surrogate took several times as long on a large JSON field.
const isWellFormed = (value: string): boolean => (value as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * Refused here rather than sent: PostgreSQL rejects NUL in text, and a lone UTF-16 surrogate would be
 * turned into U+FFFD by the UTF-8 encoder on the way, storing something the caller never had (the
 * JSON path refuses both, so the two paths must too).
 */
function isStorable(value: string): boolean {
  return !value.includes('\u0000') && isWellFormed(value);
}

function assertStorable(value: string, row: number, column: number): void {
  if (!isStorable(value)) {
    throw new Error(`COPY row ${row}, column ${column}: NUL or an unpaired UTF-16 surrogate cannot be stored`);
  }
}

const isLine = (row: CopyRow): row is CopyLine => !Array.isArray(row);

/** The rows as one COPY text payload; every row must have `width` fields (a CopyLine was checked when made). */
export function copyTextOf(rows: readonly CopyRow[], width: number): string {
  let out = '';
  for (let r = 0; r < rows.length; r += 1) {
    const row = rows[r] as CopyRow;
    if (isLine(row)) {
      out += `${row.line}\n`;
      continue;
    }
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

/** Fields as one COPY line (no line end): what checkedCopyLine reads back. */
export function copyLineOf(fields: CopyFields): string {
  let out = '';
  for (let c = 0; c < fields.length; c += 1) {
    const value = fields[c] ?? null;
    if (value !== null) assertStorable(value, 0, c);
    out += (c === 0 ? '' : '\t') + copyField(value);
  }
  return out;
}

/**
 * A line of COPY text from elsewhere (a queue message), split into its `width` fields, still
 * escaped; or why it cannot be copied as it is. Accepted: the escapes copyField writes (`\\`, `\n`,
 * `\r`, `\t`) and `\N` as a whole field. Refused: another escape (COPY would read `\x41` or `\101`
 * as a character this process would not see, so the stored row and what this process derives from
 * it could differ), a raw carriage return or newline (COPY's line ends), NUL, a lone surrogate, and
 * another number of fields.
 */
export function checkedCopyLine(line: string, width: number): string[] | string {
  if (line.includes('\r') || line.includes('\n')) return 'a line end inside the row';
  if (!isStorable(line)) return 'NUL or an unpaired UTF-16 surrogate';
  const fields = line.split('\t');
  if (fields.length !== width) return `${fields.length} fields, not ${width}`;
  for (let at = line.indexOf('\\'); at >= 0; at = line.indexOf('\\', at + 2)) {
    const next = line.charAt(at + 1);
    if (next in UNESCAPED) continue;
    if (next === 'N' && (at === 0 || line.charAt(at - 1) === '\t')) {
      const end = line.charAt(at + 2);
      if (end === '' || end === '\t') continue;
    }
    return `an escape COPY reads otherwise than this process (at character ${at})`;
  }
  return fields;
}

/** A field of a line checkedCopyLine accepted, as its value (null for `\N`). */
export function copyFieldValue(field: string): string | null {
  if (field === COPY_NULL) return null;
  return field.includes('\\') ? field.replace(/\\(.)/g, (_, c: string) => UNESCAPED[c] ?? c) : field;
}
