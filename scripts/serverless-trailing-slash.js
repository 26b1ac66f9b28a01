// A local Serverless plugin for the routes serverless.yml declares twice, with and without a trailing
// slash (`/api/events` and `/api/events/`): Klaviyo answers both, and API Gateway's HTTP API matches
// route keys exactly, so both must be deployed. Two tools do not expect that:
//
// - osls names a route's CloudFormation resource after its path with the slashes dropped, so the two
//   forms get the same logical id and the later silently replaces the earlier. After the events are
//   compiled, this puts the form without the slash back and adds the slash form under its own id.
// - serverless-offline drops a trailing slash from every path (and serves both forms through hapi's
//   stripTrailingSlash), so the twins collide there ("New route /api/events conflicts"). Offline, the
//   slash forms are left out before it builds its routes.
//
// Plain CommonJS: osls require()s it before any TypeScript tooling runs.
'use strict';

const withoutSlash = (path) => (path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path);

function slashTwins(service) {
  const twins = [];
  for (const [functionName, fn] of Object.entries(service.functions ?? {})) {
    // A function whose events serverless.yml takes from a variable (aggregate's schedules) has no
    // route: read unresolved, as tests/fidelity/trailingSlash.test.ts reads the file, it is a string.
    const events = Array.isArray(fn.events) ? fn.events : [];
    const keys = new Set(
      events.filter((e) => e.httpApi?.path).map((e) => `${String(e.httpApi.method).toUpperCase()} ${e.httpApi.path}`),
    );
    for (const event of events) {
      const http = event.httpApi;
      if (!http?.path || withoutSlash(http.path) === http.path) continue;
      const method = String(http.method).toUpperCase();
      if (!keys.has(`${method} ${withoutSlash(http.path)}`)) {
        throw new Error(
          `${functionName}: ${method} ${http.path} has no twin ${method} ${withoutSlash(http.path)} in the same function`,
        );
      }
      twins.push({ functionName, event, method, path: http.path });
    }
  }
  return twins;
}

class TrailingSlashRoutes {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'after:package:compileEvents': () => this.separateRoutes(),
      'before:offline:start:init': () => this.dropTwinsOffline(),
      'before:offline:start': () => this.dropTwinsOffline(),
    };
  }

  separateRoutes() {
    const naming = this.serverless.getProvider('aws').naming;
    const resources = this.serverless.service.provider.compiledCloudFormationTemplate.Resources;
    for (const { method, path } of slashTwins(this.serverless.service)) {
      const logicalId = naming.getHttpApiRouteLogicalId(`${method} ${path}`);
      const compiled = resources[logicalId];
      if (!compiled) throw new Error(`no compiled route ${logicalId} for ${method} ${path}`);
      const slashed = JSON.parse(JSON.stringify(compiled));
      slashed.Properties.RouteKey = `${method} ${path}`;
      compiled.Properties.RouteKey = `${method} ${withoutSlash(path)}`;
      resources[`${logicalId}TrailingSlash`] = slashed;
    }
  }

  dropTwinsOffline() {
    const twins = new Set(slashTwins(this.serverless.service).map((t) => t.event));
    for (const fn of Object.values(this.serverless.service.functions ?? {})) {
      if (Array.isArray(fn.events)) fn.events = fn.events.filter((e) => !twins.has(e));
    }
  }
}

module.exports = TrailingSlashRoutes;
