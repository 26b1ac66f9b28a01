import type { Db } from '../db/port';

/**
 * Events: the write path and the reads that lists, timelines and exports need.
 * A batch is written by one statement. Where the Db offers COPY (postgres.js, in a transaction) its
 * rows first go by COPY into a temporary staging table; otherwise (the Data API has no array
 * parameters and no COPY) they travel as one JSON parameter expanded by jsonb_to_recordset. Both feed
 * the same INSERT, and both store the same bytes (tests/ingest/copyPath.test.ts). With TCP_NODELAY on
 * they measured the same per page: the statement's time is the insert, its foreign-key checks first
 * (README, Ingest bench).
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
 * counted as a duplicate. In the same statement, the (metric, UTC hour) buckets of the rows really
 * inserted are marked dirty for the aggregator. DO UPDATE (not DO NOTHING) on the dirty rows is
 * deliberate: it row-locks them until this transaction commits, so the aggregator, which skips
 * locked rows, cannot take a bucket whose new events it could not yet see. Each row really inserted
 * also gets a row in klaviyo_aggregate_pending, committed with it: the aggregator adds those rows to
 * the rollup instead of recounting the whole hour (lib/aggregation/rollup.ts).
 *
 * The metrics and profiles the events reference must exist (ingest creates stubs first).
 */
export async function insertEvents(
  db: Db,
  events: readonly NewEvent[],
  options: InsertEventsOptions = {},
): Promise<InsertEventsResult> {
  if (events.length === 0) return { inserted: 0, duplicates: 0 };
  if (options.dedupeById) return insertEventsOncePerId(db, events);
  const rows = db.copyRows ? await insertThroughStaging(db, db.copyRows.bind(db), events) : await insertThroughJson(db, events);
  const inserted = Number(rows[0]?.inserted ?? 0);
  return { inserted, duplicates: events.length - inserted };
}

/**
 * The statement both paths share: `input`, the last of the CTEs `withInput` defines, yields the batch's
 * rows (typed, properties resolved) in the caller's order, which is the order rows are locked in.
 */
function insertFromInput(withInput: string): string {
  return `WITH ${withInput}, inserted AS (
       INSERT INTO klaviyo_events (id, "timestamp", metric_id, profile_id, value, value_currency, uuid, unique_id, properties, raw_data)
       SELECT id, ts, metric_id, profile_id, value, value_currency, uuid, unique_id, properties, raw_data
       FROM input
       ON CONFLICT (id, "timestamp") DO NOTHING
       RETURNING id, metric_id, "timestamp", profile_id, value
     ), pending AS (
       INSERT INTO klaviyo_aggregate_pending (metric_id, bucket, event_id, "timestamp", profile_id, value)
       SELECT metric_id, date_trunc('hour', "timestamp", 'UTC'), id, "timestamp", profile_id, value FROM inserted
       RETURNING 1
     ), dirty AS (
       INSERT INTO klaviyo_aggregate_dirty (metric_id, bucket)
       SELECT DISTINCT metric_id, date_trunc('hour', "timestamp", 'UTC') FROM inserted
       ORDER BY 1, 2
       ON CONFLICT (metric_id, bucket) DO UPDATE SET first_marked_at = klaviyo_aggregate_dirty.first_marked_at
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM pending) AS pending, (SELECT count(*) FROM dirty) AS dirty`;
}

// Klaviyo's resources carry the properties inside raw_data: sent once, not twice (they are a large
// part of every row), and taken from raw_data by the statement.
function propertiesToSend(e: NewEvent): Readonly<Record<string, unknown>> | undefined {
  return e.properties === propertiesInRawData(e.rawData) ? undefined : e.properties;
}

const INSERT_FROM_JSON_SQL = insertFromInput(`input AS (
       SELECT id, ts, metric_id, profile_id, value, value_currency, uuid, unique_id,
              coalesce(properties, raw_data->'attributes'->'event_properties', '{}'::jsonb) AS properties, raw_data
       FROM jsonb_to_recordset($1::jsonb) AS r(
         id text, ts timestamptz, metric_id text, profile_id text, value numeric, value_currency text,
         uuid text, unique_id text, properties jsonb, raw_data jsonb)
     )`);

/** The Data API's path (no COPY, no array parameters): the rows as one JSON parameter. */
async function insertThroughJson(db: Db, events: readonly NewEvent[]): Promise<{ inserted: string }[]> {
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
  return db.query<{ inserted: string }>(INSERT_FROM_JSON_SQL, [payload]);
}

/**
 * Text columns: the conversions happen in the INSERT, as in the JSON path, so that a value the server
 * refuses fails that statement with its own error and never the COPY (see lib/db/postgres.ts on COPY
 * errors). Created once per session and emptied at every commit (ON COMMIT DELETE ROWS): measured
 * cheaper than creating it in every transaction (ON COMMIT DROP), which writes the catalog each time.
 */
const STAGING_TABLE = 'klaviyo_events_staging';
const STAGING_COLUMNS = ['id', 'ts', 'metric_id', 'profile_id', 'value', 'value_currency', 'uuid', 'unique_id', 'properties', 'raw_data'] as const;
const CREATE_STAGING_SQL = `CREATE TEMP TABLE IF NOT EXISTS ${STAGING_TABLE} (${STAGING_COLUMNS.map((c) => `${c} text`).join(', ')}) ON COMMIT DELETE ROWS`;

// DELETE ... RETURNING reads the staged rows and empties the table in the same statement, so a
// second batch in the same transaction starts from nothing; its RETURNING converts each value once
// (an expression of `input` used twice would be evaluated twice once the CTE is inlined).
const INSERT_FROM_STAGING_SQL = insertFromInput(`staged AS (
       DELETE FROM ${STAGING_TABLE}
       RETURNING id, ts::timestamptz AS ts, metric_id, profile_id, value::numeric AS value, value_currency, uuid, unique_id,
                 properties::jsonb AS properties, raw_data::jsonb AS raw_data
     ), input AS (
       SELECT id, ts, metric_id, profile_id, value, value_currency, uuid, unique_id,
              coalesce(properties, raw_data->'attributes'->'event_properties', '{}'::jsonb) AS properties, raw_data
       FROM staged
     )`);

/** The postgres.js path: the rows go by COPY into a staging table, then the same statement reads them. */
async function insertThroughStaging(
  db: Db,
  copyRows: NonNullable<Db['copyRows']>,
  events: readonly NewEvent[],
): Promise<{ inserted: string }[]> {
  await db.query(CREATE_STAGING_SQL);
  await copyRows(
    STAGING_TABLE,
    STAGING_COLUMNS,
    events.map((e) => {
      const properties = propertiesToSend(e);
      return [
        e.id,
        e.timestamp,
        e.metricId,
        e.profileId,
        e.value,
        e.valueCurrency,
        e.uuid,
        e.uniqueId,
        properties === undefined ? null : JSON.stringify(properties),
        JSON.stringify(e.rawData),
      ];
    }),
  );
  return db.query<{ inserted: string }>(INSERT_FROM_STAGING_SQL);
}

function propertiesInRawData(rawData: Readonly<Record<string, unknown>>): unknown {
  const attributes = rawData.attributes;
  return attributes !== null && typeof attributes === 'object' ? (attributes as Record<string, unknown>).event_properties : undefined;
}

async function insertEventsOncePerId(db: Db, events: readonly NewEvent[]): Promise<InsertEventsResult> {
  const firstPerId = new Map<string, NewEvent>();
  for (const e of events) if (!firstPerId.has(e.id)) firstPerId.set(e.id, e);
  const ids = [...firstPerId.keys()].sort();
  await db.query(
    `SELECT count(pg_advisory_xact_lock(h)) AS locked
       FROM (SELECT DISTINCT hashtextextended(id, 0) AS h FROM jsonb_array_elements_text($1::jsonb) AS id ORDER BY 1) AS s`,
    [JSON.stringify(ids)],
  );
  const existing = await db.query<{ id: string }>(
    `SELECT DISTINCT e.id FROM klaviyo_events e WHERE e.id IN (SELECT jsonb_array_elements_text($1::jsonb))`,
    [JSON.stringify(ids)],
  );
  const stored = new Set(existing.map((r) => r.id));
  const fresh = ids.filter((id) => !stored.has(id)).map((id) => firstPerId.get(id) as NewEvent);
  const result = await insertEvents(db, fresh);
  return { inserted: result.inserted, duplicates: events.length - result.inserted };
}
