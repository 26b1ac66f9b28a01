import type { Db } from '../../db/port';
import { createdEventIdFor, eventUuidFor, metricIdFor, profileIdFor } from '../../klaviyo/ids';
import {
  eventTimeWindow,
  parseIsoInstant,
  profileAttributesFrom,
  type EventTimeWindow,
  type Instant,
} from '../../klaviyo/mapping';
import {
  BulkCreateBodySchema,
  BulkEventEntrySchema,
  BulkProfileEntrySchema,
  CreateEventBodySchema,
  type CreatedEventAttributes,
  type ProfileIdentity,
} from '../../klaviyo/schemas';
import { insertEvents, type DirtyMarks, type NewEvent } from '../../repositories/events';
import { resolveMetricsByName } from '../../repositories/metrics';
import { mergeProfiles, resolveProfiles, type ProfileMerge } from '../../repositories/profiles';
import { checkEventTime, checkResourceCount } from './eventsPage';
import { resolvedLimits, type IngestCounts, type IngestOptions } from './result';
import { checkJsonValues, Problems, type PathSegment } from './validation';

/**
 * Klaviyo's own write shapes, so that code written against Klaviyo (its SDKs included) works
 * unchanged against this server: Create Event (POST /api/events with one object) and Bulk Create
 * Events (POST /api/event-bulk-create-jobs, processed synchronously here).
 *
 * Profiles are resolved by id, then email, phone_number, external_id, and created when none
 * matches; metrics by name, created when new. An event's id is derived from its metric, profile and
 * unique_id (or its time to the second), so a repeated unique_id is stored once, as in Klaviyo.
 */

interface PlannedEvent {
  readonly attributes: CreatedEventAttributes;
  /** When it happened, truncated to the second as Klaviyo does. */
  readonly at: Instant;
}

export interface PlannedProfileEntry {
  readonly identity: ProfileIdentity;
  readonly events: PlannedEvent[];
}

/** The integration Klaviyo gives metrics created through its API. */
const API_INTEGRATION = { key: 'api', name: 'API', category: 'API' } as const;

function truncatedToSecond(ms: number): Instant {
  const second = Math.floor(ms / 1000) * 1000;
  return { ms: second, iso: new Date(second).toISOString() };
}

function eventTime(
  attributes: CreatedEventAttributes,
  path: PathSegment[],
  window: EventTimeWindow,
  now: Date,
  problems: Problems,
): Instant | undefined {
  if (!attributes.time) return truncatedToSecond(now.getTime());
  const at = parseIsoInstant(attributes.time);
  return checkEventTime(at, [...path, 'time'], window, problems) ? truncatedToSecond(at.ms) : undefined;
}

function checkIdentity(identity: ProfileIdentity, path: PathSegment[], problems: Problems): boolean {
  const a = identity.attributes;
  if (identity.id || a?.email || a?.phone_number || a?.external_id || a?.anonymous_id || a?._kx) return true;
  problems.add(
    path,
    'missing_identifier',
    'profile needs at least one of id, email, phone_number, external_id, anonymous_id or _kx.',
  );
  return false;
}

export function planCreateEvent(body: unknown, options: IngestOptions = {}): PlannedProfileEntry[] {
  const { now } = resolvedLimits(options);
  const problems = new Problems();
  checkJsonValues(body, [], problems);
  const parsed = CreateEventBodySchema.safeParse(body);
  if (!parsed.success) {
    problems.addZodIssues([], parsed.error.issues);
    problems.throwIfAny();
  }
  const attributes = parsed.data!.data.attributes;
  const base: PathSegment[] = ['data', 'attributes'];
  const identityOk = checkIdentity(attributes.profile.data, [...base, 'profile', 'data'], problems);
  const at = eventTime(attributes, base, eventTimeWindow(now), now, problems);
  problems.throwIfAny();
  if (!identityOk || !at) throw new Error('unreachable: problems were thrown');
  return [{ identity: attributes.profile.data, events: [{ attributes, at }] }];
}

export function planBulkCreate(body: unknown, options: IngestOptions = {}): PlannedProfileEntry[] {
  const { maxResources, now } = resolvedLimits(options);
  const problems = new Problems();
  const envelope = BulkCreateBodySchema.safeParse(body);
  if (!envelope.success) {
    problems.addZodIssues([], envelope.error.issues);
    problems.throwIfAny();
  }
  const entriesPath: PathSegment[] = ['data', 'attributes', 'events-bulk-create', 'data'];
  const entries = envelope.data!.data.attributes['events-bulk-create'].data;
  checkResourceCount(problems, entriesPath, entries.length, maxResources, 'profile entries were');
  const eventCount = entries.reduce<number>((n, e) => n + countEvents(e), 0);
  checkResourceCount(problems, entriesPath, eventCount, maxResources, 'events were');
  checkJsonValues(body, [], problems);

  const window = eventTimeWindow(now);
  const planned: PlannedProfileEntry[] = [];
  entries.forEach((item, i) => {
    const path = [...entriesPath, i];
    const parsed = BulkProfileEntrySchema.safeParse(item);
    if (!parsed.success) {
      problems.addZodIssues(path, parsed.error.issues);
      return;
    }
    const { profile, events } = parsed.data.attributes;
    checkIdentity(profile.data, [...path, 'attributes', 'profile', 'data'], problems);
    const plannedEvents: PlannedEvent[] = [];
    events.data.forEach((raw, k) => {
      const eventPath = [...path, 'attributes', 'events', 'data', k];
      const event = BulkEventEntrySchema.safeParse(raw);
      if (!event.success) {
        problems.addZodIssues(eventPath, event.error.issues);
        return;
      }
      const at = eventTime(event.data.attributes, [...eventPath, 'attributes'], window, now, problems);
      if (at) plannedEvents.push({ attributes: event.data.attributes, at });
    });
    planned.push({ identity: profile.data, events: plannedEvents });
  });
  problems.throwIfAny();
  return planned;
}

/** Counting before validating the entries, so that an oversized request costs nothing more. */
function countEvents(entry: unknown): number {
  const events = (entry as { attributes?: { events?: { data?: unknown } } } | null)?.attributes?.events?.data;
  return Array.isArray(events) ? events.length : 0;
}

export function newProfileId(identity: ProfileIdentity): string {
  if (identity.id) return identity.id;
  const a = identity.attributes;
  if (a?.email) return profileIdFor('email', a.email);
  if (a?.phone_number) return profileIdFor('phone_number', a.phone_number);
  if (a?.external_id) return profileIdFor('external_id', a.external_id);
  if (a?.anonymous_id) return profileIdFor('anonymous_id', a.anonymous_id);
  if (a?._kx) return profileIdFor('_kx', a._kx);
  throw new Error('unreachable: identities were checked');
}

/** The identifiers resolveProfiles looks a Klaviyo write's profile up by. */
export function identifiersOf(identity: ProfileIdentity) {
  return {
    id: identity.id ?? null,
    email: identity.attributes?.email ?? null,
    phoneNumber: identity.attributes?.phone_number ?? null,
    externalId: identity.attributes?.external_id ?? null,
    anonymousId: identity.attributes?.anonymous_id ?? null,
    kx: identity.attributes?._kx ?? null,
  };
}

/**
 * Writes planned Klaviyo writes in the caller's transaction: metrics, profiles, then events. With
 * `marks`, the events' dirty marks are gathered there for the caller to write last (InsertEventsOptions).
 */
export async function writeKlaviyoEvents(
  tx: Db,
  accountId: string,
  entries: readonly PlannedProfileEntry[],
  marks?: DirtyMarks,
): Promise<IngestCounts> {
  const names = entries.flatMap((e) => e.events.map((ev) => ev.attributes.metric.data.attributes.name));
  const metrics = await resolveMetricsByName(tx, accountId, names, metricIdFor, API_INTEGRATION);

  const matched = await resolveProfiles(
    tx,
    accountId,
    entries.map((e) => identifiersOf(e.identity)),
  );
  const profileIds = entries.map((e, i) => matched[i] ?? newProfileId(e.identity));

  const merges: ProfileMerge[] = entries.map((e, i) => ({
    id: profileIds[i] as string,
    attributes: profileAttributesFrom(e.identity.attributes),
    kx: e.identity.attributes?._kx ?? null,
  }));
  const profiles = await mergeProfiles(tx, accountId, merges);

  const events: NewEvent[] = [];
  entries.forEach((entry, i) => {
    const profileId = profileIds[i] as string;
    for (const { attributes: a, at } of entry.events) {
      const metricId = metrics.ids.get(a.metric.data.attributes.name) as string;
      const id = createdEventIdFor(metricId, profileId, a.unique_id ? `unique:${a.unique_id}` : `time:${at.iso}`);
      const value = a.value === undefined || a.value === null ? null : String(a.value);
      // Klaviyo's Get Events carries the value in event_properties.$value, where readers look for it.
      const properties =
        value !== null && !('$value' in a.properties) ? { ...a.properties, $value: a.value } : a.properties;
      // Stored in the shape GET /api/events returns, like events that arrive in pages.
      const rawData = {
        type: 'event',
        id,
        attributes: {
          timestamp: at.ms / 1000,
          datetime: at.iso.replace(/\.000Z$/, '+00:00'),
          event_properties: properties,
          uuid: eventUuidFor(id),
          ...(value !== null ? { value: a.value } : {}),
          ...(a.value_currency ? { value_currency: a.value_currency } : {}),
          ...(a.unique_id ? { unique_id: a.unique_id } : {}),
        },
        relationships: {
          metric: { data: { type: 'metric', id: metricId } },
          profile: { data: { type: 'profile', id: profileId } },
        },
      };
      events.push({
        id,
        timestamp: at.iso,
        metricId,
        profileId,
        value,
        valueCurrency: a.value_currency ?? null,
        uuid: rawData.attributes.uuid,
        uniqueId: a.unique_id ?? null,
        properties,
        rawData,
      });
    }
  });
  const inserted = await insertEvents(tx, accountId, events, { dedupeById: true, marks });
  return {
    received: events.length,
    inserted: inserted.inserted,
    duplicates: inserted.duplicates,
    metrics_upserted: metrics.created,
    profiles_upserted: profiles.written,
  };
}

export async function createEvent(
  db: Db,
  accountId: string,
  body: unknown,
  options: IngestOptions = {},
): Promise<IngestCounts> {
  const entries = planCreateEvent(body, options);
  return db.transaction((tx) => writeKlaviyoEvents(tx, accountId, entries));
}

export async function bulkCreateEvents(
  db: Db,
  accountId: string,
  body: unknown,
  options: IngestOptions = {},
): Promise<IngestCounts> {
  const entries = planBulkCreate(body, options);
  return db.transaction((tx) => writeKlaviyoEvents(tx, accountId, entries));
}
