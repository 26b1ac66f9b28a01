import type { Context, ScheduledEvent } from 'aws-lambda';
import { z } from 'zod';
import { runAggregation, type AggregationResult } from '../lib/aggregation/rollup';
import { config } from '../lib/config';
import { getDb } from '../lib/db';
import { deadlineFrom, TimeBudgetError, timeLeftMs, withDeadline } from '../lib/db/budget';
import { errorCode, isTransientDbError } from '../lib/db/errors';
import { log } from '../lib/log';
import { dirtyBacklog } from '../lib/repositories/aggregates';

/**
 * The scheduled aggregator (EventBridge; also `osls invoke local -f aggregate`). It never throws to
 * the runtime: a failed run is logged and reported in the result, and whatever it had not committed
 * is still marked dirty for the next run, so a retry by Lambda would only repeat the same work.
 */
const ScheduledEventSchema = z.looseObject({ id: z.string().optional() }).optional().catch(undefined);

export type AggregateRunResult =
  | (AggregationResult & { readonly scheduledEventId?: string })
  | {
      readonly status: 'error';
      readonly scheduledEventId?: string;
      readonly durationMs: number;
      readonly error: { readonly name: string; readonly code?: string };
    };

// The last batch and the log line must fit in what is left of the Lambda's time.
const SAFETY_MARGIN_MS = 10_000;

export async function handler(
  event?: Partial<ScheduledEvent> | null,
  context?: Partial<Context>,
): Promise<AggregateRunResult> {
  const started = performance.now();
  const scheduledEventId = ScheduledEventSchema.parse(event ?? undefined)?.id;
  let marginMs = 1_000;
  try {
    const cfg = config();
    marginMs = cfg.responseMarginMs;
    const limits = cfg.limits;
    const remaining =
      typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : undefined;
    // Every database wait ends at the deadline (lib/db/budget.ts); the batches stop earlier, at the
    // time budget, so that the last one commits.
    const deadline = deadlineFrom(remaining, marginMs);
    const timeBudgetMs = Math.max(
      1,
      Math.min(limits.aggregateTimeBudgetMs, (remaining ?? Infinity) - SAFETY_MARGIN_MS),
    );
    const result = await withDeadline(deadline, () =>
      runAggregation(getDb(), { batchBuckets: limits.aggregateBatchBuckets, timeBudgetMs }),
    );
    log.info(
      result.status === 'skipped'
        ? 'aggregate run skipped: another run holds the aggregation lock'
        : 'aggregate run done',
      { function: 'aggregate', scheduledEventId, ...result },
    );
    return { ...result, scheduledEventId };
  } catch (err) {
    const durationMs = Math.round(performance.now() - started);
    const code = errorCode(err);
    // The lag is still worth reporting when the run failed, unless the database itself is the
    // failure (or the time is spent): a second call would wait for the same silent server.
    const lagSeconds =
      isTransientDbError(err) || err instanceof TimeBudgetError ? null : await lagAfterFailure(context, marginMs);
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

async function lagAfterFailure(context: Partial<Context> | undefined, marginMs: number): Promise<number | null> {
  const remaining =
    typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : undefined;
  const deadline = deadlineFrom(remaining, marginMs);
  try {
    return await withDeadline(deadline, async () =>
      timeLeftMs() > 0 ? (await dirtyBacklog(getDb())).oldestAgeSeconds : null,
    );
  } catch {
    return null;
  }
}
