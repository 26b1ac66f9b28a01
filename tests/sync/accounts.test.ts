import { accountBudgetMs, runScheduledSync, type ScheduledSyncResult } from '../../lib/app/sync';
import type { SyncSettings } from '../../lib/config';
import { accountsToSync, saveAccount } from '../../lib/repositories/accounts';
import { acquireLease, markRunStarted, releaseLease } from '../../lib/repositories/sync';
import { forgetCachedApiKey } from '../../lib/sync/apiKey';
import { useFreshDatabase } from '../support/database';
import { FakeKlaviyo, eventOf, metricOf, profileOf } from '../support/fakeKlaviyo';
import { DAY, HOUR } from './helpers';

/**
 * The scheduled sync of many accounts (runScheduledSync): every account whose row names a key secret,
 * each synced with its own key into its own account, least recently synced first; one account's
 * failure does not stop the others. One stand-in Klaviyo answers each key with that account's data,
 * and the Klaviyo ids of the two accounts overlap, as two real Klaviyo accounts' ids may.
 */
const KEYS = {
  acme: 'pk_acme_0123456789abcdef0123456789ab',
  globex: 'pk_globex_0123456789abcdef012345678',
  env: 'pk_env_default_0123456789abcdef01234',
};
// Secrets Manager stand-in: secret name -> SecretString.
const SECRETS: Record<string, string> = {
  'klaviyo/acme': KEYS.acme,
  'klaviyo/globex': JSON.stringify({ api_key: KEYS.globex }),
  'klaviyo/revoked': 'pk_revoked_key_must_not_be_logged_0',
};
const readSecret = async (id: string) => {
  if (!(id in SECRETS))
    throw Object.assign(new Error(`Secrets Manager can't find the specified secret.`), {
      name: 'ResourceNotFoundException',
    });
  return SECRETS[id];
};

describe('scheduled sync of every account', () => {
  const database = useFreshDatabase();
  const server = new FakeKlaviyo({ apiKey: KEYS.env });
  const acme = server.serveAccount(KEYS.acme);
  const globex = server.serveAccount(KEYS.globex);
  const now = Date.now();
  let settings: SyncSettings;

  beforeAll(async () => {
    await server.start();
    settings = {
      baseUrl: server.baseUrl,
      accountId: 'default',
      timeBudgetMs: 120_000,
      lookbackMs: DAY,
      lookbackEveryMs: HOUR,
      safetyLagMs: 5_000,
      backfillMs: 3 * DAY,
      sliceMs: DAY,
      rateShare: 1,
    };
    // The same ids in both accounts, with different values and counts.
    for (const [fake, events, value] of [
      [acme, 6, 10],
      [globex, 4, 1000],
      [server, 2, 5],
    ] as const) {
      fake.addMetric(metricOf('MetricShared', 'Placed Order'));
      fake.putProfile(profileOf('ProfileShared', now - DAY));
      for (let i = 0; i < events; i += 1) {
        fake.addEvent(
          eventOf(`Event${i}`, 'MetricShared', 'ProfileShared', now - (i + 1) * HOUR, { $value: value + i }),
        );
      }
    }
  });
  afterAll(() => server.stop());
  beforeEach(async () => {
    forgetCachedApiKey();
    // Each test registers the accounts it syncs.
    await database.db.query(`UPDATE klaviyo_accounts SET klaviyo_key_secret_id = NULL`);
  });

  async function storedValues(accountId: string): Promise<Record<string, number>> {
    const rows = await database.db.query<{ id: string; value: string }>(
      `SELECT id, value::text AS value FROM klaviyo_events WHERE account_id = $1 ORDER BY id`,
      [accountId],
    );
    return Object.fromEntries(rows.map((r) => [r.id, Number(r.value)]));
  }
  const expectedValues = (events: number, value: number) =>
    Object.fromEntries(Array.from({ length: events }, (_, i) => [`Event${i}`, value + i]));
  const statusOf = (result: ScheduledSyncResult) =>
    Object.fromEntries(result.accounts.map((a) => [a.accountId, a.status]));

  it('syncs two accounts in one run, each with its own key into its own account', async () => {
    await saveAccount(database.db, { accountId: 'acme', klaviyoKeySecretId: 'klaviyo/acme' });
    await saveAccount(database.db, { accountId: 'globex', klaviyoKeySecretId: 'klaviyo/globex' });
    const result = await runScheduledSync(database.db, settings, 120_000, { env: {}, readSecret });

    expect(statusOf(result)).toEqual({ acme: 'done', globex: 'done' });
    expect(result.status).toBe('done');
    expect(await storedValues('acme')).toEqual(expectedValues(6, 10));
    expect(await storedValues('globex')).toEqual(expectedValues(4, 1000));
    // No key in the environment: the default account is not synced.
    expect(await storedValues('default')).toEqual({});
    // Klaviyo saw each account's requests with that account's key, and refused none.
    expect(acme.requests.length).toBeGreaterThan(0);
    expect(globex.requests.length).toBeGreaterThan(0);
    expect([...acme.requests, ...globex.requests].filter((r) => r.status !== 200)).toEqual([]);
  });

  it('an account whose key is refused or whose secret is missing is recorded, and the others are synced', async () => {
    await saveAccount(database.db, { accountId: 'revoked', klaviyoKeySecretId: 'klaviyo/revoked' });
    await saveAccount(database.db, { accountId: 'nosecret', klaviyoKeySecretId: 'klaviyo/deleted' });
    await saveAccount(database.db, { accountId: 'globex2', klaviyoKeySecretId: 'klaviyo/globex' });
    const result = await runScheduledSync(database.db, settings, 120_000, { env: {}, readSecret });

    expect(statusOf(result)).toEqual({ revoked: 'error', nosecret: 'error', globex2: 'done' });
    expect(result.status).toBe('error');
    expect(await storedValues('globex2')).toEqual(expectedValues(4, 1000));
    const errors = await database.db.query<{ account_id: string; stream: string; last_error: string | null }>(
      `SELECT account_id, stream, last_error FROM klaviyo_sync_streams
        WHERE account_id IN ('revoked', 'nosecret') ORDER BY account_id, stream`,
    );
    expect(errors).toHaveLength(6);
    for (const e of errors.filter((r) => r.account_id === 'revoked')) expect(e.last_error).toMatch(/401/);
    for (const e of errors.filter((r) => r.account_id === 'nosecret'))
      expect(e.last_error).toMatch(/ResourceNotFoundException/);
    expect(JSON.stringify(result)).not.toContain(SECRETS['klaviyo/revoked']);
  });

  it('goes through the accounts least recently synced first, never synced before all', async () => {
    await saveAccount(database.db, { accountId: 'recent', klaviyoKeySecretId: 'klaviyo/acme' });
    await saveAccount(database.db, { accountId: 'older', klaviyoKeySecretId: 'klaviyo/acme' });
    await saveAccount(database.db, { accountId: 'zz-never', klaviyoKeySecretId: 'klaviyo/globex' });
    await markRunStarted(database.db, 'recent', 'events', new Date(now - HOUR));
    await markRunStarted(database.db, 'older', 'metrics', new Date(now - 3 * HOUR));
    // The account's latest stream run counts, not its oldest.
    await markRunStarted(database.db, 'recent', 'metrics', new Date(now - 5 * HOUR));

    expect((await accountsToSync(database.db, null)).map((a) => a.accountId)).toEqual(['zz-never', 'older', 'recent']);
    const result = await runScheduledSync(database.db, settings, 120_000, { env: {}, readSecret });
    expect(result.accounts.map((a) => a.accountId)).toEqual(['zz-never', 'older', 'recent']);
    // Now 'zz-never' ran first, so it is the least recently synced of the three.
    expect((await accountsToSync(database.db, null)).map((a) => a.accountId)).toEqual(['zz-never', 'older', 'recent']);
  });

  it('keeps the single-account setup: the configured account with the environment key, next to the others', async () => {
    await saveAccount(database.db, { accountId: 'acme3', klaviyoKeySecretId: 'klaviyo/acme' });
    const result = await runScheduledSync(database.db, settings, 120_000, {
      env: { KLAVIYO_API_KEY: KEYS.env },
      readSecret,
    });
    expect(statusOf(result)).toEqual({ default: 'done', acme3: 'done' });
    expect(await storedValues('default')).toEqual(expectedValues(2, 5));
    expect(await storedValues('acme3')).toEqual(expectedValues(6, 10));
  });

  it('skips an account whose lease another run holds', async () => {
    await saveAccount(database.db, { accountId: 'busy', klaviyoKeySecretId: 'klaviyo/acme' });
    await saveAccount(database.db, { accountId: 'free', klaviyoKeySecretId: 'klaviyo/globex' });
    await acquireLease(database.db, 'busy', 'another-run', 60_000);
    try {
      const result = await runScheduledSync(database.db, settings, 120_000, { env: {}, readSecret });
      expect(statusOf(result)).toEqual({ busy: 'skipped', free: 'done' });
      expect(result.status).toBe('done');
      expect(await storedValues('busy')).toEqual({});
    } finally {
      await releaseLease(database.db, 'busy', 'another-run');
    }
  });
});

describe('an account share of the time budget', () => {
  it('splits what is left evenly among the accounts left, with a floor, never past what is left', () => {
    expect(accountBudgetMs(200_000, 4)).toBe(50_000);
    expect(accountBudgetMs(200_000, 1)).toBe(200_000);
    expect(accountBudgetMs(60_000, 10)).toBe(20_000);
    expect(accountBudgetMs(5_000, 3)).toBe(5_000);
  });
});
