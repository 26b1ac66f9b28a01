import type { Integration } from './catalog';

/**
 * The JSON:API shapes of Klaviyo's GET /api/events?include=metric,profile, as the generator emits
 * them (see tests/fixtures/klaviyo/events-page.json).
 */
export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export interface ResourceIdentifier<T extends string> {
  type: T;
  id: string;
}

export interface RelationshipLinks {
  self: string;
  related: string;
}

export interface Relationship<T extends string> {
  data: ResourceIdentifier<T>;
  links?: RelationshipLinks;
}

export interface EventAttributes {
  /** Unix seconds. */
  timestamp: number;
  event_properties: JsonObject;
  /** ISO 8601 with an explicit offset, e.g. 2022-11-08T01:23:45+00:00. */
  datetime: string;
  uuid: string;
}

export interface EventResource {
  type: 'event';
  id: string;
  attributes: EventAttributes;
  relationships: {
    profile: Relationship<'profile'>;
    metric: Relationship<'metric'>;
  };
  links?: { self: string };
}

export interface MetricResource {
  type: 'metric';
  id: string;
  attributes: {
    name: string;
    created: string;
    updated: string;
    integration: Integration;
  };
  links?: { self: string };
}

export interface ProfileLocation {
  address1: string | null;
  address2: string | null;
  city: string | null;
  country: string | null;
  latitude: string | null;
  longitude: string | null;
  region: string | null;
  zip: string | null;
  timezone: string | null;
  ip: string | null;
}

export interface ProfileResource {
  type: 'profile';
  id: string;
  attributes: {
    email: string | null;
    phone_number: string | null;
    external_id: string | null;
    first_name: string | null;
    last_name: string | null;
    organization: string | null;
    locale: string | null;
    title: string | null;
    image: string | null;
    created: string;
    updated: string;
    location: ProfileLocation;
    properties: JsonObject;
  };
  links?: { self: string };
}

export type IncludedResource = MetricResource | ProfileResource;

export interface EventsPageDocument {
  data: EventResource[];
  links: { self: string; next: string | null };
  included: IncludedResource[];
}
