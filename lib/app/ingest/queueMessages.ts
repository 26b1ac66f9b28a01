import { z } from 'zod';
import { HttpError } from '../../klaviyo/errors';
import { EventLinesHeadSchema, ProfileLinesHeadSchema } from './queueCopyRows';
import { EventRowsBodySchema, type EventRowsBody, type PlanPart } from './queueRows';
import { asciiJsonOf } from '../../db/asciiJson';
import { isPlainObject } from './validation';

/**
 * What the ingest routes put on the queue in queue mode (docs/queue.md): a validated request, split
 * into messages that each fit SQS's limit, every one a self-contained request of the same kind. A
 * message carries the account it was accepted for and the instant it was accepted, so that the
 * consumer writes as that account and reads "now" (an event without a time, the one-year window)
 * as the route did, however late it runs.
 */

export const QUEUED_KINDS = [
  'events-page',
  'create-event',
  'bulk-create',
  'profiles',
  'metrics',
  'profile-bulk-import',
] as const;
export type QueuedKind = (typeof QUEUED_KINDS)[number];

const ENVELOPE_FIELDS = {
  kind: z.enum(QUEUED_KINDS),
  account_id: z.string().min(1).max(255),
  accepted_at: z.iso.datetime({ offset: true }),
  request_id: z.string().max(255),
  part: z.number().int().nonnegative(),
  parts: z.number().int().positive(),
};

/** Version 1: the request's own body (its part of it), validated and mapped again by the consumer. */
export const QueuedMessageSchema = z.object({ v: z.literal(1), ...ENVELOPE_FIELDS, body: z.unknown() });
export type QueuedMessage = z.infer<typeof QueuedMessageSchema>;

/** A page of events in message version `v`, its body as `body` has it. */
const pageMessageSchema = <V extends number, B extends z.ZodType>(v: V, body: B) =>
  z.object({ v: z.literal(v), ...ENVELOPE_FIELDS, kind: z.literal('events-page'), body });

/** Version 2: a page of events as the rows the route mapped it to (queueRows.ts). */
const QueuedRowsMessageSchema = pageMessageSchema(2, EventRowsBodySchema);
type QueuedRowsMessage = z.infer<typeof QueuedRowsMessageSchema>;

/**
 * Version 3: a page of events as the COPY text of its events (queueCopyRows.ts). The message is this
 * envelope as one line of JSON (its body the metrics, the profiles and the number of event lines),
 * then a newline, then the event lines: `framedMessage` splits the two.
 */
const QueuedLinesMessageSchema = pageMessageSchema(3, EventLinesHeadSchema);
type QueuedLinesMessage = z.infer<typeof QueuedLinesMessageSchema>;

/**
 * Version 4: as version 3, with the profiles as lines of their own between the head and the event
 * lines (queueCopyRows.ts), so that the consumer parses only the profiles it stores.
 */
const QueuedProfileLinesMessageSchema = pageMessageSchema(4, ProfileLinesHeadSchema);
type QueuedProfileLinesMessage = z.infer<typeof QueuedProfileLinesMessageSchema>;

/** What the consumer accepts: every version, so that messages queued before a deployment are still written. */
export const AnyQueuedMessageSchema = z.discriminatedUnion('v', [
  QueuedMessageSchema,
  QueuedRowsMessageSchema,
  QueuedLinesMessageSchema,
  QueuedProfileLinesMessageSchema,
]);

/**
 * A message's JSON and, for versions 3 and 4, the lines after it. Versions 1 and 2 are JSON alone
 * (JSON.stringify never writes a raw newline), so the first newline ends a version 3 or 4 head.
 */
export function framedMessage(text: string): { readonly json: string; readonly lines: string | undefined } {
  const end = text.indexOf('\n');
  return end < 0 ? { json: text, lines: undefined } : { json: text.slice(0, end), lines: text.slice(end + 1) };
}

/** Room kept in each message for the envelope around the body (kind, ids, instants). */
const ENVELOPE_BYTES = 1024;

const bytesOf = (value: unknown): number => Buffer.byteLength(JSON.stringify(value) ?? 'null', 'utf8');

function tooLarge(pointer: string, maxBytes: number): HttpError {
  return new HttpError(413, {
    code: 'too_large',
    detail: `This resource alone takes more than the ${maxBytes} bytes a queue message holds; it cannot be queued.`,
    pointer,
  });
}

/**
 * Packs items into groups whose JSON stays under `budget` bytes, in order. An item larger than the
 * budget on its own is refused (413 with its pointer): the request was valid, but cannot travel.
 */
function packed<T>(
  items: readonly T[],
  sizeOf: (item: T) => number,
  budget: number,
  pointerOf: (index: number) => string,
  maxBytes: number,
): T[][] {
  const groups: T[][] = [];
  let current: T[] = [];
  let used = 0;
  items.forEach((item, i) => {
    const size = sizeOf(item) + 1;
    if (size > budget) throw tooLarge(pointerOf(i), maxBytes);
    if (current.length > 0 && used + size > budget) {
      groups.push(current);
      current = [];
      used = 0;
    }
    current.push(item);
    used += size;
  });
  if (current.length > 0) groups.push(current);
  return groups;
}

interface EventsPageBody {
  readonly data: unknown[];
  readonly included?: unknown[] | null;
}

const keyOf = (type: unknown, id: unknown) => `${String(type)}\u0000${String(id)}`;

/** The included resources an event names: its metric and its profile. */
function referencesOf(event: unknown): string[] {
  const relationships = isPlainObject(event) ? event.relationships : undefined;
  if (!isPlainObject(relationships)) return [];
  const out: string[] = [];
  for (const name of ['metric', 'profile'] as const) {
    const data = isPlainObject(relationships[name]) ? (relationships[name] as { data?: unknown }).data : undefined;
    if (isPlainObject(data)) out.push(keyOf(name, data.id));
  }
  return out;
}

/**
 * A page of events split so that each part holds whole events with the included resources they name
 * (a profile named by events of two parts travels in both: stored once, the newest copy winning).
 * Included resources no event names travel too, after the events.
 */
function splitEventsPage(body: EventsPageBody, budget: number, maxBytes: number): EventsPageBody[] {
  const included = body.included ?? [];
  const includedByKey = new Map<string, { item: unknown; size: number }[]>();
  included.forEach((item) => {
    if (!isPlainObject(item)) return;
    const key = keyOf(item.type, item.id);
    const list = includedByKey.get(key) ?? [];
    list.push({ item, size: bytesOf(item) + 1 });
    includedByKey.set(key, list);
  });
  const named = new Set<string>();
  const parts: EventsPageBody[] = [];
  let data: unknown[] = [];
  let keys = new Set<string>();
  let used = 0;
  const flush = () => {
    if (data.length === 0) return;
    parts.push({ data, included: [...keys].flatMap((k) => (includedByKey.get(k) ?? []).map((c) => c.item)) });
    data = [];
    keys = new Set();
    used = 0;
  };
  body.data.forEach((event, i) => {
    const references = referencesOf(event);
    for (const k of references) named.add(k);
    const sizeWith = (present: Set<string>) =>
      bytesOf(event) +
      1 +
      references
        .filter((k) => !present.has(k))
        .reduce((n, k) => n + (includedByKey.get(k) ?? []).reduce((m, c) => m + c.size, 0), 0);
    if (sizeWith(new Set()) > budget) throw tooLarge(`/data/${i}`, maxBytes);
    if (data.length > 0 && used + sizeWith(keys) > budget) flush();
    used += sizeWith(keys);
    data.push(event);
    for (const k of references) keys.add(k);
  });
  flush();
  const unnamed = included.filter((item) => !isPlainObject(item) || !named.has(keyOf(item.type, item.id)));
  for (const group of packed(unnamed, bytesOf, budget, (j) => `/included/${included.indexOf(unnamed[j])}`, maxBytes))
    parts.push({ data: [], included: group });
  return parts.length > 0 ? parts : [{ data: [], included: [] }];
}

/** A list document ({ data: [...] }: profiles, metrics) split into lists that fit. */
function splitList(body: { data: unknown[] }, budget: number, maxBytes: number): { data: unknown[] }[] {
  if (body.data.length === 0) return [{ data: [] }];
  return packed(body.data, bytesOf, budget, (i) => `/data/${i}`, maxBytes).map((data) => ({ data }));
}

interface BulkCreateBody {
  data: { type: string; attributes: { 'events-bulk-create': { data: BulkEntry[] } } };
}
interface BulkEntry {
  type: string;
  attributes: { profile: unknown; events: { data: unknown[] } };
}

/**
 * Bulk Create split by profile entry; an entry too large for one message is split by its events,
 * each part naming the same profile (events derive their ids from metric, profile and unique_id or
 * time, never from their grouping, so the split stores exactly what the whole would).
 */
function splitBulkCreate(body: BulkCreateBody, budget: number, maxBytes: number): BulkCreateBody[] {
  const entries = body.data.attributes['events-bulk-create'].data;
  const pieces: BulkEntry[] = [];
  entries.forEach((entry, i) => {
    if (bytesOf(entry) + 1 <= budget) {
      pieces.push(entry);
      return;
    }
    const profileBytes = bytesOf(entry.attributes.profile);
    const groups = packed(
      entry.attributes.events.data,
      bytesOf,
      budget - profileBytes - 128,
      (k) => `/data/attributes/events-bulk-create/data/${i}/attributes/events/data/${k}`,
      maxBytes,
    );
    for (const events of groups)
      pieces.push({
        ...entry,
        attributes: { ...entry.attributes, events: { ...entry.attributes.events, data: events } },
      });
  });
  return packed(pieces, bytesOf, budget, (i) => `/data/attributes/events-bulk-create/data/${i}`, maxBytes).map(
    (group) => ({
      data: { ...body.data, attributes: { ...body.data.attributes, 'events-bulk-create': { data: group } } },
    }),
  );
}

interface ProfileImportBody {
  data: { type: string; attributes: { profiles: { data: unknown[] } }; relationships?: unknown };
}

function splitProfileImport(body: ProfileImportBody, budget: number, maxBytes: number): ProfileImportBody[] {
  const items = body.data.attributes.profiles.data;
  if (items.length === 0) return [body];
  return packed(items, bytesOf, budget, (i) => `/data/attributes/profiles/data/${i}`, maxBytes).map((group) => ({
    data: { ...body.data, attributes: { ...body.data.attributes, profiles: { data: group } } },
  }));
}

/**
 * The request (already validated: its shape is known) as the bodies of its messages (version 1),
 * each under `maxBytes` once wrapped in its envelope. The routes queue pages as rows instead
 * (queueRows.ts); a page split here is what they queued before version 2, which the consumer still
 * reads (its tests, and the ingest bench's BENCH_QUEUE_VERSION=1, make such messages).
 */
export function splitForQueue(kind: QueuedKind, body: unknown, maxBytes: number): unknown[] {
  const budget = maxBytes - ENVELOPE_BYTES;
  switch (kind) {
    case 'events-page':
      return splitEventsPage(body as EventsPageBody, budget, maxBytes);
    case 'profiles':
    case 'metrics':
      return splitList(body as { data: unknown[] }, budget, maxBytes);
    case 'bulk-create':
      return splitBulkCreate(body as BulkCreateBody, budget, maxBytes);
    case 'profile-bulk-import':
      return splitProfileImport(body as ProfileImportBody, budget, maxBytes);
    case 'create-event':
      if (bytesOf(body) > budget) throw tooLarge('/data', maxBytes);
      return [body];
  }
}

interface MessageContext {
  readonly accountId: string;
  readonly acceptedAt: Date;
  readonly requestId: string;
}

/** The envelope fields every message carries: the account, when the request was accepted, and its part. */
function envelope(context: MessageContext, part: number, parts: number) {
  return {
    account_id: context.accountId,
    accepted_at: context.acceptedAt.toISOString(),
    request_id: context.requestId,
    part,
    parts,
  };
}

/** The messages of one request, as the text SQS carries. */
export function queuedMessages(kind: QueuedKind, bodies: readonly unknown[], context: MessageContext): string[] {
  return bodies.map((body, part) =>
    JSON.stringify({ v: 1, kind, ...envelope(context, part, bodies.length), body } satisfies QueuedMessage),
  );
}

/** The messages of a page queued as profile and event lines (version 4, the route's), as the text SQS carries. */
export function queuedLinesMessages(parts: readonly PlanPart<string, string>[], context: MessageContext): string[] {
  return parts.map((part, index) => {
    const head = asciiJsonOf({
      v: 4,
      kind: 'events-page',
      ...envelope(context, index, parts.length),
      body: { metrics: part.metrics, profiles: part.profiles.length, events: part.events.length },
    } satisfies QueuedProfileLinesMessage);
    return `${head}\n${[...part.profiles, ...part.events].join('\n')}`;
  });
}

/**
 * The messages of a page queued as event lines with the profiles in the head (version 3, as the route
 * queued before version 4; the consumer still reads them), as the text SQS carries.
 */
export function queuedEventLinesMessages(parts: readonly PlanPart<string>[], context: MessageContext): string[] {
  return parts.map((part, index) => {
    const head = asciiJsonOf({
      v: 3,
      kind: 'events-page',
      ...envelope(context, index, parts.length),
      body: { metrics: part.metrics, profiles: part.profiles, events: part.events.length },
    } satisfies QueuedLinesMessage);
    return `${head}\n${part.events.join('\n')}`;
  });
}

/** The messages of a page queued as rows (version 2), as the text SQS carries. */
export function queuedRowsMessages(bodies: readonly EventRowsBody[], context: MessageContext): string[] {
  return bodies.map((body, part) =>
    JSON.stringify({
      v: 2,
      kind: 'events-page',
      ...envelope(context, part, bodies.length),
      body,
    } satisfies QueuedRowsMessage),
  );
}
