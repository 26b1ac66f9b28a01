/**
 * Where a dimension rollup stops paying: distinct values per (metric, hour) against read time (rollup
 * against raw events, same run) and write cost (the aggregator's dimension statement, rows stored).
 *
 *   npm run bench:cardinality
 *   BENCH_CARD_VALUES=10,100,1000 BENCH_CARD_EVENTS_PER_HOUR=1000 npm run bench:cardinality
 *
 * For each value count V of BENCH_CARD_VALUES (default 1,10,50,100,200,400,700,1000), a metric of its
 * own gets BENCH_CARD_EVENTS_PER_HOUR events an hour (default 1000: twice the busiest demo metric's
 * average at 10M events a year) for BENCH_CARD_HOURS hours (default 72, three UTC days), whose key
 * "Card Key" takes exactly min(V, events per hour) distinct values in every hour. The events carry
 * about 700 bytes of other properties (none of them rolled up), as the demo account's do. They go
 * through the real write path (insertEvents: dirty marks, pending rows) and the aggregator
 * (runAggregation), with the cardinality limit lifted. Then, per V:
 *   - read: `count` + `sum_value` by "Card Key", day, over the whole span (the dashboard's question):
 *     the handler's plan from the dimension rollups ('dimension') against the same answer from raw
 *     events (readSeriesFromEvents), p50 over BENCH_RUNS (default 15) samples each; answers compared;
 *   - write: BENCH_NEW_EVENTS (default 2000) more events spread over the span (late events into stored
 *     hours, each with a value of the key), then one aggregator run: the dimension statement's time and
 *     the rows it wrote, against the whole run;
 *   - storage: hourly and daily rollup rows of the key per stored event.
 * It prints the most values per hour at which the rollup still reads PAYING_RATIO times faster than raw
 * events, which ROLLUP_MAX_VALUES_PER_HOUR's default is set from (docs/breakdowns.md says how).
 * The data lives in .data/bench-cardinality (its own server); each run empties it first.
 */
import { join } from 'node:path';
import { planSeries } from '../lib/aggregation/planner';
import { runAggregation } from '../lib/app/aggregation';
import { DEFAULT_ACCOUNT_ID } from '../lib/config';
import { queryMetricAggregates } from '../lib/app/metricAggregates';
import { startEmbeddedPostgres } from '../lib/db/embedded';
import { migrate } from '../lib/db/migrate';
import { createPostgresDb } from '../lib/db/postgres';
import type { Db } from '../lib/db/port';
import { parseMetricAggregateQuery } from '../lib/klaviyo/metricAggregates';
import { setLogLevel } from '../lib/log';
import { markKeysReady, registerKeys } from '../lib/repositories/dimensions';
import { insertEvents, type NewEvent } from '../lib/repositories/events';
import { readSeriesFromEvents } from '../lib/repositories/series';
import { BENCH_SERVER_SETTINGS, BENCH_TUNING, REPO_ROOT } from './support/dataset';
import { intFromEnv } from './support/env';
import { benchCommand, writeBenchResult } from './support/results';

const KEY = 'Card Key';
const ACCOUNT = DEFAULT_ACCOUNT_ID;
const HOURS = intFromEnv('BENCH_CARD_HOURS', 72);
const PER_HOUR = intFromEnv('BENCH_CARD_EVENTS_PER_HOUR', 1000);
const RUNS = intFromEnv('BENCH_RUNS', 15);
const NEW_EVENTS = intFromEnv('BENCH_NEW_EVENTS', 2000);
const VALUES = (process.env.BENCH_CARD_VALUES ?? '1,10,50,100,200,400,700,1000')
  .split(',')
  .map((v) => Number(v.trim()))
  .filter((v) => Number.isInteger(v) && v > 0);
const START = Date.UTC(2025, 5, 1);
const PROFILES = 20_000;
const UNLIMITED = 1_000_000_000;
/**
 * Below this read speed-up a key's rollup is not worth its rows and its share of every aggregator run:
 * the sweep's ratios move by about this much between runs of a shared machine.
 */
const PAYING_RATIO = 3;

/** Properties the demo account's events carry besides the key, about 700 bytes, none rolled up. */
function filler(i: number): Record<string, unknown> {
  return {
    'Bench Subject': `Your weekly picks, part ${i % 97}: new arrivals selected for you`,
    'Bench Preview': 'Take a look at what is new this week in the categories you browsed most recently.',
    'Bench Url': `https://shop.example.com/collections/new?utm_source=klaviyo&utm_medium=email&utm_id=${i % 1013}`,
    'Bench Items': [
      { sku: `SKU-${i % 311}`, name: 'Linen shirt', price: 49.0, quantity: 1 },
      { sku: `SKU-${(i * 7) % 311}`, name: 'Canvas tote', price: 25.5, quantity: 2 },
    ],
    'Bench Client': { name: 'Gmail', type: 'webmail', os: 'iOS', version: '17.4' },
    'Bench Tags': ['weekly', 'recommendations', `segment-${i % 17}`],
    'Bench Send Id': `01HZX${String(i).padStart(12, '0')}`,
    $event_id: `bench-card-${i}`,
  };
}

function event(metricId: string, values: number, hour: number, j: number, id: string, seq: number): NewEvent {
  const at = new Date(START + hour * 3_600_000 + Math.floor((j * 3_600_000) / PER_HOUR)).toISOString();
  const value = (j * 7919 + hour) % values;
  const amount = ((seq * 37) % 10_000) / 100;
  return {
    id,
    timestamp: at,
    metricId,
    profileId: `card-p${(seq * 7) % PROFILES}`,
    value: amount.toFixed(2),
    valueCurrency: null,
    uuid: null,
    uniqueId: id,
    properties: { [KEY]: `value-${value}`, ...filler(seq) },
    rawData: { type: 'event', id, attributes: { datetime: at } },
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? NaN;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await fn();
  return [result, performance.now() - started];
}

async function insertAll(db: Db, events: readonly NewEvent[]): Promise<void> {
  for (let i = 0; i < events.length; i += 2000) await insertEvents(db, ACCOUNT, events.slice(i, i + 2000));
}

async function aggregateAll(db: Db): Promise<{ ms: number; dimensionMs: number; dimensionRows: number }> {
  let ms = 0;
  let dimensionMs = 0;
  let dimensionRows = 0;
  for (;;) {
    const r = await runAggregation(db, ACCOUNT, {
      batchBuckets: 5000,
      timeBudgetMs: 600_000,
      maxValuesPerHour: UNLIMITED,
    });
    ms += r.durationMs;
    dimensionMs += r.dimensionMs;
    dimensionRows += r.dimensionRowsChanged;
    if (r.bucketsWaiting === 0) return { ms, dimensionMs, dimensionRows };
  }
}

interface Point {
  readonly values: number;
  readonly valuesPerHour: number;
  readonly fastP50: number;
  readonly rawP50: number;
  readonly source: string;
  readonly hourlyRows: number;
  readonly dailyRows: number;
  readonly writeMs: number;
  readonly writeDimensionMs: number;
  readonly writeRows: number;
}

async function measure(db: Db, values: number): Promise<Point> {
  const metricId = `card-${values}`;
  await db.query(`INSERT INTO klaviyo_metrics (account_id, id, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [
    ACCOUNT,
    metricId,
    metricId,
  ]);
  const events: NewEvent[] = [];
  for (let h = 0; h < HOURS; h += 1) {
    for (let j = 0; j < PER_HOUR; j += 1) {
      const seq = h * PER_HOUR + j;
      events.push(event(metricId, values, h, j, `${metricId}-${seq}`, seq));
    }
  }
  await insertAll(db, events);
  await aggregateAll(db);
  await db.query('VACUUM ANALYZE klaviyo_events');
  await db.query('VACUUM ANALYZE klaviyo_dimension_rollups');
  await db.query('VACUUM ANALYZE klaviyo_dimension_daily_rollups');
  await db.query('VACUUM ANALYZE klaviyo_aggregate_dirty');

  const from = new Date(START).toISOString().slice(0, 19);
  const to = new Date(START + HOURS * 3_600_000).toISOString().slice(0, 19);
  const body = {
    data: {
      type: 'metric-aggregate',
      attributes: {
        metric_id: metricId,
        measurements: ['count', 'sum_value'],
        interval: 'day',
        timezone: 'UTC',
        by: [KEY],
        filter: [`greater-or-equal(datetime,${from})`, `less-than(datetime,${to})`],
        page_size: 10_000,
      },
    },
  };
  const options = { maxRangeDays: 366, baseUrl: '' };
  const fastTimes: number[] = [];
  const rawTimes: number[] = [];
  let source = '';
  const plan = planSeries(parseMetricAggregateQuery(body, options));
  let fastTotal = 0;
  let rawTotal = 0;
  for (let i = 0; i < RUNS; i += 1) {
    const [outcome, fastMs] = await timed(() => queryMetricAggregates(db, ACCOUNT, body, options));
    fastTimes.push(fastMs);
    source = outcome.servedBy;
    fastTotal = outcome.document.data.attributes.data.reduce(
      (n, r) => n + (r.measurements.count ?? []).reduce((a, b) => a + b, 0),
      0,
    );
    const [raw, rawMs] = await timed(() => readSeriesFromEvents(db, ACCOUNT, plan));
    rawTimes.push(rawMs);
    rawTotal = raw.buckets.reduce((n, b) => n + b.count, 0);
  }
  if (fastTotal !== rawTotal || fastTotal !== events.length) {
    throw new Error(`${metricId}: the rollup's answer (${fastTotal}) differs from raw events (${rawTotal})`);
  }
  const [rows] = await db.query<{ hourly: string; daily: string }>(
    `SELECT (SELECT count(*) FROM klaviyo_dimension_rollups WHERE metric_id = $1 AND dimension = $2)::text AS hourly,
            (SELECT count(*) FROM klaviyo_dimension_daily_rollups WHERE metric_id = $1 AND dimension = $2)::text AS daily`,
    [metricId, KEY],
  );

  // Late events into the stored hours: what the aggregator's run costs for this key.
  const late: NewEvent[] = Array.from({ length: NEW_EVENTS }, (_, i) => {
    const seq = HOURS * PER_HOUR + i;
    const hour = Math.floor((i * HOURS) / NEW_EVENTS);
    return event(metricId, values, hour, (i * 13) % PER_HOUR, `${metricId}-late-${i}`, seq);
  });
  await insertAll(db, late);
  const write = await aggregateAll(db);
  return {
    values,
    valuesPerHour: Math.min(values, PER_HOUR),
    fastP50: median(fastTimes),
    rawP50: median(rawTimes),
    source,
    hourlyRows: Number(rows?.hourly),
    dailyRows: Number(rows?.daily),
    writeMs: write.ms,
    writeDimensionMs: write.dimensionMs,
    writeRows: write.dimensionRows,
  };
}

async function main(): Promise<void> {
  setLogLevel('warn');
  const server = await startEmbeddedPostgres({
    dataDir: join(REPO_ROOT, '.data', 'bench-cardinality'),
    database: 'bench',
    settings: BENCH_SERVER_SETTINGS,
  });
  const db = createPostgresDb({ url: server.url, ...BENCH_TUNING, applicationName: 'bench-cardinality' });
  try {
    await migrate(db);
    await db.query(
      `TRUNCATE klaviyo_events, klaviyo_aggregate_pending, klaviyo_aggregate_dirty, klaviyo_aggregated_metrics,
                klaviyo_profile_hours, klaviyo_dimension_rollups, klaviyo_dimension_daily_rollups,
                klaviyo_dimension_profiles, klaviyo_dimension_fallbacks`,
    );
    await registerKeys(db, 'klaviyo_rollup_dimensions', [KEY]);
    // No event is stored: nothing to backfill.
    await markKeysReady(db, 'klaviyo_rollup_dimensions', [KEY]);
    await db.query(
      `INSERT INTO klaviyo_profiles (account_id, id)
       SELECT $1, 'card-p' || g FROM generate_series(0, $2::integer - 1) g ON CONFLICT DO NOTHING`,
      [ACCOUNT, PROFILES],
    );
    const points: Point[] = [];
    for (const values of VALUES) {
      const point = await measure(db, values);
      points.push(point);
      process.stdout.write(
        `V=${point.values}: fast ${point.fastP50.toFixed(1)} ms (${point.source}), raw ${point.rawP50.toFixed(1)} ms, ` +
          `${(point.rawP50 / point.fastP50).toFixed(1)}x; rows/event ${((point.hourlyRows + point.dailyRows) / (HOURS * PER_HOUR)).toFixed(3)}; ` +
          `late run ${point.writeMs} ms, dimension statement ${point.writeDimensionMs} ms, ${point.writeRows} rows\n`,
      );
    }
    const events = HOURS * PER_HOUR;
    const paying = points.filter((p) => p.rawP50 / p.fastP50 >= PAYING_RATIO);
    const knee = paying.length > 0 ? Math.max(...paying.map((p) => p.valuesPerHour)) : null;
    const kneeLine =
      knee === null
        ? `no swept value count reads at least ${PAYING_RATIO}x faster from the rollup than from raw events`
        : `the most values per hour at which the rollup still reads at least ${PAYING_RATIO}x faster than raw events: ${knee}`;
    process.stdout.write(`${kneeLine}\n`);
    const path = writeBenchResult({
      bench: 'cardinality',
      title: 'Dimension rollups: distinct values per (metric, hour) against read and write cost',
      command: benchCommand('bench/cardinality.ts'),
      reference:
        'the same breakdown computed from raw events alone (readSeriesFromEvents: the SQL alone, where the rollup time is the whole handler, JSON:API document included), same run, same data; for the write cost, the run at 1 value an hour',
      dataset: {
        hours: HOURS,
        events_per_hour: PER_HOUR,
        events_per_metric: events,
        late_events_per_metric: NEW_EVENTS,
        runs: RUNS,
      },
      tables: [
        {
          title: `count + sum_value by the key, day over ${HOURS / 24} days, ${PER_HOUR.toLocaleString('en-US')} events an hour`,
          columns: [
            'values per hour',
            'path',
            'rollup p50 ms',
            'raw p50 ms',
            'raw/rollup',
            'rollup rows per event',
            `aggregator run after ${NEW_EVENTS} late events, ms`,
            'of which dimension statement, ms',
            'dimension rows written',
          ],
          rows: points.map((p) => [
            p.valuesPerHour,
            p.source,
            Number(p.fastP50.toFixed(2)),
            Number(p.rawP50.toFixed(2)),
            Number((p.rawP50 / p.fastP50).toFixed(1)),
            Number(((p.hourlyRows + p.dailyRows) / events).toFixed(3)),
            p.writeMs,
            p.writeDimensionMs,
            p.writeRows,
          ]),
        },
      ],
      notes: [kneeLine],
    });
    process.stdout.write(`figures written to ${path}\n`);
  } finally {
    await db.close();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
