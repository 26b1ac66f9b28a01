import type { Db } from '../../../lib/db/port';

/**
 * Proof that nothing was written: every table of the public schema, every row as text, hashed in a
 * fixed order. A row inserted, updated (even to the same values: the row version xmin changes) or
 * deleted changes the table's checksum.
 */
export interface TableChecksum {
  readonly table: string;
  readonly rows: number;
  readonly md5: string;
}

export async function databaseChecksum(db: Db): Promise<TableChecksum[]> {
  const tables = await db.query<{ name: string }>(
    `SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`,
  );
  const out: TableChecksum[] = [];
  for (const { name } of tables) {
    // Table names come from the catalog, quoted by quote_ident: nothing from a request reaches this text.
    const rows = await db.query<{ n: string; md5: string | null }>(
      `SELECT count(*) AS n, md5(coalesce(string_agg(t.xmin::text || ':' || t::text, E'\\n' ORDER BY t::text), '')) AS md5
       FROM ${name} AS t`,
    );
    out.push({ table: name, rows: Number(rows[0]?.n ?? 0), md5: rows[0]?.md5 ?? '' });
  }
  return out;
}

export interface RowCounts {
  readonly metrics: number;
  readonly profiles: number;
  readonly events: number;
  readonly rollups: number;
  readonly dirty: number;
}

/**
 * Row counts of the Klaviyo tables in one account (the tests' own by default; every test database also
 * holds a neighbour account's rows, tests/support/neighbor.ts), for messages that say what changed.
 */
export async function rowCounts(db: Db, accountId = 'default'): Promise<RowCounts> {
  const rows = await db.query<{ metrics: string; profiles: string; events: string; rollups: string; dirty: string }>(
    `SELECT (SELECT count(*) FROM klaviyo_metrics WHERE account_id = $1) AS metrics,
            (SELECT count(*) FROM klaviyo_profiles WHERE account_id = $1) AS profiles,
            (SELECT count(*) FROM klaviyo_events WHERE account_id = $1) AS events,
            (SELECT count(*) FROM klaviyo_aggregated_metrics WHERE account_id = $1) AS rollups,
            (SELECT count(*) FROM klaviyo_aggregate_dirty WHERE account_id = $1) AS dirty`,
    [accountId],
  );
  const r = rows[0];
  return {
    metrics: Number(r?.metrics),
    profiles: Number(r?.profiles),
    events: Number(r?.events),
    rollups: Number(r?.rollups),
    dirty: Number(r?.dirty),
  };
}
