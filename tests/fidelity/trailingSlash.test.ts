import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

/**
 * scripts/serverless-trailing-slash.js against the routes of serverless.yml and osls's own naming of
 * route resources: every declared route (both slash forms of Klaviyo's paths) ends up as its own
 * AWS::ApiGatewayV2::Route, and serverless-offline gets each path once.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const naming = require('osls/lib/plugins/aws/lib/naming') as { getHttpApiRouteLogicalId(key: string): string };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const TrailingSlashRoutes = require('../../scripts/serverless-trailing-slash.js') as new (sls: unknown) => {
  hooks: Record<string, () => void>;
};

interface HttpEvent {
  httpApi?: { method: string; path: string };
}
type Functions = Record<string, { handler: string; events?: HttpEvent[] }>;

function service(): {
  functions: Functions;
  provider: {
    compiledCloudFormationTemplate: { Resources: Record<string, { Type: string; Properties: { RouteKey: string } }> };
  };
} {
  const doc = parse(readFileSync(join(__dirname, '..', '..', 'serverless.yml'), 'utf8'), { merge: true }) as {
    functions: Functions;
  };
  return { functions: doc.functions, provider: { compiledCloudFormationTemplate: { Resources: {} } } };
}

const declared = (functions: Functions) =>
  Object.values(functions)
    .flatMap((f) => f.events ?? [])
    .flatMap((e) => (e.httpApi ? [`${e.httpApi.method.toUpperCase()} ${e.httpApi.path}`] : []))
    .sort();

describe('routes with and without a trailing slash', () => {
  it('are each deployed as their own route resource', () => {
    const svc = service();
    const resources = svc.provider.compiledCloudFormationTemplate.Resources;
    // What osls's compileEndpoints does: one resource per route, named by getHttpApiRouteLogicalId.
    for (const key of declared(svc.functions)) {
      resources[naming.getHttpApiRouteLogicalId(key)] = {
        Type: 'AWS::ApiGatewayV2::Route',
        Properties: { RouteKey: key },
      };
    }
    const plugin = new TrailingSlashRoutes({ service: svc, getProvider: () => ({ naming }) });
    plugin.hooks['after:package:compileEvents']?.();
    const keys = Object.values(resources)
      .map((r) => r.Properties.RouteKey)
      .sort();
    expect(keys).toEqual(declared(svc.functions));
    expect(keys).toContain('POST /api/events/');
    expect(keys).toContain('POST /api/events');
  });

  it('reach serverless-offline once each, without the slash', () => {
    const svc = service();
    const plugin = new TrailingSlashRoutes({ service: svc, getProvider: () => ({ naming }) });
    plugin.hooks['before:offline:start:init']?.();
    const keys = declared(svc.functions);
    expect(keys.filter((k) => k.endsWith('/') && !k.endsWith(' /'))).toEqual([]);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toContain('POST /api/events');
  });
});
