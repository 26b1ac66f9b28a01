import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Db } from './port';

/**
 * Forward-only migrations: migrations/NNNN_name.sql, applied in order, each in its own transaction
 * and recorded with its checksum. Every transaction first takes one advisory lock, so concurrent
 * cold starts apply each file exactly once and the losers simply find it done.
 */
export class MigrationError extends Error {
  override readonly name = 'MigrationError';
}

export interface MigrationFile {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

export interface MigrationResult {
  readonly applied: string[];
  readonly alreadyApplied: number;
  readonly mode: DatabaseMode;
}

export type DatabaseMode = 'timescaledb' | 'postgres';

// Any fixed 64-bit number works; this one reads "klaviyo" in ASCII.
const MIGRATION_LOCK = '32199510157453945';
const FILE_PATTERN = /^(\d{4})_[a-z0-9_]+\.sql$/;

export const DEFAULT_MIGRATIONS_DIR = resolve(__dirname, '..', '..', 'migrations');

export function readMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): MigrationFile[] {
  const names = readdirSync(dir)
    .filter((n) => n.endsWith('.sql'))
    .sort();
  const files = names.map((name) => {
    const match = FILE_PATTERN.exec(name);
    if (!match) throw new MigrationError(`Migration file name "${name}" must look like 0001_description.sql`);
    const sql = readFileSync(join(dir, name), 'utf8');
    return { version: Number(match[1]), name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
  });
  files.forEach((file, index) => {
    if (file.version !== index + 1) {
      throw new MigrationError(
        `Migration numbering has a gap or a duplicate: expected ${String(index + 1).padStart(4, '0')}, found ${file.name}`,
      );
    }
  });
  return files;
}

interface AppliedRow extends Record<string, unknown> {
  version: number;
  name: string;
  checksum: string;
}

export async function migrate(db: Db, dir: string = DEFAULT_MIGRATIONS_DIR): Promise<MigrationResult> {
  const files = readMigrations(dir);
  await db.query(
    `CREATE TABLE IF NOT EXISTS schema_migrations (
       version integer PRIMARY KEY,
       name text NOT NULL,
       checksum text NOT NULL,
       applied_at timestamptz NOT NULL DEFAULT now()
     )`,
  );
  const applied: string[] = [];
  let alreadyApplied = 0;
  for (const file of files) {
    const didApply = await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      const rows = await tx.query<AppliedRow>(
        'SELECT version, name, checksum FROM schema_migrations WHERE version = $1',
        [file.version],
      );
      const existing = rows[0];
      if (existing) {
        if (existing.checksum !== file.checksum || existing.name !== file.name) {
          throw new MigrationError(
            `Migration ${file.name} was edited after it was applied (recorded ${existing.name} with checksum ` +
              `${existing.checksum.slice(0, 12)}, file has ${file.checksum.slice(0, 12)}). Add a new migration instead.`,
          );
        }
        return false;
      }
      await tx.query(file.sql);
      await tx.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        file.version,
        file.name,
        file.checksum,
      ]);
      return true;
    });
    if (didApply) applied.push(file.name);
    else alreadyApplied += 1;
  }
  const recorded = await db.query<{ version: number; name: string }>(
    'SELECT version, name FROM schema_migrations WHERE version > $1 ORDER BY version',
    [files.length],
  );
  if (recorded.length > 0) {
    throw new MigrationError(
      `The database has migrations this code does not know: ${recorded.map((r) => r.name).join(', ')}`,
    );
  }
  return { applied, alreadyApplied, mode: await databaseMode(db) };
}

/** Which branch of the migrations this database runs: TimescaleDB hypertables or plain tables. */
export async function databaseMode(db: Db): Promise<DatabaseMode> {
  const rows = await db.query<{ installed: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS installed`,
  );
  return rows[0]?.installed ? 'timescaledb' : 'postgres';
}
