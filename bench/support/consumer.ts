import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type postgres from 'postgres';
import { planEventsPage } from '../../lib/app/ingest';
import { queuedMessages, splitForQueue } from '../../lib/app/ingest/queueMessages';
import type { Db } from '../../lib/db';
import { EVENT_COLUMNS, eventCopyRow, insertEvents, type NewEvent } from '../../lib/repositories/events';

/**
 * The queue consumer's path for bench/ingest.ts (docs/queue.md): the bench's pages split into queue
 * messages exactly as the ingest route splits them (splitForQueue, at the configured message size),
 * grouped into SQS batches of `batchMessages` messages, and handed to the ingestConsumer handler
 * in-process, `consumers` batches in flight at once, as that many event source pollers would.
 */

type ConsumerHandler = (event: SQSEvent) => Promise<SQSBatchResponse>;

export interface PreparedBatches {
  readonly file: string;
  readonly batches: number;
  readonly messages: number;
  readonly events: number;
  /** Single-threaded JSON.parse, validation and mapping of every message, as the consumer does it. */
  readonly planMs: number;
}

/** Writes one SQS event per line, so that the timed runs only read them. */
export async function prepareBatches(
  pagesFile: string,
  file: string,
  maxBytes: number,
  batchMessages: number,
): Promise<PreparedBatches> {
  const out = createWriteStream(file);
  const lines = createInterface({
    input: createReadStream(pagesFile, { highWaterMark: 1 << 20 }),
    crlfDelay: Infinity,
  });
  let pending: string[] = [];
  let batches = 0;
  let messages = 0;
  let events = 0;
  let planMs = 0;
  let id = 0;
  const acceptedAt = new Date();
  const flush = async () => {
    if (pending.length === 0) return;
    const event: SQSEvent = {
      Records: pending.map((body) => ({
        messageId: `m${id++}`,
        receiptHandle: '',
        body,
        attributes: {
          ApproximateReceiveCount: '1',
          SentTimestamp: '0',
          SenderId: 'bench',
          ApproximateFirstReceiveTimestamp: '0',
        },
        messageAttributes: {},
        md5OfBody: '',
        eventSource: 'aws:sqs',
        eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:bench',
        awsRegion: 'us-east-1',
      })),
    };
    if (!out.write(`${JSON.stringify(event)}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
    batches += 1;
    pending = [];
  };
  for await (const line of lines) {
    const page: unknown = JSON.parse(line);
    const bodies = splitForQueue('events-page', page, maxBytes);
    for (const text of queuedMessages('events-page', bodies, {
      accountId: 'default',
      acceptedAt,
      requestId: 'bench',
    })) {
      const t0 = performance.now();
      const plan = planEventsPage((JSON.parse(text) as { body: unknown }).body, { now: acceptedAt });
      planMs += performance.now() - t0;
      events += plan.received;
      messages += 1;
      pending.push(text);
      if (pending.length === batchMessages) await flush();
    }
  }
  await flush();
  await new Promise<void>((r) => out.end(() => r()));
  return { file, batches, messages, events, planMs };
}

export interface ConsumerRun {
  readonly consumers: number;
  readonly events: number;
  readonly ms: number;
  readonly rate: number;
  readonly slowestBatchMs: number;
}

/** Every prepared batch through the handler, `consumers` at a time; all must be stored. */
export async function runConsumers(
  handler: ConsumerHandler,
  prepared: PreparedBatches,
  consumers: number,
): Promise<ConsumerRun> {
  const lines = createInterface({
    input: createReadStream(prepared.file, { highWaterMark: 1 << 20 }),
    crlfDelay: Infinity,
  })[Symbol.asyncIterator]();
  let reading: Promise<unknown> = Promise.resolve();
  const next = (): Promise<string | undefined> => {
    const line = reading.then(async () => {
      const r = await lines.next();
      return r.done ? undefined : r.value;
    });
    reading = line;
    return line;
  };
  let slowest = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: consumers }, async () => {
      for (let line = await next(); line !== undefined; line = await next()) {
        const t0 = performance.now();
        const answer = await handler(JSON.parse(line) as SQSEvent);
        slowest = Math.max(slowest, performance.now() - t0);
        if (answer.batchItemFailures.length > 0)
          throw new Error(`the consumer reported ${answer.batchItemFailures.length} failures`);
      }
    }),
  );
  const ms = performance.now() - started;
  return { consumers, events: prepared.events, ms, rate: prepared.events / (ms / 1000), slowestBatchMs: slowest };
}

/**
 * What the aggregator's bookkeeping adds to a batch's COPY: on `sample` batches written again into
 * the emptied events table, alternately the COPY of the batch's events alone and the events
 * statements the consumer runs (the same COPY, then pending rows and dirty marks), one transaction
 * per batch. Metrics and profiles are stored already (the consumer runs wrote them).
 */
export async function batchBookkeeping(
  db: Db,
  sql: postgres.Sql,
  prepared: PreparedBatches,
  sample: number,
): Promise<{ copyMs: number; eventsMs: number; batches: number }> {
  const result = { copyMs: 0, eventsMs: 0, batches: 0 };
  for (const timed of [false, true]) {
    await sql`TRUNCATE klaviyo_events, klaviyo_aggregate_pending, klaviyo_aggregate_dirty`;
    const lines = createInterface({
      input: createReadStream(prepared.file, { highWaterMark: 1 << 20 }),
      crlfDelay: Infinity,
    });
    let index = 0;
    for await (const line of lines) {
      if (index >= sample) break;
      const event = JSON.parse(line) as SQSEvent;
      const events: NewEvent[] = event.Records.flatMap((r) => {
        const m = JSON.parse(r.body) as { body: unknown; accepted_at: string };
        return planEventsPage(m.body, { now: new Date(m.accepted_at) }).events;
      });
      events.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.timestamp < b.timestamp ? -1 : 1));
      const t0 = performance.now();
      if (index % 2 === 0) {
        await db.transaction(async (tx) => {
          if (!tx.copyRows) throw new Error('the bench needs the postgres.js driver (COPY)');
          await tx.copyRows(
            'klaviyo_events',
            EVENT_COLUMNS,
            events.map((e) => eventCopyRow('default', e)),
          );
        });
        if (timed) result.copyMs += performance.now() - t0;
      } else {
        await db.transaction((tx) => insertEvents(tx, 'default', events));
        if (timed) result.eventsMs += performance.now() - t0;
      }
      if (timed) result.batches += 1;
      index += 1;
    }
    lines.close();
  }
  return result;
}
