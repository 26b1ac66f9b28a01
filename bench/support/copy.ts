import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type postgres from 'postgres';

/**
 * COPY ... FROM STDIN in PostgreSQL's text format, through postgres.js's writable stream: the
 * fastest way to load rows, and what the ingest bench compares itself with.
 */

/** `\N`: NULL in COPY's text format. */
export const COPY_NULL = '\\N';

const NEEDS_ESCAPE = /[\\\n\r\t]/;

/**
 * A text value for COPY's text format: backslash, newline, carriage return and tab are the only
 * characters with a meaning there (besides the `\N` NULL marker, which escaping the backslash
 * keeps any value from spelling).
 */
export function copyText(value: string | null | undefined): string {
  if (value === null || value === undefined) return COPY_NULL;
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

/** A JSON value for a json/jsonb column: JSON.stringify never emits raw control characters, so only backslashes need doubling. */
export function copyJson(value: unknown): string {
  if (value === null || value === undefined) return COPY_NULL;
  const json = JSON.stringify(value);
  return json.includes('\\') ? json.replace(/\\/g, '\\\\') : json;
}

export function copyRow(fields: readonly string[]): string {
  return fields.join('\t') + '\n';
}

type Sql = postgres.Sql | postgres.TransactionSql;

/**
 * Streams `chunks` (each one or more whole rows) into `COPY <target> FROM STDIN`.
 *
 * postgres.js 3.4 never settles the writable when the server rejects the COPY after the last chunk
 * was sent (porsager/postgres#1173): the await would hang forever inside an aborted transaction.
 * A watchdog therefore asks the server, over another connection, whether the loading backend sits
 * idle in an aborted transaction, and if so ends it and fails with a clear error.
 */
export async function copyIn(
  sql: Sql,
  watch: postgres.Sql,
  statement: string,
  chunks: Iterable<string> | AsyncIterable<string>,
): Promise<void> {
  const [self] = await sql.unsafe<{ pid: number }[]>('SELECT pg_backend_pid() AS pid');
  const pid = self?.pid;
  const writable = await sql.unsafe(statement).writable();
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    const check = async () => {
      if (done) return;
      try {
        const rows = await watch.unsafe<{ state: string | null }[]>(
          'SELECT state FROM pg_stat_activity WHERE pid = $1',
          [pid ?? 0],
        );
        if (rows[0]?.state === 'idle in transaction (aborted)') {
          await watch.unsafe('SELECT pg_terminate_backend($1)', [pid ?? 0]);
          reject(
            new Error(`${statement.split(' FROM ')[0]} failed on the server (see its log); the load was rolled back`),
          );
          return;
        }
      } catch {
        // The watchdog only helps; the copy itself reports real errors.
      }
      if (!done) timer = setTimeout(() => void check(), 2000);
    };
    timer = setTimeout(() => void check(), 2000);
  });
  try {
    await Promise.race([pipeline(Readable.from(chunks, { objectMode: false }), writable), watchdog]);
  } finally {
    done = true;
    if (timer) clearTimeout(timer);
  }
}
