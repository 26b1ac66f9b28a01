/**
 * Klaviyo's filter syntax (https://developers.klaviyo.com/en/reference/api_overview#filtering):
 * `operator(field,value)` expressions, several joined by commas or wrapped in `and(...)`, e.g.
 *   equals(metric_id,"X"),greater-or-equal(datetime,2022-12-01T00:00:00)
 *   any($message,["A","B"])
 * Values are quoted strings ("..." or '...'), numbers, true/false/null, lists [...] of those, or
 * bare text (datetimes are written unquoted). This module only parses; which fields and operators
 * an endpoint accepts is the endpoint's business.
 */
export type FilterValue =
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'number'; readonly value: number; readonly text: string }
  | { readonly kind: 'boolean'; readonly value: boolean }
  | { readonly kind: 'null' }
  | { readonly kind: 'bare'; readonly value: string }
  | { readonly kind: 'list'; readonly items: readonly FilterValue[] };

export interface FilterCondition {
  readonly operator: string;
  readonly field: string;
  /** Absent for operators that take only a field (has). */
  readonly value?: FilterValue;
  /** The condition as written, for error messages. */
  readonly source: string;
}

export class FilterSyntaxError extends Error {
  override readonly name = 'FilterSyntaxError';
}

const MAX_FILTER_LENGTH = 10_000;
const OPERATOR = /[a-z][a-z-]*/y;

class Parser {
  private pos = 0;
  constructor(private readonly text: string) {}

  /** A comma-separated list of conditions; `and(...)` groups are flattened. */
  parseAll(): FilterCondition[] {
    const out: FilterCondition[] = [];
    this.skipSpace();
    if (this.pos >= this.text.length) throw this.error('is empty');
    for (;;) {
      out.push(...this.parseExpression());
      this.skipSpace();
      if (this.pos >= this.text.length) return out;
      this.expect(',');
    }
  }

  private parseExpression(): FilterCondition[] {
    this.skipSpace();
    const start = this.pos;
    OPERATOR.lastIndex = this.pos;
    const m = OPERATOR.exec(this.text);
    if (!m) throw this.error('expected an operator such as equals(...)');
    const operator = m[0];
    this.pos = OPERATOR.lastIndex;
    this.skipSpace();
    this.expect('(');
    if (operator === 'and') {
      const inner: FilterCondition[] = [];
      for (;;) {
        inner.push(...this.parseExpression());
        this.skipSpace();
        if (this.peek() === ')') break;
        this.expect(',');
      }
      this.expect(')');
      return inner;
    }
    if (operator === 'or' || operator === 'not') {
      throw this.error(`the ${operator}(...) operator is not supported here`, start);
    }
    const field = this.parseField();
    this.skipSpace();
    let value: FilterValue | undefined;
    if (this.peek() === ',') {
      this.pos += 1;
      value = this.parseValue();
      this.skipSpace();
    }
    this.expect(')');
    return [{ operator, field, ...(value ? { value } : {}), source: this.text.slice(start, this.pos).trim() }];
  }

  private parseField(): string {
    this.skipSpace();
    const c = this.peek();
    if (c === '"' || c === "'") return this.parseQuoted();
    const start = this.pos;
    while (this.pos < this.text.length && this.text[this.pos] !== ',' && this.text[this.pos] !== ')') this.pos += 1;
    const field = this.text.slice(start, this.pos).trim();
    if (!field) throw this.error('expected a field name');
    return field;
  }

  private parseValue(): FilterValue {
    this.skipSpace();
    const c = this.peek();
    if (c === '"' || c === "'") return { kind: 'string', value: this.parseQuoted() };
    if (c === '[') {
      this.pos += 1;
      const items: FilterValue[] = [];
      this.skipSpace();
      if (this.peek() === ']') {
        this.pos += 1;
        return { kind: 'list', items };
      }
      for (;;) {
        const item = this.parseValue();
        if (item.kind === 'list') throw this.error('lists cannot be nested');
        items.push(item);
        this.skipSpace();
        if (this.peek() === ']') {
          this.pos += 1;
          return { kind: 'list', items };
        }
        this.expect(',');
      }
    }
    const start = this.pos;
    while (this.pos < this.text.length && !',)]'.includes(this.text[this.pos] as string)) this.pos += 1;
    const bare = this.text.slice(start, this.pos).trim();
    if (!bare) throw this.error('expected a value');
    if (bare === 'true' || bare === 'false') return { kind: 'boolean', value: bare === 'true' };
    if (bare === 'null') return { kind: 'null' };
    if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(bare)) return { kind: 'number', value: Number(bare), text: bare };
    return { kind: 'bare', value: bare };
  }

  private parseQuoted(): string {
    const quote = this.text[this.pos] as string;
    this.pos += 1;
    let out = '';
    while (this.pos < this.text.length) {
      const c = this.text[this.pos] as string;
      if (c === '\\') {
        const next = this.text[this.pos + 1];
        if (next === undefined) break;
        out += next;
        this.pos += 2;
        continue;
      }
      if (c === quote) {
        this.pos += 1;
        return out;
      }
      out += c;
      this.pos += 1;
    }
    throw this.error('a quoted string is not closed');
  }

  private peek(): string | undefined {
    return this.text[this.pos];
  }

  private skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos] as string)) this.pos += 1;
  }

  private expect(c: string): void {
    this.skipSpace();
    if (this.text[this.pos] !== c) throw this.error(`expected "${c}"`);
    this.pos += 1;
  }

  private error(message: string, at = this.pos): FilterSyntaxError {
    return new FilterSyntaxError(`${message} at character ${at + 1}`);
  }
}

/** Parses one filter string (which may hold several comma-separated conditions). */
export function parseFilter(text: string): FilterCondition[] {
  if (text.length > MAX_FILTER_LENGTH) throw new FilterSyntaxError(`is longer than ${MAX_FILTER_LENGTH} characters`);
  return new Parser(text).parseAll();
}

/** A value's text as it compares with a property's text form (numbers as written, strings as is). */
export function valueText(value: FilterValue): string | null {
  switch (value.kind) {
    case 'string':
    case 'bare':
      return value.value;
    case 'number':
      return value.text;
    case 'boolean':
      return value.value ? 'true' : 'false';
    case 'null':
      return null;
    case 'list':
      return null;
  }
}

// Klaviyo's datetime filter values: ISO 8601, "T" or a space between date and time, optional
// fraction (to microseconds) and optional offset (Z, +hh:mm, +hhmm, +hh).
const DATETIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

export interface ParsedDateTime {
  /** Wall-clock fields; month 1-12. */
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  /** Microseconds within the second (finer digits are dropped). */
  readonly micro: number;
  /** Offset east of UTC in minutes, or null when the text names none. */
  readonly offsetMinutes: number | null;
}

/** Parses an ISO 8601 date-time; undefined when malformed or not a real calendar date/time. */
export function parseDateTime(text: string): ParsedDateTime | undefined {
  const m = DATETIME.exec(text.trim());
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const [hour, minute, second] = [Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0)];
  const micro = m[7] ? Number(m[7].padEnd(6, '0').slice(0, 6)) : 0;
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const probe = new Date(Date.UTC(year, month - 1, day));
  if (probe.getUTCMonth() !== month - 1 || probe.getUTCDate() !== day) return undefined;
  let offsetMinutes: number | null = null;
  const offset = m[8];
  if (offset) {
    if (offset === 'Z' || offset === 'z') offsetMinutes = 0;
    else {
      const digits = offset.slice(1).replace(':', '');
      const hours = Number(digits.slice(0, 2));
      const minutes = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
      if (hours > 18 || minutes > 59) return undefined;
      offsetMinutes = (offset[0] === '-' ? -1 : 1) * (hours * 60 + minutes);
    }
  }
  return { year, month, day, hour, minute, second, micro, offsetMinutes };
}
