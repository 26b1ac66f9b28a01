import type { Context } from 'aws-lambda';
import { createServer, type Server, type Socket } from 'node:net';
import { handler as aggregate } from '../../functions/aggregate';
import { closeDb } from '../../lib/db';
import { testDriver } from '../support/env';
import { apiEvent } from '../support/http';
import { deployedRoutes, validBodyFor } from './support/routes';

/**
 * A database that accepts TCP and never answers: every HTTP function must answer 503 with
 * Retry-After before its own timeout, and the aggregator must return its error result in time,
 * whatever the configured connect timeout. "In time" is the function's timeout as the Lambda
 * runtime would enforce it: the handler's promise is raced against it.
 */
const describeOnPostgres = testDriver() === 'postgres' ? describe : describe.skip;

const LAMBDA_TIMEOUT = Symbol('Lambda timeout');

/** A context whose remaining time runs out `timeoutMs` from now, as Lambda's does. */
function contextWithTimeout(timeoutMs: number): Partial<Context> {
  const end = Date.now() + timeoutMs;
  return { awsRequestId: 'budget-test', getRemainingTimeInMillis: () => Math.max(0, end - Date.now()) };
}

async function withinTimeout<R>(work: Promise<R>, timeoutMs: number): Promise<R | typeof LAMBDA_TIMEOUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof LAMBDA_TIMEOUT>((resolve) => {
    timer = setTimeout(() => resolve(LAMBDA_TIMEOUT), timeoutMs);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describeOnPostgres('answers inside the time budget when the database accepts and never answers', () => {
  let silent: Server;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = silent.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    process.env.DATABASE_URL = `postgres://postgres:postgres@127.0.0.1:${port}/klaviyo`;
    delete process.env.DB_HOST;
    // The old defaults: a connect timeout of 10 s retried twice and a 25 s statement timeout, more
    // than any function's timeout. The invocation's deadline must cut them.
    process.env.DB_CONNECT_TIMEOUT_S = '10';
    process.env.DB_STATEMENT_TIMEOUT_MS = '25000';
    process.env.RESPONSE_MARGIN_MS = '500';
    await closeDb();
  });
  afterAll(async () => {
    await closeDb().catch(() => undefined);
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });

  // The real timeouts are 5-29 s; the same arithmetic on a 2.5 s budget keeps the test short.
  const TIMEOUT_MS = 2_500;
  const routes = deployedRoutes();

  it.each(routes.map((r) => [`${r.method} ${r.path}`, r] as const))(
    '%s answers before its timeout: 503 with Retry-After (the chart page needs no database)',
    async (_name, route) => {
      const body = validBodyFor(route.method, route.path);
      const pathParams = route.path.includes('{id}') ? { id: 'some_id' } : undefined;
      const event = apiEvent({
        method: route.method,
        path: route.path.replace('{id}', 'some_id'),
        routeKey: `${route.method} ${route.path}`,
        pathParams,
        body,
        key: 'admin',
      });
      const answer = await withinTimeout(route.handler(event, contextWithTimeout(TIMEOUT_MS)), TIMEOUT_MS);
      expect(answer).not.toBe(LAMBDA_TIMEOUT);
      if (answer === LAMBDA_TIMEOUT) return;
      if (route.path === '/') {
        // The chart page needs no database.
        expect(answer.statusCode).toBe(200);
        return;
      }
      expect(answer.statusCode).toBe(503);
      expect(answer.headers?.['Retry-After']).toMatch(/^\d+$/);
      expect(JSON.parse(String(answer.body)).errors[0]).toMatchObject({ status: '503', code: 'service_unavailable' });
    },
    20_000,
  );

  it('the aggregator returns its error result before its timeout, without a second wait', async () => {
    const result = await withinTimeout(aggregate({ id: 'budget' }, contextWithTimeout(TIMEOUT_MS)), TIMEOUT_MS);
    expect(result).not.toBe(LAMBDA_TIMEOUT);
    expect(result).toMatchObject({ status: 'error', scheduledEventId: 'budget' });
  }, 20_000);
});
