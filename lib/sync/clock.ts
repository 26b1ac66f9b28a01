/**
 * Time as the sync sees it. Production uses the system clock; tests pass a clock whose sleeps advance
 * virtual time at once, so a Retry-After of 30 s or a week of backoff is checked without waiting.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms))),
};
