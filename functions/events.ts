import { getDb } from '../lib/db';
import { httpHandler } from '../lib/http/handler';
import {
  getEventDocument,
  getEventMetricDocument,
  getEventProfileDocument,
  getEventRelationshipDocument,
  getEventsDocument,
} from '../lib/app/documents';

/** GET /api/events: Klaviyo's Get Events (filter, sort, page[size], page[cursor], include=metric,profile). */
export const list = httpHandler({ name: 'events-list', scope: 'read' }, async (request, logFields, caller) => {
  const document = await getEventsDocument(getDb(), caller.accountId, {
    baseUrl: request.baseUrl,
    query: request.query,
  });
  logFields.rows = document.data.length;
  return { status: 200, body: document };
});

/** GET /api/events/{id} (include=metric,profile). */
export const get = httpHandler({ name: 'events-get', scope: 'read' }, async (request, _fields, caller) => {
  const id = request.pathParams.id ?? '';
  return {
    status: 200,
    body: await getEventDocument(getDb(), caller.accountId, id, { baseUrl: request.baseUrl, query: request.query }),
  };
});

/** GET /api/events/{id}/metric (fields[metric]). */
export const metric = httpHandler({ name: 'events-metric', scope: 'read' }, async (request, _fields, caller) => ({
  status: 200,
  body: await getEventMetricDocument(getDb(), caller.accountId, request.pathParams.id ?? '', {
    baseUrl: request.baseUrl,
    query: request.query,
  }),
}));

/** GET /api/events/{id}/profile (fields[profile], additional-fields[profile]). */
export const profile = httpHandler({ name: 'events-profile', scope: 'read' }, async (request, _fields, caller) => ({
  status: 200,
  body: await getEventProfileDocument(getDb(), caller.accountId, request.pathParams.id ?? '', {
    baseUrl: request.baseUrl,
    query: request.query,
  }),
}));

/** GET /api/events/{id}/relationships/metric and /relationships/profile: the related resource's identifier. */
const relationshipHandler = (kind: 'metric' | 'profile') =>
  httpHandler({ name: `events-${kind}-relationship`, scope: 'read' }, async (request, _fields, caller) => ({
    status: 200,
    body: await getEventRelationshipDocument(getDb(), caller.accountId, request.pathParams.id ?? '', kind, {
      baseUrl: request.baseUrl,
      query: request.query,
    }),
  }));

export const metricRelationship = relationshipHandler('metric');
export const profileRelationship = relationshipHandler('profile');
