import { readFileSync } from 'node:fs';
import type { Db, Row, SqlParam } from '../../lib/db/port';

/**
 * Where a run's time goes, statement by statement, measured from the client: a Db that forwards to
 * another and records each statement's text, parameters and round trip (planning, execution and the
 * wire), and each transaction's whole time, so that what is not in any statement (BEGIN, COMMIT, the
 * application's own work between statements) shows as the remainder. Statements are named after the
 * run (the recording itself costs a clock read, and with `cpuNow` a read of the server processes' CPU
 * time: statements run one at a time, so what the server used meanwhile is the statement's), and kept with their parameters so that
 * their planning can be timed afterwards on their own (planningTimes).
 */
export interface StatementSample {
  readonly text: string;
  readonly params: readonly SqlParam[];
  readonly ms: number;
  /** CPU the server used meanwhile (cpuNow's difference), null without a reader. */
  readonly serverCpuMs: number | null;
  readonly inTransaction: boolean;
}

export interface TimedDb {
  readonly db: Db;
  readonly statements: StatementSample[];
  /** Transactions' times, from the call to the commit's answer. */
  readonly transactions: number[];
}

export function timedDb(inner: Db, cpuNow: () => number | null = () => null): TimedDb {
  const statements: StatementSample[] = [];
  const transactions: number[] = [];
  const wrap = (db: Db, inTransaction: boolean): Db => ({
    driver: db.driver,
    query: async <T extends Row>(text: string, params: readonly SqlParam[] = []) => {
      const cpuBefore = cpuNow();
      const started = performance.now();
      const rows = await db.query<T>(text, params);
      const ms = performance.now() - started;
      const cpuAfter = cpuNow();
      const serverCpuMs = cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore;
      statements.push({ text, params, ms, serverCpuMs, inTransaction });
      return rows;
    },
    transaction: async <R>(fn: (tx: Db) => Promise<R>) => {
      const started = performance.now();
      const result = await db.transaction((tx) => fn(wrap(tx, true)));
      if (!inTransaction) transactions.push(performance.now() - started);
      return result;
    },
  });
  return { db: wrap(inner, false), statements, transactions };
}

/**
 * The server's planning time of each statement (EXPLAIN (SUMMARY), which plans with the parameters
 * as the statement ran, custom plan, without executing), in a transaction rolled back.
 */
export async function planningTimes(db: Db, statements: readonly StatementSample[]): Promise<number[]> {
  const times: number[] = [];
  const rollback = new Error('planning only');
  await db
    .transaction(async (tx) => {
      for (const s of statements) {
        const rows = await tx.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (SUMMARY, FORMAT JSON) ${s.text}`, [
          ...s.params,
        ]);
        times.push(planningMsOf(rows[0]?.['QUERY PLAN']));
      }
      throw rollback;
    })
    .catch((err: unknown) => {
      if (err !== rollback) throw err;
    });
  return times;
}

function planningMsOf(plan: unknown): number {
  const parsed: unknown = typeof plan === 'string' ? JSON.parse(plan) : plan;
  const first: unknown = Array.isArray(parsed) ? parsed[0] : undefined;
  if (typeof first === 'object' && first !== null && 'Planning Time' in first) {
    const ms = first['Planning Time'];
    if (typeof ms === 'number') return ms;
  }
  throw new Error('EXPLAIN (SUMMARY) gave no planning time');
}

/**
 * CPU time (user and system, ms) the given server processes have used so far, read from /proc: only
 * for a server on this machine (the embedded one), null otherwise. On a shared machine a run's wall
 * time follows the other processes' load; the CPU its backends used much less.
 */
export function processCpuMs(pids: readonly number[]): number | null {
  let ticks = 0;
  for (const pid of pids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return null;
    }
    // After the command name in parentheses: state is field 3, utime and stime fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  // The kernel's clock ticks (USER_HZ): 100 on Linux.
  return ticks * 10;
}
