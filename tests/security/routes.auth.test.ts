import { deployedRoutes, type DeployedRoute as Route } from '../hardening/support/routes';
import { useFreshDatabase } from '../support/database';
import { apiEvent, invoke, type InvokeOptions } from '../support/http';
import { TEST_KEYS } from '../support/setupEnv';
import { databaseChecksum } from './support/checksum';

/**
 * Every HTTP route that serverless.yml deploys, read from serverless.yml itself: a route added there
 * without authentication fails this test. Only the health check and the local chart page are public.
 * Ingest routes need the write scope, every read route the read scope, and admin may do both.
 */
const PUBLIC = new Set(['GET /api/health', 'GET /']);
const WRITE = new Set([
  'POST /api/events',
  'POST /api/profiles',
  'POST /api/metrics',
  'POST /api/event-bulk-create-jobs',
  'POST /api/profile-import',
  'POST /api/profile-bulk-import-jobs',
]);

const routes = deployedRoutes();
const protectedRoutes = routes.filter((r) => !PUBLIC.has(`${r.method} ${r.path}`));
// Klaviyo's paths are deployed with a trailing slash too; each form needs the same scope.
const needed = (r: Route) => (WRITE.has(`${r.method} ${r.path.replace(/(?<=.)\/$/, '')}`) ? 'write' : 'read');

/** A request the route would accept with a key: an empty but well-formed Klaviyo document. */
function request(route: Route, extra: Partial<InvokeOptions>): InvokeOptions {
  const path = route.path.replace('{id}', 'some_id');
  return {
    method: route.method,
    path,
    routeKey: `${route.method} ${route.path}`,
    pathParams: route.path.includes('{id}') ? { id: 'some_id' } : undefined,
    body: route.method === 'POST' ? { data: [] } : undefined,
    ...extra,
  };
}

describe('authentication on every deployed route', () => {
  const t = useFreshDatabase();

  it('finds every route of the API in serverless.yml', () => {
    const keys = routes.map((r) => `${r.method} ${r.path}`).sort();
    expect(keys).toEqual(
      expect.arrayContaining([
        'GET /',
        'GET /api/health',
        'POST /api/events',
        'POST /api/profiles',
        'POST /api/metrics',
        'POST /api/event-bulk-create-jobs',
        'POST /api/metric-aggregates',
        'GET /api/metrics',
        'GET /api/metrics/{id}',
        'GET /api/profiles',
        'GET /api/profiles/{id}',
        'GET /api/profiles/{id}/events',
        'GET /api/events',
        'GET /api/events/{id}',
      ]),
    );
    expect(protectedRoutes.length).toBe(routes.length - PUBLIC.size);
  });

  describe.each(protectedRoutes.map((r) => [`${r.method} ${r.path}`, r] as const))('%s', (_name, route) => {
    it('answers 401 with a challenge without a key, with an unknown key and with a malformed header, and writes nothing', async () => {
      const before = await databaseChecksum(t.db);
      const attempts: Partial<InvokeOptions>[] = [
        { key: null },
        { key: null, headers: { authorization: 'Bearer not-a-configured-key' } },
        { key: null, headers: { authorization: `Klaviyo-API-Key ${TEST_KEYS.admin}x` } },
        {
          key: null,
          headers: { authorization: `Basic ${Buffer.from(`admin:${TEST_KEYS.admin}`).toString('base64')}` },
        },
        { key: null, headers: { authorization: TEST_KEYS.admin } },
        { key: null, headers: { authorization: `Bearer ${TEST_KEYS.admin} ${TEST_KEYS.admin}` } },
      ];
      for (const attempt of attempts) {
        const res = await invoke(route.handler, request(route, attempt));
        expect(res.status).toBe(401);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        expect(res.body.errors[0]).toMatchObject({ status: '401', code: 'not_authenticated' });
        expect(JSON.stringify(res.body)).not.toContain(TEST_KEYS.admin);
      }
      expect(await databaseChecksum(t.db)).toEqual(before);
    });

    it(`answers 403 to a key without the ${needed(route)} scope`, async () => {
      const other = needed(route) === 'write' ? 'read' : 'write';
      const res = await invoke(route.handler, request(route, { key: other }));
      expect(res.status).toBe(403);
      expect(res.headers['www-authenticate']).toBe(`Bearer error="insufficient_scope", scope="${needed(route)}"`);
      expect(res.body.errors[0]).toMatchObject({ status: '403', code: 'permission_denied' });
    });

    it('lets the scope it needs and admin through, with either scheme', async () => {
      for (const authorization of [
        `Bearer ${TEST_KEYS[needed(route)]}`,
        `Klaviyo-API-Key ${TEST_KEYS[needed(route)]}`,
        `Bearer ${TEST_KEYS.admin}`,
      ]) {
        const res = await invoke(route.handler, request(route, { key: null, headers: { authorization } }));
        // The request itself may be refused (404 for an unknown id, 4xx for an empty document), never for its key.
        expect([401, 403]).not.toContain(res.status);
        expect(res.status).toBeLessThan(500);
      }
    });
  });

  it('serves the public routes without a key', async () => {
    for (const route of routes.filter((r) => PUBLIC.has(`${r.method} ${r.path}`))) {
      // The chart page is HTML: the raw response, not invoke()'s JSON reading.
      const res = await route.handler(apiEvent(request(route, { key: null })));
      expect(res.statusCode).toBe(200);
    }
  });
});
