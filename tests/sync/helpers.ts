import { runAggregation } from '../../lib/app/aggregation';
import type { Db } from '../../lib/db/port';
import type { Clock } from '../../lib/sync/clock';
import { KlaviyoClient } from '../../lib/sync/klaviyoClient';
import { runSync, type SyncOptions, type SyncRunResult } from '../../lib/app/sync';
import type { FakeKlaviyo } from '../support/fakeKlaviyo';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

export const API_KEY = 'pk_test_0123456789abcdef0123456789abcdef';
export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;
export const SAFETY_MS = 5_000;

/** Virtual time: sleeps advance it at once and are recorded; `tickPerRequest` makes each request cost time. */
export class VirtualClock implements Clock {
  readonly sleeps: number[] = [];
  constructor(public at: number) {}
  now(): number {
    return this.at;
  }
  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.at += ms;
  }
  advance(ms: number): void {
    this.at += ms;
  }
}

export interface SentRequest {
  readonly url: string;
  /** Virtual time when the client sent it. */
  readonly at: number;
}

export interface Harness {
  readonly clock: VirtualClock;
  readonly sent: SentRequest[];
  sync(overrides?: Partial<SyncOptions> & { tickPerRequestMs?: number }): Promise<SyncRunResult>;
  /** Runs until caught up (at most `maxRuns`), returning the last result. */
  syncUntilCaughtUp(maxRuns?: number): Promise<SyncRunResult>;
}

export function harness(db: () => Db, fake: () => FakeKlaviyo, startAt: number): Harness {
  const clock = new VirtualClock(startAt);
  const sent: SentRequest[] = [];
  const sync = async (overrides: Partial<SyncOptions> & { tickPerRequestMs?: number } = {}) => {
    const { tickPerRequestMs = 0, ...syncOverrides } = overrides;
    const client = new KlaviyoClient({
      baseUrl: fake().baseUrl,
      apiKey: API_KEY,
      clock,
      rateShare: 1,
      random: () => 0.5,
      fetch: (input, init) => {
        sent.push({ url: input instanceof Request ? input.url : input.toString(), at: clock.now() });
        clock.advance(tickPerRequestMs);
        return fetch(input, init);
      },
    });
    return runSync(db(), client, {
      accountId: 'default',
      timeBudgetMs: 10 * 60_000,
      lookbackMs: DAY,
      lookbackEveryMs: HOUR,
      safetyLagMs: SAFETY_MS,
      backfillMs: 30 * DAY,
      sliceMs: 7 * DAY,
      clock,
      ...syncOverrides,
    });
  };
  return {
    clock,
    sent,
    sync,
    syncUntilCaughtUp: async (maxRuns = 10) => {
      let result: SyncRunResult | undefined;
      for (let i = 0; i < maxRuns; i += 1) {
        result = await sync();
        if (result.caughtUp || result.status === 'error') return result;
      }
      throw new Error(`not caught up after ${maxRuns} runs: ${JSON.stringify(result)}`);
    },
  };
}

interface StoredEvent extends Record<string, unknown> {
  id: string;
  ts: string;
  metric_id: string;
  profile_id: string | null;
  value: string | null;
}

/** Events stored: id, second, metric, profile and value, ordered by id. */
export async function storedEvents(
  db: Db,
): Promise<{ id: string; at: number; metric: string; profile: string | null; value: string | null }[]> {
  const rows = await db.query<StoredEvent>(
    `SELECT id, to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS ts, metric_id, profile_id,
            value::text AS value
     FROM klaviyo_events ORDER BY id, "timestamp"`,
  );
  return rows.map((r) => ({
    id: r.id,
    at: Date.parse(r.ts),
    metric: r.metric_id,
    profile: r.profile_id,
    value: r.value,
  }));
}

type SourceEvent = ReturnType<FakeKlaviyo['allEvents']>[number];

function sourceValue(e: SourceEvent): string | null {
  const v = (e.attributes.event_properties as Record<string, unknown> | undefined)?.$value;
  return typeof v === 'number' ? String(v) : null;
}

/**
 * The stored events are exactly the source's events with these ids (each once, same time, metric,
 * profile and value), and the hourly rollups sum to the source's count and value per metric, to the cent.
 */
export async function expectStoredEventsToEqual(db: Db, source: readonly SourceEvent[]): Promise<void> {
  const expected = [...source]
    .map((e) => ({
      id: e.id,
      at: Date.parse(e.attributes.datetime as string),
      metric: (e.relationships as { metric: { data: { id: string } } }).metric.data.id,
      profile: (e.relationships as { profile: { data: { id: string } } }).profile.data.id,
      value: sourceValue(e),
    }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  expect(await storedEvents(db)).toEqual(expected);

  await runAggregation(db, DEFAULT_ACCOUNT_ID, { timeBudgetMs: 60_000 });
  const rollups = await db.query<{ metric_id: string; events: string; cents: string }>(
    `SELECT metric_id, sum(event_count)::text AS events, (sum(sum_value) * 100)::numeric(20, 0)::text AS cents
     FROM klaviyo_aggregated_metrics WHERE granularity = 'hour' GROUP BY metric_id ORDER BY metric_id`,
  );
  const bySource = new Map<string, { events: number; cents: number }>();
  for (const e of expected) {
    const m = bySource.get(e.metric) ?? { events: 0, cents: 0 };
    m.events += 1;
    m.cents += Math.round(Number(e.value ?? 0) * 100);
    bySource.set(e.metric, m);
  }
  expect(
    Object.fromEntries(rollups.map((r) => [r.metric_id, { events: Number(r.events), cents: Number(r.cents) }])),
  ).toEqual(Object.fromEntries([...bySource.entries()].sort(([a], [b]) => (a < b ? -1 : 1))));
}

/** What is stored of the data tables, down to each row version (xmin): equal snapshots mean nothing was written. */
export async function dataSnapshot(db: Db): Promise<Record<string, string>> {
  const rows = await db.query<{ t: string; v: string }>(
    `SELECT 'events' AS t, coalesce(string_agg(id || ':' || xmin::text, ',' ORDER BY id), '') AS v FROM klaviyo_events
     UNION ALL SELECT 'profiles', coalesce(string_agg(id || ':' || xmin::text, ',' ORDER BY id), '') FROM klaviyo_profiles
     UNION ALL SELECT 'metrics', coalesce(string_agg(id || ':' || xmin::text, ',' ORDER BY id), '') FROM klaviyo_metrics
     UNION ALL SELECT 'dirty', count(*)::text FROM klaviyo_aggregate_dirty
     UNION ALL SELECT 'pending', count(*)::text FROM klaviyo_aggregate_pending
     UNION ALL SELECT 'rollups', coalesce(string_agg(metric_id || bucket::text || ':' || xmin::text, ','), '')
       FROM klaviyo_aggregated_metrics`,
  );
  return Object.fromEntries(rows.map((r) => [r.t, r.v]));
}

/** The events requests' filters, in the order they were sent. */
export function eventFilters(sent: readonly SentRequest[]): { from: number; to: number; cursor: boolean }[] {
  return sent
    .map((s) => new URL(s.url))
    .filter((u) => u.pathname === '/api/events')
    .map((u) => {
      const m = /^greater-or-equal\(datetime,([^)]+)\),less-than\(datetime,([^)]+)\)$/.exec(
        u.searchParams.get('filter') ?? '',
      );
      if (!m) throw new Error(`unexpected events filter: ${u.searchParams.get('filter')}`);
      return {
        from: Date.parse(m[1] as string),
        to: Date.parse(m[2] as string),
        cursor: u.searchParams.has('page[cursor]'),
      };
    });
}

/** Every source profile is stored with its latest attributes (email, first name, properties, updated). */
export async function expectStoredProfilesToEqual(
  db: Db,
  fake: FakeKlaviyo,
  except: readonly string[] = [],
): Promise<void> {
  const rows = await db.query<{
    id: string;
    email: string | null;
    first_name: string | null;
    properties: unknown;
    updated: Date | null;
  }>(`SELECT id, email, first_name, properties, updated FROM klaviyo_profiles WHERE NOT is_stub ORDER BY id`);
  const expected = [...fake.profiles.values()]
    .filter((p) => !except.includes(p.id))
    .map((p) => ({
      id: p.id,
      email: (p.attributes.email as string | undefined) ?? null,
      first_name: (p.attributes.first_name as string | undefined) ?? null,
      properties: p.attributes.properties ?? null,
      updated: new Date(p.attributes.updated as string),
    }))
    .sort((a, b) => (a.id < b.id ? -1 : 1));
  expect(rows).toEqual(expected);
}
