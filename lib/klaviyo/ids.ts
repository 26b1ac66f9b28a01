import { createHash } from 'node:crypto';

/**
 * Ids for what this server creates itself (Create Event, Bulk Create Events), in Klaviyo's styles:
 * profiles 26 uppercase Crockford base32 characters like a ULID (01GDDKASAP8TKDDA2GRZDSVP4H),
 * metrics 6 base62 characters (0rG4eQ). They are derived from what identifies the thing (a hash),
 * not drawn at random: a retried request, or two concurrent ones, then name the same row and meet
 * on its primary key instead of creating twins.
 */
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function digest(parts: readonly string[]): Buffer {
  const hash = createHash('sha256');
  // A NUL separator cannot occur inside the parts (ingest rejects NUL), so the encoding is unambiguous.
  for (const part of parts) hash.update(part, 'utf8').update('\0');
  return hash.digest();
}

/** 128 bits as 26 Crockford base32 characters; the first one is 0-7, as in a ULID. */
function crockford128(bytes: Buffer): string {
  let n = 0n;
  for (let i = 0; i < 16; i += 1) n = (n << 8n) | BigInt(bytes[i] as number);
  let out = '';
  for (let i = 0; i < 26; i += 1) {
    out = CROCKFORD[Number(n & 31n)] + out;
    n >>= 5n;
  }
  return out;
}

export type ProfileIdentifierKind = 'email' | 'phone_number' | 'external_id' | 'anonymous_id' | '_kx';

/** The id a new profile gets from its strongest identifier (emails compared case-insensitively). */
export function profileIdFor(kind: ProfileIdentifierKind, value: string): string {
  const normalised = kind === 'email' ? value.trim().toLowerCase() : value.trim();
  return crockford128(digest(['profile', kind, normalised]));
}

/**
 * A new metric's id from its name. `attempt` moves to another id in the rare case that the first
 * one already belongs to a metric of another name (62^6 ids).
 */
export function metricIdFor(name: string, attempt = 0): string {
  const bytes = digest(['metric', name, String(attempt)]);
  let n = bytes.readBigUInt64BE(0);
  let out = '';
  for (let i = 0; i < 6; i += 1) {
    out += BASE62[Number(n % 62n)];
    n /= 62n;
  }
  return out;
}

/**
 * An event created through Klaviyo's write shapes: its id is a function of metric, profile and
 * `unique_id` (or the event time to the second when there is none), which is how Klaviyo
 * de-duplicates such events.
 */
export function createdEventIdFor(metricId: string, profileId: string, dedupKey: string): string {
  return crockford128(digest(['event', metricId, profileId, dedupKey]));
}

/** A name-based (version 5 style, SHA-256 truncated) UUID for an event this server created. */
export function eventUuidFor(eventId: string): string {
  const b = digest(['event-uuid', eventId]).subarray(0, 16);
  b[6] = ((b[6] as number) & 0x0f) | 0x50;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
