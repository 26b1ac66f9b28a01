import { TEST_ENV } from './env';

/**
 * Runs before each test file of the data-api jest project: freshDatabase() then points the handlers
 * (and hands out `db` clients) through the RDS Data API driver and the local endpoint instead of
 * postgres.js. Test files need no change to run on both drivers.
 */
process.env[TEST_ENV.driver] = 'data-api';
