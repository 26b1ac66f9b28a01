import type { Db } from '../db/port';
import { HttpError } from '../klaviyo/errors';
import { listMetrics, type MetricSummary } from '../repositories/metrics';
import { getProfileById } from '../repositories/profiles';
import {
  getEventById,
  getMetricsByIds,
  getProfilesByIds,
  listEvents,
  listProfiles,
  type EventRow,
  type ProfileKey,
  type ProfileListRow,
  type ProfileSortField,
  type ProfileTimeBound,
} from '../repositories/reads';
import { parseFieldsets, withFieldsets, type Fieldsets } from '../klaviyo/fieldsets';
import {
  checkKnownParams,
  conditionInstantMicros,
  conditionList,
  conditionText,
  decodeKeyset,
  fingerprint,
  includes,
  isoFromMicros,
  keysetPage,
  linkTo,
  pageLinks,
  pageSize,
  parameterError,
  parseFilterParam,
  type QueryParams,
} from '../klaviyo/listParams';
import {
  eventResource,
  includedMetric,
  includedProfile,
  metricResource,
  metricSummaryResource,
  profileResource,
  type JsonApiResource,
} from '../klaviyo/resources';

/**
 * The GET routes as library calls (handlers stay thin; scripts can export without HTTP): Klaviyo's
 * Get Events, Get Event, Get Profiles, Get Profile, a profile's timeline, Get Metrics and Get Metric,
 * each returning a JSON:API document.
 */
export interface ListDocument {
  readonly data: readonly JsonApiResource[];
  readonly links: { readonly self: string; readonly next?: string; readonly prev?: string };
  readonly included?: readonly JsonApiResource[];
}

export interface ResourceDocument {
  readonly data: JsonApiResource;
  readonly links: { readonly self: string };
  readonly included?: readonly JsonApiResource[];
}

export interface RequestContext {
  readonly baseUrl: string;
  readonly query: QueryParams;
}

export const EVENTS_PAGE = { size: 200, max: 1000 } as const;
export const PROFILES_PAGE = { size: 20, max: 100 } as const;
export const METRICS_PAGE = { size: 200, max: 1000 } as const;

const EVENT_INCLUDES = ['metric', 'profile'] as const;
type EventInclude = (typeof EVENT_INCLUDES)[number];

/**
 * The query parameters Klaviyo documents on each route (revision 2026-07-15), plus page[size] on
 * GET /api/metrics (ours). Every one is accepted; those naming data this backend never stores
 * (include=attributions, conversations, ...) are 400s that say so.
 */
const EVENT_FIELDS = ['fields[attribution]', 'fields[event]', 'fields[metric]', 'fields[profile]'];
const PROFILE_FIELDS = ['additional-fields[profile]', 'fields[profile]'];
export const ROUTE_PARAMS = {
  events: ['filter', 'sort', 'page[size]', 'page[cursor]', 'include', ...EVENT_FIELDS],
  event: ['include', ...EVENT_FIELDS],
  profiles: [
    'filter',
    'sort',
    'page[size]',
    'page[cursor]',
    'include',
    ...PROFILE_FIELDS,
    'fields[conversation]',
    'fields[push-token]',
  ],
  profile: [
    'include',
    ...PROFILE_FIELDS,
    'fields[conversation]',
    'fields[list]',
    'fields[push-token]',
    'fields[segment]',
  ],
  metrics: ['filter', 'page[size]', 'page[cursor]', 'include', 'fields[flow]', 'fields[metric]'],
  metric: ['include', 'fields[flow]', 'fields[metric]'],
  eventMetric: ['fields[metric]'],
  eventProfile: PROFILE_FIELDS,
  relationship: [],
} as const;
const UNAVAILABLE_INCLUDES = {
  event: ['attributions'],
  profile: ['conversations', 'push-tokens', 'lists', 'segments'],
  metric: ['flow-triggers'],
} as const;

/** Checks the route's parameters and reads its fieldsets. */
function routeParams(query: QueryParams, allowed: readonly string[]): Fieldsets {
  checkKnownParams(query, allowed);
  return parseFieldsets(query);
}

function notFound(what: string, id: string): HttpError {
  return new HttpError(404, {
    code: 'not_found',
    detail: `No ${what} with id ${JSON.stringify(id.slice(0, 100))}.`,
    parameter: 'id',
  });
}

/**
 * The metrics and profiles a page of events names, as `included`. Stubs (ids events referenced
 * before their resource arrived) are left out: the events' relationships carry the ids, and an
 * importer makes the same stubs from them, whereas an included stub would arrive as a real resource.
 */
async function includedFor(
  db: Db,
  accountId: string,
  events: readonly EventRow[],
  wanted: ReadonlySet<EventInclude>,
  baseUrl: string,
  fieldsets: Fieldsets,
): Promise<JsonApiResource[]> {
  const out: JsonApiResource[] = [];
  if (wanted.has('metric')) {
    const metrics = await getMetricsByIds(
      db,
      accountId,
      events.map((e) => e.metricId),
    );
    out.push(...metrics.filter((m) => !m.isStub).map((m) => includedMetric(m, baseUrl)));
  }
  if (wanted.has('profile')) {
    const profiles = await getProfilesByIds(
      db,
      accountId,
      events.flatMap((e) => (e.profileId === null ? [] : [e.profileId])),
    );
    out.push(...profiles.filter((p) => !p.isStub).map((p) => includedProfile(p, baseUrl)));
  }
  return withFieldsets(out, fieldsets);
}

interface EventsFilter {
  metricId?: string;
  profileId?: string;
  /** has(profile): only events with a profile. */
  hasProfile?: boolean;
  fromUs?: number;
  toUs?: number;
}

function setOnce(filter: EventsFilter, key: 'metricId' | 'profileId', value: string, source: string): void {
  if (filter[key] !== undefined && filter[key] !== value)
    throw parameterError(
      'filter',
      `${source}: the filter names two different ${key === 'metricId' ? 'metric_id' : 'profile_id'} values.`,
    );
  filter[key] = value;
}

function eventsFilter(query: QueryParams, fields: readonly string[]): EventsFilter {
  const out: EventsFilter = {};
  for (const c of parseFilterParam(query)) {
    if (c.operator === 'has' && (c.field === 'profile' || c.field === 'metric') && c.value === undefined) {
      // Every event has a metric; has(profile) leaves out events without one.
      if (c.field === 'profile') out.hasProfile = true;
    } else if ((c.field === 'metric_id' || c.field === 'profile_id') && fields.includes(c.field)) {
      if (c.operator !== 'equals')
        throw parameterError('filter', `${c.source}: ${c.field} takes equals, e.g. equals(${c.field},"abc")`);
      setOnce(out, c.field === 'metric_id' ? 'metricId' : 'profileId', conditionText(c), c.source);
    } else if (c.field === 'datetime' || c.field === 'timestamp') {
      const at = conditionInstantMicros(c);
      // Kept as [from, to) at microsecond resolution: "greater than t" is ">= t + 1 µs".
      if (c.operator === 'greater-or-equal' || c.operator === 'greater-than') {
        const from = c.operator === 'greater-than' ? at + 1 : at;
        out.fromUs = Math.max(out.fromUs ?? -Infinity, from);
      } else if (c.operator === 'less-than' || c.operator === 'less-or-equal') {
        const to = c.operator === 'less-or-equal' ? at + 1 : at;
        out.toUs = Math.min(out.toUs ?? Infinity, to);
      } else {
        throw parameterError(
          'filter',
          `${c.source}: ${c.field} takes greater-or-equal, greater-than, less-or-equal or less-than`,
        );
      }
    } else {
      throw parameterError(
        'filter',
        `${c.source}: this route filters on ${[...fields, 'datetime', 'timestamp'].join(', ')}, and has(profile), has(metric)`,
      );
    }
  }
  return out;
}

function sortDescending(query: QueryParams, byDefault: boolean): boolean {
  const sort = query.sort;
  if (sort === undefined) return byDefault;
  if (sort === 'datetime' || sort === 'timestamp') return false;
  if (sort === '-datetime' || sort === '-timestamp') return true;
  throw parameterError('sort', 'sort takes datetime or timestamp, with - for newest first.');
}

async function eventsPage(
  db: Db,
  accountId: string,
  ctx: RequestContext,
  path: string,
  options: {
    readonly profileId?: string;
    readonly descendingByDefault: boolean;
    readonly filterFields: readonly string[];
  },
): Promise<ListDocument> {
  const fieldsets = routeParams(ctx.query, ROUTE_PARAMS.events);
  const filter = eventsFilter(ctx.query, options.filterFields);
  const descending = sortDescending(ctx.query, options.descendingByDefault);
  const size = pageSize(ctx.query, EVENTS_PAGE);
  const wanted = includes(ctx.query, EVENT_INCLUDES, UNAVAILABLE_INCLUDES.event);
  const profileId = options.profileId ?? filter.profileId;
  // The account is part of every cursor's fingerprint: a cursor of one account is refused in another.
  const print = fingerprint([
    'events',
    accountId,
    path,
    filter.metricId,
    profileId,
    filter.fromUs,
    filter.toUs,
    descending,
    filter.hasProfile === true,
  ]);
  const cursor = decodeKeyset(ctx.query, print, 2);
  const empty = filter.fromUs !== undefined && filter.toUs !== undefined && filter.toUs <= filter.fromUs;
  const { rows, next, prev } = await keysetPage(
    cursor,
    size,
    print,
    (e: EventRow) => [e.timestampText, e.id],
    (after, reversed, limit) =>
      empty
        ? Promise.resolve([])
        : listEvents(db, accountId, {
            ...(filter.metricId !== undefined ? { metricId: filter.metricId } : {}),
            ...(profileId !== undefined ? { profileId } : {}),
            ...(filter.hasProfile ? { hasProfile: true } : {}),
            ...(filter.fromUs !== undefined ? { from: isoFromMicros(filter.fromUs) } : {}),
            ...(filter.toUs !== undefined ? { to: isoFromMicros(filter.toUs) } : {}),
            descending: reversed ? !descending : descending,
            ...(after ? { after: { timestamp: after[0] as string, id: after[1] as string } } : {}),
            limit,
          }),
  );
  const document: ListDocument = {
    data: withFieldsets(
      rows.map((e) => eventResource(e, ctx.baseUrl)),
      fieldsets,
    ),
    links: pageLinks(ctx.baseUrl, path, ctx.query, next, prev),
  };
  return wanted.size > 0
    ? { ...document, included: await includedFor(db, accountId, rows, wanted, ctx.baseUrl, fieldsets) }
    : document;
}

/** GET /api/events: Klaviyo's Get Events; its pages are what POST /api/events ingests. */
export function getEventsDocument(db: Db, accountId: string, ctx: RequestContext): Promise<ListDocument> {
  return eventsPage(db, accountId, ctx, '/api/events', {
    descendingByDefault: false,
    filterFields: ['metric_id', 'profile_id'],
  });
}

/** GET /api/profiles/{id}/events: a profile's timeline, newest first unless sorted otherwise. */
export async function getProfileEventsDocument(
  db: Db,
  accountId: string,
  profileId: string,
  ctx: RequestContext,
): Promise<ListDocument> {
  const profile = await getProfileById(db, accountId, profileId);
  if (!profile) throw notFound('profile', profileId);
  return eventsPage(db, accountId, ctx, `/api/profiles/${encodeURIComponent(profileId)}/events`, {
    profileId,
    descendingByDefault: true,
    filterFields: ['metric_id'],
  });
}

/** GET /api/events/{id}. */
export async function getEventDocument(
  db: Db,
  accountId: string,
  id: string,
  ctx: RequestContext,
): Promise<ResourceDocument> {
  const fieldsets = routeParams(ctx.query, ROUTE_PARAMS.event);
  const wanted = includes(ctx.query, EVENT_INCLUDES, UNAVAILABLE_INCLUDES.event);
  const event = await getEventById(db, accountId, id);
  if (!event) throw notFound('event', id);
  const [data] = withFieldsets([eventResource(event, ctx.baseUrl)], fieldsets) as [JsonApiResource];
  const links = { self: linkTo(ctx.baseUrl, `/api/events/${encodeURIComponent(id)}`, {}) };
  return wanted.size > 0
    ? { data, links, included: await includedFor(db, accountId, [event], wanted, ctx.baseUrl, fieldsets) }
    : { data, links };
}

/** GET /api/events/{id}/metric: the event's metric (Klaviyo's Get Metric for Event). */
export async function getEventMetricDocument(
  db: Db,
  accountId: string,
  id: string,
  ctx: RequestContext,
): Promise<ResourceDocument> {
  const fieldsets = routeParams(ctx.query, ROUTE_PARAMS.eventMetric);
  const event = await getEventById(db, accountId, id);
  if (!event) throw notFound('event', id);
  const [metric] = await getMetricsByIds(db, accountId, [event.metricId]);
  if (!metric) throw notFound('metric', event.metricId);
  const [data] = withFieldsets([metricResource(metric, ctx.baseUrl)], fieldsets) as [JsonApiResource];
  return { data, links: { self: linkTo(ctx.baseUrl, `/api/events/${encodeURIComponent(id)}/metric`, {}) } };
}

/** GET /api/events/{id}/profile: the event's profile (Klaviyo's Get Profile for Event). */
export async function getEventProfileDocument(
  db: Db,
  accountId: string,
  id: string,
  ctx: RequestContext,
): Promise<ResourceDocument> {
  const fieldsets = routeParams(ctx.query, ROUTE_PARAMS.eventProfile);
  const event = await getEventById(db, accountId, id);
  if (!event) throw notFound('event', id);
  if (event.profileId === null) throw notFound('profile of event', id);
  const [profile] = await getProfilesByIds(db, accountId, [event.profileId]);
  if (!profile) throw notFound('profile', event.profileId);
  const [data] = withFieldsets([profileResource(profile, ctx.baseUrl, fieldsets.additionalProfile)], fieldsets) as [
    JsonApiResource,
  ];
  return { data, links: { self: linkTo(ctx.baseUrl, `/api/events/${encodeURIComponent(id)}/profile`, {}) } };
}

export interface RelationshipDocument {
  readonly data: { readonly type: string; readonly id: string } | null;
  readonly links: { readonly self: string; readonly related: string };
}

/** GET /api/events/{id}/relationships/metric and .../profile: the related resource's identifier. */
export async function getEventRelationshipDocument(
  db: Db,
  accountId: string,
  id: string,
  relation: 'metric' | 'profile',
  ctx: RequestContext,
): Promise<RelationshipDocument> {
  routeParams(ctx.query, ROUTE_PARAMS.relationship);
  const event = await getEventById(db, accountId, id);
  if (!event) throw notFound('event', id);
  const relatedId = relation === 'metric' ? event.metricId : event.profileId;
  const self = `/api/events/${encodeURIComponent(id)}`;
  return {
    data: relatedId === null ? null : { type: relation, id: relatedId },
    links: {
      self: linkTo(ctx.baseUrl, `${self}/relationships/${relation}`, {}),
      related: linkTo(ctx.baseUrl, `${self}/${relation}`, {}),
    },
  };
}

const PROFILE_KEYS: readonly ProfileKey[] = ['id', 'email', 'phone_number', 'external_id', '_kx'];
const PROFILE_SORTS: readonly ProfileSortField[] = ['id', 'created', 'updated', 'email'];
const TIME_OPERATORS: Readonly<Record<string, ProfileTimeBound['operator']>> = {
  equals: '=',
  'greater-than': '>',
  'greater-or-equal': '>=',
  'less-than': '<',
  'less-or-equal': '<=',
};

function profileSort(query: QueryParams): { field: ProfileSortField; descending: boolean } {
  const text = query.sort;
  if (text === undefined) return { field: 'id', descending: false };
  const descending = text.startsWith('-');
  const field = (descending ? text.slice(1) : text) as ProfileSortField;
  if (!PROFILE_SORTS.includes(field)) {
    throw parameterError(
      'sort',
      `sort takes ${PROFILE_SORTS.join(', ')}, each with - for descending${
        field.startsWith('subscriptions.') ? '; subscription data is not stored here' : ''
      }.`,
    );
  }
  return { field, descending };
}

/**
 * GET /api/profiles: Klaviyo's Get Profiles. Filters: equals or any on id, email, phone_number,
 * external_id; greater-than and less-than (and, beyond Klaviyo, equals, greater-or-equal and
 * less-or-equal) on created and updated. Sorted by id, created, updated or email, either way.
 */
export async function getProfilesDocument(db: Db, accountId: string, ctx: RequestContext): Promise<ListDocument> {
  const fieldsets = routeParams(ctx.query, ROUTE_PARAMS.profiles);
  includes(ctx.query, [], UNAVAILABLE_INCLUDES.profile);
  const sort = profileSort(ctx.query);
  const match: Array<{ key: ProfileKey; values: string[] }> = [];
  const bounds: ProfileTimeBound[] = [];
  for (const c of parseFilterParam(ctx.query)) {
    if (c.field === 'created' || c.field === 'updated') {
      const operator = TIME_OPERATORS[c.operator];
      if (operator === undefined)
        throw parameterError(
          'filter',
          `${c.source}: ${c.field} takes greater-than, less-than, greater-or-equal, less-or-equal or equals`,
        );
      bounds.push({ field: c.field, operator, at: isoFromMicros(conditionInstantMicros(c)) });
      continue;
    }
    if (!(PROFILE_KEYS as readonly string[]).includes(c.field)) {
      throw parameterError(
        'filter',
        `${c.source}: profiles are filtered on ${[...PROFILE_KEYS, 'created', 'updated'].join(', ')}` +
          (c.field.startsWith('subscriptions.')
            ? `; ${c.field} is not stored here (see docs/klaviyo-compatibility.md)`
            : ''),
      );
    }
    const key = c.field as ProfileKey;
    if (c.operator === 'equals') match.push({ key, values: [conditionText(c)] });
    else if (c.operator === 'any' && key !== '_kx') match.push({ key, values: conditionList(c) });
    else throw parameterError('filter', `${c.source}: ${c.field} takes equals${key === '_kx' ? '' : ' or any'}`);
  }
  const size = pageSize(ctx.query, PROFILES_PAGE);
  const print = fingerprint(['profiles', accountId, match, bounds, sort]);
  const cursor = decodeKeyset(ctx.query, print, 2);
  const { rows, next, prev } = await keysetPage(
    cursor,
    size,
    print,
    (r: ProfileListRow) => [r.sortValue, r.profile.id],
    (after, reversed, limit) =>
      listProfiles(db, accountId, {
        match,
        bounds,
        sort: { field: sort.field, descending: reversed ? !sort.descending : sort.descending },
        ...(after ? { after: { value: after[0] ?? null, id: after[1] as string } } : {}),
        limit,
      }),
  );
  return {
    data: withFieldsets(
      rows.map((r) => profileResource(r.profile, ctx.baseUrl, fieldsets.additionalProfile)),
      fieldsets,
    ),
    links: pageLinks(ctx.baseUrl, '/api/profiles', ctx.query, next, prev),
  };
}

/** GET /api/profiles/{id}. */
export async function getProfileDocument(
  db: Db,
  accountId: string,
  id: string,
  ctx: RequestContext,
): Promise<ResourceDocument> {
  const fieldsets = routeParams(ctx.query, ROUTE_PARAMS.profile);
  includes(ctx.query, [], UNAVAILABLE_INCLUDES.profile);
  const profile = await getProfileById(db, accountId, id);
  if (!profile) throw notFound('profile', id);
  const [data] = withFieldsets([profileResource(profile, ctx.baseUrl, fieldsets.additionalProfile)], fieldsets) as [
    JsonApiResource,
  ];
  return { data, links: { self: linkTo(ctx.baseUrl, `/api/profiles/${encodeURIComponent(id)}`, {}) } };
}

/** GET /api/metrics: every metric with its event count and first and last event, by id. */
export async function getMetricsDocument(db: Db, accountId: string, ctx: RequestContext): Promise<ListDocument> {
  const fieldsets = routeParams(ctx.query, ROUTE_PARAMS.metrics);
  includes(ctx.query, [], UNAVAILABLE_INCLUDES.metric);
  let integrationName: string | undefined;
  let integrationCategory: string | undefined;
  for (const c of parseFilterParam(ctx.query)) {
    if (c.operator !== 'equals' || (c.field !== 'integration.name' && c.field !== 'integration.category')) {
      throw parameterError(
        'filter',
        `${c.source}: metrics are filtered with equals(integration.name,"...") or equals(integration.category,"...")`,
      );
    }
    if (c.field === 'integration.name') integrationName = conditionText(c);
    else integrationCategory = conditionText(c);
  }
  const size = pageSize(ctx.query, METRICS_PAGE);
  const print = fingerprint(['metrics', accountId, integrationName, integrationCategory]);
  const cursor = decodeKeyset(ctx.query, print, 1);
  const {
    rows: page,
    next,
    prev,
  } = await keysetPage(
    cursor,
    size,
    print,
    (m: MetricSummary) => [m.id],
    (after, reversed, limit) =>
      listMetrics(db, accountId, {
        ...(after?.[0] ? (reversed ? { beforeId: after[0] } : { afterId: after[0] }) : {}),
        ...(integrationName !== undefined ? { integrationName } : {}),
        ...(integrationCategory !== undefined ? { integrationCategory } : {}),
        limit,
      }),
  );
  return {
    data: withFieldsets(
      page.map((m) => metricSummaryResource(m, ctx.baseUrl)),
      fieldsets,
    ),
    links: pageLinks(ctx.baseUrl, '/api/metrics', ctx.query, next, prev),
  };
}

/** GET /api/metrics/{id}, with the same event count and first and last event as the list. */
export async function getMetricDocument(
  db: Db,
  accountId: string,
  id: string,
  ctx: RequestContext,
): Promise<ResourceDocument> {
  const fieldsets = routeParams(ctx.query, ROUTE_PARAMS.metric);
  includes(ctx.query, [], UNAVAILABLE_INCLUDES.metric);
  const [metric] = await listMetrics(db, accountId, { id, limit: 1 });
  if (!metric) throw notFound('metric', id);
  return {
    data: withFieldsets([metricSummaryResource(metric, ctx.baseUrl)], fieldsets)[0] as JsonApiResource,
    links: { self: linkTo(ctx.baseUrl, `/api/metrics/${encodeURIComponent(id)}`, {}) },
  };
}
