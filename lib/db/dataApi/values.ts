import type { ColumnMetadata, Field, SqlParameter } from '@aws-sdk/client-rds-data';
import type { Row, SqlParam } from '../port';
import { parameterName } from './sql';

/**
 * Values between the port and the Data API, both ways.
 *
 * Parameters: the Data API sends a stringValue to PostgreSQL as varchar, a longValue as bigint, a
 * doubleValue as double precision, and a typeHint turns a string into TIMESTAMP / DECIMAL / JSON /
 * UUID / DATE / TIME. The port's repositories cast in SQL (`$1::jsonb`, `$2::timestamptz`), which
 * works from varchar, so plain strings travel without hints.
 *
 * Results: decoded by the column's typeName into the port's contract (int8 and numeric as exact
 * strings, int2/int4/float as numbers, timestamps as Date, json parsed). The driver asks for
 * longReturnType STRING: a longValue is a JSON number, and the SDK parses JSON numbers into doubles,
 * so an int8 beyond 2^53 would come back rounded. int2/int4 are decoded from either encoding.
 */

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** A Date as the TIMESTAMP typeHint wants it: 'YYYY-MM-DD HH:MM:SS.sss', in UTC. */
export function formatTimestamp(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new TypeError('Invalid Date passed as a SQL parameter');
  const year = date.getUTCFullYear();
  if (year < 1 || year > 9999)
    throw new TypeError(`Date ${date.toISOString()} is outside years 1..9999 and has no TIMESTAMP form`);
  return (
    `${pad(year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${pad(date.getUTCMilliseconds(), 3)}`
  );
}

function fieldOf(value: SqlParam): { value: Field; typeHint?: SqlParameter['typeHint'] } {
  if (value === null || value === undefined) return { value: { isNull: true } };
  switch (typeof value) {
    case 'string':
      return { value: { stringValue: value } };
    case 'boolean':
      return { value: { booleanValue: value } };
    case 'number':
      // JSON has no NaN or Infinity; as text, a cast in SQL (`::float8`) reads them.
      if (!Number.isFinite(value)) return { value: { stringValue: String(value) } };
      if (Number.isInteger(value) && Math.abs(value) < 2 ** 63) return { value: { longValue: value } };
      return { value: { doubleValue: value } };
    case 'bigint':
      if (value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) {
        return { value: { longValue: Number(value) } };
      }
      // A JSON number would lose digits on the way (and beyond 2^63 is no long at all): exact
      // decimal text, which PostgreSQL receives as numeric and compares or casts exactly.
      return { value: { stringValue: value.toString() }, typeHint: 'DECIMAL' };
    default:
      if (value instanceof Date) return { value: { stringValue: formatTimestamp(value) }, typeHint: 'TIMESTAMP' };
      throw new TypeError(`Unsupported SQL parameter type: ${typeof value}`);
  }
}

/** The port's positional parameters as the Data API's named ones (:p1..:pn). */
export function toSqlParameters(params: readonly SqlParam[]): SqlParameter[] {
  return params.map((param, index) => {
    const { value, typeHint } = fieldOf(param);
    return typeHint ? { name: parameterName(index + 1), value, typeHint } : { name: parameterName(index + 1), value };
  });
}

// ---------------------------------------------------------------------------------------------
// Results

interface LooseField {
  readonly isNull?: boolean;
  readonly booleanValue?: boolean;
  readonly longValue?: number;
  readonly doubleValue?: number;
  readonly stringValue?: string;
  readonly blobValue?: Uint8Array;
  readonly arrayValue?: LooseArray;
}

interface LooseArray {
  readonly booleanValues?: readonly (boolean | null)[];
  readonly longValues?: readonly (number | null)[];
  readonly doubleValues?: readonly (number | null)[];
  readonly stringValues?: readonly (string | null)[];
  readonly arrayValues?: readonly LooseArray[];
}

type Decoder = (field: LooseField) => unknown;

const TIMESTAMP_TEXT =
  /^(\d{4,})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?( BC)?$/;

/**
 * 'YYYY-MM-DD HH:MM:SS[.ffffff]' as the Data API returns timestamps (timestamptz always in UTC),
 * or 'YYYY-MM-DD' for a date, read as UTC. Like postgres.js, sub-millisecond digits are dropped
 * and text it cannot place in time (infinity) becomes an Invalid Date.
 */
export function parseTimestamp(text: string): Date {
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m) return new Date(Number.NaN);
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', zone, bc] = m;
  const ms = Number((fraction + '000').slice(0, 3));
  const date = new Date(0);
  date.setUTCFullYear(bc ? 1 - Number(y) : Number(y), Number(mo) - 1, Number(d));
  date.setUTCHours(Number(h), Number(mi), Number(s), ms);
  if (zone && zone !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const [zh = '0', zm = '0', zs = '0'] = zone.slice(1).match(/\d{2}/g) ?? [];
    date.setTime(date.getTime() - sign * (Number(zh) * 3600 + Number(zm) * 60 + Number(zs)) * 1000);
  }
  return date;
}

const asNumber = (f: LooseField): number | null => {
  if (f.longValue !== undefined) return f.longValue;
  if (f.doubleValue !== undefined) return f.doubleValue;
  if (f.stringValue !== undefined) return Number(f.stringValue);
  return null;
};

const asExactText = (f: LooseField): string | null => {
  if (f.stringValue !== undefined) return f.stringValue;
  if (f.longValue !== undefined) return String(f.longValue);
  if (f.doubleValue !== undefined) return String(f.doubleValue);
  return null;
};

const asDate = (f: LooseField): Date | null => (f.stringValue === undefined ? null : parseTimestamp(f.stringValue));

const asJson = (f: LooseField): unknown => (f.stringValue === undefined ? null : JSON.parse(f.stringValue));

const asBoolean = (f: LooseField): boolean | null => {
  if (f.booleanValue !== undefined) return f.booleanValue;
  if (f.stringValue !== undefined) return f.stringValue === 't' || f.stringValue === 'true';
  if (f.longValue !== undefined) return f.longValue !== 0;
  return null;
};

const asBytes = (f: LooseField): Buffer | null => (f.blobValue === undefined ? null : Buffer.from(f.blobValue));

/** Whatever the field holds, for types the contract says nothing about (text, uuid, interval, enums...). */
const asIs = (f: LooseField): unknown => {
  if (f.stringValue !== undefined) return f.stringValue;
  if (f.longValue !== undefined) return f.longValue;
  if (f.doubleValue !== undefined) return f.doubleValue;
  if (f.booleanValue !== undefined) return f.booleanValue;
  if (f.blobValue !== undefined) return Buffer.from(f.blobValue);
  if (f.arrayValue !== undefined) return decodeArray(f.arrayValue, (element) => element);
  return null;
};

const SCALAR_DECODERS: Readonly<Record<string, Decoder>> = {
  int2: asNumber,
  int4: asNumber,
  smallint: asNumber,
  integer: asNumber,
  int: asNumber,
  serial: asNumber,
  serial4: asNumber,
  smallserial: asNumber,
  serial2: asNumber,
  oid: asNumber,
  float4: asNumber,
  float8: asNumber,
  real: asNumber,
  'double precision': asNumber,
  int8: asExactText,
  bigint: asExactText,
  bigserial: asExactText,
  serial8: asExactText,
  numeric: asExactText,
  decimal: asExactText,
  bool: asBoolean,
  boolean: asBoolean,
  timestamptz: asDate,
  timestamp: asDate,
  date: asDate,
  json: asJson,
  jsonb: asJson,
  bytea: asBytes,
};

function elementDecoder(baseType: string): (value: unknown) => unknown {
  const decode = SCALAR_DECODERS[baseType];
  return (value) => {
    if (value === null || value === undefined) return null;
    if (!decode) return value;
    switch (typeof value) {
      case 'string':
        return decode({ stringValue: value });
      case 'number':
        return decode(Number.isInteger(value) ? { longValue: value } : { doubleValue: value });
      case 'boolean':
        return decode({ booleanValue: value });
      default:
        return value;
    }
  };
}

function decodeArray(array: LooseArray, element: (value: unknown) => unknown): unknown[] {
  if (array.arrayValues) return array.arrayValues.map((inner) => decodeArray(inner, element));
  const values = array.stringValues ?? array.longValues ?? array.doubleValues ?? array.booleanValues ?? [];
  return values.map(element);
}

function normalizeTypeName(typeName: string | undefined): string {
  return (typeName ?? '').toLowerCase().replace(/^"|"$/g, '');
}

function decoderFor(column: ColumnMetadata): Decoder {
  const typeName = normalizeTypeName(column.typeName);
  // PostgreSQL names array types after their element type with a leading underscore (_int8).
  const arrayBase = typeName.startsWith('_')
    ? typeName.slice(1)
    : typeName.endsWith('[]')
      ? typeName.slice(0, -2)
      : undefined;
  if (arrayBase !== undefined) {
    const element = elementDecoder(arrayBase);
    return (f) => (f.arrayValue ? decodeArray(f.arrayValue, element) : asIs(f));
  }
  const scalar = SCALAR_DECODERS[typeName] ?? asIs;
  return (f) => (f.arrayValue ? decodeArray(f.arrayValue, elementDecoder(typeName)) : scalar(f));
}

/** Rows as the port returns them: one object per record, keyed by column name. */
export function decodeRecords<T extends Row>(
  records: readonly (readonly Field[])[] | undefined,
  columns: readonly ColumnMetadata[] | undefined,
): T[] {
  if (!records || records.length === 0) return [];
  if (!columns) throw new Error('The Data API returned records without column metadata');
  const names = columns.map((c, i) => c.name ?? c.label ?? `?column?${i}`);
  const decoders = columns.map(decoderFor);
  return records.map((record) => {
    const row: Row = {};
    record.forEach((field, i) => {
      const f = field as LooseField;
      const decode = decoders[i] ?? asIs;
      row[names[i] ?? `?column?${i}`] = f.isNull ? null : decode(f);
    });
    return row as T;
  });
}
