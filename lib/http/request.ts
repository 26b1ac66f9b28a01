import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { HttpError } from './errors';

/**
 * Reading an API Gateway (HTTP API, payload 2.0) request: headers, query and a JSON body checked for
 * media type, size, encoding and syntax, each failure a JSON:API 4xx.
 */
export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly query: Readonly<Record<string, string>>;
  readonly pathParams: Readonly<Record<string, string>>;
  readonly requestId: string;
  /** The JSON body, parsed once; throws 400/413/415 as JSON:API errors. */
  json(): unknown;
}

const JSON_MEDIA_TYPES = new Set(['application/json', 'application/vnd.api+json']);

function lowerCaseHeaders(headers: APIGatewayProxyEventV2['headers'] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) if (typeof v === 'string') out[k.toLowerCase()] = v;
  return out;
}

function definedOnly(map: Record<string, string | undefined> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(map ?? {})) if (typeof v === 'string') out[k] = v;
  return out;
}

export function bodyBytes(event: APIGatewayProxyEventV2): Buffer {
  if (event.body === undefined || event.body === null) return Buffer.alloc(0);
  return event.isBase64Encoded ? Buffer.from(event.body, 'base64') : Buffer.from(event.body, 'utf8');
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function parseJsonBody(event: APIGatewayProxyEventV2, headers: Record<string, string>, maxBytes: number): unknown {
  const bytes = bodyBytes(event);
  if (bytes.length > maxBytes) {
    throw new HttpError(413, {
      code: 'payload_too_large',
      detail: `The request body is ${bytes.length} bytes; the limit is ${maxBytes} bytes.`,
    });
  }
  const contentType = headers['content-type'];
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  if (!mediaType || !JSON_MEDIA_TYPES.has(mediaType)) {
    throw new HttpError(415, {
      code: 'unsupported_media_type',
      detail: `Send the body as application/vnd.api+json or application/json${contentType ? `, not ${contentType.slice(0, 100)}` : ''}.`,
      header: 'Content-Type',
    });
  }
  if (bytes.length === 0) {
    throw new HttpError(400, { code: 'invalid', detail: 'The request body is empty; a JSON document is required.', pointer: '' });
  }
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new HttpError(400, { code: 'invalid_encoding', detail: 'The request body is not valid UTF-8.', pointer: '' });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const reason = err instanceof SyntaxError ? err.message.slice(0, 200) : 'syntax error';
    throw new HttpError(400, { code: 'invalid_json', detail: `The request body is not valid JSON: ${reason}`, pointer: '' });
  }
}

/**
 * NUL cannot be stored in or compared with PostgreSQL text (22021), and no id, filter or cursor
 * contains one: refused as a 400 naming the parameter, before any of it reaches a query.
 */
export function rejectNulCharacters(request: Pick<HttpRequest, 'query' | 'pathParams'>): void {
  for (const [name, value] of Object.entries(request.pathParams)) {
    if (value.includes('\u0000')) {
      throw new HttpError(400, { code: 'invalid', detail: `The path parameter ${name} contains a NUL character.`, parameter: name });
    }
  }
  for (const [name, value] of Object.entries(request.query)) {
    if (name.includes('\u0000') || value.includes('\u0000')) {
      throw new HttpError(400, { code: 'invalid', detail: 'A query parameter contains a NUL character.', parameter: name.replace(/\u0000/g, '') });
    }
  }
}

export function toHttpRequest(event: APIGatewayProxyEventV2, maxBodyBytes: number): HttpRequest {
  const headers = lowerCaseHeaders(event.headers);
  let parsed: { value: unknown } | undefined;
  return {
    method: event.requestContext?.http?.method ?? 'GET',
    path: event.rawPath ?? event.requestContext?.http?.path ?? '/',
    headers,
    query: definedOnly(event.queryStringParameters),
    pathParams: definedOnly(event.pathParameters),
    requestId: event.requestContext?.requestId ?? '',
    json: () => {
      parsed ??= { value: parseJsonBody(event, headers, maxBodyBytes) };
      return parsed.value;
    },
  };
}
