import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type postgres from 'postgres';
import { consumeIngestBatch, planEventsPage } from '../../lib/app/ingest';
import { ingestMessages } from '../../lib/app/ingest/enqueue';
import { planFromLines, splitPlanAsEventLines } from '../../lib/app/ingest/queueCopyRows';
import {
  AnyQueuedMessageSchema,
  framedMessage,
  queuedEventLinesMessages,
  queuedMessages,
  queuedRowsMessages,
  splitForQueue,
} from '../../lib/app/ingest/queueMessages';
import { planFromRows, splitPlanForQueue } from '../../lib/app/ingest/queueRows';
import type { Db } from '../../lib/db';
import { copyTextOf } from '../../lib/db/copyFormat';
import { EVENT_COLUMNS, eventCopyRow, insertEvents, plainEvent, type NewEvent } from '../../lib/repositories/events';
import { LAMBDA_BATCH_PAYLOAD_BYTES, sqsEventBytes } from '../../scripts/localQueue';

/**
 * The queue consumer's path for bench/ingest.ts (docs/queue.md): the bench's pages split into queue
 * messages exactly as the ingest route splits them (splitForQueue, at the configured message size),
 * grouped into SQS batches of `batchMessages` messages, and handed to the ingestConsumer handler
 * in-process, `consumers` batches in flight at once, as that many event source pollers would.
 */

type ConsumerHandler = (event: SQSEvent) => Promise<SQSBatchResponse>;

export interface PreparedBatches {
  readonly file: string;
  /** Where each batch's line (one SQS event) starts in the file, and its bytes without the newline. */
  readonly lines: readonly { readonly offset: number; readonly bytes: number }[];
  readonly batches: number;
  readonly messages: number;
  readonly events: number;
  /** The route's work for every page: validation, mapping, splitting and the messages' text. */
  readonly routeMs: number;
  /** The consumer's work on every message before the database, single-threaded, by step. */
  readonly parseMs: number;
  readonly checkMs: number;
  readonly rowsMs: number;
  /** Making the events' COPY text from those rows, and its bytes, as the COPY then sends them. */
  readonly copyTextMs: number;
  /** With versions 2 and 3: validating and mapping the page's parts again, as version 1 makes the consumer do. */
  readonly revalidateMs: number;
  /** The (metric, UTC hour) pairs a batch's events fall in, on average: the dirty marks it writes. */
  readonly marksPerBatch: number;
}

/** Writes one SQS event per line, so that the timed runs only read them. */
export async function prepareBatches(
  pagesFile: string,
  file: string,
  maxBytes: number,
  batchMessages: number,
  /**
   * 4: pages queued as their profiles' and events' lines, as the route does; 3: as their events'
   * COPY lines with the profiles in the head's JSON; 2: as rows of JSON (the consumer parses and
   * re-serialises them); 1: as their own bodies (the consumer validates them again).
   */
  version: QueueVersion,
): Promise<PreparedBatches> {
  const out = createWriteStream(file);
  const lines = createInterface({
    input: createReadStream(pagesFile, { highWaterMark: 1 << 20 }),
    crlfDelay: Infinity,
  });
  let pending: SQSRecord[] = [];
  const batchLines: { offset: number; bytes: number }[] = [];
  let fileBytes = 0;
  let messages = 0;
  let events = 0;
  let routeMs = 0;
  let parseMs = 0;
  let checkMs = 0;
  let rowsMs = 0;
  let copyTextMs = 0;
  let revalidateMs = 0;
  let marks = 0;
  let batchMarks = new Set<string>();
  let id = 0;
  const acceptedAt = new Date();
  const context = { accountId: 'default', acceptedAt, requestId: 'bench', maxMessageBytes: maxBytes };
  const recordOf = (body: string): SQSRecord => ({
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
  });
  let pendingBytes = 0;
  const flush = async () => {
    if (pending.length === 0) return;
    const event: SQSEvent = { Records: pending };
    const line = Buffer.from(`${JSON.stringify(event)}\n`, 'utf8');
    batchLines.push({ offset: fileBytes, bytes: line.length - 1 });
    fileBytes += line.length;
    if (!out.write(line)) await new Promise<void>((r) => out.once('drain', () => r()));
    pending = [];
    pendingBytes = 0;
    marks += batchMarks.size;
    batchMarks = new Set();
  };
  for await (const line of lines) {
    const page: unknown = JSON.parse(line);
    let t0 = performance.now();
    const queued =
      version === 4
        ? ingestMessages('events-page', page, context).messages
        : version === 3
          ? queuedEventLinesMessages(
              splitPlanAsEventLines(planEventsPage(page, { now: acceptedAt }), maxBytes, pointerOf),
              context,
            )
          : version === 2
            ? queuedRowsMessages(
                splitPlanForQueue(planEventsPage(page, { now: acceptedAt }), maxBytes, pointerOf),
                context,
              )
            : queuedMessages('events-page', splitForQueue('events-page', page, maxBytes), context);
    routeMs += performance.now() - t0;
    for (const text of queued) {
      // The consumer's steps before the database (lib/app/ingest/consume.ts), one by one.
      t0 = performance.now();
      const framed = framedMessage(text);
      const json: unknown = JSON.parse(framed.json);
      const t1 = performance.now();
      const envelope = AnyQueuedMessageSchema.parse(json);
      const t2 = performance.now();
      const plan = planOf(envelope, framed.lines);
      const t3 = performance.now();
      const copyText = copyTextOf(
        plan.events.map((e) =>
          e.copyLine === undefined ? eventCopyRow('default', e) : { line: `default\t${e.copyLine}` },
        ),
        EVENT_COLUMNS.length,
      );
      Buffer.from(copyText, 'utf8');
      copyTextMs += performance.now() - t3;
      parseMs += t1 - t0;
      checkMs += t2 - t1;
      rowsMs += t3 - t2;
      // A batch ends at batchMessages, or before its event passes Lambda's payload limit, as Lambda's does.
      const record = recordOf(text);
      const bytes = Buffer.byteLength(JSON.stringify(record));
      if (pending.length > 0 && sqsEventBytes(pending.length + 1, pendingBytes + bytes) > LAMBDA_BATCH_PAYLOAD_BYTES)
        await flush();
      events += plan.received;
      for (const e of plan.events) batchMarks.add(`${e.metricId} ${Math.floor(Date.parse(e.timestamp) / 3_600_000)}`);
      messages += 1;
      pending.push(record);
      pendingBytes += bytes;
      if (pending.length === batchMessages) await flush();
    }
    // What version 1 makes the consumer do on top of version 2: the page's parts validated and mapped again.
    if (version !== 1)
      for (const part of splitForQueue('events-page', page, maxBytes)) {
        t0 = performance.now();
        planEventsPage(part, { now: acceptedAt });
        revalidateMs += performance.now() - t0;
      }
  }
  await flush();
  await new Promise<void>((r) => out.end(() => r()));
  return {
    file,
    lines: batchLines,
    batches: batchLines.length,
    messages,
    events,
    routeMs,
    parseMs,
    checkMs,
    rowsMs,
    copyTextMs,
    revalidateMs,
    marksPerBatch: batchLines.length > 0 ? marks / batchLines.length : 0,
  };
}

export type QueueVersion = 1 | 2 | 3 | 4;

// The bench's pages are generated: any pointer will do (none is too large for a message).
const pointerOf = () => '/data';

/** What the consumer makes of a checked envelope (lib/app/ingest/consume.ts). */
function planOf(envelope: ReturnType<typeof AnyQueuedMessageSchema.parse>, lines: string | undefined) {
  if (envelope.v === 3 || envelope.v === 4) return planFromLines(envelope.body, lines ?? '');
  if (envelope.v === 2) return planFromRows(envelope.body);
  return planEventsPage(envelope.body, { now: new Date(envelope.accepted_at) });
}

/** A consumer batch's time by stage (ms, summed over the staged batches). */
export interface BatchStages {
  batches: number;
  events: number;
  readonly ms: Map<string, number>;
}

export const BATCH_STAGES = [
  'SQS event: JSON.parse',
  'messages read before the transaction: JSON.parse, envelope and row check',
  'metrics statement',
  'profiles statements',
  'events COPY, the other messages read as it takes their rows',
  'pending rows and dirty marks',
  'client work between statements',
  'commit',
] as const;
type BatchStage = (typeof BATCH_STAGES)[number];

class Laps {
  private at = performance.now();
  constructor(private readonly into: Map<string, number>) {}
  lap(stage: BatchStage): void {
    const now = performance.now();
    this.into.set(stage, (this.into.get(stage) ?? 0) + now - this.at);
    this.at = now;
  }
}

function stageOfStatement(text: string): BatchStage {
  if (/klaviyo_aggregate_(pending|dirty)|klaviyo_rollup_dimension/.test(text)) return 'pending rows and dirty marks';
  if (text.includes('klaviyo_profiles')) return 'profiles statements';
  if (text.includes('klaviyo_metrics')) return 'metrics statement';
  if (text.includes('klaviyo_events')) return 'events COPY, the other messages read as it takes their rows';
  return 'client work between statements';
}

/**
 * The Db the consumer is given for a staged batch: every statement and COPY timed and put to the
 * stage it belongs to; what the client does between them to 'client work between statements'; the
 * time before the first transaction to reading messages (the rest are read during the events COPY);
 * the end of the outer transaction to commit.
 */
function timedDb(db: Db, laps: Laps, outer: boolean): Db {
  const timed: Db = {
    driver: db.driver,
    query: async (text, params) => {
      laps.lap('client work between statements');
      const rows = await db.query(text, params);
      laps.lap(stageOfStatement(text));
      return rows as never;
    },
    transaction: async (fn) => {
      if (outer) laps.lap('messages read before the transaction: JSON.parse, envelope and row check');
      const result = await db.transaction(async (tx) => {
        const out = await fn(timedDb(tx, laps, false));
        laps.lap('client work between statements');
        return out;
      });
      if (outer) laps.lap('commit');
      return result;
    },
  };
  const copy = db.copyRows?.bind(db);
  if (copy)
    timed.copyRows = async (table, columns, rows) => {
      laps.lap('client work between statements');
      await copy(table, columns, rows);
      laps.lap(
        table === 'klaviyo_events'
          ? 'events COPY, the other messages read as it takes their rows'
          : table === 'klaviyo_profiles'
            ? 'profiles statements'
            : table === 'klaviyo_metrics'
              ? 'metrics statement'
              : 'pending rows and dirty marks',
      );
    };
  return timed;
}

export interface ConsumerRun {
  readonly consumers: number;
  readonly events: number;
  readonly ms: number;
  readonly rate: number;
  readonly slowestBatchMs: number;
  /** CPU time of this (single-threaded) process over the run: every consumer's client work. */
  readonly clientCpuMs: number;
  /** The whole machine's CPU in use over the run, in cores (the database's and this process's); null without /proc/stat. */
  readonly machineBusyCores: number | null;
}

/**
 * Every prepared batch through the handler, `consumers` at a time; all must be stored. With `staged`,
 * every `staged.every`-th batch goes instead through the same use case the handler calls, given a
 * Db that times each statement (timedDb): where a batch's time goes, in the run's own conditions.
 */
export async function runConsumers(
  handler: ConsumerHandler,
  prepared: PreparedBatches,
  consumers: number,
  staged?: { readonly every: number; readonly db: Db; readonly into: BatchStages },
): Promise<ConsumerRun> {
  // A batch is read from the file when a consumer asks for it, as Lambda's runtime fetches the next
  // event once the handler has returned: its bytes, then one decode to a string and JSON.parse. A
  // line reader ran ahead over the whole file instead, on the consumers' thread, joining 6 MB lines
  // from 1 MiB pieces: that garbage was a sixth of this process's allocations, work no Lambda
  // container does, and its collections copied the consumers' live data too.
  const file = await open(prepared.file, 'r');
  let taken = 0;
  const next = async (): Promise<{ line: string; index: number } | undefined> => {
    const index = taken++;
    const at = prepared.lines[index];
    if (at === undefined) return undefined;
    const bytes = Buffer.allocUnsafe(at.bytes);
    for (let filled = 0; filled < at.bytes;) {
      const { bytesRead } = await file.read(bytes, filled, at.bytes - filled, at.offset + filled);
      if (bytesRead === 0) throw new Error(`${prepared.file} ends inside batch ${index}`);
      filled += bytesRead;
    }
    return { line: bytes.toString('utf8'), index };
  };
  let slowest = 0;
  const machineBefore = machineCpuTicks();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: consumers }, async () => {
        for (let item = await next(); item !== undefined; item = await next()) {
          const t0 = performance.now();
          if (staged && (item.index + 1) % staged.every === 0) {
            const laps = new Laps(staged.into.ms);
            const event = JSON.parse(item.line) as SQSEvent;
            laps.lap('SQS event: JSON.parse');
            const outcome = await consumeIngestBatch(
              timedDb(staged.db, laps, true),
              event.Records.map((r) => ({ messageId: r.messageId, body: r.body })),
            );
            if (outcome.failed.length > 0) throw new Error(`a staged batch failed ${outcome.failed.length} messages`);
            staged.into.batches += 1;
            staged.into.events += outcome.counts.received;
          } else {
            const answer = await handler(JSON.parse(item.line) as SQSEvent);
            if (answer.batchItemFailures.length > 0)
              throw new Error(`the consumer reported ${answer.batchItemFailures.length} failures`);
          }
          slowest = Math.max(slowest, performance.now() - t0);
        }
      }),
    );
  } finally {
    await file.close();
  }
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const machineAfter = machineCpuTicks();
  return {
    consumers,
    events: prepared.events,
    ms,
    rate: prepared.events / (ms / 1000),
    slowestBatchMs: slowest,
    clientCpuMs: (cpu.user + cpu.system) / 1000,
    machineBusyCores:
      machineBefore && machineAfter && machineAfter.total > machineBefore.total
        ? (cpus().length * (machineAfter.busy - machineBefore.busy)) / (machineAfter.total - machineBefore.total)
        : null,
  };
}

/**
 * The machine's CPU time since boot, all cores, in clock ticks (Linux's /proc/stat): busy is all but
 * idle and I/O wait. Undefined where there is no /proc/stat.
 */
function machineCpuTicks(): { busy: number; total: number } | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return undefined;
  }
  const fields = (text.split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields[0] === undefined || fields.length < 8 || fields.some((n) => !Number.isFinite(n))) return undefined;
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * What the aggregator's bookkeeping adds to a batch's COPY: on `sample` batches written again into
 * the emptied events table, in turn the COPY of the batch's events alone, the events statements the
 * consumer runs (the same COPY, then the dirty marks and the pending rows by COPY), and the same
 * with the pending rows written by the statement that reads the copied events back (the path before
 * pending rows went by COPY, still taken for times JavaScript cannot place in their hour: the
 * batch's times are spelled with a seventh digit of a second, zero, to take it). One transaction per
 * batch. Metrics and profiles are stored already (the consumer runs wrote them).
 */
export async function batchBookkeeping(
  db: Db,
  sql: postgres.Sql,
  prepared: PreparedBatches,
  sample: number,
): Promise<{ copyMs: number; eventsMs: number; readBackMs: number; batches: number }> {
  const result = { copyMs: 0, eventsMs: 0, readBackMs: 0, batches: 0 };
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
        const framed = framedMessage(r.body);
        return planOf(AnyQueuedMessageSchema.parse(JSON.parse(framed.json)), framed.lines).events;
      });
      events.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.timestamp < b.timestamp ? -1 : 1));
      const variant = index % 3;
      const t0 = performance.now();
      if (variant === 0) {
        await db.transaction(async (tx) => {
          if (!tx.copyRows) throw new Error('the bench needs the postgres.js driver (COPY)');
          await tx.copyRows(
            'klaviyo_events',
            EVENT_COLUMNS,
            events.map((e) =>
              e.copyLine === undefined ? eventCopyRow('default', e) : { line: `default\t${e.copyLine}` },
            ),
          );
        });
        if (timed) result.copyMs += performance.now() - t0;
      } else if (variant === 1) {
        await db.transaction((tx) => insertEvents(tx, 'default', events));
        if (timed) result.eventsMs += performance.now() - t0;
      } else {
        // Plain rows (a queued event's COPY line would still spell the time the other way).
        const spelled = events.map((e) => ({ ...plainEvent(e), timestamp: seventhDigit(e.timestamp) }));
        const t1 = performance.now();
        await db.transaction((tx) => insertEvents(tx, 'default', spelled));
        if (timed) result.readBackMs += performance.now() - t1;
      }
      if (timed) result.batches += 1;
      index += 1;
    }
    lines.close();
  }
  return result;
}

/** The same instant with seven digits of a second (PostgreSQL reads it as the same microsecond). */
function seventhDigit(timestamp: string): string {
  const at = new Date(timestamp).toISOString();
  return `${at.slice(0, 23)}0000Z`;
}
