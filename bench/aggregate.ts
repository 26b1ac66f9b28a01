/**
 * The incremental aggregator against a full rebuild, measured in the same run on the same data.
 *
 *   npx tsx bench/aggregate.ts                        # 10,000,000 events stored (the issue's large size)
 *   BENCH_EVENTS=1000000 npx tsx bench/aggregate.ts   # 1,000,000 events stored
 *
 * The stored dataset (a year of a demo account, lib/demo) is built once by bench/support/dataset.ts in
 * .data/bench-aggregate-<events> and kept for later runs. Each run:
 *   1. full rebuild: empties the rollups and the dirty marks and rebuilds every hour from raw events
 *      (rebuildAggregates, week chunks) - the reference;
 *   2. ingest: BENCH_NEW_EVENTS (default 10,000) new events spread uniformly over the dataset's year,
 *      with the dataset's metrics (by the demo catalog's weights) and profiles, through insertEvents
 *      (the real write path that marks dirty hours) in pages of 1000, one transaction each;
 *   3. incremental: one runAggregation run (the scheduled function's work: it adds the new events'
 *      pending rows to the stored rollups), a check that every touched hour equals a recomputation from
 *      raw events, and that the rollups again add up to the events table;
 *   4. idle: a run with nothing to do;
 *   5. materialisation figures: what serving a year of one metric costs from hourly rollups and from
 *      raw events, and what an exact unique count of a day / a month costs from raw events (what a
 *      late event would cost to keep a daily / monthly rollup exact).
 * The events this run added are deleted at the start of the next run, so the dataset stays its size.
 * Other knobs: BENCH_SEED (default 1), BENCH_BATCH_BUCKETS (default the configured 5000), BENCH_REBUILD=0
 * (skip step 1: the removed events' hours are recounted by a run instead, and the tables vacuumed; for
 * timing the incremental run again without the long rebuild at 10M), BENCH_SHARED_BUFFERS (the
 * server's buffer pool, default 1GB; bench/support/dataset.ts), BENCH_PREWARM=1 (before the rounds,
 * read the tables and indexes an incremental run works on into the buffer pool with pg_prewarm, as a
 * server the schedule has kept busy holds them; the bench server starts with an empty pool),
 * BENCH_PENDING_VALUES (carried, the default: the dimension statement takes the new events' values from
 * their pending rows; read: their carried values are removed before each run, so it reads the events
 * back as before migration 0012; alternate: odd rounds read, even rounds carried, both in one run),
 * BENCH_NEW_EVENTS_HOURS=n (the new events fall in the dataset's last n hours, as a scheduled run's
 * mostly do, instead of over its whole year), BENCH_DAY_ZONES (the zones whose days have daily rows of
 * their own, ROLLUP_DAY_ZONES; default America/New_York, as bench/query.ts; "" for none: a zone not
 * listed is dropped, as the backfill does, and bench/query.ts fills it again).
 */
import { backfillDimensions, rebuildAggregates, runAggregation, type AggregationResult } from '../lib/app/aggregation';
import { DEMO_METRICS } from '../lib/demo/catalog';
import type { ClosableDb, Db } from '../lib/db/port';
import { setLogLevel } from '../lib/log';
import { readHourlySeries } from '../lib/repositories/aggregates';
import { insertEvents, type NewEvent } from '../lib/repositories/events';
import { BENCH_ACCOUNT, openBenchDatabase, removeBenchEvents } from './support/dataset';
import { intFromEnv } from './support/env';
import { benchCommand, writeBenchResult, type BenchTable } from './support/results';
import { prng } from '../tests/support/random';

const EVENTS = intFromEnv('BENCH_EVENTS', 10_000_000);
const NEW_EVENTS = intFromEnv('BENCH_NEW_EVENTS', 10_000);
const SEED = intFromEnv('BENCH_SEED', 1);
const BATCH_BUCKETS = intFromEnv('BENCH_BATCH_BUCKETS', 5000);
const REBUILD = intFromEnv('BENCH_REBUILD', 1, 0) !== 0;
const ROUNDS = Math.max(1, intFromEnv('BENCH_ROUNDS', 2));
const PREWARM = intFromEnv('BENCH_PREWARM', 0, 0) !== 0;
const PENDING_VALUES = process.env.BENCH_PENDING_VALUES ?? 'carried';
/** 0: the new events spread over the dataset's whole year (every one late, nearly every one its own hour). */
const NEW_EVENTS_HOURS = intFromEnv('BENCH_NEW_EVENTS_HOURS', 0, 0);
const DAY_ZONES = (process.env.BENCH_DAY_ZONES ?? 'America/New_York')
  .split(',')
  .map((z) => z.trim())
  .filter((z) => z !== '');
if (!['carried', 'read', 'alternate'].includes(PENDING_VALUES))
  throw new Error(`BENCH_PENDING_VALUES must be carried, read or alternate, not "${PENDING_VALUES}"`);

/** Whether this round's dimension statement reads the new events back instead of their pending rows' values. */
function readsEventsBack(round: number): boolean {
  return PENDING_VALUES === 'read' || (PENDING_VALUES === 'alternate' && round % 2 === 1);
}

/** What an incremental run reads and writes, with their indexes (not the events: it reads only pending rows). */
const AGGREGATOR_TABLES = [
  'klaviyo_profile_hours',
  'klaviyo_aggregated_metrics',
  'klaviyo_aggregate_pending',
  'klaviyo_aggregate_dirty',
  'klaviyo_dimension_rollups',
  'klaviyo_dimension_daily_rollups',
  'klaviyo_dimension_zone_daily_rollups',
];

async function prewarmAggregatorTables(db: Db): Promise<void> {
  await db.query('CREATE EXTENSION IF NOT EXISTS pg_prewarm');
  const tables = AGGREGATOR_TABLES.map((t) => `'${t}'::regclass`).join(', ');
  const [rows, took] = await timed(() =>
    db.query<{ blocks: string; pool_blocks: string }>(
      `SELECT sum(pg_prewarm(c.oid))::int8 AS blocks,
              (SELECT setting::int8 FROM pg_settings WHERE name = 'shared_buffers') AS pool_blocks
         FROM pg_class c
        WHERE c.oid IN (${tables}) OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN (${tables}))`,
    ),
  );
  const blocks = Number(rows[0]?.blocks ?? 0);
  const poolBlocks = Number(rows[0]?.pool_blocks ?? 0);
  say(
    `prewarmed the aggregator's tables and indexes: ${fmt((blocks * 8) / 1024)} MiB into a ${fmt((poolBlocks * 8) / 1024)} MiB buffer pool in ${ms(took)}` +
      (blocks > poolBlocks ? ' (more than the pool holds: the first blocks read are gone again)' : ''),
  );
}
/** Each round's figures and the materialisation figures, for bench/results/aggregate.json. */
const roundFigures: {
  round: number;
  events: number;
  hours: number;
  runMs: number;
  dimensionMs: number;
  readBack: boolean;
  recountMs: number;
}[] = [];
const materialisation: (readonly [string, number])[] = [];

const PAGE = 1000;
const NEW_ID_PREFIX = 'bench-aggregate-';
const HOUR = 3_600_000;

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ms = (n: number) => `${fmt(n, n < 10 ? 2 : 0)} ms`;
const say = (line: string) => process.stdout.write(line + '\n');

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await work();
  return [result, performance.now() - started];
}

async function one<T extends Record<string, unknown>>(
  db: Db,
  text: string,
  params: (string | number)[] = [],
): Promise<T> {
  const rows = await db.query<T>(text, params);
  if (!rows[0]) throw new Error(`no row from: ${text}`);
  return rows[0];
}

/** Index-only scans need the visibility map; a dataset loaded by COPY may not have one yet. */
async function ensureVacuumed(db: Db): Promise<string> {
  const before = await one<{ pages: number; visible: number }>(
    db,
    `SELECT relpages AS pages, relallvisible AS visible FROM pg_class WHERE relname = 'klaviyo_events'`,
  );
  if (before.pages > 0 && before.visible >= before.pages * 0.95) return 'already vacuumed';
  const [, took] = await timed(() => db.query('VACUUM (ANALYZE) klaviyo_events'));
  return `vacuumed in ${ms(took)}`;
}

interface Sample {
  readonly metrics: { id: string; weight: number }[];
  readonly profiles: string[];
  readonly from: number;
  readonly to: number;
  /** Stored events' properties per metric, which new events copy: the dimension rollups then see real keys. */
  readonly properties: ReadonlyMap<string, readonly Record<string, unknown>[]>;
}

async function sampleDataset(db: Db): Promise<Sample> {
  const stored = new Set((await db.query<{ id: string }>('SELECT id FROM klaviyo_metrics')).map((r) => r.id));
  const catalog = DEMO_METRICS.filter((m) => stored.has(m.id)).map((m) => ({ id: m.id, weight: m.weight }));
  const metrics = catalog.length > 0 ? catalog : [...stored].map((id) => ({ id, weight: 1 }));
  const profiles = (await db.query<{ id: string }>('SELECT id FROM klaviyo_profiles ORDER BY id LIMIT 20000')).map(
    (r) => r.id,
  );
  const span = await one<{ first: Date; last: Date }>(
    db,
    'SELECT min("timestamp") AS first, max("timestamp") AS last FROM klaviyo_events',
  );
  const sampled = await db.query<{ metric_id: string; properties: Record<string, unknown> }>(
    'SELECT metric_id, properties FROM klaviyo_events TABLESAMPLE SYSTEM (1) REPEATABLE (1) LIMIT 5000',
  );
  const properties = new Map<string, Record<string, unknown>[]>();
  for (const row of sampled) {
    const list = properties.get(row.metric_id) ?? [];
    list.push(row.properties);
    properties.set(row.metric_id, list);
  }
  return { metrics, profiles, from: span.first.getTime(), to: span.last.getTime(), properties };
}

function newEvents(sample: Sample, count: number, seed: number): NewEvent[] {
  const random = prng(seed);
  const total = sample.metrics.reduce((s, m) => s + m.weight, 0);
  const pickMetric = () => {
    let roll = random() * total;
    for (const m of sample.metrics) {
      roll -= m.weight;
      if (roll <= 0) return m.id;
    }
    return (sample.metrics[sample.metrics.length - 1] as { id: string }).id;
  };
  const run = Date.now().toString(36);
  const from = NEW_EVENTS_HOURS > 0 ? Math.max(sample.from, sample.to - NEW_EVENTS_HOURS * HOUR) : sample.from;
  return Array.from({ length: count }, (_, i) => {
    const timestamp = new Date(from + Math.floor(random() * (sample.to - from))).toISOString();
    const id = `${NEW_ID_PREFIX}${run}-${i}`;
    const value = random() < 0.3 ? (Math.floor(random() * 50_000) / 100).toFixed(2) : null;
    const metricId = pickMetric();
    const like = sample.properties.get(metricId) ?? [];
    const copied = like.length > 0 ? like[Math.floor(random() * like.length)] : undefined;
    return {
      id,
      timestamp,
      metricId,
      profileId:
        sample.profiles.length > 0 ? (sample.profiles[Math.floor(random() * sample.profiles.length)] as string) : null,
      value,
      valueCurrency: value === null ? null : 'USD',
      uuid: null,
      uniqueId: id,
      properties: { ...copied, ...(value === null ? {} : { $value: Number(value) }) },
      rawData: { type: 'event', id, attributes: { datetime: timestamp } },
    };
  });
}

async function rollupTotals(db: Db): Promise<{ rollups: number; events: number; rows: number }> {
  const row = await one<{ rollups: string; events: string; rows: string }>(
    db,
    `SELECT (SELECT coalesce(sum(event_count), 0) FROM klaviyo_aggregated_metrics WHERE granularity = 'hour') AS rollups,
            (SELECT count(*) FROM klaviyo_events) AS events,
            (SELECT count(*) FROM klaviyo_aggregated_metrics WHERE granularity = 'hour') AS rows`,
  );
  return { rollups: Number(row.rollups), events: Number(row.events), rows: Number(row.rows) };
}

/** Serving a year of one metric, per local day: from hourly rollups, and from raw events. */
async function materialisationFigures(db: Db, metricId: string, from: Date, to: Date): Promise<void> {
  const year = { metricId, from, to };
  await readHourlySeries(db, BENCH_ACCOUNT, year); // warm the cache the same way for both
  const [hours, fromRollups] = await timed(() => readHourlySeries(db, BENCH_ACCOUNT, year));
  const [, perDayFromRollups] = await timed(() =>
    db.query(
      `SELECT date_trunc('day', bucket, 'America/New_York') AS day, sum(event_count) AS n, sum(sum_value) AS total
       FROM klaviyo_aggregated_metrics
       WHERE metric_id = $1 AND granularity = 'hour' AND bucket >= $2::timestamptz AND bucket < $3::timestamptz
       GROUP BY 1`,
      [metricId, from.toISOString(), to.toISOString()],
    ),
  );
  const [, perDayFromRaw] = await timed(() =>
    db.query(
      `SELECT date_trunc('day', "timestamp", 'America/New_York') AS day, count(*) AS n, sum(value) AS total,
              count(DISTINCT profile_id) AS uniques
       FROM klaviyo_events
       WHERE metric_id = $1 AND "timestamp" >= $2::timestamptz AND "timestamp" < $3::timestamptz
       GROUP BY 1`,
      [metricId, from.toISOString(), to.toISOString()],
    ),
  );
  const mid = new Date(from.getTime() + (to.getTime() - from.getTime()) / 2);
  const hourStart = new Date(Math.floor(mid.getTime() / HOUR) * HOUR);
  const uniqueOver = (start: Date, end: Date) =>
    timed(() =>
      db.query(
        `SELECT count(*) AS n, count(DISTINCT profile_id) AS uniques FROM klaviyo_events
         WHERE metric_id = $1 AND "timestamp" >= $2::timestamptz AND "timestamp" < $3::timestamptz`,
        [metricId, start.toISOString(), end.toISOString()],
      ),
    );
  const [[hourRow], hourUnique] = await uniqueOver(hourStart, new Date(hourStart.getTime() + HOUR));
  const [[dayRow], dayUnique] = await uniqueOver(hourStart, new Date(hourStart.getTime() + 24 * HOUR));
  const [[monthRow], monthUnique] = await uniqueOver(hourStart, new Date(hourStart.getTime() + 30 * 24 * HOUR));
  materialisation.push(
    [`a year per local day (America/New_York) from ${fmt(hours.length)} hourly rollup rows`, round1(perDayFromRollups)],
    ['the same from raw events, with unique profiles', round1(perDayFromRaw)],
    [`exact unique profiles from raw events, one day (${fmt(Number(dayRow?.n))} events)`, round1(dayUnique)],
    [`exact unique profiles from raw events, 30 days (${fmt(Number(monthRow?.n))} events)`, round1(monthUnique)],
  );
  say(`materialisation, metric ${metricId} (the busiest), one year:`);
  say(
    `  year per local day (America/New_York) from ${fmt(hours.length)} hourly rollup rows: ${ms(perDayFromRollups)} (readHourlySeries: ${ms(fromRollups)})`,
  );
  say(`  year per local day from raw events, with unique profiles:          ${ms(perDayFromRaw)}`);
  say(
    `  exact unique profiles from raw events: one hour ${ms(hourUnique)} (${fmt(Number(hourRow?.n))} events), ` +
      `one day ${ms(dayUnique)} (${fmt(Number(dayRow?.n))}), 30 days ${ms(monthUnique)} (${fmt(Number(monthRow?.n))})`,
  );
}

/** How many of the given hours' stored rollups differ from their raw events (untimed; the exactness check at scale). */
async function touchedBucketsDifferingFromRaw(
  db: Db,
  touched: readonly { metric_id: string; bucket: Date }[],
): Promise<number> {
  const payload = JSON.stringify(touched.map((b) => ({ metric_id: b.metric_id, bucket: b.bucket.toISOString() })));
  const row = await one<{ wrong: string }>(
    db,
    `SELECT count(*) AS wrong
     FROM jsonb_to_recordset($1::jsonb) AS t(metric_id text, bucket timestamptz)
     CROSS JOIN LATERAL (
       SELECT count(*) AS event_count, coalesce(sum(e.value), 0) AS sum_value, min(e.value) AS min_value,
              max(e.value) AS max_value, count(DISTINCT e.profile_id) AS unique_profiles
       FROM klaviyo_events e
       WHERE e.metric_id = t.metric_id AND e."timestamp" >= t.bucket AND e."timestamp" < t.bucket + interval '1 hour'
     ) raw
     LEFT JOIN klaviyo_aggregated_metrics a ON a.metric_id = t.metric_id AND a.granularity = 'hour' AND a.bucket = t.bucket
     WHERE (raw.event_count, raw.sum_value, raw.min_value, raw.max_value, raw.unique_profiles)
           IS DISTINCT FROM (a.event_count, a.sum_value, a.min_value, a.max_value, a.unique_profiles)`,
    [payload],
  );
  return Number(row.wrong);
}

/** One round: new events through insertEvents, one aggregate run timed, and its result checked. */
async function incrementalRound(db: ClosableDb, sample: Sample, round: number): Promise<[AggregationResult, number]> {
  const fresh = newEvents(sample, NEW_EVENTS, SEED * 7919 + (Date.now() % 1000) + round);
  const [inserted, ingestMs] = await timed(async () => {
    let count = 0;
    for (let i = 0; i < fresh.length; i += PAGE) {
      const page = fresh.slice(i, i + PAGE);
      count += (await db.transaction((tx) => insertEvents(tx, BENCH_ACCOUNT, page))).inserted;
    }
    return count;
  });
  const marked = await one<{ n: string }>(db, 'SELECT count(*) AS n FROM klaviyo_aggregate_dirty');
  say(
    `round ${round} ingest: ${fmt(inserted)} new events in ${ms(ingestMs)}, ${fmt(Number(marked.n))} (metric, hour) buckets marked dirty`,
  );
  const readBack = readsEventsBack(round);
  if (readBack) {
    // As pending rows without carried values (written before migration 0012): the dimension
    // statement reads each event's properties from klaviyo_events by primary key.
    await db.query('UPDATE klaviyo_aggregate_pending SET dimension_values = NULL, dimension_generation = NULL');
    say(`round ${round}: the pending rows' carried values removed, so the dimension statement reads the events back`);
  }
  const touched = await db.query<{ metric_id: string; bucket: Date }>(
    'SELECT metric_id, bucket FROM klaviyo_aggregate_dirty',
  );

  const [incremental, incrementalMs] = await timed(() =>
    runAggregation(db, BENCH_ACCOUNT, { batchBuckets: BATCH_BUCKETS, timeBudgetMs: 600_000 }),
  );
  say(
    `round ${round} incremental run: ${ms(incrementalMs)} - ${fmt(incremental.bucketsRecomputed)} buckets recomputed from ` +
      `${fmt(incremental.eventsScanned)} events in ${incremental.batches} batches of up to ${fmt(BATCH_BUCKETS)}, ` +
      `status ${incremental.status}, ${incremental.bucketsWaiting} waiting; ${fmt(incremental.bucketsFromRaw)} of them from raw events; ` +
      `dimension rollups ${ms(incremental.dimensionMs)} of it (${fmt(incremental.dimensionRowsChanged)} rows)`,
  );
  const [wrong, recountMs] = await timed(() => touchedBucketsDifferingFromRaw(db, touched));
  if (wrong > 0)
    throw new Error(`${wrong} of the ${touched.length} touched hours differ from a recomputation from raw events`);
  say(
    `  check: the ${fmt(touched.length)} touched hours equal a recomputation from raw events (count, sum, min, max, unique profiles); ` +
      `that recount alone (what a run did before pending rows) took ${ms(recountMs)}`,
  );
  const totals = await rollupTotals(db);
  if (totals.rollups !== totals.events)
    throw new Error(`rollups count ${totals.rollups} events but the table holds ${totals.events}`);
  say(`  check: the ${fmt(totals.rows)} hourly rows add up to the ${fmt(totals.events)} stored events`);
  roundFigures.push({
    round,
    events: inserted,
    hours: touched.length,
    runMs: incrementalMs,
    dimensionMs: incremental.dimensionMs,
    readBack,
    recountMs,
  });

  return [incremental, incrementalMs];
}

async function bench(db: ClosableDb): Promise<void> {
  const removed = await removeBenchEvents(db, NEW_ID_PREFIX);
  say(
    `dataset: ${fmt(EVENTS)} events (seed ${SEED})${removed > 0 ? `; removed ${fmt(removed)} events of earlier runs` : ''}; ${await ensureVacuumed(db)}`,
  );
  const sample = await sampleDataset(db);
  say(
    `  ${sample.metrics.length} metrics, span ${new Date(sample.from).toISOString()} .. ${new Date(sample.to).toISOString()}`,
  );

  // 1. The reference: every hour from raw events.
  let full: { eventsScanned: number } | null = null;
  let fullMs = Number.NaN;
  if (REBUILD) {
    await db.query(
      'TRUNCATE klaviyo_aggregated_metrics, klaviyo_profile_hours, klaviyo_aggregate_dirty, klaviyo_aggregate_pending',
    );
    const [rebuilt, took] = await timed(() => rebuildAggregates(db, BENCH_ACCOUNT));
    [full, fullMs] = [rebuilt, took];
    say(
      `full rebuild: ${ms(took)} - ${fmt(rebuilt.eventsScanned)} events into ${fmt(rebuilt.bucketsRecomputed)} hour buckets, ` +
        `${rebuilt.chunks} week chunks`,
    );
  } else {
    // The hours of the events removed above are recounted from raw events, then the tables vacuumed,
    // as autovacuum keeps them between scheduled runs.
    const [cleanup, took] = await timed(() =>
      runAggregation(db, BENCH_ACCOUNT, { batchBuckets: BATCH_BUCKETS, timeBudgetMs: 3_600_000 }),
    );
    await db.query('VACUUM ANALYZE klaviyo_aggregated_metrics');
    await db.query('VACUUM ANALYZE klaviyo_profile_hours');
    await db.query('VACUUM ANALYZE klaviyo_aggregate_dirty');
    await db.query('VACUUM ANALYZE klaviyo_aggregate_pending');
    say(
      `full rebuild skipped (BENCH_REBUILD=0); the removed events' ${fmt(cleanup.bucketsRecomputed)} hours recounted from raw in ${ms(took)}, then vacuumed`,
    );
  }

  // 2-3. New events, spread over the year, through the real write path, then one scheduled run's work;
  // BENCH_ROUNDS times (default 2): the first round after the server starts meets cold caches (the
  // profile-hours' index is read from disk), the second the state of a database the schedule keeps warm.
  // The listed zones registered and filled, the others dropped, as `npm run backfill -- --dimensions` does.
  const zones = await backfillDimensions(db, { extraDimensions: [], extraUniqueDimensions: [], dayZones: DAY_ZONES });
  say(
    `zones with days of their own: ${DAY_ZONES.join(', ') || 'none'}${zones.backfilledZones.length > 0 ? ` (filled in ${ms(zones.durationMs)})` : ''}`,
  );
  if (PREWARM) await prewarmAggregatorTables(db);
  let incremental: AggregationResult | null = null;
  let incrementalMs = Number.NaN;
  for (let round = 1; round <= ROUNDS; round += 1) {
    [incremental, incrementalMs] = await incrementalRound(db, sample, round);
  }
  // 4. Nothing to do.
  const [idle, idleMs]: [AggregationResult, number] = await timed(() =>
    runAggregation(db, BENCH_ACCOUNT, { batchBuckets: BATCH_BUCKETS, timeBudgetMs: 600_000 }),
  );
  say(`idle run: ${ms(idleMs)} (${idle.bucketsRecomputed} buckets)`);

  if (full && incremental) {
    say(
      `ratio incremental / full rebuild: ${fmt(incrementalMs / fullMs, 3)} ` +
        `(events read: ${fmt(incremental.eventsScanned / Math.max(1, full.eventsScanned), 3)})`,
    );
  }

  // 5. What more materialisation would buy and cost.
  const busiest = sample.metrics.reduce((a, b) => (b.weight > a.weight ? b : a));
  await materialisationFigures(db, busiest.id, new Date(sample.from), new Date(sample.to + HOUR));

  const last = roundFigures[roundFigures.length - 1];
  const reference = REBUILD ? 'full rebuild' : 'recount of the touched hours from raw';
  const tables: BenchTable[] = [
    {
      // Two series, so that `npm run chart -- --bench aggregate` draws the comparison itself.
      title: `Incremental run after ${fmt(NEW_EVENTS)} new events, against the ${reference} (ms)`,
      columns: ['round', 'incremental run', reference],
      unit: 'ms',
      rows: roundFigures.map((r) => [
        `round ${r.round}${r.round === 1 ? ' (cold caches)' : ''}`,
        round1(r.runMs),
        round1(REBUILD ? fullMs : r.recountMs),
      ]),
    },
    {
      title: 'Each round',
      columns: [
        'round',
        'new events',
        'hours touched',
        'dimension values from',
        'dimension statement (ms)',
        'recount of the touched hours from raw (ms)',
        `incremental run / ${reference}`,
      ],
      rows: roundFigures.map((r) => [
        `round ${r.round}`,
        r.events,
        r.hours,
        r.readBack ? 'events read back' : 'pending rows',
        round1(r.dimensionMs),
        round1(r.recountMs),
        Math.round((1000 * r.runMs) / (REBUILD ? fullMs : r.recountMs)) / 1000,
      ]),
    },
    { title: 'Idle run (nothing to do, ms)', columns: ['run', 'time'], rows: [['idle', round1(idleMs)]] },
    {
      title: `What materialising more would buy: the busiest metric over the dataset's year (ms)`,
      columns: ['read', 'time'],
      rows: materialisation.map(([what, took]) => [what, took]),
    },
  ];
  const saved = writeBenchResult({
    bench: 'aggregate',
    title: 'Aggregation: incremental run against full rebuild',
    command: benchCommand('bench/aggregate.ts'),
    reference: REBUILD
      ? 'a full rebuild of every hour from raw events (rebuildAggregates), same run, same data'
      : 'a recount of the touched hours from raw events, same run (BENCH_REBUILD=0: no rebuild)',
    dataset: {
      events: EVENTS,
      seed: SEED,
      metrics: sample.metrics.length,
      'new events per round': NEW_EVENTS,
      rounds: ROUNDS,
      'batch buckets': BATCH_BUCKETS,
      'shared buffers': process.env.BENCH_SHARED_BUFFERS ?? '1GB',
      prewarm: PREWARM ? 'yes' : 'no',
      'zones with days of their own': DAY_ZONES.join(', ') || 'none',
      'dimension values': PENDING_VALUES,
      'new events over': NEW_EVENTS_HOURS > 0 ? `the last ${NEW_EVENTS_HOURS} hours` : 'the whole year',
    },
    tables,
    goals: last
      ? [
          `An incremental run at most 1 s, about the same at 1M and 10M events stored: ${fmt(last.runMs)} ms in the last round at ${fmt(EVENTS)} events (${last.runMs <= 1000 ? 'met' : 'not met'} at this size).`,
        ]
      : [],
    notes: [
      'Every touched hour is checked equal to a recomputation from raw events (count, sum, min, max, unique profiles), untimed.',
      'The first round after the bench server starts meets cold caches; a server running the schedule keeps them warm.',
    ],
  });
  say(`wrote ${saved}`);
}

const round1 = (n: number) => Math.round(n * 10) / 10;

async function main(): Promise<void> {
  setLogLevel('warn');
  // One data directory per size: the 1M and the 10M datasets are both kept, so each later run starts at once.
  // BENCH_DATASET reuses another bench's stored dataset of the same size and seed (e.g. query).
  const dataset = await openBenchDatabase({
    name: process.env.BENCH_DATASET ?? `aggregate-${EVENTS}`,
    events: EVENTS,
    seed: SEED,
  });
  try {
    await bench(dataset.db);
  } finally {
    await dataset.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
