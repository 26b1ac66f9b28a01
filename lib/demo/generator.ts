import { DEMO_METRICS, type DemoMetric } from './catalog';
import {
  buildProfileResource,
  DEFAULT_END,
  DEFAULT_SEED,
  DEFAULT_START,
  KLAVIYO_API_URL,
  profileId,
  profileTraits,
} from './profiles';
import { CampaignCursor, eventProperties } from './properties';
import { base62Fixed, deriveSeed, isoSeconds, Random, sequenceId, uuid4 } from './random';
import { ActivityCurve, eventClock } from './timeline';
import type { EventResource, EventsPageDocument, IncludedResource, MetricResource, ProfileResource } from './types';
import { buildWorld } from './world';

/**
 * A deterministic generator of a Klaviyo account's events, emitted as the pages of
 * GET /api/events?include=metric,profile. It feeds tests, the ingest and aggregate benches and the
 * demo. Memory stays constant whatever the event count: events are produced in time order one at a
 * time, profiles are rebuilt from their index when a page needs them, and only the late events
 * waiting for their page are held.
 */
export * from './types';
export { DEMO_METRICS, demoMetricByName, INTEGRATIONS, type DemoMetric, type Integration } from './catalog';
export { buildProfileResource, profileId, profileTraits, DEFAULT_START, DEFAULT_END, DEFAULT_SEED, KLAVIYO_API_URL } from './profiles';
export { AUDIENCE_UTC_OFFSET_HOURS, HOURLY_ACTIVITY, WEEKDAY_ACTIVITY } from './timeline';

export const DEFAULT_PAGE_SIZE = 1000;
export const DEFAULT_PROFILES = 200_000;
export const DEFAULT_LATE_SHARE = 0.02;
/** Late events arrive between one day and three weeks after they happened (log-uniform). */
export const LATE_DELAY_MIN_SECONDS = 86_400;
export const LATE_DELAY_MAX_SECONDS = 21 * 86_400;

export interface GeneratorOptions {
  /** Any 32-bit integer; the same seed and options give byte-identical pages. Default 1. */
  readonly seed?: number;
  /** How many events in all. */
  readonly events: number;
  /** How many distinct profiles events are spread over (default 200,000). */
  readonly profiles?: number;
  /** Events per page (default 1000, Klaviyo's bulk limit). */
  readonly pageSize?: number;
  /** The window events happen in; defaults to the calendar year 2025 (fixed, so output never depends on today). */
  readonly start?: Date;
  readonly end?: Date;
  /** Share of events emitted in a later page than their time order puts them (default 0.02). */
  readonly lateShare?: number;
  /** JSON:API links as Klaviyo sends them (default true). */
  readonly links?: boolean;
}

export interface ResolvedGeneratorOptions {
  readonly seed: number;
  readonly events: number;
  readonly profiles: number;
  readonly pageSize: number;
  readonly start: Date;
  readonly end: Date;
  readonly lateShare: number;
  readonly links: boolean;
}

export function resolveGeneratorOptions(options: GeneratorOptions): ResolvedGeneratorOptions {
  const resolved = {
    seed: options.seed ?? DEFAULT_SEED,
    events: options.events,
    profiles: options.profiles ?? DEFAULT_PROFILES,
    pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE,
    start: options.start ?? DEFAULT_START,
    end: options.end ?? DEFAULT_END,
    lateShare: options.lateShare ?? DEFAULT_LATE_SHARE,
    links: options.links ?? true,
  };
  if (!Number.isSafeInteger(resolved.events) || resolved.events < 0) throw new RangeError('events must be a whole number >= 0');
  if (!Number.isSafeInteger(resolved.profiles) || resolved.profiles < 1) throw new RangeError('profiles must be a whole number >= 1');
  if (!Number.isSafeInteger(resolved.pageSize) || resolved.pageSize < 1) throw new RangeError('pageSize must be a whole number >= 1');
  if (!Number.isInteger(resolved.seed)) throw new RangeError('seed must be an integer');
  if (!(resolved.lateShare >= 0 && resolved.lateShare <= 1)) throw new RangeError('lateShare must be within [0, 1]');
  if (!(resolved.end.getTime() > resolved.start.getTime())) throw new RangeError('end must be after start');
  return resolved;
}

export function pageCount(options: GeneratorOptions): number {
  const resolved = resolveGeneratorOptions(options);
  return Math.ceil(resolved.events / resolved.pageSize);
}

export function metricResource(metric: DemoMetric, links = true): MetricResource {
  const resource: MetricResource = {
    type: 'metric',
    id: metric.id,
    attributes: {
      name: metric.name,
      created: metric.created,
      updated: metric.created,
      integration: { ...metric.integration },
    },
  };
  if (links) resource.links = { self: `${KLAVIYO_API_URL}/metrics/${metric.id}` };
  return resource;
}

/**
 * How strongly each metric's events concentrate on the most engaged profiles: deliveries reach the
 * whole list, site visits and orders come from a smaller engaged core. Profile index
 * floor(N * u^k): the larger k, the more concentrated.
 */
function concentration(metric: DemoMetric): number {
  switch (metric.kind) {
    case 'received-email':
    case 'received-sms':
    case 'bounced-email':
    case 'dropped-email':
      return 1.2;
    case 'opened-email':
    case 'unsubscribed':
    case 'unsubscribed-sms':
    case 'subscribed':
    case 'submitted-form':
    case 'spam-email':
      return 1.8;
    default:
      return 2.5;
  }
}

interface PendingEvent {
  readonly arrivalMs: number;
  readonly sequence: number;
  readonly event: EventResource;
  readonly metric: number;
  readonly profile: number;
}

/** A binary min-heap on (arrival, sequence): late events leave in arrival order, ties in generation order. */
class ArrivalQueue {
  private readonly items: PendingEvent[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): PendingEvent | undefined {
    return this.items[0];
  }

  private static before(a: PendingEvent, b: PendingEvent): boolean {
    return a.arrivalMs < b.arrivalMs || (a.arrivalMs === b.arrivalMs && a.sequence < b.sequence);
  }

  push(item: PendingEvent): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!ArrivalQueue.before(items[i] as PendingEvent, items[parent] as PendingEvent)) break;
      [items[i], items[parent]] = [items[parent] as PendingEvent, items[i] as PendingEvent];
      i = parent;
    }
  }

  pop(): PendingEvent | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < items.length && ArrivalQueue.before(items[left] as PendingEvent, items[smallest] as PendingEvent)) smallest = left;
        if (right < items.length && ArrivalQueue.before(items[right] as PendingEvent, items[smallest] as PendingEvent)) smallest = right;
        if (smallest === i) break;
        [items[i], items[smallest]] = [items[smallest] as PendingEvent, items[i] as PendingEvent];
        i = smallest;
      }
    }
    return top;
  }
}

/**
 * Yields the account's events as JSON:API documents shaped exactly like Klaviyo's
 * GET /api/events?include=metric,profile pages: `data` in time order except for the late events,
 * `included` holding each metric and profile that page references, once.
 *
 * Pages are fresh objects: consumers may keep or mutate them.
 */
export function* generatePages(options: GeneratorOptions): Generator<EventsPageDocument, void, undefined> {
  const o = resolveGeneratorOptions(options);
  const startMs = o.start.getTime();
  const endMs = o.end.getTime();
  const random = new Random(deriveSeed(o.seed, 0xe7e7));
  const world = buildWorld(o.seed, startMs, endMs);
  const campaigns = new CampaignCursor(world);
  const curve = new ActivityCurve(o.seed, startMs, endMs);
  const nextTime = eventClock(curve, o.events, () => random.next());
  const metricTotal = DEMO_METRICS.reduce((sum, m) => sum + m.weight, 0);
  const exponents = DEMO_METRICS.map(concentration);
  const metricResources = DEMO_METRICS.map((m) => metricResource(m, o.links));
  const idKey = deriveSeed(o.seed, 0x1d);
  // Profile ids (ULIDs) are needed by every event: computed once per profile.
  const profileIds: (string | undefined)[] = new Array<string | undefined>(o.profiles);
  const lateSpan = Math.log(LATE_DELAY_MAX_SECONDS / LATE_DELAY_MIN_SECONDS);
  const profileOptions = { seed: o.seed, start: o.start, links: o.links };
  const late = new ArrivalQueue();

  let page: PendingEvent[] = [];
  let pageIndex = 0;
  let emitted = 0;

  const cursorOf = (index: number) => `${base62Fixed(deriveSeed(o.seed, index) % 916_132_832, 5)}${base62Fixed(index, 5)}`;
  const buildPage = (): EventsPageDocument => {
    const metrics = new Map<number, true>();
    const profiles = new Map<number, true>();
    const data: EventResource[] = [];
    for (const pending of page) {
      data.push(pending.event);
      metrics.set(pending.metric, true);
      profiles.set(pending.profile, true);
    }
    const included: IncludedResource[] = [];
    for (const m of metrics.keys()) included.push(structuredMetric(metricResources[m] as MetricResource));
    for (const p of profiles.keys()) included.push(buildProfileResource(p, profileOptions) as ProfileResource);
    const base = `${KLAVIYO_API_URL}/events?include=metric,profile&sort=datetime`;
    const self = pageIndex === 0 ? base : `${base}&page[cursor]=${cursorOf(pageIndex)}`;
    const next = emitted < o.events ? `${base}&page[cursor]=${cursorOf(pageIndex + 1)}` : null;
    pageIndex += 1;
    page = [];
    return { data, links: { self, next }, included };
  };

  for (let sequence = 0; sequence < o.events; sequence += 1) {
    const timeMs = nextTime();
    const seconds = Math.floor(timeMs / 1000);

    let roll = random.next() * metricTotal;
    let metric = DEMO_METRICS.length - 1;
    for (let m = 0; m < DEMO_METRICS.length; m += 1) {
      roll -= (DEMO_METRICS[m] as DemoMetric).weight;
      if (roll < 0) {
        metric = m;
        break;
      }
    }
    const demoMetric = DEMO_METRICS[metric] as DemoMetric;

    let profile = Math.floor(o.profiles * Math.pow(random.next(), exponents[metric] as number));
    const needsPhone = demoMetric.kind === 'received-sms' || demoMetric.kind === 'clicked-sms' || demoMetric.kind === 'unsubscribed-sms';
    const needsEmail = demoMetric.integration.key === 'klaviyo' && !needsPhone && demoMetric.kind !== 'active-on-site';
    let traits = profileTraits(o.seed, profile);
    // Walk to the next profile that can receive on this channel (at most a few steps: 40% have phones).
    for (let step = 0; step < o.profiles && ((needsPhone && !traits.hasPhone) || (needsEmail && !traits.hasEmail)); step += 1) {
      profile = (profile + 1) % o.profiles;
      traits = profileTraits(o.seed, profile);
    }

    const properties = eventProperties(
      demoMetric.kind,
      { random, world, timeMs, sequence, emailDomain: traits.emailDomain },
      campaigns,
    );
    const id = sequenceId(random, sequence, idKey);
    const profileResourceId = (profileIds[profile] ??= profileId(profile, profileOptions));
    const event: EventResource = {
      type: 'event',
      id,
      attributes: {
        timestamp: seconds,
        event_properties: properties,
        datetime: isoSeconds(seconds),
        uuid: uuid4(random),
      },
      relationships: {
        profile: { data: { type: 'profile', id: profileResourceId } },
        metric: { data: { type: 'metric', id: demoMetric.id } },
      },
    };
    if (o.links) {
      const self = `${KLAVIYO_API_URL}/events/${id}`;
      event.relationships.profile.links = { self: `${self}/relationships/profile`, related: `${self}/profile` };
      event.relationships.metric.links = { self: `${self}/relationships/metric`, related: `${self}/metric` };
      event.links = { self };
    }

    // Decided after the event is built so that lateShare changes which events are late, not what they are.
    const lateRoll = random.next();
    const delayRoll = random.next();
    if (lateRoll < o.lateShare) {
      const delaySeconds = LATE_DELAY_MIN_SECONDS * Math.exp(delayRoll * lateSpan);
      late.push({ arrivalMs: timeMs + delaySeconds * 1000, sequence, event, metric, profile });
      continue;
    }
    for (let ready = late.peek(); ready !== undefined && ready.arrivalMs <= timeMs; ready = late.peek()) {
      page.push(late.pop() as PendingEvent);
      emitted += 1;
      if (page.length === o.pageSize) yield buildPage();
    }
    page.push({ arrivalMs: timeMs, sequence, event, metric, profile });
    emitted += 1;
    if (page.length === o.pageSize) yield buildPage();
  }
  while (late.size > 0) {
    page.push(late.pop() as PendingEvent);
    emitted += 1;
    if (page.length === o.pageSize) yield buildPage();
  }
  if (page.length > 0) yield buildPage();

}

function structuredMetric(resource: MetricResource): MetricResource {
  const copy: MetricResource = {
    type: 'metric',
    id: resource.id,
    attributes: { ...resource.attributes, integration: { ...resource.attributes.integration } },
  };
  if (resource.links) copy.links = { ...resource.links };
  return copy;
}
