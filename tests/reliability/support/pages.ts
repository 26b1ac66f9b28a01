/**
 * Klaviyo events pages (the shape of GET /api/events?include=metric,profile) for reliability tests:
 * deterministic, with the metrics and profiles the events reference in `included`, profiles carrying
 * an email and a phone number as Klaviyo's do.
 */
export interface PageEvent {
  readonly id: string;
  /** ISO 8601 with offset. */
  readonly datetime: string;
  readonly metricId: string;
  readonly profileId: string;
  /** Decimal text, or null for an event without a value. */
  readonly value: string | null;
}

export interface EventsPage {
  readonly data: Record<string, unknown>[];
  readonly included: Record<string, unknown>[];
}

const HOUR_MS = 3_600_000;

export function metricResource(id: string): Record<string, unknown> {
  return {
    type: 'metric',
    id,
    attributes: {
      name: `Metric ${id}`,
      created: '2024-01-01T00:00:00+00:00',
      updated: '2024-01-01T00:00:00+00:00',
      integration: { id: 'klaviyo', name: 'Klaviyo', category: 'Internal' },
    },
  };
}

/** A profile whose email and phone number derive from its number, so tests can look for them in logs. */
export function profileResource(id: string, n: number): Record<string, unknown> {
  return {
    type: 'profile',
    id,
    attributes: {
      email: profileEmail(n),
      phone_number: profilePhone(n),
      first_name: `First${n}`,
      last_name: `Last${n}`,
      created: '2024-01-01T00:00:00+00:00',
      updated: '2024-01-01T00:00:00+00:00',
      location: { city: 'Boston', zip: '02110' },
      properties: { plan: n % 2 === 0 ? 'pro' : 'free' },
    },
  };
}

export const profileEmail = (n: number) => `person.${n}@example-shop.com`;
/** E.164 numbers in the 555-01xx range reserved for fiction. */
export const profilePhone = (n: number) => `+1617555${String(100 + (n % 100)).padStart(4, '0')}`;

export function eventResource(e: PageEvent): Record<string, unknown> {
  return {
    type: 'event',
    id: e.id,
    attributes: {
      timestamp: Math.floor(Date.parse(e.datetime) / 1000),
      datetime: e.datetime,
      event_properties: {
        ...(e.value === null ? {} : { $value: Number(e.value) }),
        URL: `https://shop.example/p/${e.id}`,
      },
      uuid: null,
    },
    relationships: {
      metric: { data: { type: 'metric', id: e.metricId } },
      profile: { data: { type: 'profile', id: e.profileId } },
    },
  };
}

export function pageOf(events: readonly PageEvent[]): EventsPage {
  const metrics = [...new Set(events.map((e) => e.metricId))];
  const profiles = [...new Set(events.map((e) => e.profileId))];
  return {
    data: events.map(eventResource),
    included: [...metrics.map(metricResource), ...profiles.map((p) => profileResource(p, profileNumber(p)))],
  };
}

function profileNumber(id: string): number {
  const digits = /(\d+)$/.exec(id)?.[1];
  return digits ? Number(digits) : 0;
}

/**
 * `count` events from `from` over `hours` hours, spread over the metrics and profiles, with ids
 * `${prefix}_${i}`; values have two decimals and every seventh event has none.
 */
export function makeEvents(options: {
  readonly prefix: string;
  readonly count: number;
  readonly from: string;
  readonly hours: number;
  readonly metrics: readonly string[];
  readonly profiles: number;
}): PageEvent[] {
  const start = Date.parse(options.from);
  return Array.from({ length: options.count }, (_, i) => {
    // A multiplicative hash spreads consecutive events over hours, metrics and profiles.
    const h = (Math.imul(i + 1, 2654435761) >>> 0) / 2 ** 32;
    return {
      id: `${options.prefix}_${i}`,
      datetime: new Date(start + Math.floor(h * options.hours * HOUR_MS)).toISOString().replace('Z', '+00:00'),
      metricId: options.metrics[i % options.metrics.length] as string,
      profileId: `prof_${Math.floor(h * 7919 + i) % options.profiles}`,
      value: i % 7 === 0 ? null : (((i * 37) % 10_000) / 100).toFixed(2),
    };
  });
}
