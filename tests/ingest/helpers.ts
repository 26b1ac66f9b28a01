import type { Db } from '../../lib/db/port';

import { klaviyoFixture } from '../support/fixtures';

/** A fixture as untyped JSON: the ingest tests index it freely and check what they read by their assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const fixture = <T = any>(name: string): T => klaviyoFixture<T>(name);

const TABLES = {
  klaviyo_metrics: 'account_id, id',
  klaviyo_profiles: 'account_id, id',
  klaviyo_events: 'account_id, id, "timestamp"',
  klaviyo_aggregated_metrics: 'account_id, metric_id, granularity, bucket',
  klaviyo_aggregate_dirty: 'account_id, metric_id, bucket',
} as const;

/**
 * One md5 per table over every column of every row (ingested_at included), in key order: of every
 * account, so that "nothing changed" also covers the neighbour account every test database holds.
 */
export async function checksums(db: Db): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [table, key] of Object.entries(TABLES)) {
    const rows = await db.query<{ sum: string | null; n: string }>(
      `SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY ${key}), '')) AS sum, count(*) AS n FROM ${table} t`,
    );
    out[table] = `${rows[0]?.n}:${rows[0]?.sum}`;
  }
  return out;
}

/** Rows of one account (the tests' own by default: the neighbour account's rows are not theirs). */
export async function counts(db: Db, accountId = 'default'): Promise<Record<string, number>> {
  const rows = await db.query<{ metrics: string; profiles: string; events: string; dirty: string }>(
    `SELECT (SELECT count(*) FROM klaviyo_metrics WHERE account_id = $1) AS metrics,
            (SELECT count(*) FROM klaviyo_profiles WHERE account_id = $1) AS profiles,
            (SELECT count(*) FROM klaviyo_events WHERE account_id = $1) AS events,
            (SELECT count(*) FROM klaviyo_aggregate_dirty WHERE account_id = $1) AS dirty`,
    [accountId],
  );
  const r = rows[0]!;
  return { metrics: Number(r.metrics), profiles: Number(r.profiles), events: Number(r.events), dirty: Number(r.dirty) };
}

export interface PageOptions {
  readonly events: number;
  readonly prefix?: string;
  readonly metrics?: number;
  readonly profiles?: number;
  readonly start?: string;
  /** Leave the referenced metrics / profiles out of `included`. */
  readonly includeMetrics?: boolean;
  readonly includeProfiles?: boolean;
  readonly profileUpdated?: string;
}

/** A page shaped like GET /api/events?include=metric,profile, deterministic for its options. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests index the page freely
export function eventsPage(options: PageOptions): { data: any[]; included: any[] } {
  const prefix = options.prefix ?? 'ev';
  const metricCount = options.metrics ?? 3;
  const profileCount = options.profiles ?? 10;
  const start = Date.parse(options.start ?? '2024-03-10T00:00:00Z');
  const data = Array.from({ length: options.events }, (_, i) => {
    const ms = start + i * 61_000;
    const metricId = `M${prefix}${i % metricCount}`;
    const profileId = `P${prefix}${i % profileCount}`;
    return {
      type: 'event',
      id: `${prefix}${String(i).padStart(6, '0')}`,
      attributes: {
        timestamp: Math.floor(ms / 1000),
        datetime: new Date(ms).toISOString().replace('.000Z', '+00:00'),
        event_properties: {
          $value: i % 2 === 0 ? (i + 0.5).toFixed(2) : i,
          $event_id: `e-${i}`,
          'Campaign Name': `C${i % 4}`,
          items: [{ sku: `S${i}` }],
        },
        uuid: `uuid-${prefix}-${i}`,
      },
      relationships: {
        metric: { data: { type: 'metric', id: metricId } },
        profile: { data: { type: 'profile', id: profileId } },
      },
      links: { self: `https://a.klaviyo.com/api/events/${prefix}${i}` },
    };
  });
  const included: any[] = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  if (options.includeMetrics ?? true) {
    for (let m = 0; m < Math.min(metricCount, options.events); m += 1) {
      included.push({
        type: 'metric',
        id: `M${prefix}${m}`,
        attributes: {
          name: `Metric ${m}`,
          created: '2023-01-01T00:00:00+00:00',
          updated: '2023-01-01T00:00:00+00:00',
          integration: { name: 'Shopify', category: 'eCommerce' },
        },
      });
    }
  }
  if (options.includeProfiles ?? true) {
    for (let p = 0; p < Math.min(profileCount, options.events); p += 1) {
      included.push({
        type: 'profile',
        id: `P${prefix}${p}`,
        attributes: {
          email: `person${p}@example.com`,
          phone_number: `+1500555${String(p).padStart(4, '0')}`,
          external_id: `ext-${p}`,
          first_name: `First${p}`,
          created: '2023-01-01T00:00:00+00:00',
          updated: options.profileUpdated ?? '2023-06-01T00:00:00+00:00',
          location: { city: 'Boston' },
          properties: { tier: p % 3 },
        },
      });
    }
  }
  return { data, included };
}
