import { backfillDimensions, rebuildAggregates, runAggregation } from '../../lib/app/aggregation';
import { queryMetricAggregates } from '../../lib/app/metricAggregates';
import type { Db } from '../../lib/db/port';
import {
  dailyDimensionViolations,
  dimensionContractViolations,
  dimensionProfileViolations,
} from '../aggregation/oracle';
import { useFreshDatabase } from '../support/database';
import { storeEvents, type SimpleEvent } from '../support/events';
import { prng } from '../support/random';
import { oracleRows, wallTimeToInstant, type OracleEvent, type OracleInterval } from './oracle';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/**
 * Breakdowns and dimension filters served from the dimension rollups (the 'dimension' plan), against
 * the independent oracle (tests/query/oracle.ts: each event labelled with its local bucket through
 * Intl, aggregated in TypeScript), in every state the rollups pass through: rolled up; late events
 * marked and pending; re-delivered events; events deleted and their range rebuilt; rollups truncated
 * and rebuilt; a key registered later and backfilled. Zones: UTC, America/New_York across the
 * 2024-11-03 fall-back, read both from UTC days and from its own days (ROLLUP_DAY_ZONES, migrations/0016),
 * Asia/Kolkata (+05:30, where every local midnight cuts a UTC hour).
 */
const METRIC = 'QmDims';
const OTHER = 'QmOther';
const OTHER_ACCOUNT = 'acct-other';
const FLOW = '$attributed_flow';
const FLOWS = ['Welcome', 'Abandoned Cart', 'Browse', 'Winback'];
const FROM = '2024-10-20T00:00:00';
const TO = '2024-11-12T00:00:00';
const NEW_YORK = 'America/New_York';
/** Each zone, and whether it is read from days of its own (registered in every test's database). */
const ZONES: readonly { readonly zone: string; readonly ownDays: boolean }[] = [
  { zone: 'UTC', ownDays: false },
  { zone: NEW_YORK, ownDays: false },
  { zone: NEW_YORK, ownDays: true },
  { zone: 'Asia/Kolkata', ownDays: false },
];

/** Flow values as Klaviyo's events carry them, and the cases a breakdown must treat alike on both paths. */
function flowProperty(r: number, i: number): Record<string, unknown> {
  if (r < 0.55) return { [FLOW]: FLOWS[i % FLOWS.length], Channel: i % 2 === 0 ? 'email' : 'sms' };
  if (r < 0.62) return { [FLOW]: null };
  if (r < 0.67) return { [FLOW]: '' };
  if (r < 0.7) return { [FLOW]: 42 };
  return { Channel: 'email' };
}

function eventsOf(seed: number, count: number, idPrefix: string): SimpleEvent[] {
  const random = prng(seed);
  const start = Date.parse(`${FROM}Z`) - 86_400_000;
  const span = Date.parse(`${TO}Z`) + 86_400_000 - start;
  return Array.from({ length: count }, (_, i) => ({
    id: `${idPrefix}${i}`,
    metricId: random() < 0.85 ? METRIC : OTHER,
    profileId: random() < 0.05 ? null : `p${Math.floor(random() * 40)}`,
    at: new Date(start + Math.floor(random() * span)),
    value: random() < 0.1 ? null : (Math.floor(random() * 10_000) / 100).toFixed(2),
    properties: flowProperty(random(), i),
  }));
}

interface Shape {
  readonly label: string;
  readonly by: readonly string[];
  readonly filter: readonly string[];
  readonly where?: (e: OracleEvent) => boolean;
}

const flowText = (e: OracleEvent): string => {
  const v = e.properties[FLOW];
  return v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
};

const SHAPES: readonly Shape[] = [
  { label: 'by flow', by: [FLOW], filter: [] },
  {
    label: 'equals one flow',
    by: [],
    filter: [`equals(${FLOW},"Welcome")`],
    where: (e) => flowText(e) === 'Welcome',
  },
  {
    label: 'any of two flows, by flow',
    by: [FLOW],
    filter: [`any(${FLOW},["Browse","Winback"])`],
    where: (e) => ['Browse', 'Winback'].includes(flowText(e)),
  },
  {
    label: 'equals "" (events without a flow)',
    by: [],
    filter: [`equals(${FLOW},"")`],
    where: (e) => flowText(e) === '',
  },
  {
    label: 'any of a flow and "", by flow',
    by: [FLOW],
    filter: [`any(${FLOW},["Welcome",""])`],
    where: (e) => ['Welcome', ''].includes(flowText(e)),
  },
];

const INTERVALS: readonly OracleInterval[] = ['hour', 'day', 'week', 'month'];

// Every state is checked over 4 zone readings x 4 intervals x 5 shapes against the oracle.
jest.setTimeout(600_000);

/** POST /api/metric-aggregates' use case on METRIC of the default account, with New York's own days or not. */
function aggregateMetric(db: Db, attributes: Record<string, unknown>, newYorkDays = false) {
  return queryMetricAggregates(
    db,
    DEFAULT_ACCOUNT_ID,
    { data: { type: 'metric-aggregate', attributes: { metric_id: METRIC, ...attributes } } },
    { maxRangeDays: 366, baseUrl: '', dayZones: newYorkDays ? [NEW_YORK] : [] },
  );
}

async function storedOracleEvents(db: Db): Promise<OracleEvent[]> {
  const rows = await db.query<{ at: Date; profile_id: string | null; value: string | null; properties: unknown }>(
    `SELECT "timestamp" AS at, profile_id, value::text AS value, properties FROM klaviyo_events
      WHERE account_id = $1 AND metric_id = $2`,
    [DEFAULT_ACCOUNT_ID, METRIC],
  );
  return rows.map((r) => ({
    at: new Date(r.at),
    profileId: r.profile_id,
    value: r.value === null ? null : Number(r.value),
    properties: (typeof r.properties === 'string' ? JSON.parse(r.properties) : r.properties) as Record<string, unknown>,
  }));
}

function canonical(
  rows: readonly { dimensions: readonly string[]; measurements: Record<string, unknown> }[],
  withUnique: boolean,
) {
  return [...rows]
    .map((r) => ({
      dimensions: [...r.dimensions],
      count: r.measurements.count as number[],
      sum: (r.measurements.sum_value as number[]).map((x) => Math.round(x * 100) / 100),
      ...(withUnique ? { unique: r.measurements.unique as number[] } : {}),
    }))
    .sort((a, b) => (JSON.stringify(a.dimensions) < JSON.stringify(b.dimensions) ? -1 : 1));
}

/** The rollups' contracts: hourly and daily dimension rollups, and the dimension profiles (unique). */
async function expectContracts(db: Db): Promise<void> {
  expect(await dimensionContractViolations(db)).toEqual([]);
  expect(await dailyDimensionViolations(db)).toEqual([]);
  expect(await dimensionProfileViolations(db)).toEqual([]);
}

const WITH_UNIQUE = ['count', 'sum_value', 'unique'];

/**
 * Every shape, interval and zone (and a range whose ends cut hours) answered from the rollups equals
 * the oracle, unique included unless `measurements` leaves it out. `expectServed`: the plan the
 * answers must come from.
 */
async function expectExact(
  db: Db,
  expectServed: 'dimension' | 'events' = 'dimension',
  measurements: readonly string[] = WITH_UNIQUE,
): Promise<void> {
  const withUnique = measurements.includes('unique');
  const events = await storedOracleEvents(db);
  const ranges: [string, string][] = [
    [FROM, TO],
    ['2024-10-25T10:30:00', '2024-11-06T07:15:00'],
    // One end cut, the other at midnight: hours before the first whole day, or after the last, alone.
    ['2024-10-25T10:30:00', '2024-11-06T00:00:00'],
    ['2024-10-25T00:00:00', '2024-11-06T07:15:00'],
  ];
  for (const { zone, ownDays } of ZONES) {
    // Hourly buckets have no day to read: New York's own days only change day, week and month.
    for (const interval of ownDays ? INTERVALS.filter((i) => i !== 'hour') : INTERVALS) {
      for (const shape of SHAPES) {
        const hourRange: [string, string][] = [['2024-11-02T00:00:00', '2024-11-05T00:00:00']];
        for (const [from, to] of interval === 'hour' ? hourRange : interval === 'day' ? ranges : ranges.slice(0, 1)) {
          const { document, plan, servedBy } = await aggregateMetric(
            db,
            {
              measurements: [...measurements],
              interval,
              timezone: zone,
              by: shape.by,
              filter: [`greater-or-equal(datetime,${from})`, `less-than(datetime,${to})`, ...shape.filter],
              page_size: 10_000,
            },
            ownDays,
          );
          const context = { zone, ownDays, interval, shape: shape.label, from, to };
          // Hourly buckets in a half-hour zone cut every hour: the planner reads raw events there.
          const wanted = zone === 'Asia/Kolkata' && interval === 'hour' ? 'events' : expectServed;
          expect({ ...context, servedBy }).toEqual({ ...context, servedBy: wanted });
          const expected = oracleRows(events, {
            zone,
            interval,
            start: wallTimeToInstant(zone, from),
            end: wallTimeToInstant(zone, to),
            dates: document.data.attributes.dates,
            by: shape.by,
            ...(shape.where ? { where: shape.where } : {}),
          }).filter((r) => shape.by.length === 0 || r.measurements.count.some((n) => n > 0));
          expect({ ...context, rows: canonical(document.data.attributes.data, withUnique) }).toEqual({
            ...context,
            rows: canonical(expected, withUnique),
          });
          expect(plan.source).toBe(zone === 'Asia/Kolkata' && interval === 'hour' ? 'events' : 'dimension');
          expect(plan.dayZone).toBe(ownDays && plan.source === 'dimension' ? NEW_YORK : 'UTC');
        }
      }
    }
  }
}

describe('breakdowns and dimension filters from the dimension rollups', () => {
  const t = useFreshDatabase();

  it('equal raw events once rolled up, and the rollups meet their contract', async () => {
    await backfillDimensions(t.db, { extraDimensions: [], extraUniqueDimensions: [], dayZones: [NEW_YORK] });
    await storeEvents(t.db, eventsOf(1, 2500, 'a'));
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    // Another account with the same metric, flows and hours: its rows must never reach the default
    // account's answers (every table the dimension reads meet is keyed by account).
    await storeEvents(t.db, eventsOf(11, 1500, 'x'), OTHER_ACCOUNT);
    await runAggregation(t.db, OTHER_ACCOUNT);
    await expectContracts(t.db);
    const rows = await t.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM klaviyo_dimension_rollups WHERE account_id = 'default' AND dimension = $1`,
      [FLOW],
    );
    expect(Number(rows[0]?.n)).toBeGreaterThan(100);
    const profileRows = await t.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM klaviyo_dimension_profiles WHERE account_id = 'default' AND dimension = $1`,
      [FLOW],
    );
    expect(Number(profileRows[0]?.n)).toBeGreaterThan(100);
    await expectExact(t.db);
    await expectExact(t.db, 'dimension', ['count', 'sum_value']);
  });

  it('equal raw events between runs: late events marked with pending rows, and re-delivered events', async () => {
    await storeEvents(t.db, eventsOf(2, 300, 'late'));
    // Re-delivery of events already counted, and of late ones not yet counted: nothing changes.
    await storeEvents(t.db, [...eventsOf(1, 200, 'a'), ...eventsOf(2, 100, 'late')]);
    const pending = await t.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM klaviyo_aggregate_pending WHERE account_id = 'default'`,
    );
    expect(Number(pending[0]?.n)).toBe(300);
    await expectExact(t.db);
    // Without unique, a dirty hour with pending rows is its rollup rows plus its pending rows.
    await expectExact(t.db, 'dimension', ['count', 'sum_value']);
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await expectContracts(t.db);
    await expectExact(t.db);
  });

  it('equal raw events after deletions, before and after their range is rebuilt', async () => {
    await t.db.query(
      `WITH gone AS (DELETE FROM klaviyo_events WHERE account_id = 'default' AND metric_id = $1 AND id LIKE 'a1%' RETURNING date_trunc('hour', "timestamp", 'UTC') AS hour)
       INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket) SELECT DISTINCT 'default', $1::text, hour FROM gone ON CONFLICT DO NOTHING`,
      [METRIC],
    );
    // Marked without pending rows: readers recount those hours; the aggregator recounts them too.
    await expectExact(t.db);
    await expectExact(t.db, 'dimension', ['count', 'sum_value']);
    await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID, {
      from: new Date('2024-10-18T00:00:00Z'),
      to: new Date('2024-11-14T00:00:00Z'),
    });
    await expectContracts(t.db);
    await expectExact(t.db);
  });

  it('recounts a marked hour without pending rows in the next batch', async () => {
    await t.db.query(
      `WITH gone AS (DELETE FROM klaviyo_events WHERE account_id = 'default' AND metric_id = $1 AND id LIKE 'a2%' RETURNING date_trunc('hour', "timestamp", 'UTC') AS hour)
       INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket) SELECT DISTINCT 'default', $1::text, hour FROM gone ON CONFLICT DO NOTHING`,
      [METRIC],
    );
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await expectContracts(t.db);
    await expectExact(t.db);
  });

  it('equal raw events after the rollups are truncated and rebuilt', async () => {
    await t.db.query(
      'TRUNCATE klaviyo_aggregated_metrics, klaviyo_profile_hours, klaviyo_dimension_rollups, klaviyo_dimension_profiles',
    );
    await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID);
    await expectContracts(t.db);
    await expectExact(t.db);
  });
});

describe('a dimension registered later', () => {
  const t = useFreshDatabase();

  it('is read from raw events until its backfill has run, then from its rollups', async () => {
    await storeEvents(t.db, eventsOf(3, 800, 'b'));
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await t.db.query(`DELETE FROM klaviyo_rollup_dimensions WHERE dimension = $1`, [FLOW]);
    await t.db.query(`DELETE FROM klaviyo_rollup_unique_dimensions WHERE dimension = $1`, [FLOW]);
    await t.db.query(`DELETE FROM klaviyo_dimension_rollups WHERE dimension = $1`, [FLOW]);
    await t.db.query(`DELETE FROM klaviyo_dimension_profiles WHERE dimension = $1`, [FLOW]);
    await expectExact(t.db, 'events');

    // Registered with events stored: not ready. New events count for it from now on. New York's days
    // too: until its backfill has filled them, its plans run on UTC days.
    await t.db.query(`INSERT INTO klaviyo_rollup_day_zones (zone) VALUES ($1)`, [NEW_YORK]);
    await storeEvents(t.db, eventsOf(5, 100, 'd'));
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    const backfill = backfillDimensions(t.db, {
      extraDimensions: [],
      extraUniqueDimensions: [FLOW],
      dayZones: [NEW_YORK],
      chunkHours: 24 * 5,
    });
    await storeEvents(t.db, eventsOf(4, 200, 'c'));
    const result = await backfill;
    expect(result.registered).toEqual([FLOW]);
    expect(result.registeredUnique).toEqual([FLOW]);
    expect(result.backfilled).toEqual([FLOW]);
    expect(result.backfilledUnique).toEqual([FLOW]);
    expect(result.registeredZones).toEqual([]);
    expect(result.backfilledZones).toEqual([NEW_YORK]);
    await expectExact(t.db);
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await expectContracts(t.db);
    await expectExact(t.db);
  });
});

describe("a zone's own days", () => {
  const t = useFreshDatabase();

  async function newYorkDays(ownDays: boolean) {
    const { document, plan } = await aggregateMetric(
      t.db,
      {
        measurements: ['count', 'sum_value'],
        interval: 'day',
        timezone: NEW_YORK,
        by: [FLOW],
        filter: [`greater-or-equal(datetime,${FROM})`, `less-than(datetime,${TO})`],
      },
      ownDays,
    );
    expect(plan.dayZone).toBe(ownDays ? NEW_YORK : 'UTC');
    return canonical(document.data.attributes.data, false);
  }

  it('are read when ready, left for UTC days while filled, and repaired by a rebuild', async () => {
    await backfillDimensions(t.db, { extraDimensions: [], extraUniqueDimensions: [], dayZones: [NEW_YORK] });
    await storeEvents(t.db, eventsOf(6, 1500, 'z'));
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    await expectContracts(t.db);
    const fromUtcDays = await newYorkDays(false);
    expect(fromUtcDays.length).toBeGreaterThan(3);
    expect(await newYorkDays(true)).toEqual(fromUtcDays);

    // The answer comes from the zone's rows: damaged, it changes.
    await t.db.query(
      `UPDATE klaviyo_dimension_zone_daily_rollups SET event_count = event_count + 1
        WHERE account_id = $1 AND metric_id = $2 AND zone = $3 AND dimension = $4`,
      [DEFAULT_ACCOUNT_ID, METRIC, NEW_YORK, FLOW],
    );
    expect(await dailyDimensionViolations(t.db)).not.toEqual([]);
    expect(await newYorkDays(true)).not.toEqual(fromUtcDays);

    // Not ready (a backfill under way): UTC days serve the zone, whatever its rows hold.
    await t.db.query(`UPDATE klaviyo_rollup_day_zones SET ready_at = NULL WHERE zone = $1`, [NEW_YORK]);
    expect(await newYorkDays(true)).toEqual(fromUtcDays);
    await t.db.query(`UPDATE klaviyo_rollup_day_zones SET ready_at = now() WHERE zone = $1`, [NEW_YORK]);

    await rebuildAggregates(t.db, DEFAULT_ACCOUNT_ID, {
      from: new Date('2024-10-18T00:00:00Z'),
      to: new Date('2024-11-14T00:00:00Z'),
    });
    await expectContracts(t.db);
    expect(await newYorkDays(true)).toEqual(fromUtcDays);
  });

  it('are dropped, rows and all, once the zone is no longer configured, and the writers leave it alone', async () => {
    const zoneRows = async () =>
      Number(
        (
          await t.db.query<{ n: string }>(
            `SELECT count(*) AS n FROM klaviyo_dimension_zone_daily_rollups WHERE account_id = $1 AND zone = $2`,
            [DEFAULT_ACCOUNT_ID, NEW_YORK],
          )
        )[0]?.n,
      );
    expect(await zoneRows()).toBeGreaterThan(0);
    const result = await backfillDimensions(t.db, { extraDimensions: [], extraUniqueDimensions: [], dayZones: [] });
    expect(result.droppedZones).toEqual([NEW_YORK]);
    expect(await zoneRows()).toBe(0);
    expect(await t.db.query(`SELECT zone FROM klaviyo_rollup_day_zones`)).toEqual([]);
    await storeEvents(t.db, eventsOf(7, 300, 'y'));
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    expect(await zoneRows()).toBe(0);
    // A deployment still listing it reads UTC days until it is registered and filled again.
    expect(await newYorkDays(true)).toEqual(await newYorkDays(false));
    await expectContracts(t.db);
  });
});

describe('cardinality', () => {
  const t = useFreshDatabase();

  it('leaves a key with too many values in an hour to raw events, says why, and still answers exactly', async () => {
    const events: SimpleEvent[] = Array.from({ length: 60 }, (_, i) => ({
      id: `u${i}`,
      metricId: METRIC,
      profileId: `p${i % 7}`,
      at: new Date(Date.parse('2024-11-01T10:00:00Z') + i * 1000),
      value: 1,
      properties: { URL: `https://example.com/p/${i}`, [FLOW]: FLOWS[i % 2] },
    }));
    // URL's distinct profiles are rolled up too: the fallback clears them with its other rows.
    await t.db.query(`INSERT INTO klaviyo_rollup_unique_dimensions (dimension, ready_at) VALUES ('URL', now())`);
    await storeEvents(t.db, events);
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID, { maxValuesPerHour: 20 });
    const fallbacks = await t.db.query<{
      metric_id: string;
      dimension: string;
      reason: string;
      distinct_values: number;
    }>(
      `SELECT metric_id, dimension, reason, distinct_values FROM klaviyo_dimension_fallbacks WHERE account_id = 'default'`,
    );
    expect(fallbacks).toEqual([{ metric_id: METRIC, dimension: 'URL', reason: 'cardinality', distinct_values: 60 }]);
    const urlRows = await t.db.query(
      `SELECT 1 FROM klaviyo_dimension_rollups WHERE account_id = 'default' AND dimension = 'URL'`,
    );
    expect(urlRows).toEqual([]);
    expect(
      await t.db.query(`SELECT 1 FROM klaviyo_dimension_profiles WHERE account_id = 'default' AND dimension = 'URL'`),
    ).toEqual([]);
    // Profile i % 7 with flow i % 2: every one of the 14 pairs occurs.
    expect(
      await t.db.query(`SELECT 1 FROM klaviyo_dimension_profiles WHERE account_id = 'default' AND dimension = $1`, [
        FLOW,
      ]),
    ).toHaveLength(14);
    const { document, servedBy } = await aggregateMetric(t.db, {
      measurements: ['count'],
      interval: 'day',
      by: ['URL'],
      filter: ['greater-or-equal(datetime,2024-11-01T00:00:00)', 'less-than(datetime,2024-11-02T00:00:00)'],
    });
    expect(servedBy).toBe('events');
    expect(document.data.attributes.data).toHaveLength(60);
    // The other key of the same metric is still rolled up.
    await expectContracts(t.db);
    const flowRows = await t.db.query(
      `SELECT 1 FROM klaviyo_dimension_rollups WHERE account_id = 'default' AND dimension = $1`,
      [FLOW],
    );
    expect(flowRows).toHaveLength(2);
  });

  it('leaves a key with a value too long for an index key to raw events', async () => {
    await storeEvents(t.db, [
      {
        id: 'long1',
        metricId: OTHER,
        profileId: 'p1',
        at: '2024-11-01T10:00:00Z',
        value: 1,
        properties: { Subject: 'x'.repeat(3000) },
      },
    ]);
    await runAggregation(t.db, DEFAULT_ACCOUNT_ID);
    const fallbacks = await t.db.query<{ reason: string }>(
      `SELECT reason FROM klaviyo_dimension_fallbacks WHERE account_id = 'default' AND metric_id = $1 AND dimension = 'Subject'`,
      [OTHER],
    );
    expect(fallbacks).toEqual([{ reason: 'value_length' }]);
  });
});
