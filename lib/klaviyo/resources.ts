import type { MetricRow, MetricSummary } from '../repositories/metrics';
import type { ProfileRow } from '../repositories/profiles';

export interface JsonApiResource {
  readonly type: string;
  readonly id: string;
  readonly attributes: Record<string, unknown>;
  readonly relationships?: Record<string, unknown>;
  readonly links?: Record<string, unknown>;
  readonly [key: string]: unknown;
}

/** An instant as Klaviyo writes it: 2022-11-08T01:23:45+00:00 (milliseconds only when there are some). */
export function klaviyoDateTime(date: Date | null): string | null {
  if (!date) return null;
  return date
    .toISOString()
    .replace(/\.000Z$/, '+00:00')
    .replace(/Z$/, '+00:00');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function metricResource(
  metric: Pick<MetricRow, 'id' | 'name' | 'created' | 'updated' | 'integration'>,
  baseUrl: string,
): JsonApiResource {
  return {
    type: 'metric',
    id: metric.id,
    attributes: {
      name: metric.name,
      created: klaviyoDateTime(metric.created),
      updated: klaviyoDateTime(metric.updated),
      integration: metric.integration,
    },
    links: { self: `${baseUrl}/api/metrics/${encodeURIComponent(metric.id)}` },
  };
}

/**
 * A metric of GET /api/metrics with what this backend knows beyond Klaviyo's four attributes:
 * its event count and the times of its first and last events (null without events).
 */
export function metricSummaryResource(metric: MetricSummary, baseUrl: string): JsonApiResource {
  const resource = metricResource(metric, baseUrl);
  return {
    ...resource,
    attributes: {
      ...resource.attributes,
      event_count: metric.eventCount,
      first_event_datetime: klaviyoDateTime(metric.firstEventAt),
      last_event_datetime: klaviyoDateTime(metric.lastEventAt),
    },
  };
}

/**
 * A profile from its columns. `additional` adds Klaviyo's `subscriptions` and `predictive_analytics`
 * (additional-fields[profile]) as the stored resource carried them: null when its source (Create
 * Profile, Create Event, a sync without additional-fields) had none; this backend never computes them.
 */
export function profileResource(
  profile: ProfileRow,
  baseUrl: string,
  additional: ReadonlySet<'subscriptions' | 'predictive_analytics'> = new Set(),
): JsonApiResource {
  const stored = isObject(profile.rawData) && isObject(profile.rawData.attributes) ? profile.rawData.attributes : {};
  const extra: Record<string, unknown> = {};
  for (const name of additional) extra[name] = isObject(stored[name]) ? stored[name] : null;
  return {
    type: 'profile',
    id: profile.id,
    attributes: {
      email: profile.email,
      phone_number: profile.phoneNumber,
      external_id: profile.externalId,
      anonymous_id: profile.anonymousId,
      first_name: profile.firstName,
      last_name: profile.lastName,
      organization: profile.organization,
      locale: profile.locale,
      title: profile.title,
      image: profile.image,
      created: klaviyoDateTime(profile.created),
      updated: klaviyoDateTime(profile.updated),
      last_event_date: klaviyoDateTime(profile.lastEventDate),
      location: profile.location,
      properties: profile.properties,
      ...extra,
    },
    links: { self: `${baseUrl}/api/profiles/${encodeURIComponent(profile.id)}` },
  };
}

/** What an event resource is rebuilt from. */
export interface StoredEvent {
  readonly id: string;
  readonly timestamp: Date;
  readonly metricId: string;
  readonly profileId: string | null;
  readonly uuid: string | null;
  readonly properties: Readonly<Record<string, unknown>>;
  readonly rawData: unknown;
}

function relationshipTo(
  type: 'metric' | 'profile',
  id: string,
  existing: unknown,
  eventSelf: string,
  asReceived: boolean,
): Record<string, unknown> {
  const links = { self: `${eventSelf}/relationships/${type}`, related: `${eventSelf}/${type}` };
  if (isObject(existing) && isObject(existing.data) && existing.data.type === type && existing.data.id === id)
    // A synced event's relationship stays as received (an export re-imports as the same row); one
    // written here (Create Event) gets links to this API's relationship routes.
    return asReceived || isObject(existing.links) ? existing : { ...existing, links };
  return { data: { type, id }, links };
}

/**
 * An event as Klaviyo's GET /api/events returns it, from its stored raw_data; the columns fill in
 * (and, for the relationships, win over) whatever raw_data lacks or contradicts.
 */
export function eventResource(event: StoredEvent, baseUrl: string): JsonApiResource {
  const raw = isObject(event.rawData) ? event.rawData : {};
  const self = `${baseUrl}/api/events/${encodeURIComponent(event.id)}`;
  const rawAttributes = isObject(raw.attributes) ? raw.attributes : {};
  const attributes: Record<string, unknown> = { ...rawAttributes };
  // Klaviyo's timestamp is whole unix seconds (ingest refuses anything else), whatever a writer stored.
  if (typeof attributes.timestamp !== 'number' || !Number.isInteger(attributes.timestamp)) {
    attributes.timestamp = Math.floor(event.timestamp.getTime() / 1000);
  }
  if (typeof attributes.datetime !== 'string') attributes.datetime = klaviyoDateTime(event.timestamp);
  if (!isObject(attributes.event_properties)) attributes.event_properties = { ...event.properties };
  if (!('uuid' in attributes)) attributes.uuid = event.uuid;
  const rawRelationships = isObject(raw.relationships) ? raw.relationships : {};
  // Resources from Klaviyo carry their links; events written here (Create Event) have none stored.
  const asReceived = isObject(raw.links);
  const relationships: Record<string, unknown> = {
    ...rawRelationships,
    metric: relationshipTo('metric', event.metricId, rawRelationships.metric, self, asReceived),
  };
  if (event.profileId !== null)
    relationships.profile = relationshipTo('profile', event.profileId, rawRelationships.profile, self, asReceived);
  else delete relationships.profile;
  return {
    ...raw,
    type: 'event',
    id: event.id,
    attributes,
    relationships,
    links: isObject(raw.links) && typeof raw.links.self === 'string' ? raw.links : { self },
  };
}

/**
 * A metric or profile for `included`: its raw_data when it has one (the resource as received, so a
 * re-import stores the same row), else one built from the columns.
 */
export function includedMetric(metric: MetricRow, baseUrl: string): JsonApiResource {
  const raw = metric.rawData;
  if (isObject(raw) && raw.type === 'metric' && raw.id === metric.id && isObject(raw.attributes))
    return raw as JsonApiResource;
  return metricResource(metric, baseUrl);
}

export function includedProfile(profile: ProfileRow, baseUrl: string): JsonApiResource {
  const raw = profile.rawData;
  if (isObject(raw) && raw.type === 'profile' && raw.id === profile.id && isObject(raw.attributes))
    return raw as JsonApiResource;
  return profileResource(profile, baseUrl);
}
