import { TransientDbError } from '../errors';

/**
 * What a failed Data API call means for the caller.
 *
 * PostgreSQL errors reach us only as text: the service answers DatabaseErrorException (Aurora
 * Serverless v2 / provisioned) or BadRequestException (Serverless v1) with PgJDBC's message, e.g.
 *   ERROR: duplicate key value violates unique constraint "x_pkey"
 *     Detail: Key (id)=(1) already exists.; SQLState: 23505
 * The SQLSTATE is the suffix `; SQLState: NNNNN`, anchored at the end, so a message that merely
 * mentions "SQLState" cannot fake one. The rest of the code maps errors by that code, as it does
 * for postgres.js errors.
 *
 * Transient conditions come as service exceptions (by name) or, for a cluster waking up, as a
 * driver message without SQLSTATE ("Communications link failure"); those few messages are the only
 * text matched here, because the service gives them no code.
 */

/** A PostgreSQL error returned through the Data API, with the SQLSTATE as `.code` like postgres.js. */
export class DataApiDatabaseError extends Error {
  override readonly name = 'DataApiDatabaseError';
  readonly code: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly position?: string;
  readonly where?: string;

  constructor(
    parsed: ParsedDatabaseMessage,
    override readonly cause?: unknown,
  ) {
    super(parsed.message);
    this.code = parsed.code;
    if (parsed.detail !== undefined) this.detail = parsed.detail;
    if (parsed.hint !== undefined) this.hint = parsed.hint;
    if (parsed.position !== undefined) this.position = parsed.position;
    if (parsed.where !== undefined) this.where = parsed.where;
  }
}

/** The Data API refused a result over its 1 MiB response limit: the query must page. */
export class DataApiResultTooLargeError extends Error {
  override readonly name = 'DataApiResultTooLargeError';
  readonly code = 'DATA_API_RESULT_TOO_LARGE';
  constructor(override readonly cause?: unknown) {
    super(
      'The Data API refused a result over its 1 MiB response limit. Page the query (LIMIT with a keyset cursor) ' +
        'so that each page stays well under 1 MiB.',
    );
  }
}

/** A request the driver will not send: over the Data API's 4 MiB request limit. */
export class DataApiRequestTooLargeError extends Error {
  override readonly name = 'DataApiRequestTooLargeError';
  readonly code = 'DATA_API_REQUEST_TOO_LARGE';
  constructor(bytes: number, limit: number) {
    super(
      `A Data API request of ${bytes} bytes exceeds the ${limit}-byte limit; split the batch into smaller statements.`,
    );
  }
}

/** Any other refusal by the service (access denied, validation, unknown transaction...). */
export class DataApiRequestError extends Error {
  override readonly name = 'DataApiRequestError';
  constructor(
    message: string,
    /** The service's exception name, e.g. ValidationException. */
    readonly code: string,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

export interface ParsedDatabaseMessage {
  readonly code: string;
  readonly message: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly position?: string;
  readonly where?: string;
}

const SQLSTATE_SUFFIX = /;\s*SQLState:\s*([0-9A-Z]{5})\s*$/;
const SECTION = /\n\s*(Detail|Hint|Position|Where|Internal Query|Internal Position):\s*/g;

/** Reads PgJDBC's message format; undefined when the text carries no SQLSTATE. */
export function parseDatabaseMessage(text: string): ParsedDatabaseMessage | undefined {
  const suffix = SQLSTATE_SUFFIX.exec(text);
  if (!suffix) return undefined;
  const code = suffix[1] as string;
  const body = text.slice(0, suffix.index).replace(/^(ERROR|FATAL|PANIC):\s*/, '');
  const parts = body.split(SECTION);
  const fields: Record<string, string> = {};
  for (let i = 1; i + 1 < parts.length; i += 2)
    fields[(parts[i] as string).toLowerCase()] = (parts[i + 1] as string).trim();
  return {
    code,
    message: (parts[0] ?? '').trim(),
    ...(fields.detail !== undefined ? { detail: fields.detail } : {}),
    ...(fields.hint !== undefined ? { hint: fields.hint } : {}),
    ...(fields.position !== undefined ? { position: fields.position } : {}),
    ...(fields.where !== undefined ? { where: fields.where } : {}),
  };
}

/** Service exceptions that say "try again shortly" (the request did not run, or the cluster is waking). */
const RETRYABLE_EXCEPTIONS = new Set([
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'ServiceUnavailableError',
  'ServiceUnavailableException',
  'DatabaseUnavailableException',
  'DatabaseResumingException',
  'InternalServerErrorException',
  'RequestTimeout',
  'RequestTimeoutException',
]);

/** The cluster could not be reached by the service itself (Serverless v1 resuming, failover). */
const UNREACHABLE_MESSAGES = [/^Communications link failure/i, /is resuming after being auto-paused/i];

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
]);

/**
 * The SDK's retry middleware replaces an error that is not `instanceof Error` in its realm (one made
 * in another VM context: jest's, or a bundle's) by `new Error('AWS SDK error wrapper for <name>:
 * <message>')`, dropping its code. Seen for a request sent on a keep-alive socket the server had
 * just closed ("TimeoutError: read ECONNRESET"). The text is all that is left to read.
 */
const SDK_WRAPPED = /^AWS SDK error wrapper for (\w+)(?::\s*([\s\S]*))?$/;

function isWrappedTransient(message: string): string | undefined {
  const wrapped = SDK_WRAPPED.exec(message);
  if (!wrapped) return undefined;
  const innerName = wrapped[1] as string;
  const rest = wrapped[2] ?? '';
  if (innerName === 'TimeoutError' || RETRYABLE_EXCEPTIONS.has(innerName)) return innerName;
  return [...NETWORK_CODES].find((code) => rest.includes(code));
}

/** SQLSTATEs that mean the connection behind the service broke: the statement can be run again. */
const isConnectionSqlState = (code: string) =>
  code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03';

export interface Classified {
  /** The error to throw if we give up (or at once when not retryable). */
  readonly error: Error;
  /** Worth another attempt within the time budget. */
  readonly retryable: boolean;
}

interface ServiceErrorShape {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/** Errors this module judged worth another attempt; the verdict sticks to the error object. */
const retryableErrors = new WeakSet<Error>();

function verdict(error: Error, retryable: boolean): Classified {
  if (retryable) retryableErrors.add(error);
  return { error, retryable };
}

function transient(message: string, code: string, cause: unknown, retryable: boolean): Classified {
  return verdict(new TransientDbError(message, code, cause), retryable);
}

/** Maps a failure of an SDK call (or an error already mapped by an inner call) to what to throw. */
export function classify(raw: unknown): Classified {
  // Duck-typed, not only instanceof: an error made in another realm is an Error all the same.
  const errorLike =
    raw instanceof Error || (typeof raw === 'object' && raw !== null && 'message' in raw && 'name' in raw);
  if (!errorLike) return { error: new Error(String(raw)), retryable: false };
  if (
    raw instanceof TransientDbError ||
    raw instanceof DataApiDatabaseError ||
    raw instanceof DataApiResultTooLargeError ||
    raw instanceof DataApiRequestTooLargeError ||
    raw instanceof DataApiRequestError
  ) {
    return { error: raw, retryable: retryableErrors.has(raw) };
  }
  const e = raw as ServiceErrorShape & Error;
  const name = typeof e.name === 'string' ? e.name : 'Error';
  const message = typeof e.message === 'string' ? e.message : '';
  const status = e.$metadata?.httpStatusCode;

  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) {
    return transient(`Data API unreachable: ${message}`, e.code, raw, true);
  }
  const wrappedTransient = isWrappedTransient(message);
  if (wrappedTransient) return transient(`Data API unreachable: ${message}`, wrappedTransient, raw, true);
  if (name === 'TimeoutError') return transient(`Data API request timed out: ${message}`, 'TimeoutError', raw, true);
  if (RETRYABLE_EXCEPTIONS.has(name)) return transient(`Data API: ${name}: ${message}`, name, raw, true);
  // The statement ran past the Data API's call timeout and was stopped; running it again would only
  // take as long again, so it is a 503 now rather than a retry.
  if (name === 'StatementTimeoutException') return transient(`Data API: ${name}: ${message}`, name, raw, false);

  if (name === 'UnsupportedResultException' && /size limit/i.test(message))
    return verdict(new DataApiResultTooLargeError(raw), false);
  if (/allowed response size limit/i.test(message)) return verdict(new DataApiResultTooLargeError(raw), false);

  if (name === 'DatabaseErrorException' || name === 'BadRequestException') {
    const parsed = parseDatabaseMessage(message);
    if (parsed) return verdict(new DataApiDatabaseError(parsed, raw), isConnectionSqlState(parsed.code));
    if (UNREACHABLE_MESSAGES.some((pattern) => pattern.test(message))) {
      return transient(`Data API: ${message.split('\n')[0]}`, 'CommunicationsLinkFailure', raw, true);
    }
  }
  if (status !== undefined && status >= 500) return transient(`Data API: ${name}: ${message}`, name, raw, true);
  if (e.$metadata) return verdict(new DataApiRequestError(`Data API: ${name}: ${message}`, name, raw), false);
  return { error: e, retryable: false };
}
