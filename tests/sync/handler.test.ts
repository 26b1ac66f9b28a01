import { handler as syncHandler } from '../../functions/sync';
import { handler as statusHandler } from '../../functions/syncStatus';
import { setLogLevel, setLogSink } from '../../lib/log';
import { useFreshDatabase } from '../support/database';
import { FakeKlaviyo, eventOf, metricOf, profileOf } from '../support/fakeKlaviyo';
import { invoke } from '../support/http';

/**
 * The scheduled function and the status route end to end: configuration from the environment, the key
 * from KLAVIYO_API_KEY (the local stage), one structured log line per run that never holds the key, and
 * GET /api/sync-status reporting what the run did.
 */
const KEY = 'pk_handler_test_secret_0123456789';

describe('sync function and GET /api/sync-status', () => {
  const database = useFreshDatabase();
  const fake = new FakeKlaviyo({ apiKey: KEY });
  const lines: string[] = [];

  beforeAll(async () => {
    await fake.start();
    const now = Date.now();
    fake.addMetric(metricOf('MetricOrder1', 'Placed Order'));
    fake.putProfile(profileOf('P1', now - 86_400_000));
    for (let i = 0; i < 30; i += 1) {
      fake.addEvent(eventOf(`E${i}`, 'MetricOrder1', 'P1', now - (i + 1) * 3_600_000, { $value: i + 0.5 }));
    }
    const bad = eventOf('BAD', 'MetricOrder1', 'P1', now - 7_200_000, { note: 'x\u0000' });
    fake.addEvent(bad);
    process.env.KLAVIYO_BASE_URL = fake.baseUrl;
    process.env.KLAVIYO_API_KEY = KEY;
    process.env.SYNC_BACKFILL_DAYS = '3';
    setLogSink((line) => lines.push(line));
    setLogLevel('info');
  });
  afterAll(async () => {
    setLogSink(undefined);
    setLogLevel('silent');
    await fake.stop();
  });

  it('runs, logs one line with the figures (never the key), and the status route reports them', async () => {
    const result = await syncHandler({ id: 'scheduled-1' }, { getRemainingTimeInMillis: () => 300_000 });
    expect(result.status).toBe('done');

    const runLines = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.message === 'sync run');
    expect(runLines).toHaveLength(1);
    const line = runLines[0] as {
      accounts: {
        account_id: string;
        streams: { events: { rows_pulled: number; rejects: number } };
        caught_up: boolean;
      }[];
    };
    expect(line.accounts.map((a) => a.account_id)).toEqual(['default']);
    const logged = line.accounts[0] as (typeof line.accounts)[number];
    expect(logged.streams.events.rows_pulled).toBe(31);
    expect(logged.streams.events.rejects).toBe(1);
    expect(logged.caught_up).toBe(true);
    for (const line of lines) expect(line).not.toContain(KEY);

    const status = await invoke(statusHandler, { path: '/api/sync-status', key: 'read' });
    expect(status.status).toBe(200);
    const events = status.body.data.find((s: { id: string }) => s.id === 'events').attributes;
    expect(events).toMatchObject({ rows_pulled: 31, rows_pulled_last_run: 31, rejects: 1, last_error: null });
    expect(events.lag_seconds).toBeLessThan(600);
    expect(events.backfill.complete).toBe(true);
    const stored = await database.db.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM klaviyo_events WHERE account_id = 'default'`,
    );
    expect(stored[0]?.n).toBe('30');
  });

  it('records a refused key as the streams\u2019 last error, without the key', async () => {
    const wrong = 'pk_wrong_key_must_not_be_logged';
    process.env.KLAVIYO_API_KEY = wrong;
    // The function reads the key per invocation (config is cached, the key is not part of it).
    const result = await syncHandler({ id: 'scheduled-2' }, { getRemainingTimeInMillis: () => 300_000 });
    expect(result.status).toBe('error');
    const status = await invoke(statusHandler, { path: '/api/sync-status', key: 'read' });
    const metrics = status.body.data.find((s: { id: string }) => s.id === 'metrics').attributes;
    expect(metrics.last_error.message).toMatch(/Klaviyo answered 401/);
    expect(JSON.stringify(status.body)).not.toContain(wrong);
    for (const line of lines) expect(line).not.toContain(wrong);
    expect((await invoke(statusHandler, { path: '/api/sync-status', key: null })).status).toBe(401);
  });
});
