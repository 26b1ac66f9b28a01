import { runScheduledAggregation } from '../lib/app/scheduledAggregation';
import { config } from '../lib/config';
import { closeDb, getDb } from '../lib/db';

/**
 * npm run aggregate: one on-demand run of the incremental aggregator against DATABASE_URL (or
 * DB_HOST...), over every account with work, with the same batch size and time budget as the
 * scheduled function. Prints the result.
 */
async function main(): Promise<void> {
  const { aggregateBatchBuckets, aggregateTimeBudgetMs } = config().limits;
  const result = await runScheduledAggregation(getDb(), {
    remainingMs: undefined,
    marginMs: 0,
    batchBuckets: aggregateBatchBuckets,
    timeBudgetMs: aggregateTimeBudgetMs,
  });
  process.stdout.write(
    (result.status === 'skipped'
      ? 'aggregate: skipped, other runs hold the locks of the accounts with work\n'
      : `aggregate: ${result.bucketsRecomputed} hour buckets recomputed from ${result.eventsScanned} events ` +
        `(${result.rowsChanged} rollup rows changed) in ${result.batches} batches, ${result.durationMs} ms; ` +
        `${result.bucketsWaiting} buckets still waiting, lag ${result.lagSeconds} s\n`) +
      JSON.stringify(result) +
      '\n',
  );
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`aggregate failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => closeDb());
