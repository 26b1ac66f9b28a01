import { ConfigError, loadConfig, rollupSettings } from '../lib/config';

describe('configuration', () => {
  it('reads DATABASE_URL with Lambda-sized defaults', () => {
    const cfg = loadConfig({ DATABASE_URL: 'postgres://u:p@h:5432/d' });
    expect(cfg.db).toMatchObject({
      driver: 'postgres',
      url: 'postgres://u:p@h:5432/d',
      poolMax: 1,
      prepare: true,
      idleTimeoutSeconds: 20,
    });
  });

  it("reads the seed's DB_HOST variables", () => {
    const cfg = loadConfig({
      DB_HOST: 'db',
      DB_PORT: '6543',
      DB_USER: 'u',
      DB_PASSWORD: 'p',
      DB_NAME: 'klaviyo',
      DB_PREPARE: 'false',
      DB_POOL_MAX: '3',
    });
    expect(cfg.db).toMatchObject({
      driver: 'postgres',
      host: 'db',
      port: 6543,
      user: 'u',
      database: 'klaviyo',
      prepare: false,
      poolMax: 3,
    });
  });

  it('fails loudly, naming the variable, when a value is missing or malformed', () => {
    expect(() => loadConfig({})).toThrow(ConfigError);
    expect(() => loadConfig({})).toThrow(/DATABASE_URL/);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL/);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://x/y', DB_POOL_MAX: 'many' })).toThrow(/DB_POOL_MAX/);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://x/y', DB_SSL: 'maybe' })).toThrow(/DB_SSL/);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://x/y', AGGREGATE_RUNS: '0' })).toThrow(/AGGREGATE_RUNS/);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://x/y', AGGREGATE_RUNS: '17' })).toThrow(
      /AGGREGATE_RUNS: must be at most 16/,
    );
    expect(loadConfig({ DATABASE_URL: 'postgres://x/y', AGGREGATE_RUNS: '2' }).limits.aggregateRuns).toBe(2);
    expect(loadConfig({ DATABASE_URL: 'postgres://x/y' }).limits.aggregateRuns).toBe(1);
    expect(() => loadConfig({ DB_HOST: 'h' })).toThrow(/DB_USER, DB_NAME/);
    expect(() => loadConfig({ DB_DRIVER: 'data-api', DB_NAME: 'x' })).toThrow(/DB_CLUSTER_ARN, DB_SECRET_ARN/);
  });

  it('reads the keys whose distinct profiles are rolled up, and names the variable when one is wrong', () => {
    const cfg = loadConfig({ DATABASE_URL: 'postgres://x/y', ROLLUP_UNIQUE_DIMENSIONS: 'Coupon Code, $flow' });
    expect(cfg.rollups.extraUniqueDimensions).toEqual(['Coupon Code', '$flow']);
    expect(rollupSettings({}).extraUniqueDimensions).toEqual([]);
    expect(() => rollupSettings({ ROLLUP_UNIQUE_DIMENSIONS: 'a,a' })).toThrow(
      /ROLLUP_UNIQUE_DIMENSIONS names "a" twice/,
    );
    expect(() => rollupSettings({ ROLLUP_UNIQUE_DIMENSIONS: 'a,,b' })).toThrow(/ROLLUP_UNIQUE_DIMENSIONS: every/);
  });

  it('reads the zones whose days have rows of their own, refusing those whose days start mid-hour', () => {
    const cfg = loadConfig({
      DATABASE_URL: 'postgres://x/y',
      ROLLUP_DAY_ZONES: 'America/New_York, UTC, Europe/Berlin',
    });
    // UTC's days are always kept.
    expect(cfg.rollups.dayZones).toEqual(['America/New_York', 'Europe/Berlin']);
    expect(rollupSettings({}).dayZones).toEqual([]);
    expect(() => rollupSettings({ ROLLUP_DAY_ZONES: 'Asia/Kolkata' })).toThrow(
      /ROLLUP_DAY_ZONES: "Asia\/Kolkata" has days that do not start on a whole UTC hour/,
    );
    // Nepal has been +05:45 since 1986.
    expect(() => rollupSettings({ ROLLUP_DAY_ZONES: 'Asia/Kathmandu' })).toThrow(/whole UTC hour/);
    expect(() => rollupSettings({ ROLLUP_DAY_ZONES: 'Mars/Olympus' })).toThrow(
      /"Mars\/Olympus" is not an IANA time zone/,
    );
    expect(() => rollupSettings({ ROLLUP_DAY_ZONES: 'america/new_york' })).toThrow(/not an IANA time zone/);
    expect(() => rollupSettings({ ROLLUP_DAY_ZONES: 'Europe/Paris,Europe/Paris' })).toThrow(
      /names "Europe\/Paris" twice/,
    );
  });
});
