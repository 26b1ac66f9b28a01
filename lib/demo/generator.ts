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
import { eventProperties } from './properties';
import { base62Fixed, deriveSeed, isoSeconds, Random, sequenceId, uuid4 } from './random';
import { ActivityCurve, eventClock } from './timeline';
import type { EventResource, EventsPageDocument, IncludedResource, MetricResource } from './types';
import { buildWorld, type World } from './world';

/**
 * A deterministic generator of a Klaviyo account's events, emitted as the pages of
 * GET /api/events?include=metric,profile. It feeds tests, the ingest and aggregate benches and the
 * demo. Memory stays constant whatever the event count: events are produced in time order one at a
 * time, profiles are rebuilt from their index when a page needs them, and only the late events
 * waiting for their page are held.
 *
 * Two phases keep it fast. The stream phase decides, in time order, each event's time, metric,
 * profile, lateness and a seed of its own, into typed arrays; the page phase builds the JSON
 * objects of a whole page from those seeds just before yielding it. Objects that lived while a page
 * filled up would survive garbage collections and be copied (a large share of the run time);
 * built in one burst, they die young. And since everything about an event derives from its own
 * seed, the page size changes only where pages are cut.
 */
export * from './types';
export { DEMO_METRICS, demoMetricByName, type DemoMetric } from './catalog';
export { buildProfileResource, profileId, DEFAULT_SEED } from './profiles';
export { AUDIENCE_UTC_OFFSET_HOURS } from './timeline';

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
  /**
   * The window events happen in. Without one, the fixed reference year 2025 (DEFAULT_START..DEFAULT_END),
   * which tests and benches rely on; the demo passes demoYearEndingOn(today) so its data is recent.
   */
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

/**
 * The demo's window: the year that ends at the start (00:00 UTC) of `day`'s UTC date, so the data runs
 * up to yesterday. The same day gives the same window, so the same seed and day give the same pages.
 */
export function demoYearEndingOn(day: Date): { readonly start: Date; readonly end: Date } {
  const end = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate());
  const start = Date.UTC(day.getUTCFullYear() - 1, day.getUTCMonth(), day.getUTCDate());
  return { start: new Date(start), end: new Date(end) };
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
  if (!Number.isSafeInteger(resolved.events) || resolved.events < 0)
    throw new RangeError('events must be a whole number >= 0');
  if (!Number.isSafeInteger(resolved.profiles) || resolved.profiles < 1)
    throw new RangeError('profiles must be a whole number >= 1');
  if (!Number.isSafeInteger(resolved.pageSize) || resolved.pageSize < 1)
    throw new RangeError('pageSize must be a whole number >= 1');
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

function channelNeeds(metric: DemoMetric): 'phone' | 'email' | null {
  if (metric.kind === 'received-sms' || metric.kind === 'clicked-sms' || metric.kind === 'unsubscribed-sms')
    return 'phone';
  if (metric.integration.key === 'klaviyo' && metric.kind !== 'active-on-site') return 'email';
  return null;
}

/** What the stream phase decides about one event; the page phase builds the event from it. */
interface EventSpec {
  readonly sequence: number;
  readonly timeMs: number;
  readonly metric: number;
  readonly profile: number;
  readonly seed: number;
}

interface LateSpec extends EventSpec {
  readonly arrivalMs: number;
}

/** A binary min-heap on (arrival, sequence): late events leave in arrival order, ties in generation order. */
class ArrivalQueue {
  private readonly items: LateSpec[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): LateSpec | undefined {
    return this.items[0];
  }

  private static before(a: LateSpec, b: LateSpec): boolean {
    return a.arrivalMs < b.arrivalMs || (a.arrivalMs === b.arrivalMs && a.sequence < b.sequence);
  }

  push(item: LateSpec): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!ArrivalQueue.before(items[i] as LateSpec, items[parent] as LateSpec)) break;
      [items[i], items[parent]] = [items[parent] as LateSpec, items[i] as LateSpec];
      i = parent;
    }
  }

  pop(): LateSpec | undefined {
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
        if (left < items.length && ArrivalQueue.before(items[left] as LateSpec, items[smallest] as LateSpec))
          smallest = left;
        if (right < items.length && ArrivalQueue.before(items[right] as LateSpec, items[smallest] as LateSpec))
          smallest = right;
        if (smallest === i) break;
        [items[i], items[smallest]] = [items[smallest] as LateSpec, items[i] as LateSpec];
        i = smallest;
      }
    }
    return top;
  }
}

/** The specs of the page being filled, in typed arrays: nothing here is garbage to collect. */
class PageSpecs {
  readonly sequence: Float64Array;
  readonly timeMs: Float64Array;
  readonly metric: Uint8Array;
  readonly profile: Int32Array;
  readonly seed: Uint32Array;
  length = 0;

  constructor(readonly capacity: number) {
    this.sequence = new Float64Array(capacity);
    this.timeMs = new Float64Array(capacity);
    this.metric = new Uint8Array(capacity);
    this.profile = new Int32Array(capacity);
    this.seed = new Uint32Array(capacity);
  }

  push(sequence: number, timeMs: number, metric: number, profile: number, seed: number): boolean {
    const at = this.length;
    this.sequence[at] = sequence;
    this.timeMs[at] = timeMs;
    this.metric[at] = metric;
    this.profile[at] = profile;
    this.seed[at] = seed;
    this.length = at + 1;
    return this.length === this.capacity;
  }
}

/** Builds the JSON:API objects of events and pages from specs. */
class PageBuilder {
  private readonly world: World;
  private readonly metricResources: readonly MetricResource[];
  private readonly profileIds: (string | undefined)[];
  private readonly idKey: number;
  private readonly profileOptions: { seed: number; start: Date; links: boolean };
  private pageIndex = 0;

  constructor(private readonly o: ResolvedGeneratorOptions) {
    this.world = buildWorld(o.seed, o.start.getTime(), o.end.getTime());
    this.metricResources = DEMO_METRICS.map((m) => metricResource(m, o.links));
    // Every event needs its profile's id (a ULID): computed once per profile.
    this.profileIds = new Array<string | undefined>(o.profiles);
    this.idKey = deriveSeed(o.seed, 0x1d);
    this.profileOptions = { seed: o.seed, start: o.start, links: o.links };
  }

  private profileId(index: number): string {
    let id = this.profileIds[index];
    if (id === undefined) {
      id = profileId(index, this.profileOptions);
      this.profileIds[index] = id;
    }
    return id;
  }

  event(sequence: number, timeMs: number, metricIndex: number, profile: number, seed: number): EventResource {
    const metric = DEMO_METRICS[metricIndex] as DemoMetric;
    const random = new Random(seed);
    const seconds = Math.floor(timeMs / 1000);
    const properties = eventProperties(metric.kind, {
      random,
      world: this.world,
      timeMs,
      sequence,
      emailDomain: profileTraits(this.o.seed, profile).emailDomain,
    });
    const id = sequenceId(random, sequence, this.idKey);
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
        profile: { data: { type: 'profile', id: this.profileId(profile) } },
        metric: { data: { type: 'metric', id: metric.id } },
      },
    };
    if (this.o.links) {
      const self = `${KLAVIYO_API_URL}/events/${id}`;
      event.relationships.profile.links = { self: `${self}/relationships/profile`, related: `${self}/profile` };
      event.relationships.metric.links = { self: `${self}/relationships/metric`, related: `${self}/metric` };
      event.links = { self };
    }
    return event;
  }

  private cursor(index: number): string {
    return `${base62Fixed(deriveSeed(this.o.seed, index) % 916_132_832, 5)}${base62Fixed(index, 5)}`;
  }

  page(specs: PageSpecs, last: boolean): EventsPageDocument {
    const data: EventResource[] = new Array<EventResource>(specs.length);
    const metrics: number[] = [];
    const metricSeen = new Uint8Array(DEMO_METRICS.length);
    const profiles = new Set<number>();
    for (let i = 0; i < specs.length; i += 1) {
      const metric = specs.metric[i] as number;
      const profile = specs.profile[i] as number;
      data[i] = this.event(
        specs.sequence[i] as number,
        specs.timeMs[i] as number,
        metric,
        profile,
        specs.seed[i] as number,
      );
      if (metricSeen[metric] === 0) {
        metricSeen[metric] = 1;
        metrics.push(metric);
      }
      profiles.add(profile);
    }
    const included: IncludedResource[] = [];
    for (const m of metrics) included.push(copyMetric(this.metricResources[m] as MetricResource));
    for (const p of profiles) included.push(buildProfileResource(p, this.profileOptions));
    const base = `${KLAVIYO_API_URL}/events?include=metric,profile&sort=datetime`;
    const self = this.pageIndex === 0 ? base : `${base}&page[cursor]=${this.cursor(this.pageIndex)}`;
    const next = last ? null : `${base}&page[cursor]=${this.cursor(this.pageIndex + 1)}`;
    this.pageIndex += 1;
    specs.length = 0;
    return { data, links: { self, next }, included };
  }
}

function copyMetric(resource: MetricResource): MetricResource {
  const copy: MetricResource = {
    type: 'metric',
    id: resource.id,
    attributes: { ...resource.attributes, integration: { ...resource.attributes.integration } },
  };
  if (resource.links) copy.links = { ...resource.links };
  return copy;
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
  const curve = new ActivityCurve(o.seed, startMs, endMs);
  const nextTime = eventClock(curve, o.events, () => random.next());
  const metricTotal = DEMO_METRICS.reduce((sum, m) => sum + m.weight, 0);
  const exponents = DEMO_METRICS.map(concentration);
  const needs = DEMO_METRICS.map(channelNeeds);
  const lateSpan = Math.log(LATE_DELAY_MAX_SECONDS / LATE_DELAY_MIN_SECONDS);
  const late = new ArrivalQueue();
  const specs = new PageSpecs(o.pageSize);
  const builder = new PageBuilder(o);
  let emitted = 0;

  for (let sequence = 0; sequence < o.events; sequence += 1) {
    const timeMs = nextTime();

    let roll = random.next() * metricTotal;
    let metric = DEMO_METRICS.length - 1;
    for (let m = 0; m < DEMO_METRICS.length; m += 1) {
      roll -= (DEMO_METRICS[m] as DemoMetric).weight;
      if (roll < 0) {
        metric = m;
        break;
      }
    }

    let profile = Math.floor(o.profiles * Math.pow(random.next(), exponents[metric] as number));
    const need = needs[metric];
    if (need !== null) {
      // Walk to the next profile that can receive on this channel (a few steps: 40% have phones).
      for (let step = 0; step < o.profiles; step += 1) {
        const traits = profileTraits(o.seed, profile);
        if (need === 'phone' ? traits.hasPhone : traits.hasEmail) break;
        profile = (profile + 1) % o.profiles;
      }
    }
    const seed = random.uint32();

    const lateRoll = random.next();
    const delayRoll = random.next();
    if (lateRoll < o.lateShare) {
      const delaySeconds = LATE_DELAY_MIN_SECONDS * Math.exp(delayRoll * lateSpan);
      late.push({ arrivalMs: timeMs + delaySeconds * 1000, sequence, timeMs, metric, profile, seed });
      continue;
    }
    for (let ready = late.peek(); ready !== undefined && ready.arrivalMs <= timeMs; ready = late.peek()) {
      late.pop();
      emitted += 1;
      if (specs.push(ready.sequence, ready.timeMs, ready.metric, ready.profile, ready.seed)) {
        yield builder.page(specs, emitted === o.events);
      }
    }
    emitted += 1;
    if (specs.push(sequence, timeMs, metric, profile, seed)) yield builder.page(specs, emitted === o.events);
  }
  for (let ready = late.pop(); ready !== undefined; ready = late.pop()) {
    emitted += 1;
    if (specs.push(ready.sequence, ready.timeMs, ready.metric, ready.profile, ready.seed)) {
      yield builder.page(specs, emitted === o.events);
    }
  }
  if (specs.length > 0) yield builder.page(specs, true);
}
