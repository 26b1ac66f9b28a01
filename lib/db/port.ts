/**
 * The Db port: all that repositories see of a database. Two drivers implement it (postgres.js over
 * TCP, and the RDS Data API), so repositories speak plain SQL text with $1..$n placeholders and
 * cast parameters in SQL (`$1::jsonb`, `$2::timestamptz`, `$3::numeric`) instead of relying on
 * a driver's type inference.
 *
 * Result values, whatever the driver:
 *   text/varchar -> string; int2/int4/float4/float8 -> number; int8 and numeric -> string (exact;
 *   repositories convert explicitly); bool -> boolean; timestamptz/timestamp/date -> Date;
 *   json/jsonb -> parsed value; NULL -> null.
 */
export type SqlParam = string | number | boolean | null | Date | bigint;
export type Row = Record<string, unknown>;

export type DbDriverName = 'postgres' | 'data-api';

/** One row for COPY: each column's text form (what the column's input function parses), or null. */
export type CopyFields = readonly (string | null)[];

/**
 * A row already in COPY's text format: its fields escaped and joined by tabs, no line end. Made only
 * by code that has checked its field count and its escapes (lib/db/copyFormat.ts, copyLineOf and
 * checkedCopyLine), so that a row can travel as COPY text and be streamed without being taken apart.
 */
export interface CopyLine {
  readonly line: string;
}

export type CopyRow = CopyFields | CopyLine;

export interface Db {
  readonly driver: DbDriverName;
  /** One statement (or, without parameters, a script of several) and its rows. */
  query<T extends Row = Row>(text: string, params?: readonly SqlParam[]): Promise<T[]>;
  /** Runs fn in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<R>(fn: (tx: Db) => Promise<R>): Promise<R>;
  /**
   * Loads rows with COPY FROM STDIN into a table, within the transaction (so only on a
   * transaction's Db, savepoints included). Only the postgres.js driver has it, and only with
   * prepared statements on: DB_PREPARE=false means RDS Proxy or PgBouncer, where COPY has not been
   * tried. The Data API has no COPY. Resolves once the server has stored every row; rejects with the
   * COPY's own error (its SQLSTATE in `code`) when the server refuses one. The rows may be made
   * lazily (a generator): they are taken and sent a chunk at a time.
   */
  copyRows?(table: string, columns: readonly string[], rows: Iterable<CopyRow>): Promise<void>;
}

export interface ClosableDb extends Db {
  /** Only for scripts and tests: Lambda containers keep their client for the next invocation. */
  close(): Promise<void>;
}
