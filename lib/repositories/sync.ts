import { createHash } from 'node:crypto';
import type { Db } from '../db/port';

/** The sync's own tables (migrations/0008_klaviyo_sync.sql): stream state, the run lease, rejects. */

/** An item ingest set aside (lib/ingest's SetAsideItem has this shape): where, why, and the item as received. */
export interface RejectedItem {
  readonly pointer: string;
  readonly code: string;
  readonly detail: string;
  readonly item: unknown;
}

export type StreamName = 'metrics' | 'profiles' | 'events';
export const STREAMS: readonly StreamName[] = ['metrics', 'profiles', 'events'];

/** Where a stream stands; times are epoch milliseconds. */
export interface StreamState {
  readonly cursor: number | null;
  readonly windowStart: number | null;
  readonly windowEnd: number | null;
  readonly windowPosition: number | null;
  readonly windowIsSweep: boolean;
  readonly lastSweepAt: number | null;
  readonly backfillHorizon: number | null;
  readonly backfillNextEnd: number | null;
  readonly backfillPosition: number | null;
  readonly backfillDoneAt: number | null;
}

export const EMPTY_STATE: StreamState = {
  cursor: null,
  windowStart: null,
  windowEnd: null,
  windowPosition: null,
  windowIsSweep: false,
  lastSweepAt: null,
  backfillHorizon: null,
  backfillNextEnd: null,
  backfillPosition: null,
  backfillDoneAt: null,
};

interface StreamDbRow extends Record<string, unknown> {
  stream: string;
  cursor: Date | null;
  window_start: Date | null;
  window_end: Date | null;
  window_position: Date | null;
  window_is_sweep: boolean;
  last_sweep_at: Date | null;
  backfill_horizon: Date | null;
  backfill_next_end: Date | null;
  backfill_position: Date | null;
  backfill_done_at: Date | null;
}

const ms = (d: Date | null): number | null => (d === null ? null : d.getTime());
const iso = (v: number | null): string | null => (v === null ? null : new Date(v).toISOString());

const STATE_COLUMNS =
  'stream, cursor, window_start, window_end, window_position, window_is_sweep, last_sweep_at, ' +
  'backfill_horizon, backfill_next_end, backfill_position, backfill_done_at';

export async function loadStreamStates(db: Db, accountId: string): Promise<Map<StreamName, StreamState>> {
  const rows = await db.query<StreamDbRow>(`SELECT ${STATE_COLUMNS} FROM klaviyo_sync_streams WHERE account_id = $1`, [
    accountId,
  ]);
  const states = new Map<StreamName, StreamState>();
  for (const r of rows) {
    states.set(r.stream as StreamName, {
      cursor: ms(r.cursor),
      windowStart: ms(r.window_start),
      windowEnd: ms(r.window_end),
      windowPosition: ms(r.window_position),
      windowIsSweep: r.window_is_sweep,
      lastSweepAt: ms(r.last_sweep_at),
      backfillHorizon: ms(r.backfill_horizon),
      backfillNextEnd: ms(r.backfill_next_end),
      backfillPosition: ms(r.backfill_position),
      backfillDoneAt: ms(r.backfill_done_at),
    });
  }
  return states;
}

/** Stores a stream's state and adds the rows a page brought, in the caller's transaction. */
export async function saveStreamState(
  db: Db,
  accountId: string,
  stream: StreamName,
  state: StreamState,
  rowsPulled: number,
): Promise<void> {
  await db.query(
    `INSERT INTO klaviyo_sync_streams (account_id, ${STATE_COLUMNS}, rows_pulled, last_run_rows_pulled)
     VALUES ($1, $2, $3::timestamptz, $4::timestamptz, $5::timestamptz, $6::timestamptz, $7, $8::timestamptz,
             $9::timestamptz, $10::timestamptz, $11::timestamptz, $12::timestamptz, $13::int8, $13::int8)
     ON CONFLICT (account_id, stream) DO UPDATE SET
       cursor = excluded.cursor, window_start = excluded.window_start, window_end = excluded.window_end,
       window_position = excluded.window_position, window_is_sweep = excluded.window_is_sweep,
       last_sweep_at = excluded.last_sweep_at, backfill_horizon = excluded.backfill_horizon,
       backfill_next_end = excluded.backfill_next_end, backfill_position = excluded.backfill_position,
       backfill_done_at = excluded.backfill_done_at,
       rows_pulled = klaviyo_sync_streams.rows_pulled + excluded.rows_pulled,
       last_run_rows_pulled = klaviyo_sync_streams.last_run_rows_pulled + excluded.rows_pulled,
       updated_at = now()`,
    [
      accountId,
      stream,
      iso(state.cursor),
      iso(state.windowStart),
      iso(state.windowEnd),
      iso(state.windowPosition),
      state.windowIsSweep,
      iso(state.lastSweepAt),
      iso(state.backfillHorizon),
      iso(state.backfillNextEnd),
      iso(state.backfillPosition),
      iso(state.backfillDoneAt),
      String(rowsPulled),
    ],
  );
}

/** A stream's run begins: its per-run count starts again. */
export async function markRunStarted(db: Db, accountId: string, stream: StreamName, at: Date): Promise<void> {
  await db.query(
    `INSERT INTO klaviyo_sync_streams (account_id, stream, last_run_at, last_run_rows_pulled)
     VALUES ($1, $2, $3::timestamptz, 0)
     ON CONFLICT (account_id, stream) DO UPDATE SET last_run_at = excluded.last_run_at, last_run_rows_pulled = 0,
       updated_at = now()`,
    [accountId, stream, at.toISOString()],
  );
}

export async function markRunSucceeded(db: Db, accountId: string, stream: StreamName, at: Date): Promise<void> {
  await db.query(
    `UPDATE klaviyo_sync_streams SET last_success_at = $3::timestamptz, updated_at = now()
     WHERE account_id = $1 AND stream = $2`,
    [accountId, stream, at.toISOString()],
  );
}

/** The message must already be free of secrets and personal data (the caller redacts it). */
export async function markRunFailed(
  db: Db,
  accountId: string,
  stream: StreamName,
  at: Date,
  message: string,
): Promise<void> {
  await db.query(
    `UPDATE klaviyo_sync_streams SET last_error_at = $3::timestamptz, last_error = $4, updated_at = now()
     WHERE account_id = $1 AND stream = $2`,
    [accountId, stream, at.toISOString(), message],
  );
}

// ---------------------------------------------------------------------------------------------
// The lease: one run per account at a time.

/** Takes the lease when it is free or expired (or already ours); false when another run holds it. */
export async function acquireLease(db: Db, accountId: string, owner: string, ttlMs: number): Promise<boolean> {
  const rows = await db.query<{ owner: string }>(
    `INSERT INTO klaviyo_sync_leases AS l (account_id, owner, expires_at)
     VALUES ($1, $2, now() + $3::int8 * interval '1 millisecond')
     ON CONFLICT (account_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
     WHERE l.expires_at < now() OR l.owner = excluded.owner
     RETURNING l.owner`,
    [accountId, owner, String(ttlMs)],
  );
  return rows.length === 1;
}

/** Extends our lease; false when it is no longer ours (it expired and another run took it). */
export async function renewLease(db: Db, accountId: string, owner: string, ttlMs: number): Promise<boolean> {
  const rows = await db.query<{ owner: string }>(
    `UPDATE klaviyo_sync_leases SET expires_at = now() + $3::int8 * interval '1 millisecond'
     WHERE account_id = $1 AND owner = $2 RETURNING owner`,
    [accountId, owner, String(ttlMs)],
  );
  return rows.length === 1;
}

export async function releaseLease(db: Db, accountId: string, owner: string): Promise<void> {
  await db.query('DELETE FROM klaviyo_sync_leases WHERE account_id = $1 AND owner = $2', [accountId, owner]);
}

// ---------------------------------------------------------------------------------------------
// Rejects.

/** How a set-aside item is known across re-reads: type:id, or a hash of its JSON. */
export function itemKey(item: unknown): string {
  const r = item as { type?: unknown; id?: unknown } | null;
  if (r && typeof r.type === 'string' && typeof r.id === 'string' && r.id.length > 0 && r.id.length <= 64) {
    return `${r.type}:${r.id}`;
  }
  return `sha256:${createHash('sha256')
    .update(JSON.stringify(item) ?? 'undefined')
    .digest('hex')}`;
}

/**
 * One row per item set aside (several problems of one item join in one reason). JSON.stringify
 * escapes NUL and lone surrogates, so the text is storable whatever made the item unstorable.
 */
export async function recordRejects(
  db: Db,
  accountId: string,
  stream: StreamName,
  items: readonly RejectedItem[],
  sourceUrl: string,
): Promise<void> {
  if (items.length === 0) return;
  const byKey = new Map<string, { pointer: string; code: string; reasons: string[]; json: string }>();
  for (const it of items) {
    const key = itemKey(it.item);
    const seen = byKey.get(key);
    if (seen) seen.reasons.push(`${it.pointer}: ${it.detail}`);
    else
      byKey.set(key, {
        pointer: it.pointer,
        code: it.code,
        reasons: [`${it.pointer}: ${it.detail}`],
        json: JSON.stringify(it.item) ?? 'null',
      });
  }
  const keys = [...byKey.keys()].sort();
  const rows = keys.map((k) => {
    const r = byKey.get(k) as { pointer: string; code: string; reasons: string[]; json: string };
    return { item_key: k, pointer: r.pointer, code: r.code, reason: r.reasons.join('; '), item_json: r.json };
  });
  await db.query(
    `INSERT INTO klaviyo_sync_rejects AS r (account_id, stream, item_key, pointer, code, reason, item_json, source_url)
     SELECT $1, $2, x.item_key, x.pointer, x.code, x.reason, x.item_json, $4
     FROM jsonb_to_recordset($3::jsonb) AS x(item_key text, pointer text, code text, reason text, item_json text)
     ON CONFLICT (account_id, stream, item_key) DO UPDATE SET
       pointer = excluded.pointer, code = excluded.code, reason = excluded.reason, item_json = excluded.item_json,
       source_url = excluded.source_url, last_seen_at = now()`,
    [accountId, stream, JSON.stringify(rows), sourceUrl],
  );
}

// ---------------------------------------------------------------------------------------------
// What GET /api/sync-status reports.

export interface StreamStatusRow {
  readonly stream: StreamName;
  readonly cursor: Date | null;
  readonly windowEnd: Date | null;
  readonly backfillHorizon: Date | null;
  readonly backfillNextEnd: Date | null;
  readonly backfillDoneAt: Date | null;
  readonly rowsPulled: number;
  readonly lastRunRowsPulled: number;
  readonly lastRunAt: Date | null;
  readonly lastSuccessAt: Date | null;
  readonly lastErrorAt: Date | null;
  readonly lastError: string | null;
  readonly rejects: number;
}

interface StatusDbRow extends Record<string, unknown> {
  stream: string;
  cursor: Date | null;
  window_end: Date | null;
  backfill_horizon: Date | null;
  backfill_next_end: Date | null;
  backfill_done_at: Date | null;
  rows_pulled: string;
  last_run_rows_pulled: string;
  last_run_at: Date | null;
  last_success_at: Date | null;
  last_error_at: Date | null;
  last_error: string | null;
  rejects: string;
}

export async function readStreamStatus(db: Db, accountId: string): Promise<StreamStatusRow[]> {
  const rows = await db.query<StatusDbRow>(
    `SELECT s.stream, s.cursor, s.window_end, s.backfill_horizon, s.backfill_next_end, s.backfill_done_at,
            s.rows_pulled::text AS rows_pulled, s.last_run_rows_pulled::text AS last_run_rows_pulled,
            s.last_run_at, s.last_success_at, s.last_error_at, s.last_error,
            (SELECT count(*) FROM klaviyo_sync_rejects r
              WHERE r.account_id = s.account_id AND r.stream = s.stream)::text AS rejects
     FROM klaviyo_sync_streams s WHERE s.account_id = $1 ORDER BY s.stream`,
    [accountId],
  );
  return rows.map((r) => ({
    stream: r.stream as StreamName,
    cursor: r.cursor,
    windowEnd: r.window_end,
    backfillHorizon: r.backfill_horizon,
    backfillNextEnd: r.backfill_next_end,
    backfillDoneAt: r.backfill_done_at,
    rowsPulled: Number(r.rows_pulled),
    lastRunRowsPulled: Number(r.last_run_rows_pulled),
    lastRunAt: r.last_run_at,
    lastSuccessAt: r.last_success_at,
    lastErrorAt: r.last_error_at,
    lastError: r.last_error,
    rejects: Number(r.rejects),
  }));
}
