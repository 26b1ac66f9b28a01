import { randomBytes } from 'node:crypto';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { startRequestLog } from '../lib/http/requestLog';
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
  const requestLog = startRequestLog('ui', event, context);
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
  requestLog.finish(response.statusCode, error);
  return response;
}
