import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { HttpHandler } from '../../../lib/http/handler';
import { klaviyoFixture } from '../../support/fixtures';

/**
 * Every HTTP route serverless.yml deploys, with its handler and Lambda timeout, read from
 * serverless.yml itself: a route another branch adds is covered without editing the tests.
 */
export interface DeployedRoute {
  readonly fn: string;
  readonly method: string;
  readonly path: string;
  readonly timeoutSeconds: number;
  readonly handler: HttpHandler;
}

export const ROOT = join(__dirname, '..', '..', '..');

interface ServerlessDoc {
  provider: { timeout?: number };
  functions: Record<
    string,
    { handler: string; timeout?: number; events?: { httpApi?: { method: string; path: string } }[] }
  >;
}

export function serverlessDoc(): ServerlessDoc {
  return parse(readFileSync(join(ROOT, 'serverless.yml'), 'utf8')) as ServerlessDoc;
}

export function deployedRoutes(): DeployedRoute[] {
  const doc = serverlessDoc();
  const out: DeployedRoute[] = [];
  for (const [fn, spec] of Object.entries(doc.functions)) {
    const [file, exportName] = spec.handler.split(/\.(?=[^.]+$)/) as [string, string];
    for (const event of spec.events ?? []) {
      if (!event.httpApi) continue;
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(join(ROOT, file)) as Record<string, HttpHandler>;
      const handler = mod[exportName];
      if (typeof handler !== 'function') throw new Error(`${spec.handler} is not exported`);
      out.push({
        fn,
        method: event.httpApi.method.toUpperCase(),
        path: event.httpApi.path,
        timeoutSeconds: spec.timeout ?? doc.provider.timeout ?? 6,
        handler,
      });
    }
  }
  return out;
}

/** A request body each known write route accepts (so that it reaches the database). */
export function validBodyFor(method: string, path: string): unknown {
  if (method !== 'POST') return undefined;
  // Every Klaviyo path also answers with a trailing slash: the same body fits both forms.
  switch (path.replace(/\/$/, '')) {
    case '/api/profile-import':
      return { data: { type: 'profile', attributes: { email: 'budget@example.com' } } };
    case '/api/profile-bulk-import-jobs':
      return {
        data: {
          type: 'profile-bulk-import-job',
          attributes: { profiles: { data: [{ type: 'profile', attributes: { email: 'budget@example.com' } }] } },
        },
      };
    case '/api/events':
      return klaviyoFixture('events-page.json');
    case '/api/profiles':
      return { data: [klaviyoFixture('profile.json')] };
    case '/api/metrics':
      return { data: [klaviyoFixture('metric.json')] };
    case '/api/metric-aggregates':
      return klaviyoFixture('metric-aggregates-request.json');
    case '/api/event-bulk-create-jobs':
      return {
        data: {
          type: 'event-bulk-create-job',
          attributes: {
            'events-bulk-create': {
              data: [
                {
                  type: 'event-bulk-create',
                  attributes: {
                    profile: { data: { type: 'profile', attributes: { email: 'budget@example.com' } } },
                    events: {
                      data: [
                        {
                          type: 'event',
                          attributes: {
                            properties: {},
                            time: '2024-08-01T00:00:00Z',
                            metric: { data: { type: 'metric', attributes: { name: 'Budget Metric' } } },
                          },
                        },
                      ],
                    },
                  },
                },
              ],
            },
          },
        },
      };
    default:
      return { data: [] };
  }
}
