import type { MetricUpsert } from '../repositories/metrics';
import type { ProfileAttributes, ProfileUpsert } from '../repositories/profiles';
import type { MetricResource, ProfileResource, ProfileIdentity } from './schemas';

/**
 * From Klaviyo's validated resources to the rows the repositories write. Times stay ISO text from
 * end to end (PostgreSQL parses them, keeping microseconds that a JS Date would drop); money stays
 * decimal text.
 */

export interface Instant {
  /** Milliseconds since the epoch, for comparisons and ranges. */
  readonly ms: number;
  /** ISO 8601 text with an explicit offset, as stored. */
  readonly iso: string;
}

const HAS_OFFSET = /(?:[zZ]|[+-]\d{2}:?\d{2})$/;

/** An ISO 8601 date-time already checked by the schema; one without an offset is UTC. */
export function parseIsoInstant(text: string): Instant {
  const iso = HAS_OFFSET.test(text) ? text : `${text}Z`;
  return { ms: Date.parse(iso), iso };
}

export function instantFromUnixSeconds(seconds: number): Instant {
  const ms = seconds * 1000;
  return { ms, iso: new Date(ms).toISOString() };
}

/**
 * Klaviyo's accepted range for event times (Create Event: "after the year 1990 and up to 1 year in
 * the future"): from 1990-01-01 to one year after now.
 */
export interface EventTimeWindow {
  readonly minMs: number;
  readonly maxMs: number;
}

export const EVENT_TIME_MIN_MS = Date.UTC(1990, 0, 1);

export function eventTimeWindow(now: Date): EventTimeWindow {
  const max = new Date(now.getTime());
  max.setUTCFullYear(max.getUTCFullYear() + 1);
  return { minMs: EVENT_TIME_MIN_MS, maxMs: max.getTime() };
}

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * A monetary value as decimal text for a numeric column, or null. Numbers print in JavaScript's
 * shortest round-trip form (9.99 stays "9.99"); decimal strings pass as written ("12.50").
 * Anything else (NaN-like text, booleans, objects) has no value.
 */
export function decimalText(value: unknown): string | null {
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : null;
  if (typeof value === 'string') {
    const trimmed = value.trim();
    // Guard the exponent: numeric accepts up to ~1e131071, and nobody's order is worth more than 1e300.
    if (DECIMAL.test(trimmed) && Number.isFinite(Number(trimmed))) return trimmed;
  }
  return null;
}

function textOrNull(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return null;
}

function objectOrNull(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

/** Klaviyo's own keys inside event_properties that carry what Create Event sends as attributes. */
export function eventDefaults(properties: Record<string, unknown>): {
  value: string | null;
  valueCurrency: string | null;
  uniqueId: string | null;
} {
  return {
    value: decimalText(properties.$value),
    valueCurrency: textOrNull(properties.$value_currency),
    uniqueId: textOrNull(properties.$event_id),
  };
}

export function metricUpsertFrom(resource: MetricResource, original: Record<string, unknown>): MetricUpsert {
  const a = resource.attributes;
  return {
    id: resource.id,
    isStub: false,
    name: a.name,
    integration: a.integration ?? null,
    created: a.created ? parseIsoInstant(a.created).iso : null,
    updated: a.updated ? parseIsoInstant(a.updated).iso : null,
    rawData: original,
  };
}

export function profileAttributesFrom(
  attributes: ProfileIdentity['attributes'] | ProfileResource['attributes'] | undefined,
): ProfileAttributes {
  const a = attributes ?? {};
  return {
    email: a.email ?? null,
    phone_number: a.phone_number ?? null,
    external_id: a.external_id ?? null,
    anonymous_id: a.anonymous_id ?? null,
    first_name: a.first_name ?? null,
    last_name: a.last_name ?? null,
    organization: a.organization ?? null,
    locale: a.locale ?? null,
    title: a.title ?? null,
    image: a.image ?? null,
    location: objectOrNull(a.location),
    properties: objectOrNull(a.properties),
  };
}

/**
 * `lastEventDate` is what Klaviyo states on the resource; readers take the later of it and the
 * profile's newest stored event.
 */
export function profileUpsertFrom(resource: ProfileResource, original: Record<string, unknown>): ProfileUpsert {
  const a = resource.attributes;
  return {
    id: resource.id,
    isStub: false,
    ...profileAttributesFrom(a),
    created: a.created ? parseIsoInstant(a.created).iso : null,
    updated: a.updated ? parseIsoInstant(a.updated).iso : null,
    lastEventDate: a.last_event_date ? parseIsoInstant(a.last_event_date).iso : null,
    rawData: original,
  };
}
