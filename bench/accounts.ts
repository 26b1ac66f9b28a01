import postgres from 'postgres';
import { rebuildAggregates } from '../lib/app/aggregation';
import { planEventsPage, writeEventsPage } from '../lib/app/ingest';
import { queryMetricAggregates } from '../lib/app/metricAggregates';
import { runScheduledAggregation } from '../lib/app/scheduledAggregation';
import type { ClosableDb, Db } from '../lib/db/port';
import { createPostgresDb } from '../lib/db/postgres';
import { generatePages, type EventsPageDocument } from '../lib/demo/generator';
import { intFromEnv } from './support/env';
import { BENCH_ACCOUNT, openBenchDatabase } from './support/dataset';
import { benchCommand, writeBenchResult, type BenchTable } from './support/results';
import { median } from './support/stats';
import { planningTimes, processCpuMs, timedDb, type TimedDb } from './support/statementTimer';

/**
 * npm run bench:accounts: one account against many, at the same total size (issue 20).
 *
 * Three databases on one server, built from the same stored dataset (bench/support/dataset.ts):
 *   one:   every event in one account (the dataset as stored);
 *   many:  the same events in BENCH_ACCOUNTS accounts (default 100): each profile, and its events,
 *          in the account its id hashes to, every metric in every account; rollups rebuilt per account;
 *   alone: the events of one of those accounts, alone in its database.
 * Figures:
 *   - per-account query latency (metric aggregates of several plan shapes) in `many` against `one`
 *     (what an account of a shared deployment gets against a deployment of one account of the same
 *     total size), and against `alone` (the same account's data without its 99 neighbours: what sharing
 *     costs, the issue's goal of 20 %);
 *   - the scheduled aggregator's run time (runScheduledAggregation: every account with marks, one batch
 *     per account per round, as the deployed function runs) after BENCH_NEW_EVENTS new events: in `one`
 *     all in one account, in `many` spread over the accounts; and the measured account's share alone.
 *     BENCH_AGGREGATE_RUNS rounds (default 3), each with new events of its own, the layouts in turn;
 *     medians. With the run time, the CPU the server's backends and this process used (on a shared
 *     machine the wall time follows everyone's load, CPU time much less), the rollup rows the run
 *     inserted (rather than updated), and where the time went: per kind of statement, its round trips,
 *     the server CPU meanwhile and its planning time (bench/support/statementTimer.ts).
 *   - bytes per event and per rollup row (pg_total_relation_size over rows, in `one`).
 * Every answer of `many` and `alone` for the account measured in both is checked equal.
 */

const EVENTS = intFromEnv('BENCH_EVENTS', 100_000);
const ACCOUNTS = intFromEnv('BENCH_ACCOUNTS', 100, 2);
const NEW_EVENTS = intFromEnv('BENCH_NEW_EVENTS', 10_000);
const RUNS = intFromEnv('BENCH_RUNS', 30);
/** Aggregator runs per layout, each after its own NEW_EVENTS new events (generator seeds 2, 3, ...). */
const AGGREGATE_RUNS = intFromEnv('BENCH_AGGREGATE_RUNS', 3);
const SAMPLE = Math.min(ACCOUNTS, intFromEnv('BENCH_SAMPLE_ACCOUNTS', 10));
/** Aggregator runs started together (AGGREGATE_RUNS), each on its own connection: the machine's cores. */
const PARALLEL_RUNS = intFromEnv('BENCH_PARALLEL_RUNS', 2);

const BUSIEST = 'Uu7kBJ'; // Received Email
const ORDERS = 'K9dFhW'; // Placed Order

const say = (line: string) => process.stdout.write(`${line}\n`);
const round = (n: number, digits = 2) => Number(n.toFixed(digits));

const accountName = (i: number) => `acct-${String(i).padStart(3, '0')}`;
/** The account a profile (and its events) lands in: the same in SQL and here. */
const ACCOUNT_OF_SQL = (column: string) =>
  `'acct-' || lpad((abs(hashtext(${column})::bigint) % ${ACCOUNTS})::text, 3, '0')`;

interface Case {
  readonly label: string;
  readonly attributes: Record<string, unknown>;
}

function aggregateCase(label: string, metricId: string, rest: Record<string, unknown>, from: string, to: string): Case {
  return {
    label,
    attributes: {
      metric_id: metricId,
      filter: [`greater-or-equal(datetime,${from})`, `less-than(datetime,${to})`],
      timezone: 'UTC',
      page_size: 10_000,
      ...rest,
    },
  };
}

const CASES: readonly Case[] = [
  aggregateCase(
    'count+sum_value, day, one year (Received Email)',
    BUSIEST,
    { measurements: ['count', 'sum_value'], interval: 'day', timezone: 'America/New_York' },
    '2025-01-01T00:00:00',
    '2026-01-01T00:00:00',
  ),
  aggregateCase(
    'count+sum_value, hour, 7 days (Received Email)',
    BUSIEST,
    { measurements: ['count', 'sum_value'], interval: 'hour' },
    '2025-06-01T00:00:00',
    '2025-06-08T00:00:00',
  ),
  aggregateCase(
    'unique, day, 30 days (Received Email)',
    BUSIEST,
    { measurements: ['unique'], interval: 'day' },
    '2025-06-01T00:00:00',
    '2025-07-01T00:00:00',
  ),
  aggregateCase(
    'count+sum_value by $attributed_flow, day, one year (Placed Order): a breakdown',
    ORDERS,
    { measurements: ['count', 'sum_value'], interval: 'day', by: ['$attributed_flow'] },
    '2025-01-01T00:00:00',
    '2026-01-01T00:00:00',
  ),
];

async function answer(db: Db, accountId: string, c: Case): Promise<unknown> {
  const outcome = await queryMetricAggregates(
    db,
    accountId,
    { data: { type: 'metric-aggregate', attributes: c.attributes } },
    { maxRangeDays: 366, baseUrl: '' },
  );
  return outcome.document;
}

/**
 * p50 of RUNS timed answers for each target, after one untimed warm-up each. The targets take turns
 * run by run, so that a change of the machine's load during the measurement falls on all of them.
 */
async function latencies(c: Case, targets: readonly { db: Db; accountId: string }[]): Promise<number[]> {
  for (const t of targets) await answer(t.db, t.accountId, c);
  const samples: number[][] = targets.map(() => []);
  for (let i = 0; i < RUNS; i += 1) {
    for (const [k, t] of targets.entries()) {
      const started = performance.now();
      await answer(t.db, t.accountId, c);
      samples[k]?.push(performance.now() - started);
    }
  }
  return samples.map(median);
}

function urlOf(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
}

async function columnsBut(db: Db, table: string, except: string): Promise<string[]> {
  const rows = await db.query<{ name: string }>(
    `SELECT quote_ident(column_name) AS name FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name = $1 AND column_name <> $2 ORDER BY ordinal_position`,
    [table, except],
  );
  return rows.map((r) => r.name);
}

const ROLLUP_TABLES = [
  'klaviyo_aggregated_metrics',
  'klaviyo_aggregate_dirty',
  'klaviyo_aggregate_pending',
  'klaviyo_aggregate_adjustments',
  'klaviyo_profile_hours',
  'klaviyo_dimension_rollups',
  'klaviyo_dimension_daily_rollups',
  'klaviyo_dimension_fallbacks',
];

/**
 * Re-keys a copy of the one-account dataset into ACCOUNTS accounts, in one transaction: metrics are
 * copied into every account, profiles and events move to the account of their profile id (an event
 * without a profile goes by its own id). The rollups and the aggregator's bookkeeping are emptied; the
 * caller rebuilds them per account.
 */
async function splitIntoAccounts(db: Db): Promise<void> {
  const metricCols = await columnsBut(db, 'klaviyo_metrics', 'account_id');
  const profileCols = await columnsBut(db, 'klaviyo_profiles', 'account_id');
  const eventCols = await columnsBut(db, 'klaviyo_events', 'account_id');
  const list = (cols: string[], prefix: string) => cols.map((c) => `${prefix}.${c}`).join(', ');
  await db.transaction(async (tx) => {
    await tx.query(
      `INSERT INTO klaviyo_accounts (account_id)
       SELECT 'acct-' || lpad(i::text, 3, '0') FROM generate_series(0, ${ACCOUNTS - 1}) i ON CONFLICT DO NOTHING`,
    );
    await tx.query(`CREATE TEMP TABLE old_events ON COMMIT DROP AS SELECT * FROM klaviyo_events`);
    await tx.query(`CREATE TEMP TABLE old_profiles ON COMMIT DROP AS SELECT * FROM klaviyo_profiles`);
    await tx.query(`CREATE TEMP TABLE old_metrics ON COMMIT DROP AS SELECT * FROM klaviyo_metrics`);
    await tx.query(`TRUNCATE ${ROLLUP_TABLES.join(', ')}, klaviyo_events, klaviyo_profiles, klaviyo_metrics`);
    await tx.query(
      `INSERT INTO klaviyo_metrics (account_id, ${metricCols.join(', ')})
       SELECT a.account_id, ${list(metricCols, 'm')} FROM old_metrics m
       CROSS JOIN (SELECT account_id FROM klaviyo_accounts WHERE account_id LIKE 'acct-%') a`,
    );
    await tx.query(
      `INSERT INTO klaviyo_profiles (account_id, ${profileCols.join(', ')})
       SELECT ${ACCOUNT_OF_SQL('p.id')}, ${list(profileCols, 'p')} FROM old_profiles p`,
    );
    await tx.query(
      `INSERT INTO klaviyo_events (account_id, ${eventCols.join(', ')})
       SELECT ${ACCOUNT_OF_SQL('coalesce(e.profile_id, e.id)')}, ${list(eventCols, 'e')} FROM old_events e`,
    );
  });
}

/** Keeps one account's rows only (a copy of `many`), then compacts the tables. */
async function keepOnly(db: Db, accountId: string): Promise<void> {
  await db.transaction(async (tx) => {
    for (const table of [...ROLLUP_TABLES, 'klaviyo_events', 'klaviyo_profiles', 'klaviyo_metrics']) {
      await tx.query(`DELETE FROM ${table} WHERE account_id <> $1`, [accountId]);
    }
    await tx.query(`DELETE FROM klaviyo_accounts WHERE account_id <> $1`, [accountId]);
  });
}

async function vacuum(db: Db, full: boolean): Promise<void> {
  await db.query(full ? 'VACUUM (FULL, ANALYZE)' : 'VACUUM (ANALYZE)');
}

/** The aggregator's statements, named for the breakdown (bench/support/statementTimer.ts). */
function statementKind(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  if (/FOR NO KEY UPDATE SKIP LOCKED/.test(t)) return 'account lock';
  if (/^SET LOCAL plan_cache_mode/.test(t)) return 'generic plans for the batch (SET LOCAL)';
  if (/^WITH chosen AS MATERIALIZED/.test(t)) return 'take marks';
  if (/jsonb_to_recordset/.test(t) && /klaviyo_rollup_unique_dimensions/.test(t)) return 'dimension profiles';
  if (/jsonb_to_recordset/.test(t) && /klaviyo_dimension_rollups/.test(t)) return 'dimension rollups';
  if (/DELETE FROM klaviyo_aggregate_pending/.test(t)) return 'hourly rollups and profile-hours';
  if (/klaviyo_dimension_fallbacks/.test(t)) return 'dimension fallbacks';
  if (/FROM klaviyo_aggregate_dirty d GROUP BY d\.account_id/.test(t)) return 'accounts with work (per run)';
  if (/AS waiting/.test(t)) return 'backlog (per run)';
  return 'other';
}

interface AggregatorRun {
  readonly ms: number;
  /** CPU the database's server processes used during the run (null: not a server on this machine). */
  readonly serverCpuMs: number | null;
  /** CPU this process (the application and the driver) used during the run. */
  readonly nodeCpuMs: number;
  readonly batches: number;
  readonly accounts: number;
  /** Rollup rows (hourly and dimension, hourly and daily) the run added: new rows, not updates of stored ones. */
  readonly newRollupRows: number;
  readonly timed: TimedDb;
}

/** Rows of the rollup tables, every account: how many rows a run inserted rather than updated. */
async function rollupRows(db: Db): Promise<number> {
  const [row] = await db.query<{ n: string }>(
    `SELECT (SELECT count(*) FROM klaviyo_aggregated_metrics) + (SELECT count(*) FROM klaviyo_dimension_rollups)
            + (SELECT count(*) FROM klaviyo_dimension_daily_rollups) AS n`,
  );
  return Number(row?.n ?? 0);
}

/**
 * The aggregator as the schedule runs it (every account with marks, one batch per account per round),
 * `runs` runs started together (AGGREGATE_RUNS: each on its own connection and its own share of the
 * accounts), each run again until it finds nothing to do; returns the time it took, the CPU of the
 * database's connections and of this process, the batches, the new rollup rows and, for one run, its
 * statements' times (runs together overlap their statements: no breakdown for them).
 */
async function aggregateAll(db: Db, serverPids: () => Promise<number[]>, runs = 1): Promise<AggregatorRun> {
  // Every connection of the pool open before the run, so that the run's CPU is read from all of them.
  await Promise.all(Array.from({ length: Math.max(2, runs) }, () => db.query('SELECT 1')));
  const rowsBefore = await rollupRows(db);
  const pids = await serverPids();
  const timed = timedDb(db, () => processCpuMs(pids));
  const serverCpuBefore = processCpuMs(pids);
  const nodeCpuBefore = process.cpuUsage();
  const started = performance.now();
  const each = await Promise.all(
    Array.from({ length: runs }, async (_, index) => {
      let batches = 0;
      let accounts = 0;
      for (let i = 0; i < 1000; i += 1) {
        const run = await runScheduledAggregation(runs === 1 ? timed.db : db, {
          remainingMs: undefined,
          marginMs: 0,
          batchBuckets: 5000,
          timeBudgetMs: 600_000,
          run: { index, of: runs },
        });
        batches += run.batches;
        accounts = Math.max(accounts, run.accounts);
        if (run.bucketsWaiting === 0 || run.bucketsRecomputed === 0) break;
      }
      return { batches, accounts };
    }),
  );
  const ms = performance.now() - started;
  const nodeCpu = process.cpuUsage(nodeCpuBefore);
  const serverCpuAfter = processCpuMs(pids);
  return {
    ms,
    serverCpuMs: serverCpuBefore === null || serverCpuAfter === null ? null : serverCpuAfter - serverCpuBefore,
    nodeCpuMs: (nodeCpu.user + nodeCpu.system) / 1000,
    batches: each.reduce((n, r) => n + r.batches, 0),
    accounts: Math.max(...each.map((r) => r.accounts)),
    newRollupRows: (await rollupRows(db)) - rowsBefore,
    timed,
  };
}

/**
 * Where a layout's aggregator time went, over its runs: per statement kind, statements per batch,
 * their round trip and, from EXPLAIN (SUMMARY) of the last run's statements of that kind (up to
 * PLANNED_PER_KIND), their planning time; then what the transactions spent outside statements (BEGIN,
 * COMMIT, the application between statements).
 */
const PLANNED_PER_KIND = 20;

async function breakdown(
  db: Db,
  layout: string,
  runs: readonly AggregatorRun[],
): Promise<(string | number | null)[][]> {
  const batches = runs.reduce((n, r) => n + r.batches, 0);
  const totalMs = runs.reduce((n, r) => n + r.ms, 0);
  const kinds = new Map<string, { n: number; ms: number; cpuMs: number | null }>();
  for (const r of runs) {
    for (const s of r.timed.statements) {
      const kind = statementKind(s.text);
      const k = kinds.get(kind) ?? { n: 0, ms: 0, cpuMs: 0 };
      k.n += 1;
      k.ms += s.ms;
      k.cpuMs = k.cpuMs === null || s.serverCpuMs === null ? null : k.cpuMs + s.serverCpuMs;
      kinds.set(kind, k);
    }
  }
  const last = runs[runs.length - 1];
  const rows: (string | number | null)[][] = [];
  for (const [kind, k] of kinds) {
    // A SET has no plan: EXPLAIN would refuse it.
    const sample = (last?.timed.statements ?? [])
      .filter((s) => statementKind(s.text) === kind && !/^\s*SET /.test(s.text))
      .slice(0, PLANNED_PER_KIND);
    const plans = sample.length > 0 ? await planningTimes(db, sample) : [];
    const planningMs = plans.length > 0 ? median(plans) : 0;
    rows.push([
      layout,
      kind,
      round(k.n / batches, 2),
      round(k.ms / k.n, 2),
      round(planningMs, 2),
      round(k.ms / batches, 2),
      k.cpuMs === null ? null : round(k.cpuMs / batches, 2),
      round((100 * k.ms) / totalMs, 1),
    ]);
  }
  const inTransactions = runs.reduce((n, r) => n + r.timed.transactions.reduce((a, b) => a + b, 0), 0);
  const statementsInTransactions = runs.reduce(
    (n, r) => n + r.timed.statements.filter((s) => s.inTransaction).reduce((a, s) => a + s.ms, 0),
    0,
  );
  const transactions = runs.reduce((n, r) => n + r.timed.transactions.length, 0);
  const beside = inTransactions - statementsInTransactions;
  rows.push([
    layout,
    'BEGIN, COMMIT and the application between statements',
    round(transactions / batches, 2),
    round(beside / transactions, 2),
    null,
    round(beside / batches, 2),
    null,
    round((100 * beside) / totalMs, 1),
  ]);
  return rows;
}

/**
 * The same NEW_EVENTS new events (generator seed `seed`, the dataset's profiles and metrics) for every
 * layout: `route` says which account each event goes to (or none: left out). Pages are split per
 * account and written through the real ingest path.
 */
async function addNewEvents(
  db: Db,
  generator: { profiles: number; start: Date; end: Date; seed: number },
  route: (profileId: string | null, eventId: string) => string | null,
): Promise<number> {
  let written = 0;
  const pages = generatePages({ events: NEW_EVENTS, pageSize: 1000, ...generator });
  for (const page of pages) {
    const byAccount = new Map<string, EventsPageDocument>();
    for (const event of page.data) {
      const accountId = route(event.relationships.profile.data?.id ?? null, event.id);
      if (accountId === null) continue;
      let sub = byAccount.get(accountId);
      if (!sub) {
        sub = { ...page, data: [] };
        byAccount.set(accountId, sub);
      }
      sub.data.push(event);
    }
    for (const [accountId, sub] of byAccount) {
      const plan = planEventsPage(sub, { maxResources: 1000 });
      const counts = await db.transaction((tx) => writeEventsPage(tx, accountId, plan));
      written += counts.inserted;
    }
  }
  return written;
}

async function main(): Promise<void> {
  const bench = await openBenchDatabase({ name: 'accounts', events: EVENTS, profiles: Math.round(EVENTS / 10) });
  const admin = postgres(urlOf(bench.url, 'postgres'), { max: 1, onnotice: () => undefined });
  const opened: ClosableDb[] = [];
  const open = (name: string) => {
    const db = createPostgresDb({
      url: urlOf(bench.url, name),
      ssl: 'disable',
      poolMax: Math.max(2, PARALLEL_RUNS),
      idleTimeoutSeconds: 0,
      connectTimeoutSeconds: 30,
      statementTimeoutMs: 0,
      prepare: true,
    });
    opened.push(db);
    return db;
  };
  const template = new URL(bench.url).pathname.slice(1);
  const copyOf = async (name: string) => {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.unsafe(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${template}' AND pid <> pg_backend_pid()`,
    );
    await admin.unsafe(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    return open(name);
  };
  try {
    const generator = { profiles: bench.generator.profiles, start: bench.generator.start, end: bench.generator.end };
    say(`one account: ${EVENTS.toLocaleString('en-US')} events (stored dataset, aggregated)`);
    const one = await copyOf('accounts_one');
    const many = await copyOf('accounts_many');

    say(`many accounts: splitting into ${ACCOUNTS} accounts and rebuilding their rollups...`);
    const splitStarted = performance.now();
    await splitIntoAccounts(many);
    // Fresh statistics: the copy's say one account holds every row, and the rebuilds' plans follow them.
    await vacuum(many, false);
    // One chunk per account: an account holds a small share of the year.
    for (let i = 0; i < ACCOUNTS; i += 1) await rebuildAggregates(many, accountName(i), { chunkHours: 367 * 24 });
    await vacuum(many, false);
    say(`  ${((performance.now() - splitStarted) / 1000).toFixed(1)} s`);
    const measured = accountName(0);
    await admin.unsafe(`DROP DATABASE IF EXISTS accounts_alone WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE accounts_alone TEMPLATE accounts_many`).catch(async () => {
      // `many` has an open pool: close its connections for the copy, it reconnects on its next query.
      await admin.unsafe(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'accounts_many' AND pid <> pg_backend_pid()`,
      );
      await admin.unsafe(`CREATE DATABASE accounts_alone TEMPLATE accounts_many`);
    });
    const alone = open('accounts_alone');
    await keepOnly(alone, measured);
    await vacuum(alone, true);
    await vacuum(one, false);

    const [{ n: measuredEvents } = { n: '0' }] = await many.query<{ n: string }>(
      'SELECT count(*) AS n FROM klaviyo_events WHERE account_id = $1',
      [measured],
    );
    say(`account ${measured}: ${Number(measuredEvents).toLocaleString('en-US')} events`);

    // Query latency.
    const sample = Array.from({ length: SAMPLE }, (_, i) => accountName(Math.floor((i * ACCOUNTS) / SAMPLE)));
    const queryRows: (string | number)[][] = [];
    const goals: string[] = [];
    for (const c of CASES) {
      const [oneMs = 0, ...sampled] = await latencies(c, [
        { db: one, accountId: BENCH_ACCOUNT },
        ...sample.map((accountId) => ({ db: many, accountId })),
      ]);
      const manyMs = median(sampled);
      const [manyMeasuredMs = 0, aloneMs = 0] = await latencies(c, [
        { db: many, accountId: measured },
        { db: alone, accountId: measured },
      ]);
      const same = JSON.stringify(await answer(many, measured, c)) === JSON.stringify(await answer(alone, measured, c));
      if (!same) throw new Error(`${c.label}: ${measured} answers differently among ${ACCOUNTS} accounts and alone`);
      queryRows.push([
        c.label,
        round(oneMs),
        round(manyMs),
        round(manyMs / oneMs, 3),
        round(manyMeasuredMs),
        round(aloneMs),
        round(manyMeasuredMs / aloneMs, 3),
      ]);
      say(
        `${c.label}: one ${oneMs.toFixed(2)} ms, many (median of ${SAMPLE}) ${manyMs.toFixed(2)} ms; ${measured} among ${ACCOUNTS} ${manyMeasuredMs.toFixed(2)} ms, alone ${aloneMs.toFixed(2)} ms`,
      );
    }

    // The aggregator after new events: AGGREGATE_RUNS rounds, each with its own new events, the
    // layouts taking turns within a round so that a change of the machine's load falls on all of them.
    const hashRows = async (db: Db, keys: string[]) =>
      new Map(
        (
          await db.query<{ k: string; a: string }>(
            `SELECT k, ${ACCOUNT_OF_SQL('k')} AS a FROM unnest($1::text[]) AS k`,
            [`{${keys.map((k) => `"${k.replace(/"/g, '\\"')}"`).join(',')}}`],
          )
        ).map((r) => [r.k, r.a]),
      );
    const pidsOf = (database: string) => async () =>
      // The bench's own connections: an autovacuum worker of the database may end within the run,
      // and its CPU could no longer be read.
      (
        await admin.unsafe<{ pid: number }[]>(
          `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
          [database],
        )
      ).map((r) => r.pid);
    const oneRuns: AggregatorRun[] = [];
    const manyRuns: AggregatorRun[] = [];
    const aloneRuns: AggregatorRun[] = [];
    const oneParallelRuns: AggregatorRun[] = [];
    const manyParallelRuns: AggregatorRun[] = [];
    let aloneNew = 0;
    for (let run = 0; run < AGGREGATE_RUNS; run += 1) {
      const newEvents = { ...generator, seed: 2 + run };
      // The accounts of the new events' keys, computed by the same SQL as the split.
      const keys: string[] = [];
      for (const page of generatePages({ events: NEW_EVENTS, pageSize: 1000, ...newEvents })) {
        for (const e of page.data) keys.push(e.relationships.profile.data?.id ?? e.id);
      }
      const accountByKey = await hashRows(many, [...new Set(keys)]);
      const route = (p: string | null, e: string) => accountByKey.get(p ?? e) ?? null;

      await addNewEvents(one, newEvents, () => BENCH_ACCOUNT);
      const oneRun = await aggregateAll(one, pidsOf('accounts_one'));
      await addNewEvents(many, newEvents, route);
      const manyRun = await aggregateAll(many, pidsOf('accounts_many'));
      aloneNew += await addNewEvents(alone, newEvents, (p, e) => (route(p, e) === measured ? measured : null));
      const aloneRun = await aggregateAll(alone, pidsOf('accounts_alone'));
      oneRuns.push(oneRun);
      manyRuns.push(manyRun);
      aloneRuns.push(aloneRun);
      // The same again with runs started together, on new events of their own (seeds after the
      // serial rounds'), routed to the accounts as before.
      if (PARALLEL_RUNS > 1) {
        const parallelEvents = { ...generator, seed: 2 + AGGREGATE_RUNS + run };
        const parallelKeys: string[] = [];
        for (const page of generatePages({ events: NEW_EVENTS, pageSize: 1000, ...parallelEvents })) {
          for (const e of page.data) parallelKeys.push(e.relationships.profile.data?.id ?? e.id);
        }
        const parallelAccountByKey = await hashRows(many, [...new Set(parallelKeys)]);
        await addNewEvents(one, parallelEvents, () => BENCH_ACCOUNT);
        oneParallelRuns.push(await aggregateAll(one, pidsOf('accounts_one'), PARALLEL_RUNS));
        await addNewEvents(many, parallelEvents, (p, e) => parallelAccountByKey.get(p ?? e) ?? null);
        manyParallelRuns.push(await aggregateAll(many, pidsOf('accounts_many'), PARALLEL_RUNS));
        say(
          `  ${PARALLEL_RUNS} runs together: one account ${oneParallelRuns.at(-1)?.ms.toFixed(0)} ms, ` +
            `${ACCOUNTS} accounts ${manyParallelRuns.at(-1)?.ms.toFixed(0)} ms`,
        );
      }
      say(
        `aggregator after ${NEW_EVENTS} new events (run ${run + 1}/${AGGREGATE_RUNS}): one account ${oneRun.ms.toFixed(0)} ms (${oneRun.batches} batches), ` +
          `${manyRun.accounts} accounts ${manyRun.ms.toFixed(0)} ms (${manyRun.batches} batches); ` +
          `${measured} alone ${aloneRun.ms.toFixed(0)} ms`,
      );
    }
    const runMs = (runs: readonly AggregatorRun[]) => median(runs.map((r) => r.ms));
    const cpuMs = (runs: readonly AggregatorRun[]) => {
      const server = runs.map((r) => r.serverCpuMs);
      return server.every((ms): ms is number => ms !== null)
        ? median(runs.map((r, i) => (server[i] as number) + r.nodeCpuMs))
        : null;
    };
    const oneCpuMs = cpuMs(oneRuns);
    const manyCpuMs = cpuMs(manyRuns);
    const aloneCpuMs = cpuMs(aloneRuns);
    const cpuRatio = (ms: number | null) => (ms === null || oneCpuMs === null ? null : round(ms / oneCpuMs, 3));
    const cpuCell = (ms: number | null) => (ms === null ? null : round(ms, 0));
    const oneAggregateMs = runMs(oneRuns);
    const manyAggregateMs = runMs(manyRuns);
    const aloneAggregateMs = runMs(aloneRuns);
    const newRows = (runs: readonly AggregatorRun[]) => median(runs.map((r) => r.newRollupRows));
    const batchesOf = (runs: readonly AggregatorRun[]) => runs[0]?.batches ?? 0;
    const breakdownRows = [
      ...(await breakdown(one, 'one account', oneRuns)),
      ...(await breakdown(many, `${ACCOUNTS} accounts`, manyRuns)),
    ];

    // Storage per row, in `one`.
    const sizes = await one.query<{ tbl: string; bytes: string; n: string }>(
      `SELECT t AS tbl, pg_total_relation_size(t::regclass) AS bytes,
              (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', t), false, true, '')))[1]::text AS n
       FROM unnest($1::text[]) AS t`,
      [
        '{klaviyo_events,klaviyo_profiles,klaviyo_aggregated_metrics,klaviyo_profile_hours,klaviyo_dimension_rollups,klaviyo_dimension_daily_rollups}',
      ],
    );

    const queryRatio = Math.max(...queryRows.map((r) => Number(r[6])));
    const aggregateRatio = manyAggregateMs / oneAggregateMs;
    const oneParallelMs = runMs(oneParallelRuns);
    const manyParallelMs = runMs(manyParallelRuns);
    const parallelRatio = manyParallelMs / oneParallelMs;
    const oneParallelCpuMs = cpuMs(oneParallelRuns);
    const manyParallelCpuMs = cpuMs(manyParallelRuns);
    goals.push(
      `Per-account query latency within 20 % of the account alone: the largest ratio, ${ACCOUNTS} accounts against alone, is ${queryRatio.toFixed(3)} (${queryRatio <= 1.2 ? 'met' : 'not met'}).`,
      `The aggregator's run after ${NEW_EVENTS.toLocaleString('en-US')} new events within 20 % of one account's, one run at a time: ${aggregateRatio.toFixed(3)} for ${ACCOUNTS} accounts (${aggregateRatio <= 1.2 ? 'met' : 'not met'}).`,
      ...(PARALLEL_RUNS > 1
        ? [
            `The same with ${PARALLEL_RUNS} runs started together (AGGREGATE_RUNS=${PARALLEL_RUNS}), accounts aggregated in parallel: ${parallelRatio.toFixed(3)} for ${ACCOUNTS} accounts (${parallelRatio <= 1.2 ? 'met' : 'not met'}); the CPU they use, ${manyParallelCpuMs === null || oneParallelCpuMs === null ? 'not measured' : `${(manyParallelCpuMs / oneParallelCpuMs).toFixed(3)}x one account's`}.`,
          ]
        : []),
    );
    const tables: BenchTable[] = [
      {
        title: `Metric aggregates, p50 of ${RUNS} runs (ms): one account of ${EVENTS.toLocaleString('en-US')} events, ${ACCOUNTS} accounts sharing them, one of those accounts alone`,
        columns: [
          'case',
          'one account',
          `${ACCOUNTS} accounts (median of ${SAMPLE})`,
          `${ACCOUNTS} / one`,
          `${measured} among ${ACCOUNTS}`,
          `${measured} alone`,
          'among / alone',
        ],
        rows: queryRows,
      },
      {
        title: `The scheduled aggregator after ${NEW_EVENTS.toLocaleString('en-US')} new events, until nothing is marked: median of ${AGGREGATE_RUNS} runs (ms)`,
        columns: [
          'layout',
          'batches per run',
          'run time',
          'ratio to one account',
          'CPU time (server and Node)',
          'CPU ratio to one account',
          'new rollup rows per run',
        ],
        rows: [
          [
            'one account (reference)',
            batchesOf(oneRuns),
            round(oneAggregateMs, 0),
            1,
            cpuCell(oneCpuMs),
            cpuRatio(oneCpuMs),
            newRows(oneRuns),
          ],
          [
            `${manyRuns[0]?.accounts ?? ACCOUNTS} accounts, round-robin`,
            batchesOf(manyRuns),
            round(manyAggregateMs, 0),
            round(aggregateRatio, 3),
            cpuCell(manyCpuMs),
            cpuRatio(manyCpuMs),
            newRows(manyRuns),
          ],
          ...(PARALLEL_RUNS > 1
            ? [
                [
                  `one account, ${PARALLEL_RUNS} runs together (its one lock: one works)`,
                  batchesOf(oneParallelRuns),
                  round(oneParallelMs, 0),
                  round(oneParallelMs / oneAggregateMs, 3),
                  cpuCell(oneParallelCpuMs),
                  cpuRatio(oneParallelCpuMs),
                  newRows(oneParallelRuns),
                ],
                [
                  `${manyParallelRuns[0]?.accounts ?? ACCOUNTS} accounts, ${PARALLEL_RUNS} runs together (ratio: to one account's ${PARALLEL_RUNS} runs)`,
                  batchesOf(manyParallelRuns),
                  round(manyParallelMs, 0),
                  round(parallelRatio, 3),
                  cpuCell(manyParallelCpuMs),
                  oneParallelCpuMs === null || manyParallelCpuMs === null
                    ? null
                    : round(manyParallelCpuMs / oneParallelCpuMs, 3),
                  newRows(manyParallelRuns),
                ],
              ]
            : []),
          [
            `${measured} alone, its share of the new events (${Math.round(aloneNew / AGGREGATE_RUNS)} a run)`,
            batchesOf(aloneRuns),
            round(aloneAggregateMs, 0),
            round(aloneAggregateMs / oneAggregateMs, 3),
            cpuCell(aloneCpuMs),
            cpuRatio(aloneCpuMs),
            newRows(aloneRuns),
          ],
        ],
      },
      {
        title: `Where the aggregator's time goes, over the ${AGGREGATE_RUNS} runs of each layout (client-side round trips; planning from EXPLAIN (SUMMARY) of up to ${PLANNED_PER_KIND} of the last run's statements of each kind)`,
        columns: [
          'layout',
          'statement',
          'per batch',
          'ms each',
          'planning for its parameters, ms (median)',
          'ms per batch',
          'server CPU, ms per batch',
          '% of run time',
        ],
        rows: breakdownRows,
      },
      {
        title: 'Storage per row (table, indexes and TOAST; one account, plain PostgreSQL)',
        columns: ['table', 'rows', 'MB', 'bytes per row'],
        rows: sizes.map((s) => [
          s.tbl,
          Number(s.n),
          round(Number(s.bytes) / 2 ** 20, 1),
          Number(s.n) > 0 ? Math.round(Number(s.bytes) / Number(s.n)) : 0,
        ]),
      },
    ];
    const path = writeBenchResult({
      bench: 'accounts',
      title: 'Many accounts: one account against 100 of the same total size',
      command: benchCommand('bench/accounts.ts'),
      reference: `the same events in one account (and, for sharing's cost, one account's events alone), same run, same server`,
      dataset: {
        events: EVENTS,
        accounts: ACCOUNTS,
        measured_account_events: Number(measuredEvents),
        new_events: NEW_EVENTS,
        runs: RUNS,
        aggregate_runs: AGGREGATE_RUNS,
        parallel_runs: PARALLEL_RUNS,
        sampled_accounts: SAMPLE,
      },
      tables,
      goals,
      notes: [
        `Accounts are made from the one-account dataset: each profile and its events go to the account its id hashes to; every metric is in every account.`,
        `"${ACCOUNTS} / one" compares an account of 1/${ACCOUNTS} of the data with one account holding all of it; "among / alone" compares the same account's data with and without ${ACCOUNTS - 1} neighbours, which is what sharing a deployment costs.`,
        `Every answer of ${measured} among ${ACCOUNTS} accounts was checked equal to its answer alone.`,
      ],
    });
    say(`wrote ${path}`);
  } finally {
    for (const db of opened) await db.close().catch(() => undefined);
    await admin.end({ timeout: 5 }).catch(() => undefined);
    await bench.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
