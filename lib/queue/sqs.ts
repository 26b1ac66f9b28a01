import { SendMessageBatchCommand, SQSClient, type SendMessageBatchRequestEntry } from '@aws-sdk/client-sqs';
import { QueueSendError, type MessageSender } from './port';
import { config } from '../config';

/**
 * The ingest queue's sender: SendMessageBatch with at most 10 entries and `maxBytes` bytes per call
 * (SQS's limits on a batch), the calls of one request in parallel. Entries SQS reports as failed
 * are sent once more; any still failing make the whole send a QueueSendError, which says how many
 * made it (docs/queue.md, "All or nothing").
 */

const MAX_ENTRIES = 10;

interface SqsSettings {
  readonly queueUrl: string;
  readonly endpoint?: string;
  readonly region?: string;
  readonly maxBytes: number;
}

function batchesOf(bodies: readonly string[], maxBytes: number): SendMessageBatchRequestEntry[][] {
  const batches: SendMessageBatchRequestEntry[][] = [];
  let current: SendMessageBatchRequestEntry[] = [];
  let bytes = 0;
  bodies.forEach((body, i) => {
    const size = Buffer.byteLength(body, 'utf8');
    if (current.length > 0 && (current.length === MAX_ENTRIES || bytes + size > maxBytes)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push({ Id: `m${i}`, MessageBody: body });
    bytes += size;
  });
  if (current.length > 0) batches.push(current);
  return batches;
}

export function createSqsSender(settings: SqsSettings, client?: SQSClient): MessageSender {
  const sqs =
    client ??
    new SQSClient({
      // A local endpoint needs some region to sign with; on AWS the runtime's AWS_REGION applies.
      ...(settings.region || settings.endpoint ? { region: settings.region ?? 'us-east-1' } : {}),
      ...(settings.endpoint
        ? // A local endpoint (npm start, the tests) takes any credentials; AWS is never reached.
          { endpoint: settings.endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }
        : {}),
    });
  const sendBatch = async (entries: SendMessageBatchRequestEntry[]): Promise<{ failed: string[] }> => {
    const out = await sqs.send(new SendMessageBatchCommand({ QueueUrl: settings.queueUrl, Entries: entries }));
    return { failed: (out.Failed ?? []).map((f) => f.Id ?? '') };
  };
  return {
    async send(bodies) {
      const results = await Promise.allSettled(
        batchesOf(bodies, settings.maxBytes).map(async (entries) => {
          const first = await sendBatch(entries);
          if (first.failed.length === 0) return { sent: entries.length, failed: 0, codes: [] as string[] };
          // SQS's own retry advice for entries it refused in a batch that it otherwise accepted.
          const again = entries.filter((e) => first.failed.includes(e.Id ?? ''));
          const second = await sendBatch(again);
          return {
            sent: entries.length - second.failed.length,
            failed: second.failed.length,
            codes: second.failed.length > 0 ? ['entry_failed'] : [],
          };
        }),
      );
      let sent = 0;
      let failed = 0;
      const codes: string[] = [];
      let cause: unknown;
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') {
          sent += r.value.sent;
          failed += r.value.failed;
          codes.push(...r.value.codes);
        } else {
          const size = batchesOf(bodies, settings.maxBytes)[i]?.length ?? 0;
          failed += size;
          cause ??= r.reason;
          const name = (r.reason as { name?: unknown } | null)?.name;
          codes.push(typeof name === 'string' ? name : 'send_failed');
        }
      });
      if (failed > 0) throw new QueueSendError(sent, failed, codes, cause);
    },
  };
}

let sender: MessageSender | undefined;

/** The container's one sender, made on first use from the configuration (queue mode only). */
export function getIngestQueue(): MessageSender {
  if (!sender) {
    const queue = config().ingest.queue;
    if (!queue) throw new Error('getIngestQueue() called in synchronous ingest mode');
    sender = createSqsSender(queue);
  }
  return sender;
}
