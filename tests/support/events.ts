import type { Db } from '../../lib/db/port';
import { insertEvents, type NewEvent } from '../../lib/repositories/events';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

export interface SimpleEvent {
  readonly id?: string;
  readonly metricId: string;
  readonly profileId?: string | null;
  readonly at: string | Date;
  readonly value?: number | string | null;
  readonly properties?: Record<string, unknown>;
}

let counter = 0;

/**
 * Stores events through the real write path (insertEvents, which also marks dirty buckets), creating
 * the metrics and profiles they name as plain rows first. For tests of aggregation and queries that
 * want events without building whole JSON:API pages. In the account 'default' unless told otherwise.
 */
export async function storeEvents(
  db: Db,
  events: readonly SimpleEvent[],
  accountId: string = DEFAULT_ACCOUNT_ID,
): Promise<{ inserted: number; duplicates: number }> {
  const metricIds = [...new Set(events.map((e) => e.metricId))];
  const profileIds = [...new Set(events.map((e) => e.profileId).filter((p): p is string => typeof p === 'string'))];
  await db.query(
    `INSERT INTO klaviyo_metrics (account_id, id, name) SELECT $2::text, id, 'Metric ' || id FROM unnest($1::text[]) AS id ON CONFLICT (account_id, id) DO NOTHING`,
    [`{${metricIds.map((m) => JSON.stringify(m)).join(',')}}`, accountId],
  );
  if (profileIds.length > 0) {
    await db.query(
      `INSERT INTO klaviyo_profiles (account_id, id) SELECT $2::text, id FROM unnest($1::text[]) AS id ON CONFLICT (account_id, id) DO NOTHING`,
      [`{${profileIds.map((p) => JSON.stringify(p)).join(',')}}`, accountId],
    );
  }
  const rows: NewEvent[] = events.map((e) => {
    const timestamp = (e.at instanceof Date ? e.at : new Date(e.at)).toISOString();
    const id = e.id ?? `ev_${process.pid}_${(counter += 1)}`;
    const value = e.value === undefined || e.value === null ? null : String(e.value);
    const properties = e.properties ?? {};
    return {
      id,
      timestamp,
      metricId: e.metricId,
      profileId: e.profileId ?? null,
      value,
      valueCurrency: null,
      uuid: null,
      uniqueId: null,
      properties,
      rawData: { type: 'event', id, attributes: { datetime: timestamp, event_properties: properties } },
    };
  });
  return insertEvents(db, accountId, rows);
}
