import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { log, type LogFields } from '../log';

/**
 * The one log line of an HTTP invocation, shared by every handler (the JSON:API ones and the chart
 * page): who was called, how, with what outcome and how long it took.
 */
let coldStart = true;

export interface RequestLog {
  /** Fields the operation adds as it goes (scope, counts, error codes). */
  readonly fields: LogFields;
  /** Writes the line: error level from status 500 on. */
  finish(statusCode: number | undefined, error?: unknown): void;
}

export function startRequestLog(name: string, event: APIGatewayProxyEventV2, context?: Partial<Context>): RequestLog {
  const started = process.hrtime.bigint();
  const fields: LogFields = {
    function: name,
    cold_start: coldStart,
    request_id: context?.awsRequestId ?? event.requestContext?.requestId,
    method: event.requestContext?.http?.method,
    route: event.routeKey,
  };
  coldStart = false;
  return {
    fields,
    finish(statusCode, error) {
      fields.status = statusCode;
      fields.duration_ms = Number((process.hrtime.bigint() - started) / 1000n) / 1000;
      if (error !== undefined) fields.error = error;
      if ((statusCode ?? 500) >= 500) log.error('request failed', fields);
      else log.info('request', fields);
    },
  };
}
