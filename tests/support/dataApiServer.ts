import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import postgres from 'postgres';

/**
 * A local RDS Data API endpoint over a real PostgreSQL, for tests and benches: the AWS SDK talks
 * HTTP to it exactly as it talks to AWS (REST-JSON: POST /Execute, /BatchExecute, /BeginTransaction,
 * /CommitTransaction, /RollbackTransaction, SigV4-signed with dummy credentials).
 *
 * Why our own: the npm package data-api-local was seen to hang on Node 20 (its old `pg`) and to
 * cast longValue parameters to int, which hides exactly the bugs a driver test must catch.
 *
 * What it reproduces of the service (Aurora PostgreSQL, Serverless v2 / provisioned flavour):
 * - the database is the request's `database`; the secret is not read (the local server's
 *   credentials are used);
 * - one statement per call: several are refused with ValidationException "Multistatements aren't
 *   supported." (PostgreSQL's extended protocol decides, not a home-made splitter);
 * - named parameters (:name, `::` casts untouched); stringValue sent as varchar, longValue as
 *   bigint, doubleValue as double precision, booleanValue as boolean, isNull untyped, typeHint
 *   TIMESTAMP / DATE / TIME / DECIMAL / JSON / UUID as those types (TIMESTAMP, DATE and TIME
 *   formats validated as the service does); array parameters refused;
 * - results with columnMetadata (typeName as PostgreSQL names types, e.g. int8, _text) and values
 *   encoded as the service does: integers as longValue (a JSON number with every digit; the SDK then
 *   parses it into a double, as it does against AWS) or stringValue with longReturnType STRING;
 *   numeric as stringValue (or DOUBLE_OR_LONG); timestamptz as 'YYYY-MM-DD HH:MM:SS[.ffffff]'
 *   in UTC whatever the session's TimeZone; json as text; bytea as blobValue; one-dimensional
 *   arrays as arrayValue, multidimensional ones and money/geometric types refused with
 *   UnsupportedResultException;
 * - a response over 1 MiB refused with UnsupportedResultException "The result exceeds the size
 *   limit", a request over 4 MiB refused;
 * - PostgreSQL errors as DatabaseErrorException with PgJDBC's text and `; SQLState: NNNNN`;
 * - transactions held on a connection of their own per transactionId, one call at a time
 *   ("Transaction is still running a query"), rolled back after 3 minutes without a call;
 * - the 45-second call timeout (StatementTimeoutException; continueAfterTimeout lets it run on).
 *
 * Not reproduced: IAM and Secrets Manager, throttling under real load, Aurora pausing and resuming
 * (these are injected on demand through /__local/faults), formatRecordsAs JSON.
 */

export interface DataApiServerOptions {
  /** A URL of the PostgreSQL server with rights on every database the tests use. */
  readonly adminUrl: string;
  readonly port?: number;
  /** The service stops a statement after 45 s unless continueAfterTimeout is set. */
  readonly callTimeoutMs?: number;
  /** Connections per database outside transactions. */
  readonly poolSize?: number;
}

export interface DataApiServer {
  readonly endpoint: string;
  stop(): Promise<void>;
}

export const RESPONSE_LIMIT_BYTES = 1024 * 1024;
const REQUEST_LIMIT_BYTES = 4 * 1024 * 1024;
const TRANSACTION_IDLE_MS = 3 * 60 * 1000;

type Operation =
  'ExecuteStatement' | 'BatchExecuteStatement' | 'BeginTransaction' | 'CommitTransaction' | 'RollbackTransaction';

const ROUTES: Readonly<Record<string, Operation>> = {
  '/Execute': 'ExecuteStatement',
  '/BatchExecute': 'BatchExecuteStatement',
  '/BeginTransaction': 'BeginTransaction',
  '/CommitTransaction': 'CommitTransaction',
  '/RollbackTransaction': 'RollbackTransaction',
};

/** An error answer as the service sends it: status, x-amzn-errortype, and a JSON body. */
class ServiceError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const badRequest = (message: string) => new ServiceError(400, 'BadRequestException', message);
const validation = (message: string) => new ServiceError(400, 'ValidationException', message);

// ---------------------------------------------------------------------------------------------
// Fault injection (tests only): requests for one database fail as the service fails.

export interface FaultSpec {
  readonly status: number;
  readonly type: string;
  readonly message?: string;
  /** 'before' rejects the call without running it; 'after' runs it and loses the answer. */
  readonly when?: 'before' | 'after';
  /** Only calls of this operation; any when absent. */
  readonly operation?: Operation;
}

/** The failures Aurora and the Data API are known to answer with. */
export const FAULTS = {
  throttling: { status: 400, type: 'ThrottlingException', message: 'Rate exceeded' },
  communicationsLinkFailure: {
    status: 400,
    type: 'BadRequestException',
    message:
      'Communications link failure\n\nThe last packet sent successfully to the server was 0 milliseconds ago. ' +
      'The driver has not received any packets from the server.',
  },
  resuming: {
    status: 400,
    type: 'DatabaseResumingException',
    message:
      'The Aurora DB instance db-local is resuming after being auto-paused. Please wait a few seconds and try again.',
  },
  serviceUnavailable: { status: 503, type: 'ServiceUnavailableError' },
  databaseUnavailable: { status: 504, type: 'DatabaseUnavailableException' },
  statementTimeout: { status: 400, type: 'StatementTimeoutException', message: 'Request timed out' },
} satisfies Record<string, FaultSpec>;

interface Stats {
  calls: Record<string, number>;
}

// ---------------------------------------------------------------------------------------------
// Named parameters

/** Positions of `:name` parameters in SQL code (not in strings, identifiers, comments, dollar quotes). */
function namedToPositional(sql: string): { text: string; names: string[] } {
  const names: string[] = [];
  let out = '';
  let i = 0;
  const identChar = /[A-Za-z0-9_$\u0080-\uffff]/;
  const copyUntil = (end: number) => {
    out += sql.slice(i, end);
    i = end;
  };
  while (i < sql.length) {
    const c = sql[i] as string;
    const n = sql[i + 1];
    if (c === '-' && n === '-') {
      const eol = sql.indexOf('\n', i);
      copyUntil(eol === -1 ? sql.length : eol);
    } else if (c === '/' && n === '*') {
      let depth = 0;
      let j = i;
      do {
        if (sql.startsWith('/*', j)) {
          depth += 1;
          j += 2;
        } else if (sql.startsWith('*/', j)) {
          depth -= 1;
          j += 2;
        } else j += 1;
      } while (depth > 0 && j < sql.length);
      copyUntil(j);
    } else if (c === "'" || c === '"') {
      const backslashes = c === "'" && /[Ee]/.test(sql[i - 1] ?? '') && !identChar.test(sql[i - 2] ?? '');
      let j = i + 1;
      while (j < sql.length) {
        if (backslashes && sql[j] === '\\') j += 2;
        else if (sql[j] === c && sql[j + 1] === c) j += 2;
        else if (sql[j] === c) break;
        else j += 1;
      }
      copyUntil(Math.min(j + 1, sql.length));
    } else if (c === '$' && !identChar.test(sql[i - 1] ?? '')) {
      const tag = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(sql.slice(i));
      if (!tag) {
        copyUntil(i + 1);
        continue;
      }
      const close = sql.indexOf(tag[0], i + tag[0].length);
      copyUntil(close === -1 ? sql.length : close + tag[0].length);
    } else if (c === ':' && n === ':') {
      copyUntil(i + 2);
    } else if (c === ':' && sql[i - 1] !== ':' && /[A-Za-z_]/.test(n ?? '')) {
      const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(sql.slice(i + 1))?.[0] as string;
      let position = names.indexOf(name);
      if (position === -1) position = names.push(name) - 1;
      out += `$${position + 1}`;
      i += 1 + name.length;
    } else {
      copyUntil(i + 1);
    }
  }
  return { text: out, names };
}

// ---------------------------------------------------------------------------------------------
// Parameters

interface WireField {
  isNull?: boolean;
  booleanValue?: boolean;
  longValue?: number;
  doubleValue?: number | string;
  stringValue?: string;
  blobValue?: string;
  arrayValue?: unknown;
}

interface WireParameter {
  name?: string;
  value?: WireField;
  typeHint?: string;
}

const OID = {
  bool: 16,
  bytea: 17,
  int8: 20,
  json: 114,
  float8: 701,
  varchar: 1043,
  date: 1082,
  time: 1083,
  timestamp: 1114,
  numeric: 1700,
  uuid: 2950,
} as const;

type Sql = postgres.Sql<Record<string, never>>;

function toPgParameter(sql: Sql, p: WireParameter): unknown {
  const v = p.value ?? {};
  if (v.isNull) return null;
  if (v.arrayValue !== undefined) throw badRequest('Array parameters are not supported.');
  if (v.booleanValue !== undefined) return sql.typed(v.booleanValue, OID.bool);
  if (v.longValue !== undefined) {
    if (!Number.isInteger(v.longValue)) throw badRequest(`Invalid longValue for parameter ${p.name}`);
    return sql.typed(BigInt(v.longValue).toString(), OID.int8);
  }
  if (v.doubleValue !== undefined) return sql.typed(String(v.doubleValue), OID.float8);
  if (v.blobValue !== undefined) return sql.typed(Buffer.from(v.blobValue, 'base64'), OID.bytea);
  if (v.stringValue !== undefined) {
    const s = v.stringValue;
    switch (p.typeHint) {
      case undefined:
        return sql.typed(s, OID.varchar);
      case 'TIMESTAMP':
        if (!/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,9})?$/.test(s)) {
          throw badRequest('Timestamp format must be yyyy-mm-dd hh:mm:ss[.fffffffff]');
        }
        return sql.typed(s, OID.timestamp);
      case 'DATE':
        if (!/^\d{4}-\d{2}-\d{2}$/.test(s)) throw badRequest('Date format must be yyyy-mm-dd');
        return sql.typed(s, OID.date);
      case 'TIME':
        if (!/^\d{2}:\d{2}:\d{2}(\.\d{1,9})?$/.test(s)) throw badRequest('Time format must be hh:mm:ss[.fff]');
        return sql.typed(s, OID.time);
      case 'DECIMAL':
        return sql.typed(s, OID.numeric);
      case 'JSON':
        return sql.typed(s, OID.json);
      case 'UUID':
        return sql.typed(s, OID.uuid);
      default:
        throw validation(`Invalid typeHint ${p.typeHint}`);
    }
  }
  throw badRequest(`Parameter ${p.name} has no value`);
}

// ---------------------------------------------------------------------------------------------
// Results

interface TypeInfo {
  readonly name: string;
  readonly category: string;
  readonly element: number;
}

const UNSUPPORTED = new Set(['money', 'point', 'line', 'lseg', 'box', 'path', 'polygon', 'circle']);

const JDBC_TYPES: Readonly<Record<string, number>> = {
  bool: -7,
  int2: 5,
  int4: 4,
  int8: -5,
  oid: -5,
  float4: 7,
  float8: 8,
  numeric: 2,
  text: 12,
  varchar: 12,
  name: 12,
  bpchar: 1,
  date: 91,
  time: 92,
  timetz: 92,
  timestamp: 93,
  timestamptz: 93,
  bytea: -2,
};

/** A JSON number with every digit: the service sends integers so, whatever the client then makes of them. */
class RawNumber {
  constructor(readonly digits: string) {}
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** PostgreSQL's timestamptz text (any session TimeZone) as the service returns it: UTC, no offset. */
function timestamptzInUtc(text: string): string {
  const m = /^(\d{4,})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d+)?([+-])(\d{2})(?::(\d{2}))?(?::(\d{2}))?$/.exec(
    text,
  );
  if (!m) return text; // infinity, BC dates: as PostgreSQL wrote them
  const [, y, mo, d, h, mi, s, fraction = '', sign, oh, om = '0', os = '0'] = m;
  const date = new Date(0);
  date.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
  date.setUTCHours(Number(h), Number(mi), Number(s), 0);
  const offset = (Number(oh) * 3600 + Number(om) * 60 + Number(os)) * 1000 * (sign === '-' ? -1 : 1);
  const utc = new Date(date.getTime() - offset);
  return (
    `${pad(utc.getUTCFullYear(), 4)}-${pad(utc.getUTCMonth() + 1)}-${pad(utc.getUTCDate())} ` +
    `${pad(utc.getUTCHours())}:${pad(utc.getUTCMinutes())}:${pad(utc.getUTCSeconds())}${fraction}`
  );
}

/** A one-dimensional array literal's elements; 'multi' for a multidimensional one. */
function parseArrayLiteral(text: string): (string | null)[] | 'multi' {
  let i = text.startsWith('[') ? text.indexOf('=') + 1 : 0; // explicit bounds: [0:1]={...}
  if (text[i] !== '{') return [text];
  i += 1;
  const out: (string | null)[] = [];
  if (text[i] === '}') return out;
  for (;;) {
    if (text[i] === '{') return 'multi';
    if (text[i] === '"') {
      let value = '';
      i += 1;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\') i += 1;
        value += text[i] ?? '';
        i += 1;
      }
      i += 1;
      out.push(value);
    } else {
      let j = i;
      while (j < text.length && text[j] !== ',' && text[j] !== '}') j += 1;
      const token = text.slice(i, j).trim();
      out.push(token === 'NULL' ? null : token);
      i = j;
    }
    if (text[i] === ',') i += 1;
    else break;
  }
  return out;
}

interface ResultOptions {
  readonly longAsString: boolean;
  readonly decimalAsNumber: boolean;
}

function encodeScalar(text: string, type: string, options: ResultOptions): Record<string, unknown> {
  switch (type) {
    case 'bool':
      return { booleanValue: text === 't' };
    case 'int2':
    case 'int4':
    case 'int8':
    case 'oid':
      return options.longAsString ? { stringValue: text } : { longValue: new RawNumber(text) };
    case 'float4':
    case 'float8':
      // JSON has no NaN or Infinity; the SDK reads these strings as the special doubles.
      return { doubleValue: /^-?\d/.test(text) ? Number(text) : text };
    case 'numeric':
      if (!options.decimalAsNumber) return { stringValue: text };
      return /^-?\d+$/.test(text)
        ? { longValue: new RawNumber(text) }
        : { doubleValue: /^-?\d/.test(text) ? Number(text) : text };
    case 'timestamptz':
      return { stringValue: timestamptzInUtc(text) };
    case 'bytea':
      return { blobValue: Buffer.from(text.slice(2), 'hex').toString('base64') };
    default:
      return { stringValue: text };
  }
}

function encodeArrayElements(elements: (string | null)[], type: string): Record<string, unknown> {
  switch (type) {
    case 'bool':
      return { booleanValues: elements.map((e) => (e === null ? null : e === 't')) };
    case 'int2':
    case 'int4':
    case 'int8':
      return { longValues: elements.map((e) => (e === null ? null : new RawNumber(e))) };
    case 'float4':
    case 'float8':
      return { doubleValues: elements.map((e) => (e === null ? null : /^-?\d/.test(e) ? Number(e) : e)) };
    case 'timestamptz':
      return { stringValues: elements.map((e) => (e === null ? null : timestamptzInUtc(e))) };
    default:
      return { stringValues: elements };
  }
}

/** Serialises a response, writing RawNumber as bare digits. PostgreSQL text never holds NUL, so the marker is safe. */
function toJson(body: unknown): string {
  const text = JSON.stringify(body, (_key, value: unknown) =>
    value instanceof RawNumber ? `\u0000${value.digits}` : value,
  );
  return text.replace(/"\\u0000(-?\d+)"/g, '$1');
}

// ---------------------------------------------------------------------------------------------
// The server

interface Transaction {
  readonly id: string;
  readonly database: string;
  /** The connection of a postgres.js `begin` held open until Commit or Rollback arrives. */
  readonly sql: Sql;
  /** Ends the transaction: COMMIT or ROLLBACK, resolved once the server has done it. */
  readonly end: (command: 'COMMIT' | 'ROLLBACK') => Promise<void>;
  busy: boolean;
  idleTimer?: NodeJS.Timeout;
}

/**
 * Opens a transaction that outlives this call. postgres.js's `begin` (not `reserve`: in 3.4.9 a
 * reserve that has to open a new connection never resolves) holds one connection until the returned
 * `end` is called.
 *
 * The endpoint sends COMMIT or ROLLBACK itself, inside the callback. Left to postgres.js, `begin`
 * would roll back (and throw) whenever any statement of the transaction had failed, even one the
 * client recovered from with ROLLBACK TO SAVEPOINT, where PostgreSQL and the Data API commit.
 * After our own COMMIT, postgres.js's closing `commit`/`rollback` finds no transaction (a notice,
 * not an error), and its rethrow of that earlier failure is ignored: our command's outcome decides.
 */
async function openTransaction(
  pool: Sql,
): Promise<{ sql: Sql; end: (command: 'COMMIT' | 'ROLLBACK') => Promise<void> }> {
  let finish: (command: 'COMMIT' | 'ROLLBACK') => void = () => undefined;
  const ended = new Promise<'COMMIT' | 'ROLLBACK'>((resolve) => {
    finish = resolve;
  });
  let opened: (sql: Sql) => void = () => undefined;
  let failed: (err: unknown) => void = () => undefined;
  const ready = new Promise<Sql>((resolve, reject) => {
    opened = resolve;
    failed = reject;
  });
  let outcome: { ok: true } | { ok: false; error: unknown } | undefined;
  const done = pool.begin(async (tx) => {
    opened(tx as unknown as Sql);
    const command = await ended;
    try {
      await tx.unsafe(command);
      outcome = { ok: true };
    } catch (error) {
      outcome = { ok: false, error };
    }
  });
  done.catch((err: unknown) => failed(err));
  const sql = await ready;
  return {
    sql,
    end: async (command) => {
      finish(command);
      const settled = await done.then(
        () => undefined,
        (err: unknown) => err,
      );
      if (outcome === undefined) {
        throw settled instanceof Error ? settled : new Error('The transaction ended without COMMIT or ROLLBACK');
      }
      if (!outcome.ok) throw outcome.error;
    },
  };
}

interface PgErrorShape {
  code?: string;
  severity?: string;
  severity_local?: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: string;
  where?: string;
}

/** PgJDBC's rendering of a server error, which is what the service forwards. */
function pgJdbcMessage(e: PgErrorShape): string {
  let text = `${e.severity_local ?? e.severity ?? 'ERROR'}: ${e.message}`;
  if (e.detail) text += `\n  Detail: ${e.detail}`;
  if (e.hint) text += `\n  Hint: ${e.hint}`;
  if (e.position) text += `\n  Position: ${e.position}`;
  if (e.where) text += `\n  Where: ${e.where}`;
  return `${text}; SQLState: ${e.code}`;
}

function isPgError(err: unknown): err is PgErrorShape & Error {
  return err instanceof Error && err.name === 'PostgresError' && typeof (err as { code?: unknown }).code === 'string';
}

export async function startDataApiServer(options: DataApiServerOptions): Promise<DataApiServer> {
  const callTimeoutMs = options.callTimeoutMs ?? 45_000;
  const pools = new Map<string, Sql>();
  const types = new Map<string, Map<number, TypeInfo>>();
  const transactions = new Map<string, Transaction>();
  const faults = new Map<string, FaultSpec[]>();
  const stats = new Map<string, Stats>();

  const urlFor = (database: string) => {
    const url = new URL(options.adminUrl);
    url.pathname = `/${encodeURIComponent(database)}`;
    return url.toString();
  };

  const passText = (x: unknown) => (typeof x === 'string' ? x : String(x));
  const poolFor = (database: string): Sql => {
    let pool = pools.get(database);
    if (!pool) {
      pool = postgres(urlFor(database), {
        max: options.poolSize ?? 4,
        idle_timeout: 2,
        connect_timeout: 10,
        prepare: false,
        fetch_types: false,
        onnotice: () => undefined,
        // Parameters arrive as text already; postgres.js must not re-encode json or timestamps.
        types: {
          jsonText: { to: OID.json, from: [] as number[], serialize: passText, parse: passText },
          timestampText: { to: 1184, from: [] as number[], serialize: passText, parse: passText },
        },
        // Aurora's sessions start in UTC with ISO dates; the service formats values from there.
        connection: { application_name: 'data-api-local', TimeZone: 'UTC', DateStyle: 'ISO, MDY' },
      }) as unknown as Sql;
      pools.set(database, pool);
    }
    return pool;
  };

  async function typeInfo(database: string, sql: Sql, oids: readonly number[]): Promise<Map<number, TypeInfo>> {
    let known = types.get(database);
    if (!known) {
      known = new Map();
      types.set(database, known);
    }
    const missing = [...new Set(oids)].filter((oid) => !known.has(oid));
    if (missing.length > 0) {
      const rows = await sql.unsafe<{ oid: number; name: string; category: string; element: number }[]>(
        `SELECT t.oid::int4 AS oid, t.typname::text AS name, t.typcategory::text AS category, t.typelem::int4 AS element
           FROM pg_type t WHERE t.oid IN (${missing.join(',')})
         UNION ALL
         SELECT e.oid::int4, e.typname::text, e.typcategory::text, e.typelem::int4
           FROM pg_type t JOIN pg_type e ON e.oid = t.typelem WHERE t.oid IN (${missing.join(',')})`,
      );
      for (const r of rows) known.set(r.oid, { name: r.name, category: r.category, element: r.element });
    }
    return known;
  }

  async function runStatement(
    sql: Sql,
    database: string,
    text: string,
    parameters: readonly WireParameter[],
    request: {
      includeResultMetadata?: boolean;
      continueAfterTimeout?: boolean;
      resultSetOptions?: Record<string, string>;
    },
  ): Promise<Record<string, unknown>> {
    const { text: positional, names } = namedToPositional(text);
    const byName = new Map(parameters.map((p) => [p.name, p]));
    const values = names.map((name) => {
      const p = byName.get(name);
      if (!p) throw badRequest(`No value specified for parameter ${name}`);
      return toPgParameter(sql, p);
    });
    const query = sql.unsafe(positional, values as never[], { prepare: false, simple: false } as never).raw();
    // The service answers StatementTimeoutException when a call outlives its timeout, and stops the
    // statement unless continueAfterTimeout asked it to run on.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (!request.continueAfterTimeout) void query.cancel();
        reject(new ServiceError(400, 'StatementTimeoutException', 'Request timed out', { dbConnectionId: 0 }));
      }, callTimeoutMs);
    });
    let result: Awaited<typeof query>;
    try {
      result = await Promise.race([query, timeout]);
    } catch (err) {
      if (isPgError(err) && err.code === '42601' && /multiple commands/.test(err.message)) {
        throw validation("Multistatements aren't supported.");
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }

    const columns = result.columns ?? [];
    const info = await typeInfo(
      database,
      sql,
      columns.map((c) => c.type),
    );
    const resultOptions: ResultOptions = {
      longAsString: request.resultSetOptions?.longReturnType === 'STRING',
      decimalAsNumber: request.resultSetOptions?.decimalReturnType === 'DOUBLE_OR_LONG',
    };
    const described = columns.map((c) => {
      const t = info.get(c.type) ?? { name: 'unknown', category: 'X', element: 0 };
      const element = t.category === 'A' ? info.get(t.element) : undefined;
      const base = element?.name ?? t.name;
      if (UNSUPPORTED.has(base))
        throw new ServiceError(
          400,
          'UnsupportedResultException',
          `The result contains the unsupported data type ${base}.`,
        );
      return { name: c.name, type: t, element };
    });
    const records = (result as unknown as (Buffer | null)[][]).map((row) =>
      row.map((cell, i) => {
        if (cell === null) return { isNull: true };
        const column = described[i] as (typeof described)[number];
        const text = cell.toString('utf8');
        if (column.element) {
          const elements = parseArrayLiteral(text);
          if (elements === 'multi') {
            throw new ServiceError(
              400,
              'UnsupportedResultException',
              `The result contains the unsupported data type ${column.type.name}.`,
            );
          }
          return { arrayValue: encodeArrayElements(elements, column.element.name) };
        }
        return encodeScalar(text, column.type.name, resultOptions);
      }),
    );
    const body: Record<string, unknown> = {
      records,
      numberOfRecordsUpdated: result.command === 'SELECT' ? 0 : (result.count ?? 0),
      generatedFields: [],
    };
    if (request.includeResultMetadata) {
      body.columnMetadata = described.map((c) => ({
        name: c.name,
        label: c.name,
        typeName: c.type.name,
        type: c.element ? 2003 : (JDBC_TYPES[c.type.name] ?? 1111),
        arrayBaseColumnType: c.element ? (JDBC_TYPES[c.element.name] ?? 1111) : 0,
        nullable: 2,
        precision: 0,
        scale: 0,
        schemaName: '',
        tableName: '',
        isAutoIncrement: false,
        isCaseSensitive: c.type.name === 'text' || c.type.name === 'varchar',
        isCurrency: false,
        isSigned: ['int2', 'int4', 'int8', 'float4', 'float8', 'numeric'].includes(c.type.name),
      }));
    }
    return body;
  }

  function touch(tx: Transaction) {
    if (tx.idleTimer) clearTimeout(tx.idleTimer);
    tx.idleTimer = setTimeout(() => void endTransaction(tx, 'ROLLBACK').catch(() => undefined), TRANSACTION_IDLE_MS);
    tx.idleTimer.unref();
  }

  async function endTransaction(tx: Transaction, command: 'COMMIT' | 'ROLLBACK'): Promise<void> {
    transactions.delete(tx.id);
    if (tx.idleTimer) clearTimeout(tx.idleTimer);
    await tx.end(command);
  }

  function transactionFor(id: unknown): Transaction {
    const tx = typeof id === 'string' ? transactions.get(id) : undefined;
    if (!tx) throw new ServiceError(404, 'TransactionNotFoundException', `Transaction ${String(id)} is not found`);
    return tx;
  }

  /** Runs work on the transaction's connection, refusing a second concurrent call as the service does. */
  async function inTransaction<R>(tx: Transaction, work: (sql: Sql) => Promise<R>): Promise<R> {
    if (tx.busy) throw new ServiceError(400, 'DatabaseErrorException', 'Transaction is still running a query');
    tx.busy = true;
    try {
      return await work(tx.sql);
    } finally {
      tx.busy = false;
      if (transactions.has(tx.id)) touch(tx);
    }
  }

  function databaseOf(operation: Operation, body: Record<string, unknown>): string | undefined {
    if (operation === 'CommitTransaction' || operation === 'RollbackTransaction') {
      return typeof body.transactionId === 'string' ? transactions.get(body.transactionId)?.database : undefined;
    }
    return typeof body.database === 'string' ? body.database : undefined;
  }

  async function handle(operation: Operation, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (typeof body.resourceArn !== 'string' || !body.resourceArn.startsWith('arn:'))
      throw badRequest('Invalid resourceArn');
    if (typeof body.secretArn !== 'string' || !body.secretArn.startsWith('arn:')) throw badRequest('Invalid secretArn');
    if (body.schema !== undefined) throw validation("The schema parameter isn't supported");
    const database = typeof body.database === 'string' ? body.database : undefined;

    switch (operation) {
      case 'BeginTransaction': {
        if (!database) throw badRequest('The local Data API needs a database in every request');
        const { sql, end } = await openTransaction(poolFor(database));
        const id = randomBytes(96).toString('base64');
        const tx: Transaction = { id, database, sql, end, busy: false };
        transactions.set(id, tx);
        touch(tx);
        return { transactionId: id };
      }
      case 'CommitTransaction': {
        const tx = transactionFor(body.transactionId);
        if (tx.busy) throw new ServiceError(400, 'DatabaseErrorException', 'Transaction is still running a query');
        await endTransaction(tx, 'COMMIT');
        return { transactionStatus: 'Transaction Committed' };
      }
      case 'RollbackTransaction': {
        const tx = transactionFor(body.transactionId);
        if (tx.busy) throw new ServiceError(400, 'DatabaseErrorException', 'Transaction is still running a query');
        await endTransaction(tx, 'ROLLBACK');
        return { transactionStatus: 'Rollback Complete' };
      }
      case 'ExecuteStatement': {
        if (typeof body.sql !== 'string') throw badRequest('sql is required');
        if (body.formatRecordsAs === 'JSON')
          throw badRequest('formatRecordsAs JSON is not implemented by the local Data API');
        const sqlText = body.sql;
        const parameters = Array.isArray(body.parameters) ? (body.parameters as WireParameter[]) : [];
        const request = body as Parameters<typeof runStatement>[4];
        if (body.transactionId !== undefined) {
          const tx = transactionFor(body.transactionId);
          return inTransaction(tx, (sql) => runStatement(sql, tx.database, sqlText, parameters, request));
        }
        if (!database) throw badRequest('The local Data API needs a database in every request');
        return runStatement(poolFor(database), database, sqlText, parameters, request);
      }
      case 'BatchExecuteStatement': {
        if (typeof body.sql !== 'string') throw badRequest('sql is required');
        const sqlText = body.sql;
        const sets =
          Array.isArray(body.parameterSets) && body.parameterSets.length > 0
            ? (body.parameterSets as WireParameter[][])
            : [[]];
        const runAll = async (sql: Sql, db: string) => {
          for (const set of sets) await runStatement(sql, db, sqlText, set, {});
          return { updateResults: sets.map(() => ({ generatedFields: [] })) };
        };
        if (body.transactionId !== undefined) {
          const tx = transactionFor(body.transactionId);
          return inTransaction(tx, (sql) => runAll(sql, tx.database));
        }
        if (!database) throw badRequest('The local Data API needs a database in every request');
        // Outside a transaction the batch is applied whole or not at all.
        return await poolFor(database).begin((tx) => runAll(tx as unknown as Sql, database));
      }
    }
  }

  function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) {
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      'x-amzn-requestid': randomBytes(16).toString('hex'),
      ...headers,
    });
    res.end(body);
  }

  function sendError(res: ServerResponse, err: unknown) {
    let error: ServiceError;
    if (err instanceof ServiceError) error = err;
    else if (isPgError(err)) error = new ServiceError(400, 'DatabaseErrorException', pgJdbcMessage(err));
    else {
      const code = (err as { code?: unknown }).code;
      // The service could not reach the database (refused, dropped, shutting down).
      error =
        typeof code === 'string' && /^(CONNECT|CONNECTION|ECONN)/.test(code)
          ? new ServiceError(504, 'DatabaseUnavailableException', '')
          : new ServiceError(500, 'InternalServerErrorException', '');
    }
    const body = error.message ? { message: error.message, ...error.extra } : { ...error.extra };
    send(res, error.status, JSON.stringify(body), { 'x-amzn-errortype': error.type });
  }

  async function readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > REQUEST_LIMIT_BYTES)
        throw new ServiceError(413, 'RequestEntityTooLargeException', 'Request size exceeds the 4 MiB limit');
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  function statsFor(database: string): Stats {
    let s = stats.get(database);
    if (!s) {
      s = { calls: {} };
      stats.set(database, s);
    }
    return s;
  }

  async function control(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const database = url.searchParams.get('database') ?? '';
    if (url.pathname === '/__local/faults' && req.method === 'POST') {
      const spec = JSON.parse((await readBody(req)).toString('utf8')) as { database: string; faults: FaultSpec[] };
      faults.set(spec.database, [...(faults.get(spec.database) ?? []), ...spec.faults]);
      return send(res, 204, '');
    }
    if (url.pathname === '/__local/faults' && req.method === 'DELETE') {
      faults.delete(database);
      return send(res, 204, '');
    }
    if (url.pathname === '/__local/stats' && req.method === 'GET') {
      return send(res, 200, JSON.stringify(statsFor(database)));
    }
    return send(res, 404, JSON.stringify({ message: 'unknown control route' }));
  }

  function takeFault(database: string | undefined, operation: Operation): FaultSpec | undefined {
    if (!database) return undefined;
    const queue = faults.get(database);
    const index = queue?.findIndex((f) => !f.operation || f.operation === operation) ?? -1;
    if (!queue || index === -1) return undefined;
    return queue.splice(index, 1)[0];
  }

  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname.startsWith('/__local/')) return control(req, res, url);
      const operation = ROUTES[url.pathname];
      if (req.method !== 'POST' || !operation) {
        return send(res, 404, JSON.stringify({ message: `Unknown operation ${req.method} ${url.pathname}` }), {
          'x-amzn-errortype': 'UnknownOperationException',
        });
      }
      if (!req.headers.authorization?.startsWith('AWS4-HMAC-SHA256 ')) {
        return send(res, 403, JSON.stringify({ message: 'Missing Authentication Token' }), {
          'x-amzn-errortype': 'MissingAuthenticationTokenException',
        });
      }
      let body: Record<string, unknown>;
      try {
        body = JSON.parse((await readBody(req)).toString('utf8')) as Record<string, unknown>;
      } catch (err) {
        return sendError(res, err instanceof ServiceError ? err : badRequest('Malformed JSON body'));
      }
      const database = databaseOf(operation, body);
      if (database) {
        const s = statsFor(database);
        s.calls[operation] = (s.calls[operation] ?? 0) + 1;
      }
      const fault = takeFault(database, operation);
      try {
        if (fault && fault.when !== 'after') throw new ServiceError(fault.status, fault.type, fault.message ?? '');
        const out = await handle(operation, body);
        if (fault) throw new ServiceError(fault.status, fault.type, fault.message ?? '');
        const json = toJson(out);
        if (Buffer.byteLength(json) > RESPONSE_LIMIT_BYTES) {
          throw new ServiceError(400, 'UnsupportedResultException', 'The result exceeds the size limit');
        }
        send(res, 200, json);
      } catch (err) {
        sendError(res, err);
      }
    })().catch((err: unknown) => {
      if (!res.headersSent) sendError(res, err);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      await Promise.all([...transactions.values()].map((tx) => endTransaction(tx, 'ROLLBACK').catch(() => undefined)));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...pools.values()].map((pool) => pool.end({ timeout: 2 })));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Test helpers: talk to the control routes from a test file.

export async function injectFaults(endpoint: string, database: string, ...specs: FaultSpec[]): Promise<void> {
  const res = await fetch(`${endpoint}/__local/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ database, faults: specs }),
  });
  if (res.status !== 204) throw new Error(`injectFaults: HTTP ${res.status}`);
}

export async function clearFaults(endpoint: string, database: string): Promise<void> {
  await fetch(`${endpoint}/__local/faults?database=${encodeURIComponent(database)}`, { method: 'DELETE' });
}

/** How many calls of each operation the endpoint received for a database (faulted ones included). */
export async function callCounts(endpoint: string, database: string): Promise<Record<string, number>> {
  const res = await fetch(`${endpoint}/__local/stats?database=${encodeURIComponent(database)}`);
  return ((await res.json()) as Stats).calls;
}
