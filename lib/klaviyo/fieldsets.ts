import { HttpError, type ErrorItem } from './errors';
import type { JsonApiResource } from './resources';

/**
 * Klaviyo's sparse fieldsets (`fields[event]`, `fields[metric]`, `fields[profile]`, nested names such
 * as `location.city` included) and `additional-fields[profile]`, as its OpenAPI spec (revision
 * 2026-07-15) lists them per route. A fieldset restricts a resource's attributes, on `data` and on
 * `included` alike; `type`, `id`, relationships and links stay. Fieldsets for types this backend
 * never returns (`fields[attribution]`, `fields[conversation]`, ...) are accepted: they shape nothing.
 */
export type QueryParams = Readonly<Record<string, string>>;

const words = (...lines: string[]): string[] => lines.join(' ').split(' ');

const LOCATION = words('address1 address2 city country ip latitude longitude region timezone zip');
const PREDICTIVE = words(
  'average_days_between_orders average_order_value churn_probability expected_date_of_next_order',
  'historic_clv historic_number_of_orders predicted_clv predicted_number_of_orders',
  'ranked_channel_affinity total_clv',
);
const SUBSCRIPTIONS = words(
  'email email.marketing email.marketing.can_receive_email_marketing email.marketing.consent',
  'email.marketing.consent_timestamp email.marketing.custom_method_detail email.marketing.double_optin',
  'email.marketing.last_updated email.marketing.list_suppressions email.marketing.method',
  'email.marketing.method_detail email.marketing.suppression email.open_tracking',
  'email.open_tracking.can_receive email.open_tracking.consent email.open_tracking.consent_timestamp',
  'email.open_tracking.created_timestamp email.open_tracking.last_updated email.open_tracking.metadata',
  'email.open_tracking.valid_until mobile_push mobile_push.marketing',
  'mobile_push.marketing.can_receive_push_marketing mobile_push.marketing.consent',
  'mobile_push.marketing.consent_timestamp sms sms.marketing sms.marketing.can_receive_sms_marketing',
  'sms.marketing.consent sms.marketing.consent_timestamp sms.marketing.last_updated',
  'sms.marketing.method sms.marketing.method_detail sms.transactional',
  'sms.transactional.can_receive_sms_transactional sms.transactional.consent',
  'sms.transactional.consent_timestamp sms.transactional.last_updated sms.transactional.method',
  'sms.transactional.method_detail whatsapp whatsapp.conversational whatsapp.conversational.can_receive',
  'whatsapp.conversational.consent whatsapp.conversational.consent_timestamp',
  'whatsapp.conversational.created_timestamp whatsapp.conversational.last_updated',
  'whatsapp.conversational.metadata whatsapp.conversational.phone_number',
  'whatsapp.conversational.valid_until whatsapp.marketing whatsapp.marketing.can_receive',
  'whatsapp.marketing.consent whatsapp.marketing.consent_timestamp whatsapp.marketing.created_timestamp',
  'whatsapp.marketing.last_updated whatsapp.marketing.metadata whatsapp.marketing.phone_number',
  'whatsapp.marketing.valid_until whatsapp.transactional whatsapp.transactional.can_receive',
  'whatsapp.transactional.consent whatsapp.transactional.consent_timestamp',
  'whatsapp.transactional.created_timestamp whatsapp.transactional.last_updated',
  'whatsapp.transactional.metadata whatsapp.transactional.phone_number',
  'whatsapp.transactional.valid_until',
);

/** The names each fieldset takes: Klaviyo's enums, plus this backend's metric figures. */
export const FIELD_NAMES: Readonly<Record<'event' | 'metric' | 'profile', readonly string[]>> = {
  event: ['datetime', 'event_properties', 'id', 'timestamp', 'uuid'],
  metric: [
    'created',
    'id',
    'integration',
    'name',
    'updated',
    // Beyond Klaviyo: GET /api/metrics and /api/metrics/{id} carry these figures.
    'event_count',
    'first_event_datetime',
    'last_event_datetime',
  ],
  profile: [
    ...words(
      'created email external_id first_name id image last_event_date last_name locale location organization',
      'phone_number predictive_analytics properties subscriptions title updated',
    ),
    ...LOCATION.map((n) => `location.${n}`),
    ...PREDICTIVE.map((n) => `predictive_analytics.${n}`),
    ...SUBSCRIPTIONS.map((n) => `subscriptions.${n}`),
  ],
};

export const ADDITIONAL_PROFILE_FIELDS = ['subscriptions', 'predictive_analytics'] as const;
export type AdditionalProfileField = (typeof ADDITIONAL_PROFILE_FIELDS)[number];

export interface Fieldsets {
  /** The attribute names asked for, by resource type; a type without an entry keeps every attribute. */
  readonly byType: ReadonlyMap<string, readonly string[]>;
  /** What `additional-fields[profile]` (or a `fields[profile]` naming them) adds to profiles. */
  readonly additionalProfile: ReadonlySet<AdditionalProfileField>;
}

function list(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * The fieldsets of a request. Only `fields[...]` parameters the route takes reach here (the caller
 * checks the parameter names); an unknown attribute name is a 400 naming the parameter, as on Klaviyo.
 */
export function parseFieldsets(query: QueryParams): Fieldsets {
  const byType = new Map<string, string[]>();
  const problems: ErrorItem[] = [];
  for (const [key, value] of Object.entries(query)) {
    const type = /^fields\[([a-z-]+)\]$/.exec(key)?.[1];
    if (type === undefined) continue;
    const names = list(value);
    const known = FIELD_NAMES[type as keyof typeof FIELD_NAMES] as readonly string[] | undefined;
    const unknown = known ? names.filter((n) => !known.includes(n)) : [];
    if (names.length === 0 || unknown.length > 0) {
      problems.push({
        code: 'invalid',
        detail:
          names.length === 0
            ? `${key} names no field.`
            : `${key} does not take ${unknown.map((n) => JSON.stringify(n.slice(0, 100))).join(', ')}; it takes ${(known ?? []).filter((n) => !n.includes('.')).join(', ')} (and their nested names).`,
        parameter: key,
      });
      continue;
    }
    byType.set(type, names);
  }
  const additional = new Set<AdditionalProfileField>();
  const additionalText = query['additional-fields[profile]'];
  if (additionalText !== undefined) {
    for (const name of list(additionalText)) {
      if (!(ADDITIONAL_PROFILE_FIELDS as readonly string[]).includes(name)) {
        problems.push({
          code: 'invalid',
          detail: `additional-fields[profile] takes ${ADDITIONAL_PROFILE_FIELDS.join(', ')}, not ${JSON.stringify(name.slice(0, 100))}.`,
          parameter: 'additional-fields[profile]',
        });
      } else additional.add(name as AdditionalProfileField);
    }
  }
  for (const name of byType.get('profile') ?? []) {
    const root = name.split('.')[0];
    if (root === 'subscriptions' || root === 'predictive_analytics') additional.add(root);
  }
  if (problems.length > 0) throw new HttpError(400, problems);
  return { byType, additionalProfile: additional };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** `location.city` of the attributes, placed at the same path in `out` (null when absent). */
function copyPath(from: Record<string, unknown>, out: Record<string, unknown>, path: readonly string[]): void {
  const [head, ...rest] = path as [string, ...string[]];
  const value = from[head];
  if (rest.length === 0) {
    out[head] = value === undefined ? null : value;
    return;
  }
  if (!isObject(out[head])) {
    if (!isObject(value)) {
      // Nothing stored under the parent: the parent is null, as an absent object is.
      if (!(head in out)) out[head] = null;
      return;
    }
    out[head] = {};
  }
  copyPath(isObject(value) ? value : {}, out[head] as Record<string, unknown>, rest);
}

/** The resource with only the named attributes (`id` names nothing: the id is always there). */
export function applyFieldset(resource: JsonApiResource, names: readonly string[] | undefined): JsonApiResource {
  if (names === undefined) return resource;
  const attributes: Record<string, unknown> = {};
  for (const name of names) {
    if (name === 'id') continue;
    copyPath(resource.attributes, attributes, name.split('.'));
  }
  return { ...resource, attributes };
}

/** Each resource with its type's fieldset applied. */
export function withFieldsets(resources: readonly JsonApiResource[], fieldsets: Fieldsets): JsonApiResource[] {
  return resources.map((r) => applyFieldset(r, fieldsets.byType.get(r.type)));
}
