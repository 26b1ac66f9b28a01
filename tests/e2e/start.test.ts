import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../lib/db/embedded';
import { generatePages, type EventsPageDocument } from '../../lib/demo/generator';
import { testDriver } from '../support/env';

/**
 * What `npm start` starts, end to end: scripts/start.ts as its own process (embedded PostgreSQL in a
 * data folder of its own, migrations, a small demo seed, serverless-offline through osls on free
 * ports), driven over HTTP only. It posts a page of events, has the aggregate function run through
 * serverless-offline's Lambda endpoint, reads the aggregates back, then stops the stack the way
 * Ctrl-C does (SIGINT to the whole process group) and checks that no process of it is left. A second
 * start on the same folder must reuse the data.
 */
const ROOT = join(__dirname, '..', '..');
const DATA_DIR = join(ROOT, '.data', `e2e-${process.pid}`);
const KEY_FILE = `${DATA_DIR}.api-key`;
const SEED_EVENTS = 1500;
const START_TIMEOUT_MS = 240_000;
// rate(1 minute) fires on the next minute; the margin is for a loaded machine.
const SCHEDULE_TIMEOUT_MS = 180_000;

interface Stack {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

function startStack(httpPort: number, lambdaPort: number, extraEnv: NodeJS.ProcessEnv = {}): Stack {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HTTP_PORT: String(httpPort),
    LAMBDA_PORT: String(lambdaPort),
    SEED_EVENTS: String(SEED_EVENTS),
    // No schedule unless a test asks for one: a scheduled run would race the test's own invocations.
    AGGREGATE_SCHEDULE_ENABLED: 'false',
    ...extraEnv,
  };
  // What a newcomer has: no database configured, no keys (jest's setup sets both for the in-process tests).
  for (const name of ['DATABASE_URL', 'DB_HOST', 'API_KEYS', 'DB_DRIVER', 'LOG_LEVEL']) delete env[name];
  // As package.json's start script runs it: tsx as a loader in this one process. The tsx CLI would put a
  // parent in front that SIGKILLs its child when the child takes over 60 ms to acknowledge a Ctrl-C (a
  // loaded machine), orphaning PostgreSQL.
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts', '--data-dir', DATA_DIR], {
    cwd: ROOT,
    env,
    // Its own process group, like a terminal's foreground job: Ctrl-C reaches every process in it.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout?.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return { child, output: () => text, exited };
}

async function waitForOutput(stack: Stack, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(stack.output())) {
    if (stack.child.exitCode !== null)
      throw new Error(`npm start exited (${stack.child.exitCode}):\n${stack.output()}`);
    if (Date.now() > deadline) throw new Error(`npm start did not print ${pattern} in time:\n${stack.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Ctrl-C: SIGINT to the whole process group. Resolves with the exit code once the script is done. */
async function interrupt(stack: Stack): Promise<number | null> {
  if (stack.child.exitCode === null && stack.child.pid) process.kill(-stack.child.pid, 'SIGINT');
  return stack.exited;
}

/**
 * Live processes of the stack's group, or anything running on its data folder. Zombies are left out:
 * they have exited and hold nothing, and where PID 1 does not reap orphans (as in some containers) one
 * lingers until whoever adopted it waits for it.
 */
function processesOf(pgid: number | undefined): string {
  const table = execFileSync('ps', ['-eo', 'pid=,pgid=,stat=,args='], { encoding: 'utf8' });
  return table
    .split('\n')
    .map((line) => line.trim().match(/^(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/))
    .filter((m): m is RegExpMatchArray => m !== null)
    .filter(
      ([, , group, stat, args]) =>
        !stat?.startsWith('Z') && (Number(group) === pgid || (args ?? '').includes(DATA_DIR)),
    )
    .filter(([, pid]) => Number(pid) !== process.pid)
    .map(([, pid, , , args]) => `${pid} ${args}`)
    .join('\n');
}

// The stack runs its own database with the postgres driver whatever the jest project: once is enough.
const describeOnce = testDriver() === 'postgres' ? describe : describe.skip;

describeOnce('npm start, end to end', () => {
  let httpPort: number;
  let lambdaPort: number;
  let stack: Stack | undefined;
  let base: string;
  let key: string;
  // Events far from the demo data's window, so that what we read back is exactly what we posted.
  const [page] = [
    ...generatePages({
      events: 300,
      profiles: 30,
      seed: 42,
      start: new Date('2021-06-07T00:00:00Z'),
      end: new Date('2021-06-14T00:00:00Z'),
    }),
  ] as EventsPageDocument[];
  const posted = page as EventsPageDocument;

  beforeAll(async () => {
    rmSync(DATA_DIR, { recursive: true, force: true });
    rmSync(KEY_FILE, { force: true });
    httpPort = await freePort();
    lambdaPort = await freePort();
    base = `http://localhost:${httpPort}`;
  });

  afterAll(async () => {
    if (stack && stack.child.exitCode === null) await interrupt(stack);
    rmSync(DATA_DIR, { recursive: true, force: true });
    rmSync(KEY_FILE, { force: true });
  });

  const api = async (path: string, init: { method?: string; body?: unknown } = {}) => {
    const res = await fetch(`${base}${path}`, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers: {
        authorization: `Bearer ${key}`,
        ...(init.body === undefined ? {} : { 'content-type': 'application/vnd.api+json' }),
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) };
  };

  const invokeAggregate = async () => {
    const res = await fetch(
      `http://localhost:${lambdaPort}/2015-03-31/functions/klaviyo-analytics-local-aggregate/invocations`,
      {
        method: 'POST',
        body: '{}',
      },
    );
    expect(res.status).toBe(200);
    return (await res.json()) as { status: string; bucketsRecomputed: number; bucketsWaiting: number };
  };

  it(
    'starts everything on a fresh data folder, serves the API and the chart page, aggregates, and stops cleanly',
    async () => {
      stack = startStack(httpPort, lambdaPort);
      await waitForOutput(stack, /Ready in [\d.]+ s\./, START_TIMEOUT_MS);
      const out = stack.output();
      expect(out).toMatch(/embedded PostgreSQL on port \d+, created/);
      expect(out).toMatch(new RegExp(`Seeded ${SEED_EVENTS.toLocaleString('en-US')} demo events`));
      key = readFileSync(KEY_FILE, 'utf8').trim();
      expect(out).toContain(`${base}/#key=${key}`);

      // The chart page, from its Lambda bundle: uPlot inlined by the esbuild plugin, under its CSP.
      const ui = await fetch(`${base}/`);
      expect(ui.status).toBe(200);
      expect(ui.headers.get('content-security-policy')).toMatch(/script-src 'nonce-/);
      expect(await ui.text()).toContain('uPlot');

      // The seed is there.
      const metrics = await api('/api/metrics');
      expect(metrics.status).toBe(200);
      const seeded = (metrics.json().data as { attributes: { event_count: number } }[]).reduce(
        (s, m) => s + m.attributes.event_count,
        0,
      );
      expect(seeded).toBe(SEED_EVENTS);

      // A page of events over HTTP: queued (npm start runs queue mode), then written by the
      // ingestConsumer function, which the local poller invokes through serverless-offline.
      expect(out).toMatch(/Ingest queue: local-aws-sqs at http:\/\/127\.0\.0\.1:\d+/);
      const ingest = await api('/api/events', { body: posted });
      expect(ingest.status).toBe(202);
      expect(ingest.json().data).toMatchObject({
        type: 'ingest-receipt',
        attributes: { status: 'queued', received: posted.data.length },
      });
      const last = posted.data[posted.data.length - 1] as EventsPageDocument['data'][number];
      const consumedBy = Date.now() + 60_000;
      while ((await api(`/api/events/${encodeURIComponent(last.id)}`)).status !== 200) {
        if (Date.now() > consumedBy) throw new Error(`the queued page was not written:\n${stack.output()}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      // Then the aggregate function through serverless-offline.
      const run = await invokeAggregate();
      expect(run).toMatchObject({ status: 'done', bucketsWaiting: 0 });
      expect(run.bucketsRecomputed).toBeGreaterThan(0);
      expect((await invokeAggregate()).bucketsRecomputed).toBe(0);

      // The aggregates read back over HTTP equal what was posted, metric by metric and day by day.
      const expected = new Map<string, Map<string, number>>();
      for (const e of posted.data) {
        const day = e.attributes.datetime.slice(0, 10);
        const perDay = expected.get(e.relationships.metric.data.id) ?? new Map<string, number>();
        perDay.set(day, (perDay.get(day) ?? 0) + 1);
        expected.set(e.relationships.metric.data.id, perDay);
      }
      for (const [metricId, perDay] of expected) {
        const res = await api('/api/metric-aggregates', {
          body: {
            data: {
              type: 'metric-aggregate',
              attributes: {
                metric_id: metricId,
                measurements: ['count'],
                interval: 'day',
                filter: ['greater-or-equal(datetime,2021-06-07T00:00:00)', 'less-than(datetime,2021-06-14T00:00:00)'],
              },
            },
          },
        });
        expect(res.status).toBe(200);
        const { dates, data } = res.json().data.attributes as {
          dates: string[];
          data: { measurements: { count: number[] } }[];
        };
        const got = new Map(dates.map((d, i) => [d.slice(0, 10), data[0]?.measurements.count[i] ?? 0]));
        for (const [day, count] of perDay)
          expect({ metricId, day, count: got.get(day) }).toEqual({ metricId, day, count });
      }

      const pgid = stack.child.pid;
      expect(await interrupt(stack)).toBe(0);
      expect(stack.output()).toContain('Stopped: serverless-offline and PostgreSQL are down.');
      expect(stack.output()).toMatch(/"message":"ingest batch".*"stored":[1-9]/);
      expect(processesOf(pgid)).toBe('');
      expect(existsSync(join(DATA_DIR, 'postmaster.pid'))).toBe(false);
    },
    START_TIMEOUT_MS + 120_000,
  );

  it(
    'reuses the data folder on the next start: no second seed, the posted events still there; the schedule fires',
    async () => {
      stack = startStack(httpPort, lambdaPort, {
        AGGREGATE_SCHEDULE_ENABLED: 'true',
        AGGREGATE_RATE: 'rate(1 minute)',
      });
      await waitForOutput(stack, /Ready in [\d.]+ s\./, START_TIMEOUT_MS);
      expect(stack.output()).toMatch(/embedded PostgreSQL on port \d+, reusing/);
      expect(stack.output()).toContain('the database already has events, nothing seeded');
      expect(readFileSync(KEY_FILE, 'utf8').trim()).toBe(key);

      const first = posted.data[0] as EventsPageDocument['data'][number];
      const event = await api(`/api/events/${encodeURIComponent(first.id)}`);
      expect(event.status).toBe(200);
      expect(event.json().data.id).toBe(first.id);

      // serverless-offline runs the aggregate function on its EventBridge schedule, as AWS would.
      await waitForOutput(stack, /Successfully invoked scheduled function: \[aggregate\]/, SCHEDULE_TIMEOUT_MS);
      expect(stack.output()).toMatch(/"message":"aggregate run done".*"status":"done"/);

      const pgid = stack.child.pid;
      expect(await interrupt(stack)).toBe(0);
      expect(processesOf(pgid)).toBe('');
    },
    START_TIMEOUT_MS + SCHEDULE_TIMEOUT_MS + 60_000,
  );
});
