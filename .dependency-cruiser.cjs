/**
 * The layers, one way (docs/architecture.md draws them):
 *   functions/ -> lib/app (use cases) -> domain (lib/klaviyo, lib/aggregation, lib/sync, lib/time)
 *              -> lib/repositories -> lib/db
 * lib/http is the Lambda adapter: functions/ use it, nothing in lib/ does. lib/config.ts and lib/log.ts sit
 * below everything. Nothing in lib/ reaches up into functions/, scripts/, bench/ or tests/.
 */
const DOMAIN = '^lib/(klaviyo|aggregation|sync|time)/';
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'lib-not-up',
      comment: 'lib/ never imports the entry points above it.',
      severity: 'error',
      from: { path: '^lib/' },
      to: { path: '^(functions|scripts|bench|tests)/' },
    },
    {
      name: 'functions-through-app',
      comment: 'A handler parses, calls a use case in lib/app, and maps the result: no repository or domain call.',
      severity: 'error',
      from: { path: '^functions/' },
      to: {
        path: ['^lib/repositories/', '^lib/db/', DOMAIN],
        // The lazy client, SQLSTATE mapping, and the JSON:API error type a handler answers with.
        pathNot: ['^lib/db/(index|errors)\\.ts$', '^lib/klaviyo/errors\\.ts$'],
      },
    },
    {
      name: 'http-is-the-adapter',
      comment: 'Only functions/ (and the local server scripts) speak HTTP.',
      severity: 'error',
      from: { path: '^lib/', pathNot: '^lib/http/' },
      to: { path: '^lib/http/' },
    },
    {
      name: 'domain-below-app',
      severity: 'error',
      from: { path: DOMAIN },
      to: { path: '^lib/app/' },
    },
    {
      name: 'time-at-the-bottom-of-the-domain',
      severity: 'error',
      from: { path: '^lib/time/' },
      to: { path: ['^lib/(klaviyo|aggregation|sync|app|repositories)/'] },
    },
    {
      name: 'repositories-below-domain',
      severity: 'error',
      from: { path: '^lib/repositories/' },
      to: { path: ['^lib/(app|klaviyo|aggregation|sync)/'] },
    },
    {
      name: 'db-at-the-bottom',
      severity: 'error',
      from: { path: '^lib/db/' },
      to: { path: ['^lib/(app|klaviyo|aggregation|sync|time|repositories|http)/'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: ['^node_modules', '^\\.data', '^\\.esbuild', '^\\.serverless'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'] },
  },
};
