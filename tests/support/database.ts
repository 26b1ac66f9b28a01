import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { closeDb } from '../../lib/db';
import type { ClosableDb } from '../../lib/db/port';
import { createDataApiDb } from '../../lib/db/dataApi';
import { createPostgresDb } from '../../lib/db/postgres';
import { dataApiEnv, DATA_API_TEST, TEST_ENV, testDriver, tuning } from './env';

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  /** A client of its own, for assertions and setup (handlers use the module-level one). */
  readonly db: ClosableDb;
  /** Closes the client and drops the database. */
  drop(): Promise<void>;
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through jest (globalSetup prepares the server)`);
  return value;
}

export function adminUrl(): string {
  return required(TEST_ENV.adminUrl);
}

export function urlOf(database: string): string {
  const url = new URL(adminUrl());
  url.pathname = `/${database}`;
  return url.toString();
}

/**
 * A database of its own for one test file, cloned from the migrated template. It also becomes
 * DATABASE_URL, so handlers invoked in this test file connect to it through their lazy client.
 *
 * In the data-api jest project (KLAVIYO_TEST_DRIVER=data-api) the handlers' environment also
 * selects the Data API driver on this database through the local endpoint, and `db` is a Data API
 * client: the same tests then exercise the second driver end to end.
 */
export async function freshDatabase(options: { setEnv?: boolean } = {}): Promise<TestDatabase> {
  const template = required(TEST_ENV.template);
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => undefined });
  try {
    await admin.unsafe(`CREATE DATABASE ${name} TEMPLATE ${template}`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  const url = urlOf(name);
  if (options.setEnv ?? true) {
    process.env.DATABASE_URL = url;
    delete process.env.DB_HOST;
    if (testDriver() === 'data-api') Object.assign(process.env, dataApiEnv(name));
  }
  const db = testDriver() === 'data-api' ? dataApiDb(name) : createPostgresDb({ url, ...tuning });
  return {
    name,
    url,
    db,
    drop: async () => {
      await db.close();
      const dropper = postgres(adminUrl(), { max: 1, onnotice: () => undefined });
      try {
        await dropper.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await dropper.end({ timeout: 5 });
      }
    },
  };
}

/** A Data API client on `database` through the local endpoint (sets the dummy AWS credentials). */
export function dataApiDb(database: string, retryBudgetMs = 5_000): ClosableDb {
  const env = dataApiEnv(database);
  for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_EC2_METADATA_DISABLED'] as const) {
    process.env[key] ??= env[key];
  }
  return createDataApiDb({
    clusterArn: DATA_API_TEST.clusterArn,
    secretArn: DATA_API_TEST.secretArn,
    database,
    endpoint: env.DB_DATA_API_ENDPOINT,
    region: DATA_API_TEST.region,
    retryBudgetMs,
  });
}

/**
 * A fresh database for the tests of one describe block (or file): made in beforeAll, and in afterAll
 * the handlers' lazy client is closed before the database is dropped. The returned object reads the
 * database of the block, so it is used inside tests and hooks only.
 */
export function useFreshDatabase(options: { setEnv?: boolean } = {}): TestDatabase {
  let current: TestDatabase | undefined;
  beforeAll(async () => {
    current = await freshDatabase(options);
  });
  afterAll(async () => {
    await closeDb();
    await current?.drop();
  });
  const made = (): TestDatabase => {
    if (!current) throw new Error('useFreshDatabase: the database exists from beforeAll on');
    return current;
  };
  return {
    get name() {
      return made().name;
    },
    get url() {
      return made().url;
    },
    get db() {
      return made().db;
    },
    drop: () => made().drop(),
  };
}
