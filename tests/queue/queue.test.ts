import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SendMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';
import type { SQSEvent } from 'aws-lambda';
import { handler as ingest } from '../../functions/ingest';
import { handler as consumer } from '../../functions/ingestConsumer';
import { ingestEventsPage, planEventsPage } from '../../lib/app/ingest';
import { ingestMessages } from '../../lib/app/ingest/enqueue';
import { queuedMessages, queuedRowsMessages, splitForQueue } from '../../lib/app/ingest/queueMessages';
import { splitPlanForQueue } from '../../lib/app/ingest/queueRows';
import type { Db } from '../../lib/db/port';
import { queueDepth, startLocalQueues, startPoller, type LocalQueues, type Poller } from '../../scripts/localQueue';
import { freshDatabase, useFreshDatabase, type TestDatabase } from '../support/database';
import { invoke } from '../support/http';
import { eventsPage } from '../ingest/helpers';
import { NEIGHBOR_ACCOUNT } from '../support/neighbor';

/**
 * Queue mode end to end, against the real database and local-aws-sqs in this process: the ingest
 * routes validate and enqueue (202), the local poller hands batches to the consumer function as
 * Lambda's event source would, and what ends up stored is exactly what the synchronous path stores.
 * A poison message goes to the dead-letter queue and the rejects table without holding back its
 * batch-mates; a redelivered message and a batch that dies before its commit store everything once.
 */

const MAX_BYTES = 16_384;

/** openapi.yaml's schema of a queued page's answer (the openapi test runs the synchronous mode). */
function receiptSchemaCheck(): (body: unknown) => boolean {
  const doc: unknown = parse(readFileSync(join(__dirname, '..', '..', 'openapi.yaml'), 'utf8'));
  const ajv = new Ajv2020({ strict: false });
  addFormats(ajv);
  ajv.addSchema(doc as object, 'openapi');
  const validate = ajv.getSchema('openapi#/components/schemas/IngestReceiptDocument');
  if (!validate) throw new Error('openapi.yaml has no IngestReceiptDocument');
  return (body) => validate(body) as boolean;
}
const MAX_RECEIVES = 2;

const post = (path: string, body: unknown, query?: Record<string, string>) =>
  invoke(ingest, { method: 'POST', path, body, key: 'write', query });

/** What a stored event is, without the columns a write stamps (ingested_at). */
async function eventContents(db: Db): Promise<string> {
  const rows = await db.query<{ sum: string; n: string }>(
    `SELECT count(*) AS n, md5(coalesce(string_agg(concat_ws('|', account_id, id, "timestamp", metric_id, profile_id, value, value_currency,
            uuid, unique_id, properties::text, raw_data::text), E'\\n' ORDER BY account_id, id, "timestamp"), '')) AS sum
       FROM klaviyo_events`,
  );
  return `${rows[0]?.n}:${rows[0]?.sum}`;
}

/** What a stored profile is, without the column a write stamps (ingested_at). */
async function profileContents(db: Db): Promise<string> {
  const rows = await db.query<{ sum: string; n: string }>(
    `SELECT count(*) AS n, md5(coalesce(string_agg(concat_ws('|', account_id, id, is_stub, email, phone_number, external_id,
            anonymous_id, first_name, last_name, organization, locale, title, image, location::text, properties::text,
            created, updated, last_event_date, raw_data::text, kx), E'\\n' ORDER BY account_id, id), '')) AS sum
       FROM klaviyo_profiles`,
  );
  return `${rows[0]?.n}:${rows[0]?.sum}`;
}

/** The aggregator's bookkeeping rows (pending rows with their carried dimension values, dirty marks) of the account 'default'. */
async function bookkeepingContents(db: Db): Promise<string> {
  const rows = await db.query<{ pending: string; dirty: string }>(
    `SELECT (SELECT md5(coalesce(string_agg(concat_ws('|', metric_id, bucket, event_id, "timestamp", profile_id, value,
                    dimension_values::text, dimension_generation), E'\n' ORDER BY event_id, "timestamp"), ''))
               FROM klaviyo_aggregate_pending WHERE account_id = 'default') AS pending,
            (SELECT string_agg(concat_ws('|', metric_id, bucket), ',' ORDER BY metric_id, bucket)
               FROM klaviyo_aggregate_dirty WHERE account_id = 'default') AS dirty`,
  );
  return `${rows[0]?.pending}:${rows[0]?.dirty}`;
}

async function tableCounts(db: Db): Promise<{ events: number; pending: number; profiles: number; metrics: number }> {
  const rows = await db.query<{ events: string; pending: string; profiles: string; metrics: string }>(
    // Every account but the neighbour every test database holds (tests/support/neighbor.ts).
    `SELECT (SELECT count(*) FROM klaviyo_events WHERE account_id <> $1) AS events,
            (SELECT count(*) FROM klaviyo_aggregate_pending WHERE account_id <> $1) AS pending,
            (SELECT count(*) FROM klaviyo_profiles WHERE account_id <> $1) AS profiles,
            (SELECT count(*) FROM klaviyo_metrics WHERE account_id <> $1) AS metrics`,
    [NEIGHBOR_ACCOUNT],
  );
  const r = rows[0]!;
  return {
    events: Number(r.events),
    pending: Number(r.pending),
    profiles: Number(r.profiles),
    metrics: Number(r.metrics),
  };
}

async function eventually<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 45_000;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('queue mode: POST 202, then the consumer stores it', () => {
  const t = useFreshDatabase();
  let queues: LocalQueues;
  let poller: Poller | undefined;
  const consumerErrors: unknown[] = [];

  const drained = () =>
    eventually(
      'the queue drains',
      () => queueDepth(queues.client, queues.queueUrl),
      (d) => d.visible === 0 && d.inFlight === 0,
    );

  beforeAll(async () => {
    queues = await startLocalQueues({
      port: 0,
      queueName: 'ingest-test',
      // Longer than a batch takes on a loaded machine: a batch still being written must not come back.
      visibilityTimeoutSeconds: 4,
      maxReceiveCount: MAX_RECEIVES,
      maxMessageBytes: MAX_BYTES,
    });
    // Read by config() on the handlers' first invocation.
    process.env.INGEST_MODE = 'queue';
    process.env.INGEST_QUEUE_URL = queues.queueUrl;
    process.env.INGEST_QUEUE_ENDPOINT = queues.endpoint;
    process.env.INGEST_QUEUE_MESSAGE_MAX_BYTES = String(MAX_BYTES);
  });

  const startConsuming = () => {
    poller = startPoller({
      client: queues.client,
      queueUrl: queues.queueUrl,
      queueArn: queues.queueArn,
      batchSize: 10,
      batchWindowMs: 200,
      concurrency: 2,
      invoke: (event) => consumer(event),
      onError: (err) => consumerErrors.push(err),
    });
  };

  const stopConsuming = async () => {
    await poller?.stop();
    poller = undefined;
  };

  afterEach(stopConsuming);

  afterAll(async () => {
    await stopConsuming();
    await queues.stop();
    for (const k of ['INGEST_MODE', 'INGEST_QUEUE_URL', 'INGEST_QUEUE_ENDPOINT', 'INGEST_QUEUE_MESSAGE_MAX_BYTES'])
      delete process.env[k];
  });

  it('answers a page with 202 and a receipt, splits it to fit a message, and stores what the synchronous path stores', async () => {
    const page = eventsPage({ events: 300, prefix: 'q', metrics: 4, profiles: 30 });
    // Text the queue's COPY lines must escape, in a registered dimension and in raw data; an event
    // without properties of its own.
    page.data[3].attributes.event_properties['Campaign Name'] = 'tab\there\nline "quoted" back\\slash é 😀';
    page.data[4].attributes.event_properties = null;
    // And in a profile's resource, which the profiles' COPY sends as its line has it.
    const profile = page.included.find((r) => r.type === 'profile');
    profile.attributes.last_name = 'tab\there\nline "quoted" back\\slash é 😀';
    profile.attributes.properties = { note: 'back\\slash\ttab', nested: { 'k\ney': ['é', null, 1.5] } };
    const accepted = await post('/api/events', page);
    expect(accepted.status).toBe(202);
    expect(accepted.body.data).toMatchObject({
      type: 'ingest-receipt',
      attributes: { status: 'queued', received: 300 },
    });
    expect(accepted.body.data.attributes.messages).toBeGreaterThan(1);
    expect(receiptSchemaCheck()(accepted.body)).toBe(true);
    // Nothing is written before the consumer runs.
    expect((await tableCounts(t.db)).events).toBe(0);
    const waiting = await queueDepth(queues.client, queues.queueUrl);
    expect(waiting.visible).toBe(accepted.body.data.attributes.messages);

    startConsuming();
    await drained();
    await stopConsuming();

    const reference: TestDatabase = await freshDatabase({ setEnv: false });
    try {
      await ingestEventsPage(reference.db, 'default', page);
      expect(await eventContents(t.db)).toBe(await eventContents(reference.db));
      expect(await profileContents(t.db)).toBe(await profileContents(reference.db));
      expect(await tableCounts(t.db)).toEqual(await tableCounts(reference.db));
      expect(await bookkeepingContents(t.db)).toBe(await bookkeepingContents(reference.db));
    } finally {
      await reference.drop();
    }
  });

  it("carries the caller's account in every message, and the consumer writes as that account", async () => {
    const page = eventsPage({ events: 60, prefix: 'acct', metrics: 2, profiles: 6 });
    const asAcme = await invoke(ingest, {
      method: 'POST',
      path: '/api/events',
      body: page,
      key: 'admin',
      headers: { 'x-account-id': 'acme' },
    });
    expect(asAcme.status).toBe(202);
    // The same page for the default account, in the same batches: two accounts, two transactions.
    expect((await post('/api/events', page)).status).toBe(202);
    startConsuming();
    await drained();
    const byAccount = await t.db.query<{ account_id: string; n: string }>(
      `SELECT account_id, count(*) AS n FROM klaviyo_events WHERE id LIKE 'acct%' GROUP BY account_id ORDER BY account_id`,
    );
    expect(byAccount).toEqual([
      { account_id: 'acme', n: '60' },
      { account_id: 'default', n: '60' },
    ]);
  });

  it('refuses bad input synchronously with its pointer and enqueues nothing', async () => {
    const page = eventsPage({ events: 3, prefix: 'bad' });
    delete page.data[1].attributes.datetime;
    delete page.data[1].attributes.timestamp;
    const refused = await post('/api/events', page);
    expect(refused.status).toBe(400);
    expect(refused.body.errors[0].source.pointer).toBe('/data/1/attributes/datetime');
    expect(await queueDepth(queues.client, queues.queueUrl)).toEqual({ visible: 0, inFlight: 0 });
  });

  it('refuses with 413 and its pointer a resource that cannot fit in one message', async () => {
    const page = eventsPage({ events: 2, prefix: 'big' });
    page.data[1].attributes.event_properties.blob = 'x'.repeat(MAX_BYTES);
    const refused = await post('/api/events', page);
    expect(refused.status).toBe(413);
    expect(refused.body.errors[0]).toMatchObject({ code: 'too_large', source: { pointer: '/data/1' } });
    expect(await queueDepth(queues.client, queues.queueUrl)).toEqual({ visible: 0, inFlight: 0 });
  });

  it("queues Klaviyo's Create Event, Bulk Create, profiles, metrics and profile imports, stamping time at acceptance", async () => {
    const before = Date.now();
    const created = await post('/api/events', {
      data: {
        type: 'event',
        attributes: {
          properties: { source: 'queue' },
          metric: { data: { type: 'metric', attributes: { name: 'Queued Order' } } },
          profile: { data: { type: 'profile', attributes: { email: 'queued@example.com' } } },
        },
      },
    });
    expect(created.status).toBe(202);
    const acceptedBy = Date.now();
    const bulk = await post('/api/event-bulk-create-jobs', {
      data: {
        type: 'event-bulk-create-job',
        attributes: {
          'events-bulk-create': {
            data: Array.from({ length: 3 }, (_, i) => ({
              type: 'event-bulk-create',
              attributes: {
                profile: { data: { type: 'profile', attributes: { email: `bulk${i}@example.com` } } },
                events: {
                  data: [
                    {
                      type: 'event',
                      attributes: {
                        properties: { i },
                        unique_id: `bulk-${i}`,
                        time: '2024-05-01T10:00:00Z',
                        metric: { data: { type: 'metric', attributes: { name: 'Queued Bulk' } } },
                      },
                    },
                  ],
                },
              },
            })),
          },
        },
      },
    });
    expect(bulk.status).toBe(202);
    const profiles = await post('/api/profiles', {
      data: [{ type: 'profile', id: 'PQ1', attributes: { email: 'pq1@example.com', updated: '2024-01-01T00:00:00Z' } }],
    });
    expect(profiles.status).toBe(202);
    expect(profiles.body.data.attributes.received).toBe(1);
    const metrics = await post('/api/metrics', {
      data: [{ type: 'metric', id: 'MQ1', attributes: { name: 'Queued metric', updated: '2024-01-01T00:00:00Z' } }],
    });
    expect(metrics.status).toBe(202);
    const job = await post('/api/profile-bulk-import-jobs', {
      data: {
        type: 'profile-bulk-import-job',
        attributes: {
          profiles: {
            data: [{ type: 'profile', attributes: { email: 'imported@example.com', first_name: 'Imported' } }],
          },
        },
      },
    });
    expect(job.status).toBe(202);
    expect(job.body.data).toMatchObject({
      type: 'profile-bulk-import-job',
      attributes: { status: 'queued', total_count: 1, completed_count: 0 },
    });

    // The consumer runs in a later second than the route accepted Create Event in.
    await new Promise((r) => setTimeout(r, 1100));
    startConsuming();
    await drained();
    const stored = await t.db.query<{ name: string; timestamp: Date; email: string | null }>(
      `SELECT m.name, e."timestamp", p.email FROM klaviyo_events e
         JOIN klaviyo_metrics m ON m.id = e.metric_id LEFT JOIN klaviyo_profiles p ON p.id = e.profile_id
        WHERE m.name IN ('Queued Order', 'Queued Bulk') ORDER BY m.name, p.email`,
    );
    expect(stored.map((r) => [r.name, r.email])).toEqual([
      ['Queued Bulk', 'bulk0@example.com'],
      ['Queued Bulk', 'bulk1@example.com'],
      ['Queued Bulk', 'bulk2@example.com'],
      ['Queued Order', 'queued@example.com'],
    ]);
    // An event sent without a time happened when the route accepted it, not when the consumer ran.
    const order = stored.find((r) => r.name === 'Queued Order')!;
    expect(order.timestamp.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(order.timestamp.getTime()).toBeLessThanOrEqual(acceptedBy);
    const others = await t.db.query<{ n: string }>(
      `SELECT (SELECT count(*) FROM klaviyo_profiles WHERE id = 'PQ1' OR email = 'imported@example.com')
            + (SELECT count(*) FROM klaviyo_metrics WHERE id = 'MQ1') AS n`,
    );
    expect(Number(others[0]?.n)).toBe(3);
  });

  it('sends a poison message to the dead-letter queue and the rejects table, and stores its batch-mates', async () => {
    // A row the database refuses though validation passed it (a constraint only this test adds).
    await t.db.query(`ALTER TABLE klaviyo_events ADD CONSTRAINT test_poison CHECK (id <> 'poison000001')`);
    try {
      const good = eventsPage({ events: 40, prefix: 'mate', metrics: 2, profiles: 5 });
      const poisoned = eventsPage({ events: 2, prefix: 'poison', metrics: 1, profiles: 1 });
      expect((await post('/api/events', good)).status).toBe(202);
      expect((await post('/api/events', poisoned)).status).toBe(202);
      // And one that is not an ingest message at all.
      await queues.client.send(new SendMessageCommand({ QueueUrl: queues.queueUrl, MessageBody: '{"hello":"world"}' }));

      startConsuming();
      await eventually(
        'both poison messages in the dead-letter queue',
        () => queueDepth(queues.client, queues.deadLetterQueueUrl),
        (d) => d.visible === 2,
      );
      await drained();
      await stopConsuming();

      const counts = await t.db.query<{ mates: string; poison: string }>(
        `SELECT count(*) FILTER (WHERE id LIKE 'mate%') AS mates, count(*) FILTER (WHERE id LIKE 'poison%') AS poison
           FROM klaviyo_events`,
      );
      expect(counts[0]).toEqual({ mates: '40', poison: '0' });
      const rejects = await t.db.query<{ account_id: string; kind: string; code: string; receive_count: number }>(
        'SELECT account_id, kind, code, receive_count FROM klaviyo_queue_rejects ORDER BY kind',
      );
      expect(rejects.map((r) => [r.kind, r.code])).toEqual([
        ['events-page', '23514'],
        ['unknown', 'invalid_envelope'],
      ]);
      for (const r of rejects) expect(r.receive_count).toBeGreaterThanOrEqual(1);
      expect(rejects[0]?.account_id).toBe('default');
      // The dead-letter queue holds the messages as they were sent, ready to be replayed.
      const dead = await queues.client.send(
        new ReceiveMessageCommand({ QueueUrl: queues.deadLetterQueueUrl, MaxNumberOfMessages: 10 }),
      );
      const bodies = (dead.Messages ?? []).map((m) => m.Body ?? '');
      expect(bodies).toContain('{"hello":"world"}');
      expect(bodies.some((b) => b.includes('poison000001'))).toBe(true);
    } finally {
      await t.db.query('ALTER TABLE klaviyo_events DROP CONSTRAINT test_poison');
    }
  });

  it('stores a redelivered message once', async () => {
    const page = eventsPage({ events: 50, prefix: 'again', metrics: 2, profiles: 5 });
    expect((await post('/api/events', page)).status).toBe(202);
    const received = await queues.client.send(
      new ReceiveMessageCommand({
        QueueUrl: queues.queueUrl,
        MaxNumberOfMessages: 10,
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const event: SQSEvent = {
      Records: (received.Messages ?? []).map((m) => ({
        messageId: m.MessageId ?? '',
        receiptHandle: m.ReceiptHandle ?? '',
        body: m.Body ?? '',
        attributes: {
          ApproximateReceiveCount: '1',
          SentTimestamp: '0',
          SenderId: 'test',
          ApproximateFirstReceiveTimestamp: '0',
        },
        messageAttributes: {},
        md5OfBody: '',
        eventSource: 'aws:sqs',
        eventSourceARN: queues.queueArn,
        awsRegion: 'us-east-1',
      })),
    };
    expect(event.Records.length).toBeGreaterThan(0);
    expect(await consumer(event)).toEqual({ batchItemFailures: [] });
    const once = { contents: await eventContents(t.db), counts: await tableCounts(t.db) };
    // The consumer stored the batch but SQS never heard of it (the messages were not deleted): they
    // come back after the visibility timeout, and the poller hands them over again.
    startConsuming();
    await drained();
    expect({ contents: await eventContents(t.db), counts: await tableCounts(t.db) }).toEqual(once);
    const stored = await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM klaviyo_events WHERE id LIKE 'again%'`);
    expect(stored[0]?.n).toBe('50');
  });

  it('loses and doubles nothing when the consumer dies mid-batch, after its writes and before its commit', async () => {
    const page = eventsPage({ events: 120, prefix: 'crash', metrics: 3, profiles: 12 });
    expect((await post('/api/events', page)).status).toBe(202);
    const before = await tableCounts(t.db);
    const { getDb } = await import('../../lib/db');
    const { consumeIngestBatch } = await import('../../lib/app/ingest');
    const real = getDb();
    let invocations = 0;
    let killedTransactions = 0;
    // During the first invocation every transaction does all its work and is then cut off before its
    // COMMIT (statement canceled: rolled back, and no retry by the driver), and the invocation dies
    // without answering, as a container killed mid-batch does: SQS hears nothing and redelivers.
    const dying = (db: Db): Db => ({
      driver: db.driver,
      query: (text, params) => db.query(text, params),
      transaction: (fn) =>
        db.transaction(async (tx) => {
          await fn(tx);
          killedTransactions += 1;
          throw Object.assign(new Error('canceled before commit'), { code: '57014' });
        }),
    });
    poller = startPoller({
      client: queues.client,
      queueUrl: queues.queueUrl,
      queueArn: queues.queueArn,
      batchSize: 10,
      batchWindowMs: 500,
      concurrency: 1,
      invoke: async (event) => {
        invocations += 1;
        if (invocations > 1) return consumer(event);
        await consumeIngestBatch(
          dying(real),
          event.Records.map((r) => ({ messageId: r.messageId, body: r.body })),
        );
        // Stored nothing, as the rolled-back transactions show below.
        expect((await tableCounts(t.db)).events).toBe(before.events);
        throw new Error('the container died');
      },
      onError: () => undefined,
    });
    await drained();
    await stopConsuming();
    expect(invocations).toBeGreaterThan(1);
    expect(killedTransactions).toBeGreaterThan(0);
    const after = await tableCounts(t.db);
    expect(after.events - before.events).toBe(120);
    expect(after.pending - before.pending).toBe(120);
    const stored = await t.db.query<{ n: string; distinct_ids: string }>(
      `SELECT count(*) AS n, count(DISTINCT id) AS distinct_ids FROM klaviyo_events WHERE id LIKE 'crash%'`,
    );
    expect(stored[0]).toEqual({ n: '120', distinct_ids: '120' });
    const rejects = await t.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM klaviyo_queue_rejects WHERE body LIKE '%crash%'`,
    );
    expect(rejects[0]?.n).toBe('0');
  });

  it('still writes pages queued as their own bodies (version 1, queued before a deployment), as the route stores them', async () => {
    const page = eventsPage({ events: 80, prefix: 'vone', metrics: 2, profiles: 8 });
    const bodies = splitForQueue('events-page', page, MAX_BYTES);
    const context = { accountId: 'default', acceptedAt: new Date(), requestId: 'v1' };
    for (const body of queuedMessages('events-page', bodies, context))
      await queues.client.send(new SendMessageCommand({ QueueUrl: queues.queueUrl, MessageBody: body }));
    startConsuming();
    await drained();
    await stopConsuming();
    const reference: TestDatabase = await freshDatabase({ setEnv: false });
    try {
      await ingestEventsPage(reference.db, 'default', page);
      const vone = async (db: Db) =>
        db.query(
          `SELECT count(*) AS n, md5(string_agg(concat_ws('|', id, "timestamp", metric_id, profile_id, value, properties::text,
                  raw_data::text), E'\\n' ORDER BY id)) AS sum
             FROM klaviyo_events WHERE account_id = 'default' AND id LIKE 'vone%'`,
        );
      expect(await vone(t.db)).toEqual(await vone(reference.db));
      expect((await vone(t.db))[0]).toMatchObject({ n: '80' });
    } finally {
      await reference.drop();
    }
  });

  it('rejects event lines that are not lines of this page, and lines the database refuses, and stores their batch-mates', async () => {
    const { messages } = ingestMessages('events-page', eventsPage({ events: 6, prefix: 'linemate', metrics: 1 }), {
      accountId: 'default',
      acceptedAt: new Date(),
      requestId: 'lines',
      maxMessageBytes: MAX_BYTES,
    });
    const good = messages[0] as string;
    const [headText, ...afterHead] = good.split('\n') as [string, ...string[]];
    const head = JSON.parse(headText) as { body: { profiles: number; events: number } };
    const profileLines = afterHead.slice(0, head.body.profiles);
    const firstLine = afterHead[head.body.profiles] as string;
    expect(profileLines.length).toBeGreaterThan(0);
    /**
     * The message with its profile lines (each changed by `changeProfile`) and its first event line
     * alone, its id changed and then `change` applied to its fields.
     */
    const twisted = (
      id: string,
      change: (fields: string[]) => void,
      lines = 1,
      changeProfile: (fields: string[]) => void = () => undefined,
    ) => {
      const fields = firstLine.split('\t');
      fields[0] = id;
      change(fields);
      const profiles = profileLines.map((line) => {
        const profileFields = line.split('\t');
        changeProfile(profileFields);
        return profileFields.join('\t');
      });
      return [JSON.stringify({ ...head, body: { ...head.body, events: lines } }), ...profiles, fields.join('\t')].join(
        '\n',
      );
    };
    const record = (messageId: string, body: string) => ({ messageId, body });
    const answer = await consumer({
      Records: [
        record('good', good),
        // Checked before any database work:
        record(
          'missing-field',
          twisted('lineshort', (f) => f.splice(3, 1)),
        ),
        record(
          'foreign-escape',
          // COPY would read \x41 as "A": what this process derives from the line would differ.
          twisted('line\\x41', () => undefined),
        ),
        record(
          'unnamed-metric',
          twisted('linemetric', (f) => (f[2] = 'Mnowhere')),
        ),
        record(
          'cut-short',
          twisted('linecut', () => undefined, 2),
        ),
        record(
          'bad-span',
          twisted('linespan', (f) => (f[8] = '@0:99999')),
        ),
        record('no-lines', headText),
        record(
          'profile-fields',
          twisted(
            'lineprofile',
            () => undefined,
            1,
            (f) => f.pop(),
          ),
        ),
        // Found when the batch is written: a profile line says its resource is newer than the
        // stored copy (which the good message stored), so the write reads the resource, whose own
        // updated is not the line's.
        record(
          'profile-updated',
          twisted(
            'lineupdated',
            () => undefined,
            1,
            (f) => (f[1] = '2999-01-01T00:00:00.000Z'),
          ),
        ),
        // Found when the batch is written, and then the message alone: a time the database cannot
        // read, JSON the consumer cannot read.
        record(
          'bad-time',
          twisted('linetime', (f) => (f[1] = 'the day after tomorrow')),
        ),
        record(
          'bad-json',
          twisted('linejson', (f) => {
            f[8] = '{"not": json}';
          }),
        ),
        record(
          'nested-json',
          twisted('linenested', (f) => {
            f[8] = '{"$flow": "F1", "deep": {"not": json}}';
          }),
        ),
      ],
    } as unknown as SQSEvent);
    const refused = [
      'bad-json',
      'bad-span',
      'bad-time',
      'cut-short',
      'foreign-escape',
      'missing-field',
      'nested-json',
      'no-lines',
      'profile-fields',
      'profile-updated',
      'unnamed-metric',
    ];
    expect(answer.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(refused);
    const stored = await t.db.query<{ id: string }>(
      `SELECT id FROM klaviyo_events WHERE account_id = 'default' AND id LIKE 'line%' ORDER BY id`,
    );
    expect(stored.map((r) => r.id)).toEqual(
      Array.from({ length: 6 }, (_, i) => `linemate${String(i).padStart(6, '0')}`),
    );
    const rejects = await t.db.query<{ message_id: string; code: string }>(
      `SELECT message_id, code FROM klaviyo_queue_rejects WHERE account_id = 'default' AND message_id = ANY($1::text[]) ORDER BY message_id`,
      [`{${refused.join(',')}}`],
    );
    expect(rejects).toEqual([
      // The consumer reads the top level of a line's properties for its pending row as the COPY takes
      // the line (and without COPY, the Data API, parses them whole to send them): it finds JSON
      // unreadable there before the database. Inside a nested value, with COPY, jsonb refuses it.
      { message_id: 'bad-json', code: 'invalid_rows' },
      { message_id: 'bad-span', code: 'invalid_rows' },
      { message_id: 'bad-time', code: '22007' },
      { message_id: 'cut-short', code: 'invalid_rows' },
      { message_id: 'foreign-escape', code: 'invalid_rows' },
      { message_id: 'missing-field', code: 'invalid_rows' },
      { message_id: 'nested-json', code: t.db.driver === 'postgres' ? '22P02' : 'invalid_rows' },
      { message_id: 'no-lines', code: 'invalid_envelope' },
      { message_id: 'profile-fields', code: 'invalid_rows' },
      { message_id: 'profile-updated', code: 'invalid_rows' },
      { message_id: 'unnamed-metric', code: 'invalid_rows' },
    ]);
  });

  it('still reads pages queued as rows (version 2): rejects rows that are not rows, and rows the database refuses, and stores their batch-mates', async () => {
    const page = eventsPage({ events: 6, prefix: 'rowmate', metrics: 1 });
    const messages = queuedRowsMessages(
      splitPlanForQueue(planEventsPage(page), MAX_BYTES, () => '/data'),
      { accountId: 'default', acceptedAt: new Date(), requestId: 'rows' },
    );
    const envelope = JSON.parse(messages[0] as string) as { v: number; body: { events: unknown[][] } };
    expect(envelope.v).toBe(2);
    const twisted = (change: (row: unknown[]) => void) => {
      const copy = JSON.parse(JSON.stringify(envelope)) as typeof envelope;
      copy.body.events = copy.body.events.slice(0, 1);
      copy.body.events[0]![0] = 'rowbad';
      change(copy.body.events[0]!);
      return JSON.stringify(copy);
    };
    const record = (messageId: string, body: string) => ({ messageId, body });
    const answer = await consumer({
      Records: [
        record('good', messages[0] as string),
        // An id that is not text: the envelope check refuses it before any database work.
        record(
          'not-a-row',
          twisted((row) => (row[0] = 12)),
        ),
        // A time the database cannot read: refused by the COPY (22007), found when written alone.
        record(
          'bad-time',
          twisted((row) => (row[1] = 'the day after tomorrow')),
        ),
      ],
    } as unknown as SQSEvent);
    expect(answer.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(['bad-time', 'not-a-row']);
    const stored = await t.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM klaviyo_events WHERE account_id = 'default' AND id LIKE 'rowmate%'`,
    );
    expect(stored[0]?.n).toBe('6');
    const rejects = await t.db.query<{ message_id: string; code: string }>(
      `SELECT message_id, code FROM klaviyo_queue_rejects WHERE message_id IN ('not-a-row', 'bad-time') ORDER BY message_id`,
    );
    expect(rejects).toEqual([
      { message_id: 'bad-time', code: '22007' },
      { message_id: 'not-a-row', code: 'invalid_envelope' },
    ]);
  });

  it('never throws to the runtime, whatever the event', async () => {
    expect(await consumer(null)).toEqual({ batchItemFailures: [] });
    expect(await consumer({ Records: undefined })).toEqual({ batchItemFailures: [] });
    const garbage = await consumer({
      Records: [{ messageId: 'm-1', body: 'not json' }],
    } as unknown as SQSEvent);
    expect(garbage).toEqual({ batchItemFailures: [{ itemIdentifier: 'm-1' }] });
  });
});
