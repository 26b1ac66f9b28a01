import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { getDb } from '../lib/db';
import { HttpError } from '../lib/klaviyo/errors';
import { httpHandler, type HttpHandler, type HttpResult } from '../lib/http/handler';
import type { HttpRequest } from '../lib/http/request';
import {
  bulkCreateEvents,
  createEvent,
  ingestEventsPage,
  ingestResultDocument,
  upsertMetricsDocument,
  upsertProfilesDocument,
  type IngestCounts,
} from '../lib/app/ingest';
import {
  bulkImportProfilesDocument,
  createProfileDocument,
  importProfileDocument,
} from '../lib/app/profileWriteDocuments';
import type { LogFields } from '../lib/log';
import type { Caller } from '../lib/http/auth';

/**
 * The ingest Lambda: POST /api/events (a page of Klaviyo events, or Klaviyo's Create Event),
 * POST /api/profiles (a page of profiles, or Klaviyo's Create Profile), POST /api/profile-import,
 * POST /api/profile-bulk-import-jobs, POST /api/metrics and POST /api/event-bulk-create-jobs.
 * Klaviyo's own write shapes answer as Klaviyo does (202 with an empty body for events, the profile
 * with 201 or 200, the job with 202); pages answer 200 with an ingest-result.
 */
function counted(fields: LogFields, counts: IngestCounts): IngestCounts {
  Object.assign(fields, counts);
  return counts;
}

const ok = (counts: IngestCounts): HttpResult => ({ status: 200, body: ingestResultDocument(counts) });
const accepted: HttpResult = { status: 202 };

async function events(request: HttpRequest, fields: LogFields, { accountId }: Caller): Promise<HttpResult> {
  const body = request.json();
  const data = body !== null && typeof body === 'object' ? (body as { data?: unknown }).data : undefined;
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    fields.shape = 'create-event';
    counted(fields, await createEvent(getDb(), accountId, body));
    return accepted;
  }
  fields.shape = 'events-page';
  return ok(counted(fields, await ingestEventsPage(getDb(), accountId, body)));
}

function isOneResource(body: unknown): boolean {
  const data = body !== null && typeof body === 'object' ? (body as { data?: unknown }).data : undefined;
  return data !== null && typeof data === 'object' && !Array.isArray(data);
}

async function profiles(request: HttpRequest, fields: LogFields, { accountId }: Caller): Promise<HttpResult> {
  const body = request.json();
  if (!isOneResource(body)) {
    fields.shape = 'profiles-page';
    return ok(counted(fields, await upsertProfilesDocument(getDb(), accountId, body)));
  }
  fields.shape = 'create-profile';
  return { status: 201, body: await createProfileDocument(getDb(), accountId, body, request) };
}

async function profileImport(request: HttpRequest, _fields: LogFields, { accountId }: Caller): Promise<HttpResult> {
  const { created, document } = await importProfileDocument(getDb(), accountId, request.json(), request);
  return { status: created ? 201 : 200, body: document };
}

async function profileBulkImport(request: HttpRequest, fields: LogFields, { accountId }: Caller): Promise<HttpResult> {
  const { totalCount, document } = await bulkImportProfilesDocument(getDb(), accountId, request.json(), request.query);
  fields.received = totalCount;
  return { status: 202, body: document };
}

const routes: Record<string, HttpHandler> = {
  '/api/events': httpHandler({ name: 'ingest-events', scope: 'write' }, events),
  '/api/profiles': httpHandler({ name: 'ingest-profiles', scope: 'write' }, profiles),
  '/api/profile-import': httpHandler({ name: 'ingest-profile-import', scope: 'write' }, profileImport),
  '/api/profile-bulk-import-jobs': httpHandler(
    { name: 'ingest-profile-bulk-import', scope: 'write' },
    profileBulkImport,
  ),
  '/api/metrics': httpHandler({ name: 'ingest-metrics', scope: 'write' }, async (request, fields, caller) =>
    ok(counted(fields, await upsertMetricsDocument(getDb(), caller.accountId, request.json()))),
  ),
  '/api/event-bulk-create-jobs': httpHandler(
    { name: 'ingest-bulk-create', scope: 'write' },
    async (request, fields, caller) => {
      counted(fields, await bulkCreateEvents(getDb(), caller.accountId, request.json()));
      return accepted;
    },
  ),
};

const unknownRoute = httpHandler({ name: 'ingest', scope: 'write' }, async (request) => {
  throw new HttpError(404, { code: 'not_found', detail: `No ingest route for ${request.method} ${request.path}.` });
});

const wrongMethod = httpHandler({ name: 'ingest', scope: 'write' }, async (request) => {
  throw new HttpError(
    405,
    { code: 'method_not_allowed', detail: `${request.method} is not allowed here; use POST.` },
    { Allow: 'POST' },
  );
});

/** The route from API Gateway's routeKey ("POST /api/events"), else from the raw path. */
function routeOf(event: APIGatewayProxyEventV2): { method: string; path: string } {
  const fromKey = /^(\S+)\s+(\S+)$/.exec(event.routeKey ?? '');
  if (fromKey && fromKey[2] !== undefined && routes[fromKey[2]]) return { method: fromKey[1] ?? '', path: fromKey[2] };
  const method = event.requestContext?.http?.method ?? '';
  const raw = (event.rawPath ?? '').replace(/\/+$/, '');
  const path = Object.keys(routes).find((route) => raw === route || raw.endsWith(route)) ?? raw;
  return { method, path };
}

export const handler: HttpHandler = async (event, context) => {
  const { method, path } = routeOf(event);
  const route = routes[path];
  if (!route) return unknownRoute(event, context);
  if (method.toUpperCase() !== 'POST') return wrongMethod(event, context);
  return route(event, context);
};
