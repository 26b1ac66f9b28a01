import { z } from 'zod';

/**
 * Klaviyo's JSON:API resources as ingest accepts them (revision 2026-07-15 of Klaviyo's OpenAPI
 * specification; tests/fixtures/klaviyo holds examples). Objects are loose: fields Klaviyo adds
 * later pass validation and reach raw_data, which stores each resource exactly as received.
 *
 * Limits that cut across every field (string size, NUL, nesting depth) are checked by
 * lib/app/ingest/validation.ts on the whole document; these schemas check shape and per-field rules.
 */

/** Every id column is varchar(64). */
export const ID_MAX_LENGTH = 64;
/** Klaviyo: "Name of the event. Must be less than 128 characters." */
export const METRIC_NAME_MAX_LENGTH = 127;
/** Klaviyo: event properties "must not exceed 400 properties". */
export const MAX_EVENT_PROPERTIES = 400;

export const resourceId = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(ID_MAX_LENGTH, { error: `must be at most ${ID_MAX_LENGTH} characters` });

/**
 * ISO 8601 date-time as Klaviyo writes it: with an offset (2022-11-08T01:23:45+00:00, or Z), or
 * without one for metric timestamps ("YYYY-MM-DDTHH:MM:SS.mmmmmm"), which are read as UTC.
 */
export const isoDateTime = z.iso.datetime({
  offset: true,
  local: true,
  error: 'must be an ISO 8601 date-time such as 2022-11-08T01:23:45+00:00',
});

// A free-form JSON object (event_properties, location, properties, integration). z.custom checks
// the type without copying the object key by key, as z.record would: these bags are most of a page.
const jsonObject = z.custom<Record<string, unknown>>(
  (value) => value !== null && typeof value === 'object' && !Array.isArray(value),
  { error: 'must be a JSON object' },
);
const nullableText = z.string({ error: 'must be a string or null' }).nullish();

const relationship = <T extends string>(type: T) =>
  z.looseObject({
    type: z.literal(type, { error: `must be "${type}"` }),
    id: resourceId,
  });

// ---------------------------------------------------------------------------------------------
// Resources of GET /api/events?include=metric,profile, GET /api/profiles and GET /api/metrics.

export const EventResourceSchema = z.looseObject({
  type: z.literal('event', { error: 'must be "event"' }),
  id: resourceId,
  attributes: z.looseObject(
    {
      timestamp: z
        .number({ error: 'must be a whole number of seconds' })
        .int({ error: 'must be a whole number of seconds' })
        .nullish(),
      datetime: isoDateTime.nullish(),
      event_properties: jsonObject.nullish(),
      uuid: nullableText,
      // Not in Klaviyo's GET shape, where the value travels as event_properties.$value; a producer
      // that sends it explicitly wins (see lib/klaviyo/mapping.ts).
      value: z.union([z.number(), z.string()], { error: 'must be a number' }).nullish(),
      value_currency: nullableText,
      unique_id: nullableText,
    },
    { error: 'must be an object' },
  ),
  relationships: z.looseObject(
    {
      metric: z.looseObject({ data: relationship('metric') }, { error: 'is required: every event has a metric' }),
      profile: z.looseObject({ data: relationship('profile').nullable() }).nullish(),
    },
    { error: 'must be an object with the metric (and profile) relationships' },
  ),
});

export const MetricResourceSchema = z.looseObject({
  type: z.literal('metric', { error: 'must be "metric"' }),
  id: resourceId,
  attributes: z.looseObject(
    {
      name: z.string({ error: 'is required and must be a string' }).min(1, { error: 'must not be empty' }),
      created: isoDateTime.nullish(),
      updated: isoDateTime.nullish(),
      integration: jsonObject.nullish(),
    },
    { error: 'must be an object' },
  ),
});
export type MetricResource = z.infer<typeof MetricResourceSchema>;

const profileAttributeFields = {
  email: nullableText,
  phone_number: nullableText,
  external_id: nullableText,
  anonymous_id: nullableText,
  first_name: nullableText,
  last_name: nullableText,
  organization: nullableText,
  locale: nullableText,
  title: nullableText,
  image: nullableText,
  location: jsonObject.nullish(),
  properties: jsonObject.nullish(),
};

export const ProfileResourceSchema = z.looseObject({
  type: z.literal('profile', { error: 'must be "profile"' }),
  id: resourceId,
  attributes: z.looseObject(
    {
      ...profileAttributeFields,
      created: isoDateTime.nullish(),
      updated: isoDateTime.nullish(),
      last_event_date: isoDateTime.nullish(),
    },
    { error: 'must be an object' },
  ),
});
export type ProfileResource = z.infer<typeof ProfileResourceSchema>;

/** The envelope of an events page; data items and included items are checked one by one. */
export const EventsPageSchema = z.looseObject({
  data: z.array(z.unknown(), { error: 'must be an array of event resources' }),
  included: z.array(z.unknown(), { error: 'must be an array of metric and profile resources' }).nullish(),
});

/** POST /api/profiles and POST /api/metrics: `data` is a list of resources. */
export const ResourceListSchema = z.looseObject({
  data: z.array(z.unknown(), { error: 'must be an array of resources' }),
});

// ---------------------------------------------------------------------------------------------
// Klaviyo's write shapes: Create Event (POST /api/events with one object) and Bulk Create Events.

/** EventProfileCreateQueryResourceObject / OnsiteProfileCreateQueryResourceObject. */
export const ProfileIdentitySchema = z.looseObject({
  type: z.literal('profile', { error: 'must be "profile"' }),
  id: resourceId.nullish(),
  attributes: z
    .looseObject(
      {
        ...profileAttributeFields,
        _kx: nullableText,
        meta: z.unknown().optional(),
      },
      { error: 'must be an object' },
    )
    .optional(),
});
export type ProfileIdentity = z.infer<typeof ProfileIdentitySchema>;

const eventProperties = jsonObject.refine((p) => Object.keys(p).length <= MAX_EVENT_PROPERTIES, {
  error: `must not have more than ${MAX_EVENT_PROPERTIES} properties`,
});

const metricByName = z.looseObject(
  {
    data: z.looseObject({
      type: z.literal('metric', { error: 'must be "metric"' }),
      attributes: z.looseObject({
        name: z
          .string({ error: 'is required and must be a string' })
          .min(1, { error: 'must not be empty' })
          .max(METRIC_NAME_MAX_LENGTH, { error: `must be less than ${METRIC_NAME_MAX_LENGTH + 1} characters` }),
        service: nullableText,
      }),
    }),
  },
  { error: 'is required' },
);

const createdEventFields = {
  properties: eventProperties,
  time: isoDateTime.nullish(),
  value: z.number({ error: 'must be a number' }).nullish(),
  value_currency: z
    .string({ error: 'must be an ISO 4217 currency code' })
    .regex(/^[A-Za-z]{3}$/, { error: 'must be an ISO 4217 currency code such as USD' })
    .nullish(),
  unique_id: z.string({ error: 'must be a string' }).min(1, { error: 'must not be empty' }).nullish(),
  metric: metricByName,
};

export const CreateEventBodySchema = z.looseObject({
  data: z.looseObject({
    type: z.literal('event', { error: 'must be "event"' }),
    attributes: z.looseObject(
      {
        ...createdEventFields,
        profile: z.looseObject({ data: ProfileIdentitySchema }, { error: 'is required' }),
      },
      { error: 'must be an object' },
    ),
  }),
});

export const BulkEventEntrySchema = z.looseObject({
  type: z.literal('event', { error: 'must be "event"' }),
  attributes: z.looseObject(createdEventFields, { error: 'must be an object' }),
});
/** An event's attributes in Create Event and Bulk Create Events (Create Event adds `profile`). */
export type CreatedEventAttributes = z.infer<typeof BulkEventEntrySchema>['attributes'];

export const BulkProfileEntrySchema = z.looseObject({
  type: z.literal('event-bulk-create', { error: 'must be "event-bulk-create"' }),
  attributes: z.looseObject(
    {
      profile: z.looseObject({ data: ProfileIdentitySchema }, { error: 'is required' }),
      // Checked one by one (BulkEventEntrySchema), so that one bad event does not hide the others.
      events: z.looseObject(
        { data: z.array(z.unknown(), { error: 'must be an array of events' }) },
        { error: 'is required' },
      ),
      backfill: z.boolean({ error: 'must be a boolean' }).nullish(),
    },
    { error: 'must be an object' },
  ),
});

/** The envelope of Bulk Create Events; the entries are checked one by one. */
export const BulkCreateBodySchema = z.looseObject({
  data: z.looseObject({
    type: z.literal('event-bulk-create-job', { error: 'must be "event-bulk-create-job"' }),
    attributes: z.looseObject({
      'events-bulk-create': z.looseObject(
        { data: z.array(z.unknown(), { error: 'must be an array of event-bulk-create entries' }) },
        { error: 'is required' },
      ),
    }),
  }),
});

// ---------------------------------------------------------------------------------------------
// Klaviyo's profile writes: Create Profile (POST /api/profiles with one object), Create or Update
// Profile (POST /api/profile-import) and Bulk Import Profiles (POST /api/profile-bulk-import-jobs).

/** ProfileCreateQueryResourceObject / ProfileUpsertQueryResourceObject (`id` only on the upsert). */
export const ProfileWriteSchema = z.looseObject({
  type: z.literal('profile', { error: 'must be "profile"' }),
  id: resourceId.nullish(),
  attributes: z.looseObject(
    {
      ...profileAttributeFields,
      _kx: nullableText,
      meta: z.unknown().optional(),
    },
    { error: 'must be an object' },
  ),
});
export type ProfileWrite = z.infer<typeof ProfileWriteSchema>;

export const ProfileWriteBodySchema = z.looseObject({
  data: z.unknown().refine((d) => d !== null && typeof d === 'object' && !Array.isArray(d), {
    error: 'must be one profile resource',
  }),
});

export const ProfileImportJobBodySchema = z.looseObject({
  data: z.looseObject({
    type: z.literal('profile-bulk-import-job', { error: 'must be "profile-bulk-import-job"' }),
    attributes: z.looseObject(
      {
        profiles: z.looseObject(
          { data: z.array(z.unknown(), { error: 'must be an array of profile resources' }) },
          { error: 'is required' },
        ),
      },
      { error: 'must be an object' },
    ),
    relationships: z.unknown().optional(),
  }),
});
