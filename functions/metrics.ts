import { getDb } from '../lib/db';
import { httpHandler } from '../lib/http/handler';
import { getMetricDocument, getMetricsDocument } from '../lib/app/documents';

/** GET /api/metrics: name, integration, event count, first and last event of each metric. */
export const list = httpHandler({ name: 'metrics-list', scope: 'read' }, async (request, logFields, caller) => {
  const document = await getMetricsDocument(getDb(), caller.accountId, {
    baseUrl: request.baseUrl,
    query: request.query,
  });
  logFields.rows = document.data.length;
  return { status: 200, body: document };
});

/** GET /api/metrics/{id}. */
export const get = httpHandler({ name: 'metrics-get', scope: 'read' }, async (request, _fields, caller) => {
  const id = request.pathParams.id ?? '';
  return {
    status: 200,
    body: await getMetricDocument(getDb(), caller.accountId, id, { baseUrl: request.baseUrl, query: request.query }),
  };
});
