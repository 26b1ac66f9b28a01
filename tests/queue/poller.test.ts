import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import {
  LAMBDA_BATCH_PAYLOAD_BYTES,
  queueDepth,
  startLocalQueues,
  startPoller,
  type LocalQueues,
} from '../../scripts/localQueue';

/**
 * The local poller plays Lambda's SQS event source, which ends a batch at its batchSize or when the
 * batch's payload reaches 6 MB. With the deployment's batchSize of 100 and messages of 256 KiB, the
 * payload limit decides: a poller that ignored it would hand the consumer events Lambda never sends.
 */
describe('the local event source', () => {
  let queues: LocalQueues;
  beforeAll(async () => {
    queues = await startLocalQueues({
      port: 0,
      queueName: 'poller-test',
      visibilityTimeoutSeconds: 60,
      maxReceiveCount: 2,
      maxMessageBytes: 262_144,
    });
  });
  afterAll(() => queues.stop());

  it('ends a batch before 6 MB of payload, keeps what it received past it for the next batch, and loses none', async () => {
    const bodyOf = (i: number) => `${String(i).padStart(6, '0')}${'x'.repeat(250_000)}`;
    const total = 40;
    // A SendMessageBatch call carries at most 1 MiB: three such messages a call.
    for (let start = 0; start < total; start += 3) {
      const ids = Array.from({ length: Math.min(3, total - start) }, (_, k) => start + k);
      await queues.client.send(
        new SendMessageBatchCommand({
          QueueUrl: queues.queueUrl,
          Entries: ids.map((i) => ({ Id: `m${i}`, MessageBody: bodyOf(i) })),
        }),
      );
    }
    const seen: string[] = [];
    const sizes: number[] = [];
    const counts: number[] = [];
    const poller = startPoller({
      client: queues.client,
      queueUrl: queues.queueUrl,
      queueArn: queues.queueArn,
      batchSize: 100,
      batchWindowMs: 500,
      concurrency: 1,
      invoke: async (event: SQSEvent) => {
        sizes.push(Buffer.byteLength(JSON.stringify(event)));
        counts.push(event.Records.length);
        seen.push(...event.Records.map((r) => r.body.slice(0, 6)));
        return { batchItemFailures: [] };
      },
    });
    const deadline = Date.now() + 30_000;
    while (seen.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await poller.stop();

    expect([...seen].sort()).toEqual(Array.from({ length: total }, (_, i) => String(i).padStart(6, '0')));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(LAMBDA_BATCH_PAYLOAD_BYTES);
    // 40 messages of about 250 KB: two batches of full payloads at least, none above the limit.
    expect(counts.length).toBeGreaterThanOrEqual(2);
    expect(Math.max(...counts)).toBeGreaterThan(10);
    expect(await queueDepth(queues.client, queues.queueUrl)).toEqual({ visible: 0, inFlight: 0 });
  });
});
