import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
  type Message,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { createSqsServer } from 'local-aws-sqs';

/**
 * The ingest queue on this machine (docs/queue.md, "Local run"): local-aws-sqs, an SQS-compatible
 * server in this process (pure JavaScript: no Docker, no Java), with the queue and its dead-letter
 * queue as serverless.yml declares them, and a poller that plays Lambda's SQS event source mapping:
 * it receives batches (up to `batchSize` messages, waiting up to the batch window to fill one), hands
 * each to the consumer as an SQS event, deletes the messages the consumer did not report in
 * batchItemFailures, and leaves the others to come back after the visibility timeout, until SQS
 * moves them to the dead-letter queue after maxReceiveCount receives.
 *
 * Why not serverless-offline-sqs: it ignores ReportBatchItemFailures (its issue #221 is open, the
 * pull request that would add it unmerged), so a partial failure would delete or redeliver the
 * whole batch, and it still depends on the AWS SDK v2, out of support. npm start invokes the
 * consumer through serverless-offline's Lambda endpoint instead, so serverless-offline still runs
 * the function's bundle as it runs every other function.
 */

export interface LocalQueueSettings {
  /** 0 picks a free port. */
  readonly port: number;
  readonly host?: string;
  readonly queueName: string;
  readonly visibilityTimeoutSeconds: number;
  readonly maxReceiveCount: number;
  readonly maxMessageBytes: number;
}

export interface LocalQueues {
  readonly endpoint: string;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly deadLetterQueueUrl: string;
  readonly client: SQSClient;
  stop(): Promise<void>;
}

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';

export function localSqsClient(endpoint: string): SQSClient {
  return new SQSClient({ region: REGION, endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
}

export async function startLocalQueues(settings: LocalQueueSettings): Promise<LocalQueues> {
  const dlqName = `${settings.queueName}-dlq`;
  const server: Server = await createSqsServer({
    port: settings.port,
    hostname: settings.host ?? '127.0.0.1',
    region: REGION,
    accountId: ACCOUNT,
    emulateQueueCreationLifecycle: false,
    queues: [
      { QueueName: dlqName, Attributes: { MessageRetentionPeriod: '1209600' } },
      {
        QueueName: settings.queueName,
        Attributes: {
          VisibilityTimeout: settings.visibilityTimeoutSeconds,
          MaximumMessageSize: settings.maxMessageBytes,
          RedrivePolicy: JSON.stringify({
            maxReceiveCount: settings.maxReceiveCount,
            deadLetterTargetArn: `arn:aws:sqs:${REGION}:${ACCOUNT}:${dlqName}`,
          }),
        },
      },
    ],
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://${settings.host ?? '127.0.0.1'}:${port}`;
  const client = localSqsClient(endpoint);
  return {
    endpoint,
    queueUrl: `${endpoint}/${ACCOUNT}/${settings.queueName}`,
    queueArn: `arn:aws:sqs:${REGION}:${ACCOUNT}:${settings.queueName}`,
    deadLetterQueueUrl: `${endpoint}/${ACCOUNT}/${dlqName}`,
    client,
    async stop() {
      client.destroy();
      server.closeAllConnections?.();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

/** Messages waiting (visible) and in flight on a queue. */
export async function queueDepth(client: SQSClient, queueUrl: string): Promise<{ visible: number; inFlight: number }> {
  const out = await client.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return {
    visible: Number(out.Attributes?.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
  };
}

/**
 * Lambda's SQS event source ends a batch when its payload reaches 6 MB, whatever its batchSize ("The
 * payload size reaches 6 MB. You cannot modify this limit": Lambda's event source mapping docs). With
 * messages of 256 KiB that is about 23 messages a batch.
 */
export const LAMBDA_BATCH_PAYLOAD_BYTES = 6 * 1024 * 1024;

/** The bytes of an SQS event `{"Records":[...]}` of `records` records whose JSON takes `recordBytes` in all. */
export function sqsEventBytes(records: number, recordBytes: number): number {
  return '{"Records":[]}'.length + recordBytes + Math.max(0, records - 1);
}

export interface PollerSettings {
  readonly client: SQSClient;
  readonly queueUrl: string;
  readonly queueArn: string;
  /**
   * Messages per batch (the event source's batchSize; SQS receives at most 10 per call). A batch also
   * ends before its event would pass LAMBDA_BATCH_PAYLOAD_BYTES, as Lambda's does.
   */
  readonly batchSize: number;
  /** The event source's maximumBatchingWindow, in milliseconds. */
  readonly batchWindowMs: number;
  /** The event source's maximumConcurrency: batches in flight at once. */
  readonly concurrency: number;
  /** Runs the consumer; a rejection or an answer without batchItemFailures' shape fails the whole batch. */
  readonly invoke: (event: SQSEvent) => Promise<unknown>;
  readonly onError?: (err: unknown) => void;
}

export interface Poller {
  /** Batches handed to the consumer so far. */
  readonly batches: () => number;
  stop(): Promise<void>;
}

function recordOf(m: Message, queueArn: string): SQSRecord {
  const a = m.Attributes ?? {};
  return {
    messageId: m.MessageId ?? '',
    receiptHandle: m.ReceiptHandle ?? '',
    body: m.Body ?? '',
    attributes: {
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
      SentTimestamp: a.SentTimestamp ?? String(Date.now()),
      SenderId: a.SenderId ?? ACCOUNT,
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: m.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: REGION,
  };
}

/** The ids the consumer reported failed; every id when its answer is not a partial batch response. */
function failedIds(answer: unknown, all: readonly string[]): Set<string> {
  const failures = (answer as Partial<SQSBatchResponse> | null)?.batchItemFailures;
  if (!Array.isArray(failures)) return new Set(all);
  return new Set(failures.map((f) => String((f as { itemIdentifier?: unknown }).itemIdentifier)));
}

export function startPoller(settings: PollerSettings): Poller {
  let running = true;
  let batches = 0;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  // Messages received past a batch's payload limit wait here for the next batch, as Lambda's poller
  // keeps them: sending them back to the queue would count a receive against maxReceiveCount.
  const held: Message[] = [];
  const recordBytes = (m: Message) => Buffer.byteLength(JSON.stringify(recordOf(m, settings.queueArn)));

  const receiveBatch = async (): Promise<Message[]> => {
    const messages: Message[] = [];
    let bytes = 0;
    let full = false;
    const take = (m: Message): boolean => {
      const size = recordBytes(m);
      if (messages.length > 0 && sqsEventBytes(messages.length + 1, bytes + size) > LAMBDA_BATCH_PAYLOAD_BYTES)
        return false;
      messages.push(m);
      bytes += size;
      return true;
    };
    while (held.length > 0 && messages.length < settings.batchSize && !full) {
      if (take(held[0] as Message)) held.shift();
      else full = true;
    }
    let until = messages.length > 0 ? Date.now() + settings.batchWindowMs : Infinity;
    while (running && !full && messages.length < settings.batchSize) {
      const out = await settings.client.send(
        new ReceiveMessageCommand({
          QueueUrl: settings.queueUrl,
          MaxNumberOfMessages: Math.min(10, settings.batchSize - messages.length),
          // Long polling while the batch is empty; then the window, from the first message, fills it.
          WaitTimeSeconds: messages.length === 0 ? 1 : 0,
          MessageSystemAttributeNames: ['All'],
        }),
      );
      const got = out.Messages ?? [];
      if (messages.length === 0 && got.length > 0) until = Date.now() + settings.batchWindowMs;
      for (const m of got) {
        if (full || !take(m)) {
          full = true;
          held.push(m);
        }
      }
      if (messages.length === 0 || Date.now() >= until) break;
      if (got.length === 0) await sleep(Math.min(100, until - Date.now()));
    }
    return messages;
  };

  const worker = async () => {
    while (running) {
      try {
        const messages = await receiveBatch();
        if (messages.length === 0) continue;
        batches += 1;
        const ids = messages.map((m) => m.MessageId ?? '');
        let failed: Set<string>;
        try {
          failed = failedIds(
            await settings.invoke({ Records: messages.map((m) => recordOf(m, settings.queueArn)) }),
            ids,
          );
        } catch (err) {
          settings.onError?.(err);
          failed = new Set(ids);
        }
        const done = messages.filter((m) => !failed.has(m.MessageId ?? ''));
        // DeleteMessageBatch takes at most 10 entries a call.
        for (let start = 0; start < done.length; start += 10) {
          await settings.client.send(
            new DeleteMessageBatchCommand({
              QueueUrl: settings.queueUrl,
              Entries: done
                .slice(start, start + 10)
                .map((m, i) => ({ Id: `d${start + i}`, ReceiptHandle: m.ReceiptHandle ?? '' })),
            }),
          );
        }
      } catch (err) {
        if (!running) return;
        settings.onError?.(err);
        await sleep(500);
      }
    }
  };
  const workers = Array.from({ length: settings.concurrency }, () => worker());
  return {
    batches: () => batches,
    async stop() {
      running = false;
      await Promise.all(workers);
    },
  };
}
