/** Tests run against a real PostgreSQL: globalSetup starts one (embedded unless DATABASE_URL is set)
 * and migrates a template database that each test file clones.
 *
 * Two projects run the same suites on both database drivers: `postgres` (postgres.js over TCP) and
 * `data-api` (the RDS Data API driver through the local endpoint globalSetup starts, see
 * tests/support/dataApiServer.ts). `npx jest --selectProjects postgres` runs one of them. Both name
 * the same globalSetup, which jest runs once. */
const shared = {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] },
  globalSetup: '<rootDir>/tests/support/globalSetup.ts',
  globalTeardown: '<rootDir>/tests/support/globalTeardown.ts',
};

module.exports = {
  projects: [
    {
      ...shared,
      displayName: 'postgres',
      setupFiles: ['<rootDir>/tests/support/setupEnv.ts'],
    },
    {
      ...shared,
      displayName: 'data-api',
      setupFiles: ['<rootDir>/tests/support/setupEnv.ts', '<rootDir>/tests/support/setupDataApi.ts'],
      testPathIgnorePatterns: [
        '/node_modules/',
        // No database, or no driver (PGlite): nothing a second driver would change.
        '<rootDir>/tests/config\\.test\\.ts$',
        '<rootDir>/tests/log\\.test\\.ts$',
        '<rootDir>/tests/demo/generator\\.test\\.ts$',
        '<rootDir>/tests/timescaledb/',
        // postgres.js itself: its pool, pg_terminate_backend of its connections, its statement_timeout.
        '<rootDir>/tests/db/connection\\.test\\.ts$',
        // The driver's own tests pick their drivers explicitly; they run once, in the postgres project.
        '<rootDir>/tests/db/dataApi[^/]*\\.test\\.ts$',
        // The embedded server's data folder, and the benchmarks report: no driver involved.
        '<rootDir>/tests/db/embedded\\.test\\.ts$',
        '<rootDir>/tests/bench/',
      ],
    },
  ],
  testTimeout: 60000,
  maxWorkers: 2,
};
