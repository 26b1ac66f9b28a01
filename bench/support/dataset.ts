import { join, resolve } from 'node:path';
import { Presets, SingleBar } from 'cli-progress';
import postgres from 'postgres';
import { DEFAULT_ACCOUNT_ID, type PostgresTuning } from '../../lib/config';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../lib/db/embedded';
import { rebuildAggregates, runAggregation } from '../../lib/app/aggregation';
import { databaseMode, migrate } from '../../lib/db/migrate';
import type { ClosableDb, Db } from '../../lib/db/port';
import { createPostgresDb } from '../../lib/db/postgres';
import {
  buildProfileResource,
  DEMO_METRICS,
  generatePages,
  metricResource,
  profileId,
  resolveGeneratorOptions,
  type EventResource,
  type ResolvedGeneratorOptions,
} from '../../lib/demo/generator';
import { eventDefaults, metricUpsertFrom, profileUpsertFrom } from '../../lib/klaviyo/mapping';
import { MetricResourceSchema, ProfileResourceSchema } from '../../lib/klaviyo/schemas';
import { copyIn, copyJson, copyRow, copyText, COPY_NULL } from './copy';

/**
 * The stored dataset that the benches (bench/aggregate.ts, bench/query.ts, ...) run against: a year
 * of a demo account (lib/demo/generator) in an embedded PostgreSQL kept in .data/bench-<name>, or
 * in the database DATABASE_URL names. It is built once and kept: a later run that asks for the same
 * dataset finds it and starts at once.
 *
 * Interface (stable; benches depend on it):
 *   const bench = await openBenchDatabase({ name, events, seed?, profiles?, markDirty?, aggregate?,
 *                                           progress?, reload? });
 *   bench.db (a ClosableDb), bench.url, bench.loaded, bench.setupSeconds, bench.aggregateSeconds,
 *   bench.generator (the resolved generator options); await bench.close() closes the client and
 *   stops the embedded server (SIGINT/SIGTERM stop it too, so no server outlives a bench).
 *
 * What "the same dataset" means: the record in bench_dataset (events, seed, profiles,
 * DATASET_VERSION) matches, and the generator's first page of that stream is stored verbatim, so a
 * generator change reloads even if nobody bumped DATASET_VERSION.
 *
 * Loading maps the generator's pages to rows exactly as ingest does (lib/klaviyo/mapping), and
 * COPYs them in one transaction: the tables are truncated first, so COPY can write frozen rows
 * (no vacuum needed for index-only scans) and, with wal_level=minimal, skip the WAL; the events'
 * indexes and foreign keys are dropped for the load and rebuilt after it, which is several times
 * faster than maintaining them row by row. A failure rolls all of it back. Then (aggregate: true,
 * the default) the hourly rollups are built by the real aggregator (rebuildAggregates), so the
 * dataset is what a fully aggregated production database holds.
 *
 * Build times: scratch/readme/data.md; `BENCH_EVENTS=1000000 npx tsx bench/support/dataset.ts` prints them.
 */

export interface BenchDatasetOptions {
  /** Names the data directory (.data/bench-<name>) and the dataset record. */
  readonly name: string;
  readonly events: number;
  /** Default 1. */
  readonly seed?: number;
  /** Default 200,000. */
  readonly profiles?: number;
  /**
   * Mark every (metric, UTC hour) that has events as dirty, so that the aggregator's first run is a
   * full build (default true). With false the dirty table is left empty and the caller decides.
   */
  readonly markDirty?: boolean;
  /** Show the progress bar and the setup line on stderr (default true). */
  readonly progress?: boolean;
  /** Load again even when the dataset is stored (to time a load). */
  readonly reload?: boolean;
  /**
   * Have exact hourly rollups for every hour and no dirty mark when this resolves (default true):
   * after a load, a full rebuildAggregates; on a stored dataset, a drain of whatever marks an earlier
   * run left (nothing to do when it left none). With false, the rollups and marks are left as they
   * are (after a load: no rollups, and marks as markDirty says).
   */
  readonly aggregate?: boolean;
}

export interface BenchDatabase {
  readonly db: ClosableDb;
  readonly url: string;
  /** Start, migration, and the load if one was needed. */
  readonly setupSeconds: number;
  /** Whether this run loaded the dataset (false: it was there already). */
  readonly loaded: boolean;
  /** Seconds this run spent aggregating (0 when the stored rollups were clean). */
  readonly aggregateSeconds: number;
  readonly generator: ResolvedGeneratorOptions;
  /** Closes the client and stops the embedded server, if one was started. */
  close(): Promise<void>;
}

/** Bump when the generator's output changes, so that stored datasets are reloaded. */
export const DATASET_VERSION = 2;

/**
 * A bench's server: memory for a 10M-event table and its indexes, no durability waits.
 * BENCH_SHARED_BUFFERS (default 1GB, e.g. 6GB) sizes the buffer pool: at 10M events the indexes the
 * aggregator and the queries touch do not fit in 1 GB.
 */
export const BENCH_SERVER_SETTINGS: Readonly<Record<string, string>> = {
  shared_buffers: sharedBuffersFromEnv(),
  work_mem: '64MB',
  maintenance_work_mem: '1GB',
  max_wal_size: '4GB',
  synchronous_commit: 'off',
  // COPY into a table truncated in the same transaction writes no WAL at this level.
  wal_level: 'minimal',
  max_wal_senders: '0',
};

function sharedBuffersFromEnv(): string {
  const raw = process.env.BENCH_SHARED_BUFFERS;
  if (raw === undefined || raw === '') return '1GB';
  if (!/^[1-9][0-9]*(MB|GB)$/.test(raw))
    throw new Error(`BENCH_SHARED_BUFFERS must look like 512MB or 6GB, not "${raw}"`);
  return raw;
}

const BENCH_TUNING: PostgresTuning = {
  ssl: 'disable',
  poolMax: 4,
  idleTimeoutSeconds: 0,
  connectTimeoutSeconds: 30,
  statementTimeoutMs: 0,
  prepare: true,
};

const REPO_ROOT = resolve(__dirname, '..', '..');

interface DatasetRecord extends Record<string, unknown> {
  events: string;
  seed: number;
  profiles: number;
  version: number;
}

async function recordedDataset(db: ClosableDb, name: string): Promise<DatasetRecord | undefined> {
  await db.query(
    `CREATE TABLE IF NOT EXISTS bench_dataset (
       name        text PRIMARY KEY,
       events      bigint NOT NULL,
       seed        integer NOT NULL,
       profiles    integer NOT NULL,
       version     integer NOT NULL,
       load_seconds double precision NOT NULL,
       loaded_at   timestamptz NOT NULL DEFAULT now()
     )`,
  );
  const rows = await db.query<DatasetRecord>(
    'SELECT events, seed, profiles, version FROM bench_dataset WHERE name = $1',
    [name],
  );
  return rows[0];
}

function say(enabled: boolean, line: string): void {
  if (enabled) process.stderr.write(line + '\n');
}

/**
 * Opens (and if needed loads) a bench database. Stop it with close(); SIGINT and SIGTERM stop it too,
 * so no server outlives the bench.
 */
export async function openBenchDatabase(options: BenchDatasetOptions): Promise<BenchDatabase> {
  const started = performance.now();
  const show = options.progress ?? true;
  const generator = resolveGeneratorOptions({ events: options.events, seed: options.seed, profiles: options.profiles });
  if (!/^[a-z0-9][a-z0-9_-]*$/i.test(options.name))
    throw new Error(`bench dataset name "${options.name}" must be letters, digits, - or _`);

  let server: EmbeddedServer | undefined;
  let url = process.env.DATABASE_URL;
  if (!url) {
    const dataDir = join(REPO_ROOT, '.data', `bench-${options.name}`);
    server = await startEmbeddedPostgres({ dataDir, database: 'bench', settings: BENCH_SERVER_SETTINGS });
    url = server.url;
  }
  const stopServer = async () => {
    const s = server;
    server = undefined;
    await s?.stop();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping the bench database\n`);
    // Connections die under running statements as the server stops; postgres.js then throws from a
    // timer (porsager/postgres#1208). The process is exiting anyway: a stack trace would only hide
    // the line above.
    process.on('uncaughtException', () => undefined);
    void stopServer().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const removeSignalHandlers = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };

  const db = createPostgresDb({ url, ...BENCH_TUNING, applicationName: `bench-${options.name}` });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      await db.close();
    } finally {
      await stopServer();
      removeSignalHandlers();
    }
  };

  try {
    await migrate(db);
    const record = await recordedDataset(db, options.name);
    const wanted = {
      events: generator.events,
      seed: generator.seed,
      profiles: generator.profiles,
      version: DATASET_VERSION,
    };
    const matches =
      options.reload !== true &&
      record !== undefined &&
      Number(record.events) === wanted.events &&
      record.seed === wanted.seed &&
      record.profiles === wanted.profiles &&
      record.version === wanted.version &&
      (await storedMatchesGenerator(db, generator));
    let loaded = false;
    if (!matches) {
      if (server === undefined) await refuseToWipeForeignData(db);
      say(
        show,
        `bench-${options.name}: loading ${generator.events.toLocaleString('en-US')} events (seed ${generator.seed}, ${generator.profiles.toLocaleString('en-US')} profiles)...`,
      );
      const loadStarted = performance.now();
      await loadDataset(url, db, options.name, generator, options.markDirty ?? true, show);
      loaded = true;
      say(show, `bench-${options.name}: loaded in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s`);
    }
    let aggregateSeconds = 0;
    if (options.aggregate ?? true) aggregateSeconds = await aggregateDataset(db, options.name, loaded, show);
    const setupSeconds = (performance.now() - started) / 1000;
    say(
      show,
      `bench-${options.name}: ${loaded ? 'set up' : 'dataset already stored; ready'} in ${setupSeconds.toFixed(1)} s`,
    );
    return { db, url, setupSeconds, loaded, aggregateSeconds, generator, close };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}

/**
 * Whether the stored rows are what the generator makes today: the first page of the same stream,
 * compared whole (raw_data) with the stored events. A generator change that DATASET_VERSION missed
 * shows there (every metric's properties appear in a page), and triggers a reload instead of a bench
 * measuring data that no longer matches the code.
 */
async function storedMatchesGenerator(db: ClosableDb, generator: ResolvedGeneratorOptions): Promise<boolean> {
  const first = generatePages(generator).next();
  if (first.done === true) return true;
  const rows = await db.query<{ same: string }>(
    `SELECT count(*) AS same
       FROM jsonb_array_elements($1::jsonb) AS page(event)
       JOIN klaviyo_events e ON e.account_id = $2 AND e.id = page.event->>'id' AND e.raw_data = page.event`,
    [JSON.stringify(first.value.data), BENCH_ACCOUNT],
  );
  return Number(rows[0]?.same) === first.value.data.length;
}

/** Rollups for the whole dataset: a full rebuild after a load, else a drain of leftover marks. */
async function aggregateDataset(db: ClosableDb, name: string, fullRebuild: boolean, show: boolean): Promise<number> {
  const started = performance.now();
  if (fullRebuild) {
    say(show, `bench-${name}: building the hourly rollups...`);
    const result = await rebuildAggregates(db, BENCH_ACCOUNT, {
      chunkHours: 31 * 24,
      onProgress: (p) =>
        say(
          show,
          `  rollups: chunk ${p.chunksDone}/${p.chunksTotal}, ${p.eventsScanned.toLocaleString('en-US')} events scanned`,
        ),
    });
    // The load's marks outside the events' span (none, normally) are cleared by the drain below.
    say(show, `bench-${name}: ${result.bucketsRecomputed.toLocaleString('en-US')} hour buckets rolled up`);
  }
  for (;;) {
    const waiting = await db.query<{ n: string }>(
      'SELECT count(*) AS n FROM klaviyo_aggregate_dirty WHERE account_id = $1',
      [BENCH_ACCOUNT],
    );
    if (Number(waiting[0]?.n) === 0) break;
    const run = await runAggregation(db, BENCH_ACCOUNT, { batchBuckets: 5000, timeBudgetMs: 600_000 });
    if (run.bucketsRecomputed === 0) {
      throw new Error(
        `bench-${name}: dirty marks remain but the aggregator took none (another aggregator holding them?)`,
      );
    }
  }
  const seconds = (performance.now() - started) / 1000;
  if (fullRebuild || seconds > 0.5) {
    await db.query('VACUUM ANALYZE klaviyo_aggregated_metrics');
    await db.query('VACUUM ANALYZE klaviyo_aggregate_dirty');
    say(show, `bench-${name}: aggregated in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  return (performance.now() - started) / 1000;
}

/** With DATABASE_URL, replacing the data is only safe in a database that holds a bench dataset or nothing. */
async function refuseToWipeForeignData(db: ClosableDb): Promise<void> {
  const rows = await db.query<{ datasets: string; has_events: boolean }>(
    `SELECT (SELECT count(*) FROM bench_dataset) AS datasets, EXISTS (SELECT 1 FROM klaviyo_events) AS has_events`,
  );
  const row = rows[0];
  if (row && Number(row.datasets) === 0 && row.has_events) {
    throw new Error(
      'DATABASE_URL names a database with events that no bench loaded; a bench would replace them. ' +
        'Point DATABASE_URL at an empty database, or unset it to use an embedded server.',
    );
  }
}

interface IndexDefinition extends Record<string, unknown> {
  kind: 'constraint' | 'index';
  table_name: string;
  name: string;
  definition: string;
  contype: string | null;
}

/** The events table's indexes and constraints, with everything needed to drop and recreate them. */
async function eventIndexes(tx: postgres.TransactionSql): Promise<IndexDefinition[]> {
  return tx.unsafe<IndexDefinition[]>(
    `SELECT 'constraint' AS kind, c.conrelid::regclass::text AS table_name, c.conname AS name,
            pg_get_constraintdef(c.oid) AS definition, c.contype::text AS contype
       FROM pg_constraint c
      WHERE (c.conrelid = 'klaviyo_events'::regclass OR c.confrelid = 'klaviyo_events'::regclass)
        AND c.contype IN ('p', 'u', 'f')
     UNION ALL
     SELECT 'index', 'klaviyo_events', i.relname, pg_get_indexdef(i.oid), NULL
       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
      WHERE x.indrelid = 'klaviyo_events'::regclass
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.conrelid = x.indrelid)`,
  );
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The account the benches' dataset is loaded into and measured in. */
export const BENCH_ACCOUNT = DEFAULT_ACCOUNT_ID;

const EVENT_COLUMNS =
  'account_id, id, "timestamp", metric_id, profile_id, value, value_currency, uuid, unique_id, properties, raw_data';
const PROFILE_COLUMNS =
  'account_id, id, email, phone_number, external_id, anonymous_id, first_name, last_name, organization, locale, ' +
  'title, image, location, properties, created, updated, last_event_date, raw_data, is_stub';
const METRIC_COLUMNS = 'account_id, id, name, integration, created, updated, raw_data, is_stub';

/** The row ingest would write for this event (lib/app/ingest/eventsPage.ts), in COPY text format. */
function eventRow(event: EventResource): string {
  const properties = event.attributes.event_properties;
  const defaults = eventDefaults(properties);
  return copyRow([
    copyText(BENCH_ACCOUNT),
    copyText(event.id),
    event.attributes.datetime,
    copyText(event.relationships.metric.data.id),
    copyText(event.relationships.profile.data.id),
    defaults.value ?? COPY_NULL,
    copyText(defaults.valueCurrency),
    copyText(event.attributes.uuid),
    copyText(defaults.uniqueId),
    copyJson(properties),
    copyJson(event),
  ]);
}

async function loadDataset(
  url: string,
  db: ClosableDb,
  name: string,
  generator: ResolvedGeneratorOptions,
  markDirty: boolean,
  show: boolean,
): Promise<void> {
  const mode = await databaseMode(db);
  // Hypertables take neither COPY FREEZE nor dropped indexes (each chunk has its own).
  const plainTables = mode === 'postgres';
  const loader = postgres(url, {
    max: 1,
    onnotice: () => undefined,
    connection: { application_name: `bench-${name}-load` },
  });
  const watch = postgres(url, { max: 1, onnotice: () => undefined });
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format: '  {phase} {bar} {percentage}% | {value}/{total} | {rate} events/s | ETA {eta_formatted}',
      noTTYOutput: true,
      notTTYSchedule: 10_000,
      hideCursor: true,
      etaBuffer: 50,
    },
    Presets.shades_classic,
  );
  const started = performance.now();
  try {
    await loader.begin(async (tx) => {
      await tx.unsafe(`SET LOCAL maintenance_work_mem = '1GB'`);
      await tx.unsafe(`SET LOCAL synchronous_commit = off`);
      await tx.unsafe(
        'TRUNCATE klaviyo_events, klaviyo_profiles, klaviyo_metrics, klaviyo_aggregated_metrics, klaviyo_profile_hours, klaviyo_aggregate_dirty, klaviyo_aggregate_pending CASCADE',
      );
      await tx.unsafe('DELETE FROM bench_dataset');

      const indexes = plainTables ? await eventIndexes(tx) : [];
      const foreignKeys = indexes.filter((i) => i.contype === 'f');
      const keys = indexes.filter((i) => i.contype === 'p' || i.contype === 'u');
      const plainIndexes = indexes.filter((i) => i.kind === 'index');
      for (const fk of foreignKeys)
        await tx.unsafe(`ALTER TABLE ${fk.table_name} DROP CONSTRAINT ${quoteIdent(fk.name)}`);
      for (const key of keys) await tx.unsafe(`ALTER TABLE ${key.table_name} DROP CONSTRAINT ${quoteIdent(key.name)}`);
      for (const index of plainIndexes) await tx.unsafe(`DROP INDEX ${quoteIdent(index.name)}`);

      const freeze = plainTables ? ' WITH (FREEZE)' : '';
      const lastEventOfProfile = new Map<string, string>();
      const metricsSeen = new Set<string>();
      const dirtyHours = new Map<string, Set<number>>();
      if (show) bar.start(generator.events, 0, { phase: 'events  ', rate: '0' });
      let done = 0;
      function* eventChunks(): Generator<string> {
        for (const page of generatePages(generator)) {
          let chunk = '';
          for (const event of page.data) {
            chunk += eventRow(event);
            const metricId = event.relationships.metric.data.id;
            const profile = event.relationships.profile.data.id;
            metricsSeen.add(metricId);
            // ISO text with one offset compares like time.
            const last = lastEventOfProfile.get(profile);
            if (last === undefined || event.attributes.datetime > last)
              lastEventOfProfile.set(profile, event.attributes.datetime);
            if (markDirty) {
              let hours = dirtyHours.get(metricId);
              if (!hours) dirtyHours.set(metricId, (hours = new Set<number>()));
              hours.add(Math.floor(event.attributes.timestamp / 3600));
            }
          }
          done += page.data.length;
          if (show)
            bar.update(done, {
              rate: Math.round(done / ((performance.now() - started) / 1000)).toLocaleString('en-US'),
            });
          yield chunk;
        }
      }
      await copyIn(tx, watch, `COPY klaviyo_events (${EVENT_COLUMNS}) FROM STDIN${freeze}`, eventChunks());
      if (show) bar.stop();

      say(show, `  metrics and ${lastEventOfProfile.size.toLocaleString('en-US')} profiles...`);
      await copyIn(
        tx,
        watch,
        `COPY klaviyo_metrics (${METRIC_COLUMNS}) FROM STDIN${freeze}`,
        metricChunks(generator, metricsSeen),
      );
      await copyIn(
        tx,
        watch,
        `COPY klaviyo_profiles (${PROFILE_COLUMNS}) FROM STDIN${freeze}`,
        profileChunks(generator, lastEventOfProfile),
      );
      if (markDirty) {
        await copyIn(
          tx,
          watch,
          'COPY klaviyo_aggregate_dirty (account_id, metric_id, bucket) FROM STDIN',
          dirtyChunks(dirtyHours),
        );
      }

      for (const key of keys) {
        say(show, `  rebuilding ${key.name}...`);
        await tx.unsafe(`ALTER TABLE ${key.table_name} ADD CONSTRAINT ${quoteIdent(key.name)} ${key.definition}`);
      }
      for (const index of plainIndexes) {
        say(show, `  rebuilding ${index.name}...`);
        await tx.unsafe(index.definition);
      }
      for (const fk of foreignKeys) {
        say(show, `  checking ${fk.name}...`);
        await tx.unsafe(`ALTER TABLE ${fk.table_name} ADD CONSTRAINT ${quoteIdent(fk.name)} ${fk.definition}`);
      }
      await tx.unsafe(
        `INSERT INTO bench_dataset (name, events, seed, profiles, version, load_seconds) VALUES ($1, $2, $3, $4, $5, $6)`,
        [
          name,
          generator.events,
          generator.seed,
          generator.profiles,
          DATASET_VERSION,
          (performance.now() - started) / 1000,
        ],
      );
    });
    say(show, '  analyzing...');
    await db.query(
      plainTables
        ? 'ANALYZE klaviyo_events, klaviyo_profiles, klaviyo_metrics, klaviyo_aggregate_dirty'
        : 'VACUUM (ANALYZE) klaviyo_events',
    );
  } finally {
    bar.stop();
    await Promise.all([loader.end({ timeout: 5 }), watch.end({ timeout: 5 })]);
  }
}

function* metricChunks(generator: ResolvedGeneratorOptions, seen: ReadonlySet<string>): Generator<string> {
  for (const metric of DEMO_METRICS) {
    if (!seen.has(metric.id)) continue;
    const parsed = MetricResourceSchema.parse(metricResource(metric, generator.links));
    const row = metricUpsertFrom(parsed, parsed);
    if (row.isStub) continue;
    yield copyRow([
      copyText(BENCH_ACCOUNT),
      copyText(row.id),
      copyText(row.name),
      copyJson(row.integration),
      copyText(row.created),
      copyText(row.updated),
      copyJson(row.rawData),
      'f',
    ]);
  }
}

/** Profiles rebuilt from their index (the generator is deterministic): the pages' included copies need not be kept. */
function* profileChunks(
  generator: ResolvedGeneratorOptions,
  lastEventOf: ReadonlyMap<string, string>,
): Generator<string> {
  const options = { seed: generator.seed, start: generator.start, links: generator.links };
  let chunk = '';
  for (let index = 0; index < generator.profiles; index += 1) {
    const id = profileId(index, options);
    const lastEvent = lastEventOf.get(id);
    if (lastEvent === undefined) continue;
    const resource = buildProfileResource(index, options);
    const parsed = ProfileResourceSchema.parse(resource);
    const row = profileUpsertFrom(parsed, parsed);
    if (row.isStub) continue;
    chunk += copyRow([
      copyText(BENCH_ACCOUNT),
      copyText(row.id),
      copyText(row.email),
      copyText(row.phone_number),
      copyText(row.external_id),
      copyText(row.anonymous_id),
      copyText(row.first_name),
      copyText(row.last_name),
      copyText(row.organization),
      copyText(row.locale),
      copyText(row.title),
      copyText(row.image),
      copyJson(row.location),
      copyJson(row.properties),
      copyText(row.created),
      copyText(row.updated),
      copyText(row.lastEventDate),
      copyJson(row.rawData),
      'f',
    ]);
    if (chunk.length > 1_000_000) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk.length > 0) yield chunk;
}

function* dirtyChunks(hoursOf: ReadonlyMap<string, ReadonlySet<number>>): Generator<string> {
  for (const [metricId, hours] of hoursOf) {
    let chunk = '';
    for (const hour of hours)
      chunk += `${copyText(BENCH_ACCOUNT)}\t${copyText(metricId)}\t${new Date(hour * 3_600_000).toISOString()}\n`;
    yield chunk;
  }
}

/**
 * `npx tsx bench/support/dataset.ts` loads (or finds) a dataset and reports how long it took:
 * BENCH_EVENTS (default 1,000,000), BENCH_SEED (1), BENCH_PROFILES (200,000), BENCH_DATASET (name,
 * default "dataset"). BENCH_RELOAD=1 forgets the stored dataset first, to time a load again.
 */
async function main(): Promise<void> {
  const int = (name: string, fallback: number) => {
    const raw = process.env[name];
    const n = raw === undefined || raw === '' ? fallback : Number(raw);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive whole number, not "${raw}"`);
    return n;
  };
  const name = process.env.BENCH_DATASET || 'dataset';
  const events = int('BENCH_EVENTS', 1_000_000);
  const bench = await openBenchDatabase({
    name,
    events,
    seed: int('BENCH_SEED', 1),
    profiles: int('BENCH_PROFILES', 200_000),
    reload: process.env.BENCH_RELOAD === '1',
  });
  try {
    const [counts] = await bench.db.query<{
      events: string;
      profiles: string;
      metrics: string;
      dirty: string;
      size: string;
    }>(
      `SELECT (SELECT count(*) FROM klaviyo_events) AS events, (SELECT count(*) FROM klaviyo_profiles) AS profiles,
              (SELECT count(*) FROM klaviyo_metrics) AS metrics, (SELECT count(*) FROM klaviyo_aggregate_dirty) AS dirty,
              pg_size_pretty(pg_database_size(current_database())) AS size`,
    );
    process.stdout.write(
      `${bench.loaded ? 'loaded' : 'found'} ${Number(counts?.events).toLocaleString('en-US')} events, ` +
        `${Number(counts?.profiles).toLocaleString('en-US')} profiles, ${counts?.metrics} metrics, ` +
        `${Number(counts?.dirty).toLocaleString('en-US')} dirty hours; database ${counts?.size}; ` +
        `setup ${bench.setupSeconds.toFixed(1)} s (aggregation ${bench.aggregateSeconds.toFixed(1)} s)` +
        (bench.loaded ? ` (${Math.round(events / bench.setupSeconds).toLocaleString('en-US')} events/s overall)` : '') +
        '\n',
    );
  } finally {
    await bench.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`dataset failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  });
}

/**
 * Deletes the events a bench added (ids starting with `idPrefix`) with their pending rows (an aggregate
 * run would otherwise add events that no longer exist), and marks their hours dirty: the next run
 * recounts those hours from raw events and makes the rollups exact again. Returns how many went.
 */
export async function removeBenchEvents(db: Db, idPrefix: string, accountId = BENCH_ACCOUNT): Promise<number> {
  const rows = await db.query<{ removed: string }>(
    `WITH removed AS (
       DELETE FROM klaviyo_events WHERE account_id = $2 AND id LIKE $1 RETURNING id, metric_id, "timestamp"
     ), unpended AS (
       DELETE FROM klaviyo_aggregate_pending p
       USING removed r
       WHERE p.account_id = $2 AND p.metric_id = r.metric_id AND p.bucket = date_trunc('hour', r."timestamp", 'UTC')
         AND p.event_id = r.id AND p."timestamp" = r."timestamp"
       RETURNING 1
     ), marked AS (
       INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket)
       SELECT DISTINCT $2::text, metric_id, date_trunc('hour', "timestamp", 'UTC') FROM removed
       ON CONFLICT DO NOTHING
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM removed) AS removed, (SELECT count(*) FROM unpended) AS unpended, (SELECT count(*) FROM marked) AS marked`,
    [`${idPrefix}%`, accountId],
  );
  return Number(rows[0]?.removed ?? 0);
}
