import { parseArgs } from 'node:util';
import { SingleBar, Presets } from 'cli-progress';
import { backfillDimensions, DEFAULT_REBUILD_CHUNK_HOURS, rebuildAggregates } from '../lib/app/aggregation';
import { ACCOUNT_ID_PATTERN, DEFAULT_ACCOUNT_ID } from '../lib/config';
import { closeDb, getDb } from '../lib/db';

/**
 * npm run backfill -- [--account ID] [--from 2024-01-01] [--to 2024-12-31] [--metric ID] [--chunk-hours 168]
 *
 * Recomputes the hourly rollups of one account (default: the account 'default') over a time range
 * from raw events (all of them without --from/--to),
 * one chunk per transaction, with a progress bar. Dates are UTC; a date without a time in --to means
 * the whole of that day. Safe while ingest and the scheduled aggregator run.
 *
 * npm run backfill -- --dimensions [--chunk-hours 168]
 *
 * Registers the keys of ROLLUP_DIMENSIONS (and of ROLLUP_UNIQUE_DIMENSIONS, whose distinct profiles are
 * rolled up too) and the zones of ROLLUP_DAY_ZONES, and fills the dimension rollups of every registered key
 * and the daily rows of every registered zone that is not ready yet over all stored events of every
 * account (docs/breakdowns.md); readers use them once it ends.
 */
const USAGE =
  'usage: npm run backfill -- [--account ID] [--from YYYY-MM-DD[THH:MM:SSZ]] [--to YYYY-MM-DD[THH:MM:SSZ]] [--metric ID] [--chunk-hours N]\n' +
  '       npm run backfill -- --dimensions [--chunk-hours N]';
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
const DAY_MS = 86_400_000;

class UsageError extends Error {}

function parseInstant(flag: string, text: string | undefined, endOfDay: boolean): Date | undefined {
  if (text === undefined) return undefined;
  const dateOnly = DATE_ONLY.test(text);
  const date = new Date(dateOnly ? `${text}T00:00:00Z` : text);
  if (Number.isNaN(date.getTime())) throw new UsageError(`${flag}: "${text}" is not a date`);
  return dateOnly && endOfDay ? new Date(date.getTime() + DAY_MS) : date;
}

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      account: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      metric: { type: 'string' },
      'chunk-hours': { type: 'string' },
      dimensions: { type: 'boolean' },
    },
    strict: true,
  });
  const from = parseInstant('--from', values.from, false);
  const to = parseInstant('--to', values.to, true);
  if (from && to && to.getTime() <= from.getTime()) throw new UsageError('--to must be after --from');
  const chunkText = values['chunk-hours'];
  const chunkHours = chunkText === undefined ? DEFAULT_REBUILD_CHUNK_HOURS : Number(chunkText);
  if (!Number.isInteger(chunkHours) || chunkHours < 1)
    throw new UsageError('--chunk-hours must be a whole number, at least 1');
  const dimensions = values.dimensions === true;
  if (dimensions && (from || to || values.metric || values.account)) {
    throw new UsageError('--dimensions covers all stored events: it takes no --account, --from, --to or --metric');
  }
  const accountId = values.account ?? DEFAULT_ACCOUNT_ID;
  if (!ACCOUNT_ID_PATTERN.test(accountId)) throw new UsageError(`--account: "${accountId}" is not an account id`);
  return { accountId, from, to, metricId: values.metric, chunkHours, dimensions };
}

async function main(): Promise<void> {
  let options: ReturnType<typeof parseOptions>;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  if (options.dimensions) {
    const result = await backfillDimensions(getDb(), { chunkHours: options.chunkHours });
    const done = [
      ...result.backfilled,
      ...result.backfilledUnique.map((d) => `${d} (unique)`),
      ...result.backfilledZones.map((z) => `days of ${z}`),
    ];
    const registered = [...result.registered, ...result.registeredZones];
    if (result.droppedZones.length > 0) {
      process.stdout.write(
        `backfill: days of ${result.droppedZones.join(', ')} dropped (no longer in ROLLUP_DAY_ZONES)\n`,
      );
    }
    process.stdout.write(
      done.length === 0
        ? `backfill: every registered dimension is ready${registered.length > 0 ? ` (registered ${registered.join(', ')})` : ''}\n`
        : `backfill: dimensions ${done.join(', ')} ready after ${result.chunks} chunks, ` +
            `${result.rowsChanged} rollup rows written, ${result.durationMs} ms\n`,
    );
    return;
  }
  const bar = new SingleBar(
    {
      format:
        'backfill [{bar}] {percentage}% | chunk {value}/{total} | through {through} | {buckets} hours, {events} events | ETA {eta_formatted}',
      // On stderr, and also when it is not a terminal (a long backfill under nohup shows its progress in the log).
      stream: process.stderr,
      noTTYOutput: true,
      notTTYSchedule: 5_000,
    },
    Presets.shades_classic,
  );
  let started = false;
  const { accountId, ...rebuild } = options;
  const result = await rebuildAggregates(getDb(), accountId, {
    ...rebuild,
    onProgress: (p) => {
      if (!started) {
        bar.start(p.chunksTotal, 0, { through: '', buckets: 0, events: 0 });
        started = true;
      }
      bar.update(p.chunksDone, { through: p.to.toISOString(), buckets: p.bucketsRecomputed, events: p.eventsScanned });
    },
  });
  if (started) bar.stop();
  if (result.from === null) {
    process.stdout.write('backfill: no events and no rollups to rebuild\n');
    return;
  }
  process.stdout.write(
    `backfill: ${result.from.toISOString()} .. ${result.to?.toISOString()} in ${result.chunks} chunks: ` +
      `${result.bucketsRecomputed} hour buckets from ${result.eventsScanned} events, ` +
      `${result.rowsWritten} rows written, ${result.rowsDeleted} removed, ${result.marksCleared} dirty marks cleared, ` +
      `${result.durationMs} ms\n`,
  );
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`backfill failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => closeDb());
