import type { Db } from '../db/port';
import { HttpError } from '../klaviyo/errors';
import { listMetrics } from '../repositories/metrics';
import { getProfileById } from '../repositories/profiles';
import {
  getEventById,
  getMetricsByIds,
  getProfilesByIds,
  listEvents,
  listProfiles,
  type EventRow,
  type ProfileKey,
} from '../repositories/reads';
import {
  checkKnownParams,
  conditionInstantMicros,
  conditionList,
  conditionText,
  decodeCursor,
  encodeCursor,
  fingerprint,
  includes,
  isoFromMicros,
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
  readonly links: { readonly self: string; readonly next?: string };
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
  events: readonly EventRow[],
  wanted: ReadonlySet<EventInclude>,
  baseUrl: string,
): Promise<JsonApiResource[]> {
  const out: JsonApiResource[] = [];
  if (wanted.has('metric')) {
    const metrics = await getMetricsByIds(
      db,
      events.map((e) => e.metricId),
    );
    out.push(...metrics.filter((m) => !m.isStub).map((m) => includedMetric(m, baseUrl)));
  }
  if (wanted.has('profile')) {
    const profiles = await getProfilesByIds(
      db,
      events.flatMap((e) => (e.profileId === null ? [] : [e.profileId])),
    );
    out.push(...profiles.filter((p) => !p.isStub).map((p) => includedProfile(p, baseUrl)));
  }
  return out;
}

interface EventsFilter {
  metricId?: string;
  profileId?: string;
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
    if ((c.field === 'metric_id' || c.field === 'profile_id') && fields.includes(c.field)) {
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
        `${c.source}: this route filters on ${[...fields, 'datetime', 'timestamp'].join(', ')}`,
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

const EVENT_LIST_PARAMS = ['filter', 'sort', 'page[size]', 'page[cursor]', 'include'];

async function eventsPage(
  db: Db,
  ctx: RequestContext,
  path: string,
  options: {
    readonly profileId?: string;
    readonly descendingByDefault: boolean;
    readonly filterFields: readonly string[];
  },
): Promise<ListDocument> {
  checkKnownParams(ctx.query, EVENT_LIST_PARAMS);
  const filter = eventsFilter(ctx.query, options.filterFields);
  const descending = sortDescending(ctx.query, options.descendingByDefault);
  const size = pageSize(ctx.query, EVENTS_PAGE);
  const wanted = includes(ctx.query, EVENT_INCLUDES);
  const profileId = options.profileId ?? filter.profileId;
  const print = fingerprint(['events', path, filter.metricId, profileId, filter.fromUs, filter.toUs, descending]);
  const cursor = decodeCursor(ctx.query, print, 2);
  const empty = filter.fromUs !== undefined && filter.toUs !== undefined && filter.toUs <= filter.fromUs;
  const rows = empty
    ? []
    : await listEvents(db, {
        ...(filter.metricId !== undefined ? { metricId: filter.metricId } : {}),
        ...(profileId !== undefined ? { profileId } : {}),
        ...(filter.fromUs !== undefined ? { from: isoFromMicros(filter.fromUs) } : {}),
        ...(filter.toUs !== undefined ? { to: isoFromMicros(filter.toUs) } : {}),
        descending,
        ...(cursor ? { after: { timestamp: cursor[0] as string, id: cursor[1] as string } } : {}),
        limit: size + 1,
      });
  const page = rows.slice(0, size);
  const last = page[page.length - 1];
  const next = rows.length > size && last ? encodeCursor(print, [last.timestampText, last.id]) : undefined;
  const document: ListDocument = {
    data: page.map((e) => eventResource(e, ctx.baseUrl)),
    links: pageLinks(ctx.baseUrl, path, ctx.query, next),
  };
  return wanted.size > 0 ? { ...document, included: await includedFor(db, page, wanted, ctx.baseUrl) } : document;
}

/** GET /api/events: Klaviyo's Get Events; its pages are what POST /api/events ingests. */
export function getEventsDocument(db: Db, ctx: RequestContext): Promise<ListDocument> {
  return eventsPage(db, ctx, '/api/events', { descendingByDefault: false, filterFields: ['metric_id', 'profile_id'] });
}

/** GET /api/profiles/{id}/events: a profile's timeline, newest first unless sorted otherwise. */
export async function getProfileEventsDocument(db: Db, profileId: string, ctx: RequestContext): Promise<ListDocument> {
  const profile = await getProfileById(db, profileId);
  if (!profile) throw notFound('profile', profileId);
  return eventsPage(db, ctx, `/api/profiles/${encodeURIComponent(profileId)}/events`, {
    profileId,
    descendingByDefault: true,
    filterFields: ['metric_id'],
  });
}

/** GET /api/events/{id}. */
export async function getEventDocument(db: Db, id: string, ctx: RequestContext): Promise<ResourceDocument> {
  checkKnownParams(ctx.query, ['include']);
  const wanted = includes(ctx.query, EVENT_INCLUDES);
  const event = await getEventById(db, id);
  if (!event) throw notFound('event', id);
  const data = eventResource(event, ctx.baseUrl);
  const links = { self: linkTo(ctx.baseUrl, `/api/events/${encodeURIComponent(id)}`, {}) };
  return wanted.size > 0
    ? { data, links, included: await includedFor(db, [event], wanted, ctx.baseUrl) }
    : { data, links };
}

const PROFILE_KEYS: readonly ProfileKey[] = ['id', 'email', 'phone_number', 'external_id'];

/** GET /api/profiles, optionally filtered: equals(email,"a@b.c"), any(phone_number,[...]), external_id, id. */
export async function getProfilesDocument(db: Db, ctx: RequestContext): Promise<ListDocument> {
  checkKnownParams(ctx.query, ['filter', 'sort', 'page[size]', 'page[cursor]']);
  if (ctx.query.sort !== undefined && ctx.query.sort !== 'id') throw parameterError('sort', 'sort takes id.');
  const match: Array<{ key: ProfileKey; values: string[] }> = [];
  for (const c of parseFilterParam(ctx.query)) {
    if (!(PROFILE_KEYS as readonly string[]).includes(c.field)) {
      throw parameterError('filter', `${c.source}: profiles are filtered on ${PROFILE_KEYS.join(', ')}`);
    }
    const key = c.field as ProfileKey;
    if (c.operator === 'equals') match.push({ key, values: [conditionText(c)] });
    else if (c.operator === 'any') match.push({ key, values: conditionList(c) });
    else throw parameterError('filter', `${c.source}: ${c.field} takes equals or any`);
  }
  const size = pageSize(ctx.query, PROFILES_PAGE);
  const print = fingerprint(['profiles', match]);
  const cursor = decodeCursor(ctx.query, print, 1);
  const rows = await listProfiles(db, { match, ...(cursor ? { afterId: cursor[0] } : {}), limit: size + 1 });
  const page = rows.slice(0, size);
  const last = page[page.length - 1];
  const next = rows.length > size && last ? encodeCursor(print, [last.id]) : undefined;
  return {
    data: page.map((p) => profileResource(p, ctx.baseUrl)),
    links: pageLinks(ctx.baseUrl, '/api/profiles', ctx.query, next),
  };
}

/** GET /api/profiles/{id}. */
export async function getProfileDocument(db: Db, id: string, ctx: RequestContext): Promise<ResourceDocument> {
  checkKnownParams(ctx.query, []);
  const profile = await getProfileById(db, id);
  if (!profile) throw notFound('profile', id);
  return {
    data: profileResource(profile, ctx.baseUrl),
    links: { self: linkTo(ctx.baseUrl, `/api/profiles/${encodeURIComponent(id)}`, {}) },
  };
}

/** GET /api/metrics: every metric with its event count and first and last event, by id. */
export async function getMetricsDocument(db: Db, ctx: RequestContext): Promise<ListDocument> {
  checkKnownParams(ctx.query, ['filter', 'page[size]', 'page[cursor]']);
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
  const print = fingerprint(['metrics', integrationName, integrationCategory]);
  const cursor = decodeCursor(ctx.query, print, 1);
  // listMetrics caps its limit at 1000: asking for one more than the page finds whether another page exists.
  const rows = await listMetrics(db, {
    ...(cursor ? { afterId: cursor[0] as string } : {}),
    ...(integrationName !== undefined ? { integrationName } : {}),
    ...(integrationCategory !== undefined ? { integrationCategory } : {}),
    limit: size + 1,
  });
  const page = rows.slice(0, size);
  const last = page[page.length - 1];
  const more = rows.length > size || (rows.length === size && size === METRICS_PAGE.max);
  const next = more && last ? encodeCursor(print, [last.id]) : undefined;
  return {
    data: page.map((m) => metricSummaryResource(m, ctx.baseUrl)),
    links: pageLinks(ctx.baseUrl, '/api/metrics', ctx.query, next),
  };
}

/** GET /api/metrics/{id}, with the same event count and first and last event as the list. */
export async function getMetricDocument(db: Db, id: string, ctx: RequestContext): Promise<ResourceDocument> {
  checkKnownParams(ctx.query, []);
  const [metric] = await listMetrics(db, { id, limit: 1 });
  if (!metric) throw notFound('metric', id);
  return {
    data: metricSummaryResource(metric, ctx.baseUrl),
    links: { self: linkTo(ctx.baseUrl, `/api/metrics/${encodeURIComponent(id)}`, {}) },
  };
}
