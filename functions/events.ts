import { getDb } from '../lib/db';
import { httpHandler } from '../lib/http/handler';
import { getEventDocument, getEventsDocument } from '../lib/klaviyo/getDocuments';
import { apiBaseUrl } from '../lib/klaviyo/resources';

/** GET /api/events: Klaviyo's Get Events (filter, sort, page[size], page[cursor], include=metric,profile). */
export const list = httpHandler({ name: 'events-list', scope: 'read' }, async (request, logFields) => {
  const document = await getEventsDocument(getDb(), { baseUrl: apiBaseUrl(request), query: request.query });
  logFields.rows = document.data.length;
  return { status: 200, body: document };
});

/** GET /api/events/{id} (include=metric,profile). */
export const get = httpHandler({ name: 'events-get', scope: 'read' }, async (request) => {
  const id = request.pathParams.id ?? '';
  return {
    status: 200,
    body: await getEventDocument(getDb(), id, { baseUrl: apiBaseUrl(request), query: request.query }),
  };
});
