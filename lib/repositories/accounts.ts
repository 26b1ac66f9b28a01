import type { Db } from '../db/port';

/**
 * Accounts (klaviyo_accounts): one row per Klaviyo account this deployment keeps. Every other table
 * is keyed by account_id first, and every repository function takes the account it works on. The row
 * itself is what the aggregator locks (lib/repositories/aggregates.ts, tryLockAggregation) and where
 * the sync finds the secret holding the account's Klaviyo key.
 */

export interface AccountRow {
  readonly accountId: string;
  readonly displayName: string | null;
  /** Secrets Manager secret (ARN or name) holding the account's Klaviyo private key. */
  readonly klaviyoKeySecretId: string | null;
  readonly createdAt: Date;
}

interface AccountDbRow extends Record<string, unknown> {
  account_id: string;
  display_name: string | null;
  klaviyo_key_secret_id: string | null;
  created_at: Date;
}

const ACCOUNT_COLUMNS = 'account_id, display_name, klaviyo_key_secret_id, created_at';

function toAccountRow(r: AccountDbRow): AccountRow {
  return {
    accountId: r.account_id,
    displayName: r.display_name,
    klaviyoKeySecretId: r.klaviyo_key_secret_id,
    createdAt: r.created_at,
  };
}

/** The account's row, or null when the deployment does not know it. */
export async function getAccount(db: Db, accountId: string): Promise<AccountRow | null> {
  const rows = await db.query<AccountDbRow>(`SELECT ${ACCOUNT_COLUMNS} FROM klaviyo_accounts WHERE account_id = $1`, [
    accountId,
  ]);
  return rows[0] ? toAccountRow(rows[0]) : null;
}

/** Creates the account's row if it has none (writes of events do it too); never changes a stored row. */
export async function ensureAccount(db: Db, accountId: string): Promise<void> {
  await db.query(`INSERT INTO klaviyo_accounts (account_id) VALUES ($1) ON CONFLICT (account_id) DO NOTHING`, [
    accountId,
  ]);
}

/** Creates or updates an account: its display name and the secret holding its Klaviyo key. */
export async function saveAccount(
  db: Db,
  account: {
    readonly accountId: string;
    readonly displayName?: string | null;
    readonly klaviyoKeySecretId?: string | null;
  },
): Promise<AccountRow> {
  const rows = await db.query<AccountDbRow>(
    `INSERT INTO klaviyo_accounts (account_id, display_name, klaviyo_key_secret_id)
     VALUES ($1, $2, $3)
     ON CONFLICT (account_id) DO UPDATE SET display_name = excluded.display_name,
       klaviyo_key_secret_id = excluded.klaviyo_key_secret_id
     RETURNING ${ACCOUNT_COLUMNS}`,
    [account.accountId, account.displayName ?? null, account.klaviyoKeySecretId ?? null],
  );
  return toAccountRow(rows[0] as AccountDbRow);
}

/**
 * Maintenance (it reads every account, so it is on the statement check's allow-list): the accounts
 * with dirty marks waiting, the aggregator's work list, oldest waiting mark first. One read of the
 * marks' account index (klaviyo_aggregate_dirty_marked_idx, account_id then first_marked_at: an
 * index-only scan), grouped by account, joined with the accounts on the account id: on Citus both
 * are distributed and co-located on account_id, so each shard answers for its own accounts and the
 * coordinator only sorts. An account that has marks but no row (marks written around ingest, which
 * registers its account) gets its row, which its lock needs: a statement of its own, for that account.
 */
export async function accountsWithWork(db: Db): Promise<string[]> {
  const rows = await db.query<{ account_id: string; registered: boolean }>(
    `SELECT w.account_id, a.account_id IS NOT NULL AS registered
       FROM (SELECT d.account_id, min(d.first_marked_at) AS oldest FROM klaviyo_aggregate_dirty d GROUP BY d.account_id) w
       LEFT JOIN klaviyo_accounts a ON a.account_id = w.account_id
      ORDER BY w.oldest, w.account_id`,
  );
  for (const r of rows) if (!r.registered) await ensureAccount(db, r.account_id);
  return rows.map((r) => r.account_id);
}

/**
 * Maintenance: the marks waiting in every account, and the age of the oldest, for the scheduled
 * run's log line.
 */
export async function backlogOfAllAccounts(db: Db): Promise<{ bucketsWaiting: number; oldestAgeSeconds: number }> {
  const rows = await db.query<{ waiting: string; oldest_age: string | null }>(
    `SELECT count(*) AS waiting, extract(epoch FROM clock_timestamp() - min(first_marked_at)) AS oldest_age
       FROM klaviyo_aggregate_dirty`,
  );
  const row = rows[0];
  const age = row?.oldest_age === null || row?.oldest_age === undefined ? 0 : Number(row.oldest_age);
  return { bucketsWaiting: Number(row?.waiting ?? 0), oldestAgeSeconds: Math.max(0, Math.round(age)) };
}

/** Maintenance: every account, by id (the dimension backfill and the sync go through them one by one). */
export async function listAccounts(db: Db): Promise<AccountRow[]> {
  const rows = await db.query<AccountDbRow>(`SELECT ${ACCOUNT_COLUMNS} FROM klaviyo_accounts ORDER BY account_id`);
  return rows.map(toAccountRow);
}

export interface AccountToSync {
  readonly accountId: string;
  /** The secret holding its Klaviyo key; null: the key configured in the environment. */
  readonly klaviyoKeySecretId: string | null;
  /** When its sync last started (the latest of its streams), null if it never ran. */
  readonly lastRunAt: Date | null;
}

/**
 * Maintenance (it reads every account, so it is on the statement check's allow-list): the accounts
 * the scheduled sync goes through: every account whose row names a key secret, plus
 * `environmentAccountId` (the configured sync account whose key the environment holds: the
 * single-account setup) when given, least recently synced first (never synced before all), so that an
 * account a run could not reach is the first of the next run.
 */
export async function accountsToSync(db: Db, environmentAccountId: string | null): Promise<AccountToSync[]> {
  const rows = await db.query<{ account_id: string; klaviyo_key_secret_id: string | null; last_run_at: Date | null }>(
    `SELECT c.account_id, a.klaviyo_key_secret_id, last_run.at AS last_run_at
       FROM (SELECT k.account_id FROM klaviyo_accounts k WHERE k.klaviyo_key_secret_id IS NOT NULL
             UNION
             SELECT $1::text WHERE $1::text IS NOT NULL) c
       LEFT JOIN klaviyo_accounts a ON a.account_id = c.account_id
      CROSS JOIN LATERAL (SELECT max(s.last_run_at) AS at FROM klaviyo_sync_streams s
                           WHERE s.account_id = c.account_id) last_run
      ORDER BY last_run.at NULLS FIRST, c.account_id`,
    [environmentAccountId],
  );
  return rows.map((r) => ({
    accountId: r.account_id,
    klaviyoKeySecretId: r.klaviyo_key_secret_id,
    lastRunAt: r.last_run_at === null ? null : new Date(r.last_run_at),
  }));
}
