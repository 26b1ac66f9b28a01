/**
 * Calendar arithmetic in IANA time zones, on Intl (the ICU time zone data that ships with Node).
 *
 * Buckets are computed here, in one place, and handed to SQL as explicit boundary instants. The
 * database never interprets a zone name, so a query cannot disagree with itself because the
 * database's tz data and Node's differ.
 *
 * Instants are epoch milliseconds unless a name says otherwise. Finding a zone's offset with Intl
 * costs a few microseconds, far too much to do for every hour of a year in a 15 ms budget, so each
 * zone's offset transitions are found once per UTC year (sampling every 6 hours, then bisecting to
 * the second) and kept for the life of the container; after that an offset is a table lookup.
 */
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;
const SAMPLE_STEP_MS = 6 * HOUR_MS;

export type CalendarInterval = 'hour' | 'day' | 'week' | 'month';

/** A local calendar date; month is 1-12. */
export interface LocalDate {
  readonly year: number;
  readonly month: number;
  readonly day: number;
}

interface Segment {
  /** First instant (inclusive) at which `offset` holds. */
  readonly from: number;
  readonly offset: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(zone, f);
  }
  return f;
}

const WALL_CLOCK = /^(\d+)\/(\d+)\/(\d+),\s+(\d+):(\d+):(\d+)$/;

/** The zone's UTC offset at an instant, straight from Intl (slow path). */
function intlOffset(zone: string, at: number): number {
  const text = formatterFor(zone).format(at);
  const m = WALL_CLOCK.exec(text);
  if (!m) throw new Error(`Unexpected Intl output for ${zone}: ${text}`);
  const wall = Date.UTC(Number(m[3]), Number(m[1]) - 1, Number(m[2]), Number(m[4]), Number(m[5]), Number(m[6]));
  return wall - Math.floor(at / 1000) * 1000;
}

/**
 * Checks a time zone name the way Klaviyo documents it: an IANA name, case-sensitive.
 * Returns the name to compute with, or undefined when the zone is unknown.
 */
export function resolveTimeZone(name: string): string | undefined {
  if (name.length === 0 || name.length > 64) return undefined;
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
  // Intl accepts any letter case ("america/new_york") and canonicalises it; Klaviyo does not.
  if (resolved.toLowerCase() === name.toLowerCase() && resolved !== name) return undefined;
  return name;
}

/** A zone's offsets, found once per UTC year and reused. */
class ZoneOffsets {
  private readonly years = new Map<number, Segment[]>();
  private readonly fixed: boolean;

  constructor(readonly zone: string) {
    this.fixed = zone === 'UTC' || zone === 'Etc/UTC' || zone === 'Etc/GMT' || zone === 'GMT';
  }

  offsetAt(at: number): number {
    if (this.fixed) return 0;
    const segments = this.segmentsOfYear(new Date(at).getUTCFullYear());
    // Few segments per year (two for DST zones): a backwards linear scan is the fastest search.
    for (let i = segments.length - 1; i >= 0; i -= 1) {
      const s = segments[i] as Segment;
      if (s.from <= at) return s.offset;
    }
    throw new Error(`No offset segment for ${this.zone} at ${at}`);
  }

  /** Maximal spans of constant offset that cover [lo, hi), in order. */
  spans(lo: number, hi: number): Array<{ from: number; to: number; offset: number }> {
    if (this.fixed) return [{ from: lo, to: hi, offset: 0 }];
    const out: Array<{ from: number; to: number; offset: number }> = [];
    const lastYear = new Date(hi).getUTCFullYear();
    for (let year = new Date(lo).getUTCFullYear(); year <= lastYear; year += 1) {
      const yearStart = Date.UTC(year, 0, 1);
      const yearEnd = Date.UTC(year + 1, 0, 1);
      const segments = this.segmentsOfYear(year);
      segments.forEach((s, i) => {
        const from = Math.max(s.from, yearStart, lo);
        const to = Math.min(segments[i + 1]?.from ?? Infinity, yearEnd, hi);
        if (from >= to) return;
        const previous = out[out.length - 1];
        if (previous && previous.offset === s.offset && previous.to === from) previous.to = to;
        else out.push({ from, to, offset: s.offset });
      });
    }
    return out;
  }

  private segmentsOfYear(year: number): Segment[] {
    let segments = this.years.get(year);
    if (!segments) {
      // A margin on both sides so that any instant of the year finds its segment here.
      const from = Date.UTC(year, 0, 1) - 2 * DAY_MS;
      const to = Date.UTC(year + 1, 0, 1) + 2 * DAY_MS;
      segments = this.scan(from, to);
      this.years.set(year, segments);
    }
    return segments;
  }

  private scan(from: number, to: number): Segment[] {
    const segments: Segment[] = [{ from, offset: intlOffset(this.zone, from) }];
    let cursor = from;
    let current = segments[0]?.offset as number;
    while (cursor < to) {
      const probe = Math.min(cursor + SAMPLE_STEP_MS, to);
      const offset = intlOffset(this.zone, probe);
      if (offset === current) {
        cursor = probe;
        continue;
      }
      // Bisect (in whole seconds: tz transitions happen on a second) for the first instant of
      // the new offset, then scan on from there in case two transitions share one sample step.
      let lo = Math.floor(cursor / 1000);
      let hi = Math.floor(probe / 1000);
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (intlOffset(this.zone, mid * 1000) === current) lo = mid;
        else hi = mid;
      }
      const at = hi * 1000;
      current = intlOffset(this.zone, at);
      segments.push({ from: at, offset: current });
      cursor = at;
    }
    return segments;
  }
}

const zones = new Map<string, ZoneOffsets>();

function offsetsOf(zone: string): ZoneOffsets {
  let z = zones.get(zone);
  if (!z) {
    z = new ZoneOffsets(zone);
    zones.set(zone, z);
  }
  return z;
}

/**
 * True when the zone's offset is a whole number of hours on the first of every month from 2000 to
 * 2059, so that its local days start on whole UTC hours. Asked of Intl directly: the per-year tables
 * behind offsetAt would find sixty years of transitions, a third of a second, at a container's start.
 */
export function hasWholeHourOffsets(zone: string): boolean {
  for (let year = 2000; year < 2060; year += 1) {
    for (let month = 0; month < 12; month += 1) {
      if (intlOffset(zone, Date.UTC(year, month, 1)) % HOUR_MS !== 0) return false;
    }
  }
  return true;
}

/** UTC offset of `zone` at instant `at` (ms; positive east of Greenwich). */
export function offsetAt(zone: string, at: number): number {
  return offsetsOf(zone).offsetAt(at);
}

/** The local date at an instant. */
export function localDateAt(zone: string, at: number): LocalDate {
  const wall = new Date(at + offsetAt(zone, at));
  return { year: wall.getUTCFullYear(), month: wall.getUTCMonth() + 1, day: wall.getUTCDate() };
}

/** Days since 1970-01-01 of a local date (a calendar number, not an instant). */
function dayNumber(d: LocalDate): number {
  return Date.UTC(d.year, d.month - 1, d.day) / DAY_MS;
}

function fromDayNumber(n: number): LocalDate {
  const d = new Date(n * DAY_MS);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}

/**
 * The first instant at which the local wall clock reads `wall` (a wall-clock time written as if it
 * were UTC, in ms) or later. The instant the clock shows `wall` when it exists (the earlier of two
 * when clocks fall back); when `wall` falls in a gap (clocks jumped over it), the instant of the jump,
 * which is the first one whose wall clock reads later than `wall`.
 */
export function firstInstantAtOrAfterWallTime(zone: string, wall: number): number {
  // Offsets stay within +-18 h of UTC, so every instant showing `wall` lies within this window.
  const spans = offsetsOf(zone).spans(wall - 20 * HOUR_MS, wall + 20 * HOUR_MS);
  for (const span of spans) {
    const t = wall - span.offset;
    if (t >= span.from && t < span.to) return t;
  }
  for (const span of spans) {
    if (span.from + span.offset > wall) return span.from;
  }
  throw new Error(`No instant shows ${new Date(wall).toISOString()} in ${zone}`);
}

/**
 * The first instant whose local date is `date`, or undefined when the zone skipped that date
 * (Pacific/Apia skipped 2011-12-30). Local midnight usually; the end of the gap when a DST jump
 * happens at midnight (America/Santiago), the later midnight when clocks fall back across it.
 */
export function startOfLocalDate(zone: string, date: LocalDate): number | undefined {
  const t = firstInstantAtOrAfterWallTime(zone, Date.UTC(date.year, date.month - 1, date.day));
  const actual = localDateAt(zone, t);
  return actual.year === date.year && actual.month === date.month && actual.day === date.day ? t : undefined;
}

/**
 * Every instant in [lo, hi) at which the local wall clock reads HH:00:00, in order. Within a span
 * of constant offset these are an arithmetic progression; a transition that moves the clock by a
 * fraction of an hour (Australia/Lord_Howe) simply yields a longer or shorter local hour.
 */
function localHourStarts(zone: string, lo: number, hi: number): number[] {
  const starts: number[] = [];
  for (const span of offsetsOf(zone).spans(lo, hi)) {
    const from = Math.max(span.from, lo);
    const to = Math.min(span.to, hi);
    let t = Math.ceil((from + span.offset) / HOUR_MS) * HOUR_MS - span.offset;
    for (; t < to; t += HOUR_MS) starts.push(t);
  }
  return starts;
}

function mondayOnOrBefore(date: LocalDate): LocalDate {
  const n = dayNumber(date);
  // 1970-01-01 was a Thursday: (n + 3) % 7 is 0 on Mondays.
  const sinceMonday = (((n + 3) % 7) + 7) % 7;
  return fromDayNumber(n - sinceMonday);
}

function addCalendarUnits(date: LocalDate, interval: 'day' | 'week' | 'month', count: number): LocalDate {
  if (interval === 'day') return fromDayNumber(dayNumber(date) + count);
  if (interval === 'week') return fromDayNumber(dayNumber(date) + 7 * count);
  const months = date.year * 12 + (date.month - 1) + count;
  return { year: Math.floor(months / 12), month: (months % 12) + 1, day: 1 };
}

/** First instant of the first existing local date on or after `date`. */
function startOfLocalDateOrLater(zone: string, date: LocalDate): number {
  for (let i = 0; i < 7; i += 1) {
    const start = startOfLocalDate(zone, fromDayNumber(dayNumber(date) + i));
    if (start !== undefined) return start;
  }
  throw new Error(`No local date on or after ${date.year}-${date.month}-${date.day} in ${zone}`);
}

function calendarUnitStart(date: LocalDate, interval: 'day' | 'week' | 'month'): LocalDate {
  if (interval === 'day') return date;
  if (interval === 'week') return mondayOnOrBefore(date);
  return { year: date.year, month: date.month, day: 1 };
}

/**
 * The boundaries of the local calendar buckets that cover [from, to): b[0] <= from < b[1] < ...
 * < b[n] with b[n-1] < to <= b[n]. Bucket i is [b[i], b[i+1]). Buckets start at the local hour,
 * local midnight, Monday or the first of the month, so a DST day holds 23 or 25 hours and an
 * hour in a +05:30 zone starts at half past a UTC hour. `from`/`to` are epoch ms and may carry
 * fractions (microsecond range bounds).
 */
export function bucketBoundaries(zone: string, interval: CalendarInterval, from: number, to: number): number[] {
  if (!(to > from)) throw new Error('bucketBoundaries needs from < to');
  const fromMs = Math.floor(from);
  const bounds: number[] = [];
  if (interval === 'hour') {
    // Local hours never last more than two real hours, so three hours of margin on either side
    // always hold the hour start at or before `from` and the one at or after `to`.
    const starts = localHourStarts(zone, fromMs - 3 * HOUR_MS, Math.ceil(to) + 3 * HOUR_MS);
    let first = 0;
    while (first + 1 < starts.length && (starts[first + 1] as number) <= fromMs) first += 1;
    let last = first;
    while (last < starts.length && (starts[last] as number) < to) last += 1;
    return starts.slice(first, last + 1);
  }
  let unit = calendarUnitStart(localDateAt(zone, fromMs), interval);
  let b = startOfLocalDateOrLater(zone, unit);
  if (b > fromMs) {
    // Only when `from` falls on a local date that follows a skipped one; step back a unit.
    unit = addCalendarUnits(unit, interval, -1);
    b = startOfLocalDateOrLater(zone, unit);
  }
  bounds.push(b);
  while (b < to) {
    unit = addCalendarUnits(unit, interval, 1);
    const next = startOfLocalDateOrLater(zone, unit);
    if (next > b) {
      b = next;
      bounds.push(b);
    }
  }
  return bounds;
}
