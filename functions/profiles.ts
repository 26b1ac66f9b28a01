import { getDb } from '../lib/db';
import { httpHandler } from '../lib/http/handler';
import { getProfileDocument, getProfileEventsDocument, getProfilesDocument } from '../lib/app/documents';

/** GET /api/profiles?filter=equals(email,"a@b.c") (also phone_number, external_id, id; any(...)). */
export const list = httpHandler({ name: 'profiles-list', scope: 'read' }, async (request, logFields, caller) => {
  const document = await getProfilesDocument(getDb(), caller.accountId, {
    baseUrl: request.baseUrl,
    query: request.query,
  });
  logFields.rows = document.data.length;
  return { status: 200, body: document };
});

/** GET /api/profiles/{id}. */
export const get = httpHandler({ name: 'profiles-get', scope: 'read' }, async (request, _fields, caller) => {
  const id = request.pathParams.id ?? '';
  return {
    status: 200,
    body: await getProfileDocument(getDb(), caller.accountId, id, { baseUrl: request.baseUrl, query: request.query }),
  };
});

/** GET /api/profiles/{id}/events: the profile's timeline, newest first, keyset-paginated. */
export const events = httpHandler({ name: 'profiles-events', scope: 'read' }, async (request, logFields, caller) => {
  const id = request.pathParams.id ?? '';
  const document = await getProfileEventsDocument(getDb(), caller.accountId, id, {
    baseUrl: request.baseUrl,
    query: request.query,
  });
  logFields.rows = document.data.length;
  return { status: 200, body: document };
});
