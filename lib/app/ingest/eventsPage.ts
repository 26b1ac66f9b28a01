import type { Db } from '../../db/port';
import {
  decimalText,
  eventDefaults,
  eventTimeWindow,
  instantFromUnixSeconds,
  metricUpsertFrom,
  parseIsoInstant,
  profileUpsertFrom,
  type EventTimeWindow,
  type Instant,
} from '../../klaviyo/mapping';
import {
  EventResourceSchema,
  EventsPageSchema,
  MetricResourceSchema,
  ProfileResourceSchema,
  type MetricResource,
  type ProfileResource,
} from '../../klaviyo/schemas';
import { insertEvents, type NewEvent } from '../../repositories/events';
import { isLaterInstant } from '../../repositories/instants';
import { upsertMetrics, type MetricUpsert } from '../../repositories/metrics';
import { upsertProfiles, type ProfileUpsert } from '../../repositories/profiles';
import { resolvedLimits, type IngestCounts, type IngestOptions } from './result';
import { checkJsonValues, isPlainObject, Problems } from './validation';

/**
 * POST /api/events with a page of Klaviyo's GET /api/events?include=metric,profile: validate every
 * item, then write metrics, profiles and events in one transaction.
 */

export interface EventsPagePlan {
  readonly received: number;
  /** Sorted by id; one per id. */
  readonly metrics: MetricUpsert[];
  readonly profiles: ProfileUpsert[];
  /** Sorted by (id, timestamp). */
  readonly events: NewEvent[];
}

/** Rejects more items than the limit before looking at any of them. */
export function checkResourceCount(
  problems: Problems,
  path: (string | number)[],
  count: number,
  max: number,
  what: string,
): void {
  if (count > max) {
    problems.add(path, 'too_many_resources', `${count} ${what} sent; at most ${max} are accepted per request.`);
    problems.throwIfAny();
  }
}

/** Validates a whole page and maps it to rows; throws HttpError 400 listing every problem. */
export function planEventsPage(body: unknown, options: IngestOptions = {}): EventsPagePlan {
  const { maxResources, now } = resolvedLimits(options);
  const problems = new Problems();
  const envelope = EventsPageSchema.safeParse(body);
  if (!envelope.success) {
    problems.addZodIssues([], envelope.error.issues);
    problems.throwIfAny();
  }
  const page = body as { data: unknown[]; included?: unknown[] | null };
  const included = page.included ?? [];
  checkResourceCount(problems, ['data'], page.data.length, maxResources, 'events were');
  // Each event names one metric and one profile: more included resources than that is not a page.
  checkResourceCount(problems, ['included'], included.length, 2 * maxResources, 'included resources were');
  checkJsonValues(body, [], problems);

  const window = eventTimeWindow(now);
  const events: NewEvent[] = [];
  const firstIndexOfId = new Map<string, { index: number; ms: number }>();
  const referencedProfiles = new Set<string>();
  const referencedMetrics = new Set<string>();

  page.data.forEach((item, i) => {
    const parsed = EventResourceSchema.safeParse(item);
    if (!parsed.success) {
      problems.addZodIssues(['data', i], parsed.error.issues);
      return;
    }
    const resource = parsed.data;
    const original = item as Record<string, unknown>;
    const at = eventInstant(resource.attributes, ['data', i, 'attributes'], window, problems);
    if (!at) return;

    const seen = firstIndexOfId.get(resource.id);
    if (seen && seen.ms !== at.ms) {
      problems.add(
        ['data', i, 'id'],
        'conflicting_duplicate',
        `id ${resource.id} is also /data/${seen.index}, with another time; an event's time never changes.`,
      );
      return;
    }
    if (!seen) firstIndexOfId.set(resource.id, { index: i, ms: at.ms });

    // The sender's own object (zod's output is a copy): raw_data and properties then share it.
    const properties =
      (original.attributes as { event_properties?: Record<string, unknown> | null }).event_properties ?? {};
    const defaults = eventDefaults(properties);
    let value = defaults.value;
    const explicit = resource.attributes.value;
    if (explicit !== undefined && explicit !== null) {
      value = decimalText(explicit);
      if (value === null) {
        problems.add(
          ['data', i, 'attributes', 'value'],
          'invalid_value',
          'value must be a number or a decimal string.',
        );
        return;
      }
    }
    const metricId = resource.relationships.metric.data.id;
    const profileId = resource.relationships.profile?.data?.id ?? null;
    referencedMetrics.add(metricId);
    if (profileId !== null) referencedProfiles.add(profileId);
    events.push({
      id: resource.id,
      timestamp: at.iso,
      metricId,
      profileId,
      value,
      valueCurrency: resource.attributes.value_currency ?? defaults.valueCurrency,
      uuid: resource.attributes.uuid ?? null,
      uniqueId: resource.attributes.unique_id ?? defaults.uniqueId,
      properties,
      rawData: original,
    });
  });

  const metricResources = new Map<string, { resource: MetricResource; original: Record<string, unknown> }>();
  const profileResources = new Map<string, { resource: ProfileResource; original: Record<string, unknown> }>();
  included.forEach((item, j) => {
    const type = isPlainObject(item) ? item.type : undefined;
    if (type === 'metric') {
      const parsed = MetricResourceSchema.safeParse(item);
      if (!parsed.success) return problems.addZodIssues(['included', j], parsed.error.issues);
      keepNewest(metricResources, parsed.data.id, { resource: parsed.data, original: item as Record<string, unknown> });
    } else if (type === 'profile') {
      const parsed = ProfileResourceSchema.safeParse(item);
      if (!parsed.success) return problems.addZodIssues(['included', j], parsed.error.issues);
      keepNewest(profileResources, parsed.data.id, {
        resource: parsed.data,
        original: item as Record<string, unknown>,
      });
    } else if (!isPlainObject(item) || typeof type !== 'string') {
      problems.add(
        ['included', j, 'type'],
        'required',
        'type is required: each included resource is a metric or a profile.',
      );
    }
    // Other included types (a later `include=...`) have no table here; they are not stored.
  });
  problems.throwIfAny();

  const metrics: MetricUpsert[] = [...metricResources.values()].map((m) => metricUpsertFrom(m.resource, m.original));
  for (const id of referencedMetrics) if (!metricResources.has(id)) metrics.push({ id, isStub: true });

  const profiles: ProfileUpsert[] = [...profileResources.values()].map((p) =>
    profileUpsertFrom(p.resource, p.original),
  );
  for (const id of referencedProfiles) if (!profileResources.has(id)) profiles.push({ id, isStub: true });

  return {
    received: page.data.length,
    metrics: metrics.sort(byId),
    profiles: profiles.sort(byId),
    events: events.sort(byIdThenTime),
  };
}

/** The event's time: `datetime`, else `timestamp`; within Klaviyo's window, and the two must agree. */
function eventInstant(
  attributes: { datetime?: string | null; timestamp?: number | null },
  path: (string | number)[],
  window: EventTimeWindow,
  problems: Problems,
): Instant | undefined {
  let at: Instant;
  let field: string;
  if (attributes.datetime) {
    at = parseIsoInstant(attributes.datetime);
    field = 'datetime';
    if (typeof attributes.timestamp === 'number' && Math.abs(at.ms / 1000 - attributes.timestamp) >= 1) {
      problems.add(
        [...path, 'timestamp'],
        'inconsistent',
        `timestamp ${attributes.timestamp} is not the second of datetime ${attributes.datetime}.`,
      );
      return undefined;
    }
  } else if (typeof attributes.timestamp === 'number') {
    at = instantFromUnixSeconds(attributes.timestamp);
    field = 'timestamp';
  } else {
    problems.add([...path, 'datetime'], 'required', 'datetime (or timestamp) is required: every event has a time.');
    return undefined;
  }
  if (!checkEventTime(at, [...path, field], window, problems)) return undefined;
  return at;
}

export function checkEventTime(
  at: Instant,
  path: (string | number)[],
  window: EventTimeWindow,
  problems: Problems,
): boolean {
  const field = String(path[path.length - 1]);
  if (at.ms < window.minMs) {
    problems.add(path, 'out_of_range', `${field} must not be before 1990-01-01T00:00:00Z.`);
    return false;
  }
  if (at.ms > window.maxMs) {
    problems.add(path, 'out_of_range', `${field} must not be more than one year in the future.`);
    return false;
  }
  return true;
}

function keepNewest<T extends { resource: { attributes: { updated?: string | null } } }>(
  map: Map<string, T>,
  id: string,
  next: T,
): void {
  const seen = map.get(id);
  if (!seen) {
    map.set(id, next);
    return;
  }
  // To the microsecond: the write statements compare the stored timestamptz that precisely.
  if (isLaterInstant(next.resource.attributes.updated, seen.resource.attributes.updated)) map.set(id, next);
}

function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function byIdThenTime(a: NewEvent, b: NewEvent): number {
  return byId(a, b) || (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0);
}

/** Writes a planned page: metrics, then profiles, then events, each one statement, in the caller's transaction. */
export async function writeEventsPage(tx: Db, accountId: string, plan: EventsPagePlan): Promise<IngestCounts> {
  const metrics = await upsertMetrics(tx, accountId, plan.metrics);
  const profiles = await upsertProfiles(tx, accountId, plan.profiles);
  const events = await insertEvents(tx, accountId, plan.events);
  return {
    received: plan.received,
    inserted: events.inserted,
    duplicates: events.duplicates,
    metrics_upserted: metrics.written,
    profiles_upserted: profiles.written,
  };
}

export async function ingestEventsPage(
  db: Db,
  accountId: string,
  body: unknown,
  options: IngestOptions = {},
): Promise<IngestCounts> {
  const plan = planEventsPage(body, options);
  return db.transaction((tx) => writeEventsPage(tx, accountId, plan));
}
