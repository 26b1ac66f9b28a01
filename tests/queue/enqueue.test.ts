import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { enqueueIngest } from '../../lib/app/ingest';
import { HttpError } from '../../lib/klaviyo/errors';
import { QueueSendError, type MessageSender } from '../../lib/queue/port';
import { createSqsSender } from '../../lib/queue/sqs';
import { queueDepth, startLocalQueues, type LocalQueues } from '../../scripts/localQueue';
import { eventsPage } from '../ingest/helpers';

/**
 * A request becomes several messages, and SQS cannot take back those already sent when a later one
 * fails: the route answers 503 saying how much was queued, and the client sends the whole request
 * again (ingest stores each event once however often it arrives: tests/queue/queue.test.ts).
 */
const context = {
  accountId: 'default',
  requestId: 'r-1',
  maxMessageBytes: 16_384,
  now: new Date('2024-06-01T00:00:00Z'),
};
const page = () => eventsPage({ events: 500, prefix: 'e', metrics: 3, profiles: 20 });

describe('enqueueing a request', () => {
  let queues: LocalQueues;
  beforeAll(async () => {
    process.env.INGEST_MAX_RESOURCES = '1000';
    process.env.DATABASE_URL ??= 'postgres://unused@127.0.0.1:1/unused';
    queues = await startLocalQueues({
      port: 0,
      queueName: 'enqueue-test',
      visibilityTimeoutSeconds: 30,
      maxReceiveCount: 3,
      maxMessageBytes: 16_384,
    });
  });
  afterAll(() => queues.stop());

  it('sends every part through SendMessageBatch within SQS limits, and says what it accepted', async () => {
    const sender = createSqsSender({ queueUrl: queues.queueUrl, endpoint: queues.endpoint, maxBytes: 16_384 });
    const receipt = await enqueueIngest(sender, 'events-page', page(), context);
    expect(receipt).toMatchObject({ requestId: 'r-1', received: 500 });
    expect(receipt.messages).toBeGreaterThan(10);
    expect(await queueDepth(queues.client, queues.queueUrl)).toEqual({ visible: receipt.messages, inFlight: 0 });
    const one = await queues.client.send(
      new ReceiveMessageCommand({ QueueUrl: queues.queueUrl, MaxNumberOfMessages: 1 }),
    );
    // A page travels as its profiles' and events' COPY lines after a line of JSON
    // (lib/app/ingest/queueCopyRows.ts).
    const [head, ...lines] = (one.Messages?.[0]?.Body ?? '{}').split('\n');
    expect(lines.length).toBeGreaterThan(0);
    const { body } = JSON.parse(head ?? '{}') as { body: { profiles: number; events: number } };
    expect(body.profiles).toBeGreaterThan(0);
    expect(body.events).toBeGreaterThan(0);
    expect(body.profiles + body.events).toBe(lines.length);
    expect(JSON.parse(head ?? '{}')).toMatchObject({
      v: 4,
      kind: 'events-page',
      account_id: 'default',
      accepted_at: '2024-06-01T00:00:00.000Z',
      parts: receipt.messages,
    });
  });

  it('answers 503 with Retry-After, saying how many parts were queued, when some were not', async () => {
    const partly: MessageSender = {
      send: async (bodies) => {
        throw new QueueSendError(bodies.length - 2, 2, ['entry_failed']);
      },
    };
    const err = await enqueueIngest(partly, 'events-page', page(), context).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect(err).toMatchObject({ status: 503, headers: { 'Retry-After': '5' } });
    expect((err as HttpError).items[0]).toMatchObject({ code: 'queue_unavailable' });
    expect((err as HttpError).items[0]?.detail).toMatch(
      /accepted \d+ of the \d+ parts of this request\. Send the whole request again/,
    );
  });

  it('a queue that refuses everything: a QueueSendError counting every part as failed', async () => {
    const sender = createSqsSender({
      queueUrl: `${queues.endpoint}/000000000000/missing`,
      endpoint: queues.endpoint,
      maxBytes: 16_384,
    });
    const err = await sender.send(['{"a":1}', '{"b":2}']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueueSendError);
    expect(err).toMatchObject({ sent: 0, failed: 2 });
    const http = await enqueueIngest(sender, 'events-page', page(), context).catch((e: unknown) => e);
    expect((http as HttpError).items[0]?.detail).toMatch(/nothing was queued/);
  });
});
