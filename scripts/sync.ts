import { join, resolve } from 'node:path';
import { Presets, SingleBar } from 'cli-progress';
import { config } from '../lib/config';
import { createDb } from '../lib/db';
import { startEmbeddedPostgres, type EmbeddedServer } from '../lib/db/embedded';
import { migrate } from '../lib/db/migrate';
import type { ClosableDb } from '../lib/db/port';
import { log } from '../lib/log';
import { klaviyoApiKey } from '../lib/sync/apiKey';
import { systemClock } from '../lib/sync/clock';
import { KlaviyoClient } from '../lib/sync/klaviyoClient';
import { runSync, syncLogFields, type SyncRunResult } from '../lib/app/sync';

/**
 * npm run sync: the scheduled function's code, run after run until the account is caught up, with a
 * progress bar for the first backfill. Environment: KLAVIYO_API_KEY (required, never printed),
 * KLAVIYO_BASE_URL (default https://a.klaviyo.com; `npm run fake-klaviyo` prints its own), the
 * SYNC_* settings (docs/sync.md), and the database settings of the other commands: DATABASE_URL (or
 * DB_HOST...), else the embedded PostgreSQL of `npm start` (.data/dev-pg; START_DATA_DIR). The
 * database is migrated first.
 *
 * Exit codes: 0 caught up; 1 a run failed (the error is printed); 2 bad usage or configuration;
 * 3 another run holds the account's lease; 130 stopped by Ctrl-C (at a checkpoint).
 */
const ROOT = resolve(__dirname, '..');
const out = (line = '') => process.stdout.write(line + '\n');
const n = (v: number) => v.toLocaleString('en-US');

function usesConfiguredDatabase(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env.DATABASE_URL?.trim() || env.DB_HOST?.trim() || env.DB_DRIVER === 'data-api');
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    out('Usage: KLAVIYO_API_KEY=pk_... npm run sync');
    out('Pulls the Klaviyo account into the database until caught up (see docs/sync.md).');
    return 0;
  }
  if (!process.env.KLAVIYO_API_KEY?.trim()) {
    process.stderr.write('KLAVIYO_API_KEY is not set: export a Klaviyo private key (pk_...) first.\n');
    return 2;
  }
  let server: EmbeddedServer | undefined;
  let db: ClosableDb | undefined;
  const stop = new AbortController();
  const onSigint = () => {
    if (stop.signal.aborted) process.exit(130);
    process.stderr.write('\nStopping at the next checkpoint (Ctrl-C again to quit at once)...\n');
    stop.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    if (!usesConfiguredDatabase(process.env)) {
      const dataDir = resolve(ROOT, process.env.START_DATA_DIR?.trim() || join('.data', 'dev-pg'));
      server = await startEmbeddedPostgres({ dataDir, database: 'klaviyo' });
      process.env.DATABASE_URL = server.url;
      out(`Database: embedded PostgreSQL in ${dataDir.replace(ROOT + '/', '')} on port ${server.port}.`);
    }
    const cfg = config();
    db = createDb(cfg.db, cfg.logSql);
    const migrated = await migrate(db);
    out(`Migrations: ${migrated.applied.length} applied, ${migrated.alreadyApplied} already there.`);
    const settings = cfg.sync;
    const client = new KlaviyoClient({
      baseUrl: settings.baseUrl,
      apiKey: await klaviyoApiKey(settings),
      clock: systemClock,
      rateShare: settings.rateShare,
    });
    out(`Klaviyo: ${settings.baseUrl}, ${Math.round(settings.rateShare * 100)} % of the account's steady limits.`);

    const totals = { metrics: 0, profiles: 0, events: 0 };
    for (let run = 1; ; run += 1) {
      const bar = new SingleBar(
        {
          format: 'Backfill [{bar}] {percentage}% | {events} events pulled | {duration_formatted}',
          hideCursor: true,
          stream: process.stderr,
        },
        Presets.shades_classic,
      );
      let barStarted = false;
      let result: SyncRunResult;
      try {
        result = await runSync(db, client, {
          ...settings,
          clock: systemClock,
          signal: stop.signal,
          onProgress: (p) => {
            if (p.phase !== 'backfill' || p.backfillDone === undefined) return;
            const value = Math.round(p.backfillDone * 1000);
            if (!barStarted) {
              bar.start(1000, value, { events: n(totals.events + p.rowsPulled) });
              barStarted = true;
            } else bar.update(value, { events: n(totals.events + p.rowsPulled) });
          },
        });
      } finally {
        if (barStarted) bar.stop();
      }
      log.info('sync run', { function: 'sync-cli', run, ...syncLogFields(result) });
      for (const stream of ['metrics', 'profiles', 'events'] as const)
        totals[stream] += result.streams[stream].rows_pulled;
      const e = result.streams.events;
      out(
        `Run ${run}: ${result.status}; pulled ${n(result.streams.metrics.rows_pulled)} metrics, ` +
          `${n(result.streams.profiles.rows_pulled)} profiles, ${n(e.rows_pulled)} events (${n(e.inserted)} new), ` +
          `${n(e.rejects + result.streams.profiles.rejects + result.streams.metrics.rejects)} set aside; ` +
          `${n(result.requests)} requests, ${n(result.throttled)} throttled; events cursor ${e.cursor ?? '-'}.`,
      );
      if (result.status === 'skipped') {
        process.stderr.write("Another sync run holds this account's lease; try again when it has finished.\n");
        return 3;
      }
      if (result.status === 'error') {
        for (const [stream, s] of Object.entries(result.streams)) {
          if (s.error) process.stderr.write(`${stream}: ${s.error}\n`);
        }
        return 1;
      }
      if (stop.signal.aborted) return 130;
      if (result.caughtUp) {
        out(
          `Caught up: ${n(totals.events)} events, ${n(totals.profiles)} profiles and ${n(totals.metrics)} metrics pulled in all. ` +
            'GET /api/sync-status shows the same figures.',
        );
        return 0;
      }
    }
  } finally {
    process.off('SIGINT', onSigint);
    await db?.close();
    await server?.stop();
  }
}

main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  })
  .catch((err: unknown) => {
    // Messages only: a stack or an object dump could carry request headers.
    process.stderr.write(`sync failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof Error && err.name === 'ConfigError' ? 2 : 1;
  });
