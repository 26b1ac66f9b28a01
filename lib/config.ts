import { z } from 'zod';

/**
 * The environment, read and validated once per container. A missing or malformed value throws a
 * ConfigError naming the variable, so a misconfigured deployment fails at its first invocation
 * instead of answering with half-working defaults.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const positiveInt = (fallback: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().positive())
    .optional()
    .transform((v) => v ?? fallback);

const nonNegativeInt = (fallback: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .optional()
    .transform((v) => v ?? fallback);

const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'])
    .optional()
    .transform((v) => (v === undefined ? fallback : ['true', '1', 'yes', 'on'].includes(v)));

const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

const EnvSchema = z.object({
  DB_DRIVER: z.enum(['postgres', 'data-api']).optional().default('postgres'),
  DATABASE_URL: optionalText.pipe(
    z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://')
      .optional(),
  ),
  DB_HOST: optionalText,
  DB_PORT: positiveInt(5432),
  DB_USER: optionalText,
  DB_PASSWORD: optionalText,
  DB_NAME: optionalText,
  DB_SSL: z.enum(['disable', 'prefer', 'require', 'verify-full']).optional().default('disable'),
  DB_POOL_MAX: positiveInt(1),
  DB_IDLE_TIMEOUT_S: nonNegativeInt(20),
  DB_CONNECT_TIMEOUT_S: positiveInt(10),
  DB_STATEMENT_TIMEOUT_MS: nonNegativeInt(25_000),
  DB_PREPARE: bool(true),
  DB_CLUSTER_ARN: optionalText,
  DB_SECRET_ARN: optionalText,
  DB_DATA_API_ENDPOINT: optionalText,
  // How long the Data API driver keeps retrying transient failures (throttling, a cluster resuming)
  // before answering 503: keep it well under the functions' timeout.
  DB_DATA_API_RETRY_BUDGET_MS: positiveInt(10_000),
  AWS_REGION: optionalText,
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).optional().default('info'),
  LOG_SQL: bool(false),
  API_KEYS: optionalText,
  INGEST_MAX_RESOURCES: positiveInt(1000),
  INGEST_MAX_BODY_BYTES: positiveInt(5 * 1024 * 1024),
  QUERY_MAX_RANGE_DAYS: positiveInt(366),
  AGGREGATE_BATCH_BUCKETS: positiveInt(5000),
  // Below the aggregate function's Lambda timeout (60 s), leaving room for the last batch and the log line.
  AGGREGATE_TIME_BUDGET_MS: positiveInt(40_000),
  // Event property keys rolled up besides Klaviyo's documented dimensions (docs/breakdowns.md), comma-separated.
  ROLLUP_DIMENSIONS: optionalText,
  // Above this many distinct values of a key in one (metric, hour), the pair is left to raw events.
  ROLLUP_MAX_VALUES_PER_HOUR: positiveInt(200),
});

export type Env = z.infer<typeof EnvSchema>;

export interface PostgresConnection {
  readonly url?: string;
  readonly host?: string;
  readonly port?: number;
  readonly user?: string;
  readonly password?: string;
  readonly database?: string;
}

export interface Config {
  readonly db:
    | ({ readonly driver: 'postgres' } & PostgresConnection & PostgresTuning)
    | {
        readonly driver: 'data-api';
        readonly clusterArn: string;
        readonly secretArn: string;
        readonly database: string;
        readonly endpoint?: string;
        readonly region?: string;
        readonly retryBudgetMs: number;
      };
  readonly logLevel: Env['LOG_LEVEL'];
  readonly logSql: boolean;
  readonly apiKeys?: string;
  readonly limits: {
    readonly ingestMaxResources: number;
    readonly ingestMaxBodyBytes: number;
    readonly queryMaxRangeDays: number;
    readonly aggregateBatchBuckets: number;
    readonly aggregateTimeBudgetMs: number;
  };
  readonly rollups: {
    /** Extra property keys to roll up (Klaviyo's documented dimensions are registered by migration 0007). */
    readonly extraDimensions: readonly string[];
    readonly maxValuesPerHour: number;
  };
}

export interface PostgresTuning {
  readonly ssl: Env['DB_SSL'];
  readonly poolMax: number;
  readonly idleTimeoutSeconds: number;
  readonly connectTimeoutSeconds: number;
  readonly statementTimeoutMs: number;
  readonly prepare: boolean;
}

/** Property keys as `by` takes them: 1 to 255 characters, none twice. */
function parseDimensionList(text: string | undefined): string[] {
  if (text === undefined) return [];
  const keys = text.split(',').map((k) => k.trim());
  const bad = keys.find((k) => k.length === 0 || k.length > 255);
  if (bad !== undefined) {
    throw new ConfigError(
      `Invalid configuration: ROLLUP_DIMENSIONS: every comma-separated key must have 1 to 255 characters (found ${JSON.stringify(bad)})`,
    );
  }
  const duplicate = keys.find((k, i) => keys.indexOf(k) !== i);
  if (duplicate !== undefined) {
    throw new ConfigError(`Invalid configuration: ROLLUP_DIMENSIONS names ${JSON.stringify(duplicate)} twice`);
  }
  return keys;
}

/** Pure: builds a Config from an environment, throwing ConfigError that names every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  const limits = {
    ingestMaxResources: e.INGEST_MAX_RESOURCES,
    ingestMaxBodyBytes: e.INGEST_MAX_BODY_BYTES,
    queryMaxRangeDays: e.QUERY_MAX_RANGE_DAYS,
    aggregateBatchBuckets: e.AGGREGATE_BATCH_BUCKETS,
    aggregateTimeBudgetMs: e.AGGREGATE_TIME_BUDGET_MS,
  };
  const rollups = {
    extraDimensions: parseDimensionList(e.ROLLUP_DIMENSIONS),
    maxValuesPerHour: e.ROLLUP_MAX_VALUES_PER_HOUR,
  };
  const common = { logLevel: e.LOG_LEVEL, logSql: e.LOG_SQL, apiKeys: e.API_KEYS, limits, rollups };

  if (e.DB_DRIVER === 'data-api') {
    const missing = (['DB_CLUSTER_ARN', 'DB_SECRET_ARN', 'DB_NAME'] as const).filter((k) => !e[k]);
    if (missing.length > 0) {
      throw new ConfigError(`Invalid configuration: DB_DRIVER=data-api needs ${missing.join(', ')}`);
    }
    return {
      ...common,
      db: {
        driver: 'data-api',
        clusterArn: e.DB_CLUSTER_ARN as string,
        secretArn: e.DB_SECRET_ARN as string,
        database: e.DB_NAME as string,
        endpoint: e.DB_DATA_API_ENDPOINT,
        region: e.AWS_REGION,
        retryBudgetMs: e.DB_DATA_API_RETRY_BUDGET_MS,
      },
    };
  }

  if (!e.DATABASE_URL && !e.DB_HOST) {
    throw new ConfigError('Invalid configuration: set DATABASE_URL, or DB_HOST with DB_USER, DB_PASSWORD and DB_NAME');
  }
  if (!e.DATABASE_URL) {
    const missing = (['DB_USER', 'DB_NAME'] as const).filter((k) => !e[k]);
    if (missing.length > 0) {
      throw new ConfigError(`Invalid configuration: DB_HOST is set but ${missing.join(', ')} missing`);
    }
  }
  return {
    ...common,
    db: {
      driver: 'postgres',
      // With a URL, the URL alone says where to connect (postgres.js lets options override it).
      ...(e.DATABASE_URL
        ? { url: e.DATABASE_URL }
        : { host: e.DB_HOST, port: e.DB_PORT, user: e.DB_USER, password: e.DB_PASSWORD, database: e.DB_NAME }),
      ssl: e.DB_SSL,
      poolMax: e.DB_POOL_MAX,
      idleTimeoutSeconds: e.DB_IDLE_TIMEOUT_S,
      connectTimeoutSeconds: e.DB_CONNECT_TIMEOUT_S,
      statementTimeoutMs: e.DB_STATEMENT_TIMEOUT_MS,
      prepare: e.DB_PREPARE,
    },
  };
}

let cached: Config | undefined;

/** The container's configuration, read from process.env on first use and kept. */
export function config(): Config {
  cached ??= loadConfig(process.env);
  return cached;
}

const RollupEnvSchema = EnvSchema.pick({ ROLLUP_DIMENSIONS: true, ROLLUP_MAX_VALUES_PER_HOUR: true });
let cachedRollups: Config['rollups'] | undefined;

/**
 * The rollup settings alone, read once: the aggregator and the rebuild need them also where the
 * database is given to them rather than configured (scripts, tests). Fails loudly like config().
 */
export function rollupSettings(env: NodeJS.ProcessEnv = process.env): Config['rollups'] {
  if (env === process.env && cachedRollups) return cachedRollups;
  const parsed = RollupEnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
  }
  const settings = {
    extraDimensions: parseDimensionList(parsed.data.ROLLUP_DIMENSIONS),
    maxValuesPerHour: parsed.data.ROLLUP_MAX_VALUES_PER_HOUR,
  };
  if (env === process.env) cachedRollups = settings;
  return settings;
}

/** Logging must work before (and without) a valid database configuration. */
export function logLevelFromEnv(env: NodeJS.ProcessEnv = process.env): Env['LOG_LEVEL'] {
  const level = env.LOG_LEVEL;
  return level === 'debug' || level === 'warn' || level === 'error' || level === 'silent' ? level : 'info';
}
