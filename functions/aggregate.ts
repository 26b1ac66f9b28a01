import type { Context, ScheduledEvent } from 'aws-lambda';
import { z } from 'zod';
import {
  lagAfterFailure,
  runScheduledAggregation,
  type ScheduledAggregationResult,
} from '../lib/app/scheduledAggregation';
import { config } from '../lib/config';
import { getDb } from '../lib/db';
import { errorCode } from '../lib/db/errors';
import { log } from '../lib/log';

/**
 * The scheduled aggregator (EventBridge; also `osls invoke local -f aggregate`). It never throws to
 * the runtime: a failed run is logged and reported in the result, and whatever it had not committed
 * is still marked dirty for the next run, so a retry by Lambda would only repeat the same work.
 */
const ScheduledEventSchema = z.looseObject({ id: z.string().optional() }).optional().catch(undefined);
// With AGGREGATE_RUNS above 1, each schedule rule's input names its run: {"run": 0}, {"run": 1}, ...
const RunInputSchema = z.object({ run: z.number().int().nonnegative() }).optional().catch(undefined);

export type AggregateRunResult =
  | (ScheduledAggregationResult & { readonly scheduledEventId?: string })
  | {
      readonly status: 'error';
      readonly scheduledEventId?: string;
      readonly durationMs: number;
      readonly error: { readonly name: string; readonly code?: string };
    };

export async function handler(
  event?: Partial<ScheduledEvent> | null,
  context?: Partial<Context>,
): Promise<AggregateRunResult> {
  const started = performance.now();
  const scheduledEventId = ScheduledEventSchema.parse(event ?? undefined)?.id;
  const runIndex = RunInputSchema.parse(event ?? undefined)?.run ?? 0;
  let marginMs = 1_000;
  try {
    const cfg = config();
    marginMs = cfg.responseMarginMs;
    const limits = cfg.limits;
    const result = await runScheduledAggregation(getDb(), {
      remainingMs: remainingMsOf(context),
      marginMs,
      batchBuckets: limits.aggregateBatchBuckets,
      timeBudgetMs: limits.aggregateTimeBudgetMs,
      // An index past the configured runs (a rule left from a larger setting) runs run 0's share
      // again: safe, as runs meet only on the accounts' locks.
      run: { index: runIndex < limits.aggregateRuns ? runIndex : 0, of: limits.aggregateRuns },
    });
    log.info(
      result.status === 'skipped'
        ? 'aggregate run skipped: another run holds the aggregation lock'
        : 'aggregate run done',
      { function: 'aggregate', scheduledEventId, run: runIndex, ...result },
    );
    return { ...result, scheduledEventId };
  } catch (err) {
    const durationMs = Math.round(performance.now() - started);
    const code = errorCode(err);
    const lagSeconds = await lagAfterFailure(getDb, err, remainingMsOf(context), marginMs);
    log.error('aggregate run failed', {
      function: 'aggregate',
      scheduledEventId,
      status: 'error',
      durationMs,
      lagSeconds,
      error: err,
    });
    const name = err instanceof Error ? err.name : 'Error';
    return { status: 'error', scheduledEventId, durationMs, error: { name, ...(code ? { code } : {}) } };
  }
}

function remainingMsOf(context: Partial<Context> | undefined): number | undefined {
  return typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : undefined;
}
