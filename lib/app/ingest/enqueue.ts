import { HttpError } from '../../klaviyo/errors';
import { QueueSendError, type MessageSender } from '../../queue/port';
import { planEventsPage } from './eventsPage';
import { planBulkCreate, planCreateEvent } from './klaviyoWrites';
import { planBulkImportProfiles } from './profileWrites';
import { planMetricsDocument, planProfilesDocument } from './resources';
import { splitPlanAsLines } from './queueCopyRows';
import {
  queuedLinesMessages,
  queuedMessages,
  queuedRowsMessages,
  splitForQueue,
  type QueuedKind,
} from './queueMessages';
import { splitPlanForQueue } from './queueRows';

/**
 * Queue mode's half of an ingest request (docs/queue.md): validate it exactly as the synchronous
 * path does (a bad request is refused here with every pointer, and nothing is enqueued), split it into
 * messages that fit the queue, send them, and say what was accepted.
 */

export interface QueueReceipt {
  readonly requestId: string;
  readonly acceptedAt: Date;
  /** Events (or resources) in the request, as the synchronous answer counts them. */
  readonly received: number;
  /** Queue messages the request became. */
  readonly messages: number;
}

export interface EnqueueContext {
  readonly accountId: string;
  readonly requestId: string;
  readonly maxMessageBytes: number;
  /** The present; tests pin it. */
  readonly now?: Date;
}

function receivedOf(kind: Exclude<QueuedKind, 'events-page'>, body: unknown, now: Date): number {
  const options = { now };
  switch (kind) {
    case 'create-event':
      return planCreateEvent(body, options).reduce((n, e) => n + e.events.length, 0);
    case 'bulk-create':
      return planBulkCreate(body, options).reduce((n, e) => n + e.events.length, 0);
    case 'profiles':
      return planProfilesDocument(body, options).length;
    case 'metrics':
      return planMetricsDocument(body, options).length;
    case 'profile-bulk-import':
      return planBulkImportProfiles(body, options).length;
  }
}

/**
 * The control characters an SQS message may not hold (all but tab, newline and carriage return; NUL
 * never passes validation), which JSON escapes and COPY text does not.
 */
// eslint-disable-next-line no-control-regex
const SQS_UNSAFE = /[\u0001-\u0008\u000B\u000C\u000E-\u001F]/;

/**
 * A request as the text of its queue messages, validated first (HttpError 400 with every pointer).
 * A page of events travels as lines of COPY text, its profiles' and its events' (version 4: the
 * consumer checks the lines and streams the events' into their COPY, without validating or mapping
 * the page again, or parsing its events, and parses only the profiles it stores); the other kinds, a
 * few per request, as their own bodies (version 1).
 */
export function ingestMessages(
  kind: QueuedKind,
  body: unknown,
  context: { accountId: string; acceptedAt: Date; requestId: string; maxMessageBytes: number },
): { received: number; messages: string[] } {
  if (kind === 'events-page') {
    const plan = planEventsPage(body, { now: context.acceptedAt });
    const data = (body as { data: unknown[] }).data;
    const included = (body as { included?: unknown[] | null }).included ?? [];
    const pointerOf = (rawData: object) => {
      const i = data.indexOf(rawData);
      return i >= 0 ? `/data/${i}` : `/included/${included.indexOf(rawData)}`;
    };
    const parts = splitPlanAsLines(plan, context.maxMessageBytes, pointerOf);
    // SQS carries no control character but tab, newline and carriage return. JSON escapes them, COPY
    // text does not: a page with one in a field outside the JSON (an id, a unique_id) travels as rows
    // of JSON (version 2), which the consumer reads as well.
    const unsafe = (line: string) => SQS_UNSAFE.test(line);
    const messages = parts.some((part) => part.profiles.some(unsafe) || part.events.some(unsafe))
      ? queuedRowsMessages(splitPlanForQueue(plan, context.maxMessageBytes, pointerOf), context)
      : queuedLinesMessages(parts, context);
    return { received: plan.received, messages };
  }
  return {
    received: receivedOf(kind, body, context.acceptedAt),
    messages: queuedMessages(kind, splitForQueue(kind, body, context.maxMessageBytes), context),
  };
}

/**
 * Validates, splits and enqueues one request. All or nothing is impossible across several SQS
 * messages (a sent message cannot be taken back), so a request is at least once instead: when a
 * part is not queued the caller answers 503 and the client sends the whole request again; the parts
 * queued the first time are then stored twice over, which stores them once (ingest is idempotent).
 */
export async function enqueueIngest(
  sender: MessageSender,
  kind: QueuedKind,
  body: unknown,
  context: EnqueueContext,
): Promise<QueueReceipt> {
  const acceptedAt = context.now ?? new Date();
  const { received, messages } = ingestMessages(kind, body, { ...context, acceptedAt });
  try {
    await sender.send(messages);
  } catch (err) {
    if (err instanceof QueueSendError) {
      throw new HttpError(
        503,
        {
          code: 'queue_unavailable',
          detail:
            err.sent === 0
              ? 'The ingest queue did not accept the request; nothing was queued. Send it again shortly.'
              : `The ingest queue accepted ${err.sent} of the ${err.sent + err.failed} parts of this request. ` +
                'Send the whole request again shortly: the parts already queued are stored once.',
        },
        { 'Retry-After': '5' },
      );
    }
    throw err;
  }
  return { requestId: context.requestId, acceptedAt, received, messages: messages.length };
}

/** The 202 answer to a queued page: what was accepted, not yet what was stored. */
export function queueReceiptDocument(receipt: QueueReceipt) {
  return {
    data: {
      type: 'ingest-receipt' as const,
      id: receipt.requestId,
      attributes: {
        status: 'queued' as const,
        received: receipt.received,
        messages: receipt.messages,
        accepted_at: receipt.acceptedAt.toISOString(),
      },
    },
  };
}
