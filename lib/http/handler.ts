import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { config, ConfigError } from '../config';
import { deadlineFrom, TimeBudgetError, withDeadline } from '../db/budget';
import { errorCode, isTransientDbError } from '../db/errors';
import type { LogFields } from '../log';
import { ACCOUNT_HEADER, authorize, parseApiKeys, type ApiKeyEntry, type Caller, type Scope } from './auth';
import { HttpError, type ApiErrorObject } from '../klaviyo/errors';
import { rejectNulCharacters, toHttpRequest, type HttpRequest } from './request';
import type * as SsmModule from '@aws-sdk/client-ssm';
import { startRequestLog } from './requestLog';

/**
 * The one wrapper every HTTP function goes through: authenticate, run the operation, map its
 * result or error to a JSON:API response, and write one log line. It never throws: a thrown error
 * would reach serverless-offline as HTTP 200 and API Gateway as a bare 500.
 */
export interface HttpResult {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface HandlerOptions {
  readonly name: string;
  readonly scope: Scope;
}

/** A route without authentication (the health check only): it sees no account. */
export interface PublicHandlerOptions {
  readonly name: string;
  readonly scope: 'public';
}

/**
 * What a route does, given the caller its key authenticated: `caller.accountId` is the only account
 * it may read or write (the key's own, or the one an admin key names with X-Account-Id).
 */
export type Operation = (request: HttpRequest, logFields: LogFields, caller: Caller) => Promise<HttpResult>;
export type PublicOperation = (request: HttpRequest, logFields: LogFields) => Promise<HttpResult>;
export type HttpHandler = (
  event: APIGatewayProxyEventV2,
  context?: Partial<Context>,
) => Promise<APIGatewayProxyStructuredResultV2>;

export const JSON_API = 'application/vnd.api+json';
const RETRY_AFTER_SECONDS = '2';

let apiKeys: Promise<ApiKeyEntry[]> | undefined;

/**
 * The key hashes: API_KEYS, or the SSM parameter API_KEYS_PARAMETER names, read once per container
 * (a deploy replaces every container, which is how a revoked key stops working). A failed read is
 * not kept: the request answers 500 and the next one reads again.
 */
function loadApiKeys(cfg: ReturnType<typeof config>): Promise<ApiKeyEntry[]> {
  if (apiKeys) return apiKeys;
  const parameter = cfg.apiKeysParameter;
  const loading = parameter
    ? readParameter(parameter).then((value) => parseApiKeys(value))
    : Promise.resolve().then(() => parseApiKeys(cfg.apiKeys));
  apiKeys = loading;
  loading.catch(() => {
    if (apiKeys === loading) apiKeys = undefined;
  });
  return loading;
}

async function readParameter(parameter: { name: string; region?: string; endpoint?: string }): Promise<string> {
  // Loaded only when configured: the Lambda runtime provides the AWS SDK.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ssm = require('@aws-sdk/client-ssm') as typeof SsmModule;
  const client = new ssm.SSMClient({
    ...(parameter.region ? { region: parameter.region } : {}),
    ...(parameter.endpoint ? { endpoint: parameter.endpoint } : {}),
  });
  const output = await client.send(new ssm.GetParameterCommand({ Name: parameter.name, WithDecryption: true }));
  return output.Parameter?.Value ?? '';
}

export function jsonApiResponse(
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode: status,
    headers: { 'content-type': JSON_API, ...headers },
    body: body === undefined ? '' : JSON.stringify(body),
  };
}

export function errorDocument(errors: readonly ApiErrorObject[]): { errors: readonly ApiErrorObject[] } {
  return { errors };
}

function fixedError(status: number, code: string, detail: string, headers: Record<string, string> = {}) {
  return jsonApiResponse(status, errorDocument(new HttpError(status, { code, detail }).toJsonApi()), headers);
}

/** Maps any failure to a response: domain errors by type, database errors by code. */
export function errorToResponse(err: unknown, fields: LogFields): APIGatewayProxyStructuredResultV2 {
  if (err instanceof HttpError) {
    fields.error_code = err.items[0]?.code;
    return jsonApiResponse(err.status, errorDocument(err.toJsonApi()), err.headers);
  }
  if (isUnstorableText(err)) {
    // Text from the request that PostgreSQL cannot hold (a NUL, an invalid byte sequence) and that
    // validation let through: the request's fault, and its transaction rolled back.
    fields.db_code = errorCode(err);
    return fixedError(
      400,
      'invalid',
      'The request contains text that cannot be stored (a NUL character or an invalid byte sequence).',
    );
  }
  if (isTransientDbError(err)) {
    fields.error = err;
    return fixedError(503, 'service_unavailable', 'The database is temporarily unavailable; retry shortly.', {
      'Retry-After': RETRY_AFTER_SECONDS,
    });
  }
  fields.error = err instanceof ConfigError ? { name: err.name, message: err.message } : err;
  fields.db_code = errorCode(err);
  return fixedError(500, 'internal_error', 'An internal error occurred.');
}

// character_not_in_repertoire (NUL, invalid UTF-8) and untranslatable_character.
const UNSTORABLE_TEXT = new Set(['22021', '22P05']);
function isUnstorableText(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && UNSTORABLE_TEXT.has(code);
}

/**
 * The operation's result, or a TimeBudgetError shortly after the deadline if it has none by then.
 * The database drivers stop their own waits at the deadline; this covers whatever else could still
 * be waiting (a driver's retry sleep, a hung socket), so that the function answers before its timeout.
 */
async function beforeDeadline<R>(work: Promise<R>, deadline: number, graceMs: number): Promise<R> {
  if (!Number.isFinite(deadline)) return work;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TimeBudgetError('the operation')),
      Math.max(0, deadline - performance.now()) + graceMs,
    );
  });
  work.catch(() => undefined);
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

export function httpHandler(options: PublicHandlerOptions, operation: PublicOperation): HttpHandler;
export function httpHandler(options: HandlerOptions, operation: Operation): HttpHandler;
export function httpHandler(
  options: HandlerOptions | PublicHandlerOptions,
  operation: Operation | PublicOperation,
): HttpHandler {
  return async (event, context) => {
    const requestLog = startRequestLog(options.name, event, context);
    const fields = requestLog.fields;
    let response: APIGatewayProxyStructuredResultV2;
    try {
      const cfg = config();
      const request = toHttpRequest(event, cfg.limits.ingestMaxBodyBytes, cfg.publicBaseUrl);
      let caller: Caller | undefined;
      if (options.scope !== 'public') {
        caller = authorize(
          request.headers.authorization,
          options.scope,
          await loadApiKeys(cfg),
          request.headers[ACCOUNT_HEADER],
        );
        fields.scope = caller.scope;
        fields.account_id = caller.accountId;
      }
      rejectNulCharacters(request);
      // Every database wait of the invocation ends at this deadline: its remaining time less the
      // margin it keeps to answer (503 with Retry-After) and write its log line.
      const remaining =
        typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : undefined;
      const deadline = deadlineFrom(remaining, cfg.responseMarginMs);
      const result = await beforeDeadline(
        withDeadline(deadline, () =>
          caller ? operation(request, fields, caller) : (operation as PublicOperation)(request, fields),
        ),
        deadline,
        cfg.responseMarginMs / 4,
      );
      response =
        result.body === undefined && result.status === 204
          ? { statusCode: 204, headers: { ...result.headers } }
          : jsonApiResponse(result.status, result.body, result.headers);
    } catch (err) {
      response = errorToResponse(err, fields);
    }
    requestLog.finish(response.statusCode);
    return response;
  };
}
