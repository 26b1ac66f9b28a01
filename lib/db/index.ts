import { config, type Config } from '../config';
import type { ClosableDb } from './port';
import { createPostgresDb } from './postgres';
import type * as DataApiModule from './dataApi';

export type { Db, ClosableDb } from './port';

let client: ClosableDb | undefined;

export function createDb(dbConfig: Config['db'], logSql = false): ClosableDb {
  if (dbConfig.driver === 'postgres') return createPostgresDb({ ...dbConfig, logSql });
  // Loaded only when chosen: a container on the TCP driver never pays for loading the AWS SDK.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createDataApiDb } = require('./dataApi') as typeof DataApiModule;
  return createDataApiDb({ ...dbConfig, logSql });
}

/**
 * The container's one client, created on first use and kept for warm invocations.
 * Handlers never close it: the next invocation reuses its connection.
 */
export function getDb(): ClosableDb {
  if (!client) {
    const cfg = config();
    client = createDb(cfg.db, cfg.logSql);
  }
  return client;
}

/** For scripts and tests that end the process: closes the shared client if one was made. */
export async function closeDb(): Promise<void> {
  const current = client;
  client = undefined;
  await current?.close();
}
