import { aggregateBatch, runAggregation } from '../../lib/app/aggregation';
import { runScheduledAggregation } from '../../lib/app/scheduledAggregation';
import type { Db, Row, SqlParam } from '../../lib/db/port';
import { ensureAccount, getAccount, saveAccount } from '../../lib/repositories/accounts';
import { tryLockAggregation } from '../../lib/repositories/aggregates';
import { ingestEventsPage } from '../../lib/app/ingest';
import { useFreshDatabase } from '../support/database';
import { storeEvents } from '../support/events';
import { dirtyCount, oracleHours, randomEvents, storedHours } from './oracle';

/**
 * The aggregator per account: each account's batches take that account's row lock, so one account
 * being aggregated (or backfilled) never blocks another, and the scheduled run goes round the accounts
 * one batch each. The two accounts use the same metric and profile ids on purpose.
 */
const A = 'acct-a';
const B = 'acct-b';

function events(seed: number, prefix: string, hours: number) {
  return randomEvents(seed, {
    count: 120,
    from: '2024-05-01T00:00:00Z',
    hours,
    metrics: ['m1', 'm2'],
    profiles: 15,
    idPrefix: prefix,
  });
}

/** A Db whose statements that take dirty marks report the account they take them for. */
function recordingTakes(db: Db, taken: string[]): Db {
  const wrap = (inner: Db): Db => ({
    ...inner,
    query: <T extends Row>(text: string, params?: readonly SqlParam[]) => {
      if (text.includes('WITH chosen AS MATERIALIZED') && typeof params?.[0] === 'string') taken.push(params[0]);
      return inner.query<T>(text, params);
    },
    transaction: <R>(fn: (tx: Db) => Promise<R>) => inner.transaction((tx) => fn(wrap(tx))),
  });
  return wrap(db);
}

describe('aggregation per account', () => {
  const t = useFreshDatabase();

  it('keeps an account row: saved with its name and secret, never changed by the implicit registrations', async () => {
    const saved = await saveAccount(t.db, { accountId: A, displayName: 'Acme', klaviyoKeySecretId: 'klaviyo/acme' });
    expect(saved).toMatchObject({ accountId: A, displayName: 'Acme', klaviyoKeySecretId: 'klaviyo/acme' });
    await ensureAccount(t.db, A);
    await storeEvents(t.db, events(9, 'a0', 1), A);
    expect(await getAccount(t.db, A)).toEqual(saved);
    // An account that only has marks gets its row from the aggregator, which locks it.
    expect(await getAccount(t.db, 'acct-new')).toBeNull();
    await storeEvents(t.db, events(10, 'n0', 1), 'acct-new');
    await t.db.query(`DELETE FROM klaviyo_accounts WHERE account_id = 'acct-new'`);
    expect(await runAggregation(t.db, 'acct-new', { timeBudgetMs: 60_000 })).toMatchObject({ status: 'done' });
    expect(await getAccount(t.db, 'acct-new')).toMatchObject({ accountId: 'acct-new', displayName: null });
    await expect(saveAccount(t.db, { accountId: 'not an id' })).rejects.toMatchObject({ code: '23514' });
  });

  it('one account holding its lock does not block another; each account gets exactly its own events', async () => {
    await storeEvents(t.db, events(1, 'a', 6), A);
    await storeEvents(t.db, events(2, 'b', 6), B);
    await ensureAccount(t.db, A);
    const [duringHold, skippedA] = await t.db.transaction(async (tx) => {
      // Another run is busy with account A (a long backfill, say): it holds A's row lock.
      expect(await tryLockAggregation(tx, A)).toBe(true);
      const runB = await runAggregation(t.db, B, { timeBudgetMs: 60_000 });
      const runA = await runAggregation(t.db, A, { timeBudgetMs: 60_000 });
      return [runB, runA] as const;
    });
    expect(duringHold).toMatchObject({ status: 'done', stoppedBy: 'drained', bucketsWaiting: 0 });
    expect(duringHold.bucketsRecomputed).toBeGreaterThan(0);
    expect(skippedA).toMatchObject({ status: 'skipped', stoppedBy: 'lock', bucketsRecomputed: 0 });
    expect(await dirtyCount(t.db, B)).toBe(0);
    expect(await dirtyCount(t.db, A)).toBeGreaterThan(0);
    expect(await storedHours(t.db, B)).toEqual(await oracleHours(t.db, B));
    expect(await storedHours(t.db, A)).toEqual([]);

    expect(await runAggregation(t.db, A, { timeBudgetMs: 60_000 })).toMatchObject({
      status: 'done',
      bucketsWaiting: 0,
    });
    const hoursA = await storedHours(t.db, A);
    expect(hoursA).toEqual(await oracleHours(t.db, A));
    // Same metric ids and hours in both accounts, different events: the figures differ.
    expect(hoursA).not.toEqual(await storedHours(t.db, B));
  });

  it('the scheduled run aggregates the accounts another run does not hold, and leaves that one to it', async () => {
    await storeEvents(t.db, events(3, 'a2', 6), A);
    await storeEvents(t.db, events(4, 'b2', 6), B);
    const result = await t.db.transaction(async (tx) => {
      expect(await tryLockAggregation(tx, A)).toBe(true);
      return runScheduledAggregation(t.db, {
        remainingMs: undefined,
        marginMs: 0,
        batchBuckets: 500,
        timeBudgetMs: 60_000,
      });
    });
    expect(result).toMatchObject({ status: 'done', accounts: 2, accountsLocked: 1 });
    expect(await dirtyCount(t.db, B)).toBe(0);
    expect(await dirtyCount(t.db, A)).toBeGreaterThan(0);
    expect(result.bucketsWaiting).toBe(await dirtyCount(t.db, A));
    expect(await storedHours(t.db, B)).toEqual(await oracleHours(t.db, B));

    const all = await runScheduledAggregation(t.db, {
      remainingMs: undefined,
      marginMs: 0,
      batchBuckets: 500,
      timeBudgetMs: 60_000,
    });
    expect(all).toMatchObject({ status: 'done', accounts: 1, accountsLocked: 0, bucketsWaiting: 0 });
    expect(await storedHours(t.db, A)).toEqual(await oracleHours(t.db, A));
  });

  it("ingest into an account never waits for the aggregator holding that account's lock", async () => {
    const page = {
      data: [
        {
          type: 'event',
          id: 'held-1',
          attributes: { datetime: '2024-05-02T10:00:00+00:00', event_properties: { $value: 5 } },
          relationships: {
            metric: { data: { type: 'metric', id: 'm1' } },
            profile: { data: { type: 'profile', id: 'p_1' } },
          },
        },
      ],
    };
    await ensureAccount(t.db, A);
    const written = await t.db.transaction(async (tx) => {
      expect(await tryLockAggregation(tx, A)).toBe(true);
      // On another connection, while the lock is held: the metrics upsert registers the account
      // (ON CONFLICT DO NOTHING on the locked row) and the marks are the account's own rows. A wait
      // here would never end: this transaction holds the lock until the ingest returns.
      return ingestEventsPage(t.db, A, page);
    });
    expect(written).toMatchObject({ received: 1, inserted: 1 });
  });

  it('goes round the accounts one batch each, so a backlog in one does not make the others wait for it', async () => {
    // A has a backlog of many hours; B a few. With 4 marks a batch, A needs several batches.
    await storeEvents(t.db, events(5, 'a3', 48), A);
    await storeEvents(t.db, events(6, 'b3', 2), B);
    const marksA = await dirtyCount(t.db, A);
    expect(marksA).toBeGreaterThan(8);
    const taken: string[] = [];
    const result = await runScheduledAggregation(recordingTakes(t.db, taken), {
      remainingMs: undefined,
      marginMs: 0,
      batchBuckets: 4,
      timeBudgetMs: 600_000,
    });
    expect(result).toMatchObject({ status: 'done', accounts: 2, bucketsWaiting: 0 });
    // The oldest marks' account first, then the other, before either gets a second batch.
    expect(new Set(taken.slice(0, 2))).toEqual(new Set([A, B]));
    expect(taken.filter((a) => a === B).length).toBeLessThanOrEqual(2);
    expect(taken.filter((a) => a === A).length).toBeGreaterThanOrEqual(Math.ceil(marksA / 4));
    expect(await storedHours(t.db, A)).toEqual(await oracleHours(t.db, A));
    expect(await storedHours(t.db, B)).toEqual(await oracleHours(t.db, B));
  });

  it('runs started together take their own shares of the accounts first, and every account ends exact', async () => {
    const accounts = ['acct-p0', 'acct-p1', 'acct-p2', 'acct-p3'];
    for (const [i, account] of accounts.entries()) await storeEvents(t.db, events(20 + i, `p${i}`, 12), account);
    const taken: [string[], string[]] = [[], []];
    const options = { remainingMs: undefined, marginMs: 0, batchBuckets: 4, timeBudgetMs: 600_000 };
    const results = await Promise.all(
      [0, 1].map((index) =>
        runScheduledAggregation(recordingTakes(t.db, taken[index] as string[]), { ...options, run: { index, of: 2 } }),
      ),
    );
    for (const result of results) expect(result).toMatchObject({ status: 'done', accounts: 4 });
    // The oldest marks' account goes to run 0, the next to run 1: they start apart.
    expect(taken[0][0]).toBe('acct-p0');
    expect(taken[1][0]).toBe('acct-p1');
    for (const account of accounts) {
      expect(await dirtyCount(t.db, account)).toBe(0);
      expect(await storedHours(t.db, account)).toEqual(await oracleHours(t.db, account));
    }
  });

  it("a run takes its own share first, then helps with the others' accounts, leaving the one another run holds", async () => {
    // Shares of two runs, by the oldest marks: run 0 [h0, h2], run 1 [h1, h3].
    const accounts = ['acct-h0', 'acct-h1', 'acct-h2', 'acct-h3'];
    for (const [i, account] of accounts.entries()) {
      await storeEvents(t.db, events(30 + i, `h${i}`, 3), account);
      await t.db.query(
        `UPDATE klaviyo_aggregate_dirty SET first_marked_at = now() - make_interval(mins => 10 - $2::int) WHERE account_id = $1`,
        [account, i],
      );
    }
    await ensureAccount(t.db, 'acct-h0');
    const taken: string[] = [];
    const result = await t.db.transaction(async (tx) => {
      // Run 0 is busy with h0.
      expect(await tryLockAggregation(tx, 'acct-h0')).toBe(true);
      return runScheduledAggregation(recordingTakes(t.db, taken), {
        remainingMs: undefined,
        marginMs: 0,
        batchBuckets: 500,
        timeBudgetMs: 60_000,
        run: { index: 1, of: 2 },
      });
    });
    expect(taken).toEqual(['acct-h1', 'acct-h3', 'acct-h2']);
    expect(result).toMatchObject({ status: 'done', accounts: 4, accountsLocked: 1 });
    expect(await dirtyCount(t.db, 'acct-h0')).toBeGreaterThan(0);
    for (const account of accounts.slice(1)) {
      expect(await dirtyCount(t.db, account)).toBe(0);
      expect(await storedHours(t.db, account)).toEqual(await oracleHours(t.db, account));
    }
    await expect(
      runScheduledAggregation(t.db, {
        remainingMs: undefined,
        marginMs: 0,
        batchBuckets: 1,
        timeBudgetMs: 1,
        run: { index: 2, of: 2 },
      }),
    ).rejects.toThrow(RangeError);
  });

  it('the scheduled run registers an account that has marks but no row, and aggregates it', async () => {
    await storeEvents(t.db, events(11, 'u0', 3), 'acct-unregistered');
    await t.db.query(`DELETE FROM klaviyo_accounts WHERE account_id = 'acct-unregistered'`);
    expect(await dirtyCount(t.db, 'acct-unregistered')).toBeGreaterThan(0);
    const run = await runScheduledAggregation(t.db, {
      remainingMs: undefined,
      marginMs: 0,
      batchBuckets: 500,
      timeBudgetMs: 60_000,
    });
    expect(run).toMatchObject({ status: 'done', accountsLocked: 0 });
    expect(await getAccount(t.db, 'acct-unregistered')).toMatchObject({ displayName: null });
    expect(await dirtyCount(t.db, 'acct-unregistered')).toBe(0);
    expect(await storedHours(t.db, 'acct-unregistered')).toEqual(await oracleHours(t.db, 'acct-unregistered'));
  });

  it("a batch's statements use generic plans on the postgres.js driver, for that transaction only", async () => {
    await storeEvents(t.db, events(12, 'g0', 2), A);
    await ensureAccount(t.db, A);
    const seen: string[] = [];
    const probing = (inner: Db): Db => ({
      ...inner,
      query: async <T extends Row>(text: string, params?: readonly SqlParam[]) => {
        if (text.includes('WITH chosen AS MATERIALIZED')) {
          const [row] = await inner.query<{ mode: string }>(`SELECT current_setting('plan_cache_mode') AS mode`);
          seen.push(row?.mode ?? '');
        }
        return inner.query<T>(text, params);
      },
      transaction: <R>(fn: (tx: Db) => Promise<R>) => inner.transaction((tx) => fn(probing(tx))),
    });
    const outcome = await aggregateBatch(probing(t.db), A, 500, 1000);
    expect(outcome).not.toBe('locked');
    const after = await t.db.query<{ mode: string }>(`SELECT current_setting('plan_cache_mode') AS mode`);
    if (t.db.driver === 'postgres') {
      // Planned once per connection in the batch; the connection's custom plans (the time-range
      // reads') everywhere else.
      expect(seen).toEqual(['force_generic_plan']);
      expect(after[0]?.mode).toBe('force_custom_plan');
    } else {
      // The Data API prepares nothing: no setting, no round trip.
      expect(seen).toEqual([after[0]?.mode]);
    }
    expect(await storedHours(t.db, A)).toEqual(await oracleHours(t.db, A));
  });
});
