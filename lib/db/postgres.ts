import { EventEmitter } from 'node:events';
import type { Writable } from 'node:stream';
import postgres from 'postgres';
import type { PostgresConnection, PostgresTuning } from '../config';
import { log, isDebugEnabled } from '../log';
import { TimeBudgetError, timeLeftMs } from './budget';
import { copyTextOf } from './copyFormat';
import { credentialsFor, isAuthFailure, type Credentials } from './credentials';
import { errorCode, isConnectionError } from './errors';
import { openDatabaseSocket, splitUrlTls } from './tls';
import type { ClosableDb, CopyRow, Db, Row, SqlParam } from './port';

export interface PostgresDriverOptions extends PostgresConnection, PostgresTuning {
  readonly logSql?: boolean;
  readonly applicationName?: string;
}

function toWire(params: readonly SqlParam[]): never[] {
  // postgres.js infers types from JS values; bigint goes as text so that the SQL cast decides.
  return params.map((p) => (typeof p === 'bigint' ? p.toString() : p)) as never[];
}

const passJson = (value: unknown): unknown => (typeof value === 'string' ? value : JSON.stringify(value));
const keepText = (text: string): unknown => text;
// postgres.js's own timestamptz serializer goes through a JS Date, which keeps milliseconds only: an
// instant sent as ISO text with microseconds (a cursor, an exclusive bound) would move. Text is sent
// as it is and PostgreSQL parses it; Dates still go as ISO text.
const passTimestamp = (value: unknown): unknown => (value instanceof Date ? value.toISOString() : value);

type Sql = ReturnType<typeof connect>;
type TxSql = postgres.TransactionSql<Sql extends postgres.Sql<infer Types> ? Types : never>;

/** Whether the connection under a transaction has closed (the begin promise rejected on its close). */
interface TxState {
  gone: boolean;
}

/**
 * postgres.js 3.4.9 answers a failure inside sql.begin / savepoint by writing ROLLBACK on the
 * transaction's connection even when that connection has closed, and the write throws from a timer,
 * outside any try, ending the process (porsager/postgres#1208). When a statement failed because the
 * connection went away, and the close has rejected the transaction already, the callback never
 * settles: postgres.js then writes nothing more on the dead connection (the server rolled the
 * transaction back), and the caller has its error from the rejected begin. The close is processed
 * before the statement's rejection reaches us; one turn of the event loop lets it reject the begin.
 */
async function unlessConnectionGone<R>(state: TxState, work: () => Promise<R>): Promise<R> {
  let result: R;
  try {
    result = await work();
  } catch (err) {
    if (!state.gone && isConnectionError(err)) await new Promise((resolve) => setImmediate(resolve));
    if (state.gone) return never();
    throw err;
  }
  // Nor a COMMIT: the connection closed while the callback awaited something else.
  return state.gone ? never() : result;
}

const never = () => new Promise<never>(() => undefined);

/** A statement issued after the close would go to a dead socket, or to the pool's next session. */
function connectionGoneError(): Error {
  return Object.assign(new Error("the transaction's connection has closed"), { code: 'CONNECTION_CLOSED' });
}

/** What postgres.js's query objects have besides their promise: the settlers the connection calls. */
interface SettlableQuery {
  resolve?: (value: unknown) => void;
  reject?: (err: unknown) => void;
}

/**
 * COPY FROM STDIN on the transaction's connection. postgres.js 3.4 settles a COPY's writable only on
 * the server's CommandComplete: when the server refuses the data after the last byte was sent, the
 * writable never finishes (porsager/postgres#1173) and awaiting it would hang. So completion is
 * judged by a statement sent after the data instead (the RESET below), which the server answers only
 * after the COPY's outcome, and the COPY's own error, which postgres.js hands to the already resolved
 * query, is caught on the way so that the caller sees its SQLSTATE (a statement_timeout stays
 * retryable), not the follow-up's "transaction is aborted".
 */
async function copyInto(tx: TxSql, table: string, columns: readonly string[], rows: Iterable<CopyRow>): Promise<void> {
  // Under the connection's force_custom_plan (see connect), PostgreSQL would also plan the foreign
  // key checks' internal query afresh for every copied row, a large part of a page's COPY into
  // klaviyo_events. Those plans are cached as usual during the COPY; the RESET after
  // it restores the connection's setting. (postgres.js cannot pipeline a COPY behind a statement:
  // the SET is awaited first.)
  await tx.unsafe('SET LOCAL plan_cache_mode = auto');
  const pending = tx.unsafe(`COPY ${table} (${columns.join(', ')}) FROM STDIN`);
  let copyError: unknown;
  const settlable = pending as unknown as SettlableQuery;
  const rejectQuery = settlable.reject;
  if (typeof rejectQuery === 'function') {
    settlable.reject = (err: unknown) => {
      copyError ??= err;
      rejectQuery(err);
    };
  }
  // A listener for the stream's whole life, attached the moment postgres.js makes the stream: when
  // the server refuses the COPY (a row, or a statement trigger that fires before any row), postgres.js
  // destroys the stream with that error, possibly in the same tick as it hands the stream over, and
  // a stream 'error' nobody listens to is thrown out of the event loop.
  let streamError: unknown;
  const resolveQuery = settlable.resolve;
  if (typeof resolveQuery === 'function') {
    settlable.resolve = (value: unknown) => {
      if (value instanceof EventEmitter) {
        value.on('error', (err: unknown) => {
          streamError ??= err;
        });
      }
      resolveQuery(value);
    };
  }
  const writable = await pending.writable();
  let abandoned: Error | undefined;
  try {
    // The rows are turned into text (and, for a lazy iterable, made) a chunk at a time, each chunk
    // written as soon as it is ready: the server parses and stores one chunk on its own core while
    // this process prepares the next, instead of waiting for the whole text.
    const pieces = copyTextPieces(rows, columns.length);
    let wroteLast = false;
    for (;;) {
      let next: IteratorResult<CopyTextPiece>;
      try {
        next = pieces.next();
      } catch (err) {
        // A row this process cannot send (copyTextOf refuses NUL and lone surrogates): the COPY is
        // abandoned (CopyFail, the server rolls it back), and the caller sees the reason.
        // Its SQLSTATE (57014, as a cancelled statement) would read as a passing failure: the
        // reason thrown is this process's own.
        abandoned = err instanceof Error ? err : new Error(String(err));
        writable.destroy(abandoned);
        await new Promise((resolve) => setImmediate(resolve));
        await tx.unsafe('RESET plan_cache_mode').catch(() => undefined);
        throw abandoned;
      }
      if (next.done) break;
      await written(writable, next.value.text, next.value.last);
      wroteLast = next.value.last;
    }
    if (!wroteLast) await written(writable, '', true);
    writable.end();
    // end() hands the stream to postgres.js's final step (CopyDone) in this turn or the next;
    // until then the connection refuses other statements ("COPY_IN_PROGRESS").
    await new Promise((resolve) => setImmediate(resolve));
    await tx.unsafe('RESET plan_cache_mode');
  } catch (err) {
    throw abandoned ?? copyError ?? streamError ?? err;
  }
}

/** Rows per piece of COPY text written at once. */
const COPY_CHUNK_ROWS = 100;

interface CopyTextPiece {
  readonly text: string;
  /** No row comes after it: known by asking for one row ahead, not a whole piece. */
  readonly last: boolean;
}

function* copyTextPieces(rows: Iterable<CopyRow>, width: number): Generator<CopyTextPiece> {
  const iterator = rows[Symbol.iterator]();
  let chunk: CopyRow[] = [];
  for (let row = iterator.next(); !row.done;) {
    chunk.push(row.value);
    row = iterator.next();
    if (chunk.length === COPY_CHUNK_ROWS || row.done === true) {
      yield { text: copyTextOf(chunk, width), last: row.done === true };
      chunk = [];
    }
  }
}

/**
 * Writes one piece of COPY text: the last one until the stream has taken it; the others until the
 * stream has room again (backpressure). A stream postgres.js destroys meanwhile (the server refused
 * a row) ends the wait with its error.
 */
function written(stream: Writable, text: string, last: boolean): Promise<void> {
  return new Promise<void>((resolve, fail) => {
    // Destroyed before this piece (the server refused an earlier one): no event would come.
    if (stream.destroyed) {
      fail(stream.errored ?? new Error('the COPY stream closed before its end'));
      return;
    }
    const settle = (err?: Error | null) => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (err) fail(err);
      else resolve();
    };
    const onDrain = () => settle();
    const onError = (err: unknown) => settle(err instanceof Error ? err : new Error('the COPY stream failed'));
    const onClose = () => settle(new Error('the COPY stream closed before its end'));
    stream.on('error', onError);
    stream.on('close', onClose);
    if (last) {
      stream.write(text, (err) => settle(err));
      return;
    }
    if (stream.write(text)) settle();
    else stream.on('drain', onDrain);
  });
}

/** What a transaction may do besides statements; see `copyRows` on the port. */
interface TxOptions {
  readonly copy: boolean;
}

function txDb(tx: TxSql, state: TxState, options: TxOptions): Db {
  const db: Db = {
    driver: 'postgres',
    query: async <T extends Row>(text: string, params: readonly SqlParam[] = []) => {
      if (state.gone) throw connectionGoneError();
      return (await tx.unsafe(text, toWire(params))) as unknown as T[];
    },
    // A nested transaction becomes a savepoint: what it does rolls back alone when it throws.
    transaction: async <R>(fn: (inner: Db) => Promise<R>) =>
      (await tx.savepoint(async (sp) => unlessConnectionGone(state, () => fn(txDb(sp, state, options))))) as R,
  };
  if (options.copy) {
    db.copyRows = async (table: string, columns: readonly string[], rows: Iterable<CopyRow>) => {
      if (state.gone) throw connectionGoneError();
      await copyInto(tx, table, columns, rows);
    };
  }
  return db;
}

/**
 * A postgres.js client behind the Db port. The pool connects lazily on the first query, so
 * creating it at module level costs nothing at cold start.
 */
function connect(options: PostgresDriverOptions, url: string | undefined, credentials: Credentials | undefined) {
  const connectTimeoutMs = options.connectTimeoutSeconds * 1000;
  const tls = { mode: options.ssl, rootCertFile: options.sslRootCert };
  const settings = {
    host: options.host,
    port: options.port,
    user: options.user,
    // A function is called for every new connection: an IAM token is signed afresh, a secret is
    // read once and cached by `credentials`.
    password: credentials ? () => credentials.password() : options.password,
    database: options.database,
    max: options.poolMax,
    idle_timeout: options.idleTimeoutSeconds === 0 ? undefined : options.idleTimeoutSeconds,
    // postgres.js starts this timer once the socket below is handed over: it bounds the startup and
    // authentication; the socket's own timer bounds the TCP connect and the TLS handshake.
    connect_timeout: options.connectTimeoutSeconds,
    prepare: options.prepare,
    // TLS is negotiated by openDatabaseSocket (lib/db/tls.ts), never by postgres.js.
    ssl: false,
    onnotice: () => undefined,
    // One host (the project's configuration names one); the wait is also cut at the invocation's deadline.
    socket: (target: { host: readonly string[]; port: readonly number[]; path?: string | false | null }) =>
      openDatabaseSocket(
        {
          host: target.host[0] ?? 'localhost',
          port: target.port[0] ?? 5432,
          ...(target.path ? { path: target.path } : {}),
        },
        tls,
        Math.max(1, Math.min(connectTimeoutMs, timeLeftMs())),
      ),
    // JSON parameters arrive as JSON text (the port's contract, shared with the Data API driver):
    // pass them through instead of letting postgres.js JSON.stringify a string a second time.
    types: {
      jsonText: { to: 114, from: [] as number[], serialize: passJson, parse: keepText },
      jsonbText: { to: 3802, from: [] as number[], serialize: passJson, parse: keepText },
      timestamptzText: { to: 1184, from: [] as number[], serialize: passTimestamp, parse: keepText },
    },
    connection: {
      application_name: options.applicationName ?? 'klaviyo-analytics',
      ...(options.statementTimeoutMs > 0 ? { statement_timeout: options.statementTimeoutMs } : {}),
      // Prepared statements switch to a generic plan after five runs; for time-range aggregates the
      // plan depends on the range and on which hours are dirty, and the generic one was much slower
      // in bench/query. Planning each run costs far less. (Unprepared statements, the
      // RDS Proxy / PgBouncer setting, are always planned for their parameters.) COPY runs without
      // it: see copyInto.
      ...(options.prepare ? { plan_cache_mode: 'force_custom_plan' } : {}),
    },
    debug: (_connection: number, query: string) => {
      // SQL text only, never parameters: they carry emails and phone numbers.
      if (options.logSql && isDebugEnabled()) log.debug('sql', { sql: query });
    },
  };
  return url ? postgres(url, settings) : postgres(settings);
}

/** Where the signer and the error messages say the server is: from the options, else from the URL. */
function targetOf(options: PostgresDriverOptions, url: string | undefined) {
  const parsed = url ? new URL(url.replace(/^postgres(ql)?:/, 'http:')) : undefined;
  return {
    host: options.host ?? (parsed?.hostname.replace(/^\[|\]$/g, '') || 'localhost'),
    port: options.port ?? (parsed?.port ? Number(parsed.port) : 5432),
    user: options.user ?? decodeURIComponent(parsed?.username ?? ''),
  };
}

// Below this, a unit of work is not started: it could not finish before the invocation's deadline.
const MIN_WORK_MS = 50;

export function createPostgresDb(options: PostgresDriverOptions): ClosableDb {
  // A URL's TLS parameters were read by the configuration; a caller that passes a URL with them
  // directly gets them read here, and a disagreement with `ssl` refused, as config() does.
  const fromUrl = options.url ? splitUrlTls(options.url) : undefined;
  if (fromUrl?.sslmode !== undefined && fromUrl.sslmode !== options.ssl) {
    throw new Error(`DATABASE_URL says sslmode=${fromUrl.sslmode} but the driver was given ssl=${options.ssl}`);
  }
  const url = fromUrl?.url;
  const tuned =
    fromUrl?.sslrootcert && !options.sslRootCert ? { ...options, sslRootCert: fromUrl.sslrootcert } : options;
  const source = options.passwordSource;
  const credentials = source && source.kind !== 'static' ? credentialsFor(source, targetOf(options, url)) : undefined;
  let sql = connect(tuned, url, credentials);
  const retries = options.connectRetries ?? 2;
  const connectTimeoutMs = options.connectTimeoutSeconds * 1000;
  // No COPY without prepared statements: DB_PREPARE=false is the setting for RDS Proxy and
  // PgBouncer, where COPY's sub-protocol has not been tried; callers there take their JSON path, a
  // single INSERT ... ON CONFLICT, which is what those setups were tested with.
  const txOptions: TxOptions = { copy: options.prepare };

  /**
   * The deadline passed while a unit of work waited (a server that stopped answering, a statement
   * slower than the invocation's time): its connections are dropped at once, so that the pool's one
   * connection is not still busy for the next invocation, and a fresh client takes over. The server
   * ends the abandoned statement at its statement_timeout, or when it next writes to the socket.
   */
  function abandon(current: Sql): void {
    if (sql === current) sql = connect(tuned, url, credentials);
    current.end({ timeout: 0 }).catch(() => undefined);
  }

  async function beforeDeadline<R>(current: Sql, work: Promise<R>, leftMs: number): Promise<R> {
    if (!Number.isFinite(leftMs)) return work;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        abandon(current);
        reject(new TimeBudgetError('the database'));
      }, leftMs);
    });
    // The abandoned work settles later (with CONNECTION_DESTROYED): nobody waits for it any more.
    work.catch(() => undefined);
    try {
      return await Promise.race([work, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  // A Lambda container can be frozen while the server drops its connection (restart, failover,
  // idle timeout on a proxy). postgres.js notices only when the dead socket is used; then the unit
  // of work is retried on a fresh connection. Every unit of work in this project is idempotent.
  // A terminated connection can surface twice (ECONNRESET, then the server's 57P01 on the next
  // use), hence up to two retries by default. A retry is started only when a whole connect attempt
  // still fits before the invocation's deadline; a refused password is read again once.
  async function once<R>(work: (current: Sql) => Promise<R>): Promise<R> {
    let passwordRefreshed = false;
    for (let attempt = 0; ; attempt += 1) {
      const left = timeLeftMs();
      if (left < MIN_WORK_MS) throw new TimeBudgetError('a database connection');
      const current = sql;
      try {
        return await beforeDeadline(current, work(current), left);
      } catch (err) {
        if (credentials?.refreshable && !passwordRefreshed && isAuthFailure(errorCode(err))) {
          passwordRefreshed = true;
          credentials.invalidate();
          continue;
        }
        if (!isConnectionError(err) || attempt >= retries) throw err;
        if (timeLeftMs() < connectTimeoutMs + MIN_WORK_MS) throw err;
        log.warn('database connection lost; retrying on a new connection', { error: err, attempt: attempt + 1 });
        // With a password read at run time, the retry runs on a new client: postgres.js 3.4.9 never
        // settles a query whose reconnect of a closed connection is refused authentication (a rotated
        // secret), while a new client's refused connect rejects with 28P01, which is then refreshed.
        if (credentials) abandon(current);
        // Let postgres.js process the socket's close before the retry picks a connection.
        await new Promise((resolve) => setTimeout(resolve, 20 * (attempt + 1)));
      }
    }
  }

  return {
    driver: 'postgres',
    query: <T extends Row>(text: string, params: readonly SqlParam[] = []) =>
      once(async (current) => (await current.unsafe(text, toWire(params))) as unknown as T[]),
    transaction: <R>(fn: (tx: Db) => Promise<R>) =>
      once(async (current) => {
        const state: TxState = { gone: false };
        const begun = current.begin(async (tx) => unlessConnectionGone(state, () => fn(txDb(tx, state, txOptions))));
        begun.catch(() => {
          state.gone = true;
        });
        return (await begun) as R;
      }),
    close: () => sql.end({ timeout: 5 }),
  };
}
