/**
 * The two drivers of the Db port side by side, in the same run, on the same server and data:
 * postgres.js over TCP (the reference) and the RDS Data API driver through the local endpoint
 * (tests/support/dataApiServer.ts: the Data API's HTTP protocol, served over the same PostgreSQL).
 *
 *   npx tsx bench/drivers.ts                                   # 50 pages of 1000 events, 50 query runs
 *   BENCH_PAGES=5 BENCH_RUNS=10 npx tsx bench/drivers.ts       # a quick run
 *
 * Operations, each through the library entry point the handler calls (no HTTP wrapper):
 * 1. ingest: `ingestEventsPage` with one 1000-event Klaviyo page (events, included profiles and
 *    metrics; one transaction). Each driver writes into its own database, the same pages in the same
 *    order; the driver that goes first alternates page by page, so drift of the machine hits both.
 * 2. metric aggregates: `queryMetricAggregates`, count + sum_value + unique by day over the whole
 *    year for the busiest metric, after the aggregator rolled up every hour.
 * 3. profile lookup: `getProfileById` for a profile of the data set (a different one each run).
 *
 * What the ratio means: the local endpoint is not AWS. It runs in this process over loopback and
 * adds what the driver itself costs (SDK request building and SigV4 signing, JSON (de)serialisation
 * of every value, typed decoding, one HTTP round trip per statement plus Begin/Commit for a
 * transaction) and the endpoint's own translation. It does not include the real service's network
 * latency (tens of ms per call from a Lambda, more on a cold Aurora), its proxy fleet, throttling,
 * or Aurora Serverless capacity. So the figure is a floor for the Data API's overhead, not a
 * prediction of production latency.
 *
 * Knobs: BENCH_PAGES (default 50), BENCH_PAGE_SIZE (default 1000), BENCH_RUNS (query samples,
 * default 50), BENCH_SEED (default 1). Uses DATABASE_URL's server when set (it creates and drops
 * two databases there), else starts its own embedded PostgreSQL in .data/bench-drivers and stops it
 * at exit.
 */
import { join, resolve } from 'node:path';
import postgres from 'postgres';
import { queryMetricAggregates } from '../lib/app/metricAggregates';
import { runAggregation } from '../lib/app/aggregation';
import { DEFAULT_ACCOUNT_ID, type PostgresTuning } from '../lib/config';
import { createDataApiDb } from '../lib/db/dataApi';
import { removeEmbeddedData, startEmbeddedPostgres, type EmbeddedServer } from '../lib/db/embedded';
import { migrate } from '../lib/db/migrate';
import type { ClosableDb, Db } from '../lib/db/port';
import { createPostgresDb } from '../lib/db/postgres';
import { generatePages, type EventsPageDocument } from '../lib/demo/generator';
import { ingestEventsPage } from '../lib/app/ingest';
import { setLogLevel } from '../lib/log';
import { getProfileById } from '../lib/repositories/profiles';
import { startDataApiServer, type DataApiServer } from '../tests/support/dataApiServer';
import { intFromEnv } from './support/env';
import { benchCommand, writeBenchResult } from './support/results';

const PAGES = intFromEnv('BENCH_PAGES', 50);
const PAGE_SIZE = intFromEnv('BENCH_PAGE_SIZE', 1000);
const RUNS = intFromEnv('BENCH_RUNS', 50);
const SEED = intFromEnv('BENCH_SEED', 1);
const ROOT = resolve(__dirname, '..');
const DATA_DIR = join(ROOT, '.data', 'bench-drivers');
const DATABASES = { postgres: 'bench_drivers_pg', 'data-api': 'bench_drivers_api' } as const;
type Driver = keyof typeof DATABASES;
const DRIVERS: readonly Driver[] = ['postgres', 'data-api'];

// What a Lambda container gets from lib/config defaults: one connection, prepared statements.
const LAMBDA_TUNING: PostgresTuning = {
  ssl: 'disable',
  poolMax: 1,
  idleTimeoutSeconds: 20,
  connectTimeoutSeconds: 10,
  statementTimeoutMs: 25_000,
  prepare: true,
};

const say = (line: string) => process.stdout.write(line + '\n');

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

interface Samples {
  readonly postgres: number[];
  readonly 'data-api': number[];
}

/** One row per operation for bench/results/drivers.json: p50 and p95 of each driver (ms), the p50 ratio. */
const summaryRows: (string | number)[][] = [];

function summarise(label: string, samples: Samples): void {
  const stats = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), total: xs.reduce((s, x) => s + x, 0) };
  };
  const pg = stats(samples.postgres);
  const api = stats(samples['data-api']);
  const ms = (x: number) => x.toFixed(x < 10 ? 2 : 1).padStart(8);
  say(
    `${label.padEnd(22)} postgres p50 ${ms(pg.p50)} ms  p95 ${ms(pg.p95)} ms | data-api p50 ${ms(api.p50)} ms  p95 ${ms(api.p95)} ms` +
      ` | ratio p50 ${(api.p50 / pg.p50).toFixed(2)}x  total ${(api.total / pg.total).toFixed(2)}x  (n=${samples.postgres.length})`,
  );
  const round = (x: number) => Math.round(x * 100) / 100;
  summaryRows.push([label, round(pg.p50), round(pg.p95), round(api.p50), round(api.p95), round(api.p50 / pg.p50)]);
}

async function timed<R>(work: () => Promise<R>): Promise<{ ms: number; result: R }> {
  const started = process.hrtime.bigint();
  const result = await work();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, result };
}

async function main(): Promise<void> {
  setLogLevel('silent');
  let server: EmbeddedServer | undefined;
  let endpoint: DataApiServer | undefined;
  const clients: ClosableDb[] = [];
  let adminUrl: string;
  if (process.env.DATABASE_URL) {
    const url = new URL(process.env.DATABASE_URL);
    url.pathname = '/postgres';
    adminUrl = url.toString();
  } else {
    removeEmbeddedData(DATA_DIR);
    server = await startEmbeddedPostgres({
      dataDir: DATA_DIR,
      database: 'postgres',
      settings: { synchronous_commit: 'off' },
    });
    adminUrl = server.urlFor('postgres');
  }
  const urlOf = (database: string) => {
    const url = new URL(adminUrl);
    url.pathname = `/${database}`;
    return url.toString();
  };
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  try {
    for (const database of Object.values(DATABASES)) {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.unsafe(`CREATE DATABASE ${database}`);
      const setup = createPostgresDb({ url: urlOf(database), ...LAMBDA_TUNING, statementTimeoutMs: 0 });
      try {
        await migrate(setup);
      } finally {
        await setup.close();
      }
    }

    // lib/config is read for the ingest and query limits only; its database settings go unused here.
    process.env.DATABASE_URL = urlOf(DATABASES.postgres);
    endpoint = await startDataApiServer({ adminUrl });
    // Dummy credentials: the local endpoint checks that a request is signed, not by whom; with them
    // the SDK never looks for credentials on the network.
    process.env.AWS_ACCESS_KEY_ID ??= 'AKIDLOCALBENCH';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'local-bench-secret';
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    const dbs: Record<Driver, ClosableDb> = {
      postgres: createPostgresDb({ url: urlOf(DATABASES.postgres), ...LAMBDA_TUNING }),
      'data-api': createDataApiDb({
        clusterArn: 'arn:aws:rds:us-east-1:123456789012:cluster:klaviyo-bench',
        secretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:klaviyo-bench-AbCdEf',
        database: DATABASES['data-api'],
        endpoint: endpoint.endpoint,
        region: 'us-east-1',
        retryBudgetMs: 10_000,
      }),
    };
    clients.push(dbs.postgres, dbs['data-api']);

    say(
      `bench/drivers: ${PAGES} pages of ${PAGE_SIZE} events, ${RUNS} query runs, seed ${SEED}; data-api = local endpoint over the same PostgreSQL`,
    );

    // 1. Ingest
    const ingest: Samples = { postgres: [], 'data-api': [] };
    const eventCounts = new Map<string, number>();
    const profileIds = new Set<string>();
    let stored = 0;
    let pageIndex = 0;
    for (const page of generatePages({ seed: SEED, events: PAGES * PAGE_SIZE, pageSize: PAGE_SIZE })) {
      const body = JSON.stringify(page);
      const order = pageIndex % 2 === 0 ? DRIVERS : [...DRIVERS].reverse();
      for (const driver of order) {
        // A fresh object per driver, as each invocation parses its own request body.
        const document = JSON.parse(body) as EventsPageDocument;
        const { ms, result } = await timed(() => ingestEventsPage(dbs[driver], DEFAULT_ACCOUNT_ID, document));
        ingest[driver].push(ms);
        if (driver === 'postgres') stored += result.inserted;
      }
      for (const event of page.data) {
        const metricId = event.relationships.metric.data.id;
        eventCounts.set(metricId, (eventCounts.get(metricId) ?? 0) + 1);
      }
      for (const resource of page.included) if (resource.type === 'profile') profileIds.add(resource.id);
      pageIndex += 1;
    }
    summarise('ingest page', ingest);

    // Same data on both sides, or the comparison means nothing.
    const counts = await Promise.all(
      DRIVERS.map(
        async (driver) => (await dbs[driver].query<{ n: string }>('SELECT count(*) AS n FROM klaviyo_events'))[0]?.n,
      ),
    );
    if (counts[0] !== counts[1] || Number(counts[0]) !== stored) {
      throw new Error(
        `The drivers stored different data: postgres ${counts[0]}, data-api ${counts[1]}, inserted ${stored}`,
      );
    }

    // The aggregator as the schedule runs it, until no hour is dirty, through each driver.
    for (const driver of DRIVERS) {
      for (;;) {
        const run = await runAggregation(dbs[driver], DEFAULT_ACCOUNT_ID, { batchBuckets: 5000, timeBudgetMs: 60_000 });
        if (run.status !== 'done' || run.bucketsRecomputed === 0) break;
      }
    }

    // 2. Metric aggregates
    const busiest = [...eventCounts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
    if (!busiest) throw new Error('No events were generated');
    const aggregateBody = {
      data: {
        type: 'metric-aggregate',
        attributes: {
          metric_id: busiest,
          measurements: ['count', 'sum_value', 'unique'],
          interval: 'day',
          timezone: 'UTC',
          filter: ['greater-or-equal(datetime,2025-01-01T00:00:00Z)', 'less-than(datetime,2026-01-01T00:00:00Z)'],
          page_size: 500,
        },
      },
    };
    const aggregates: Samples = { postgres: [], 'data-api': [] };
    const answers: Record<Driver, string> = { postgres: '', 'data-api': '' };
    const options = { maxRangeDays: 366, baseUrl: 'http://localhost/api' };
    for (let run = 0; run < RUNS; run += 1) {
      const order = run % 2 === 0 ? DRIVERS : [...DRIVERS].reverse();
      for (const driver of order) {
        const { ms, result } = await timed(() =>
          queryMetricAggregates(dbs[driver], DEFAULT_ACCOUNT_ID, aggregateBody, options),
        );
        aggregates[driver].push(ms);
        answers[driver] = JSON.stringify(result.document);
      }
    }
    if (answers.postgres !== answers['data-api'])
      throw new Error('The drivers answered the metric aggregates query differently');
    summarise('metric aggregates', aggregates);

    // 3. Profile lookup
    const ids = [...profileIds];
    const lookups: Samples = { postgres: [], 'data-api': [] };
    for (let run = 0; run < RUNS; run += 1) {
      const id = ids[(run * 7919) % ids.length] as string;
      const order = run % 2 === 0 ? DRIVERS : [...DRIVERS].reverse();
      const found: Record<Driver, string> = { postgres: '', 'data-api': '' };
      for (const driver of order) {
        const { ms, result } = await timed(() => getProfileById(dbs[driver] as Db, DEFAULT_ACCOUNT_ID, id));
        lookups[driver].push(ms);
        if (!result) throw new Error(`Profile ${id} not found through ${driver}`);
        // ingestedAt is when each database received the row: the one field that differs by design.
        found[driver] = JSON.stringify({ ...result, ingestedAt: null });
      }
      if (found.postgres !== found['data-api']) {
        throw new Error(`The drivers returned profile ${id} differently:\n${found.postgres}\n${found['data-api']}`);
      }
    }
    summarise('profile lookup', lookups);
    say(
      "ratio = data-api / postgres (same run, same server). The local endpoint is not AWS: this is the driver's own overhead",
    );
    say("plus one loopback HTTP round trip per statement, not the real service's network latency or Aurora capacity.");
    const saved = writeBenchResult({
      bench: 'drivers',
      title: 'Database drivers: postgres.js against the RDS Data API driver',
      command: benchCommand('bench/drivers.ts'),
      reference: 'the postgres.js driver (pool of 1, as a Lambda), same run, same server, same data, order alternating',
      dataset: { pages: PAGES, 'page size': PAGE_SIZE, 'query runs': RUNS, seed: SEED },
      tables: [
        {
          title: 'Latency per operation (ms); ratio = Data API p50 / postgres.js p50',
          columns: ['operation', 'postgres.js p50', 'postgres.js p95', 'Data API p50', 'Data API p95', 'ratio p50'],
          rows: summaryRows,
        },
      ],
      notes: [
        "The Data API side runs against a local endpoint over loopback (tests/support/dataApiServer.ts): the driver's own cost (SDK, signing, JSON both ways, one HTTP round trip per statement), not AWS's network latency or Aurora capacity. A floor for the Data API's overhead, not a prediction.",
        'Both drivers must give the same answers; a difference fails the run.',
      ],
    });
    say(`wrote ${saved}`);
  } finally {
    for (const db of clients) await db.close().catch(() => undefined);
    await endpoint?.stop().catch(() => undefined);
    for (const database of Object.values(DATABASES)) {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    }
    await admin.end({ timeout: 5 });
    if (server) {
      await server.stop();
      removeEmbeddedData(DATA_DIR);
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
