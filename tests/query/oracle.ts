/**
 * An oracle for POST /api/metric-aggregates, written independently of lib/aggregation: it labels
 * each event with its local calendar bucket through Intl.DateTimeFormat#formatToParts (no offset
 * tables, no boundaries, no SQL) and aggregates the rows the test inserted, in plain TypeScript.
 */
export interface OracleEvent {
  readonly at: Date;
  readonly profileId: string | null;
  readonly value: number | null;
  readonly properties: Record<string, unknown>;
}

export type OracleInterval = 'hour' | 'day' | 'week' | 'month';

const formatters = new Map<string, Intl.DateTimeFormat>();

function parts(zone: string, at: number): Record<string, string> {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      timeZoneName: 'longOffset',
    });
    formatters.set(zone, f);
  }
  const out: Record<string, string> = {};
  for (const p of f.formatToParts(at)) out[p.type] = p.value;
  return out;
}

/**
 * The bucket an instant belongs to, as a label. An hour is the local hour together with its UTC
 * offset, so the two 01:00 hours of a fall-back night are two buckets.
 */
export function bucketLabel(zone: string, interval: OracleInterval, at: number): string {
  const p = parts(zone, at);
  const date = `${p.year}-${p.month}-${p.day}`;
  if (interval === 'hour') return `${date}T${p.hour} ${p.timeZoneName}`;
  if (interval === 'day') return date;
  if (interval === 'month') return `${p.year}-${p.month}`;
  const d = new Date(`${date}T00:00:00Z`);
  const sinceMonday = (d.getUTCDay() + 6) % 7;
  return new Date(d.getTime() - sinceMonday * 86_400_000).toISOString().slice(0, 10);
}

/** Local minute and second at an instant ("00:00" at the top of a local hour). */
export function localMinuteSecond(zone: string, at: number): string {
  const p = parts(zone, at);
  return `${p.minute}:${p.second}`;
}

/** The instant a wall-clock time (no offset) names in a zone; the test avoids DST gaps. */
export function wallTimeToInstant(zone: string, wall: string): number {
  const naive = Date.parse(`${wall}Z`);
  let guess = naive;
  for (let i = 0; i < 3; i += 1) {
    const p = parts(zone, guess);
    const m = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(p.timeZoneName as string);
    const offset = m && m[1] ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) * 60_000 : 0;
    guess = naive - offset;
  }
  return guess;
}

export interface OracleRow {
  readonly dimensions: string[];
  readonly measurements: { count: number[]; sum_value: number[]; unique: number[] };
}

function dimensionText(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/**
 * The expected data[] for the given dates (the bucket starts the API returned; each one's label is
 * its bucket's), for events in [start, end). Throws if an event in range has no bucket among them.
 */
export function oracleRows(
  events: readonly OracleEvent[],
  options: {
    zone: string;
    interval: OracleInterval;
    start: number;
    end: number;
    dates: readonly string[];
    by?: readonly string[];
    where?: (e: OracleEvent) => boolean;
  },
): OracleRow[] {
  const index = new Map<string, number>();
  options.dates.forEach((d, i) => index.set(bucketLabel(options.zone, options.interval, Date.parse(d)), i));
  const rows = new Map<string, { dims: string[]; count: number[]; sum: number[]; profiles: Set<string>[] }>();
  const n = options.dates.length;
  const rowOf = (dims: string[]) => {
    const key = JSON.stringify(dims);
    let row = rows.get(key);
    if (!row) {
      row = {
        dims,
        count: new Array(n).fill(0),
        sum: new Array(n).fill(0),
        profiles: Array.from({ length: n }, () => new Set<string>()),
      };
      rows.set(key, row);
    }
    return row;
  };
  const by = options.by ?? [];
  if (by.length === 0) rowOf([]);
  for (const e of events) {
    const t = e.at.getTime();
    if (t < options.start || t >= options.end) continue;
    if (options.where && !options.where(e)) continue;
    const label = bucketLabel(options.zone, options.interval, t);
    const i = index.get(label);
    if (i === undefined) throw new Error(`No date for bucket ${label} of event at ${e.at.toISOString()}`);
    const row = rowOf(by.map((k) => dimensionText(e.properties[k])));
    row.count[i] = (row.count[i] ?? 0) + 1;
    row.sum[i] = (row.sum[i] ?? 0) + (e.value ?? 0);
    if (e.profileId !== null) row.profiles[i]?.add(e.profileId);
  }
  return [...rows.values()].map((r) => ({
    dimensions: r.dims,
    measurements: { count: r.count, sum_value: r.sum, unique: r.profiles.map((s) => s.size) },
  }));
}
