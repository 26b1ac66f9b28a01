import type { SQSEvent } from 'aws-lambda';
import { handler as aggregateHandler } from '../../../functions/aggregate';
import { backfillDimensions, rebuildAggregates, runAggregation } from '../../../lib/app/aggregation';
import { runScheduledSync } from '../../../lib/app/sync';
import { DEFAULT_ACCOUNT_ID } from '../../../lib/config';
import type { Db } from '../../../lib/db/port';
import { seedDemoData } from '../../../scripts/seed';
import { deployedRoutes, validBodyFor, type DeployedRoute } from '../../hardening/support/routes';
import { FakeKlaviyo, eventOf, metricOf, profileOf } from '../../support/fakeKlaviyo';
import { invoke, type InvokeOptions, type InvokeResult } from '../../support/http';
import { API_KEY, DAY, HOUR, harness } from '../../sync/helpers';
import { handler as consumer } from '../../../functions/ingestConsumer';

/**
 * A representative workload of the whole product, through its real entry points: ingest (pages by
 * COPY and by INSERT, re-delivered pages, Klaviyo's write shapes, profile writes), every deployed
 * route with real ids, metric aggregates of every plan shape, list pages followed through their
 * cursors, the aggregator (incremental, scheduled, rebuild, dimension backfill) and the sync against
 * the stand-in Klaviyo. Used by the statement check; it asserts nothing about answers itself, only
 * that every request was served (a 5xx would hide the statements behind it).
 */
/** The account the workload writes and reads: the one the test keys act on. */
const ACCOUNT = DEFAULT_ACCOUNT_ID;

export const WINDOW = { start: new Date('2025-03-01T00:00:00Z'), end: new Date('2025-03-15T00:00:00Z') };

type Call = (route: DeployedRoute, options: InvokeOptions) => Promise<InvokeResult>;

function routeCaller(): { call: Call; route: (method: string, path: string) => DeployedRoute } {
  const routes = deployedRoutes();
  const route = (method: string, path: string) => {
    const found = routes.find((r) => r.method === method && r.path === path);
    if (!found) throw new Error(`no deployed route ${method} ${path}`);
    return found;
  };
  const call: Call = async (r, options) => {
    const answer = await invoke(r.handler, { method: r.method, routeKey: `${r.method} ${r.path}`, ...options });
    if (answer.status >= 500)
      throw new Error(`${r.method} ${r.path} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    return answer;
  };
  return { call, route };
}

/** Follows `links.next` of a list route up to `pages` pages. */
async function followPages(call: Call, r: DeployedRoute, query: Record<string, string>, pages: number): Promise<void> {
  let next: string | undefined;
  for (let i = 0; i < pages; i += 1) {
    const q = next ? Object.fromEntries(new URL(next).searchParams) : query;
    const answer = await call(r, { path: r.path, query: q });
    next = answer.body?.links?.next ?? undefined;
    if (!next) return;
  }
}

const RANGE = ['greater-or-equal(datetime,2025-03-01T00:00:00)', 'less-than(datetime,2025-03-15T00:00:00)'];

function aggregateBody(metricId: string, attributes: Record<string, unknown>): unknown {
  return {
    data: {
      type: 'metric-aggregate',
      attributes: {
        metric_id: metricId,
        measurements: ['count'],
        interval: 'day',
        filter: RANGE,
        timezone: 'UTC',
        ...attributes,
      },
    },
  };
}

export async function runWorkload(db: Db): Promise<void> {
  const { call, route } = routeCaller();

  // Ingest: a small demo dataset (COPY on postgres.js, jsonb_to_recordset on the Data API), then the
  // same pages again (every event a duplicate: the COPY refused, the INSERT ... ON CONFLICT path).
  await seedDemoData(db, { events: 3000, pageSize: 500, profiles: 300, ...WINDOW });
  await seedDemoData(db, { events: 1000, pageSize: 500, profiles: 300, ...WINDOW });

  // Every deployed route once with its valid body (writes through every ingest shape).
  for (const r of deployedRoutes()) {
    if (r.path.includes('{id}') || r.path === '/') continue;
    await call(r, { path: r.path, body: validBodyFor(r.method, r.path) });
  }

  // Real ids for the routes that take one.
  const events = await call(route('GET', '/api/events'), { path: '/api/events', query: { 'page[size]': '5' } });
  const event = events.body.data[0];
  const eventId: string = event.id;
  const metricId: string = event.relationships.metric.data.id;
  const profileId: string = event.relationships.profile.data.id;
  for (const r of deployedRoutes()) {
    if (!r.path.includes('{id}')) continue;
    const id = r.path.startsWith('/api/events') ? eventId : r.path.startsWith('/api/metrics') ? metricId : profileId;
    await call(r, { path: r.path.replace('{id}', id), pathParams: { id } });
    // An id that does not exist: the 404 path.
    await call(r, { path: r.path.replace('{id}', 'NoSuchId'), pathParams: { id: 'NoSuchId' } });
  }

  // Lists through their cursors, with filters, sorts and includes.
  await followPages(call, route('GET', '/api/events'), { 'page[size]': '50', include: 'metric,profile' }, 3);
  await followPages(
    call,
    route('GET', '/api/events'),
    { filter: `equals(metric_id,"${metricId}")`, sort: '-datetime' },
    2,
  );
  await followPages(call, route('GET', '/api/profiles'), { 'page[size]': '20' }, 3);
  await followPages(call, route('GET', '/api/profiles'), { sort: '-updated' }, 2);
  await followPages(call, route('GET', '/api/metrics'), {}, 2);
  const profileEvents = route('GET', '/api/profiles/{id}/events');
  await call(profileEvents, { path: `/api/profiles/${profileId}/events`, pathParams: { id: profileId } });

  const aggregates = route('POST', '/api/metric-aggregates');
  const shapes: Record<string, unknown>[] = [
    { measurements: ['count', 'sum_value'], interval: 'hour' },
    { measurements: ['count', 'sum_value', 'unique'], interval: 'day', timezone: 'America/New_York' },
    { measurements: ['unique'], interval: 'week' },
    { measurements: ['count', 'unique'], interval: 'month', timezone: 'Asia/Kolkata' },
    { measurements: ['count', 'sum_value'], interval: 'day', by: ['$flow'] },
    { measurements: ['count'], interval: 'day', filter: [...RANGE, 'equals($flow,"Welcome Series")'] },
    { measurements: ['count', 'unique'], interval: 'day', by: ['$message'] },
  ];
  const askEveryShape = async () => {
    for (const shape of shapes)
      await call(aggregates, { path: '/api/metric-aggregates', body: aggregateBody(metricId, shape) });
  };
  // Before any aggregation (raw events), after it (rollups), and with late events pending.
  await askEveryShape();
  await runAggregation(db, ACCOUNT);
  await askEveryShape();
  await seedDemoData(db, { events: 500, pageSize: 250, profiles: 300, seed: 7, ...WINDOW });
  await askEveryShape();

  // The aggregator's other paths: the scheduled function, a rebuild, a dimension backfill.
  const scheduled = await aggregateHandler(
    { id: 'statement-check' },
    {
      awsRequestId: 'statement-check',
      getRemainingTimeInMillis: () => 60_000,
    },
  );
  // A failed run would leave its statements out of the check: say why here, not as a missing statement.
  if (scheduled.status === 'error') {
    throw new Error(`the scheduled aggregator failed: ${scheduled.error.name} ${scheduled.error.code ?? ''}`);
  }
  await rebuildAggregates(db, ACCOUNT, { from: WINDOW.start, to: new Date(WINDOW.start.getTime() + 3 * DAY) });
  await backfillDimensions(db, { extraDimensions: ['Campaign Name'] });
  await seedDemoData(db, { events: 300, pageSize: 300, profiles: 300, seed: 9, ...WINDOW });
  await runAggregation(db, ACCOUNT);
  await askEveryShape();

  // The sync against the stand-in Klaviyo: backfill, then an incremental run.
  const fake = new FakeKlaviyo({ apiKey: API_KEY });
  await fake.start();
  try {
    const now = Date.parse('2025-03-20T12:00:00Z');
    fake.addMetric(metricOf('SyncMetric', 'Synced Metric'));
    for (let p = 0; p < 5; p += 1) fake.putProfile(profileOf(`SyncP${p}`, now - 10 * DAY + p * HOUR));
    for (let i = 0; i < 120; i += 1) {
      fake.addEvent(eventOf(`SyncE${i}`, 'SyncMetric', `SyncP${i % 5}`, now - 5 * DAY + i * HOUR, { $value: i + 0.5 }));
    }
    const h = harness(
      () => db,
      () => fake,
      now,
    );
    await h.syncUntilCaughtUp();
    fake.addEvent(eventOf('SyncLate', 'SyncMetric', 'SyncP1', now - HOUR, { $value: 1 }));
    h.clock.advance(2 * HOUR);
    await h.syncUntilCaughtUp();
    // The scheduled function's path: the list of accounts to sync, then each one with its key.
    await runScheduledSync(
      db,
      {
        baseUrl: fake.baseUrl,
        accountId: ACCOUNT,
        timeBudgetMs: 60_000,
        lookbackMs: DAY,
        lookbackEveryMs: HOUR,
        safetyLagMs: 5_000,
        backfillMs: 30 * DAY,
        sliceMs: 7 * DAY,
        rateShare: 1,
      },
      60_000,
      { env: { KLAVIYO_API_KEY: API_KEY } },
    );
  } finally {
    await fake.stop();
  }
  await call(route('GET', '/api/sync-status'), { path: '/api/sync-status' });

  // The queue consumer: a message it cannot read is set aside in klaviyo_queue_rejects.
  await consumer({ Records: [{ messageId: 'workload-unreadable', body: 'not json' }] } as unknown as SQSEvent);
}
