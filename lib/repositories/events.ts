import { copyUnlessDuplicate } from '../db/copy';
import type { CopyRow, Db } from '../db/port';

/**
 * Events: the write path and the reads that lists, timelines and exports need.
 * Where the Db offers COPY (postgres.js, in a transaction) a batch's new rows go into klaviyo_events
 * by COPY itself, the bulk loader, after one read has set aside the rows already stored; a second
 * statement writes their pending rows and dirty marks. Otherwise (the Data API has no array
 * parameters and no COPY) the rows travel as one JSON parameter expanded by jsonb_to_recordset into
 * one INSERT ... ON CONFLICT DO NOTHING that writes all three. Both store the same bytes
 * (tests/ingest/copyPath.test.ts).
 */
export interface NewEvent {
  readonly id: string;
  /** ISO 8601 instant. */
  readonly timestamp: string;
  readonly metricId: string;
  readonly profileId: string | null;
  /** Decimal text, kept exact end to end. */
  readonly value: string | null;
  readonly valueCurrency: string | null;
  readonly uuid: string | null;
  readonly uniqueId: string | null;
  readonly properties: Readonly<Record<string, unknown>>;
  readonly rawData: Readonly<Record<string, unknown>>;
}

export interface InsertEventsResult {
  readonly inserted: number;
  readonly duplicates: number;
}

export interface InsertEventsOptions {
  /**
   * De-duplicate by id alone, whatever the time: for events whose id is derived from a unique_id
   * (Klaviyo's Create Event), where a repeat may carry another time. The first occurrence in the
   * batch wins. The ids are advisory-locked until the transaction ends, so two concurrent requests
   * with the same unique_id cannot both insert; call it inside a transaction.
   */
  readonly dedupeById?: boolean;
}

/**
 * Inserts events idempotently: an event already stored (same id and timestamp) is skipped and
 * counted as a duplicate. With the rows really inserted, in the same transaction, the (metric, UTC
 * hour) buckets they fall in are marked dirty for the aggregator. DO UPDATE (not DO NOTHING) on the
 * dirty rows is deliberate: it row-locks them until this transaction commits, so the aggregator,
 * which skips locked rows, cannot take a bucket whose new events it could not yet see. Each row
 * really inserted also gets a row in klaviyo_aggregate_pending, committed with it: the aggregator
 * adds those rows to the rollup instead of recounting the whole hour (lib/app/aggregation.ts).
 *
 * The metrics and profiles the events reference must exist (ingest creates stubs first).
 */
export async function insertEvents(
  db: Db,
  accountId: string,
  events: readonly NewEvent[],
  options: InsertEventsOptions = {},
): Promise<InsertEventsResult> {
  if (events.length === 0) return { inserted: 0, duplicates: 0 };
  if (options.dedupeById) return insertEventsOncePerId(db, accountId, events);
  const inserted = db.copyRows
    ? await insertByCopy(db, accountId, events)
    : await insertThroughJson(db, accountId, events);
  return { inserted, duplicates: events.length - inserted };
}

/** klaviyo_events' columns as a write sets them, in the order of eventCopyRow's fields. */
export const EVENT_COLUMNS = [
  'account_id',
  'id',
  '"timestamp"',
  'metric_id',
  'profile_id',
  'value',
  'value_currency',
  'uuid',
  'unique_id',
  'properties',
  'raw_data',
] as const;

/**
 * The pending rows and dirty marks of the rows in `inserted` (id, metric_id, "timestamp",
 * profile_id, value), the CTEs that follow it in both paths' statements; $1 is the account.
 */
const MARK_INSERTED_CTES = `pending AS (
       INSERT INTO klaviyo_aggregate_pending (account_id, metric_id, bucket, event_id, "timestamp", profile_id, value)
       SELECT $1::text, metric_id, date_trunc('hour', "timestamp", 'UTC'), id, "timestamp", profile_id, value FROM inserted
       RETURNING 1
     ), dirty AS (
       INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket)
       SELECT DISTINCT $1::text, metric_id, date_trunc('hour', "timestamp", 'UTC') FROM inserted
       ORDER BY 2, 3
       ON CONFLICT (account_id, metric_id, bucket) DO UPDATE SET first_marked_at = klaviyo_aggregate_dirty.first_marked_at
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM pending) AS pending, (SELECT count(*) FROM dirty) AS dirty`;

// Klaviyo's resources carry the properties inside raw_data: sent once, not twice (they are a large
// part of every row), and taken from raw_data by the statement.
function propertiesToSend(e: NewEvent): Readonly<Record<string, unknown>> | undefined {
  return e.properties === propertiesInRawData(e.rawData) ? undefined : e.properties;
}

const INSERT_FROM_JSON_SQL = `WITH input AS (
       SELECT id, ts, metric_id, profile_id, value, value_currency, uuid, unique_id,
              coalesce(properties, raw_data->'attributes'->'event_properties', '{}'::jsonb) AS properties, raw_data
       FROM jsonb_to_recordset($2::jsonb) AS r(
         id text, ts timestamptz, metric_id text, profile_id text, value numeric, value_currency text,
         uuid text, unique_id text, properties jsonb, raw_data jsonb)
     ), inserted AS (
       INSERT INTO klaviyo_events (${EVENT_COLUMNS.join(', ')})
       SELECT $1::text, id, ts, metric_id, profile_id, value, value_currency, uuid, unique_id, properties, raw_data
       FROM input
       ON CONFLICT (account_id, id, "timestamp") DO NOTHING
       RETURNING id, metric_id, "timestamp", profile_id, value
     ), ${MARK_INSERTED_CTES}`;

/** The Data API's path (no COPY, no array parameters), and COPY's fallback: the rows as one JSON parameter. */
async function insertThroughJson(db: Db, accountId: string, events: readonly NewEvent[]): Promise<number> {
  const payload = JSON.stringify(
    events.map((e) => ({
      id: e.id,
      ts: e.timestamp,
      metric_id: e.metricId,
      profile_id: e.profileId,
      value: e.value,
      value_currency: e.valueCurrency,
      uuid: e.uuid,
      unique_id: e.uniqueId,
      properties: propertiesToSend(e),
      raw_data: e.rawData,
    })),
  );
  const rows = await db.query<{ inserted: string }>(INSERT_FROM_JSON_SQL, [accountId, payload]);
  return Number(rows[0]?.inserted ?? 0);
}

// The positions (0-based) of the batch's rows that are stored already. Timestamps are compared as
// timestamptz, so any spelling of the same instant matches, as the primary key would.
const STORED_POSITIONS_SQL = `
  SELECT k.position - 1 AS position
    FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS k(key, position)
   WHERE EXISTS (SELECT 1 FROM klaviyo_events e
                  WHERE e.account_id = $1 AND e.id = k.key->>0 AND e."timestamp" = (k.key->>1)::timestamptz)`;

const MARK_COPIED_SQL = `WITH inserted AS (
       SELECT id, metric_id, "timestamp", profile_id, value
       FROM jsonb_to_recordset($2::jsonb) AS r(id text, metric_id text, "timestamp" timestamptz, profile_id text, value numeric)
     ), ${MARK_INSERTED_CTES}`;

/**
 * The postgres.js path. A page of new events, what a sync mostly sends, goes straight in by COPY. COPY
 * cannot skip a stored row: one refuses it with a unique violation (in a savepoint, which rolls
 * back), and then one read sets aside the rows already stored and only the others are copied. A
 * page sent again is refused at its first row, so a re-delivery costs that and the read. Reading
 * first on every page would cost a read that a fresh page never needs (the ingest bench). A
 * row the read could not see, because a concurrent transaction had inserted it and not yet
 * committed, makes the second COPY wait for that transaction and fail in turn: the batch then goes
 * through the JSON path's INSERT ... ON CONFLICT DO NOTHING.
 */
async function insertByCopy(db: Db, accountId: string, events: readonly NewEvent[]): Promise<number> {
  const keys = new Set<string>();
  const unique = events.filter((e) => {
    const key = `${e.id}\u0000${e.timestamp}`;
    if (keys.has(key)) return false;
    keys.add(key);
    return true;
  });
  const rows = unique.map((e) => eventCopyRow(accountId, e));
  if ((await copyUnlessDuplicate(db, 'klaviyo_events', EVENT_COLUMNS, rows)) === undefined)
    return markCopied(db, accountId, unique);
  const stored = await db.query<{ position: string }>(STORED_POSITIONS_SQL, [
    accountId,
    JSON.stringify(unique.map((e) => [e.id, e.timestamp])),
  ]);
  const storedAt = new Set(stored.map((r) => Number(r.position)));
  const fresh = unique.filter((_, i) => !storedAt.has(i));
  if (fresh.length === 0) return 0;
  const refused = await copyUnlessDuplicate(
    db,
    'klaviyo_events',
    EVENT_COLUMNS,
    rows.filter((_, i) => !storedAt.has(i)),
  );
  if (refused !== undefined) return insertThroughJson(db, accountId, events);
  return markCopied(db, accountId, fresh);
}

/** The pending rows and dirty marks of events just copied, in the same transaction, after them. */
async function markCopied(db: Db, accountId: string, copied: readonly NewEvent[]): Promise<number> {
  const marked = await db.query<{ inserted: string }>(MARK_COPIED_SQL, [
    accountId,
    JSON.stringify(
      copied.map((e) => ({
        id: e.id,
        metric_id: e.metricId,
        timestamp: e.timestamp,
        profile_id: e.profileId,
        value: e.value,
      })),
    ),
  ]);
  return Number(marked[0]?.inserted ?? 0);
}

/** An event as the text of EVENT_COLUMNS, for COPY (the bench's COPY reference loads the same rows). */
export function eventCopyRow(accountId: string, e: NewEvent): CopyRow {
  return [
    accountId,
    e.id,
    e.timestamp,
    e.metricId,
    e.profileId,
    e.value,
    e.valueCurrency,
    e.uuid,
    e.uniqueId,
    JSON.stringify(e.properties),
    JSON.stringify(e.rawData),
  ];
}

function propertiesInRawData(rawData: Readonly<Record<string, unknown>>): unknown {
  const attributes = rawData.attributes;
  return attributes !== null && typeof attributes === 'object'
    ? (attributes as Record<string, unknown>).event_properties
    : undefined;
}

async function insertEventsOncePerId(
  db: Db,
  accountId: string,
  events: readonly NewEvent[],
): Promise<InsertEventsResult> {
  const firstPerId = new Map<string, NewEvent>();
  for (const e of events) if (!firstPerId.has(e.id)) firstPerId.set(e.id, e);
  const ids = [...firstPerId.keys()].sort();
  // The account is part of the hashed text: the same id in two accounts is two events, and must not
  // make one account's writers wait for another's. chr(1) separates them (an account id cannot hold it).
  await db.query(
    `SELECT count(pg_advisory_xact_lock(h)) AS locked
       FROM (SELECT DISTINCT hashtextextended($1::text || chr(1) || id, 0) AS h
               FROM jsonb_array_elements_text($2::jsonb) AS id ORDER BY 1) AS s`,
    [accountId, JSON.stringify(ids)],
  );
  const existing = await db.query<{ id: string }>(
    `SELECT DISTINCT e.id FROM klaviyo_events e
      WHERE e.account_id = $1 AND e.id IN (SELECT jsonb_array_elements_text($2::jsonb))`,
    [accountId, JSON.stringify(ids)],
  );
  const stored = new Set(existing.map((r) => r.id));
  const fresh = ids.filter((id) => !stored.has(id)).map((id) => firstPerId.get(id) as NewEvent);
  const result = await insertEvents(db, accountId, fresh);
  return { inserted: result.inserted, duplicates: events.length - result.inserted };
}
