import { rmSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { removeEmbeddedData, startEmbeddedPostgres, type EmbeddedServer } from '../../lib/db/embedded';
import { migrate } from '../../lib/db/migrate';
import { createPostgresDb } from '../../lib/db/postgres';
import { startDataApiServer, type DataApiServer } from './dataApiServer';
import { seedNeighborAccount } from './neighbor';
import { TEST_ENV, tuning } from './env';

/**
 * One PostgreSQL server for the whole run: the embedded one unless DATABASE_URL names another.
 * Its template database is migrated once; every test file clones it (see freshDatabase).
 */
declare global {
  var __embeddedPostgres: EmbeddedServer | undefined;

  var __dataApiServer: DataApiServer | undefined;
}

export default async function globalSetup(): Promise<void> {
  const template = `klaviyo_template_${process.pid}`;
  let adminUrl: string;
  if (process.env.DATABASE_URL) {
    const url = new URL(process.env.DATABASE_URL);
    url.pathname = '/postgres';
    adminUrl = url.toString();
  } else {
    const dataDir = join(__dirname, '..', '..', '.data', `test-pg-${process.pid}`);
    rmSync(dataDir, { recursive: true, force: true });
    const server = await startEmbeddedPostgres({
      dataDir,
      database: 'postgres',
      // Test data is thrown away: durability only costs time here.
      settings: {
        fsync: 'off',
        synchronous_commit: 'off',
        full_page_writes: 'off',
        max_connections: '200',
        // tests/accounts/statements.test.ts reads every statement the server ran for its database,
        // whichever driver sent it; nested statements too, and room for every file running at once.
        shared_preload_libraries: 'pg_stat_statements',
        'pg_stat_statements.track': 'all',
        'pg_stat_statements.max': '50000',
      },
    });
    globalThis.__embeddedPostgres = server;
    adminUrl = server.urlFor('postgres');
    const stop = () => {
      void server.stop().finally(() => removeEmbeddedData(server.dataDir));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }

  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  try {
    // Its view lives in the admin database and covers every database by dbid (absent on a server
    // started without the library: the statement check then says so).
    if (!process.env.DATABASE_URL) await admin.unsafe('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await admin.unsafe(`DROP DATABASE IF EXISTS ${template}`);
    await admin.unsafe(`CREATE DATABASE ${template}`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  const templateUrl = new URL(adminUrl);
  templateUrl.pathname = `/${template}`;
  const db = createPostgresDb({ url: templateUrl.toString(), ...tuning });
  try {
    await migrate(db);
    // Every test file runs next to another account's data (issue 20): tests/support/neighbor.ts.
    await seedNeighborAccount(db);
  } finally {
    await db.close();
  }
  process.env[TEST_ENV.adminUrl] = adminUrl;
  process.env[TEST_ENV.template] = template;

  // The local Data API endpoint runs in this (jest's main) process for the whole run: the data-api
  // project's tests reach the same databases through it over HTTP on 127.0.0.1.
  const dataApi = await startDataApiServer({ adminUrl });
  globalThis.__dataApiServer = dataApi;
  process.env[TEST_ENV.dataApiEndpoint] = dataApi.endpoint;
}
