import type { Db } from '../../../lib/db/port';
import { createPostgresDb } from '../../../lib/db/postgres';
import { tuning } from '../../support/env';

/**
 * Holding a handler in the middle of its transaction, from a second client, so that a fault can hit
 * it there: the second client takes a table lock that the handler's next statement must wait for.
 */
export interface Hold {
  /** The backend holding the lock. */
  readonly pid: number;
  /** Ends the holding transaction (a rollback: it wrote nothing). */
  release(): Promise<void>;
}

export async function holdLock(db: Db, lockStatement: string): Promise<Hold> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let onLocked!: (pid: number) => void;
  const locked = new Promise<number>((resolve) => {
    onLocked = resolve;
  });
  const done = db
    .transaction(async (tx) => {
      const rows = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await tx.query(lockStatement);
      onLocked(rows[0]?.pid ?? 0);
      await released;
      // Nothing to keep: roll back.
      throw new HoldReleased();
    })
    .catch((err: unknown) => {
      if (!(err instanceof HoldReleased)) return err;
      return undefined;
    });
  const pid = await Promise.race([
    locked,
    done.then((err) => {
      throw err instanceof Error ? err : new Error('the lock could not be taken');
    }),
  ]);
  return {
    pid,
    release: async () => {
      release();
      await done;
    },
  };
}

class HoldReleased extends Error {}

/** Backends of this database (other than the caller's) that wait for a lock, i.e. are held. */
export async function waitingBackends(db: Db): Promise<number[]> {
  const rows = await db.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
     ORDER BY pid`,
  );
  return rows.map((r) => r.pid);
}

/** Polls until some backend waits for a lock; returns their pids. */
export async function untilHeld(db: Db, timeoutMs = 20_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = await waitingBackends(db);
    if (pids.length > 0) return pids;
    if (Date.now() > deadline) throw new Error('no backend started waiting for the held lock');
    await sleep(10);
  }
}

/** Relations on which a backend holds a RowExclusiveLock: the tables its transaction wrote so far. */
export async function tablesWrittenBy(db: Db, pid: number): Promise<string[]> {
  const rows = await db.query<{ relname: string }>(
    `SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
     WHERE l.pid = $1 AND l.mode = 'RowExclusiveLock' AND l.granted AND c.relkind = 'r'
     ORDER BY c.relname`,
    [pid],
  );
  return rows.map((r) => r.relname);
}

export async function terminate(db: Db, pids: readonly number[]): Promise<void> {
  for (const pid of pids) await db.query('SELECT pg_terminate_backend($1::int)', [pid]);
}

/** Terminates the connections the handlers' shared client (application_name klaviyo-analytics) holds. */
export async function terminateHandlerConnections(db: Db): Promise<number> {
  const rows = await db.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'klaviyo-analytics'`,
  );
  await terminate(
    db,
    rows.map((r) => r.pid),
  );
  return rows.length;
}

/**
 * While `work` runs, terminates every backend that waits on the held lock, as soon as it waits: each
 * of the driver's retries meets the same fate, so the fault lasts until `work` gives up.
 * Returns work's outcome and how many backends were terminated.
 */
export async function terminateWhileWaiting<T>(db: Db, work: Promise<T>): Promise<{ result: T; terminated: number }> {
  let settled = false;
  const watched = work.finally(() => {
    settled = true;
  });
  let terminated = 0;
  while (!settled) {
    const pids = await waitingBackends(db);
    if (pids.length > 0) {
      await terminate(db, pids);
      terminated += pids.length;
    }
    await sleep(10);
  }
  return { result: await watched, terminated };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `hold` in a transaction on a connection of its own and keeps that transaction open until
 * `write` waits for it (some backend waits for a lock), then commits it; returns both results.
 */
export async function whileHeld<H, W>(
  url: string,
  hold: (tx: Db) => Promise<H>,
  write: () => Promise<W>,
): Promise<[H, W]> {
  const holder = createPostgresDb({ url, ...tuning, poolMax: 1 });
  const monitor = createPostgresDb({ url, ...tuning, poolMax: 1 });
  let release = () => undefined as void;
  const released = new Promise<void>((resolve) => (release = resolve));
  try {
    let holding = () => undefined as void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const holderDone = holder.transaction(async (tx) => {
      const result = await hold(tx);
      holding();
      await released;
      return result;
    });
    await held;
    const writer = write();
    await untilHeld(monitor);
    release();
    return [await holderDone, await writer];
  } finally {
    release();
    await holder.close();
    await monitor.close();
  }
}
