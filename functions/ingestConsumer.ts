import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { consumeIngestBatch, type ReceivedMessage } from '../lib/app/ingest';
import { getDb } from '../lib/db';
import { errorCode } from '../lib/db/errors';
import { log, type LogFields } from '../lib/log';

/**
 * The ingest queue's consumer (docs/queue.md): SQS hands it up to a batch of messages, each a
 * validated part of an ingest request; it writes them together (lib/app/ingest/consume.ts) and
 * answers with the messages it could not store, as ReportBatchItemFailures expects, so that only
 * those come back. It never throws to the runtime: a failure it did not expect reports the whole
 * batch as failed, which SQS then delivers again (writes are idempotent) or dead-letters.
 */
let coldStart = true;

export async function handler(event: Partial<SQSEvent> | null, context?: Partial<Context>): Promise<SQSBatchResponse> {
  const started = performance.now();
  const records = Array.isArray(event?.Records) ? event.Records : [];
  const messages: ReceivedMessage[] = records
    .filter((r) => typeof r?.messageId === 'string')
    .map((r) => ({ messageId: r.messageId, body: typeof r.body === 'string' ? r.body : '' }));
  const fields: LogFields = {
    function: 'ingest-consumer',
    cold_start: coldStart,
    request_id: context?.awsRequestId,
    messages: messages.length,
  };
  coldStart = false;
  try {
    const remaining =
      typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : undefined;
    const outcome = await consumeIngestBatch(getDb(), messages, {
      remainingMs: remaining,
      onError: (err, stage) =>
        log.warn('ingest consumer: a write failed', {
          function: 'ingest-consumer',
          stage,
          error: err,
          db_code: errorCode(err),
        }),
    });
    Object.assign(fields, {
      path: outcome.path,
      stored: outcome.stored,
      rejected: outcome.rejected,
      retry: outcome.retry,
      failed: outcome.failed.length,
      ...outcome.counts,
      duration_ms: Math.round(performance.now() - started),
    });
    log.info('ingest batch', fields);
    return { batchItemFailures: outcome.failed.map((itemIdentifier) => ({ itemIdentifier })) };
  } catch (err) {
    Object.assign(fields, {
      failed: messages.length,
      error: err,
      db_code: errorCode(err),
      duration_ms: Math.round(performance.now() - started),
    });
    log.error('ingest batch failed', fields);
    return { batchItemFailures: messages.map((m) => ({ itemIdentifier: m.messageId })) };
  }
}
