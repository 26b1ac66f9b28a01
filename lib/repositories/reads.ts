import type { Db, SqlParam } from '../db/port';
import { METRIC_COLUMNS, toMetricRow, type MetricDbRow, type MetricRow } from './metrics';
import { PROFILE_COLUMNS, toProfileRow, type ProfileDbRow, type ProfileRow } from './profiles';

/**
 * The reads behind the GET routes: event lists and timelines in keyset order, events by id, and the
 * metrics and profiles a page includes. Explicit columns; each statement is built from only the
 * predicates a request has, so the planner always sees the plain index condition (a generic plan of
 * `$1 IS NULL OR metric_id = $1` could not use the (metric_id, timestamp) index). Instants travel
 * as microsecond text cast in SQL (::text::timestamptz): a parameter typed timestamptz would go
 * through postgres.js's Date serializer and lose the microseconds of a keyset cursor.
 */

export interface EventRow {
  readonly id: string;
  readonly timestamp: Date;
  /** The stored instant at full (microsecond) precision, ISO 8601 in UTC: the keyset cursor's time. */
  readonly timestampText: string;
  readonly metricId: string;
  readonly profileId: string | null;
  readonly uuid: string | null;
  readonly properties: Readonly<Record<string, unknown>>;
  readonly rawData: unknown;
}

interface EventDbRow extends Record<string, unknown> {
  id: string;
  timestamp: Date;
  timestamp_text: string;
  metric_id: string;
  profile_id: string | null;
  uuid: string | null;
  properties: Record<string, unknown> | null;
  raw_data: unknown;
}

const EVENT_COLUMNS = `e.id, e."timestamp", to_char(e."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS timestamp_text,
       e.metric_id, e.profile_id, e.uuid, e.properties, e.raw_data`;

function toEventRow(r: EventDbRow): EventRow {
  return {
    id: r.id,
    timestamp: r.timestamp,
    timestampText: r.timestamp_text,
    metricId: r.metric_id,
    profileId: r.profile_id,
    uuid: r.uuid,
    properties: r.properties ?? {},
    rawData: r.raw_data,
  };
}

export interface EventListQuery {
  readonly metricId?: string;
  readonly profileId?: string;
  /** Only events that have a profile (Klaviyo's has(profile)). */
  readonly hasProfile?: boolean;
  /** ISO 8601 instants (microsecond text); [from, to). */
  readonly from?: string;
  readonly to?: string;
  readonly descending: boolean;
  /** Keyset position: events strictly after this (time, id) in the sort order. */
  readonly after?: { readonly timestamp: string; readonly id: string };
  readonly limit: number;
}

/**
 * One page of events in (timestamp, id) order. Every filter combination has an index whose order is
 * the sort: (profile_id, timestamp DESC, id DESC), (timestamp DESC, id DESC), or (metric_id,
 * timestamp DESC) where ties on one microsecond are sorted incrementally.
 */
export async function listEvents(db: Db, accountId: string, query: EventListQuery): Promise<EventRow[]> {
  const params: SqlParam[] = [accountId];
  const where: string[] = ['e.account_id = $1'];
  const param = (value: SqlParam) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (query.metricId !== undefined) where.push(`e.metric_id = ${param(query.metricId)}`);
  if (query.profileId !== undefined) where.push(`e.profile_id = ${param(query.profileId)}`);
  if (query.hasProfile) where.push('e.profile_id IS NOT NULL');
  if (query.from !== undefined) where.push(`e."timestamp" >= ${param(query.from)}::text::timestamptz`);
  if (query.to !== undefined) where.push(`e."timestamp" < ${param(query.to)}::text::timestamptz`);
  if (query.after) {
    const t = param(query.after.timestamp);
    const id = param(query.after.id);
    where.push(`(e."timestamp", e.id) ${query.descending ? '<' : '>'} (${t}::text::timestamptz, ${id}::varchar)`);
  }
  const direction = query.descending ? 'DESC' : 'ASC';
  const rows = await db.query<EventDbRow>(
    `SELECT ${EVENT_COLUMNS}
       FROM klaviyo_events e
      WHERE ${where.join(' AND ')}
      ORDER BY e."timestamp" ${direction}, e.id ${direction}
      LIMIT ${param(query.limit)}`,
    params,
  );
  return rows.map(toEventRow);
}

/** An event by id (the primary key's leading column); null when there is none. */
export async function getEventById(db: Db, accountId: string, id: string): Promise<EventRow | null> {
  const rows = await db.query<EventDbRow>(
    `SELECT ${EVENT_COLUMNS} FROM klaviyo_events e WHERE e.account_id = $1 AND e.id = $2 ORDER BY e."timestamp" LIMIT 1`,
    [accountId, id],
  );
  return rows[0] ? toEventRow(rows[0]) : null;
}

/** The metrics with these ids (those that exist), by id. */
export async function getMetricsByIds(db: Db, accountId: string, ids: readonly string[]): Promise<MetricRow[]> {
  if (ids.length === 0) return [];
  const rows = await db.query<MetricDbRow>(
    `SELECT ${METRIC_COLUMNS}
       FROM klaviyo_metrics m
      WHERE m.account_id = $1 AND m.id IN (SELECT jsonb_array_elements_text($2::jsonb))
      ORDER BY m.id`,
    [accountId, JSON.stringify([...new Set(ids)])],
  );
  return rows.map(toMetricRow);
}

/** The profiles with these ids (those that exist), by id. */
export async function getProfilesByIds(db: Db, accountId: string, ids: readonly string[]): Promise<ProfileRow[]> {
  if (ids.length === 0) return [];
  const rows = await db.query<ProfileDbRow>(
    `SELECT ${PROFILE_COLUMNS} FROM klaviyo_profiles p
      WHERE p.account_id = $1 AND p.id IN (SELECT jsonb_array_elements_text($2::jsonb))
      ORDER BY p.id`,
    [accountId, JSON.stringify([...new Set(ids)])],
  );
  return rows.map(toProfileRow);
}

/** The identifiers GET /api/profiles filters on; each has its own index. */
export type ProfileKey = 'id' | 'email' | 'phone_number' | 'external_id' | '_kx';

const KEY_COLUMN: Readonly<Record<ProfileKey, string>> = {
  id: 'p.id',
  email: 'p.email',
  phone_number: 'p.phone_number',
  external_id: 'p.external_id',
  _kx: 'p.kx',
};

/** What GET /api/profiles sorts by; the profile id breaks ties. */
export type ProfileSortField = 'id' | 'created' | 'updated' | 'email';

/** A bound on created or updated: ISO 8601 microsecond text. */
export interface ProfileTimeBound {
  readonly field: 'created' | 'updated';
  readonly operator: '=' | '>' | '>=' | '<' | '<=';
  readonly at: string;
}

export interface ProfileListQuery {
  /** Each key's accepted values (any of them); all keys must match. */
  readonly match: ReadonlyArray<{ readonly key: ProfileKey; readonly values: readonly string[] }>;
  readonly bounds?: readonly ProfileTimeBound[];
  /** Ascending puts profiles without the value last; descending, first (PostgreSQL's defaults). */
  readonly sort?: { readonly field: ProfileSortField; readonly descending: boolean };
  /** Keyset position: profiles strictly after this (sort value, id) in the sort order. */
  readonly after?: { readonly value: string | null; readonly id: string };
  readonly limit: number;
}

export interface ProfileListRow {
  readonly profile: ProfileRow;
  /** The sort column as exact text (timestamps in microseconds), the keyset cursor's value. */
  readonly sortValue: string | null;
}

const SORT_TEXT: Readonly<Record<ProfileSortField, string>> = {
  id: 'p.id',
  email: 'p.email',
  created: `to_char(p.created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
  updated: `to_char(p.updated AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
};

/**
 * One page of profiles in (sort column, id) order, optionally only those matching identifiers
 * (emails compare case-insensitively, as Klaviyo's do) and time bounds. Keyset-exact: a cursor holds
 * the last row's exact value, so no profile is skipped or repeated unless it changes meanwhile.
 */
export async function listProfiles(db: Db, accountId: string, query: ProfileListQuery): Promise<ProfileListRow[]> {
  const params: SqlParam[] = [accountId];
  const param = (value: SqlParam) => {
    params.push(value);
    return `$${params.length}`;
  };
  const where = query.match.map(({ key, values }) => {
    const list = `(SELECT jsonb_array_elements_text(${param(JSON.stringify(values))}::jsonb))`;
    if (key === 'email') return `lower(p.email) IN (SELECT lower(v) FROM ${list} AS l(v)) AND p.email IS NOT NULL`;
    return `${KEY_COLUMN[key]} IN ${list}`;
  });
  where.unshift('p.account_id = $1');
  for (const b of query.bounds ?? []) where.push(`p.${b.field} ${b.operator} ${param(b.at)}::text::timestamptz`);
  const field = query.sort?.field ?? 'id';
  const descending = query.sort?.descending ?? false;
  const column = `p.${field}`;
  const cast = field === 'created' || field === 'updated' ? '::text::timestamptz' : '::text';
  if (query.after) {
    const id = param(query.after.id);
    const op = descending ? '<' : '>';
    if (field === 'id') where.push(`p.id ${op} ${id}`);
    else if (query.after.value === null) {
      // Nulls come last ascending, first descending.
      where.push(
        descending
          ? `((${column} IS NULL AND p.id < ${id}) OR ${column} IS NOT NULL)`
          : `(${column} IS NULL AND p.id > ${id})`,
      );
    } else {
      const value = `${param(query.after.value)}${cast}`;
      where.push(
        descending
          ? `(${column}, p.id) < (${value}, ${id}::varchar)`
          : `((${column}, p.id) > (${value}, ${id}::varchar) OR ${column} IS NULL)`,
      );
    }
  }
  const direction = descending ? 'DESC' : 'ASC';
  const rows = await db.query<ProfileDbRow & { sort_value: string | null }>(
    `SELECT ${PROFILE_COLUMNS}, ${SORT_TEXT[field]} AS sort_value FROM klaviyo_profiles p
      WHERE ${where.join(' AND ')}
      ORDER BY ${field === 'id' ? '' : `${column} ${direction}, `}p.id ${direction}
      LIMIT ${param(query.limit)}`,
    params,
  );
  return rows.map((r) => ({ profile: toProfileRow(r), sortValue: r.sort_value }));
}
