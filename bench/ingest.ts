/**
 * Ingest throughput against COPY, measured in the same run on the same server and table.
 *
 *   npx tsx bench/ingest.ts                      # 1,000,000 events (the issue's size)
 *   BENCH_EVENTS=100000 npx tsx bench/ingest.ts  # a quick run
 *
 * The pages are generated first (lib/demo/generator: GET /api/events?include=metric,profile pages of
 * 1000 events, ~1000 included profiles each) and written to a file, one JSON body per line, with the
 * same rows as COPY text: the client's work, not timed.
 *
 * 1. ingest: the ingest Lambda handler invoked in-process with API Gateway events carrying those
 *    bodies, BENCH_CONCURRENCY invocations in flight (default 1), each taking the next page, with one
 *    connection each (DB_POOL_MAX), as that many warm Lambda containers would hold. The figure is
 *    every event stored over the wall time from the first page to the last.
 * 2. COPY: the same event rows (the rows ingest stored, from the same mapping) into the same table,
 *    emptied first, through one `COPY ... FROM STDIN` stream, the limit for bulk loading; with
 *    BENCH_CONCURRENCY above 1, again through that many streams at once, for the ratio at equal
 *    parallelism.
 * 3. naive: one INSERT per event, autocommitted, as the seed's repository did, on a smaller slice
 *    (BENCH_NAIVE_EVENTS, default 10,000).
 * 4. heap: the V8 heap high-water mark of one 1000-event invocation, in a fresh child process.
 * 5. where a page's time goes: every BENCH_STAGE_EVERY-th page (default 50) is not given to the
 *    handler but written through the same lib/ calls one by one, each timed: JSON.parse, validation
 *    and mapping (planEventsPage), then in one transaction the metrics, profiles and events
 *    statements, and the commit. Those pages count in the wall-time figure, not in the handler's.
 *    Every other one of them goes with COPY hidden from the transaction, so the same run compares
 *    the driver's two write paths: COPY (postgres.js) and one JSON parameter (the Data API's).
 *
 * 6. bookkeeping: on BENCH_BOOKKEEPING_PAGES pages (default 200) written again into the emptied table (twice,
 *    the first pass not timed), one transaction per page, alternately only the COPY of the page's events, and the events statements
 *    the ingest itself runs (the same COPY, then the pending rows and dirty marks the aggregate
 *    function needs, in the same transaction): what the aggregator's bookkeeping adds to a page's
 *    COPY. And from the staged pages of 5, the ceiling one page at a time: the one-stream COPY's
 *    time for 1000 rows against a page's JSON.parse and events statements alone.
 *
 * 7. the queue consumer (docs/queue.md): the same pages split into queue messages as the ingest route
 *    splits them (BENCH_QUEUE_MESSAGE_BYTES, default 262,144: SQS's classic limit), in SQS batches of
 *    at most BENCH_BATCH_MESSAGES messages (default 100, as deployed) and 6 MB (Lambda's limit on a
 *    batch's payload, which ends a batch of full messages at about 23), written by the ingestConsumer handler in-process with
 *    1, 2 and 3 batches in flight (BENCH_CONSUMERS, default 1,2,3), each run into emptied tables
 *    (events, profiles, metrics and the bookkeeping), against the one-stream COPY above. Then what
 *    the bookkeeping adds to a batch's COPY, as 6 does for a page. Messages are version 4 (profiles
 *    and events as COPY lines, what the route sends); BENCH_QUEUE_VERSION=3, 2 or 1 makes the earlier
 *    versions, and
 *    BENCH_QUEUE_COMPARE=<version> runs that version and BENCH_QUEUE_VERSION in turn with one and
 *    with three batches in flight (BENCH_QUEUE_COMPARE_ROUNDS rounds, default 2), so that both meet
 *    the same load; the same rows are copied by one COPY stream before the first run and after
 *    each, and each run's reference is the mean of the COPY just before and the one just after it.
 *
 * BENCH_EVENT_HOURS=N puts the events within the last N hours of the reference year instead of over
 * the whole of it: time-ordered pages as dense as a busy account's, whose batches touch a few (metric,
 * hour) pairs, where the default (about 11 events an hour at 100,000 events) gives nearly every event
 * a dirty mark of its own, the worst case. Such a run writes bench/results/ingest-recent.json, next to
 * the worst case's ingest.json.
 *
 * BENCH_PROFILES_FIRST=1 stores every profile before the clock starts, as a sync that reads Klaviyo's
 * profiles stream before its events does: the pages then bring no new profiles, only known ones.
 *
 * Other knobs: BENCH_PROFILES (default 200,000), BENCH_SEED (default 1), BENCH_EVENT_FOREIGN_KEYS=1 (the
 * events' foreign keys to metrics and profiles, which migration 0012 dropped, restored for the run: what
 * they cost ingest and COPY). Uses DATABASE_URL when set
 * (it must name a database it may empty), else starts its own embedded PostgreSQL in .data/bench-ingest
 * and stops it at exit.
 */
import { cpus } from 'node:os';
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, mkdirSync, rmSync, statSync, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { PassThrough } from 'node:stream';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import postgres from 'postgres';
import { startEmbeddedPostgres, type EmbeddedServer } from '../lib/db/embedded';
import { buildProfileResource, generatePages } from '../lib/demo/generator';
import { DEFAULT_END } from '../lib/demo/profiles';
import { hashApiKey } from '../lib/http/auth';
import type { HttpHandler } from '../lib/http/handler';
import { planEventsPage, planProfilesDocument } from '../lib/app/ingest';
import { setLogLevel } from '../lib/log';
import { DEFAULT_ACCOUNT_ID } from '../lib/config';
import type { Db } from '../lib/db';
import { copyTextOf } from '../lib/db/copyFormat';
import { EVENT_COLUMNS, eventCopyRow, insertEvents, type NewEvent } from '../lib/repositories/events';
import { upsertMetrics } from '../lib/repositories/metrics';
import { upsertProfiles } from '../lib/repositories/profiles';
import { intFromEnv } from './support/env';
import { benchCommand, writeBenchResult } from './support/results';
import { median } from './support/stats';
import {
  BATCH_STAGES,
  batchBookkeeping,
  prepareBatches,
  runConsumers,
  type BatchStages,
  type ConsumerRun,
  type PreparedBatches,
  type QueueVersion,
} from './support/consumer';

/** The consumer's work on a message before the database, per event (µs): JSON.parse, envelope check, rows. */
const beforeDbUs = (p: PreparedBatches) => (1000 * (p.parseMs + p.checkMs + p.rowsMs)) / p.events;

const ROOT = resolve(__dirname, '..');
const DATA_DIR = join(ROOT, '.data', 'bench-ingest');
const BENCH_DB = 'bench_ingest';
const API_KEY = 'bench-ingest-key';
const PAGE_SIZE = 1000;

const EVENTS = intFromEnv('BENCH_EVENTS', 1_000_000);
const PROFILES = intFromEnv('BENCH_PROFILES', 200_000);
const SEED = intFromEnv('BENCH_SEED', 1);
const NAIVE_EVENTS = Math.min(intFromEnv('BENCH_NAIVE_EVENTS', 10_000), EVENTS);
const STAGE_EVERY = intFromEnv('BENCH_STAGE_EVERY', 50, 2);
const CONCURRENCY = intFromEnv('BENCH_CONCURRENCY', 1);
const PROFILES_FIRST = process.env.BENCH_PROFILES_FIRST === '1';
const BOOKKEEPING_PAGES = intFromEnv('BENCH_BOOKKEEPING_PAGES', 200, 2);
const CONSUMERS = (process.env.BENCH_CONSUMERS ?? '1,2,3')
  .split(',')
  .filter((c) => c.trim() !== '')
  .map((c) => {
    const n = Number(c);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`BENCH_CONSUMERS takes whole numbers, not "${c}"`);
    return n;
  });
// As the deployment's event source (INGEST_QUEUE_BATCH_SIZE): Lambda's 6 MB payload limit ends a batch first.
const BATCH_MESSAGES = intFromEnv('BENCH_BATCH_MESSAGES', 100);
const QUEUE_MESSAGE_BYTES = intFromEnv('BENCH_QUEUE_MESSAGE_BYTES', 262_144, 16_384);
const EVENT_FOREIGN_KEYS = intFromEnv('BENCH_EVENT_FOREIGN_KEYS', 0, 0) !== 0;
const QUEUE_VERSION: QueueVersion = ((v) => (v === 1 || v === 2 || v === 3 ? v : 4))(
  intFromEnv('BENCH_QUEUE_VERSION', 4, 1),
);
const BATCH_STAGE_EVERY = intFromEnv('BENCH_BATCH_STAGE_EVERY', 5, 2);
// 0: the events fall over the whole reference year (about 11 an hour at 100,000 events), so a batch's
// events are nearly each in their own (metric, hour): the worst case for the dirty marks. N: they fall
// within the last N hours of it, in time order as Klaviyo's Get Events pages deliver them, as dense as a
// busy account's (or real-time Create Event traffic): a batch touches a few (metric, hour) pairs.
const EVENT_HOURS = intFromEnv('BENCH_EVENT_HOURS', 0, 0);
// A message version to run against BENCH_QUEUE_VERSION with one and three batches in flight, the two in turn
// (BENCH_QUEUE_COMPARE_ROUNDS rounds, each run into emptied tables), so that both meet the same load.
const QUEUE_COMPARE = ((v): QueueVersion | undefined => (v >= 1 && v <= 4 ? (v as QueueVersion) : undefined))(
  intFromEnv('BENCH_QUEUE_COMPARE', 0, 0),
);
const QUEUE_COMPARE_ROUNDS = intFromEnv('BENCH_QUEUE_COMPARE_ROUNDS', 2, 1);
// The batches in flight each round runs both versions with: the goals' two, 1 and 3.
const COMPARE_IN_FLIGHT = [1, 3] as const;

const STAGES = [
  'JSON.parse',
  'validate and map',
  'metrics statement',
  'profiles statements',
  'events statements',
  'commit',
] as const;
type Stage = (typeof STAGES)[number];

/** The generated page bodies, one per line. */
function pageLines(file: string) {
  return createInterface({ input: createReadStream(file, { highWaterMark: 1 << 20 }), crlfDelay: Infinity });
}

/** The transaction as the Data API's driver offers it: no COPY, so every write takes its JSON path. */
function withoutCopy(tx: Db): Db {
  return {
    driver: tx.driver,
    query: (text, params) => tx.query(text, params),
    transaction: (fn) => tx.transaction((inner) => fn(withoutCopy(inner))),
  };
}

/** A page written through the calls the handler makes, each one timed (ms added to `into`). */
async function ingestPageByStage(db: Db, body: string, into: Map<Stage, number>, viaJson: boolean): Promise<number> {
  let at = performance.now();
  const lap = (stage: Stage) => {
    const now = performance.now();
    into.set(stage, (into.get(stage) ?? 0) + now - at);
    at = now;
  };
  const parsed: unknown = JSON.parse(body);
  lap('JSON.parse');
  const plan = planEventsPage(parsed);
  lap('validate and map');
  const inserted = await db.transaction(async (copyingTx) => {
    const tx = viaJson ? withoutCopy(copyingTx) : copyingTx;
    // The Data API's sessions keep PostgreSQL's default plan cache mode; this connection forces
    // custom plans, which would re-plan the foreign key checks of every inserted row.
    if (viaJson) await copyingTx.query('SET LOCAL plan_cache_mode = auto');
    await upsertMetrics(tx, DEFAULT_ACCOUNT_ID, plan.metrics);
    lap('metrics statement');
    await upsertProfiles(tx, DEFAULT_ACCOUNT_ID, plan.profiles);
    lap('profiles statements');
    const events = await insertEvents(tx, DEFAULT_ACCOUNT_ID, plan.events);
    lap('events statements');
    return events.inserted;
  });
  lap('commit');
  return inserted;
}

function apiEvent(body: string): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: 'POST /api/events',
    rawPath: '/api/events',
    rawQueryString: '',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/vnd.api+json' },
    body,
    isBase64Encoded: false,
    requestContext: {
      accountId: 'bench',
      apiId: 'bench',
      domainName: 'localhost',
      domainPrefix: 'localhost',
      http: { method: 'POST', path: '/api/events', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' },
      requestId: 'bench',
      routeKey: 'POST /api/events',
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
  };
}

/** The handler reads its configuration on first use: point it at the bench database first. */
async function loadHandler(databaseUrl: string): Promise<HttpHandler> {
  process.env.DATABASE_URL = databaseUrl;
  process.env.API_KEYS = `write:${hashApiKey(API_KEY)}`;
  // One connection per invocation in flight, as that many Lambda containers would each hold one.
  process.env.DB_POOL_MAX = String(Math.max(CONCURRENCY, ...CONSUMERS));
  // As deployed, a batch of the consumer may take longer than the 3 s default (serverless.yml gives it 45 s).
  process.env.DB_STATEMENT_TIMEOUT_MS ??= '45000';
  setLogLevel('warn');
  const mod = (await import('../functions/ingest')) as { handler: HttpHandler };
  return mod.handler;
}

const COPY_COLUMNS = EVENT_COLUMNS.join(', ');

async function writeAll(stream: WriteStream, text: string): Promise<void> {
  if (!stream.write(text)) await new Promise<void>((r) => stream.once('drain', () => r()));
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function mib(bytes: number): string {
  return `${fmt(bytes / 1024 / 1024, 1)} MiB`;
}

interface HeapProbe {
  readonly heapBaseline: number;
  readonly heapPeak: number;
  readonly heapAfter: number;
  readonly rssPeakKb: number;
  readonly rssBaseline: number;
  readonly bodyBytes: number;
  readonly status: number;
  readonly samples: number;
}

/** Child process: one invocation of the handler with a fresh 1000-event page, heap sampled throughout. */
async function heapProbe(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const handler = await loadHandler(process.env.BENCH_PROBE_URL as string);
  // Another seed, so the page's events are new to the table (a page of duplicates would do less).
  const page = generatePages({ seed: SEED + 1000, events: PAGE_SIZE, profiles: PROFILES }).next().value;
  if (!page) throw new Error('the generator yielded no page');
  const body = JSON.stringify(page);
  const event = apiEvent(body);
  // Warm up module loading and the connection with an empty page, so only the invocation is measured.
  await handler(apiEvent(JSON.stringify({ data: [] })));
  gc();
  gc();
  const heapBaseline = process.memoryUsage().heapUsed;
  const rssBaseline = process.memoryUsage().rss;
  let heapPeak = heapBaseline;
  let samples = 0;
  const sample = () => {
    samples += 1;
    const used = getHeapStatistics().used_heap_size;
    if (used > heapPeak) heapPeak = used;
  };
  const timer = setInterval(sample, 1);
  const result = await handler(event);
  sample();
  clearInterval(timer);
  const heapAfter = process.memoryUsage().heapUsed;
  const probe: HeapProbe = {
    heapBaseline,
    heapPeak,
    heapAfter,
    rssBaseline,
    rssPeakKb: process.resourceUsage().maxRSS,
    bodyBytes: Buffer.byteLength(body),
    status: result.statusCode ?? 0,
    samples,
  };
  process.stdout.write(JSON.stringify(probe) + '\n');
  const { closeDb } = await import('../lib/db');
  await closeDb();
}

async function runProbe(url: string): Promise<HeapProbe> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, __filename, '--heap-probe'], {
      env: { ...process.env, BENCH_PROBE_URL: url, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{'))
        reject(new Error(`heap probe failed (exit ${code}): ${out.slice(-500)}`));
      else resolvePromise(JSON.parse(line) as HeapProbe);
    });
  });
}

async function main(): Promise<void> {
  let server: EmbeddedServer | undefined;
  let adminUrl: string;
  if (process.env.DATABASE_URL) {
    adminUrl = process.env.DATABASE_URL;
  } else {
    mkdirSync(DATA_DIR, { recursive: true });
    process.stdout.write(`starting embedded PostgreSQL in ${DATA_DIR} ...\n`);
    server = await startEmbeddedPostgres({
      dataDir: join(DATA_DIR, 'pg'),
      database: 'postgres',
      // Durable defaults (fsync and synchronous_commit on); a bit more memory than the stock
      // 128 MB so that checkpoints do not dominate either side of the comparison.
      settings: { shared_buffers: '512MB', max_wal_size: '4GB', checkpoint_timeout: '15min' },
    });
    adminUrl = server.urlFor('postgres');
  }
  const stopServer = async () => {
    if (server) await server.stop();
  };
  process.once('SIGINT', () => void stopServer().finally(() => process.exit(130)));

  const pagesFile = join(DATA_DIR, 'pages.ndjson');
  const copyFiles = Array.from({ length: CONCURRENCY }, (_, i) => join(DATA_DIR, `copy-rows-${i}.tsv`));
  try {
    const benchUrl = new URL(adminUrl);
    if (!process.env.DATABASE_URL) {
      const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
      await admin.unsafe(`DROP DATABASE IF EXISTS ${BENCH_DB} WITH (FORCE)`);
      await admin.unsafe(`CREATE DATABASE ${BENCH_DB}`);
      await admin.end();
      benchUrl.pathname = `/${BENCH_DB}`;
    }
    const url = benchUrl.toString();
    const sql = postgres(url, { max: 1, onnotice: () => undefined });
    const { migrate } = await import('../lib/db/migrate');
    const { createPostgresDb } = await import('../lib/db/postgres');
    const migrator = createPostgresDb({
      url,
      ssl: 'disable',
      poolMax: 1,
      idleTimeoutSeconds: 5,
      connectTimeoutSeconds: 10,
      statementTimeoutMs: 0,
      prepare: true,
    });
    await migrator.query(
      'DROP TABLE IF EXISTS klaviyo_aggregate_pending, klaviyo_aggregate_dirty, klaviyo_aggregated_metrics, klaviyo_events, klaviyo_profiles, klaviyo_metrics, schema_migrations CASCADE',
    );
    const migration = await migrate(migrator);
    if (EVENT_FOREIGN_KEYS) {
      // The foreign keys migration 0012 dropped, back for this run: what they cost ingest and COPY.
      await migrator.query(
        `ALTER TABLE klaviyo_events
           ADD CONSTRAINT klaviyo_events_metric_fkey
             FOREIGN KEY (account_id, metric_id) REFERENCES klaviyo_metrics (account_id, id),
           ADD CONSTRAINT klaviyo_events_profile_fkey
             FOREIGN KEY (account_id, profile_id) REFERENCES klaviyo_profiles (account_id, id)`,
      );
    }
    await migrator.close();

    const version = await sql<{ v: string }[]>`SELECT current_setting('server_version') AS v`;
    process.stdout.write(
      `ingest bench: ${fmt(EVENTS)} events in ${PAGE_SIZE}-event pages, ${fmt(PROFILES)} profiles${PROFILES_FIRST ? ' (stored first)' : ''}, seed ${SEED}, ${CONCURRENCY} in flight; ` +
        `PostgreSQL ${version[0]?.v} (${migration.mode}), node ${process.version}\n`,
    );

    // 1. The pages, generated first (the client's work, not timed): their bodies one per line, and
    //    the same rows for COPY from the same mapping, split into one file per stream.
    // The handler (and planEventsPage's limits) read their configuration on first use.
    const handler = await loadHandler(url);
    mkdirSync(DATA_DIR, { recursive: true });
    process.stdout.write(`generating the pages ...\n`);
    const pagesOut = createWriteStream(pagesFile);
    const copyOuts = copyFiles.map((file) => createWriteStream(file));
    const naiveRows: NewEvent[] = [];
    let generated = 0;
    let bodyBytes = 0;
    const window =
      EVENT_HOURS > 0 ? { start: new Date(DEFAULT_END.getTime() - EVENT_HOURS * 3_600_000), end: DEFAULT_END } : {};
    for (const page of generatePages({
      seed: SEED,
      events: EVENTS,
      profiles: PROFILES,
      pageSize: PAGE_SIZE,
      ...window,
    })) {
      const body = JSON.stringify(page);
      bodyBytes += body.length;
      await writeAll(pagesOut, `${body}\n`);
      const plan = planEventsPage(JSON.parse(body));
      // The naive path's slice: the first events ingest stores, so their metrics and profiles exist.
      for (const e of plan.events) if (naiveRows.length < NAIVE_EVENTS) naiveRows.push(e);
      await writeAll(
        copyOuts[generated % copyOuts.length] as WriteStream,
        copyTextOf(
          plan.events.map((e) => eventCopyRow(DEFAULT_ACCOUNT_ID, e)),
          EVENT_COLUMNS.length,
        ),
      );
      generated += 1;
    }
    await Promise.all([pagesOut, ...copyOuts].map((out) => new Promise<void>((r) => out.end(() => r()))));

    // 2. Ingest through the handler, CONCURRENCY invocations in flight, each taking the next page.
    const { getDb } = await import('../lib/db');
    if (PROFILES_FIRST) {
      // As a sync that reads Klaviyo's profiles stream before its events: every profile the pages
      // include is stored (and unchanged) before the clock starts.
      process.stdout.write(`storing the ${fmt(PROFILES)} profiles first ...\n`);
      for (let from = 0; from < PROFILES; from += PAGE_SIZE) {
        const data = Array.from({ length: Math.min(PAGE_SIZE, PROFILES - from) }, (_, i) =>
          buildProfileResource(from + i, { seed: SEED }),
        );
        const profiles = planProfilesDocument({ data });
        await getDb().transaction((tx) => upsertProfiles(tx, DEFAULT_ACCOUNT_ID, profiles));
      }
    }
    let handlerMs = 0;
    let ingested = 0;
    let stagedEvents = 0;
    let pages = 0;
    let slowestPageMs = 0;
    const paths = {
      copy: { ms: new Map<Stage, number>(), pages: 0, events: 0 },
      json: { ms: new Map<Stage, number>(), pages: 0, events: 0 },
    };
    const lines = pageLines(pagesFile)[Symbol.asyncIterator]();
    let reading: Promise<unknown> = Promise.resolve();
    let taken = 0;
    // One reader at a time: each invocation gets a whole line and its position.
    const nextPage = (): Promise<{ body: string; index: number } | undefined> => {
      const next = reading.then(async () => {
        const line = await lines.next();
        return line.done ? undefined : { body: line.value, index: taken++ };
      });
      reading = next;
      return next;
    };
    const wallStart = performance.now();
    let lastReport = wallStart;
    const invoke = async (): Promise<void> => {
      for (let page = await nextPage(); page; page = await nextPage()) {
        if ((page.index + 1) % STAGE_EVERY === 0) {
          const path = ((page.index + 1) / STAGE_EVERY) % 2 === 1 ? paths.copy : paths.json;
          const inserted = await ingestPageByStage(getDb(), page.body, path.ms, path === paths.json);
          path.events += inserted;
          path.pages += 1;
          stagedEvents += inserted;
        } else {
          const t0 = performance.now();
          const response = await handler(apiEvent(page.body));
          const took = performance.now() - t0;
          handlerMs += took;
          slowestPageMs = Math.max(slowestPageMs, took);
          if (response.statusCode !== 200)
            throw new Error(
              `page ${page.index} answered ${response.statusCode}: ${String(response.body).slice(0, 500)}`,
            );
          const attributes = (JSON.parse(String(response.body)) as { data: { attributes: { inserted: number } } }).data
            .attributes;
          ingested += attributes.inserted;
          pages += 1;
        }
        const now = performance.now();
        if (now - lastReport > 10_000) {
          lastReport = now;
          process.stdout.write(
            `  ... ${fmt(ingested + stagedEvents)} events, ${fmt((ingested + stagedEvents) / ((now - wallStart) / 1000))} events/s\n`,
          );
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, invoke));
    const wallMs = performance.now() - wallStart;
    // Every event the run stored over the run's wall time: the staged pages and reading the pages
    // count too, which the handler-only figure leaves out.
    const ingestRate = (ingested + stagedEvents) / (wallMs / 1000);
    const handlerRate = ingested / (handlerMs / 1000);
    const tableSize = await sql<{ events: string; total: string }[]>`
      SELECT pg_size_pretty(pg_total_relation_size('klaviyo_events')) AS events,
             pg_size_pretty(pg_database_size(current_database())) AS total`;

    // 3. COPY of the same rows into the same table, emptied: one stream, then one per invocation
    //    the ingest had in flight when that was more than one.
    const copyAll = async (
      streams: number,
    ): Promise<{ rate: number; ms: number; rows: number; clientCpuMs: number }> => {
      await sql`TRUNCATE klaviyo_events, klaviyo_aggregate_dirty`;
      await sql`CHECKPOINT`;
      const inputs = streams === 1 ? [copyFiles] : copyFiles.map((file) => [file]);
      const copiers = inputs.map(() => postgres(url, { max: 1, onnotice: () => undefined }));
      await Promise.all(copiers.map((c) => c`SELECT 1`));
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      await Promise.all(
        inputs.map(async (files, i) => {
          const writable = await (copiers[i] as postgres.Sql)
            .unsafe(`COPY klaviyo_events (${COPY_COLUMNS}) FROM STDIN`)
            .writable();
          const through = new PassThrough({ highWaterMark: 1 << 20 });
          const feeding = (async () => {
            for (const file of files)
              await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), through, { end: false });
            through.end();
          })();
          await Promise.all([feeding, pipeline(through, writable)]);
        }),
      );
      const ms = performance.now() - started;
      const cpu = process.cpuUsage(cpuBefore);
      await Promise.all(copiers.map((c) => c.end()));
      const rows = Number((await sql<{ n: string }[]>`SELECT count(*) AS n FROM klaviyo_events`)[0]?.n);
      return { rate: rows / (ms / 1000), ms, rows, clientCpuMs: (cpu.user + cpu.system) / 1000 };
    };
    const copy = await copyAll(1);
    const copyParallel = CONCURRENCY > 1 ? await copyAll(CONCURRENCY) : undefined;
    const copyRate = copy.rate;
    const copied = copy.rows;
    const copyMs = copy.ms;
    const copyBytes = copyFiles.reduce((sum, file) => sum + statSync(file).size, 0);
    const copyClientCpuPerRowUs = (1000 * copy.clientCpuMs) / copy.rows;

    // 3. The naive path: one INSERT per event, each its own transaction, on a slice.
    await sql`TRUNCATE klaviyo_events, klaviyo_aggregate_dirty`;
    await sql`CHECKPOINT`;
    const naiveStart = performance.now();
    for (const e of naiveRows) {
      await sql.unsafe(
        `INSERT INTO klaviyo_events (${COPY_COLUMNS})
         VALUES ($1, $2, $3::timestamptz, $4, $5, $6::numeric, $7, $8, $9, $10::jsonb, $11::jsonb)
         ON CONFLICT (account_id, id, "timestamp") DO NOTHING`,
        [...eventCopyRow(DEFAULT_ACCOUNT_ID, e)],
      );
    }
    const naiveMs = performance.now() - naiveStart;
    const naiveRate = naiveRows.length / (naiveMs / 1000);

    // 6. What the aggregator's bookkeeping adds to a page's COPY, on the emptied table: pages
    //    alternately by COPY alone and by the ingest's events statements, each page its own
    //    transaction, so that both meet the same table as it grows. A first pass, not timed, writes
    //    the same pages once: just after the checkpoint the first lock of each profile page by a
    //    foreign key check costs a full-page image in the WAL, which would weigh on the first pages.
    const bookkeeping = { copyMs: 0, copyPages: 0, eventsMs: 0, eventsPages: 0 };
    for (const timed of [false, true]) {
      await sql`TRUNCATE klaviyo_events, klaviyo_aggregate_pending, klaviyo_aggregate_dirty`;
      const lines = pageLines(pagesFile);
      let pageIndex = 0;
      for await (const body of lines) {
        if (pageIndex >= BOOKKEEPING_PAGES) break;
        const { events } = planEventsPage(JSON.parse(body));
        const rows = events.map((e) => eventCopyRow(DEFAULT_ACCOUNT_ID, e));
        const started = performance.now();
        const copyAlone = pageIndex % 2 === 0;
        if (copyAlone) {
          await getDb().transaction(async (tx) => {
            if (!tx.copyRows) throw new Error('the bench needs the postgres.js driver (COPY)');
            await tx.copyRows('klaviyo_events', EVENT_COLUMNS, rows);
          });
        } else {
          await getDb().transaction((tx) => insertEvents(tx, DEFAULT_ACCOUNT_ID, events));
        }
        const ms = performance.now() - started;
        pageIndex += 1;
        if (!timed) continue;
        if (copyAlone) {
          bookkeeping.copyMs += ms;
          bookkeeping.copyPages += 1;
        } else {
          bookkeeping.eventsMs += ms;
          bookkeeping.eventsPages += 1;
        }
      }
      lines.close();
    }

    // 7. The queue consumer, batches in flight 1, 2 and 3 at a time, each run into emptied tables.
    let consumerRuns: ConsumerRun[] = [];
    let consumerBatches: Awaited<ReturnType<typeof prepareBatches>> | undefined;
    let consumerBookkeeping: Awaited<ReturnType<typeof batchBookkeeping>> | undefined;
    const batchStages: BatchStages = { batches: 0, events: 0, ms: new Map() };
    const versionRuns: {
      version: QueueVersion;
      round: number;
      run: ConsumerRun;
      prepared: PreparedBatches;
      copyRate: number;
    }[] = [];
    if (CONSUMERS.length > 0) {
      process.stdout.write(`splitting the pages into queue messages ...\n`);
      consumerBatches = await prepareBatches(
        pagesFile,
        join(DATA_DIR, 'batches.ndjson'),
        QUEUE_MESSAGE_BYTES,
        BATCH_MESSAGES,
        QUEUE_VERSION,
      );
      const { handler: consumer } = await import('../functions/ingestConsumer');
      for (const consumers of CONSUMERS) {
        await sql`TRUNCATE klaviyo_events, klaviyo_aggregate_pending, klaviyo_aggregate_dirty, klaviyo_profiles, klaviyo_metrics CASCADE`;
        await sql`CHECKPOINT`;
        // With one batch in flight, every BATCH_STAGE_EVERY-th batch is written stage by stage.
        const run = await runConsumers(
          consumer,
          consumerBatches,
          consumers,
          consumers === 1 ? { every: BATCH_STAGE_EVERY, db: getDb(), into: batchStages } : undefined,
        );
        const stored = Number((await sql<{ n: string }[]>`SELECT count(*) AS n FROM klaviyo_events`)[0]?.n);
        if (stored !== run.events) throw new Error(`the consumer stored ${stored} of ${run.events} events`);
        process.stdout.write(`  ${consumers} in flight: ${fmt(run.rate)} events/s\n`);
        consumerRuns = [...consumerRuns, run];
      }
      if (QUEUE_COMPARE !== undefined) {
        process.stdout.write(
          `message versions ${QUEUE_VERSION} and ${QUEUE_COMPARE} in turn, ${COMPARE_IN_FLIGHT.join(' and ')} batches in flight ...\n`,
        );
        const other = await prepareBatches(
          pagesFile,
          join(DATA_DIR, 'batches-compare.ndjson'),
          QUEUE_MESSAGE_BYTES,
          BATCH_MESSAGES,
          QUEUE_COMPARE,
        );
        // Every run is measured against the mean of a one-stream COPY of the same rows just before and
        // just after it (each COPY serving the run before it and the run after it): the one-stream
        // COPY's rate moves with the machine's load from minute to minute as much as the consumer's,
        // and a COPY half a minute away, before the round's other runs, said less about the run's
        // own minute.
        for (let round = 0; round < QUEUE_COMPARE_ROUNDS; round += 1) {
          let before = await copyAll(1);
          const copies = [before.rate];
          for (const consumers of COMPARE_IN_FLIGHT)
            for (const [version, prepared] of [
              [QUEUE_VERSION, consumerBatches],
              [QUEUE_COMPARE, other],
            ] as const) {
              await sql`TRUNCATE klaviyo_events, klaviyo_aggregate_pending, klaviyo_aggregate_dirty, klaviyo_profiles, klaviyo_metrics CASCADE`;
              await sql`CHECKPOINT`;
              const run = await runConsumers(consumer, prepared, consumers);
              const after = await copyAll(1);
              copies.push(after.rate);
              process.stdout.write(`  version ${version}, ${consumers} in flight: ${fmt(run.rate)} events/s\n`);
              versionRuns.push({ version, run, prepared, round: round + 1, copyRate: (before.rate + after.rate) / 2 });
              before = after;
            }
          process.stdout.write(
            `  round ${round + 1}, one COPY stream between the runs: ${copies.map((rate) => fmt(rate)).join(', ')} rows/s\n`,
          );
        }
        rmSync(other.file, { force: true });
      }
      consumerBookkeeping = await batchBookkeeping(
        getDb(),
        sql,
        consumerBatches,
        Math.min(60, consumerBatches.batches - (consumerBatches.batches % 3)),
      );
    }
    await sql.end();

    // 4. Heap high-water mark of one invocation, in a fresh process.
    const probe = await runProbe(url);

    const line = (label: string, value: string) => process.stdout.write(`  ${label.padEnd(34)} ${value}\n`);
    process.stdout.write('\nresults\n');
    line(
      `ingest (${CONCURRENCY} in flight)`,
      `${fmt(ingestRate)} events/s  (${fmt(ingested + stagedEvents)} events in ${fmt(wallMs / 1000, 1)} s of wall time, ${generated} pages of ${PAGE_SIZE})`,
    );
    line(
      '  in the handler alone',
      `${fmt(handlerRate)} events/s  (${pages} pages, ${fmt(handlerMs / 1000, 1)} s of invocations; mean ${fmt(handlerMs / pages, 1)} ms/page, slowest ${fmt(slowestPageMs, 1)} ms)`,
    );
    line('  page bodies', `${mib(bodyBytes / generated)} per page on average, generated before the clock started`);
    line(
      'COPY FROM STDIN (same rows)',
      `${fmt(copyRate)} rows/s  (${fmt(copied)} rows, ${mib(copyBytes)} of COPY text, ${fmt(copyMs / 1000, 1)} s, one stream; this process's CPU ${fmt(copyClientCpuPerRowUs, 1)} µs per row)`,
    );
    if (copyParallel)
      line(
        `COPY, ${CONCURRENCY} streams at once`,
        `${fmt(copyParallel.rate)} rows/s  (${fmt(copyParallel.rows)} rows, ${fmt(copyParallel.ms / 1000, 1)} s)`,
      );
    line(
      'naive (1 INSERT per event)',
      `${fmt(naiveRate)} events/s  (${fmt(naiveRows.length)} events, ${fmt(naiveMs / 1000, 1)} s)`,
    );
    line('ingest / COPY', `${fmt((100 * ingestRate) / copyRate, 1)} %   (goal >= 70 %; against one COPY stream)`);
    if (copyParallel)
      line(`ingest / COPY in ${CONCURRENCY} streams`, `${fmt((100 * ingestRate) / copyParallel.rate, 1)} %`);
    line('ingest / naive', `${fmt(ingestRate / naiveRate, 1)} x`);
    if (paths.copy.pages > 0 && paths.json.pages > 0) {
      const total = (ms: Map<Stage, number>) => [...ms.values()].reduce((a, b) => a + b, 0);
      const perPage = (path: typeof paths.copy, stage?: Stage) =>
        (stage ? (path.ms.get(stage) ?? 0) : total(path.ms)) / path.pages;
      line(
        `where a page's time goes`,
        `one page in ${STAGE_EVERY} written stage by stage, not in the handler's figure: ${paths.copy.pages} pages by COPY, ${paths.json.pages} by JSON parameter, alternating`,
      );
      line('  stage', `${'COPY path'.padStart(17)} ${'JSON path'.padStart(17)}`);
      for (const stage of STAGES) {
        const cell = (path: typeof paths.copy) =>
          `${fmt(perPage(path, stage), 1).padStart(7)} ms ${fmt((100 * (path.ms.get(stage) ?? 0)) / total(path.ms), 1).padStart(5)} %`;
        line(`  ${stage}`, `${cell(paths.copy)} ${cell(paths.json)}`);
      }
      line(
        '  a page in all',
        `${fmt(perPage(paths.copy), 1).padStart(7)} ms         ${fmt(perPage(paths.json), 1).padStart(7)} ms`,
      );
      line(
        '  events/s',
        `${fmt(paths.copy.events / (total(paths.copy.ms) / 1000)).padStart(10)}         ${fmt(paths.json.events / (total(paths.json.ms) / 1000)).padStart(10)}`,
      );
      line(
        "  COPY of a page's rows, for scale",
        `${fmt((1000 * PAGE_SIZE) / copyRate, 1).padStart(7)} ms (the COPY above, per ${PAGE_SIZE} rows)`,
      );
    }
    {
      const copyPage = bookkeeping.copyMs / bookkeeping.copyPages;
      const eventsPage = bookkeeping.eventsMs / bookkeeping.eventsPages;
      line(
        "bookkeeping on a page's COPY",
        `${bookkeeping.copyPages + bookkeeping.eventsPages} pages into the emptied table, one transaction each, alternating`,
      );
      line('  COPY of its events alone', `${fmt(copyPage, 1).padStart(7)} ms/page`);
      line(
        "  the ingest's events statements",
        `${fmt(eventsPage, 1).padStart(7)} ms/page (the same COPY, then the pending rows and dirty marks: +${fmt((100 * (eventsPage - copyPage)) / copyPage, 1)} %)`,
      );
    }
    if (paths.copy.pages > 0 && CONCURRENCY === 1) {
      // The staged pages ran among the handler's, in the ingest figure's conditions: what a page must
      // do at least there, against the one-stream COPY's time for as many rows. (With pages in
      // flight their times include waiting for the others, so the line would mean nothing.)
      const mustDo =
        ((paths.copy.ms.get('JSON.parse') ?? 0) + (paths.copy.ms.get('events statements') ?? 0)) / paths.copy.pages;
      line(
        'one page at a time, at most',
        `${fmt((100 * ((1000 * PAGE_SIZE) / copyRate)) / mustDo, 1)} % of one COPY stream: its ${fmt((1000 * PAGE_SIZE) / copyRate, 1)} ms per ${PAGE_SIZE} rows against ` +
          `${fmt(mustDo, 1)} ms of JSON.parse and events statements in the staged COPY-path pages, with no validation, metrics, profiles or commit`,
      );
    }
    line('events table after ingest', `${tableSize[0]?.events} (database ${tableSize[0]?.total})`);
    line(
      'heap, one 1000-event invocation',
      `high-water ${mib(probe.heapPeak)} (baseline ${mib(probe.heapBaseline)}, +${mib(probe.heapPeak - probe.heapBaseline)}; ${probe.samples} samples), body ${mib(probe.bodyBytes)}, process max RSS ${mib(probe.rssPeakKb * 1024)}, status ${probe.status}`,
    );

    if (consumerBatches) {
      line(
        'queue consumer',
        `${fmt(consumerBatches.messages)} messages of at most ${fmt(QUEUE_MESSAGE_BYTES)} bytes (${fmt(consumerBatches.events / consumerBatches.messages)} events each), ${fmt(consumerBatches.batches)} batches of ${fmt(consumerBatches.messages / consumerBatches.batches, 1)} messages on average (at most ${BATCH_MESSAGES} and 6 MB), ${fmt(consumerBatches.marksPerBatch)} (metric, hour) marks a batch`,
      );
      for (const run of consumerRuns)
        line(
          `  ${run.consumers} batch${run.consumers === 1 ? '' : 'es'} in flight`,
          `${fmt(run.rate)} events/s  ${fmt((100 * run.rate) / copyRate, 1)} % of one COPY stream (slowest batch ${fmt(run.slowestBatchMs, 0)} ms; this process's CPU ${fmt((1000 * run.clientCpuMs) / run.events, 1)} µs per event, ${fmt((100 * run.clientCpuMs) / run.ms)} % of one core${run.machineBusyCores === null ? '' : `; the machine's CPU in use ${fmt(run.machineBusyCores, 2)} of ${cpus().length} cores`})`,
        );
      const perEvent = (ms: number) => `${fmt((1000 * ms) / consumerBatches.events, 1)} µs per event`;
      line(
        '  the route, every page',
        `${fmt(consumerBatches.routeMs / 1000, 1)} s single-threaded: validate, map, split, serialise (${perEvent(consumerBatches.routeMs)})`,
      );
      line(
        '  the consumer before the database',
        `JSON.parse ${perEvent(consumerBatches.parseMs)}, envelope check ${perEvent(consumerBatches.checkMs)}, to rows ${perEvent(consumerBatches.rowsMs)}, COPY text ${perEvent(consumerBatches.copyTextMs)} (message version ${QUEUE_VERSION})`,
      );
      if (QUEUE_VERSION !== 1) line('  validating and mapping again (v1)', perEvent(consumerBatches.revalidateMs));
      for (const { version, run, prepared, copyRate: roundCopyRate } of versionRuns)
        line(
          `  version ${version}, ${run.consumers} in flight`,
          `${fmt(run.rate)} events/s  ${fmt((100 * run.rate) / roundCopyRate, 1)} % of the COPY stream around it, ${fmt(roundCopyRate)} rows/s (${fmt(prepared.events / prepared.messages)} events a message; this process's CPU ${fmt((1000 * run.clientCpuMs) / run.events, 1)} µs per event; single-threaded, per event: parse and check ${fmt(beforeDbUs(prepared), 1)} µs, COPY text ${fmt((1000 * prepared.copyTextMs) / prepared.events, 1)} µs)`,
        );
      if (batchStages.batches > 0) {
        const batchEvents = batchStages.events / batchStages.batches;
        line(
          "  where a batch's time goes",
          `every ${BATCH_STAGE_EVERY}th batch of the 1-in-flight run stage by stage: ${batchStages.batches} batches, ${fmt(batchEvents)} events each`,
        );
        for (const stage of BATCH_STAGES)
          line(`    ${stage}`, `${fmt((batchStages.ms.get(stage) ?? 0) / batchStages.batches, 1).padStart(8)} ms`);
        const total = [...batchStages.ms.values()].reduce((a, b) => a + b, 0) / batchStages.batches;
        line('    a batch in all', `${fmt(total, 1).padStart(8)} ms`);
        line(
          '    one COPY stream, as many rows',
          `${fmt((1000 * batchEvents) / copyRate, 1).padStart(8)} ms (${fmt((100 * ((1000 * batchEvents) / copyRate)) / total, 1)} % of the batch)`,
        );
      }
      if (consumerBookkeeping && consumerBookkeeping.batches > 2) {
        const third = consumerBookkeeping.batches / 3;
        line(
          "  bookkeeping on a batch's COPY",
          `COPY alone ${fmt(consumerBookkeeping.copyMs / third, 1)} ms/batch, events statements ${fmt(consumerBookkeeping.eventsMs / third, 1)} ms/batch (pending rows by COPY), ${fmt(consumerBookkeeping.readBackMs / third, 1)} ms/batch (pending rows by the statement that reads the events back)`,
        );
      }
    }

    // The same figures for docs/benchmarks.md (npm run bench:report).
    const round1 = (n: number) => Math.round(n * 10) / 10;
    const vsCopy = (rate: number) => Math.round((1000 * rate) / copyRate) / 1000;
    const stageTotal = (ms: Map<Stage, number>) => [...ms.values()].reduce((a, b) => a + b, 0);
    const stagePerPage = (path: typeof paths.copy, stage?: Stage) =>
      path.pages === 0 ? null : round1((stage ? (path.ms.get(stage) ?? 0) : stageTotal(path.ms)) / path.pages);
    const ceiling =
      paths.copy.pages > 0 && CONCURRENCY === 1
        ? ((1000 * PAGE_SIZE) /
            copyRate /
            (((paths.copy.ms.get('JSON.parse') ?? 0) + (paths.copy.ms.get('events statements') ?? 0)) /
              paths.copy.pages)) *
          100
        : undefined;
    const copyPage = bookkeeping.copyMs / bookkeeping.copyPages;
    const eventsPage = bookkeeping.eventsMs / bookkeeping.eventsPages;
    const saved = writeBenchResult({
      bench: EVENT_HOURS > 0 ? 'ingest-recent' : 'ingest',
      title:
        EVENT_HOURS > 0
          ? `Ingest against COPY, events of the last ${EVENT_HOURS} hours (time-ordered and dense, as a busy account's)`
          : 'Ingest against COPY',
      command: benchCommand('bench/ingest.ts'),
      reference: 'COPY FROM STDIN of exactly the rows ingest stored, into the same emptied table, in the same run',
      dataset: {
        events: EVENTS,
        profiles: PROFILES,
        seed: SEED,
        'invocations in flight': CONCURRENCY,
        'profiles stored first': PROFILES_FIRST ? 'yes' : 'no',
        'page size': PAGE_SIZE,
        'naive slice': naiveRows.length,
        'queue message version': QUEUE_VERSION,
        'events fall within':
          EVENT_HOURS > 0
            ? `the last ${EVENT_HOURS} hours of the year, in time order (BENCH_EVENT_HOURS)`
            : 'the whole year, in time order (each event about its own (metric, hour): the worst case for the dirty marks)',
        ...(EVENT_FOREIGN_KEYS ? { "events' foreign keys": 'restored (BENCH_EVENT_FOREIGN_KEYS=1)' } : {}),
      },
      tables: [
        {
          title: 'Rows per second, against COPY in one stream',
          columns: ['path', 'rows/s', 'ratio to COPY'],
          rows: [
            [`ingest handler, ${CONCURRENCY} in flight (wall time)`, Math.round(ingestRate), vsCopy(ingestRate)],
            ['ingest handler, its invocations alone', Math.round(handlerRate), vsCopy(handlerRate)],
            ['COPY FROM STDIN, one stream (reference)', Math.round(copyRate), 1],
            ...(copyParallel
              ? [[`COPY FROM STDIN, ${CONCURRENCY} streams`, Math.round(copyParallel.rate), vsCopy(copyParallel.rate)]]
              : []),
            ['naive: one autocommitted INSERT per event', Math.round(naiveRate), vsCopy(naiveRate)],
          ],
        },
        {
          title: `Where a page's time goes (ms per page; one page in ${STAGE_EVERY} written stage by stage)`,
          columns: ['stage', 'COPY path', 'JSON path (Data API, DB_PREPARE=false)'],
          rows: [
            ...STAGES.map((stage) => [stage, stagePerPage(paths.copy, stage), stagePerPage(paths.json, stage)]),
            ['a page in all', stagePerPage(paths.copy), stagePerPage(paths.json)],
          ],
        },
        ...(consumerBatches
          ? [
              {
                title: `Queue consumer (${fmt(consumerBatches.events / consumerBatches.messages)} events per message of at most ${fmt(QUEUE_MESSAGE_BYTES)} bytes, batches of ${fmt(consumerBatches.messages / consumerBatches.batches, 1)} messages on average: at most ${BATCH_MESSAGES}, and 6 MB as Lambda's), against COPY in one stream`,
                columns: [
                  'batches in flight',
                  'rows/s',
                  'ratio to COPY',
                  'slowest batch (ms)',
                  "the bench process's CPU per event, all consumers' client work (µs)",
                  'that CPU, share of one core (%)',
                  `the machine's CPU in use, all processes (cores of ${cpus().length})`,
                ],
                rows: consumerRuns.map((run) => [
                  run.consumers,
                  Math.round(run.rate),
                  vsCopy(run.rate),
                  Math.round(run.slowestBatchMs),
                  round1((1000 * run.clientCpuMs) / run.events),
                  Math.round((100 * run.clientCpuMs) / run.ms),
                  run.machineBusyCores === null ? null : Math.round(run.machineBusyCores * 100) / 100,
                ]),
              },
              ...(versionRuns.length > 0
                ? [
                    {
                      title: `Queue consumer by message version, ${COMPARE_IN_FLIGHT.join(' and ')} batches in flight, the versions in turn (${QUEUE_COMPARE_ROUNDS} rounds, each run into emptied tables, each run against the mean of a one-stream COPY of the same rows just before and just after it)`,
                      columns: [
                        'message version',
                        'batches in flight',
                        'round',
                        'events per message',
                        'rows/s',
                        'one COPY stream around the run (rows/s)',
                        'ratio to the COPY around it',
                        "the bench process's CPU per event (µs)",
                        'single-threaded: parse and check, per event (µs)',
                        'single-threaded: the COPY text, per event (µs)',
                      ],
                      rows: versionRuns.map(({ version, round, run, prepared, copyRate: roundCopyRate }) => [
                        version,
                        run.consumers,
                        round,
                        Math.round(prepared.events / prepared.messages),
                        Math.round(run.rate),
                        Math.round(roundCopyRate),
                        Math.round((1000 * run.rate) / roundCopyRate) / 1000,
                        round1((1000 * run.clientCpuMs) / run.events),
                        round1(beforeDbUs(prepared)),
                        round1((1000 * prepared.copyTextMs) / prepared.events),
                      ]),
                    },
                  ]
                : []),
              ...(batchStages.batches > 0
                ? [
                    {
                      title: `Queue consumer: a batch stage by stage (ms per batch; every ${BATCH_STAGE_EVERY}th batch of the 1-in-flight run, ${batchStages.batches} batches of ${fmt(batchStages.events / batchStages.batches)} events)`,
                      columns: ['stage', 'ms per batch', 'share of the batch (%)'],
                      rows: ((total: number) => [
                        ...BATCH_STAGES.map((stage) => [
                          stage,
                          round1((batchStages.ms.get(stage) ?? 0) / batchStages.batches),
                          round1((100 * (batchStages.ms.get(stage) ?? 0)) / batchStages.batches / total),
                        ]),
                        ['a batch in all', round1(total), 100],
                        [
                          'one COPY stream, as many rows (the reference)',
                          round1((1000 * (batchStages.events / batchStages.batches)) / copyRate),
                          round1((100 * ((1000 * (batchStages.events / batchStages.batches)) / copyRate)) / total),
                        ],
                      ])([...batchStages.ms.values()].reduce((a, b) => a + b, 0) / batchStages.batches),
                    },
                  ]
                : []),
              {
                title: "Queue consumer: where a batch's time goes",
                columns: ['figure', 'value'],
                rows: [
                  [
                    "(metric, UTC hour) pairs a batch's events fall in: its dirty marks",
                    Math.round(consumerBatches.marksPerBatch),
                  ],
                  [
                    'the route: validate, map, split and serialise, per event, single-threaded (µs)',
                    round1((1000 * consumerBatches.routeMs) / consumerBatches.events),
                  ],
                  [
                    "the consumer's JSON.parse of the message bodies, per event (µs)",
                    round1((1000 * consumerBatches.parseMs) / consumerBatches.events),
                  ],
                  [
                    `the consumer's COPY text of the events from those rows, per event (µs; message version ${QUEUE_VERSION})`,
                    round1((1000 * consumerBatches.copyTextMs) / consumerBatches.events),
                  ],
                  [
                    `the consumer's envelope check, per event (µs; message version ${QUEUE_VERSION})`,
                    round1((1000 * consumerBatches.checkMs) / consumerBatches.events),
                  ],
                  [
                    `the consumer's ${QUEUE_VERSION === 1 ? 'validation and mapping' : QUEUE_VERSION === 2 ? 'rows from the checked body' : QUEUE_VERSION === 3 ? 'check of the event lines and rows from them' : 'check of the profile and event lines and rows from them'}, per event (µs)`,
                    round1((1000 * consumerBatches.rowsMs) / consumerBatches.events),
                  ],
                  ...(QUEUE_VERSION !== 1
                    ? [
                        [
                          'validating and mapping the same pages again, as version 1 messages made the consumer do, per event (µs)',
                          round1((1000 * consumerBatches.revalidateMs) / consumerBatches.events),
                        ],
                      ]
                    : []),
                  ...(consumerBookkeeping && consumerBookkeeping.batches > 2
                    ? [
                        [
                          "a batch's COPY alone, emptied table (ms)",
                          round1(consumerBookkeeping.copyMs / (consumerBookkeeping.batches / 3)),
                        ],
                        [
                          "the consumer's events statements on the same batches, pending rows by COPY (ms)",
                          round1(consumerBookkeeping.eventsMs / (consumerBookkeeping.batches / 3)),
                        ],
                        [
                          'the same, pending rows by the statement that reads the copied events back (ms)',
                          round1(consumerBookkeeping.readBackMs / (consumerBookkeeping.batches / 3)),
                        ],
                      ]
                    : []),
                ],
              },
            ]
          : []),
        {
          title: 'Other figures of the same run',
          columns: ['figure', 'value'],
          rows: [
            ['slowest page in the handler (ms)', round1(slowestPageMs)],
            ["the bench process's CPU per row during the one-stream COPY (µs)", round1(copyClientCpuPerRowUs)],
            ["a page's COPY alone, emptied table (ms)", round1(copyPage)],
            ["the ingest's events statements on the same pages (ms)", round1(eventsPage)],
            ...(ceiling === undefined
              ? []
              : [["ceiling one page at a time: COPY's time over JSON.parse + events statements (%)", round1(ceiling)]]),
            ['heap high-water of one 1000-event invocation (MiB)', round1(probe.heapPeak / 2 ** 20)],
            ['process max RSS of that invocation (MiB)', round1(probe.rssPeakKb / 1024)],
          ],
        },
      ],
      goals: [
        `Ingest at least 70 % of COPY: ${fmt((100 * ingestRate) / copyRate, 1)} % of one COPY stream in this run (${
          (100 * ingestRate) / copyRate >= 70 ? 'met' : 'not met'
        }).`,
        `25,000 events/s: ${fmt(ingestRate)} events/s in this run (${ingestRate >= 25_000 ? 'met' : 'not met'}).`,
        ...(versionRuns.length === 0 ? [] : COMPARE_IN_FLIGHT).map((consumers) => {
          const goal = consumers === 3 ? 70 : 50;
          const ratios = versionRuns
            .filter((r) => r.version === QUEUE_VERSION && r.run.consumers === consumers)
            .map((r) => (100 * r.run.rate) / r.copyRate);
          // Judged on the rounds' median: on a shared machine one round moves by several points from
          // one minute to the next (docs/queue.md), so each round is printed and counted as well.
          const middle = median(ratios);
          const atOrAbove = ratios.filter((ratio) => ratio >= goal).length;
          // A figure just under the goal keeps the digit that shows it is under (49.96, not 50.0).
          const shown = (ratio: number) => fmt(ratio, ratio < goal && Math.round(ratio * 10) / 10 >= goal ? 2 : 1);
          return `Queue consumer, ${consumers} batch${consumers === 1 ? '' : 'es'} in flight, at least ${goal} % of one COPY stream, each run against the COPY just before and just after it (message version ${QUEUE_VERSION}): ${ratios.map((ratio) => `${shown(ratio)} %`).join(', ')} (median ${shown(middle)} %: ${middle >= goal ? 'met' : 'not met'}; ${atOrAbove} of ${ratios.length} rounds at or above the goal).`;
        }),
        ...consumerRuns
          .filter((run) => run.consumers === 1 || run.consumers === 3)
          .map((run) => {
            const goal = run.consumers === 3 ? 70 : 50;
            const ratio = (100 * run.rate) / copyRate;
            const figure = `Queue consumer, ${run.consumers} batch${run.consumers === 1 ? '' : 'es'} in flight, at least ${goal} % of one COPY stream`;
            // With rounds, the run's one COPY, minutes away from these runs, is not the measure.
            return versionRuns.length === 0
              ? `${figure}: ${fmt(ratio, 1)} % (${ratio >= goal ? 'met' : 'not met'}).`
              : `${figure}, against the run's one COPY minutes earlier (${fmt(copyRate)} rows/s; the rounds above are the measure): ${fmt(ratio, 1)} %.`;
          }),
      ],
      notes: [
        'Pages are generated and serialised before the clock starts; the ingest figure is every stored event over the wall time.',
        'Ratios are the meaningful part: both sides run on the same machine minutes apart.',
      ],
    });
    process.stdout.write(`\nwrote ${saved}\n`);
  } finally {
    for (const file of [
      pagesFile,
      ...copyFiles,
      join(DATA_DIR, 'batches.ndjson'),
      join(DATA_DIR, 'batches-compare.ndjson'),
    ])
      rmSync(file, { force: true });
    await stopServer();
  }
}

if (process.argv.includes('--heap-probe')) {
  heapProbe().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
