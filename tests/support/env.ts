import type { PostgresTuning } from '../../lib/config';

export const TEST_ENV = {
  adminUrl: 'KLAVIYO_TEST_ADMIN_URL',
  template: 'KLAVIYO_TEST_TEMPLATE_DB',
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
