import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { HttpHandler } from '../../lib/http/handler';
import { TEST_KEYS } from './setupEnv';

export interface InvokeOptions {
  readonly method?: string;
  readonly path?: string;
  readonly routeKey?: string;
  /** An object is sent as JSON; a string or Buffer as it is. */
  readonly body?: unknown;
  readonly contentType?: string | null;
  readonly headers?: Record<string, string>;
  readonly query?: Record<string, string>;
  readonly pathParams?: Record<string, string>;
  /** Which test key to send; null sends none. */
  readonly key?: keyof typeof TEST_KEYS | null;
  readonly base64?: boolean;
}

export interface InvokeResult {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
  readonly raw: APIGatewayProxyStructuredResultV2;
}

/** Builds an API Gateway HTTP API (payload 2.0) event, as serverless-offline and AWS send it. */
export function apiEvent(options: InvokeOptions = {}): APIGatewayProxyEventV2 {
  const method = options.method ?? (options.body === undefined ? 'GET' : 'POST');
  const path = options.path ?? '/';
  const headers: Record<string, string> = { ...options.headers };
  const key = options.key === undefined ? 'admin' : options.key;
  if (key) headers.authorization = `Bearer ${TEST_KEYS[key]}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    const bytes = Buffer.isBuffer(options.body)
      ? options.body
      : Buffer.from(typeof options.body === 'string' ? options.body : JSON.stringify(options.body), 'utf8');
    body = options.base64 ? bytes.toString('base64') : bytes.toString('utf8');
    if (options.contentType !== null) headers['content-type'] = options.contentType ?? 'application/vnd.api+json';
  }
  const rawQueryString = new URLSearchParams(options.query ?? {}).toString();
  return {
    version: '2.0',
    routeKey: options.routeKey ?? `${method} ${path}`,
    rawPath: path,
    rawQueryString,
    headers,
    queryStringParameters: options.query,
    pathParameters: options.pathParams,
    body,
    isBase64Encoded: options.base64 ?? false,
    requestContext: {
      accountId: 'test',
      apiId: 'test',
      domainName: 'localhost',
      domainPrefix: 'localhost',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'jest' },
      requestId: `req-${Math.random().toString(36).slice(2)}`,
      routeKey: options.routeKey ?? `${method} ${path}`,
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
  };
}

export async function invoke(handler: HttpHandler, options: InvokeOptions = {}): Promise<InvokeResult> {
  const raw = await handler(apiEvent(options));
  const text = typeof raw.body === 'string' ? raw.body : '';
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw.headers ?? {})) headers[k.toLowerCase()] = String(v);
  return { status: raw.statusCode ?? 0, headers, body: text ? JSON.parse(text) : undefined, raw };
}
