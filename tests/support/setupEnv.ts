import { hashApiKey } from '../../lib/http/auth';

/** Runs before each test file: known API keys for every scope, and quiet logs. */
export const TEST_KEYS = { read: 'test-read-key', write: 'test-write-key', admin: 'test-admin-key' } as const;

process.env.API_KEYS = Object.entries(TEST_KEYS)
  .map(([scope, key]) => `${scope}:${hashApiKey(key)}`)
  .join(',');
process.env.LOG_LEVEL ??= 'silent';
