/** Tests run against a real PostgreSQL: globalSetup starts one (embedded unless DATABASE_URL is set)
 * and migrates a template database that each test file clones. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] },
  setupFiles: ['<rootDir>/tests/support/setupEnv.ts'],
  globalSetup: '<rootDir>/tests/support/globalSetup.ts',
  globalTeardown: '<rootDir>/tests/support/globalTeardown.ts',
  testTimeout: 60000,
  maxWorkers: 2,
};
