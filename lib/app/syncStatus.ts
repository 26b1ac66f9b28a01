import type { Db } from '../db/port';
import { readStreamStatus, STREAMS, type StreamName, type StreamStatusRow } from '../repositories/sync';

/**
 * GET /api/sync-status: per stream, what the last runs did and how far behind the data is.
 *
 * lag_seconds: for events, how far the cursor (everything before it has been read) is behind now;
 * for profiles and metrics, the age of the last successful run. Null until the stream first ran.
 */
export interface SyncStreamAttributes {
  readonly last_run_at: string | null;
  readonly last_success_at: string | null;
  readonly cursor: string | null;
  readonly lag_seconds: number | null;
  readonly rows_pulled: number;
  readonly rows_pulled_last_run: number;
  readonly rejects: number;
  readonly last_error: { readonly at: string | null; readonly message: string } | null;
  readonly backfill: {
    readonly horizon: string | null;
    readonly read_down_to: string | null;
    readonly complete: boolean;
    readonly completed_at: string | null;
  } | null;
}

export interface SyncStatusDocument {
  readonly data: { readonly type: 'sync-stream'; readonly id: StreamName; readonly attributes: SyncStreamAttributes }[];
  readonly meta: { readonly account_id: string; readonly now: string };
}

const iso = (d: Date | null) => (d === null ? null : d.toISOString());
const secondsSince = (now: Date, d: Date | null) =>
  d === null ? null : Math.max(0, Math.round((now.getTime() - d.getTime()) / 1000));

function attributesOf(stream: StreamName, row: StreamStatusRow | undefined, now: Date): SyncStreamAttributes {
  if (!row) {
    return {
      last_run_at: null,
      last_success_at: null,
      cursor: null,
      lag_seconds: null,
      rows_pulled: 0,
      rows_pulled_last_run: 0,
      rejects: 0,
      last_error: null,
      backfill: null,
    };
  }
  return {
    last_run_at: iso(row.lastRunAt),
    last_success_at: iso(row.lastSuccessAt),
    cursor: iso(row.cursor),
    lag_seconds: stream === 'events' ? secondsSince(now, row.cursor) : secondsSince(now, row.lastSuccessAt),
    rows_pulled: row.rowsPulled,
    rows_pulled_last_run: row.lastRunRowsPulled,
    rejects: row.rejects,
    last_error: row.lastError === null ? null : { at: iso(row.lastErrorAt), message: row.lastError },
    backfill:
      stream === 'events' && row.backfillHorizon !== null
        ? {
            horizon: iso(row.backfillHorizon),
            read_down_to: iso(row.backfillDoneAt !== null ? row.backfillHorizon : row.backfillNextEnd),
            complete: row.backfillDoneAt !== null,
            completed_at: iso(row.backfillDoneAt),
          }
        : null,
  };
}

export async function getSyncStatusDocument(db: Db, accountId: string, now = new Date()): Promise<SyncStatusDocument> {
  const rows = new Map((await readStreamStatus(db, accountId)).map((r) => [r.stream, r]));
  return {
    data: STREAMS.map((stream) => ({
      type: 'sync-stream' as const,
      id: stream,
      attributes: attributesOf(stream, rows.get(stream), now),
    })),
    meta: { account_id: accountId, now: now.toISOString() },
  };
}
