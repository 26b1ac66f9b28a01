import type { Db } from '../db/port';

/** Queue messages the ingest consumer could not store (migrations/0014_queue_ingest.sql). */
export interface QueueReject {
  readonly accountId: string;
  readonly messageId: string;
  readonly kind: string;
  /** A JSON:API error code, or the SQLSTATE the database answered. */
  readonly code: string;
  readonly reason: string;
  readonly body: string;
}

/**
 * One row per message, however often it is received: a redelivery counts up and keeps the latest
 * reason. Set-based: one statement for every reject of a batch.
 */
export async function recordQueueRejects(db: Db, rejects: readonly QueueReject[]): Promise<void> {
  if (rejects.length === 0) return;
  const byKey = new Map<string, QueueReject>();
  for (const r of rejects) byKey.set(`${r.accountId}\u0000${r.messageId}`, r);
  const rows = [...byKey.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, r]) => ({
      account_id: r.accountId,
      message_id: r.messageId,
      kind: r.kind,
      code: r.code,
      reason: r.reason,
      body: r.body,
    }));
  await db.query(
    `INSERT INTO klaviyo_queue_rejects AS r (account_id, message_id, kind, code, reason, body)
     SELECT x.account_id, x.message_id, x.kind, x.code, x.reason, x.body
       FROM jsonb_to_recordset($1::jsonb) AS x(account_id text, message_id text, kind text, code text, reason text, body text)
     ON CONFLICT (account_id, message_id) DO UPDATE SET
       kind = excluded.kind, code = excluded.code, reason = excluded.reason, body = excluded.body,
       receive_count = r.receive_count + 1, last_seen_at = now()`,
    [JSON.stringify(rows)],
  );
}
