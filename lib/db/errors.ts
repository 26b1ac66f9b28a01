/**
 * Database errors classified by SQLSTATE or driver code, never by message text.
 */

/** Thrown by a driver when the cause is known to pass (the Data API's throttling, a resuming Aurora). */
export class TransientDbError extends Error {
  override readonly name = 'TransientDbError';
  constructor(
    message: string,
    readonly code: string,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

const CONNECTION_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
]);

/** SQLSTATE of a duplicate key: for writers that fall back to ON CONFLICT when a COPY meets one. */
export const UNIQUE_VIOLATION = '23505';

export function errorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err) {
    const code = err.code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** The connection itself is gone: safe to retry an idempotent unit of work on a new connection. */
export function isConnectionError(err: unknown): boolean {
  const code = errorCode(err);
  if (!code) return false;
  return (
    CONNECTION_CODES.has(code) ||
    code.startsWith('08') || // connection exception class
    code === '57P01' || // admin_shutdown (pg_terminate_backend)
    code === '57P02' || // crash_shutdown
    code === '57P03' // cannot_connect_now (starting up / shutting down)
  );
}

/** Worth a 503 with Retry-After: trying the same request later can succeed. */
export function isTransientDbError(err: unknown): boolean {
  if (err instanceof TransientDbError) return true;
  const code = errorCode(err);
  if (!code) return false;
  return (
    isConnectionError(err) ||
    code === 'TIME_BUDGET_EXCEEDED' || // the invocation's deadline came first (lib/db/budget.ts)
    code === '40001' || // serialization_failure
    code === '40P01' || // deadlock_detected
    code === '55P03' || // lock_not_available
    code === '57014' || // query_canceled (statement_timeout)
    code === '53300' || // too_many_connections
    code === '53400' // configuration_limit_exceeded
  );
}
