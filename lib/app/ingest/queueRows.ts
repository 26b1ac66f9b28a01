import { z } from 'zod';
import { HttpError } from '../../klaviyo/errors';
import { eventScalars, type NewEvent } from '../../repositories/events';
import type { MetricUpsert } from '../../repositories/metrics';
import type { ProfileUpsert } from '../../repositories/profiles';
import { metricUpsertFrom, profileUpsertFrom } from '../../klaviyo/mapping';
import type { MetricResource, ProfileResource } from '../../klaviyo/schemas';
import type { EventsPagePlan } from './eventsPage';
import { asciiJsonOf } from '../../db/asciiJson';
import { isPlainObject } from './validation';

/**
 * A page of events on the queue as the rows the route mapped it to (envelope version 2,
 * docs/queue.md): the route has validated the page against Klaviyo's schemas and mapped it
 * (planEventsPage); the consumer checks these rows' shapes, which is cheap, instead of validating and
 * mapping the Klaviyo document again, which was about a fifth of a batch's time (docs/queue.md,
 * "Where a batch's time goes"). What the database refuses in a row (a time or a value it cannot
 * parse) still makes the message a reject, as in version 1.
 *
 * An event travels as a tuple in NewEvent's order. Its properties travel only when they are not
 * the raw event's own `attributes.event_properties` (a page's are: they are sent once, inside
 * raw_data, and taken from there).
 */

// A JSON object, checked for its type without being copied key by key (as z.record would): these
// bags (raw_data, properties) are most of a message.
const JsonObjectSchema = z.custom<Record<string, unknown>>(isPlainObject, { error: 'must be a JSON object' });
const text = z.string();
const optionalText = z.string().nullable();

const EventRowSchema = z.tuple([
  text, // id
  text, // timestamp (ISO 8601)
  text, // metric id
  optionalText, // profile id
  optionalText, // value, decimal text
  optionalText, // value currency
  optionalText, // uuid
  optionalText, // unique id
  JsonObjectSchema.nullable(), // properties, when not raw_data.attributes.event_properties
  JsonObjectSchema, // raw_data
]);
type EventRow = z.infer<typeof EventRowSchema>;

const StubSchema = z.object({ id: text, isStub: z.literal(true) });

/**
 * A metric or profile the page included, as the route received and validated it: checked here for
 * its shape only (a resource of that type with an id and attributes), then mapped as the route
 * mapped it (profileUpsertFrom, metricUpsertFrom: field picks, no validation). Sent as received, not
 * as mapped rows: a mapped profile repeats the resource it keeps as raw_data, half again a
 * message's size.
 */
const resourceOf = (type: 'metric' | 'profile') =>
  z.custom<Record<string, unknown> & { id: string }>(
    (v) => isPlainObject(v) && v.type === type && typeof v.id === 'string' && isPlainObject(v.attributes),
    { error: `must be a ${type} resource` },
  );

export const MetricRowSchema = z.union([StubSchema, resourceOf('metric')]);
export const ProfileRowSchema = z.union([StubSchema, resourceOf('profile')]);

export const EventRowsBodySchema = z.object({
  metrics: z.array(MetricRowSchema),
  profiles: z.array(ProfileRowSchema),
  events: z.array(EventRowSchema),
});
export type EventRowsBody = z.infer<typeof EventRowsBodySchema>;

/** Where Klaviyo's event documents keep an event's properties. */
export function eventPropertiesOf(rawData: Readonly<Record<string, unknown>>): unknown {
  const attributes = rawData.attributes;
  return isPlainObject(attributes) ? attributes.event_properties : undefined;
}

function eventRow(e: NewEvent): EventRow {
  return [
    ...eventScalars(e),
    // Read-only rows: the message only serialises them.
    e.properties === eventPropertiesOf(e.rawData) ? null : e.properties,
    e.rawData,
  ];
}

/** Why a body of checked rows still cannot be written (the consumer records it as a reject). */
export class InvalidRowsError extends Error {}

/** The plan the consumer writes, from a message's checked rows. */
export function planFromRows(body: EventRowsBody): EventsPagePlan {
  const events = body.events.map((row, i): NewEvent => {
    const [id, timestamp, metricId, profileId, value, valueCurrency, uuid, uniqueId, properties, rawData] = row;
    const own = properties ?? eventPropertiesOf(rawData);
    if (!isPlainObject(own))
      throw new InvalidRowsError(`/body/events/${i}/8: no properties, and raw_data has no event_properties object.`);
    return { id, timestamp, metricId, profileId, value, valueCurrency, uuid, uniqueId, properties: own, rawData };
  });
  return { received: events.length, ...resourcesFromRows(body), events };
}

/** The metrics and profiles of a message's body: stubs as they are, resources mapped as the route mapped them. */
export function resourcesFromRows(body: Pick<EventRowsBody, 'metrics' | 'profiles'>): {
  metrics: MetricUpsert[];
  profiles: ProfileUpsert[];
} {
  const metrics = body.metrics.map((m): MetricUpsert =>
    m.isStub === true ? { id: m.id, isStub: true } : metricUpsertFrom(m as unknown as MetricResource, m),
  );
  const profiles = body.profiles.map((p): ProfileUpsert =>
    p.isStub === true ? { id: p.id, isStub: true } : profileUpsertFrom(p as unknown as ProfileResource, p),
  );
  return { metrics, profiles };
}

/** A planned metric or profile as it travels: its resource as received, or its id when only named. */
function rowOf(item: MetricUpsert | ProfileUpsert): Record<string, unknown> {
  return item.isStub ? { id: item.id, isStub: true } : item.rawData;
}

/** Room kept in each message for the envelope and the body's keys. */
const ENVELOPE_BYTES = 1024;

// A row's bytes as version 3 writes it (asciiJson): never fewer than as plain JSON, so a version 2
// message measured this way fits too.
const bytesOf = (value: unknown): number => asciiJsonOf(value).length;

/**
 * A planned page as message bodies that each fit `maxBytes` once in their envelope: whole events,
 * each part carrying the metric and profile rows its events name (a profile named in two parts
 * travels in both and is stored once, the newest copy winning), then the rows no event names. An
 * event too large for a message on its own is refused (413) with its pointer in the request.
 */
export function splitPlanForQueue(
  plan: EventsPagePlan,
  maxBytes: number,
  pointerOf: (rawData: object) => string,
): EventRowsBody[] {
  return splitPlanAs(
    plan,
    maxBytes,
    pointerOf,
    (e) => {
      const row = eventRow(e);
      return { item: row, bytes: bytesOf(row) };
    },
    profileRowItem,
  );
}

type ProfileRow = EventRowsBody['profiles'][number];

/** A profile as a row of a message's body (versions 2 and 3), and its bytes there. */
export function profileRowItem(p: ProfileUpsert): { item: ProfileRow; bytes: number } {
  const row = rowOf(p) as ProfileRow;
  return { item: row, bytes: bytesOf(row) };
}

/** A part of a page: the metric rows its events name, its profiles as `P`, and its events as `T`. */
export interface PlanPart<T, P = ProfileRow> {
  readonly metrics: EventRowsBody['metrics'];
  readonly profiles: P[];
  readonly events: T[];
}

/** splitPlanForQueue with each event encoded by `encode` and each profile by `encodeProfile` (an item and its size in a message). */
export function splitPlanAs<T, P>(
  plan: EventsPagePlan,
  maxBytes: number,
  pointerOf: (rawData: object) => string,
  encode: (e: NewEvent) => { item: T; bytes: number },
  encodeProfile: (p: ProfileUpsert) => { item: P; bytes: number },
): PlanPart<T, P>[] {
  const budget = maxBytes - ENVELOPE_BYTES;
  const metricById = new Map(plan.metrics.map((m) => [m.id, { row: m, size: bytesOf(rowOf(m)) + 1 }]));
  const profileById = new Map(
    plan.profiles.map((p) => {
      const { item, bytes } = encodeProfile(p);
      return [p.id, { row: p, item, size: bytes + 1 }];
    }),
  );
  const parts: PlanPart<T, P>[] = [];
  let metrics = new Map<string, MetricUpsert>();
  let profiles = new Map<string, { row: ProfileUpsert; item: P }>();
  let events: T[] = [];
  let used = 0;
  const named = new Set<string>();
  const flush = () => {
    if (events.length === 0 && metrics.size === 0 && profiles.size === 0) return;
    parts.push({
      metrics: [...metrics.values()].map(rowOf) as EventRowsBody['metrics'],
      profiles: [...profiles.values()].map((p) => p.item),
      events,
    });
    metrics = new Map();
    profiles = new Map();
    events = [];
    used = 0;
  };
  const tooLarge = (pointer: string) =>
    new HttpError(413, {
      code: 'too_large',
      detail: `This resource alone takes more than the ${maxBytes} bytes a queue message holds; it cannot be queued.`,
      pointer,
    });
  for (const e of plan.events) {
    const { item: row, bytes } = encode(e);
    const metric = metricById.get(e.metricId);
    const profile = e.profileId === null ? undefined : profileById.get(e.profileId);
    const sizeWith = (fresh: boolean) =>
      bytes +
      1 +
      (metric && (fresh || !metrics.has(metric.row.id)) ? metric.size : 0) +
      (profile && (fresh || !profiles.has(profile.row.id)) ? profile.size : 0);
    if (sizeWith(true) > budget) throw tooLarge(pointerOf(e.rawData));
    if (events.length > 0 && used + sizeWith(false) > budget) flush();
    used += sizeWith(false);
    events.push(row);
    if (metric) metrics.set(metric.row.id, metric.row);
    if (profile) profiles.set(profile.row.id, profile);
    named.add(`m${e.metricId}`);
    if (e.profileId !== null) named.add(`p${e.profileId}`);
  }
  // Rows no event names (included resources of their own), after the events.
  const add = (row: MetricUpsert | ProfileUpsert, size: number, keep: () => void) => {
    if (size > budget) throw tooLarge(row.isStub ? '/included' : pointerOf(row.rawData));
    if (used + size > budget) flush();
    used += size;
    keep();
  };
  for (const { row, size } of metricById.values())
    if (!named.has(`m${row.id}`)) add(row, size, () => metrics.set(row.id, row));
  for (const profile of profileById.values())
    if (!named.has(`p${profile.row.id}`)) add(profile.row, profile.size, () => profiles.set(profile.row.id, profile));
  flush();
  return parts.length > 0 ? parts : [{ metrics: [], profiles: [], events: [] }];
}
