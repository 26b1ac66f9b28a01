import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join, resolve } from 'node:path';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { parse } from 'yaml';

/**
 * The HTTP routes of serverless.yml served in this process, straight from the TypeScript handlers:
 * for the browser test of the chart page and for `npm run chart`, which need the page and the API
 * in a second, not serverless-offline's bundling. `npm start` and the end-to-end test use the real
 * serverless-offline. Routes come from serverless.yml itself, so the two cannot drift apart.
 */
const ROOT = resolve(__dirname, '..');

type Handler = (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>;

export interface Route {
  readonly functionName: string;
  readonly method: string;
  readonly path: string;
  readonly file: string;
  readonly exportName: string;
  readonly pattern: RegExp;
  readonly params: readonly string[];
}

interface ServerlessFunction {
  handler?: string;
  events?: { httpApi?: { method?: string; path?: string } }[];
}

export function routesFromServerlessYml(file = join(ROOT, 'serverless.yml')): Route[] {
  const doc = parse(readFileSync(file, 'utf8'), { merge: true }) as { functions?: Record<string, ServerlessFunction> };
  const routes: Route[] = [];
  for (const [functionName, fn] of Object.entries(doc.functions ?? {})) {
    const handler = fn.handler ?? '';
    const dot = handler.lastIndexOf('.');
    for (const event of fn.events ?? []) {
      const http = event.httpApi;
      if (!http?.method || !http.path) continue;
      const params: string[] = [];
      const pattern = new RegExp(
        '^' +
          http.path
            .split('/')
            .map((part) => {
              const param = /^\{(\w+)\}$/.exec(part);
              if (!param) return part.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
              params.push(param[1] as string);
              return '([^/]+)';
            })
            .join('/') +
          '$',
      );
      routes.push({
        functionName,
        method: http.method.toUpperCase(),
        path: http.path,
        file: handler.slice(0, dot),
        exportName: handler.slice(dot + 1),
        pattern,
        params,
      });
    }
  }
  return routes;
}

function loadHandler(route: Route): Handler {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(join(ROOT, route.file)) as Record<string, unknown>;
  const fn = mod[route.exportName];
  if (typeof fn !== 'function') throw new Error(`${route.file} has no export ${route.exportName}`);
  return fn as Handler;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** An API Gateway HTTP API (payload 2.0) event, as API Gateway and serverless-offline build it. */
export function toEvent(
  req: IncomingMessage,
  body: Buffer,
  route: Route,
  match: RegExpExecArray,
): APIGatewayProxyEventV2 {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers))
    if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(',') : v;
  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) query[k] = k in query ? `${query[k]},${v}` : v;
  const pathParameters: Record<string, string> = {};
  route.params.forEach((name, i) => (pathParameters[name] = decodeURIComponent(match[i + 1] as string)));
  const text = body.toString('utf8');
  const isText = Buffer.from(text, 'utf8').equals(body);
  const now = new Date();
  return {
    version: '2.0',
    routeKey: `${route.method} ${route.path}`,
    rawPath: url.pathname,
    rawQueryString: url.search.replace(/^\?/, ''),
    headers,
    queryStringParameters: Object.keys(query).length > 0 ? query : undefined,
    pathParameters: route.params.length > 0 ? pathParameters : undefined,
    body: body.length === 0 ? undefined : isText ? text : body.toString('base64'),
    isBase64Encoded: body.length > 0 && !isText,
    requestContext: {
      accountId: 'local',
      apiId: 'local',
      domainName: headers.host ?? 'localhost',
      domainPrefix: 'localhost',
      http: {
        method: route.method,
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey: `${route.method} ${route.path}`,
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
  };
}

function send(res: ServerResponse, result: APIGatewayProxyStructuredResultV2): void {
  const body =
    result.body === undefined ? Buffer.alloc(0) : Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8');
  res.writeHead(result.statusCode ?? 200, {
    ...(result.headers as Record<string, string>),
    'content-length': String(body.length),
  });
  res.end(body);
}

export interface LocalApi {
  readonly url: string;
  readonly routes: readonly Route[];
  close(): Promise<void>;
}

export async function startLocalApi(options: { port?: number; host?: string } = {}): Promise<LocalApi> {
  const routes = routesFromServerlessYml();
  const handlers = new Map<Route, Handler>();
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      const candidates = routes.filter((r) => r.pattern.test(path));
      const route = candidates.find((r) => r.method === req.method);
      if (!route) {
        send(res, {
          statusCode: candidates.length > 0 ? 405 : 404,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ message: candidates.length > 0 ? 'Method Not Allowed' : 'Not Found' }),
        });
        return;
      }
      let handler = handlers.get(route);
      if (!handler) {
        handler = loadHandler(route);
        handlers.set(route, handler);
      }
      const body = await readBody(req);
      send(res, await handler(toEvent(req, body, route, route.pattern.exec(path) as RegExpExecArray)));
    })().catch((err: unknown) => {
      // Handlers never throw; this is the router itself failing (a missing handler module).
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`local API: ${err instanceof Error ? err.message : String(err)}`);
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(options.port ?? 0, host, () => done());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://${host}:${port}`,
    routes,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}
