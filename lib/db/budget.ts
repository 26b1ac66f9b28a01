import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The time an invocation may still spend waiting for the database. A handler sets a deadline from
 * `context.getRemainingTimeInMillis()` minus its margin (time to answer and log); the drivers read it
 * for every wait: a connect attempt, a retry, a statement. Outside any deadline (scripts, tests that
 * call repositories directly) there is no limit but the configured timeouts.
 */
interface Budget {
  /** performance.now() at which database work must have ended. */
  readonly deadline: number;
}

const storage = new AsyncLocalStorage<Budget>();

export function withDeadline<R>(deadline: number, work: () => Promise<R>): Promise<R> {
  return storage.run({ deadline }, work);
}

/** Milliseconds left before the current deadline; Infinity outside one. */
export function timeLeftMs(): number {
  const budget = storage.getStore();
  return budget === undefined ? Infinity : budget.deadline - performance.now();
}

/** The deadline of an invocation given its remaining time; Infinity when the runtime does not say. */
export function deadlineFrom(remainingMs: number | undefined, marginMs: number): number {
  if (remainingMs === undefined || !Number.isFinite(remainingMs)) return Infinity;
  // With less than twice the margin left (a nearly spent invocation), half of it is still tried.
  return performance.now() + Math.max(remainingMs - marginMs, remainingMs / 2);
}

/** Thrown when the invocation's time for the database is spent: answered as a 503 with Retry-After. */
export class TimeBudgetError extends Error {
  override readonly name = 'TimeBudgetError';
  readonly code = 'TIME_BUDGET_EXCEEDED';
  constructor(readonly waitedFor: string) {
    super(`the invocation's time budget ran out while waiting for ${waitedFor}`);
  }
}
