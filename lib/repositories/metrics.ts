import type { Db } from '../db/port';
import { isLaterInstant } from './instants';

/**
 * Metrics (Klaviyo's event types). Writes are one statement per batch with the rows as one JSON
 * parameter (both drivers can send that); reads have explicit columns and convert bigint explicitly.
 */

export interface MetricRow {
  readonly id: string;
  readonly name: string;
  readonly integration: Readonly<Record<string, unknown>> | null;
  readonly created: Date | null;
  readonly updated: Date | null;
  readonly rawData: Readonly<Record<string, unknown>> | null;
  /** Created because an event named the metric before the metric itself arrived. */
  readonly isStub: boolean;
  readonly ingestedAt: Date;
}

export interface MetricSummary {
  readonly id: string;
  readonly name: string;
  readonly integration: Readonly<Record<string, unknown>> | null;
  readonly created: Date | null;
  readonly updated: Date | null;
  readonly isStub: boolean;
  readonly eventCount: number;
  readonly firstEventAt: Date | null;
  readonly lastEventAt: Date | null;
}

/** A metric resource to store, or (isStub) only an id that events reference. */
export type MetricUpsert =
  | {
      readonly id: string;
      readonly isStub: false;
      readonly name: string;
      readonly integration: Readonly<Record<string, unknown>> | null;
      /** ISO 8601 instants. */
      readonly created: string | null;
      readonly updated: string | null;
      readonly rawData: Readonly<Record<string, unknown>>;
    }
  | { readonly id: string; readonly isStub: true };

export interface MetricDbRow extends Record<string, unknown> {
  id: string;
  name: string;
  integration: Record<string, unknown> | null;
  created: Date | null;
  updated: Date | null;
  raw_data: Record<string, unknown> | null;
  is_stub: boolean;
  ingested_at: Date;
}

export const METRIC_COLUMNS = 'id, name, integration, created, updated, raw_data, is_stub, ingested_at';

export function toMetricRow(r: MetricDbRow): MetricRow {
  return {
    id: r.id,
    name: r.name,
    integration: r.integration,
    created: r.created,
    updated: r.updated,
    rawData: r.raw_data,
    isStub: r.is_stub,
    ingestedAt: r.ingested_at,
  };
}

export interface ListMetricsOptions {
  /** Keyset cursor: metrics with an id after this one. */
  readonly afterId?: string;
  /** Backwards (links.prev): metrics with an id before this one, nearest first. */
  readonly beforeId?: string;
  readonly limit?: number;
  readonly integrationName?: string;
  readonly integrationCategory?: string;
  /** Only this metric (GET /api/metrics/{id}). */
  readonly id?: string;
}

/**
 * Metrics by id with their event count and first and last event time. Cheap at any size: the count
 * is the sum of the exact hourly rollups plus a raw count of only the hours still marked dirty (the
 * rollups contract: an hour not in klaviyo_aggregate_dirty has an exact rollup or no events), and
 * first/last are one probe each at the ends of the (metric_id, timestamp) index. One statement reads
 * rollups and dirty marks together, so it sees a consistent pair.
 */
export async function listMetrics(
  db: Db,
  accountId: string,
  options: ListMetricsOptions = {},
): Promise<MetricSummary[]> {
  // A page holds at most 1000; one more tells whether another page follows.
  const limit = Math.max(1, Math.min(options.limit ?? 100, 1001));
  const rows = await db.query<
    MetricDbRow & { event_count: string; first_event_at: Date | null; last_event_at: Date | null }
  >(
    `SELECT m.id, m.name, m.integration, m.created, m.updated, m.is_stub,
            (SELECT coalesce(sum(a.event_count), 0) FROM klaviyo_aggregated_metrics a
              WHERE a.account_id = $1 AND a.metric_id = m.id AND a.granularity = 'hour'
                AND NOT EXISTS (SELECT 1 FROM klaviyo_aggregate_dirty d
                                 WHERE d.account_id = $1 AND d.metric_id = a.metric_id AND d.bucket = a.bucket))
          + (SELECT count(*) FROM klaviyo_aggregate_dirty d
               JOIN klaviyo_events e ON e.account_id = $1 AND e.metric_id = d.metric_id
                AND e."timestamp" >= d.bucket AND e."timestamp" < d.bucket + interval '1 hour'
              WHERE d.account_id = $1 AND d.metric_id = m.id) AS event_count,
            (SELECT e."timestamp" FROM klaviyo_events e WHERE e.account_id = $1 AND e.metric_id = m.id
              ORDER BY e."timestamp" ASC LIMIT 1) AS first_event_at,
            (SELECT e."timestamp" FROM klaviyo_events e WHERE e.account_id = $1 AND e.metric_id = m.id
              ORDER BY e."timestamp" DESC LIMIT 1) AS last_event_at
       FROM klaviyo_metrics m
      WHERE m.account_id = $1
        AND ($2::text IS NULL OR m.id > $2)
        AND ($3::text IS NULL OR m.integration->>'name' = $3)
        AND ($4::text IS NULL OR m.integration->>'category' = $4)
        AND ($6::text IS NULL OR m.id = $6)
        AND ($7::text IS NULL OR m.id < $7)
      ORDER BY m.id ${options.beforeId !== undefined ? 'DESC' : 'ASC'}
      LIMIT $5`,
    [
      accountId,
      options.afterId ?? null,
      options.integrationName ?? null,
      options.integrationCategory ?? null,
      limit,
      options.id ?? null,
      options.beforeId ?? null,
    ],
  );
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    integration: r.integration,
    created: r.created,
    updated: r.updated,
    isStub: r.is_stub,
    eventCount: Number(r.event_count),
    firstEventAt: r.first_event_at,
    lastEventAt: r.last_event_at,
  }));
}

export interface UpsertMetricsResult {
  /** Rows inserted (stubs included) or replaced by a newer copy. */
  readonly written: number;
}

// An incoming full copy replaces the stored row when the stored one is a stub, is older, or has no
// `updated` at all and differs. An equal or older copy changes nothing, so re-deliveries are no-ops.
const INCOMING_WINS = `NOT excluded.is_stub AND (
     klaviyo_metrics.is_stub
  OR excluded.updated > klaviyo_metrics.updated
  OR (klaviyo_metrics.updated IS NULL AND excluded.raw_data IS DISTINCT FROM klaviyo_metrics.raw_data))`;

/**
 * Upserts metric resources and stubs in one statement. Rows that would not change are filtered out
 * before the INSERT, so they are not row-locked: every ingest names the same few metrics, and locking
 * them would serialise concurrent ingests. Input is sorted by id, so concurrent upserts lock in the
 * same order and cannot deadlock.
 */
export async function upsertMetrics(
  db: Db,
  accountId: string,
  metrics: readonly MetricUpsert[],
): Promise<UpsertMetricsResult> {
  if (metrics.length === 0) return { written: 0 };
  const byId = new Map<string, MetricUpsert>();
  for (const m of metrics) {
    const seen = byId.get(m.id);
    // A full copy beats a stub; of two full copies the newer one is kept.
    if (!seen || (seen.isStub && !m.isStub) || (!seen.isStub && !m.isStub && newerThan(m.updated, seen.updated)))
      byId.set(m.id, m);
  }
  const payload = JSON.stringify(
    [...byId.values()]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((m) =>
        m.isStub
          ? { id: m.id, is_stub: true }
          : {
              id: m.id,
              is_stub: false,
              name: m.name,
              integration: m.integration,
              created: m.created,
              updated: m.updated,
              raw_data: m.rawData,
            },
      ),
  );
  const rows = await db.query<{ written: string }>(
    `WITH input AS (
       SELECT r.id, r.is_stub, r.name, r.integration, r.created, r.updated, r.raw_data
         FROM jsonb_to_recordset($2::jsonb) AS r(id text, is_stub boolean, name text, integration jsonb,
              created timestamptz, updated timestamptz, raw_data jsonb)
     ), changes AS (
       SELECT i.* FROM input i LEFT JOIN klaviyo_metrics m ON m.account_id = $1 AND m.id = i.id
        WHERE m.id IS NULL
           OR (NOT i.is_stub AND (m.is_stub OR i.updated > m.updated
               OR (m.updated IS NULL AND i.raw_data IS DISTINCT FROM m.raw_data)))
     ), written AS (
       INSERT INTO klaviyo_metrics AS klaviyo_metrics (account_id, id, name, integration, created, updated, raw_data, is_stub)
       -- A stub's name is its id until the real resource arrives (name is NOT NULL).
       SELECT $1::text, id, coalesce(name, id), integration, created, updated, raw_data, is_stub FROM changes ORDER BY id
       ON CONFLICT (account_id, id) DO UPDATE SET
         name = excluded.name, integration = excluded.integration, created = excluded.created,
         updated = excluded.updated, raw_data = excluded.raw_data, is_stub = false, ingested_at = now()
       WHERE ${INCOMING_WINS}
       RETURNING 1
     ), account AS (
       -- Every write of events names its metrics, so this registers the account of any event (the
       -- aggregator locks the account's row). A stored row is only probed: nothing locked or written.
       INSERT INTO klaviyo_accounts (account_id) VALUES ($1) ON CONFLICT (account_id) DO NOTHING
       RETURNING 1
     )
     SELECT count(*) AS written FROM written`,
    [accountId, payload],
  );
  return { written: Number(rows[0]?.written ?? 0) };
}

/**
 * The metric a Klaviyo write (Create Event) names: the oldest real metric with that name, else a new
 * one with an id derived from the name. Concurrent creators derive the same id and meet on the
 * primary key; if the derived id already belongs to another name, the next derivation is tried.
 */
export async function resolveMetricsByName(
  db: Db,
  accountId: string,
  names: readonly string[],
  newId: (name: string, attempt: number) => string,
  integration: Readonly<Record<string, unknown>>,
): Promise<{ ids: Map<string, string>; created: number }> {
  const ids = new Map<string, string>();
  let created = 0;
  const attempts = new Map<string, number>();
  let pending = [...new Set(names)].sort();
  for (let round = 0; pending.length > 0; round += 1) {
    if (round > 16) throw new Error(`Could not derive a free metric id for ${pending.length} metric names`);
    const payload = JSON.stringify(pending.map((name) => ({ name, id: newId(name, attempts.get(name) ?? 0) })));
    const rows = await db.query<{ name: string; derived_id: string; id: string | null; created: boolean }>(
      `WITH input AS (
         SELECT r.name, r.id FROM jsonb_to_recordset($2::jsonb) AS r(name text, id text)
       ), found AS (
         SELECT DISTINCT ON (m.name) m.name, m.id FROM klaviyo_metrics m
          WHERE m.account_id = $1 AND m.name IN (SELECT name FROM input) AND NOT m.is_stub
          ORDER BY m.name, m.created NULLS LAST, m.id
       ), inserted AS (
         INSERT INTO klaviyo_metrics (account_id, id, name, integration, created, updated, raw_data, is_stub)
         SELECT $1::text, i.id, i.name, $3::jsonb, now(), now(),
                jsonb_build_object('type', 'metric', 'id', i.id, 'attributes',
                  jsonb_build_object('name', i.name, 'created', now(), 'updated', now(), 'integration', $3::jsonb)),
                false
           FROM input i WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.name = i.name)
          ORDER BY i.id
         ON CONFLICT (account_id, id) DO NOTHING
         RETURNING id, name
       ), account AS (
         -- As upsertMetrics does: a Klaviyo write's events register their account.
         INSERT INTO klaviyo_accounts (account_id) VALUES ($1) ON CONFLICT (account_id) DO NOTHING
         RETURNING 1
       )
       SELECT i.name, i.id AS derived_id, coalesce(f.id, n.id) AS id, (n.id IS NOT NULL) AS created
         FROM input i
         LEFT JOIN found f ON f.name = i.name
         LEFT JOIN inserted n ON n.name = i.name`,
      [accountId, payload, JSON.stringify(integration)],
    );
    const conflicts: { name: string; derivedId: string }[] = [];
    for (const r of rows) {
      if (r.id) {
        ids.set(r.name, r.id);
        if (r.created) created += 1;
      } else conflicts.push({ name: r.name, derivedId: r.derived_id });
    }
    if (conflicts.length === 0) break;
    // The derived id was taken: by a concurrent creator of the same name (committed after this
    // statement's snapshot; the next round finds it by name), or by another metric (next derivation).
    const holders = await db.query<{ id: string; name: string; is_stub: boolean }>(
      `SELECT id, name, is_stub FROM klaviyo_metrics
        WHERE account_id = $1 AND id IN (SELECT jsonb_array_elements_text($2::jsonb))`,
      [accountId, JSON.stringify(conflicts.map((c) => c.derivedId))],
    );
    const holderOf = new Map(holders.map((h) => [h.id, h]));
    for (const c of conflicts) {
      const holder = holderOf.get(c.derivedId);
      if (!holder || holder.is_stub || holder.name !== c.name) attempts.set(c.name, (attempts.get(c.name) ?? 0) + 1);
    }
    pending = conflicts.map((c) => c.name);
  }
  return { ids, created };
}

/** To the microsecond, as the statement compares the stored timestamptz. */
const newerThan = isLaterInstant;
