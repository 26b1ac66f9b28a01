import fc from 'fast-check';
import { ConfigError } from '../../lib/config';
import { authorize, extractApiKey, hashApiKey, parseApiKeys, type ApiKeyEntry, type Scope } from '../../lib/http/auth';
import { HttpError } from '../../lib/klaviyo/errors';
import { httpHandler } from '../../lib/http/handler';
import { invoke } from '../support/http';
import { TEST_KEYS } from '../support/setupEnv';
// The module object itself (not an interop copy), so that a spy on it sees auth.ts's calls.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- see above: a spy needs the module object
import crypto = require('node:crypto');

/**
 * lib/http/auth.ts and the wrapper's use of it, without a database: the route-by-route checks are in
 * routes.auth.test.ts.
 */

function entries(spec: Record<string, Scope>): ApiKeyEntry[] {
  return parseApiKeys(
    Object.entries(spec)
      .map(([key, scope]) => `${scope}:${hashApiKey(key)}`)
      .join(','),
  );
}

function httpErrorOf(fn: () => unknown): HttpError {
  try {
    fn();
  } catch (err) {
    if (err instanceof HttpError) return err;
    throw err;
  }
  throw new Error('expected an HttpError');
}

describe('parseApiKeys', () => {
  const hex = hashApiKey('k');

  it('reads scope:hash pairs, with spaces, empty parts and upper-case hex', () => {
    const parsed = parseApiKeys(` read:${hex} ,, write:${hex.toUpperCase()},admin:${hex}, `);
    expect(parsed.map((e) => e.scope)).toEqual(['read', 'write', 'admin']);
    for (const e of parsed) expect(e.hash.equals(Buffer.from(hex, 'hex'))).toBe(true);
  });

  it('configures no key at all from an empty or missing variable', () => {
    expect(parseApiKeys(undefined)).toEqual([]);
    expect(parseApiKeys('')).toEqual([]);
  });

  it.each([
    ['an unknown scope', `owner:${hex}`],
    ['a clear-text key instead of a hash', 'read:my-secret-key'],
    ['a short hash', `read:${hex.slice(1)}`],
    ['a long hash', `read:${hex}0`],
    ['no scope', hex],
    ['non-hex digits', `read:${'g'.repeat(64)}`],
  ])('rejects %s with a ConfigError that does not echo the value', (_what, value) => {
    let thrown: unknown;
    try {
      parseApiKeys(`read:${hex},${value}`);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as Error).message).toContain('entry 2');
    expect((thrown as Error).message).not.toContain(value);
  });
});

describe('keys bound to accounts', () => {
  const hex = hashApiKey('k');
  const other = hashApiKey('other');

  it('reads scope@account:hash, and binds an entry without @account to the account "default"', () => {
    const parsed = parseApiKeys(`read@acme:${hex},write@acme:${hex},admin:${other},read@a.b-c_9:${hashApiKey('x')}`);
    expect(parsed.map((e) => [e.scope, e.accountId])).toEqual([
      ['read', 'acme'],
      ['write', 'acme'],
      ['admin', 'default'],
      ['read', 'a.b-c_9'],
    ]);
  });

  it.each([
    ['an empty account', `read@:${hex}`],
    ['an account with a space', `read@ac me:${hex}`],
    ['an account starting with a dot', `read@.acme:${hex}`],
    ['an account of 65 characters', `read@${'a'.repeat(65)}:${hex}`],
  ])('rejects %s', (_what, value) => {
    expect(() => parseApiKeys(value)).toThrow(ConfigError);
  });

  it('refuses one key bound to two accounts', () => {
    expect(() => parseApiKeys(`read@acme:${hex},read@globex:${hex}`)).toThrow(/one account/);
    expect(() => parseApiKeys(`read:${hex},write@globex:${hex}`)).toThrow(ConfigError);
  });

  it("gives the request the key's own account", () => {
    const keys = parseApiKeys(
      `read@acme:${hashApiKey('acme-read')},write@globex:${hashApiKey('globex-write')},read:${hashApiKey('plain')}`,
    );
    expect(authorize('Bearer acme-read', 'read', keys)).toEqual({ scope: 'read', accountId: 'acme' });
    expect(authorize('Bearer globex-write', 'write', keys)).toEqual({ scope: 'write', accountId: 'globex' });
    expect(authorize('Bearer plain', 'read', keys)).toEqual({ scope: 'read', accountId: 'default' });
  });

  it('lets an admin key name an account with X-Account-Id, and refuses the header from any other key', () => {
    const keys = parseApiKeys(`admin@ops:${hashApiKey('admin')},read@acme:${hashApiKey('acme-read')}`);
    expect(authorize('Bearer admin', 'read', keys)).toEqual({ scope: 'admin', accountId: 'ops' });
    expect(authorize('Bearer admin', 'write', keys, 'globex')).toEqual({ scope: 'admin', accountId: 'globex' });
    const refused = httpErrorOf(() => authorize('Bearer acme-read', 'read', keys, 'globex'));
    expect(refused.status).toBe(403);
    expect(refused.items[0]).toMatchObject({ code: 'permission_denied', header: 'X-Account-Id' });
    // Even naming its own account: the header is for admin keys only.
    expect(httpErrorOf(() => authorize('Bearer acme-read', 'read', keys, 'acme')).status).toBe(403);
    const invalid = httpErrorOf(() => authorize('Bearer admin', 'read', keys, 'no such/account'));
    expect(invalid.status).toBe(400);
    expect(invalid.items[0]).toMatchObject({ code: 'invalid', header: 'X-Account-Id' });
    // Authentication comes first: a wrong key with the header is a 401, not a 403.
    expect(httpErrorOf(() => authorize('Bearer nope', 'read', keys, 'acme')).status).toBe(401);
  });
});

describe('extractApiKey', () => {
  it('accepts Bearer and Klaviyo-API-Key, in any letter case', () => {
    expect(extractApiKey('Bearer abc')).toBe('abc');
    expect(extractApiKey('bearer abc')).toBe('abc');
    expect(extractApiKey('Klaviyo-API-Key pk_123')).toBe('pk_123');
    expect(extractApiKey('klaviyo-api-key pk_123')).toBe('pk_123');
    expect(extractApiKey('  Bearer   abc  ')).toBe('abc');
  });

  it.each([
    [undefined],
    [''],
    ['abc'],
    ['Basic dXNlcjpwYXNz'],
    ['Bearer'],
    ['Bearer '],
    ['Bearer a b'],
    ['Bearer a,Bearer b'],
    ['Token abc'],
    ['BearerX abc'],
  ])('finds no key in %p', (header) => {
    expect(extractApiKey(header)).toBeUndefined();
  });
});

describe('authorize', () => {
  const keys = entries({ 'r-key': 'read', 'w-key': 'write', 'a-key': 'admin' });

  it('lets each scope do what it may, and admin everything', () => {
    expect(authorize('Bearer r-key', 'read', keys).scope).toBe('read');
    expect(authorize('Bearer w-key', 'write', keys).scope).toBe('write');
    expect(authorize('Klaviyo-API-Key a-key', 'read', keys).scope).toBe('admin');
    expect(authorize('Bearer a-key', 'write', keys).scope).toBe('admin');
    expect(authorize('Bearer a-key', 'admin', keys).scope).toBe('admin');
  });

  it('answers 401 with a challenge without a key, and for an unknown key', () => {
    const missing = httpErrorOf(() => authorize(undefined, 'read', keys));
    expect(missing.status).toBe(401);
    expect(missing.headers['WWW-Authenticate']).toBe('Bearer');
    expect(missing.items[0]).toMatchObject({ code: 'not_authenticated', header: 'Authorization' });

    const wrong = httpErrorOf(() => authorize('Bearer nope', 'read', keys));
    expect(wrong.status).toBe(401);
    expect(wrong.headers['WWW-Authenticate']).toContain('invalid_token');
  });

  it('answers 403 naming the scope when the key is valid but lacks it', () => {
    const readOnWrite = httpErrorOf(() => authorize('Bearer r-key', 'write', keys));
    expect(readOnWrite.status).toBe(403);
    expect(readOnWrite.items[0]?.code).toBe('permission_denied');
    expect(readOnWrite.headers['WWW-Authenticate']).toBe('Bearer error="insufficient_scope", scope="write"');
    expect(httpErrorOf(() => authorize('Bearer w-key', 'read', keys)).status).toBe(403);
    expect(httpErrorOf(() => authorize('Bearer r-key', 'admin', keys)).status).toBe(403);
  });

  it('rejects every key when none is configured (fails closed)', () => {
    expect(httpErrorOf(() => authorize('Bearer r-key', 'read', [])).status).toBe(401);
  });

  it('does not accept the configured hash itself as a key', () => {
    expect(httpErrorOf(() => authorize(`Bearer ${hashApiKey('r-key')}`, 'read', keys)).status).toBe(401);
  });

  it('never echoes the presented key in the error', () => {
    const err = httpErrorOf(() => authorize('Bearer secret-value-123', 'read', keys));
    expect(JSON.stringify(err.toJsonApi())).not.toContain('secret-value-123');
  });

  it('unions the scopes of a key configured twice', () => {
    const both = entries({ k: 'read' }).concat(entries({ k: 'write' }));
    expect(authorize('Bearer k', 'read', both).scope).toBe('read');
    expect(authorize('Bearer k', 'write', both).scope).toBe('write');
  });

  it('accepts exactly the configured keys (property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.stringMatching(/^[\x21-\x7e]{1,40}$/), { minLength: 2, maxLength: 6 }),
        fc.array(fc.constantFrom<Scope>('read', 'write', 'admin'), { minLength: 6, maxLength: 6 }),
        fc.nat(),
        (allKeys, scopes, pick) => {
          // The last key stays unconfigured: it must be refused.
          const configured = allKeys.slice(0, -1);
          const spec = Object.fromEntries(configured.map((k, i) => [k, scopes[i] as Scope]));
          const list = entries(spec);
          const key = configured[pick % configured.length] as string;
          const scope = spec[key] as Scope;
          expect(authorize(`Bearer ${key}`, scope, list).scope).toBe(scope);
          expect(authorize(`Klaviyo-API-Key ${key}`, scope, list).scope).toBe(scope);
          const outsider = allKeys[allKeys.length - 1] as string;
          expect(httpErrorOf(() => authorize(`Bearer ${outsider}`, 'read', list)).status).toBe(401);
        },
      ),
      { numRuns: 300 },
    );
  });

  describe('compares in constant time', () => {
    let spy: jest.SpiedFunction<typeof crypto.timingSafeEqual>;
    beforeEach(() => {
      spy = jest.spyOn(crypto, 'timingSafeEqual');
    });
    afterEach(() => spy.mockRestore());

    // An early exit on the first match would let response time say which entry (and scope) a key has.
    it.each([
      ['the first entry', 'r-key'],
      ['the last entry', 'a-key'],
      ['no entry', 'unknown'],
    ])('compares with every entry when the key matches %s', (_what, key) => {
      try {
        authorize(`Bearer ${key}`, 'read', keys);
      } catch {
        // 401 for the unknown key: the comparisons are what is checked here.
      }
      expect(spy).toHaveBeenCalledTimes(keys.length);
      for (const [presented, stored] of spy.mock.calls) {
        // Digests of equal length: timingSafeEqual's time does not depend on the key's length.
        expect((presented as Buffer).length).toBe(32);
        expect((stored as Buffer).length).toBe(32);
        expect(presented).toEqual(crypto.createHash('sha256').update(key).digest());
      }
    });
  });
});

describe('the HTTP wrapper', () => {
  // The wrapper reads the whole configuration first; these probes never connect to it.
  beforeAll(() => {
    process.env.DATABASE_URL = 'postgres://nobody@127.0.0.1:9/never_connected';
  });
  let calls = 0;
  const read = httpHandler({ name: 'probe-read', scope: 'read' }, async (request) => {
    calls += 1;
    request.json();
    return { status: 200, body: { data: null } };
  });
  const write = httpHandler({ name: 'probe-write', scope: 'write' }, async () => {
    calls += 1;
    return { status: 200, body: { data: null } };
  });
  const open = httpHandler({ name: 'probe-public', scope: 'public' }, async () => {
    calls += 1;
    return { status: 200, body: { data: null } };
  });
  beforeEach(() => {
    calls = 0;
  });

  it('checks the key before the operation runs and before the body is read', async () => {
    const res = await invoke(read, { method: 'POST', body: '{not json', contentType: 'text/plain', key: null });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer');
    expect(res.headers['content-type']).toBe('application/vnd.api+json');
    expect(res.body.errors[0]).toMatchObject({ status: '401', code: 'not_authenticated', title: 'Not authenticated' });
    expect(calls).toBe(0);
  });

  it('reads the Authorization header whatever its letter case', async () => {
    const res = await invoke(write, {
      method: 'POST',
      key: null,
      headers: { AUTHORIZATION: `Klaviyo-API-Key ${TEST_KEYS.write}` },
    });
    expect(res.status).toBe(200);
    expect(calls).toBe(1);
  });

  it('answers 403 to a read key on a write route without running it', async () => {
    const res = await invoke(write, { method: 'POST', key: 'read' });
    expect(res.status).toBe(403);
    expect(res.body.errors[0]).toMatchObject({
      status: '403',
      code: 'permission_denied',
      source: { header: 'Authorization' },
    });
    expect(calls).toBe(0);
  });

  it("gives the operation the caller: the key's account, or the one an admin key names", async () => {
    const seen: unknown[] = [];
    const probe = httpHandler({ name: 'probe-caller', scope: 'read' }, async (_request, _fields, caller) => {
      seen.push(caller);
      return { status: 200, body: { data: null } };
    });
    expect((await invoke(probe, { key: 'read' })).status).toBe(200);
    expect((await invoke(probe, { key: 'admin', headers: { 'X-Account-Id': 'acme' } })).status).toBe(200);
    expect(seen).toEqual([
      { scope: 'read', accountId: 'default' },
      { scope: 'admin', accountId: 'acme' },
    ]);
    const refused = await invoke(probe, { key: 'read', headers: { 'x-account-id': 'acme' } });
    expect(refused.status).toBe(403);
    expect(refused.body.errors[0]).toMatchObject({ code: 'permission_denied', source: { header: 'X-Account-Id' } });
    expect(seen).toHaveLength(2);
  });

  it('lets anyone call a public route', async () => {
    expect((await invoke(open, { key: null })).status).toBe(200);
    expect((await invoke(open, { key: null, headers: { authorization: 'Bearer wrong' } })).status).toBe(200);
  });
});
