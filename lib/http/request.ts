import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { HttpError } from '../klaviyo/errors';

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
  /**
   * The origin of links in the answer (https://abc123.execute-api.us-east-1.amazonaws.com): the
   * configured PUBLIC_BASE_URL, else API Gateway's own domainName. Never a client's Host or
   * X-Forwarded-Host: a cache in front would serve links to a host the client chose to others.
   */
  readonly baseUrl: string;
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

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The body's size in bytes, and its text on demand. A body API Gateway passes as text is a JS
 * string already: its UTF-8 size is counted without encoding it, and it is parsed as it is
 * (encoding and decoding a page-sized body again cost more than its JSON.parse). A base64
 * body is decoded, and must be valid UTF-8.
 */
function bodyOf(event: APIGatewayProxyEventV2): { size: number; text: () => string } {
  const body = event.body ?? '';
  if (!event.isBase64Encoded) return { size: Buffer.byteLength(body, 'utf8'), text: () => body };
  const bytes = Buffer.from(body, 'base64');
  return {
    size: bytes.length,
    text: () => {
      try {
        return strictUtf8.decode(bytes);
      } catch {
        throw new HttpError(400, {
          code: 'invalid_encoding',
          detail: 'The request body is not valid UTF-8.',
          pointer: '',
        });
      }
    },
  };
}

export function parseJsonBody(
  event: APIGatewayProxyEventV2,
  headers: Record<string, string>,
  maxBytes: number,
): unknown {
  const body = bodyOf(event);
  if (body.size > maxBytes) {
    throw new HttpError(413, {
      code: 'payload_too_large',
      detail: `The request body is ${body.size} bytes; the limit is ${maxBytes} bytes.`,
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
  if (body.size === 0) {
    throw new HttpError(400, {
      code: 'invalid',
      detail: 'The request body is empty; a JSON document is required.',
      pointer: '',
    });
  }
  const text = body.text();
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const reason = err instanceof SyntaxError ? err.message.slice(0, 200) : 'syntax error';
    throw new HttpError(400, {
      code: 'invalid_json',
      detail: `The request body is not valid JSON: ${reason}`,
      pointer: '',
    });
  }
}

/**
 * NUL cannot be stored in or compared with PostgreSQL text (22021), and no id, filter or cursor
 * contains one: refused as a 400 naming the parameter, before any of it reaches a query.
 */
export function rejectNulCharacters(request: Pick<HttpRequest, 'query' | 'pathParams'>): void {
  for (const [name, value] of Object.entries(request.pathParams)) {
    if (value.includes('\u0000')) {
      throw new HttpError(400, {
        code: 'invalid',
        detail: `The path parameter ${name} contains a NUL character.`,
        parameter: name,
      });
    }
  }
  for (const [name, value] of Object.entries(request.query)) {
    if (name.includes('\u0000') || value.includes('\u0000')) {
      throw new HttpError(400, {
        code: 'invalid',
        detail: 'A query parameter contains a NUL character.',
        parameter: name.replaceAll('\u0000', ''),
      });
    }
  }
}

const DOMAIN_NAME = /^[A-Za-z0-9.-]+(:\d{1,5})?$/;
const LOOPBACK_DOMAIN = /^(localhost|127\.0\.0\.1)(:\d{1,5})?$/;

/** The origin links are built on; '' (relative links) when neither source names one. */
export function linkOrigin(event: APIGatewayProxyEventV2, publicBaseUrl?: string): string {
  if (publicBaseUrl) return publicBaseUrl.replace(/\/+$/, '');
  const domain = event.requestContext?.domainName;
  if (!domain || !DOMAIN_NAME.test(domain)) return '';
  return `${LOOPBACK_DOMAIN.test(domain) ? 'http' : 'https'}://${domain}`;
}

export function toHttpRequest(
  event: APIGatewayProxyEventV2,
  maxBodyBytes: number,
  publicBaseUrl?: string,
): HttpRequest {
  const headers = lowerCaseHeaders(event.headers);
  let parsed: { value: unknown } | undefined;
  return {
    method: event.requestContext?.http?.method ?? 'GET',
    path: event.rawPath ?? event.requestContext?.http?.path ?? '/',
    headers,
    query: definedOnly(event.queryStringParameters),
    pathParams: definedOnly(event.pathParameters),
    requestId: event.requestContext?.requestId ?? '',
    baseUrl: linkOrigin(event, publicBaseUrl),
    json: () => {
      parsed ??= { value: parseJsonBody(event, headers, maxBodyBytes) };
      return parsed.value;
    },
  };
}
