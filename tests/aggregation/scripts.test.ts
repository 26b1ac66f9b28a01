import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { freshDatabase, type TestDatabase } from '../support/database';
import { storeEvents } from '../support/events';
import { dirtyCount, oracleHours, randomEvents, storedHours } from './oracle';

/**
 * `npm run aggregate` and `npm run backfill` as an operator runs them: the real scripts in a child
 * process against DATABASE_URL, judged by their exit code, what they print and the rollups they leave.
 */
const ROOT = resolve(__dirname, '..', '..');
const TSX = resolve(ROOT, 'node_modules', '.bin', 'tsx');

interface ScriptRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function runScript(
  script: string,
  args: string[],
  databaseUrl: string,
  extraEnv: Record<string, string> = {},
): Promise<ScriptRun> {
  // A clean environment: the scripts must work from DATABASE_URL alone (the postgres.js driver).
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: 'warn',
    ...extraEnv,
  };
  return new Promise((done) => {
    execFile(
      TSX,
      [resolve(ROOT, 'scripts', script), ...args],
      { cwd: ROOT, env, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

// Each script is a cold tsx start: seconds each on a busy machine.
jest.setTimeout(180_000);

describe('aggregate and backfill scripts', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await freshDatabase({ setEnv: false });
    await storeEvents(
      t.db,
      randomEvents(31, {
        count: 600,
        from: '2024-02-01T00:00:00Z',
        hours: 24 * 10,
        metrics: ['s1', 's2'],
        profiles: 30,
        idPrefix: 'script',
      }),
    );
  });
  afterAll(async () => {
    await t.drop();
  });

  it('npm run aggregate: drains the marks, prints what it did, rollups exact', async () => {
    const marked = await dirtyCount(t.db);
    expect(marked).toBeGreaterThan(100);
    const run = await runScript('aggregate.ts', [], t.url);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toContain(`aggregate: ${marked} hour buckets recomputed from 600 events`);
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as Record<string, unknown>;
    expect(result).toMatchObject({ status: 'done', bucketsRecomputed: marked, eventsScanned: 600, bucketsWaiting: 0 });
    expect(await dirtyCount(t.db)).toBe(0);
    expect(await storedHours(t.db)).toEqual(await oracleHours(t.db));
  });

  it('npm run backfill -- --from --to: repairs that range only, whole days, and reports it', async () => {
    // One stored hour inside the range (its last hour: --to is inclusive of its day) and one after it.
    const inside = await t.db.query<{ bucket: Date }>(
      `SELECT max(bucket) AS bucket FROM klaviyo_aggregated_metrics WHERE bucket < '2024-02-05T00:00:00Z'`,
    );
    const outside = await t.db.query<{ bucket: Date }>(
      `SELECT min(bucket) AS bucket FROM klaviyo_aggregated_metrics WHERE bucket >= '2024-02-08T00:00:00Z'`,
    );
    const insideHour = (inside[0] as { bucket: Date }).bucket;
    const outsideHour = (outside[0] as { bucket: Date }).bucket;
    expect(insideHour.getTime()).toBeGreaterThanOrEqual(Date.parse('2024-02-04T00:00:00Z'));
    await t.db.query(
      `UPDATE klaviyo_aggregated_metrics SET event_count = event_count + 100 WHERE bucket IN ($1::timestamptz, $2::timestamptz)`,
      [insideHour.toISOString(), outsideHour.toISOString()],
    );
    const run = await runScript(
      'backfill.ts',
      ['--from', '2024-02-03', '--to', '2024-02-04', '--chunk-hours', '24'],
      t.url,
    );
    expect(run.code).toBe(0);
    // --to as a date means the whole of that day: two chunks of a day.
    expect(run.stdout).toContain('backfill: 2024-02-03T00:00:00.000Z .. 2024-02-05T00:00:00.000Z in 2 chunks');
    // The progress bar goes to stderr, also when it is not a terminal.
    expect(run.stderr).toContain('chunk 2/2 | through 2024-02-05T00:00:00.000Z');
    const damaged = await t.db.query<{ bucket: Date }>(
      `SELECT DISTINCT a.bucket FROM klaviyo_aggregated_metrics a
       WHERE a.event_count <> (SELECT count(*) FROM klaviyo_events e
                               WHERE e.metric_id = a.metric_id AND e."timestamp" >= a.bucket AND e."timestamp" < a.bucket + interval '1 hour')`,
    );
    expect(damaged.map((r) => r.bucket.toISOString())).toEqual([outsideHour.toISOString()]);
    const full = await runScript('backfill.ts', [], t.url);
    expect(full.code).toBe(0);
    expect(await storedHours(t.db)).toEqual(await oracleHours(t.db));
  });

  it('npm run backfill with a bad argument: usage on stderr, exit 2, nothing written', async () => {
    const before = await storedHours(t.db);
    for (const args of [
      ['--from', '2024-02-05', '--to', '2024-02-01'],
      ['--frm', '2024-01-01'],
      ['--dimensions', '--metric', 'm1'],
    ]) {
      const run = await runScript('backfill.ts', args, t.url);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain('usage: npm run backfill');
    }
    expect(await storedHours(t.db)).toEqual(before);
  });

  it('npm run backfill -- --dimensions: registers ROLLUP_DIMENSIONS keys and fills their rollups', async () => {
    await storeEvents(t.db, [
      { metricId: 'm1', profileId: 'p1', at: '2024-02-02T10:00:00Z', value: 3, properties: { Plan: 'gold' } },
      { metricId: 'm1', profileId: 'p2', at: '2024-02-02T10:30:00Z', value: 4, properties: { Plan: 'gold' } },
    ]);
    // Counted by the hourly rollups before the key exists: only the backfill can give them to it.
    expect((await runScript('aggregate.ts', [], t.url)).code).toBe(0);
    const run = await runScript('backfill.ts', ['--dimensions', '--chunk-hours', '720'], t.url, {
      ROLLUP_DIMENSIONS: 'Plan',
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('backfill: dimensions Plan ready after');
    const rows = await t.db.query<{ dimension_value: string; event_count: string }>(
      `SELECT dimension_value, event_count::text AS event_count FROM klaviyo_dimension_rollups WHERE dimension = 'Plan'`,
    );
    expect(rows).toEqual([{ dimension_value: 'gold', event_count: '2' }]);
    const again = await runScript('backfill.ts', ['--dimensions'], t.url, { ROLLUP_DIMENSIONS: 'Plan' });
    expect(again.stdout).toContain('every registered dimension is ready');
  });
});

describe('npm run accounts', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await freshDatabase({ setEnv: false });
  });
  afterAll(async () => {
    await t.drop();
  });

  const stored = async (id: string) =>
    (
      await t.db.query<{ display_name: string | null; klaviyo_key_secret_id: string | null }>(
        `SELECT display_name, klaviyo_key_secret_id FROM klaviyo_accounts WHERE account_id = $1`,
        [id],
      )
    )[0];

  it('set creates an account, then changes only what it is told; list shows it', async () => {
    const created = await runScript('accounts.ts', ['set', 'acme', '--name', 'Acme Inc.'], t.url);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toMatch(/^created\tacme\tAcme Inc\.\t\(no Klaviyo key: not synced\)\t/);
    const secret = 'klaviyo-analytics/prod/accounts/acme';
    expect((await runScript('accounts.ts', ['set', 'acme', '--klaviyo-secret', secret], t.url)).code).toBe(0);
    expect(await stored('acme')).toEqual({ display_name: 'Acme Inc.', klaviyo_key_secret_id: secret });
    expect((await runScript('accounts.ts', ['set', 'acme', '--name', 'Acme'], t.url)).code).toBe(0);
    expect(await stored('acme')).toEqual({ display_name: 'Acme', klaviyo_key_secret_id: secret });
    const list = await runScript('accounts.ts', ['list'], t.url);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(`\nacme\tAcme\t${secret}\t`);
    expect((await runScript('accounts.ts', ['set', 'acme', '--no-klaviyo-secret'], t.url)).code).toBe(0);
    expect(await stored('acme')).toEqual({ display_name: 'Acme', klaviyo_key_secret_id: null });
  });

  it('refuses bad input with exit code 2 and writes nothing', async () => {
    for (const args of [
      [],
      ['create', 'x'],
      ['set'],
      ['set', 'not an id'],
      ['set', 'acme2', '--klaviyo-secret', 'pk_abc123'],
      ['set', 'acme2', '--klaviyo-secret', 's', '--no-klaviyo-secret'],
      ['set', 'acme2', '--name', ' '],
      ['list', 'extra'],
    ]) {
      const run = await runScript('accounts.ts', args, t.url);
      expect({ args, code: run.code, usage: run.stderr.includes('usage: npm run accounts') }).toEqual({
        args,
        code: 2,
        usage: true,
      });
    }
    expect(await stored('acme2')).toBeUndefined();
  });
});
