import { deadlineFrom, TimeBudgetError, timeLeftMs, withDeadline } from '../db/budget';
import { isTransientDbError } from '../db/errors';
import type { Db } from '../db/port';
import { dirtyBacklog } from '../repositories/aggregates';
import { runAggregation, type AggregationResult } from './aggregation';

/**
 * The aggregator as the schedule runs it: every database wait ends at the invocation's deadline
 * (lib/db/budget.ts), and the batches stop earlier, at the time budget, so that the last one commits.
 */
export interface ScheduledRunOptions {
  /** What the invocation has left (Lambda's getRemainingTimeInMillis), or undefined when unbounded. */
  readonly remainingMs: number | undefined;
  readonly marginMs: number;
  readonly batchBuckets: number;
  readonly timeBudgetMs: number;
}

// The last batch and the log line must fit in what is left of the Lambda's time.
const SAFETY_MARGIN_MS = 10_000;

export async function runScheduledAggregation(db: Db, options: ScheduledRunOptions): Promise<AggregationResult> {
  const deadline = deadlineFrom(options.remainingMs, options.marginMs);
  const timeBudgetMs = Math.max(
    1,
    Math.min(options.timeBudgetMs, (options.remainingMs ?? Infinity) - SAFETY_MARGIN_MS),
  );
  return withDeadline(deadline, () => runAggregation(db, { batchBuckets: options.batchBuckets, timeBudgetMs }));
}

/**
 * The backlog's age after a failed run, still worth reporting, unless the database itself is the
 * failure (or the time is spent): a second call would wait for the same silent server.
 */
export async function lagAfterFailure(
  db: () => Db,
  failure: unknown,
  remainingMs: number | undefined,
  marginMs: number,
): Promise<number | null> {
  if (isTransientDbError(failure) || failure instanceof TimeBudgetError) return null;
  try {
    return await withDeadline(deadlineFrom(remainingMs, marginMs), async () =>
      timeLeftMs() > 0 ? (await dirtyBacklog(db())).oldestAgeSeconds : null,
    );
  } catch {
    return null;
  }
}
