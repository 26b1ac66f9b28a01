import { config } from '../../config';
import { deadlineFrom, withDeadline } from '../../db/budget';
import type { Db } from '../../db/port';
import { isConnectionError, isTransientDbError, errorCode } from '../../db/errors';
import { HttpError } from '../../klaviyo/errors';
import type { ProfileWrite } from '../../klaviyo/schemas';
import { DirtyMarks, insertEventStream, writeDirtyMarks, type NewEvent } from '../../repositories/events';
import { isLaterInstant } from '../../repositories/instants';
import { upsertMetrics, type MetricUpsert } from '../../repositories/metrics';
import { upsertProfiles, type ProfileUpsert } from '../../repositories/profiles';
import { recordQueueRejects, type QueueReject } from '../../repositories/queueRejects';
import { planEventsPage, type EventsPagePlan } from './eventsPage';
import { planBulkCreate, planCreateEvent, writeKlaviyoEvents, type PlannedProfileEntry } from './klaviyoWrites';
import { planBulkImportProfiles, writeBulkImportProfiles } from './profileWrites';
import { planMetricsDocument, planProfilesDocument } from './resources';
import { planFromLines } from './queueCopyRows';
import { AnyQueuedMessageSchema, framedMessage, type QueuedKind } from './queueMessages';
import { InvalidRowsError, planFromRows } from './queueRows';
import type { IngestCounts } from './result';

/**
 * The ingest consumer's use case (docs/queue.md): a batch of queue messages, each a validated part of
 * an ingest request, written in one transaction with one statement (one COPY where the driver has it)
 * per table, so that a transaction's fixed costs (its commit, the statements' planning, the
 * aggregator's bookkeeping statements) are paid once per batch instead of once per page.
 *
 * A message that cannot be stored must not hold back the others:
 * - each message is parsed and checked on its own before any of it is written (a page queued as COPY
 *   lines, version 3, line by line, and one queued as rows, version 2, by the shapes of its rows,
 *   since the route validated and mapped it; a version 1 body by the whole validation and mapping
 *   again), the first account's as its COPY asks for their events (writeMessages); one that fails
 *   is set aside;
 * - when the batch's transaction fails for a reason that is not the connection, it is rolled back
 *   (nothing of it stays) and every message is written again in a transaction of its own, which
 *   finds the one the database refuses;
 * - a message that fails for a reason that will pass (a lost connection, a deadlock, a timeout) is
 *   reported failed and comes back after the visibility timeout, without being called a reject;
 * - one that fails for a reason of its own is recorded in klaviyo_queue_rejects and reported
 *   failed too: after maxReceiveCount receives SQS moves it to the dead-letter queue.
 *
 * Writing a message twice stores it once (events are keyed by id and time and inserted ON CONFLICT
 * DO NOTHING, profiles and metrics keep the newest copy), so a redelivery, and a batch retried after
 * a crash before its commit or after its commit but before SQS heard of it, loses and doubles nothing.
 */

export interface ReceivedMessage {
  readonly messageId: string;
  readonly body: string;
}

export interface ConsumeOutcome {
  /** Message ids to report as batch item failures (SQS delivers them again, or dead-letters them). */
  readonly failed: readonly string[];
  readonly messages: number;
  /** Messages written (including those that were all duplicates). */
  readonly stored: number;
  /** Messages recorded as rejects this time. */
  readonly rejected: number;
  /** Messages that failed for a passing reason, to be retried as they are. */
  readonly retry: number;
  /** 'batch' when the whole batch went in one transaction, 'one-by-one' after a refused batch. */
  readonly path: 'batch' | 'one-by-one' | 'none';
  readonly counts: IngestCounts;
}

type Planned =
  | { readonly kind: 'events-page'; readonly plan: EventsPagePlan }
  | { readonly kind: 'create-event' | 'bulk-create'; readonly entries: PlannedProfileEntry[] }
  | { readonly kind: 'profiles'; readonly profiles: ProfileUpsert[] }
  | { readonly kind: 'metrics'; readonly metrics: MetricUpsert[] }
  | { readonly kind: 'profile-bulk-import'; readonly imports: ProfileWrite[] };

interface Valid {
  readonly message: ReceivedMessage;
  readonly accountId: string;
  readonly planned: Planned;
}

const MAX_REASON = 2000;

function plan(kind: QueuedKind, body: unknown, acceptedAt: Date): Planned {
  // "Now" is when the route accepted the request: an event without a time is stamped with it, and
  // the one-year window is the one the route checked.
  const options = { now: acceptedAt };
  switch (kind) {
    case 'events-page':
      return { kind, plan: planEventsPage(body, options) };
    case 'create-event':
      return { kind, entries: planCreateEvent(body, options) };
    case 'bulk-create':
      return { kind, entries: planBulkCreate(body, options) };
    case 'profiles':
      return { kind, profiles: planProfilesDocument(body, options) };
    case 'metrics':
      return { kind, metrics: planMetricsDocument(body, options) };
    case 'profile-bulk-import':
      return { kind, imports: planBulkImportProfiles(body, options) };
  }
}

/** What a message holds, or why it is a reject before any database work. */
function parseMessage(message: ReceivedMessage): Valid | QueueReject {
  const framed = framedMessage(message.body);
  let json: unknown;
  try {
    json = JSON.parse(framed.json);
  } catch {
    return rejectOf(message, 'unknown', 'unknown', 'invalid_json', 'The message body is not JSON.');
  }
  const envelope = AnyQueuedMessageSchema.safeParse(json);
  if (!envelope.success) {
    const account = accountIdOf(json);
    const detail = envelope.error.issues.map((i) => `/${i.path.join('/')}: ${i.message}`).join('; ');
    return rejectOf(message, account, kindOf(json), 'invalid_envelope', `Not an ingest message: ${detail}`);
  }
  const m = envelope.data;
  const hasLines = m.v === 3 || m.v === 4;
  if (hasLines !== (framed.lines !== undefined)) {
    const detail = hasLines ? 'no lines after the envelope' : 'text after the JSON envelope';
    return rejectOf(message, m.account_id, m.kind, 'invalid_envelope', `Not an ingest message: ${detail}.`);
  }
  if (m.v !== 1) {
    try {
      const plan = m.v === 2 ? planFromRows(m.body) : planFromLines(m.body, framed.lines ?? '');
      return { message, accountId: m.account_id, planned: { kind: m.kind, plan } };
    } catch (err) {
      if (!(err instanceof InvalidRowsError)) throw err;
      return rejectOf(message, m.account_id, m.kind, 'invalid_rows', err.message);
    }
  }
  try {
    return { message, accountId: m.account_id, planned: plan(m.kind, m.body, new Date(m.accepted_at)) };
  } catch (err) {
    if (!(err instanceof HttpError)) throw err;
    const reason = err.items.map((i) => `${i.pointer ?? ''}: ${i.detail}`).join('; ');
    return rejectOf(message, m.account_id, m.kind, err.items[0]?.code ?? 'invalid', reason);
  }
}

function accountIdOf(json: unknown): string {
  const id = json !== null && typeof json === 'object' ? (json as { account_id?: unknown }).account_id : undefined;
  return typeof id === 'string' && id.length > 0 && id.length <= 255 ? id : 'unknown';
}

function kindOf(json: unknown): string {
  const kind = json !== null && typeof json === 'object' ? (json as { kind?: unknown }).kind : undefined;
  return typeof kind === 'string' ? kind.slice(0, 64) : 'unknown';
}

function rejectOf(
  message: ReceivedMessage,
  accountId: string,
  kind: string,
  code: string,
  reason: string,
): QueueReject {
  return {
    accountId,
    messageId: message.messageId,
    kind,
    code,
    reason: reason.length > MAX_REASON ? `${reason.slice(0, MAX_REASON)}...` : reason,
    body: message.body,
  };
}

const isReject = (x: Valid | QueueReject): x is QueueReject => 'code' in x;

/**
 * Per id, one copy: a full resource over a stub, and of two full ones the later `updated` (the first
 * on a tie). Kept as the messages are read, during the events' COPY, where this process has time the
 * server does not; the writes then sort what is left.
 */
class NewestById<T extends { id: string; isStub: boolean; updated?: string | null }> {
  private readonly byId = new Map<string, T>();

  add(items: readonly T[]): void {
    for (const item of items) {
      const seen = this.byId.get(item.id);
      if (
        !seen ||
        (seen.isStub && !item.isStub) ||
        (!seen.isStub && !item.isStub && isLaterInstant(item.updated ?? null, seen.updated ?? null))
      )
        this.byId.set(item.id, item);
    }
  }

  get size(): number {
    return this.byId.size;
  }

  /** In no particular order: the writes sort them, the profiles' while the server reads. */
  all(): T[] {
    return [...this.byId.values()];
  }
}

const ZERO: IngestCounts = { received: 0, inserted: 0, duplicates: 0, metrics_upserted: 0, profiles_upserted: 0 };

function added(a: IngestCounts, b: IngestCounts): IngestCounts {
  return {
    received: a.received + b.received,
    inserted: a.inserted + b.inserted,
    duplicates: a.duplicates + b.duplicates,
    metrics_upserted: a.metrics_upserted + b.metrics_upserted,
    profiles_upserted: a.profiles_upserted + b.profiles_upserted,
  };
}

/** What a batch's messages hold besides the pages' events, gathered as the messages are read. */
interface Gathered {
  readonly metrics: NewestById<MetricUpsert>;
  readonly profiles: NewestById<ProfileUpsert>;
  readonly entries: PlannedProfileEntry[];
  readonly imports: ProfileWrite[];
  received: number;
}

/** A message's part of the batch: its events are returned, the rest is gathered. */
function gather(planned: Planned, into: Gathered): readonly NewEvent[] {
  switch (planned.kind) {
    case 'events-page':
      into.metrics.add(planned.plan.metrics);
      into.profiles.add(planned.plan.profiles);
      into.received += planned.plan.received;
      return planned.plan.events;
    case 'create-event':
    case 'bulk-create':
      into.entries.push(...planned.entries);
      return [];
    case 'profiles':
      into.profiles.add(planned.profiles);
      into.received += planned.profiles.length;
      return [];
    case 'metrics':
      into.metrics.add(planned.metrics);
      into.received += planned.metrics.length;
      return [];
    case 'profile-bulk-import':
      into.imports.push(...planned.imports);
      into.received += planned.imports.length;
      return [];
  }
}

/** The pages' events, each message taken from `batch` (and so read) when its first event is asked for. */
function pageEvents(batch: Iterator<Valid>, into: Gathered): Iterator<NewEvent> {
  let events: readonly NewEvent[] = [];
  let at = 0;
  return {
    next(): IteratorResult<NewEvent> {
      for (;;) {
        if (at < events.length) return { done: false, value: events[at++] as NewEvent };
        const message = batch.next();
        if (message.done) return { done: true, value: undefined };
        events = gather(message.value.planned, into);
        at = 0;
      }
    },
  };
}

/**
 * Writes the messages in the caller's transaction, each table once: the pages' events first (one
 * COPY), then metrics, profiles, and Klaviyo's write shapes and profile imports (which resolve
 * profiles by identifier, so they come after the pages' profiles exist). The events lead because
 * the messages are read as their COPY asks for rows: this process parses and checks a message while
 * the server stores the events of the ones before it, instead of the server waiting for the whole
 * batch to be read (docs/queue.md). Nothing refers to a metric or profile by key before it is
 * written: the events' foreign keys are gone (docs/bookkeeping.md), and the transaction writes both.
 * The dirty marks of all its events come last, in one statement just before the commit: they stay
 * locked from there to the commit, and batches in flight that share a (metric, hour), as batches of
 * one account's recent events all do, wait on each other for that long only.
 */
async function writeMessages(tx: Db, accountId: string, batch: Iterator<Valid>): Promise<IngestCounts> {
  const gathered: Gathered = {
    metrics: new NewestById(),
    profiles: new NewestById(),
    entries: [],
    imports: [],
    received: 0,
  };
  const marks = new DirtyMarks();
  // The events are stored in the order the messages bring them: a page's, Klaviyo's, by time.
  const e = await insertEventStream(tx, accountId, pageEvents(batch, gathered), marks);
  const { metrics, profiles, entries, imports } = gathered;
  const m = metrics.size > 0 ? await upsertMetrics(tx, accountId, metrics.all()) : undefined;
  // A batch whose only writes after its profiles are its marks copies its new profiles one batch of
  // the account at a time (upsertProfiles' oneInserterPerAccount): batches in flight bring the same
  // new profiles, and the later COPY of one is refused. Klaviyo's write shapes and imports lock
  // metrics, events and profiles a batch waiting for that lock may hold, so theirs copy as before.
  const oneInserterPerAccount = entries.length === 0 && imports.length === 0;
  const p =
    profiles.size > 0 ? await upsertProfiles(tx, accountId, profiles.all(), { oneInserterPerAccount }) : undefined;
  let counts: IngestCounts = {
    received: gathered.received,
    inserted: e.inserted,
    duplicates: e.duplicates,
    metrics_upserted: m?.written ?? 0,
    profiles_upserted: p?.written ?? 0,
  };
  if (entries.length > 0) counts = added(counts, await writeKlaviyoEvents(tx, accountId, entries, marks));
  if (imports.length > 0) {
    await writeBulkImportProfiles(tx, accountId, imports);
    counts = added(counts, { ...ZERO, profiles_upserted: imports.length });
  }
  await writeDirtyMarks(tx, accountId, marks);
  return counts;
}

function dbReject(v: Valid, err: unknown): QueueReject {
  // A queued line's JSON read for the first time in the write (without COPY: queueCopyRows.ts).
  if (err instanceof InvalidRowsError)
    return rejectOf(v.message, v.accountId, v.planned.kind, 'invalid_rows', err.message);
  const code = errorCode(err);
  const reason =
    code !== undefined && /^[0-9A-Z]{5}$/.test(code)
      ? `The database refused the message (SQLSTATE ${code}).`
      : 'The message could not be written (see the consumer log).';
  return rejectOf(v.message, v.accountId, v.planned.kind, code ?? 'internal_error', reason);
}

/**
 * A batch's messages, each parsed and checked the first time it is asked for: the first account's
 * messages as its transaction's COPY takes their events, the rest after it.
 */
class BatchReader {
  private readonly read: (Valid | QueueReject)[] = [];

  constructor(
    private readonly messages: readonly ReceivedMessage[],
    private readonly onError: (err: unknown, context: string) => void,
  ) {}

  private at(i: number): Valid | QueueReject {
    let parsed = this.read[i];
    if (parsed === undefined) {
      const message = this.messages[i] as ReceivedMessage;
      try {
        parsed = parseMessage(message);
      } catch (err) {
        this.onError(err, 'parse');
        parsed = rejectOf(
          message,
          'unknown',
          'unknown',
          'internal_error',
          'The message could not be read (see the consumer log).',
        );
      }
      this.read[i] = parsed;
    }
    return parsed;
  }

  /** The account of the first message that can be stored, reading up to it. */
  firstAccount(): string | undefined {
    for (let i = 0; i < this.messages.length; i += 1) {
      const parsed = this.at(i);
      if (!isReject(parsed)) return parsed.accountId;
    }
    return undefined;
  }

  /** The account's messages in batch order, each read when the iteration reaches it. */
  *ofAccount(accountId: string): Generator<Valid> {
    for (let i = 0; i < this.messages.length; i += 1) {
      const parsed = this.at(i);
      if (!isReject(parsed) && parsed.accountId === accountId) yield parsed;
    }
  }

  /** Every message read: the rejects, and the others by account in order of first appearance. */
  all(): { readonly rejects: QueueReject[]; readonly accounts: Map<string, Valid[]> } {
    const rejects: QueueReject[] = [];
    const accounts = new Map<string, Valid[]>();
    for (let i = 0; i < this.messages.length; i += 1) {
      const parsed = this.at(i);
      if (isReject(parsed)) rejects.push(parsed);
      else {
        const group = accounts.get(parsed.accountId);
        if (group) group.push(parsed);
        else accounts.set(parsed.accountId, [parsed]);
      }
    }
    return { rejects, accounts };
  }
}

/** Stores one batch of messages; never throws for a message's sake (a failure is reported by id). */
export async function consumeIngestMessages(
  db: Db,
  messages: readonly ReceivedMessage[],
  onError: (err: unknown, context: string) => void = () => undefined,
): Promise<ConsumeOutcome> {
  const reader = new BatchReader(messages, onError);
  let counts = ZERO;
  let path: ConsumeOutcome['path'] = 'none';
  // One transaction per account: each writes as its account, and the accounts' rows never meet. The
  // first account's messages are read as its transaction writes them (writeMessages says why).
  const streamed = reader.firstAccount();
  let streamedError: unknown;
  if (streamed !== undefined) {
    try {
      counts = await db.transaction((tx) => writeMessages(tx, streamed, reader.ofAccount(streamed)));
      path = 'batch';
    } catch (err) {
      streamedError = err;
    }
  }
  const { rejects, accounts } = reader.all();
  const failed = new Set<string>(rejects.map((r) => r.messageId));
  let stored = streamed !== undefined && streamedError === undefined ? (accounts.get(streamed)?.length ?? 0) : 0;
  let retry = 0;
  for (const [accountId, group] of accounts) {
    let error: unknown;
    if (accountId === streamed) {
      if (streamedError === undefined) continue;
      error = streamedError;
    } else {
      try {
        counts = added(counts, await db.transaction((tx) => writeMessages(tx, accountId, group.values())));
        stored += group.length;
        if (path === 'none') path = 'batch';
        continue;
      } catch (err) {
        error = err;
      }
    }
    onError(error, 'batch');
    if (isConnectionError(error) || group.length === 1) {
      // The connection is gone (each message on its own would wait for it again), or the one
      // message already had its own transaction.
      for (const v of group) {
        failed.add(v.message.messageId);
        if (isTransientDbError(error)) retry += 1;
        else rejects.push(dbReject(v, error));
      }
      continue;
    }
    path = 'one-by-one';
    for (const v of group) {
      try {
        counts = added(counts, await db.transaction((tx) => writeMessages(tx, accountId, [v].values())));
        stored += 1;
      } catch (err) {
        onError(err, 'message');
        failed.add(v.message.messageId);
        if (isTransientDbError(err)) retry += 1;
        else rejects.push(dbReject(v, err));
      }
    }
  }

  if (rejects.length > 0) {
    try {
      await recordQueueRejects(db, rejects);
    } catch (err) {
      // The messages are reported failed all the same: SQS keeps them, then dead-letters them.
      onError(err, 'rejects');
    }
  }
  return {
    failed: messages.map((m) => m.messageId).filter((id) => failed.has(id)),
    messages: messages.length,
    stored,
    rejected: rejects.length,
    retry,
    path,
    counts,
  };
}

/**
 * The consumer function's entry: the batch within the invocation's time (its remaining time less the
 * response margin), so that a slow database ends in reported failures, not in a timed-out
 * invocation that SQS would count against every message of the batch.
 */
export function consumeIngestBatch(
  db: Db,
  messages: readonly ReceivedMessage[],
  options: { remainingMs?: number; onError?: (err: unknown, stage: string) => void } = {},
): Promise<ConsumeOutcome> {
  const deadline = deadlineFrom(options.remainingMs, config().responseMarginMs);
  return withDeadline(deadline, () => consumeIngestMessages(db, messages, options.onError));
}
