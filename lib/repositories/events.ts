import { topLevelValueTexts } from '../db/topLevelJson';
import { asciiJson, asciiJsonOf } from '../db/asciiJson';
import { copyUnlessDuplicate } from '../db/copy';
import { copyField, copyLineOf } from '../db/copyFormat';
import type { CopyFields, CopyRow, Db } from '../db/port';

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
  /**
   * The same row as COPY text, the fields after account_id, already checked (checkedCopyLine): COPY
   * sends it as it is instead of serialising the fields again. A queued page's events carry it.
   */
  readonly copyLine?: string;
  /**
   * The properties as a field of COPY text (their JSON, escaped as copyField escapes it), where the
   * event has them so and has not parsed them: the pending row reads the registered keys' values
   * from it (topLevelJson.ts) instead of `properties`.
   */
  readonly propertiesCopyText?: string;
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
  /**
   * Gathers the dirty marks instead of writing them: the caller writes them all with
   * writeDirtyMarks as the last statement before its commit. A mark is row-locked from its write
   * to the commit, and every writer of the same (metric, hour) waits on it meanwhile: writers that
   * do more after their events (the queue consumer: metrics, profiles) would otherwise hold each
   * other up for all of it.
   */
  readonly marks?: DirtyMarks;
}

/**
 * The (metric, UTC hour) pairs a transaction's events fall in, gathered across its event writes
 * (InsertEventsOptions.marks) and written by writeDirtyMarks in one statement, in one order all
 * writers share (metric, then hour), so that writers waiting on each other's marks never wait in a
 * cycle.
 */
export class DirtyMarks {
  private readonly pairs = new Map<string, readonly [string, string]>();

  add(metricId: string, hour: string): void {
    const key = `${metricId}\u0000${hour}`;
    if (!this.pairs.has(key)) this.pairs.set(key, [metricId, hour]);
  }

  get size(): number {
    return this.pairs.size;
  }

  /** The pairs as MARK_SQL's parameter. */
  toJson(): string {
    return JSON.stringify([...this.pairs.values()]);
  }
}

/**
 * Writes the gathered marks (InsertEventsOptions.marks); the transaction's last statement before its
 * commit. Returns how many marks it inserted (those there already are locked, not counted).
 */
export async function writeDirtyMarks(db: Db, accountId: string, marks: DirtyMarks): Promise<number> {
  if (marks.size === 0) return 0;
  const rows = await db.query<{ dirty: string }>(MARK_SQL, [accountId, marks.toJson()]);
  return Number(rows[0]?.dirty ?? 0);
}

/**
 * Inserts events idempotently: an event already stored (same id and timestamp) is skipped and
 * counted as a duplicate. With the rows really inserted, in the same transaction, the (metric, UTC
 * hour) buckets they fall in are marked dirty for the aggregator. DO UPDATE (not DO NOTHING) on the
 * dirty rows is deliberate, even with WHERE false, which writes nothing: it row-locks every
 * conflicting row until this transaction commits, so the aggregator,
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
  if (options.dedupeById) return insertEventsOncePerId(db, accountId, events, options.marks);
  return insertEventStream(db, accountId, events[Symbol.iterator](), options.marks);
}

/**
 * insertEvents for events made while they are stored: on the COPY path the iterator is asked for
 * each event as the COPY takes it, so that whatever makes an event (the queue consumer parses and
 * checks its messages) runs on this process's core while the server stores the events before it.
 * Every event has been taken from the iterator when this resolves; when it throws, some may not
 * have been. The iterator is driven by next() alone, never closed, so its maker keeps its place.
 */
export async function insertEventStream(
  db: Db,
  accountId: string,
  events: Iterator<NewEvent>,
  marks?: DirtyMarks,
): Promise<InsertEventsResult> {
  if (!db.copyRows) {
    const all = [...remainingOf(events)];
    const inserted = all.length > 0 ? await insertThroughJson(db, accountId, all, marks) : 0;
    return { inserted, duplicates: all.length - inserted };
  }
  const first = events.next();
  if (first.done) return { inserted: 0, duplicates: 0 };
  const taken = new UniqueEvents(await readRegistry(db));
  taken.add(first.value);
  const inserted = await insertByCopy(db, accountId, first.value, events, taken, marks);
  return { inserted, duplicates: taken.received - inserted };
}

/** What an iterator has left, without closing it. */
function* remainingOf<T>(items: Iterator<T>): Generator<T> {
  for (let next = items.next(); !next.done; next = items.next()) yield next.value;
}

/**
 * The events taken so far, each (id, timestamp) once (the first copy wins), and each one's pending
 * row, made as it is taken: while the events' COPY runs, this process has time the server does not.
 * `pending` is undefined once an event's hour is not certain (hourOf).
 */
class UniqueEvents {
  readonly list: NewEvent[] = [];
  pending: PendingRow[] | undefined = [];
  received = 0;
  private readonly keys = new Set<string>();

  constructor(readonly registry: Registry) {}

  /** False for a repeat of an event already taken. */
  add(e: NewEvent): boolean {
    this.received += 1;
    const key = `${e.id}\u0000${e.timestamp}`;
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    this.list.push(e);
    if (this.pending) {
      const hour = hourOf(e.timestamp);
      if (hour === undefined) this.pending = undefined;
      else this.pending.push(pendingRowOf(e, hour, this.registry));
    }
    return true;
  }
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
 * The dirty marks of `pairs` (a select list of metric and hour, and its FROM), in one order all
 * writers share. DO UPDATE ... WHERE false locks a mark that is there already (PostgreSQL locks every
 * conflicting row DO UPDATE meets, updated or not) without writing a new version of it: half the
 * statement's time when most marks are there.
 */
const insertMarksFrom = (pairs: string) => `INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket)
       SELECT DISTINCT $1::text, ${pairs}
       ORDER BY 2, 3
       ON CONFLICT (account_id, metric_id, bucket) DO UPDATE SET first_marked_at = klaviyo_aggregate_dirty.first_marked_at WHERE false`;

/**
 * The pending rows and dirty marks of the rows in `inserted` (id, metric_id, "timestamp",
 * profile_id, value, properties), the CTEs that follow it in both paths' statements; $1 is the account.
 * Each pending row carries the event's non-empty values of the registered dimension keys and the
 * registry's generation they were taken against (migrations/0012_ingest_bookkeeping.sql), so that the
 * aggregator adds the event to the dimension rollups without reading it back from klaviyo_events. Per
 * event, its own keys are looked up in the registry made one JSON object, once per statement (as a
 * join, the planner, which cannot estimate the batch's size, re-ran the aggregation or re-hashed the
 * registry for every row); the registry and its generation are read in this statement's snapshot, so
 * they agree.
 */
const MARK_INSERTED_CTES = (marks: MarksMode) => `registered AS MATERIALIZED (
       SELECT coalesce(jsonb_object_agg(dimension, true), '{}'::jsonb) AS keys FROM klaviyo_rollup_dimensions
     ), pending AS (
       INSERT INTO klaviyo_aggregate_pending (account_id, metric_id, bucket, event_id, "timestamp", profile_id, value,
                                              dimension_values, dimension_generation)
       SELECT $1::text, i.metric_id, date_trunc('hour', i."timestamp", 'UTC'), i.id, i."timestamp", i.profile_id, i.value,
              (SELECT coalesce(jsonb_object_agg(k.key, k.value), '{}'::jsonb)
                 FROM jsonb_each(CASE WHEN jsonb_typeof(i.properties) = 'object' THEN i.properties ELSE '{}'::jsonb END) AS k(key, value)
                WHERE (SELECT keys FROM registered) ? k.key
                  AND k.value <> 'null'::jsonb AND k.value <> '""'::jsonb),
              (SELECT generation FROM klaviyo_rollup_dimension_generation)
       FROM inserted i
       RETURNING 1
     )${
       marks === 'write'
         ? `, dirty AS (
       ${insertMarksFrom(`metric_id, date_trunc('hour', "timestamp", 'UTC') FROM inserted`)}
     )`
         : ''
     }
     SELECT (SELECT count(*) FROM inserted) AS inserted${
       marks === 'write'
         ? ''
         : `,
            (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_array(metric_id, date_trunc('hour', "timestamp", 'UTC'))), '[]'::jsonb)
               FROM inserted) AS marks`
     }`;

/** Whether a statement writes its events' dirty marks, or returns them for DirtyMarks. */
type MarksMode = 'write' | 'return';

interface MarkedRow extends Record<string, unknown> {
  readonly inserted: string;
  /** With MarksMode 'return': the (metric, hour) pairs, as JSON. */
  readonly marks?: unknown;
}

/** A statement's count of inserted rows, its returned marks gathered into `marks`. */
function insertedAndMarked(rows: readonly MarkedRow[], marks: DirtyMarks | undefined): number {
  const returned = rows[0]?.marks;
  if (marks && Array.isArray(returned))
    for (const pair of returned)
      if (Array.isArray(pair) && typeof pair[0] === 'string' && typeof pair[1] === 'string')
        marks.add(pair[0], pair[1]);
  return Number(rows[0]?.inserted ?? 0);
}

// Klaviyo's resources carry the properties inside raw_data: sent once, not twice (they are a large
// part of every row), and taken from raw_data by the statement.
function propertiesToSend(e: NewEvent): Readonly<Record<string, unknown>> | undefined {
  // Raw data first: an event that parses its JSON on demand (a queued page's) then finds its
  // properties inside it.
  const inRawData = propertiesInRawData(e.rawData);
  return e.properties === inRawData ? undefined : e.properties;
}

const INSERT_FROM_JSON_SQL = (marks: MarksMode) => `WITH input AS (
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
       RETURNING id, metric_id, "timestamp", profile_id, value, properties
     ), ${MARK_INSERTED_CTES(marks)}`;

/** The Data API's path (no COPY, no array parameters), and COPY's fallback: the rows as one JSON parameter. */
async function insertThroughJson(
  db: Db,
  accountId: string,
  events: readonly NewEvent[],
  marks: DirtyMarks | undefined,
): Promise<number> {
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
  const rows = await db.query<MarkedRow>(INSERT_FROM_JSON_SQL(marks ? 'return' : 'write'), [accountId, payload]);
  return insertedAndMarked(rows, marks);
}

// The positions (0-based) of the batch's rows that are stored already. Timestamps are compared as
// timestamptz, so any spelling of the same instant matches, as the primary key would.
const STORED_POSITIONS_SQL = `
  SELECT k.position - 1 AS position
    FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS k(key, position)
   WHERE EXISTS (SELECT 1 FROM klaviyo_events e
                  WHERE e.account_id = $1 AND e.id = k.key->>0 AND e."timestamp" = (k.key->>1)::timestamptz)`;

// The copied rows' properties are read back by primary key rather than sent a second time: the COPY
// has just written those index and heap pages, so the reads hit the buffer pool.
const MARK_COPIED_SQL = (marks: MarksMode) => `WITH inserted AS MATERIALIZED (
       SELECT e.id, e.metric_id, e."timestamp", e.profile_id, e.value, e.properties
       FROM jsonb_to_recordset($2::jsonb) AS r(id text, "timestamp" timestamptz)
       JOIN klaviyo_events e ON e.account_id = $1 AND e.id = r.id AND e."timestamp" = r."timestamp"
     ), ${MARK_INSERTED_CTES(marks)}`;

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
async function insertByCopy(
  db: Db,
  accountId: string,
  first: NewEvent,
  rest: Iterator<NewEvent>,
  taken: UniqueEvents,
  marks: DirtyMarks | undefined,
): Promise<number> {
  const account = `${copyField(accountId)}\t`;
  const rowOf = (e: NewEvent): CopyRow =>
    e.copyLine === undefined ? eventCopyRow(accountId, e) : { line: `${account}${e.copyLine}` };
  // Made as the COPY takes them, so that the server stores the first rows while the rest are made.
  const streamed = function* (): Generator<CopyRow> {
    yield rowOf(first);
    for (const e of remainingOf(rest)) if (taken.add(e)) yield rowOf(e);
  };
  const refusedAtFirst = await copyUnlessDuplicate(db, 'klaviyo_events', EVENT_COLUMNS, streamed());
  if (refusedAtFirst === undefined)
    return markCopied(db, accountId, taken.list, taken.pending, taken.registry.generation, marks);
  // The COPY stopped at a stored row: what it never asked for is taken now.
  for (const e of remainingOf(rest)) taken.add(e);
  const unique = taken.list;
  const stored = await db.query<{ position: string }>(STORED_POSITIONS_SQL, [
    accountId,
    JSON.stringify(unique.map((e) => [e.id, e.timestamp])),
  ]);
  const storedAt = new Set(stored.map((r) => Number(r.position)));
  const isFresh = (_: unknown, i: number) => !storedAt.has(i);
  const fresh = unique.filter(isFresh);
  if (fresh.length === 0) return 0;
  const refused = await copyUnlessDuplicate(db, 'klaviyo_events', EVENT_COLUMNS, fresh.map(rowOf));
  if (refused !== undefined) return insertThroughJson(db, accountId, unique, marks);
  return markCopied(db, accountId, fresh, taken.pending?.filter(isFresh), taken.registry.generation, marks);
}

// The registered dimension keys and the registry's generation they belong to, in one statement, so
// in one snapshot: the pending rows carry the values of exactly those keys, stamped with that
// generation (migrations/0012_ingest_bookkeeping.sql says why the pair must agree). When in the
// transaction they are read does not matter: a key registered after this read raises the
// generation, and the aggregator then reads those events' properties instead of the values carried.
const REGISTRY_SQL = `SELECT (SELECT generation FROM klaviyo_rollup_dimension_generation)::text AS generation,
            (SELECT coalesce(jsonb_agg(dimension), '[]'::jsonb) FROM klaviyo_rollup_dimensions) AS keys`;

// The dirty marks of the copied rows' (metric, hour) pairs.
const MARK_SQL = `WITH dirty AS (
       ${insertMarksFrom('b->>0, (b->>1)::timestamptz FROM jsonb_array_elements($2::jsonb) AS b')}
       RETURNING 1
     )
     SELECT count(*) AS dirty FROM dirty`;

interface Registry {
  readonly generation: string | null;
  readonly keys: ReadonlySet<string>;
  /** Each key as a JSON string in ASCII, as a field of COPY text: a member's name in a pending row's values. */
  readonly keyFields: ReadonlyMap<string, string>;
}

async function readRegistry(db: Db): Promise<Registry> {
  const rows = await db.query<{ generation: string | null; keys: unknown }>(REGISTRY_SQL);
  const listed = rows[0]?.keys;
  const keys = new Set(Array.isArray(listed) ? listed.filter((k): k is string => typeof k === 'string') : []);
  return {
    generation: rows[0]?.generation ?? null,
    keys,
    keyFields: new Map([...keys].map((k) => [k, copyField(asciiJsonOf(k))])),
  };
}

/** klaviyo_aggregate_pending's columns as ingest writes them, in the order of pendingCopyRow's fields. */
const PENDING_COLUMNS = [
  'account_id',
  'metric_id',
  'bucket',
  'event_id',
  '"timestamp"',
  'profile_id',
  'value',
  'dimension_values',
  'dimension_generation',
] as const;

// Times whose UTC hour JavaScript finds exactly as PostgreSQL does: at most microseconds (PostgreSQL
// rounds a seventh digit, which can carry into the next hour; Date.parse truncates) and an explicit
// zone. The mapping writes every time this way; anything else takes the statement's path.
const EXACT_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$/;
const HOUR_MS = 3_600_000;

// A time in UTC already (Z or +00:00), its hour, minute and second in range: its UTC hour is its
// first thirteen characters, with no Date made. Any other time takes hourOf's general path.
const UTC_INSTANT = /^\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|\+00:00)$/;

/** The UTC hour an event falls in, as date_trunc('hour', t, 'UTC') has it; undefined when unsure. */
function hourOf(timestamp: string): string | undefined {
  if (UTC_INSTANT.test(timestamp)) return `${timestamp.slice(0, 13)}:00:00.000Z`;
  if (!EXACT_INSTANT.test(timestamp)) return undefined;
  const ms = Date.parse(timestamp);
  return Number.isFinite(ms) ? new Date(Math.floor(ms / HOUR_MS) * HOUR_MS).toISOString() : undefined;
}

/**
 * The event's non-empty values of the registered keys, as the statement path computes them: one JSON
 * object (jsonb orders the keys itself), in ASCII as the events' JSON is, as a field of COPY text.
 * From the properties' COPY text where the event has it: each value as the text spells it, with no
 * value parsed and written again (topLevelJson.ts).
 */
function dimensionValuesField(e: NewEvent, registry: Registry): string {
  const registered = registry.keys;
  if (registered.size === 0) return '{}';
  const text = e.propertiesCopyText;
  const found = text === undefined ? undefined : topLevelValueTexts(text, registered, { copyEscaped: true });
  if (found !== undefined) {
    // Joined from an array, so that the row keeps one flat string until its COPY rather than a
    // tree of concatenations for V8's young generation to copy.
    const parts = ['{'];
    for (const [key, value] of found) {
      if (value === 'null' || value === '""') continue;
      parts.push(parts.length === 1 ? '' : ',', registry.keyFields.get(key) ?? '', ':', value);
    }
    parts.push('}');
    return parts.join('');
  }
  // Without the text, or a text the reader cannot walk: the parsed properties (whose parse then
  // says what is wrong with them).
  const properties = e.properties;
  if (Array.isArray(properties)) return '{}';
  let members = '';
  for (const key of registered) {
    const value = Object.hasOwn(properties, key) ? properties[key] : undefined;
    if (value === undefined || value === null || value === '') continue;
    members += `${members === '' ? '' : ','}${JSON.stringify(key)}:${JSON.stringify(value)}`;
  }
  return copyField(asciiJson(`{${members}}`));
}

/**
 * What an event's pending row needs beyond the event: its hour, and its dimension values as COPY
 * text. The row's line is made as the pending rows' COPY takes it, so that the batch keeps no
 * string built of its fields meanwhile (a batch's worth of such strings outlived V8's young
 * generation, which then copied them: more work than making them).
 */
interface PendingRow {
  readonly event: NewEvent;
  readonly hour: string;
  readonly dimensionValues: string;
}

function pendingRowOf(e: NewEvent, hour: string, registry: Registry): PendingRow {
  return { event: e, hour, dimensionValues: dimensionValuesField(e, registry) };
}

/**
 * The pending rows as lines of COPY text in PENDING_COLUMNS' order, made one by one as the COPY takes
 * them, each row's (metric, hour) gathered into `marks` on the way, while the server stores the rows
 * before it rather than after the COPY, while it waits.
 */
function* pendingLines(
  accountId: string,
  rows: readonly PendingRow[],
  generation: string | null,
  marks: DirtyMarks,
): Generator<CopyRow> {
  const tail = `\t${copyField(generation)}`;
  for (const { event: e, hour, dimensionValues } of rows) {
    marks.add(e.metricId, hour);
    const scalars = copyLineOf([accountId, e.metricId, hour, e.id, e.timestamp, e.profileId, e.value]);
    yield { line: `${scalars}\t${dimensionValues}${tail}` };
  }
}

/**
 * The pending rows and dirty marks of events just copied, in the same transaction, after them: the
 * pending rows by COPY, made as the events were taken (the statement path reads each event back by
 * primary key and takes its values in SQL; tests/aggregation/bookkeeping.test.ts checks that both
 * carry the same values), then the marks by one statement, or into `marks` for the caller to write
 * (last, as the marks are locked from their write to the commit). Without `pending` (an event whose
 * hour this process cannot place for certain), by that statement.
 */
async function markCopied(
  db: Db,
  accountId: string,
  copied: readonly NewEvent[],
  pending: readonly PendingRow[] | undefined,
  generation: string | null,
  marks: DirtyMarks | undefined,
): Promise<number> {
  if (!db.copyRows || pending === undefined) return markCopiedByStatement(db, accountId, copied, marks);
  const gathered = marks ?? new DirtyMarks();
  await db.copyRows(
    'klaviyo_aggregate_pending',
    PENDING_COLUMNS,
    pendingLines(accountId, pending, generation, gathered),
  );
  if (!marks) await writeDirtyMarks(db, accountId, gathered);
  return copied.length;
}

/** The same by one statement that reads the copied rows back (times JavaScript cannot place exactly). */
async function markCopiedByStatement(
  db: Db,
  accountId: string,
  copied: readonly NewEvent[],
  marks: DirtyMarks | undefined,
): Promise<number> {
  const marked = await db.query<MarkedRow>(MARK_COPIED_SQL(marks ? 'return' : 'write'), [
    accountId,
    JSON.stringify(copied.map((e) => ({ id: e.id, timestamp: e.timestamp }))),
  ]);
  return insertedAndMarked(marked, marks);
}

/**
 * The event as a plain object of its fields, without a COPY line: a queued page's events read their JSON
 * fields on demand and carry the line the route made, which spells the row one way only.
 */
export function plainEvent(e: NewEvent): NewEvent {
  return {
    id: e.id,
    timestamp: e.timestamp,
    metricId: e.metricId,
    profileId: e.profileId,
    value: e.value,
    valueCurrency: e.valueCurrency,
    uuid: e.uuid,
    uniqueId: e.uniqueId,
    properties: e.properties,
    rawData: e.rawData,
  };
}

/** An event's scalar fields in EVENT_COLUMNS' order after account_id: how every encoding of a row begins. */
export function eventScalars(
  e: NewEvent,
): [string, string, string, string | null, string | null, string | null, string | null, string | null] {
  return [e.id, e.timestamp, e.metricId, e.profileId, e.value, e.valueCurrency, e.uuid, e.uniqueId];
}

/**
 * An event as the text of EVENT_COLUMNS, for COPY (the bench's COPY reference loads the same rows),
 * its JSON in ASCII (asciiJson): the queue's event lines are the same text.
 */
export function eventCopyRow(accountId: string, e: NewEvent): CopyFields {
  return [accountId, ...eventScalars(e), asciiJsonOf(e.properties), asciiJsonOf(e.rawData)];
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
  marks: DirtyMarks | undefined,
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
  const result = await insertEvents(db, accountId, fresh, { marks });
  return { inserted: result.inserted, duplicates: events.length - result.inserted };
}
