import { deriveSeed, mix32 } from './random';

/**
 * When events happen: an hourly activity curve over the window, and a stream of event times drawn
 * from it in increasing order. The audience lives mostly in North America, so the curves run on a
 * fixed UTC-5 clock (no daylight saving: a generator must not depend on time-zone tables).
 */
export const AUDIENCE_UTC_OFFSET_HOURS = -5;

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** Relative activity per local hour: quiet from 1 to 6, a morning rise, an evening peak. */
export const HOURLY_ACTIVITY: readonly number[] = [
  0.32, 0.2, 0.13, 0.1, 0.1, 0.15, 0.3, 0.55, 0.8, 0.95, 1.0, 1.05, 1.1, 1.05, 1.0, 1.0, 1.05, 1.1, 1.2, 1.3, 1.35,
  1.25, 0.95, 0.6,
];

/** Relative activity per local weekday, Sunday first: weekends are quieter for this store. */
export const WEEKDAY_ACTIVITY: readonly number[] = [0.75, 1.05, 1.0, 1.0, 1.0, 0.95, 0.7];

function blackFriday(year: number): number {
  const novFirst = new Date(Date.UTC(year, 10, 1)).getUTCDay();
  const firstThursday = 1 + ((4 - novFirst + 7) % 7);
  return Date.UTC(year, 10, firstThursday + 22);
}

/** Seasonal factor of one local day: a holiday peak, Black Friday and Cyber Monday spikes, a slow January. */
function seasonalActivity(localDayMs: number): number {
  const date = new Date(localDayMs);
  const year = date.getUTCFullYear();
  const month = date.getUTCMonth();
  const day = date.getUTCDate();
  const bf = blackFriday(year);
  if (localDayMs === bf) return 2.4;
  if (localDayMs === bf + 3 * DAY_MS) return 2.0;
  if (localDayMs > bf - 7 * DAY_MS && localDayMs < bf + 7 * DAY_MS) return 1.5;
  if (month === 11 && day <= 20) return 1.35;
  if (month === 11) return 0.95;
  if (month === 0) return 0.85;
  if (month === 1) return 0.9;
  if (month === 6 || month === 7) return 0.95;
  return 1;
}

/**
 * Cumulative activity per hour of [startMs, endMs); partial first and last hours count for the part
 * inside the window. Each day also gets its own random factor (0.85-1.15) so that no two weeks look
 * the same.
 */
export class ActivityCurve {
  readonly hours: number;
  readonly firstHourMs: number;
  private readonly cumulative: Float64Array;
  private readonly startMs: number;
  private readonly endMs: number;

  constructor(seed: number, startMs: number, endMs: number) {
    if (!(endMs > startMs)) throw new RangeError('The window must end after it starts');
    this.startMs = startMs;
    this.endMs = endMs;
    this.firstHourMs = Math.floor(startMs / HOUR_MS) * HOUR_MS;
    this.hours = Math.ceil((endMs - this.firstHourMs) / HOUR_MS);
    this.cumulative = new Float64Array(this.hours);
    const daySeed = deriveSeed(seed, 0xda7);
    let total = 0;
    let cachedDay = Number.NaN;
    let dayFactor = 1;
    for (let h = 0; h < this.hours; h += 1) {
      const hourMs = this.firstHourMs + h * HOUR_MS;
      const localMs = hourMs + AUDIENCE_UTC_OFFSET_HOURS * HOUR_MS;
      const localDay = Math.floor(localMs / DAY_MS);
      if (localDay !== cachedDay) {
        cachedDay = localDay;
        const noise = 0.85 + (mix32(daySeed ^ Math.imul(localDay, 0x9e3779b1)) / 4294967296) * 0.3;
        dayFactor =
          noise * seasonalActivity(localDay * DAY_MS) * (WEEKDAY_ACTIVITY[(((localDay + 4) % 7) + 7) % 7] as number);
      }
      const localHour = Math.floor(localMs / HOUR_MS) - localDay * 24;
      const covered = (Math.min(endMs, hourMs + HOUR_MS) - Math.max(startMs, hourMs)) / HOUR_MS;
      total += dayFactor * (HOURLY_ACTIVITY[localHour] as number) * covered;
      this.cumulative[h] = total;
    }
  }

  get total(): number {
    return this.cumulative[this.hours - 1] as number;
  }

  /** A cursor that maps increasing quantiles (0..1) to epoch milliseconds, in amortised O(1). */
  cursor(): (quantile: number) => number {
    let hour = 0;
    const total = this.total;
    return (quantile: number) => {
      const target = quantile * total;
      while (hour < this.hours - 1 && (this.cumulative[hour] as number) < target) hour += 1;
      const before = hour === 0 ? 0 : (this.cumulative[hour - 1] as number);
      const weight = (this.cumulative[hour] as number) - before;
      const hourStart = Math.max(this.startMs, this.firstHourMs + hour * HOUR_MS);
      const hourEnd = Math.min(this.endMs, this.firstHourMs + (hour + 1) * HOUR_MS);
      const fraction = weight > 0 ? Math.min(1, Math.max(0, (target - before) / weight)) : 0;
      return Math.min(this.endMs - 1, hourStart + fraction * (hourEnd - hourStart));
    };
  }
}

/**
 * The times of `count` events in increasing order, distributed like a Poisson process with the
 * curve's intensity: sorted uniforms are produced one at a time from the top down
 * (U(k) = U(k+1) * V^(1/k)), so the exact count is met without holding all of them.
 * Returns a function to call `count` times.
 */
export function eventClock(curve: ActivityCurve, count: number, uniform: () => number): () => number {
  const toTime = curve.cursor();
  let remaining = 1;
  let k = count;
  return () => {
    remaining *= Math.exp(Math.log(1 - uniform()) / Math.max(1, k));
    k -= 1;
    return toTime(1 - remaining);
  };
}
