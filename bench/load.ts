import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import { runAggregation } from '../lib/app/aggregation';
import { freePort, startEmbeddedPostgres } from '../lib/db/embedded';
import { createPostgresDb } from '../lib/db/postgres';
import { generatePages, type EventsPageDocument } from '../lib/demo/generator';
import { DEFAULT_ACCOUNT_ID } from '../lib/config';
import { hashApiKey } from '../lib/http/auth';
import { oracleHours, storedHours } from '../tests/aggregation/oracle';
import { writeBenchResult, type BenchTable } from './support/results';

/**
 * npm run bench:load: readers and writers at once against `npm start` (serverless-offline, every
 * function as deployed, the aggregator on its schedule), over loopback only, for LOAD_DURATION_S
 * (60 s by default). Then: every event the API accepted is stored and readable through the API,
 * every hourly aggregate equals the oracle recomputed from the raw events, and no 5xx other than the
 * designed 503 (with Retry-After) was answered. Per route: requests, p50/p99 latency, status counts,
 * written to bench/results/load.json. Reference: GET /api/health in the same run (serverless-offline's
 * own floor: a worker invocation and one trivial query).
 *
 * Knobs: LOAD_DURATION_S (60), LOAD_WRITERS (2 connections), LOAD_READERS (2 connections per read
 * route), LOAD_PAGE_EVENTS (100 events per POST).
 */
const ROOT = resolve(__dirname, '..');
const DATA_DIR = join(ROOT, '.data', 'bench-load');
const num = (name: string, fallback: number) => {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
};
const DURATION_S = num('LOAD_DURATION_S', 60);
const WRITERS = num('LOAD_WRITERS', 2);
const READERS = num('LOAD_READERS', 2);
const PAGE_EVENTS = num('LOAD_PAGE_EVENTS', 100);
const SEED_EVENTS = 5_000;

const out = (line = '') => process.stdout.write(`${line}\n`);

interface Stack {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

function startStack(env: NodeJS.ProcessEnv): Stack {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    cwd: ROOT,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout?.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return { child, output: () => text, exited };
}

async function waitFor(stack: Stack, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(stack.output())) {
    if (stack.child.exitCode !== null) throw new Error(`npm start exited:\n${stack.output()}`);
    if (Date.now() > deadline) throw new Error(`npm start did not print ${pattern} in time:\n${stack.output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface RouteRun {
  readonly route: string;
  readonly result: autocannon.Result;
}

function run(options: autocannon.Options & { route: string }): Promise<RouteRun> {
  return new Promise((done, fail) => {
    autocannon(options, (err, result) =>
      err ? fail(err instanceof Error ? err : new Error(String(err))) : done({ route: options.route, result }),
    );
  });
}

function statusCount(result: autocannon.Result, predicate: (status: number) => boolean): number {
  const stats = (result as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats ?? {};
  return Object.entries(stats)
    .filter(([status]) => predicate(Number(status)))
    .reduce((sum, [, s]) => sum + Number(s.count), 0);
}

async function main(): Promise<number> {
  rmSync(DATA_DIR, { recursive: true, force: true });
  const database = await startEmbeddedPostgres({
    dataDir: DATA_DIR,
    database: 'klaviyo',
    settings: { fsync: 'off', synchronous_commit: 'off' },
  });
  const db = createPostgresDb({
    url: database.url,
    ssl: 'disable',
    poolMax: 2,
    idleTimeoutSeconds: 20,
    connectTimeoutSeconds: 10,
    statementTimeoutMs: 0,
    prepare: true,
    applicationName: 'bench-load',
  });
  const key = `ka_${randomBytes(24).toString('base64url')}`;
  const httpPort = await freePort();
  const lambdaPort = await freePort();
  const base = `http://127.0.0.1:${httpPort}`;
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['DB_HOST', 'DB_DRIVER', 'LOG_LEVEL', 'DB_SSL']) delete env[name];
  Object.assign(env, {
    DATABASE_URL: database.url,
    API_KEYS: `admin:${hashApiKey(key)}`,
    HTTP_PORT: String(httpPort),
    LAMBDA_PORT: String(lambdaPort),
    HTTP_HOST: '127.0.0.1',
    SEED_EVENTS: String(SEED_EVENTS),
    LOG_LEVEL: 'warn',
    // The aggregator on its schedule during the run, as deployed (every minute here).
    AGGREGATE_RATE: 'rate(1 minute)',
    AGGREGATE_SCHEDULE_ENABLED: 'true',
  });
  let stack: Stack | undefined;
  try {
    out(`Starting npm start on ${base} (database ${database.port}) ...`);
    stack = startStack(env);
    await waitFor(stack, /Ready in [\d.]+ s\./, 300_000);

    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/vnd.api+json' };
    const metricsResponse = await fetch(`${base}/api/metrics`, { headers });
    const metricIds = ((await metricsResponse.json()) as { data: { id: string }[] }).data.map((m) => m.id);
    if (metricIds.length === 0) throw new Error('the seed left no metrics to read');

    // Writers: pages of new events in a window of their own (2023), generated before the clock.
    const pages = [
      ...generatePages({
        events: 60_000,
        profiles: 20_000,
        pageSize: PAGE_EVENTS,
        seed: 7,
        start: new Date('2023-01-01T00:00:00Z'),
        end: new Date('2023-12-31T00:00:00Z'),
        links: false,
      }),
    ] as EventsPageDocument[];
    const bodies = pages.map((p) => JSON.stringify(p));
    let nextPage = 0;
    const accepted = new Set<string>();
    const postedIdsOf = (index: number) => (pages[index] as EventsPageDocument).data.map((e) => e.id);

    const readRoutes: { route: string; method: 'GET' | 'POST'; path: () => string; body?: () => string }[] = [
      { route: 'GET /api/events', method: 'GET', path: () => '/api/events?page[size]=50' },
      { route: 'GET /api/metrics', method: 'GET', path: () => '/api/metrics' },
      { route: 'GET /api/profiles', method: 'GET', path: () => '/api/profiles?page[size]=20' },
      {
        route: 'POST /api/metric-aggregates',
        method: 'POST',
        path: () => '/api/metric-aggregates',
        body: () =>
          JSON.stringify({
            data: {
              type: 'metric-aggregate',
              attributes: {
                metric_id: metricIds[Math.floor(Math.random() * metricIds.length)],
                measurements: ['count', 'sum_value', 'unique'],
                interval: 'day',
                filter: ['greater-or-equal(datetime,2025-01-01T00:00:00)', 'less-than(datetime,2025-03-01T00:00:00)'],
                timezone: 'America/New_York',
              },
            },
          }),
      },
      { route: 'GET /api/health', method: 'GET', path: () => '/api/health' },
    ];

    out(
      `Load: ${DURATION_S} s, ${WRITERS} writer connections (${PAGE_EVENTS} events a page), ${READERS} per read route.`,
    );
    const runs = await Promise.all([
      run({
        route: 'POST /api/events',
        url: base,
        connections: WRITERS,
        duration: DURATION_S,
        timeout: 35,
        requests: [
          {
            method: 'POST',
            path: '/api/events',
            headers,
            setupRequest: (request, context) => {
              const index = nextPage % bodies.length;
              nextPage += 1;
              (context as { page?: number }).page = index;
              return { ...request, body: bodies[index] };
            },
            onResponse: (status, _body, context) => {
              const index = (context as { page?: number }).page;
              if (status === 200 && index !== undefined) for (const id of postedIdsOf(index)) accepted.add(id);
            },
          },
        ],
      }),
      ...readRoutes.map((r) =>
        run({
          route: r.route,
          url: base,
          connections: r.route === 'GET /api/health' ? 1 : READERS,
          duration: DURATION_S,
          timeout: 35,
          requests: [
            {
              method: r.method,
              headers,
              setupRequest: (request) => ({ ...request, path: r.path(), ...(r.body ? { body: r.body() } : {}) }),
            },
          ],
        }),
      ),
    ]);

    // Let the last scheduled run finish, then aggregate what is left, as the next run would.
    out('Load done; aggregating the rest and checking ...');
    for (let i = 0; i < 50; i += 1) {
      const result = await runAggregation(db, DEFAULT_ACCOUNT_ID, { batchBuckets: 5000, timeBudgetMs: 60_000 });
      if (result.status === 'done' && result.bucketsWaiting === 0) break;
      await new Promise((r) => setTimeout(r, 1000));
    }

    // Every accepted event is stored...
    const ids = [...accepted];
    const found = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM klaviyo_events WHERE id = ANY(SELECT jsonb_array_elements_text($1::jsonb))`,
      [JSON.stringify(ids)],
    );
    const storedAccepted = found[0]?.n ?? 0;
    // ...and readable through the API (a sample: one GET per event would be a load run of its own).
    const sample = ids.filter((_, i) => i % Math.max(1, Math.floor(ids.length / 200)) === 0);
    let readable = 0;
    for (const id of sample) {
      const res = await fetch(`${base}/api/events/${encodeURIComponent(id)}`, { headers });
      if (res.status === 200) readable += 1;
    }
    // Every hourly aggregate equals the oracle.
    const [stored, oracle] = await Promise.all([storedHours(db), oracleHours(db)]);
    const aggregatesEqual = JSON.stringify(stored) === JSON.stringify(oracle);

    const rows = runs.map(({ route, result }) => [
      route,
      result.requests.total,
      Math.round(result.requests.average * 10) / 10,
      result.latency.p50,
      result.latency.p99,
      statusCount(result, (s) => s >= 200 && s < 300),
      statusCount(result, (s) => s >= 400 && s < 500),
      statusCount(result, (s) => s === 503),
      statusCount(result, (s) => s >= 500 && s !== 503),
      result.errors + result.timeouts,
    ]);
    const health = runs.find((r) => r.route === 'GET /api/health')?.result.latency.p50 ?? NaN;
    const otherFiveHundreds = rows.reduce((sum, r) => sum + Number(r[8]), 0);
    const socketErrors = rows.reduce((sum, r) => sum + Number(r[9]), 0);
    const table: BenchTable = {
      title: `Readers and writers at once for ${DURATION_S} s, aggregator every minute`,
      columns: ['route', 'requests', 'req/s', 'p50 ms', 'p99 ms', '2xx', '4xx', '503', 'other 5xx', 'errors'],
      rows,
    };
    const ratios: BenchTable = {
      title: 'p50 against GET /api/health in the same run',
      columns: ['route', 'p50 / health p50'],
      rows: runs.map(({ route, result }) => [route, Math.round((result.latency.p50 / health) * 100) / 100]),
    };
    const checks = [
      `accepted events stored: ${storedAccepted} of ${ids.length}`,
      `accepted events readable through GET /api/events/{id}: ${readable} of ${sample.length} sampled`,
      `hourly aggregates equal to the oracle: ${aggregatesEqual ? 'yes' : 'NO'} (${stored.length} hours)`,
      `5xx other than 503: ${otherFiveHundreds}; connection errors and timeouts: ${socketErrors}`,
    ];
    const ok =
      storedAccepted === ids.length &&
      readable === sample.length &&
      aggregatesEqual &&
      otherFiveHundreds === 0 &&
      socketErrors === 0;

    out('');
    out(table.columns.join('\t'));
    for (const r of rows) out(r.join('\t'));
    out('');
    for (const line of checks) out(line);
    const path = writeBenchResult({
      bench: 'load',
      title: 'Load: readers and writers at once against npm start',
      command: `LOAD_DURATION_S=${DURATION_S} LOAD_WRITERS=${WRITERS} LOAD_READERS=${READERS} LOAD_PAGE_EVENTS=${PAGE_EVENTS} npm run bench:load`,
      reference: 'GET /api/health p50 in the same run (serverless-offline invocation floor)',
      dataset: {
        seed_events: SEED_EVENTS,
        events_posted_accepted: ids.length,
        page_events: PAGE_EVENTS,
        writer_connections: WRITERS,
        reader_connections_per_route: READERS,
        duration_s: DURATION_S,
      },
      tables: [table, ratios],
      goals: [
        `Every accepted event readable and every aggregate equal to the oracle: ${ok ? 'met' : 'NOT met'}.`,
        `No 5xx other than the designed 503: ${otherFiveHundreds === 0 ? 'met' : 'NOT met'}.`,
      ],
      notes: checks,
    });
    out(`\nWrote ${path}`);
    return ok ? 0 : 1;
  } finally {
    if (stack && stack.child.exitCode === null && stack.child.pid) {
      process.kill(-stack.child.pid, 'SIGINT');
      await stack.exited;
    }
    await db.close().catch(() => undefined);
    await database.stop();
    rmSync(DATA_DIR, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:load failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
