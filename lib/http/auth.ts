import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../config';
import { HttpError } from '../klaviyo/errors';

/**
 * API keys are configured as SHA-256 hashes with a scope, e.g. API_KEYS="read:<hex>,write:<hex>".
 * The server never holds a key in clear text. `admin` may do everything; `read` and `write` are
 * separate, so a sync job's key cannot read the data back and a dashboard's key cannot write.
 */
export type Scope = 'read' | 'write' | 'admin';

export interface ApiKeyEntry {
  readonly scope: Scope;
  readonly hash: Buffer;
}

export function parseApiKeys(value: string | undefined): ApiKeyEntry[] {
  if (!value) return [];
  return value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part, index) => {
      const match = /^(read|write|admin):([0-9a-fA-F]{64})$/.exec(part);
      if (!match) {
        throw new ConfigError(`API_KEYS entry ${index + 1} must be "<read|write|admin>:<64 hex digits of SHA-256>"`);
      }
      return { scope: match[1] as Scope, hash: Buffer.from(match[2] as string, 'hex') };
    });
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Bearer <key> or Klaviyo's own scheme, Klaviyo-API-Key <key>, so Klaviyo's SDKs can call us. */
export function extractApiKey(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const match = /^\s*(Bearer|Klaviyo-API-Key)\s+(\S+)\s*$/i.exec(authorization);
  return match?.[2];
}

/** Throws 401 without a valid key and 403 when the key lacks the scope. */
export function authorize(authorization: string | undefined, needed: Scope, keys: readonly ApiKeyEntry[]): Scope {
  const key = extractApiKey(authorization);
  if (!key) {
    throw new HttpError(
      401,
      {
        code: 'not_authenticated',
        detail: 'Send an API key as "Authorization: Bearer <key>" or "Klaviyo-API-Key <key>".',
        header: 'Authorization',
      },
      { 'WWW-Authenticate': 'Bearer' },
    );
  }
  const presented = createHash('sha256').update(key, 'utf8').digest();
  // Compare against every entry, without stopping early, so timing says nothing about which matched.
  const scopes = new Set<Scope>();
  for (const entry of keys) {
    if (timingSafeEqual(presented, entry.hash)) scopes.add(entry.scope);
  }
  if (scopes.size === 0) {
    throw new HttpError(
      401,
      { code: 'not_authenticated', detail: 'The API key is not valid.', header: 'Authorization' },
      { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
    );
  }
  if (scopes.has('admin')) return 'admin';
  if (scopes.has(needed)) return needed;
  // RFC 6750 §3.1: a valid key without the scope is 403, and the challenge names the scope needed.
  throw new HttpError(
    403,
    { code: 'permission_denied', detail: `This API key does not have the "${needed}" scope.`, header: 'Authorization' },
    { 'WWW-Authenticate': `Bearer error="insufficient_scope", scope="${needed}"` },
  );
}
