import { writeFileSync } from 'node:fs';
import postgres from 'postgres';
import { adminUrl, useFreshDatabase } from '../support/database';
import { checkStatement, loadParser, type StatementVerdict } from './support/statementCheck';
import { runWorkload } from './support/workload';

/**
 * Citus-ready SQL (issue 20): every statement the server ran for this file's database during a
 * representative workload (support/workload.ts), whichever driver sent it, read back from
 * pg_stat_statements, must bind every account-scoped table it touches to one account
 * (support/statementCheck.ts states the rule). The jest globalSetup preloads pg_stat_statements.
 */

/** Tables that hold no account's data, and why. */
const GLOBAL_TABLES: Record<string, string> = {
  schema_migrations: 'which migrations ran: one schema for every account (only lib/db/migrate.ts reads it)',
  klaviyo_rollup_dimensions:
    'which event properties are rolled up: configuration, the same for every account (a reference table on Citus)',
  klaviyo_rollup_unique_dimensions:
    'which rolled-up properties keep distinct profiles: configuration, the same for every account (a reference table on Citus)',
  klaviyo_rollup_day_zones:
    'which zones have daily dimension rows of their own: configuration, the same for every account (a reference table on Citus)',
  klaviyo_rollup_dimension_generation:
    "the generation of the rolled-up keys' registry, one row raised with it (a reference table on Citus)",
};

/**
 * Statements allowed to touch account-scoped tables without binding one account: migrations and
 * maintenance. Each entry names the code that runs it and why it is safe on Citus.
 */
const ALLOWED: { readonly pattern: RegExp; readonly why: string }[] = [
  {
    pattern: /^INSERT INTO klaviyo_rollup_(unique_)?dimensions \(dimension, ready_at\)/,
    why:
      'registerKeys (lib/repositories/dimensions.ts): registers a configured property key for the whole ' +
      'deployment and asks whether any account has events yet (then the key waits for its backfill); once per key, ' +
      'at deploy time. On Citus the EXISTS over klaviyo_events is a multi-shard read, which Citus runs.',
  },
  {
    pattern: /^SELECT count\(\*\) AS waiting, .* FROM klaviyo_aggregate_dirty$/,
    why:
      "backlogOfAllAccounts (lib/repositories/accounts.ts): the scheduled aggregator's deployment-wide backlog for its log line: a " +
      'count over every account, written nowhere; a multi-shard aggregate on Citus.',
  },
  {
    pattern:
      /^SELECT w\.account_id, a\.account_id IS NOT NULL AS registered FROM \(SELECT d\.account_id, min\(d\.first_marked_at\)/,
    why:
      "accountsWithWork (lib/repositories/accounts.ts): the scheduled aggregator's list of accounts with marks, " +
      'once per invocation, writes nothing: the marks grouped by account_id and joined with klaviyo_accounts on ' +
      'account_id. On Citus both tables are co-located on account_id, so the grouping and the join run on every ' +
      'shard (a multi-shard read Citus pushes down) and the coordinator sorts the result.',
  },
  {
    pattern:
      /^SELECT c\.account_id, a\.klaviyo_key_secret_id, last_run\.at AS last_run_at FROM \(SELECT k\.account_id FROM klaviyo_accounts k/,
    why:
      "accountsToSync (lib/repositories/accounts.ts): the scheduled sync's list of accounts with a key, least " +
      'recently synced first: reads every account row and the latest run of each (a max over its few ' +
      'klaviyo_sync_streams rows), once per invocation, writes nothing; a multi-shard read on Citus.',
  },
];

const oneLine = (sql: string) => sql.replace(/\s+/g, ' ').trim();

// The workload's handlers read their configuration once, on first use: a statement slowed by a loaded
// machine must not end the run it belongs to (the check needs every statement of it).
process.env.DB_STATEMENT_TIMEOUT_MS = '60000';

const database = useFreshDatabase();

async function statementsOf(databaseName: string): Promise<string[]> {
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => undefined });
  try {
    const [extension] = await admin.unsafe<{ present: boolean }[]>(
      `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS present`,
    );
    if (!extension?.present) {
      throw new Error(
        'pg_stat_statements is missing: the statement check needs a server started with ' +
          "shared_preload_libraries = 'pg_stat_statements' (the embedded server of globalSetup has it)",
      );
    }
    const rows = await admin.unsafe<{ query: string }[]>(
      `SELECT s.query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1`,
      [databaseName],
    );
    return rows.map((r) => r.query);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

describe('every statement touches one account (pg_stat_statements over a representative workload)', () => {
  let statements: string[] = [];
  let tables: string[] = [];

  beforeAll(async () => {
    await loadParser();
    await runWorkload(database.db);
    // Read before the checks query the database themselves.
    statements = await statementsOf(database.name);
    // For a reader: STATEMENT_CHECK_DUMP=<file> writes every statement the check saw.
    const dump = process.env.STATEMENT_CHECK_DUMP;
    if (dump) writeFileSync(dump, statements.map(oneLine).join('\n') + '\n');
    const rows = await database.db.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1`,
    );
    tables = rows.map((r) => r.name).filter((name) => !(name in GLOBAL_TABLES));
  }, 240_000);

  it('every table but the global ones has an account_id column leading its primary key', async () => {
    const rows = await database.db.query<{ name: string; key: string | null }>(
      `SELECT c.relname AS name,
              (SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE i.indrelid = c.oid AND i.indisprimary) AS key
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1`,
    );
    const wrong = rows
      .filter((r) => !(r.name in GLOBAL_TABLES) && r.key !== 'account_id')
      .map((r) => `${r.name} (${r.key})`);
    expect(wrong).toEqual([]);
  });

  it('the workload reached every account-scoped table', () => {
    const accountTables = new Set(tables);
    const touched = new Set(statements.flatMap((s) => checkStatement(s, accountTables).tables));
    expect(tables.filter((t) => !touched.has(t))).toEqual([]);
  });

  it('no statement touches an account-scoped table without binding it to one account', () => {
    const accountTables = new Set(tables);
    const failing: StatementVerdict[] = statements
      .filter((s) => !ALLOWED.some((a) => a.pattern.test(oneLine(s))))
      .map((s) => checkStatement(s, accountTables))
      .filter((v) => v.problems.length > 0);
    const report = failing.map((v) => `${v.problems.join('; ')}\n    ${oneLine(v.statement).slice(0, 400)}`);
    expect(report).toEqual([]);
  });

  it('the allow-list stays short and real: every entry matches a statement the workload ran', () => {
    const unused = ALLOWED.filter((a) => !statements.some((s) => a.pattern.test(oneLine(s)))).map((a) => a.pattern);
    expect(unused).toEqual([]);
  });
});
