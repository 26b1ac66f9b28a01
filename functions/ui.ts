import { randomBytes } from 'node:crypto';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { log } from '../lib/log';
import { chartPage, chartPageSecurityPolicy } from '../lib/ui/page';

/**
 * GET /: the chart page, public like the health check. It holds no data: the browser asks the API
 * for it with the key the user enters. HTML rather than JSON:API, so it does not go through
 * httpHandler, but it keeps the same rules: one log line, and it never throws.
 */
export async function handler(
  event: APIGatewayProxyEventV2,
  context?: Partial<Context>,
): Promise<APIGatewayProxyStructuredResultV2> {
  const started = process.hrtime.bigint();
  let response: APIGatewayProxyStructuredResultV2;
  let error: unknown;
  try {
    const nonce = randomBytes(16).toString('base64');
    response = {
      statusCode: 200,
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': chartPageSecurityPolicy(nonce),
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      },
      body: chartPage(nonce),
    };
  } catch (err) {
    error = err;
    response = {
      statusCode: 500,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      body: 'The chart page is unavailable.',
    };
  }
  const fields = {
    function: 'ui',
    request_id: context?.awsRequestId ?? event.requestContext?.requestId,
    method: event.requestContext?.http?.method,
    route: event.routeKey,
    status: response.statusCode,
    duration_ms: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
  };
  if (error) log.error('request failed', { ...fields, error });
  else log.info('request', fields);
  return response;
}
