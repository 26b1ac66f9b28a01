import { handler } from '../../functions/metricAggregates';
import { runAggregation } from '../../lib/app/aggregation';
import { closeDb } from '../../lib/db';
import { freshDatabase, type TestDatabase } from '../support/database';
import { storeEvents, type SimpleEvent } from '../support/events';
import { invoke } from '../support/http';
import {
  bucketLabel,
  localMinuteSecond,
  oracleRows,
  wallTimeToInstant,
  type OracleEvent,
  type OracleInterval,
} from './oracle';
import { prng } from '../support/random';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * Every measurement x interval x time zone against the oracle (tests/query/oracle.ts), in three
 * states of the rollups: none yet (every hour dirty), after an aggregate run (clean hours served from
 * rollups), and after late events landed in hours the run had already rolled up (stale rollups that
 * must not be used).
 */
const METRIC = 'QmAtrx';
const ZONES = ['UTC', 'America/New_York', 'Asia/Kolkata'] as const;
const INTERVALS: OracleInterval[] = ['hour', 'day', 'week', 'month'];
// Wall-clock ranges in the request's zone: one on whole hours, one cut mid-hour (and mid-second).
const RANGES = [
  { from: '2022-03-01T00:00:00', to: '2022-12-01T00:00:00' },
  { from: '2022-03-05T10:17:00', to: '2022-11-09T13:45:30.500' },
] as const;

// 72 requests per state; through the Data API endpoint on a shared 2-core machine that has taken
// three minutes, so these tests get more than the default minute.
const MATRIX_TIMEOUT_MS = 300_000;

const round = (xs: readonly number[]) => xs.map((x) => Math.round(x * 1e6) / 1e6);

function makeEvents(seed: number, count: number): SimpleEvent[] {
  const random = prng(seed);
  // Dense around both 2022 DST changes of New York (Mar 13, Nov 6), the range edges, and sparse elsewhere.
  const windows = [
    [Date.UTC(2022, 2, 11), Date.UTC(2022, 2, 16)],
    [Date.UTC(2022, 10, 4), Date.UTC(2022, 10, 9)],
    [Date.UTC(2022, 1, 27), Date.UTC(2022, 2, 7)],
    [Date.UTC(2022, 10, 28), Date.UTC(2022, 11, 3)],
    [Date.UTC(2022, 1, 1), Date.UTC(2023, 0, 10)],
  ] as const;
  const events: SimpleEvent[] = [];
  for (let i = 0; i < count; i += 1) {
    const [lo, hi] = windows[Math.floor(random() * windows.length)] as readonly [number, number];
    const at = new Date(Math.floor(lo + random() * (hi - lo)));
    const r = random();
    events.push({
      metricId: METRIC,
      at,
      // A few events without a profile: `unique` counts profiles, not events.
      profileId: r < 0.05 ? null : `p${Math.floor(random() * 25)}`,
      value: r > 0.9 ? null : Math.round(random() * 10_000) / 100,
      properties: { $attributed_flow: r < 0.3 ? 'Welcome' : r < 0.6 ? 'Abandoned Cart' : undefined },
    });
  }
  return events;
}

function asOracle(events: readonly SimpleEvent[]): OracleEvent[] {
  return events.map((e) => ({
    at: e.at instanceof Date ? e.at : new Date(e.at),
    profileId: e.profileId ?? null,
    value: e.value === undefined || e.value === null ? null : Number(e.value),
    properties: e.properties ?? {},
  }));
}

describe('POST /api/metric-aggregates against an oracle over raw rows', () => {
  let t: TestDatabase;
  const stored: OracleEvent[] = [];

  beforeAll(async () => {
    t = await freshDatabase();
    const events = makeEvents(7, 1500);
    await storeEvents(t.db, events);
    stored.push(...asOracle(events));
  });
  afterAll(async () => {
    await closeDb();
    await t.drop();
  });

  async function checkAll(phase: string): Promise<void> {
    for (const zone of ZONES) {
      for (const interval of INTERVALS) {
        for (const range of RANGES) {
          const res = await invoke(handler, {
            path: '/api/metric-aggregates',
            key: 'read',
            body: {
              data: {
                type: 'metric-aggregate',
                attributes: {
                  metric_id: METRIC,
                  measurements: ['count', 'sum_value', 'unique'],
                  interval,
                  timezone: zone,
                  filter: [`greater-or-equal(datetime,${range.from})`, `less-than(datetime,${range.to})`],
                },
              },
            },
          });
          const context = `${phase} ${zone} ${interval} ${range.from}`;
          expect({ context, status: res.status }).toEqual({ context, status: 200 });
          const dates: string[] = res.body.data.attributes.dates;
          const start = wallTimeToInstant(zone, range.from);
          const end = wallTimeToInstant(zone, range.to);
          // Dates: increasing instants in UTC with +00:00, each the first instant of its bucket,
          // the first one holding the range's start and the last one before its end.
          const ms = dates.map((d) => Date.parse(d));
          expect(dates.every((d) => d.endsWith('+00:00'))).toBe(true);
          expect(ms.every((m, i) => i === 0 || m > (ms[i - 1] as number))).toBe(true);
          expect(new Set(ms.map((m) => bucketLabel(zone, interval, m))).size).toBe(ms.length);
          for (const m of ms) expect(bucketLabel(zone, interval, m - 1000)).not.toBe(bucketLabel(zone, interval, m));
          expect(ms[0] as number).toBeLessThanOrEqual(start);
          expect(bucketLabel(zone, interval, ms[0] as number)).toBe(bucketLabel(zone, interval, start));
          expect(bucketLabel(zone, interval, ms[ms.length - 1] as number)).toBe(bucketLabel(zone, interval, end - 1));
          if (interval !== 'hour') expect(ms.every((m) => localMinuteSecond(zone, m) === '00:00')).toBe(true);
          if (interval === 'hour') expect(ms.slice(1).every((m) => localMinuteSecond(zone, m) === '00:00')).toBe(true);

          const expected = oracleRows(stored, { zone, interval, start, end, dates });
          const actual = res.body.data.attributes.data;
          expect(actual).toHaveLength(1);
          expect(actual[0].dimensions).toEqual([]);
          const want = expected[0] as (typeof expected)[number];
          expect({ context, count: actual[0].measurements.count }).toEqual({ context, count: want.measurements.count });
          expect({ context, unique: actual[0].measurements.unique }).toEqual({
            context,
            unique: want.measurements.unique,
          });
          expect({ context, sum: round(actual[0].measurements.sum_value) }).toEqual({
            context,
            sum: round(want.measurements.sum_value),
          });
        }
      }
    }
  }

  it(
    'answers from raw events while every hour is dirty (no aggregate run yet)',
    async () => {
      const dirty = await t.db.query<{ n: string }>('SELECT count(*) AS n FROM klaviyo_aggregate_dirty');
      expect(Number(dirty[0]?.n)).toBeGreaterThan(100);
      await checkAll('before the run');
    },
    MATRIX_TIMEOUT_MS,
  );

  it(
    'answers from the rollups after an aggregate run',
    async () => {
      const result = await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
      expect(result.status).toBe('done');
      const dirty = await t.db.query<{ n: string }>('SELECT count(*) AS n FROM klaviyo_aggregate_dirty');
      expect(Number(dirty[0]?.n)).toBe(0);
      await checkAll('after the run');
    },
    MATRIX_TIMEOUT_MS,
  );

  it(
    'stays exact when late events land in hours already rolled up',
    async () => {
      const late = makeEvents(99, 300);
      await storeEvents(t.db, late);
      stored.push(...asOracle(late));
      // The rollups of those hours are stale now; their dirty marks are what makes readers recompute.
      const dirty = await t.db.query<{ n: string }>('SELECT count(*) AS n FROM klaviyo_aggregate_dirty');
      expect(Number(dirty[0]?.n)).toBeGreaterThan(50);
      await checkAll('after late data');
    },
    MATRIX_TIMEOUT_MS,
  );
});
