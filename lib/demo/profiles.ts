import {
  CUSTOMER_TIERS,
  EMAIL_DOMAINS,
  FIRST_NAMES,
  LAST_NAMES,
  ORGANIZATIONS,
  PLACES,
  SOURCES,
  STREETS,
  TITLES,
  type Place,
} from './catalog';
import { deriveSeed, isoSeconds, mix32, Random, ulidFromWords } from './random';
import type { JsonObject, ProfileResource } from './types';

/**
 * Profiles are a pure function of (seed, index, window start): the generator never holds them, it
 * rebuilds a profile whenever a page references it, and every page sees the same resource.
 */
export const KLAVIYO_API_URL = 'https://a.klaviyo.com/api';

const DAY_MS = 86_400_000;
/** Profiles were created during the three years before the window starts. */
const PROFILE_HISTORY_MS = 3 * 365 * DAY_MS;

export interface ProfileTraits {
  readonly hasEmail: boolean;
  readonly hasPhone: boolean;
  readonly emailDomain: string;
}

const PLACE_TOTAL = PLACES.reduce((sum, p) => sum + p.weight, 0);

function pickPlace(random: Random): Place {
  let roll = random.next() * PLACE_TOTAL;
  for (const place of PLACES) {
    roll -= place.weight;
    if (roll < 0) return place;
  }
  return PLACES[PLACES.length - 1] as Place;
}

function traitBits(seed: number, index: number): number {
  return deriveSeed(seed ^ 0x7a17, index);
}

/**
 * Which identifiers a profile has, without building it (the event generator asks for every SMS and
 * email event): 95% have an email address, 40% a phone number, and everyone has at least one.
 */
export function profileTraits(seed: number, index: number): ProfileTraits {
  const bits = traitBits(seed, index);
  const hasPhone = (bits & 1023) < 410;
  const hasEmail = ((bits >>> 10) & 1023) < 973 || !hasPhone;
  return { hasEmail, hasPhone, emailDomain: EMAIL_DOMAINS[(bits >>> 20) % EMAIL_DOMAINS.length] as string };
}

const FIRST_NAMES_ASCII = FIRST_NAMES.map(ascii);
const LAST_NAMES_ASCII = LAST_NAMES.map(ascii);

function ascii(text: string): string {
  return text.toLowerCase().replace(/[^a-z]/g, '');
}

export interface ProfileBuildOptions {
  readonly seed?: number;
  /** The window's start; profiles are created before it. */
  readonly start?: Date;
  /** Include JSON:API links as Klaviyo does (default true). */
  readonly links?: boolean;
}

export const DEFAULT_SEED = 1;
export const DEFAULT_START = new Date('2025-01-01T00:00:00Z');
export const DEFAULT_END = new Date('2026-01-01T00:00:00Z');

interface ProfileCore {
  readonly id: string;
  readonly createdMs: number;
  readonly updatedMs: number;
}

/**
 * A profile's id and dates come from hashes of (seed, index), not from its attribute stream, so the
 * generator can compute the id that every event needs without building the whole profile.
 */
function profileWord(key: number, k: number): number {
  return mix32((key + Math.imul(k, 0x9e3779b9)) | 0);
}

function profileCore(seed: number, startMs: number, index: number): ProfileCore {
  const key = deriveSeed(seed ^ 0x1d5eed, index);
  const createdMs = startMs - 1000 - Math.floor((profileWord(key, 1) / 4294967296) * PROFILE_HISTORY_MS);
  const updatedMs = createdMs + Math.floor((profileWord(key, 2) / 4294967296) * (startMs - createdMs));
  const id = ulidFromWords(
    createdMs,
    profileWord(key, 3),
    profileWord(key, 4),
    profileWord(key, 5),
    profileWord(key, 6),
  );
  return { id, createdMs, updatedMs };
}

/** A profile's 26-character ULID id; the same for the same (seed, index, start). */
export function profileId(index: number, options: Omit<ProfileBuildOptions, 'links'> = {}): string {
  return profileCore(options.seed ?? DEFAULT_SEED, (options.start ?? DEFAULT_START).getTime(), index).id;
}

/**
 * The profile resource of index `index` (0-based) as Klaviyo returns it in `included`. Ids are
 * ULIDs timed at the profile's creation; emails, phone numbers and external ids are unique per
 * index.
 */
export function buildProfileResource(index: number, options: ProfileBuildOptions = {}): ProfileResource {
  const seed = options.seed ?? DEFAULT_SEED;
  const { id, createdMs, updatedMs } = profileCore(seed, (options.start ?? DEFAULT_START).getTime(), index);
  const random = new Random(deriveSeed(seed ^ 0x9f0f11e, index));
  const traits = profileTraits(seed, index);
  const first = random.int(FIRST_NAMES.length);
  const last = random.int(LAST_NAMES.length);
  const place = pickPlace(random);
  const email = traits.hasEmail
    ? `${FIRST_NAMES_ASCII[first]}.${LAST_NAMES_ASCII[last]}${index}@${traits.emailDomain}`
    : null;
  // 555 is the fictional area code; (index * 7919 + c) mod 10^7 is a bijection, so numbers are unique.
  const phone = traits.hasPhone ? `+1555${String((index * 7919 + 1_234_567) % 10_000_000).padStart(7, '0')}` : null;
  const hasExternalId = random.chance(0.55);
  const isBusiness = random.chance(0.15);
  const properties: JsonObject = {
    $source: random.pick(SOURCES),
    'Accepts Marketing': random.chance(0.8),
    'Customer Tier': random.pick(CUSTOMER_TIERS),
  };
  if (random.chance(0.3))
    properties['Favorite Category'] = random.pick(['Apparel', 'Home', 'Outerwear', 'Bags', 'Footwear']);
  const documentationIp = `${random.pick(['192.0.2', '198.51.100', '203.0.113'])}.${1 + random.int(254)}`;
  const resource: ProfileResource = {
    type: 'profile',
    id,
    attributes: {
      email,
      phone_number: phone,
      external_id: hasExternalId ? String(6_100_000_000_000 + index * 13) : null,
      first_name: FIRST_NAMES[first] as string,
      last_name: LAST_NAMES[last] as string,
      organization: isBusiness ? random.pick(ORGANIZATIONS) : null,
      locale: place.locale,
      title: isBusiness ? random.pick(TITLES) : null,
      image: null,
      created: isoSeconds(Math.floor(createdMs / 1000)),
      updated: isoSeconds(Math.floor(updatedMs / 1000)),
      location: {
        address1: `${1 + random.int(9899)} ${random.pick(STREETS)}`,
        address2: random.chance(0.2) ? `Apt ${1 + random.int(40)}` : null,
        city: place.city,
        country: place.country,
        latitude: place.latitude,
        longitude: place.longitude,
        region: place.region,
        zip: place.zip,
        timezone: place.timezone,
        ip: documentationIp,
      },
      properties,
    },
  };
  if (options.links ?? true) resource.links = { self: `${KLAVIYO_API_URL}/profiles/${id}` };
  return resource;
}
