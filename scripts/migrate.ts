import { closeDb, getDb } from '../lib/db';
import { migrate } from '../lib/db/migrate';

/** npm run migrate: applies pending migrations to DATABASE_URL (or DB_HOST...). */
async function main(): Promise<void> {
  const result = await migrate(getDb());
  process.stdout.write(
    `migrations: ${result.applied.length} applied (${result.applied.join(', ') || 'none'}), ` +
      `${result.alreadyApplied} already applied; mode: ${result.mode}\n`,
  );
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`migrate failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => closeDb());
