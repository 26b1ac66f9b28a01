import { timeLeftMs } from './budget';
import {
  BeginTransactionCommand,
  CommitTransactionCommand,
  ExecuteStatementCommand,
  RDSDataClient,
  RollbackTransactionCommand,
  type ExecuteStatementCommandInput,
} from '@aws-sdk/client-rds-data';
import { isDebugEnabled, log } from '../log';
import { classify, DataApiRequestTooLargeError } from './dataApi/failures';
import { splitStatements, toNamedParameters } from './dataApi/sql';
import { decodeRecords, toSqlParameters } from './dataApi/values';
import type { ClosableDb, Db, Row, SqlParam } from './port';

export {
  DataApiDatabaseError,
  DataApiRequestError,
  DataApiRequestTooLargeError,
  DataApiResultTooLargeError,
} from './dataApi/failures';

/**
 * The Db port over the RDS Data API (Aurora PostgreSQL through HTTPS: no VPC, no connection pool).
 *
 * - `$n` placeholders become named parameters; a parameterless script (a migration) is split into
 *   statements, since the Data API runs one per call, and runs in one transaction like postgres.js's
 *   simple query does.
 * - Transactions: BeginTransaction, then every statement carries the transactionId, then Commit or
 *   Rollback. Statements of one transaction go out one at a time: the Data API refuses a second
 *   concurrent call on a transaction ("Transaction is still running a query"). A nested
 *   transaction is a SAVEPOINT.
 * - Responses are at most 1 MiB. Repositories keep under it by paging every unbounded read (LIMIT
 *   with a keyset cursor) and by returning aggregates rather than raw rows; a response that would
 *   not fit fails with DataApiResultTooLargeError, never with silently missing rows. Requests are
 *   at most 4 MiB: a bigger one fails here with DataApiRequestTooLargeError before it is sent.
 * - Transient failures (throttling, the service or cluster unavailable, Aurora resuming from a
 *   pause, network errors) are retried with exponential backoff within a time budget, then thrown as
 *   TransientDbError (503 with Retry-After). A statement is retried on its own; inside a transaction
 *   the whole unit of work is retried from BeginTransaction, as the postgres.js driver does for a lost
 *   connection (every unit of work in this project is idempotent).
 * - Errors from PostgreSQL carry their SQLSTATE as `.code` (DataApiDatabaseError), so the callers'
 *   mapping by code works with either driver.
 *
 * TimescaleDB does not exist on Aurora: a database behind this driver runs the plain-PostgreSQL
 * branch of the migrations.
 */
export interface DataApiDriverOptions {
  readonly clusterArn: string;
  readonly secretArn: string;
  readonly database: string;
  /** Only for a local endpoint (tests, benches); the SDK finds the regional one by itself. */
  readonly endpoint?: string;
  readonly region?: string;
  /** How long transient failures are retried before giving up; well under the function timeout. */
  readonly retryBudgetMs: number;
  /** First backoff delay; doubles per attempt up to maxBackoffMs (each with jitter). */
  readonly baseBackoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly logSql?: boolean;
}

/** The service's limit on a request, headers included; the margin covers headers and signing. */
export const DATA_API_REQUEST_LIMIT_BYTES = 4 * 1024 * 1024;
const REQUEST_HEADROOM_BYTES = 16 * 1024;

// One SDK client per endpoint and region for the whole container, created on first use: a Lambda
// reuses its HTTPS keep-alive connection on warm invocations. Drivers share it and count their uses so
// that scripts and tests can close it when the last one is done.
interface SharedClient {
  readonly client: RDSDataClient;
  users: number;
}
const sharedClients = new Map<string, SharedClient>();

function regionOf(options: DataApiDriverOptions): string {
  // arn:aws:rds:<region>:<account>:cluster:<name>
  return options.region ?? options.clusterArn.split(':')[3] ?? 'us-east-1';
}

function acquireClient(options: DataApiDriverOptions): { client: RDSDataClient; release: () => void } {
  const region = regionOf(options);
  const key = `${region}|${options.endpoint ?? ''}`;
  let shared = sharedClients.get(key);
  if (!shared) {
    const client = new RDSDataClient({
      region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      // Retries are ours: within a time budget, and for a transaction from its beginning.
      maxAttempts: 1,
      requestHandler: { connectionTimeout: 5_000 },
    });
    shared = { client, users: 0 };
    sharedClients.set(key, shared);
  }
  shared.users += 1;
  const entry = shared;
  let released = false;
  return {
    client: entry.client,
    release: () => {
      if (released) return;
      released = true;
      entry.users -= 1;
      if (entry.users === 0) {
        sharedClients.delete(key);
        entry.client.destroy();
      }
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function roughSize(input: ExecuteStatementCommandInput): number {
  let chars = input.sql?.length ?? 0;
  for (const p of input.parameters ?? []) chars += (p.value as { stringValue?: string }).stringValue?.length ?? 16;
  return chars;
}

export function createDataApiDb(options: DataApiDriverOptions): ClosableDb {
  const baseBackoff = options.baseBackoffMs ?? 50;
  const maxBackoff = options.maxBackoffMs ?? 2_000;
  let acquired: { client: RDSDataClient; release: () => void } | undefined;
  let closed = false;

  const client = (): RDSDataClient => {
    if (closed) throw new Error('This Data API client was closed');
    acquired ??= acquireClient(options);
    return acquired.client;
  };
  const target = { resourceArn: options.clusterArn, secretArn: options.secretArn };

  async function send<O>(work: (c: RDSDataClient) => Promise<O>): Promise<O> {
    try {
      return await work(client());
    } catch (err) {
      throw classify(err).error;
    }
  }

  async function execute<T extends Row>(
    sql: string,
    params: readonly SqlParam[],
    transactionId?: string,
  ): Promise<T[]> {
    const input: ExecuteStatementCommandInput = {
      ...target,
      database: options.database,
      sql: params.length > 0 ? toNamedParameters(sql).sql : sql,
      ...(params.length > 0 ? { parameters: toSqlParameters(params) } : {}),
      ...(transactionId ? { transactionId } : {}),
      includeResultMetadata: true,
      resultSetOptions: { decimalReturnType: 'STRING', longReturnType: 'STRING' },
    };
    // Measuring exactly means serialising twice; only worth it when the request could be near the limit.
    if (roughSize(input) * 2 > DATA_API_REQUEST_LIMIT_BYTES / 4) {
      const bytes = Buffer.byteLength(JSON.stringify(input));
      if (bytes > DATA_API_REQUEST_LIMIT_BYTES - REQUEST_HEADROOM_BYTES) {
        throw new DataApiRequestTooLargeError(bytes, DATA_API_REQUEST_LIMIT_BYTES - REQUEST_HEADROOM_BYTES);
      }
    }
    // SQL text only, never parameters: they carry emails and phone numbers.
    if (options.logSql && isDebugEnabled()) log.debug('sql', { sql, driver: 'data-api' });
    const output = await send((c) => c.send(new ExecuteStatementCommand(input)));
    return decodeRecords<T>(output.records, output.columnMetadata);
  }

  /** Runs work again on transient failures, with exponential backoff, until the time budget is spent. */
  async function withRetry<R>(work: () => Promise<R>): Promise<R> {
    const started = Date.now();
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await work();
      } catch (raw) {
        const { error, retryable } = classify(raw);
        if (!retryable) throw error;
        const ceiling = Math.min(maxBackoff, baseBackoff * 2 ** (attempt - 1));
        const delay = ceiling / 2 + Math.random() * (ceiling / 2);
        const elapsed = Date.now() - started;
        // Nor past the invocation's deadline: the caller must still answer 503 in its own time.
        if (elapsed + delay > options.retryBudgetMs || delay >= timeLeftMs()) {
          log.warn('Data API still failing after the retry budget', { error, attempts: attempt, elapsed_ms: elapsed });
          throw error;
        }
        log.warn('Data API transient failure; retrying', { error, attempt, delay_ms: Math.round(delay) });
        await sleep(delay);
      }
    }
  }

  /**
   * Runs a statement, a parameterless script (statement by statement), or nothing (only comments).
   * `run` executes one statement; it returns the rows of the last statement.
   */
  async function statements<T extends Row>(
    text: string,
    params: readonly SqlParam[],
    run: (sql: string, params: readonly SqlParam[]) => Promise<T[]>,
    asScript: (parts: readonly string[]) => Promise<T[]>,
  ): Promise<T[]> {
    if (params.length > 0) return run(text, params);
    const parts = splitStatements(text);
    if (parts.length === 0) return [];
    if (parts.length === 1) return run(parts[0] as string, []);
    return asScript(parts);
  }

  function transactionDb(transactionId: string) {
    let open = true;
    let savepoints = 0;
    let queue: Promise<unknown> = Promise.resolve();
    // One call at a time per transaction: the Data API refuses concurrent calls on one transactionId.
    const enqueue = <R>(work: () => Promise<R>): Promise<R> => {
      const next = queue.then(() => {
        if (!open) throw new Error('The transaction has already ended: await every query inside transaction()');
        return work();
      });
      queue = next.catch(() => undefined);
      return next;
    };
    const runInTx = <T extends Row>(sql: string, params: readonly SqlParam[]) =>
      enqueue(() => execute<T>(sql, params, transactionId));
    const db: Db = {
      driver: 'data-api',
      query: <T extends Row>(text: string, params: readonly SqlParam[] = []) =>
        statements<T>(text, params, runInTx, async (parts) => {
          let rows: T[] = [];
          for (const part of parts) rows = await runInTx<T>(part, []);
          return rows;
        }),
      transaction: async <R>(fn: (inner: Db) => Promise<R>): Promise<R> => {
        savepoints += 1;
        const name = `data_api_sp_${savepoints}`;
        await runInTx(`SAVEPOINT ${name}`, []);
        try {
          const result = await fn(db);
          await runInTx(`RELEASE SAVEPOINT ${name}`, []);
          return result;
        } catch (err) {
          await runInTx(`ROLLBACK TO SAVEPOINT ${name}`, []).catch(() => undefined);
          throw err;
        }
      },
    };
    return {
      db,
      /** Waits for statements still in flight, then refuses new ones. */
      end: async () => {
        await queue;
        open = false;
      },
    };
  }

  async function rollbackQuietly(transactionId: string): Promise<void> {
    try {
      await send((c) => c.send(new RollbackTransactionCommand({ ...target, transactionId })));
    } catch (err) {
      // The transaction may be gone already (a lost connection, the service's own cleanup).
      log.warn('Data API rollback failed', { error: err });
    }
  }

  async function transaction<R>(fn: (tx: Db) => Promise<R>): Promise<R> {
    return withRetry(async () => {
      const begun = await send((c) => c.send(new BeginTransactionCommand({ ...target, database: options.database })));
      const transactionId = begun.transactionId;
      if (!transactionId) throw new Error('The Data API began a transaction without returning its id');
      const tx = transactionDb(transactionId);
      let result: R;
      try {
        result = await fn(tx.db);
        await tx.end();
      } catch (err) {
        await tx.end();
        await rollbackQuietly(transactionId);
        throw err;
      }
      try {
        await send((c) => c.send(new CommitTransactionCommand({ ...target, transactionId })));
      } catch (err) {
        await rollbackQuietly(transactionId);
        throw err;
      }
      return result;
    });
  }

  return {
    driver: 'data-api',
    query: <T extends Row>(text: string, params: readonly SqlParam[] = []) =>
      statements<T>(
        text,
        params,
        (sql, p) => withRetry(() => execute<T>(sql, p)),
        // A script runs atomically, as postgres.js's simple query protocol runs one.
        (parts) =>
          transaction(async (tx) => {
            let rows: T[] = [];
            for (const part of parts) rows = await tx.query<T>(part);
            return rows;
          }),
      ),
    transaction,
    close: async () => {
      closed = true;
      acquired?.release();
      acquired = undefined;
    },
  };
}
