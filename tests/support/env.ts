import type { PostgresTuning } from '../../lib/config';

export const TEST_ENV = {
  adminUrl: 'KLAVIYO_TEST_ADMIN_URL',
  template: 'KLAVIYO_TEST_TEMPLATE_DB',
  /** 'data-api' in the data-api jest project: freshDatabase() then hands out Data API clients. */
  driver: 'KLAVIYO_TEST_DRIVER',
  /** The local Data API endpoint globalSetup starts (tests/support/dataApiServer.ts). */
  dataApiEndpoint: 'KLAVIYO_TEST_DATA_API_ENDPOINT',
} as const;

/** Tests use several connections: concurrency tests need more than a Lambda's pool of one. */
export const tuning: PostgresTuning = {
  ssl: 'disable',
  poolMax: 4,
  idleTimeoutSeconds: 20,
  connectTimeoutSeconds: 10,
  statementTimeoutMs: 0,
  prepare: true,
};

export type TestDriver = 'postgres' | 'data-api';

export function testDriver(): TestDriver {
  return process.env[TEST_ENV.driver] === 'data-api' ? 'data-api' : 'postgres';
}

/** Dummy identifiers for the local Data API endpoint: well-formed ARNs, as the SDK and the service expect. */
export const DATA_API_TEST = {
  clusterArn: 'arn:aws:rds:us-east-1:123456789012:cluster:klaviyo-local',
  secretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:klaviyo-local-AbCdEf',
  region: 'us-east-1',
} as const;

/**
 * The environment of a function configured for the Data API on `database` through the local endpoint.
 * Dummy credentials: the endpoint checks that requests are signed, not by whom; and with them the SDK
 * never looks for credentials elsewhere (no network beyond 127.0.0.1).
 */
export function dataApiEnv(database: string): Record<string, string> {
  const endpoint = process.env[TEST_ENV.dataApiEndpoint];
  if (!endpoint)
    throw new Error(
      `${TEST_ENV.dataApiEndpoint} is not set: run the tests through jest (globalSetup starts the endpoint)`,
    );
  return {
    DB_DRIVER: 'data-api',
    DB_CLUSTER_ARN: DATA_API_TEST.clusterArn,
    DB_SECRET_ARN: DATA_API_TEST.secretArn,
    DB_NAME: database,
    DB_DATA_API_ENDPOINT: endpoint,
    AWS_REGION: DATA_API_TEST.region,
    AWS_ACCESS_KEY_ID: 'AKIDLOCALTEST',
    AWS_SECRET_ACCESS_KEY: 'local-test-secret',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}
