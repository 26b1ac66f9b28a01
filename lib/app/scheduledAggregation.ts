import { deadlineFrom, TimeBudgetError, timeLeftMs, withDeadline } from '../db/budget';
import { isTransientDbError } from '../db/errors';
import type { Db } from '../db/port';
import { rollupSettings } from '../config';
import { accountsWithWork, backlogOfAllAccounts } from '../repositories/accounts';
import { aggregateBatch, type AggregationResult } from './aggregation';

/**
 * The aggregator as the schedule runs it: every account with marks waiting, each batch in its own
 * transaction under that account's lock, round-robin (one batch per account per round) so that a large
 * backfill in one account takes its turn with the others instead of holding the run. Every database
 * wait ends at the invocation's deadline (lib/db/budget.ts), and the batches stop earlier, at the time
 * budget, so that the last one commits. An account another run is aggregating is left to that run.
 */
export interface ScheduledRunOptions {
  /** What the invocation has left (Lambda's getRemainingTimeInMillis), or undefined when unbounded. */
  readonly remainingMs: number | undefined;
  readonly marginMs: number;
  readonly batchBuckets: number;
  readonly timeBudgetMs: number;
  /**
   * This run's place among the runs the schedule starts together (AGGREGATE_RUNS, one connection
   * each): each takes its own share of the accounts first, so that they seldom meet on a lock, then
   * helps with the accounts the others have not finished. Absent: one run, every account.
   */
  readonly run?: ParallelRun;
}

export interface ParallelRun {
  readonly index: number;
  readonly of: number;
}

export interface ScheduledAggregationResult extends AggregationResult {
  /** Accounts that had marks waiting when the run started. */
  readonly accounts: number;
  /** Of those, accounts whose lock another run held (that run aggregates them). */
  readonly accountsLocked: number;
}

// The last batch and the log line must fit in what is left of the Lambda's time.
const SAFETY_MARGIN_MS = 10_000;

export async function runScheduledAggregation(
  db: Db,
  options: ScheduledRunOptions,
): Promise<ScheduledAggregationResult> {
  const deadline = deadlineFrom(options.remainingMs, options.marginMs);
  const timeBudgetMs = Math.max(
    1,
    Math.min(options.timeBudgetMs, (options.remainingMs ?? Infinity) - SAFETY_MARGIN_MS),
  );
  const run = options.run ?? { index: 0, of: 1 };
  if (!Number.isInteger(run.of) || run.of < 1 || !Number.isInteger(run.index) || run.index < 0 || run.index >= run.of)
    throw new RangeError(`run ${run.index} of ${run.of}: the index must be a whole number below the runs`);
  return withDeadline(deadline, () => aggregateAccounts(db, options.batchBuckets, timeBudgetMs, run));
}

async function aggregateAccounts(
  db: Db,
  batchBuckets: number,
  timeBudgetMs: number,
  run: ParallelRun,
): Promise<ScheduledAggregationResult> {
  const started = performance.now();
  const maxValuesPerHour = rollupSettings().maxValuesPerHour;
  const totals = {
    bucketsRecomputed: 0,
    bucketsFromRaw: 0,
    eventsScanned: 0,
    rowsChanged: 0,
    dimensionRowsChanged: 0,
    dimensionMs: 0,
    batches: 0,
  };
  const withWork = await accountsWithWork(db);
  const accounts = withWork.length;
  // Every run.of-th account, from run.index: the runs start on different accounts.
  let queue = withWork.filter((_, i) => i % run.of === run.index);
  let helping = run.of === 1;
  let accountsLocked = 0;
  let stoppedBy: AggregationResult['stoppedBy'] = 'drained';
  let lastBatchMs = 0;
  rounds: while (queue.length > 0 || !helping) {
    if (queue.length === 0) {
      // Its own share done, a run takes what the others have left, in the same order; the account
      // lock decides which run takes each, and one another run holds is left to it.
      helping = true;
      queue = await accountsWithWork(db);
      continue;
    }
    const again: string[] = [];
    for (const accountId of queue) {
      const now = performance.now();
      if (totals.batches > 0 && now - started + lastBatchMs > timeBudgetMs) {
        stoppedBy = 'budget';
        break rounds;
      }
      const outcome = await aggregateBatch(db, accountId, batchBuckets, maxValuesPerHour);
      if (outcome === 'locked') {
        accountsLocked += 1;
        continue;
      }
      lastBatchMs = performance.now() - now;
      totals.batches += 1;
      totals.bucketsRecomputed += outcome.taken;
      totals.bucketsFromRaw += outcome.fromRaw;
      totals.eventsScanned += outcome.eventsScanned;
      totals.rowsChanged += outcome.rowsChanged;
      totals.dimensionRowsChanged += outcome.dimensionRowsChanged;
      totals.dimensionMs += outcome.dimensionMs;
      // A short batch means the rest is locked by ingests still running (or there is nothing left).
      if (outcome.taken >= batchBuckets) again.push(accountId);
    }
    queue = again;
  }
  if (totals.batches === 0 && accountsLocked > 0) stoppedBy = 'lock';
  const backlog = await backlogOfAllAccounts(db);
  return {
    status: totals.batches === 0 && accountsLocked > 0 ? 'skipped' : 'done',
    ...totals,
    dimensionMs: Math.round(totals.dimensionMs),
    durationMs: Math.round(performance.now() - started),
    lagSeconds: backlog.oldestAgeSeconds,
    bucketsWaiting: backlog.bucketsWaiting,
    stoppedBy,
    accounts,
    accountsLocked,
  };
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
      timeLeftMs() > 0 ? (await backlogOfAllAccounts(db())).oldestAgeSeconds : null,
    );
  } catch {
    return null;
  }
}
