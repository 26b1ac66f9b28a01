import { queryMetricAggregates } from '../lib/app/metricAggregates';
import { config } from '../lib/config';
import { getDb } from '../lib/db';
import { httpHandler } from '../lib/http/handler';

/** POST /api/metric-aggregates: Klaviyo's Query Metric Aggregates, always fresh. */
export const handler = httpHandler({ name: 'metricAggregates', scope: 'read' }, async (request, logFields, caller) => {
  const { document, plan } = await queryMetricAggregates(getDb(), caller.accountId, request.json(), {
    maxRangeDays: config().limits.queryMaxRangeDays,
    baseUrl: request.baseUrl,
    pageCursor: request.query.page_cursor ?? request.query['page[cursor]'],
    dayZones: config().rollups.dayZones,
  });
  logFields.day_zone = plan.dayZone;
  logFields.metric_id = plan.metricId;
  logFields.source = plan.source;
  logFields.buckets = plan.boundaries.length - 1;
  logFields.rows = document.data.attributes.data.length;
  return { status: 200, body: document };
});
