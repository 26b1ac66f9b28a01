import type { Db } from '../db/port';

/** Queue messages the ingest consumer could not store (migrations/0013_queue_ingest.sql). */
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
 * reason. Set-based: one statement per account (each statement touches one account's rows).
 */
export async function recordQueueRejects(db: Db, rejects: readonly QueueReject[]): Promise<void> {
  const byAccount = new Map<string, Map<string, QueueReject>>();
  for (const r of rejects) {
    const messages = byAccount.get(r.accountId) ?? new Map<string, QueueReject>();
    messages.set(r.messageId, r);
    byAccount.set(r.accountId, messages);
  }
  for (const accountId of [...byAccount.keys()].sort()) {
    const messages = byAccount.get(accountId) as Map<string, QueueReject>;
    const rows = [...messages.keys()].sort().map((messageId) => {
      const r = messages.get(messageId) as QueueReject;
      return { message_id: messageId, kind: r.kind, code: r.code, reason: r.reason, body: r.body };
    });
    await db.query(
      `INSERT INTO klaviyo_queue_rejects AS r (account_id, message_id, kind, code, reason, body)
       SELECT $1, x.message_id, x.kind, x.code, x.reason, x.body
         FROM jsonb_to_recordset($2::jsonb) AS x(message_id text, kind text, code text, reason text, body text)
       ON CONFLICT (account_id, message_id) DO UPDATE SET
         kind = excluded.kind, code = excluded.code, reason = excluded.reason, body = excluded.body,
         receive_count = r.receive_count + 1, last_seen_at = now()`,
      [accountId, JSON.stringify(rows)],
    );
  }
}
