import { z } from 'zod';
import { hasWholeHourOffsets, resolveTimeZone } from './time/timezone';
import { hostOfUrl, resolveTlsMode, splitUrlTls, TlsConfigError, type TlsMode } from './db/tls';

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
  // libpq's sslmode: disable, require, verify-ca, verify-full (lib/db/tls.ts). Unset: as the URL's
  // sslmode says, else disable for this machine and verify-full for any other host.
  DB_SSL: optionalText,
  // A PEM file of the CAs to trust (libpq's sslrootcert); deployed stages name the Lambda runtime's
  // Amazon CA bundle, which holds the RDS CAs (docs/operations.md).
  DB_SSL_ROOT_CERT: optionalText,
  // The password as an RDS IAM token signed per connection with the function's role.
  DB_IAM_AUTH: bool(false),
  // Secrets Manager's endpoint, for tests against a local one.
  DB_SECRETS_ENDPOINT: optionalText,
  DB_POOL_MAX: positiveInt(1),
  DB_IDLE_TIMEOUT_S: nonNegativeInt(20),
  // Every wait below is also cut at the invocation's deadline (lib/db/budget.ts); these bound one
  // attempt. docs/operations.md has the arithmetic that makes them fit the functions' timeouts.
  DB_CONNECT_TIMEOUT_S: positiveInt(2),
  // New connections tried again after a lost one, within one unit of work.
  DB_CONNECT_RETRIES: nonNegativeInt(2),
  DB_STATEMENT_TIMEOUT_MS: nonNegativeInt(3_000),
  // What a handler keeps of its remaining time to answer and write its log line: database work ends
  // this long before the function's timeout.
  RESPONSE_MARGIN_MS: positiveInt(1_000),
  // The public origin of the API (https://api.example.com) for links, when it is not the API
  // Gateway's own domain (a custom domain, a CDN). Never taken from a request's headers.
  PUBLIC_BASE_URL: optionalText.pipe(
    z
      .string()
      .regex(/^https?:\/\/[A-Za-z0-9.\-:[\]]+$/, 'must be an origin such as https://api.example.com (no path)')
      .optional(),
  ),
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
  // An SSM parameter holding API_KEYS, read at run time (deployed stages): no dynamic reference
  // resolved into a function setting. SSM_ENDPOINT is for tests against a local endpoint.
  API_KEYS_PARAMETER: optionalText,
  SSM_ENDPOINT: optionalText,
  INGEST_MAX_RESOURCES: positiveInt(1000),
  INGEST_MAX_BODY_BYTES: positiveInt(5 * 1024 * 1024),
  QUERY_MAX_RANGE_DAYS: positiveInt(366),
  AGGREGATE_BATCH_BUCKETS: positiveInt(5000),
  // Below the aggregate function's Lambda timeout (60 s), leaving room for the last batch and the log line.
  AGGREGATE_TIME_BUDGET_MS: positiveInt(40_000),
  // Aggregator runs the schedule starts together, each on its own connection and its own share of the
  // accounts (docs/scaling.md): up to the database's vCPUs, for a deployment of many accounts.
  AGGREGATE_RUNS: positiveInt(1).pipe(z.number().max(16, 'must be at most 16')),
  // Pulling from Klaviyo (lib/sync, docs/sync.md). The key itself is never a setting here: the CLI
  // takes KLAVIYO_API_KEY, the function reads the secret KLAVIYO_API_KEY_SECRET_ID names at run time.
  KLAVIYO_BASE_URL: optionalText.pipe(z.url({ protocol: /^https?$/ }).optional()),
  KLAVIYO_API_KEY_SECRET_ID: optionalText,
  SYNC_ACCOUNT_ID: optionalText.pipe(
    z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be an account id: letters, digits, _ . -')
      .optional(),
  ),
  // Below the sync function's Lambda timeout, leaving room for the page in flight and the log line.
  SYNC_TIME_BUDGET_MS: positiveInt(240_000),
  SYNC_LOOKBACK_HOURS: positiveInt(24),
  SYNC_LOOKBACK_EVERY_MINUTES: positiveInt(60),
  SYNC_SAFETY_LAG_SECONDS: positiveInt(5),
  SYNC_BACKFILL_DAYS: positiveInt(365),
  SYNC_SLICE_HOURS: positiveInt(168),
  // Share (in percent) of the account's steady rate limits this sync may use; other integrations share them.
  SYNC_RATE_SHARE_PERCENT: positiveInt(50).pipe(z.number().max(100, 'must be at most 100')),
  // Event property keys rolled up besides Klaviyo's documented dimensions (docs/breakdowns.md), comma-separated.
  ROLLUP_DIMENSIONS: optionalText,
  // Above this many distinct values of a key in one (metric, hour), the pair is left to raw events.
  ROLLUP_MAX_VALUES_PER_HOUR: positiveInt(400),
  // Keys whose distinct profiles are rolled up besides the attribution keys (docs/breakdowns.md), comma-separated.
  ROLLUP_UNIQUE_DIMENSIONS: optionalText,
  // IANA zones whose days get daily dimension rows of their own besides UTC's (docs/breakdowns.md), comma-separated.
  ROLLUP_DAY_ZONES: optionalText,
  // How the ingest routes write (docs/queue.md): sync writes in the request; queue validates, puts the
  // request on the SQS queue INGEST_QUEUE_URL names and answers 202, and the ingestConsumer function
  // writes it in batches.
  INGEST_MODE: z.enum(['sync', 'queue']).optional().default('sync'),
  INGEST_QUEUE_URL: optionalText.pipe(z.url({ protocol: /^https?$/ }).optional()),
  // A local SQS-compatible endpoint (npm start, the tests); unset on AWS.
  INGEST_QUEUE_ENDPOINT: optionalText.pipe(z.url({ protocol: /^https?$/ }).optional()),
  // SQS's limit on a message and on one SendMessageBatch call: 256 KiB, raised by AWS to 1 MiB in 2025.
  INGEST_QUEUE_MESSAGE_MAX_BYTES: positiveInt(262_144).pipe(
    z.number().min(16_384, 'must be at least 16384').max(1_048_576, 'must be at most 1048576 (SQS limit)'),
  ),
});

export type Env = z.infer<typeof EnvSchema>;

export interface PostgresConnection {
  /** Without TLS parameters: those are read into `ssl` and `sslRootCert`. */
  readonly url?: string;
  readonly host?: string;
  readonly port?: number;
  readonly user?: string;
  readonly password?: string;
  readonly database?: string;
  /** Where the password comes from when it is not `password` (lib/db/credentials.ts). */
  readonly passwordSource?: PasswordSource;
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
  /** Where API_KEYS is read from at run time when it is not given itself. */
  readonly apiKeysParameter?: { readonly name: string; readonly region?: string; readonly endpoint?: string };
  /** Database work of an invocation ends this long before its timeout. */
  readonly responseMarginMs: number;
  /** The origin of links in answers; undefined: API Gateway's own domain name. */
  readonly publicBaseUrl?: string;
  readonly limits: {
    readonly ingestMaxResources: number;
    readonly ingestMaxBodyBytes: number;
    readonly queryMaxRangeDays: number;
    readonly aggregateBatchBuckets: number;
    readonly aggregateTimeBudgetMs: number;
    /** Runs the schedule starts together (the schedule's rules pass each its index). */
    readonly aggregateRuns: number;
  };
  readonly sync: SyncSettings;
  readonly ingest: IngestSettings;
  readonly rollups: {
    /** Extra property keys to roll up (Klaviyo's documented dimensions are registered by migration 0007). */
    readonly extraDimensions: readonly string[];
    readonly maxValuesPerHour: number;
    /** Extra keys whose distinct profiles are rolled up (migration 0011 registers the attribution keys). */
    readonly extraUniqueDimensions: readonly string[];
    /** Zones other than UTC whose days have daily dimension rows (migration 0016). */
    readonly dayZones: readonly string[];
  };
}

export interface IngestSettings {
  readonly mode: 'sync' | 'queue';
  /** Queue mode only. */
  readonly queue?: {
    readonly queueUrl: string;
    readonly endpoint?: string;
    readonly region?: string;
    readonly maxBytes: number;
  };
}

export interface SyncSettings {
  readonly baseUrl: string;
  readonly apiKeySecret?: string;
  readonly accountId: string;
  readonly timeBudgetMs: number;
  readonly lookbackMs: number;
  readonly lookbackEveryMs: number;
  readonly safetyLagMs: number;
  readonly backfillMs: number;
  readonly sliceMs: number;
  /** 0 < rateShare <= 1. */
  readonly rateShare: number;
}

export interface PostgresTuning {
  readonly ssl: TlsMode;
  /** A PEM file of trusted CAs for verify-ca / verify-full; unset or `system`: Node's trust store. */
  readonly sslRootCert?: string;
  /** New connections tried after a lost one in one unit of work (2 when unset). */
  readonly connectRetries?: number;
  readonly poolMax: number;
  readonly idleTimeoutSeconds: number;
  readonly connectTimeoutSeconds: number;
  readonly statementTimeoutMs: number;
  readonly prepare: boolean;
}

/** Property keys as `by` takes them: 1 to 255 characters, none twice. */
function parseDimensionList(text: string | undefined, variable = 'ROLLUP_DIMENSIONS'): string[] {
  if (text === undefined) return [];
  const keys = text.split(',').map((k) => k.trim());
  const bad = keys.find((k) => k.length === 0 || k.length > 255);
  if (bad !== undefined) {
    throw new ConfigError(
      `Invalid configuration: ${variable}: every comma-separated key must have 1 to 255 characters (found ${JSON.stringify(bad)})`,
    );
  }
  const duplicate = keys.find((k, i) => keys.indexOf(k) !== i);
  if (duplicate !== undefined) {
    throw new ConfigError(`Invalid configuration: ${variable} names ${JSON.stringify(duplicate)} twice`);
  }
  return keys;
}

/**
 * IANA zones whose every local midnight falls on a whole UTC hour (daily rows are sums of hourly ones,
 * so a day that starts mid-hour cannot have one), without UTC, whose days are always kept; none twice.
 */
function parseDayZoneList(text: string | undefined): string[] {
  if (text === undefined) return [];
  const zones = text.split(',').map((z) => z.trim());
  for (const zone of zones) {
    if (resolveTimeZone(zone) === undefined) {
      throw new ConfigError(
        `Invalid configuration: ROLLUP_DAY_ZONES: ${JSON.stringify(zone)} is not an IANA time zone`,
      );
    }
    if (!hasWholeHourOffsets(zone)) {
      throw new ConfigError(
        `Invalid configuration: ROLLUP_DAY_ZONES: ${JSON.stringify(zone)} has days that do not start on a whole UTC hour`,
      );
    }
  }
  const duplicate = zones.find((z, i) => zones.indexOf(z) !== i);
  if (duplicate !== undefined) {
    throw new ConfigError(`Invalid configuration: ROLLUP_DAY_ZONES names ${JSON.stringify(duplicate)} twice`);
  }
  return zones.filter((z) => z !== 'UTC');
}

/** Pure: builds a Config from an environment, throwing ConfigError that names every bad variable. */
/** Where the postgres driver's password comes from (lib/db/credentials.ts reads it). */
export type PasswordSource =
  | { readonly kind: 'static'; readonly password?: string }
  | { readonly kind: 'iam'; readonly region: string }
  | { readonly kind: 'secret'; readonly secretArn: string; readonly region?: string; readonly endpoint?: string };

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
    aggregateRuns: e.AGGREGATE_RUNS,
  };
  const sync: SyncSettings = {
    baseUrl: (e.KLAVIYO_BASE_URL ?? 'https://a.klaviyo.com').replace(/\/+$/, ''),
    apiKeySecret: e.KLAVIYO_API_KEY_SECRET_ID,
    accountId: e.SYNC_ACCOUNT_ID ?? DEFAULT_ACCOUNT_ID,
    timeBudgetMs: e.SYNC_TIME_BUDGET_MS,
    lookbackMs: e.SYNC_LOOKBACK_HOURS * 3_600_000,
    lookbackEveryMs: e.SYNC_LOOKBACK_EVERY_MINUTES * 60_000,
    safetyLagMs: e.SYNC_SAFETY_LAG_SECONDS * 1000,
    backfillMs: e.SYNC_BACKFILL_DAYS * 86_400_000,
    sliceMs: e.SYNC_SLICE_HOURS * 3_600_000,
    rateShare: e.SYNC_RATE_SHARE_PERCENT / 100,
  };
  const common = {
    ingest: ingestSettings(e),
    logLevel: e.LOG_LEVEL,
    logSql: e.LOG_SQL,
    apiKeys: e.API_KEYS,
    ...(e.API_KEYS_PARAMETER && !e.API_KEYS
      ? { apiKeysParameter: { name: e.API_KEYS_PARAMETER, region: e.AWS_REGION, endpoint: e.SSM_ENDPOINT } }
      : {}),
    responseMarginMs: e.RESPONSE_MARGIN_MS,
    publicBaseUrl: e.PUBLIC_BASE_URL,
    limits,
    sync,
    rollups: {
      extraDimensions: parseDimensionList(e.ROLLUP_DIMENSIONS),
      maxValuesPerHour: e.ROLLUP_MAX_VALUES_PER_HOUR,
      extraUniqueDimensions: parseDimensionList(e.ROLLUP_UNIQUE_DIMENSIONS, 'ROLLUP_UNIQUE_DIMENSIONS'),
      dayZones: parseDayZoneList(e.ROLLUP_DAY_ZONES),
    },
  };

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
  return { ...common, db: postgresDb(e) };
}

/** Queue mode needs its queue; a queue named in sync mode is a contradiction, not a default. */
function ingestSettings(e: Env): IngestSettings {
  if (e.INGEST_MODE === 'sync') {
    const stray = (['INGEST_QUEUE_URL', 'INGEST_QUEUE_ENDPOINT'] as const).filter((k) => e[k] !== undefined);
    if (stray.length > 0) {
      throw new ConfigError(
        `Invalid configuration: ${stray.join(' and ')} set but INGEST_MODE is sync: set INGEST_MODE=queue, or unset them`,
      );
    }
    return { mode: 'sync' };
  }
  if (!e.INGEST_QUEUE_URL) throw new ConfigError('Invalid configuration: INGEST_MODE=queue needs INGEST_QUEUE_URL');
  return {
    mode: 'queue',
    queue: {
      queueUrl: e.INGEST_QUEUE_URL,
      ...(e.INGEST_QUEUE_ENDPOINT ? { endpoint: e.INGEST_QUEUE_ENDPOINT } : {}),
      ...(e.AWS_REGION ? { region: e.AWS_REGION } : {}),
      maxBytes: e.INGEST_QUEUE_MESSAGE_MAX_BYTES,
    },
  };
}

function postgresDb(e: Env): Config['db'] {
  let tls: { url?: string; mode: TlsMode; rootCert?: string };
  try {
    const fromUrl = e.DATABASE_URL ? splitUrlTls(e.DATABASE_URL) : undefined;
    if (fromUrl?.sslrootcert && e.DB_SSL_ROOT_CERT && fromUrl.sslrootcert !== e.DB_SSL_ROOT_CERT) {
      throw new TlsConfigError('DATABASE_URL sslrootcert and DB_SSL_ROOT_CERT name different files: set one');
    }
    const mode = resolveTlsMode({
      urlMode: fromUrl?.sslmode,
      envMode: e.DB_SSL,
      host: fromUrl ? hostOfUrl(fromUrl.url) : e.DB_HOST,
    });
    tls = { url: fromUrl?.url, mode, rootCert: fromUrl?.sslrootcert ?? e.DB_SSL_ROOT_CERT };
  } catch (err) {
    if (err instanceof TlsConfigError) throw new ConfigError(`Invalid configuration: ${err.message}`);
    throw err;
  }
  const passwordSource = passwordSourceOf(e, tls.mode);
  return {
    driver: 'postgres',
    // With a URL, the URL alone says where to connect (postgres.js lets options override it).
    ...(tls.url
      ? { url: tls.url }
      : { host: e.DB_HOST, port: e.DB_PORT, user: e.DB_USER, password: e.DB_PASSWORD, database: e.DB_NAME }),
    ...(passwordSource ? { passwordSource } : {}),
    ssl: tls.mode,
    ...(tls.rootCert ? { sslRootCert: tls.rootCert } : {}),
    poolMax: e.DB_POOL_MAX,
    idleTimeoutSeconds: e.DB_IDLE_TIMEOUT_S,
    connectTimeoutSeconds: e.DB_CONNECT_TIMEOUT_S,
    connectRetries: e.DB_CONNECT_RETRIES,
    statementTimeoutMs: e.DB_STATEMENT_TIMEOUT_MS,
    prepare: e.DB_PREPARE,
  };
}

/** A password that is not in the environment: an IAM token, or a secret read at run time. */
function passwordSourceOf(e: Env, mode: TlsMode): PasswordSource | undefined {
  const given = [
    // With a URL, DB_PASSWORD is not read (the URL alone says how to connect).
    e.DATABASE_URL
      ? /^postgres(?:ql)?:\/\/[^@/]*:[^@/]+@/.test(e.DATABASE_URL)
        ? 'a password in DATABASE_URL'
        : undefined
      : e.DB_PASSWORD
        ? 'DB_PASSWORD'
        : undefined,
    e.DB_IAM_AUTH ? 'DB_IAM_AUTH' : undefined,
    e.DB_SECRET_ARN ? 'DB_SECRET_ARN' : undefined,
  ].filter((x): x is string => x !== undefined);
  if (given.length > 1) {
    throw new ConfigError(`Invalid configuration: the database password is given twice (${given.join(', ')}): set one`);
  }
  if (e.DB_IAM_AUTH) {
    if (mode === 'disable') {
      throw new ConfigError('Invalid configuration: DB_IAM_AUTH needs TLS (RDS refuses IAM tokens in plain text)');
    }
    if (!e.AWS_REGION) throw new ConfigError('Invalid configuration: DB_IAM_AUTH needs AWS_REGION');
    return { kind: 'iam', region: e.AWS_REGION };
  }
  if (e.DB_SECRET_ARN) {
    return { kind: 'secret', secretArn: e.DB_SECRET_ARN, region: e.AWS_REGION, endpoint: e.DB_SECRETS_ENDPOINT };
  }
  return undefined;
}

let cached: Config | undefined;

/** The container's configuration, read from process.env on first use and kept. */
export function config(): Config {
  cached ??= loadConfig(process.env);
  return cached;
}

const RollupEnvSchema = EnvSchema.pick({
  ROLLUP_DIMENSIONS: true,
  ROLLUP_MAX_VALUES_PER_HOUR: true,
  ROLLUP_UNIQUE_DIMENSIONS: true,
  ROLLUP_DAY_ZONES: true,
});
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
    extraUniqueDimensions: parseDimensionList(parsed.data.ROLLUP_UNIQUE_DIMENSIONS, 'ROLLUP_UNIQUE_DIMENSIONS'),
    dayZones: parseDayZoneList(parsed.data.ROLLUP_DAY_ZONES),
  };
  if (env === process.env) cachedRollups = settings;
  return settings;
}

/** Logging must work before (and without) a valid database configuration. */
export function logLevelFromEnv(env: NodeJS.ProcessEnv = process.env): Env['LOG_LEVEL'] {
  const level = env.LOG_LEVEL;
  return level === 'debug' || level === 'warn' || level === 'error' || level === 'silent' ? level : 'info';
}

/**
 * The account that data stored before accounts existed belongs to (migrations/0010_accounts.sql), that
 * API keys without `@account` act on, and that the sync's settings describe unless SYNC_ACCOUNT_ID
 * names another.
 */
export const DEFAULT_ACCOUNT_ID = 'default';

/** What an account id may look like (the CHECK of klaviyo_accounts.account_id says the same). */
export const ACCOUNT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
