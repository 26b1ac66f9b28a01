import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { getDb } from '../lib/db';
import { HttpError } from '../lib/klaviyo/errors';
import { httpHandler, type HttpHandler, type HttpResult } from '../lib/http/handler';
import type { HttpRequest } from '../lib/http/request';
import {
  bulkCreateEvents,
  bulkImportProfiles,
  createEvent,
  createProfile,
  importProfile,
  ingestEventsPage,
  ingestResultDocument,
  upsertMetricsDocument,
  upsertProfilesDocument,
  type IngestCounts,
} from '../lib/app/ingest';
import { applyFieldset, parseFieldsets } from '../lib/klaviyo/fieldsets';
import { checkKnownParams } from '../lib/klaviyo/listParams';
import { apiBaseUrl, klaviyoDateTime, profileResource } from '../lib/klaviyo/resources';
import type { ProfileRow } from '../lib/repositories/profiles';
import type { LogFields } from '../lib/log';

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

async function events(request: HttpRequest, fields: LogFields): Promise<HttpResult> {
  const body = request.json();
  const data = body !== null && typeof body === 'object' ? (body as { data?: unknown }).data : undefined;
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    fields.shape = 'create-event';
    counted(fields, await createEvent(getDb(), body));
    return accepted;
  }
  fields.shape = 'events-page';
  return ok(counted(fields, await ingestEventsPage(getDb(), body)));
}

function isOneResource(body: unknown): boolean {
  const data = body !== null && typeof body === 'object' ? (body as { data?: unknown }).data : undefined;
  return data !== null && typeof data === 'object' && !Array.isArray(data);
}

const PROFILE_WRITE_PARAMS = ['additional-fields[profile]', 'fields[profile]'];

/** A written profile as Klaviyo answers it, shaped by the request's fields[profile] and additional-fields. */
function profileAnswer(request: HttpRequest, status: number, profile: ProfileRow): HttpResult {
  const fieldsets = parseFieldsets(request.query);
  const resource = profileResource(profile, apiBaseUrl(request.headers), fieldsets.additionalProfile);
  return { status, body: { data: applyFieldset(resource, fieldsets.byType.get('profile')) } };
}

async function profiles(request: HttpRequest, fields: LogFields): Promise<HttpResult> {
  const body = request.json();
  if (!isOneResource(body)) {
    fields.shape = 'profiles-page';
    return ok(counted(fields, await upsertProfilesDocument(getDb(), body)));
  }
  fields.shape = 'create-profile';
  checkKnownParams(request.query, PROFILE_WRITE_PARAMS);
  parseFieldsets(request.query);
  return profileAnswer(request, 201, await createProfile(getDb(), body));
}

async function profileImport(request: HttpRequest): Promise<HttpResult> {
  checkKnownParams(request.query, PROFILE_WRITE_PARAMS);
  parseFieldsets(request.query);
  const { profile, created } = await importProfile(getDb(), request.json());
  return profileAnswer(request, created ? 201 : 200, profile);
}

const JOB_FIELDS = [
  'completed_at',
  'completed_count',
  'created_at',
  'expires_at',
  'failed_count',
  'id',
  'started_at',
  'status',
  'total_count',
];

/** Klaviyo's profile-bulk-import-job, complete: the profiles were written before the answer. */
async function profileBulkImport(request: HttpRequest, fields: LogFields): Promise<HttpResult> {
  checkKnownParams(request.query, ['fields[profile-bulk-import-job]']);
  const names = request.query['fields[profile-bulk-import-job]']?.split(',').map((n) => n.trim());
  const unknown = names?.filter((n) => !JOB_FIELDS.includes(n)) ?? [];
  if (unknown.length > 0) {
    throw new HttpError(400, {
      code: 'invalid',
      detail: `fields[profile-bulk-import-job] takes ${JOB_FIELDS.join(', ')}.`,
      parameter: 'fields[profile-bulk-import-job]',
    });
  }
  const job = await bulkImportProfiles(getDb(), request.json());
  fields.received = job.totalCount;
  const resource = {
    type: 'profile-bulk-import-job',
    id: job.id,
    attributes: {
      status: 'complete',
      created_at: klaviyoDateTime(job.createdAt),
      total_count: job.totalCount,
      completed_count: job.totalCount,
      failed_count: 0,
      completed_at: klaviyoDateTime(job.completedAt),
      // Nothing is kept to expire: the job was done when this answer was sent.
      expires_at: null,
      started_at: klaviyoDateTime(job.createdAt),
    },
  };
  return { status: 202, body: { data: applyFieldset(resource, names) } };
}

const routes: Record<string, HttpHandler> = {
  '/api/events': httpHandler({ name: 'ingest-events', scope: 'write' }, events),
  '/api/profiles': httpHandler({ name: 'ingest-profiles', scope: 'write' }, profiles),
  '/api/profile-import': httpHandler({ name: 'ingest-profile-import', scope: 'write' }, profileImport),
  '/api/profile-bulk-import-jobs': httpHandler(
    { name: 'ingest-profile-bulk-import', scope: 'write' },
    profileBulkImport,
  ),
  '/api/metrics': httpHandler({ name: 'ingest-metrics', scope: 'write' }, async (request, fields) =>
    ok(counted(fields, await upsertMetricsDocument(getDb(), request.json()))),
  ),
  '/api/event-bulk-create-jobs': httpHandler(
    { name: 'ingest-bulk-create', scope: 'write' },
    async (request, fields) => {
      counted(fields, await bulkCreateEvents(getDb(), request.json()));
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
