import { createHash, timingSafeEqual } from 'node:crypto';
import { ACCOUNT_ID_PATTERN, ConfigError, DEFAULT_ACCOUNT_ID } from '../config';
import { HttpError } from '../klaviyo/errors';

/**
 * API keys are configured as SHA-256 hashes with a scope and an account, e.g.
 * API_KEYS="read@acme:<hex>,write@acme:<hex>,admin:<hex>". The server never holds a key in clear
 * text. `admin` may do everything; `read` and `write` are separate, so a sync job's key cannot read
 * the data back and a dashboard's key cannot write.
 *
 * The key is the account, as with Klaviyo's own keys: every request acts on the account its key is
 * bound to, and sees nothing of any other. An entry without `@account` is bound to the account
 * 'default' (where the data stored before accounts existed is), so API_KEYS written before accounts
 * keep working unchanged. A key may appear in several entries (scopes) of one account, never in two
 * accounts. An admin key may act on another account by naming it in the X-Account-Id header; any
 * other key sending that header is refused (403), never silently served its own account.
 */
export type Scope = 'read' | 'write' | 'admin';

export interface ApiKeyEntry {
  readonly scope: Scope;
  readonly accountId: string;
  readonly hash: Buffer;
}

/** Who is calling: the scope the request was granted and the account it acts on. */
export interface Caller {
  readonly scope: Scope;
  readonly accountId: string;
}

/** The header an admin key names another account with (lower case, as requests carry headers). */
export const ACCOUNT_HEADER = 'x-account-id';

export function parseApiKeys(value: string | undefined): ApiKeyEntry[] {
  if (!value) return [];
  const entries = value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part, index) => {
      const match = /^(read|write|admin)(?:@([^:]*))?:([0-9a-fA-F]{64})$/.exec(part);
      const account = match?.[2];
      if (!match || (account !== undefined && !ACCOUNT_ID_PATTERN.test(account))) {
        throw new ConfigError(
          `API_KEYS entry ${index + 1} must be "<read|write|admin>[@<account>]:<64 hex digits of SHA-256>", ` +
            'the account made of letters, digits, "_", "." and "-" (at most 64, starting with a letter or digit)',
        );
      }
      return {
        scope: match[1] as Scope,
        accountId: account ?? DEFAULT_ACCOUNT_ID,
        hash: Buffer.from(match[3] as string, 'hex'),
      };
    });
  const accountOf = new Map<string, string>();
  entries.forEach((entry, index) => {
    const hex = entry.hash.toString('hex');
    const bound = accountOf.get(hex);
    if (bound !== undefined && bound !== entry.accountId) {
      throw new ConfigError(`API_KEYS entry ${index + 1}: a key belongs to one account, and this one is already bound`);
    }
    accountOf.set(hex, entry.accountId);
  });
  return entries;
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

/**
 * The caller of a request: throws 401 without a valid key, 403 when the key lacks the scope or sends
 * X-Account-Id without the admin scope, and 400 for an X-Account-Id that is no account id.
 */
export function authorize(
  authorization: string | undefined,
  needed: Scope,
  keys: readonly ApiKeyEntry[],
  accountHeader?: string,
): Caller {
  const granted = authorizeKey(authorization, needed, keys);
  if (accountHeader === undefined) return granted;
  if (granted.scope !== 'admin') {
    throw new HttpError(403, {
      code: 'permission_denied',
      detail: 'Only an admin key may name an account with X-Account-Id; this key acts on its own account.',
      header: 'X-Account-Id',
    });
  }
  const named = accountHeader.trim();
  if (!ACCOUNT_ID_PATTERN.test(named)) {
    throw new HttpError(400, {
      code: 'invalid',
      detail: 'X-Account-Id must be an account id: letters, digits, "_", "." and "-", at most 64.',
      header: 'X-Account-Id',
    });
  }
  return { scope: 'admin', accountId: named };
}

function authorizeKey(authorization: string | undefined, needed: Scope, keys: readonly ApiKeyEntry[]): Caller {
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
  let accountId = DEFAULT_ACCOUNT_ID;
  for (const entry of keys) {
    if (timingSafeEqual(presented, entry.hash)) {
      scopes.add(entry.scope);
      // parseApiKeys makes sure that every entry of one key names the same account.
      accountId = entry.accountId;
    }
  }
  if (scopes.size === 0) {
    throw new HttpError(
      401,
      { code: 'not_authenticated', detail: 'The API key is not valid.', header: 'Authorization' },
      { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
    );
  }
  if (scopes.has('admin')) return { scope: 'admin', accountId };
  if (scopes.has(needed)) return { scope: needed, accountId };
  // RFC 6750 §3.1: a valid key without the scope is 403, and the challenge names the scope needed.
  throw new HttpError(
    403,
    { code: 'permission_denied', detail: `This API key does not have the "${needed}" scope.`, header: 'Authorization' },
    { 'WWW-Authenticate': `Bearer error="insufficient_scope", scope="${needed}"` },
  );
}
