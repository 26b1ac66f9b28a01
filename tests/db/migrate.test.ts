import { mkdtempSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { databaseMode, DEFAULT_MIGRATIONS_DIR, migrate, MigrationError, readMigrations } from '../../lib/db/migrate';
import { freshDatabase, type TestDatabase } from '../support/database';

function copyOfMigrations(): string {
  const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
  for (const name of readdirSync(DEFAULT_MIGRATIONS_DIR))
    copyFileSync(join(DEFAULT_MIGRATIONS_DIR, name), join(dir, name));
  return dir;
}

describe('migration runner', () => {
  let t: TestDatabase;
  beforeEach(async () => {
    t = await freshDatabase({ setEnv: false });
  });
  afterEach(async () => {
    await t.drop();
  });

  it('has applied every migration to the template, and a re-run is a no-op', async () => {
    const files = readMigrations();
    const result = await migrate(t.db);
    expect(result.applied).toEqual([]);
    expect(result.alreadyApplied).toBe(files.length);
    const rows = await t.db.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY version');
    expect(rows.map((r) => r.name)).toEqual(files.map((f) => f.name));
  });

  it('applies a new file once even when two runners race', async () => {
    const dir = copyOfMigrations();
    const next = String(readMigrations(dir).length + 1).padStart(4, '0');
    writeFileSync(join(dir, `${next}_add_probe.sql`), 'CREATE TABLE probe (id int PRIMARY KEY);');
    const [a, b] = await Promise.all([migrate(t.db, dir), migrate(t.db, dir)]);
    expect([...a.applied, ...b.applied]).toEqual([`${next}_add_probe.sql`]);
    const count = await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM schema_migrations WHERE name = $1`, [
      `${next}_add_probe.sql`,
    ]);
    expect(count[0]?.n).toBe('1');
  });

  it('refuses a gap in the numbering', () => {
    const dir = copyOfMigrations();
    writeFileSync(join(dir, '0099_far_away.sql'), 'SELECT 1;');
    expect(() => readMigrations(dir)).toThrow(/gap or a duplicate: expected \d{4}, found 0099_far_away\.sql/);
  });

  it('refuses an applied file that was edited', async () => {
    const dir = copyOfMigrations();
    const first = readMigrations(dir)[0];
    if (!first) throw new Error('no migrations');
    writeFileSync(join(dir, first.name), first.sql + '\n-- edited\n');
    await expect(migrate(t.db, dir)).rejects.toThrow(MigrationError);
    await expect(migrate(t.db, dir)).rejects.toThrow(/was edited after it was applied/);
  });

  it('rolls back a failing migration whole and records nothing', async () => {
    const dir = copyOfMigrations();
    const next = String(readMigrations(dir).length + 1).padStart(4, '0');
    writeFileSync(join(dir, `${next}_broken.sql`), 'CREATE TABLE half_done (id int); SELECT no_such_function();');
    await expect(migrate(t.db, dir)).rejects.toThrow();
    const tables = await t.db.query(`SELECT 1 FROM pg_tables WHERE tablename = 'half_done'`);
    expect(tables).toHaveLength(0);
    const recorded = await t.db.query(`SELECT 1 FROM schema_migrations WHERE name = $1`, [`${next}_broken.sql`]);
    expect(recorded).toHaveLength(0);
  });

  it('reports plain PostgreSQL mode where TimescaleDB is absent', async () => {
    const available = await t.db.query(`SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'`);
    expect(await databaseMode(t.db)).toBe(available.length > 0 ? 'timescaledb' : 'postgres');
  });
});
