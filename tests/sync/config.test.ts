import { ConfigError, loadConfig } from '../../lib/config';

/** The sync's settings: defaults, conversions, and loud failures on bad values. */
const BASE = { DATABASE_URL: 'postgres://u:p@localhost/db' };

describe('sync settings', () => {
  it('defaults to Klaviyo, one account, a 4-minute budget, a daily lookback hourly, a year of backfill, half the limits', () => {
    expect(loadConfig(BASE).sync).toEqual({
      baseUrl: 'https://a.klaviyo.com',
      apiKeySecret: undefined,
      accountId: 'default',
      timeBudgetMs: 240_000,
      lookbackMs: 24 * 3_600_000,
      lookbackEveryMs: 3_600_000,
      safetyLagMs: 5_000,
      backfillMs: 365 * 86_400_000,
      sliceMs: 168 * 3_600_000,
      rateShare: 0.5,
    });
  });

  it('reads every setting', () => {
    const sync = loadConfig({
      ...BASE,
      KLAVIYO_BASE_URL: 'http://127.0.0.1:4010/',
      KLAVIYO_API_KEY_SECRET_ID: 'klaviyo-analytics/prod/klaviyo-api-key',
      SYNC_ACCOUNT_ID: 'acme',
      SYNC_LOOKBACK_HOURS: '48',
      SYNC_RATE_SHARE_PERCENT: '100',
    }).sync;
    expect(sync).toMatchObject({
      baseUrl: 'http://127.0.0.1:4010',
      apiKeySecret: 'klaviyo-analytics/prod/klaviyo-api-key',
      accountId: 'acme',
      lookbackMs: 48 * 3_600_000,
      rateShare: 1,
    });
  });

  it.each([
    ['SYNC_RATE_SHARE_PERCENT', '150'],
    ['SYNC_RATE_SHARE_PERCENT', '0'],
    ['SYNC_LOOKBACK_HOURS', 'a day'],
    ['KLAVIYO_BASE_URL', 'ftp://a.klaviyo.com'],
  ])('refuses %s=%s, naming it', (name, value) => {
    expect(() => loadConfig({ ...BASE, [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ ...BASE, [name]: value })).toThrow(name);
  });
});
