import type { Db } from '../../db/port';
import { metricUpsertFrom, profileUpsertFrom } from '../../klaviyo/mapping';
import { MetricResourceSchema, ProfileResourceSchema, ResourceListSchema } from '../../klaviyo/schemas';
import { upsertMetrics, type MetricUpsert } from '../../repositories/metrics';
import { upsertProfiles, type ProfileUpsert } from '../../repositories/profiles';
import { checkResourceCount } from './eventsPage';
import { resolvedLimits, type IngestCounts, type IngestOptions } from './result';
import { checkJsonValues, Problems } from './validation';

/**
 * POST /api/profiles and POST /api/metrics: bulk upserts of Klaviyo's profile and metric resources,
 * as the profiles and metrics streams of a sync deliver them (incrementally by `updated`).
 */

function validatedList<T>(
  body: unknown,
  options: IngestOptions,
  what: string,
  parseItem: (item: unknown, index: number, problems: Problems) => T | undefined,
): T[] {
  const { maxResources } = resolvedLimits(options);
  const problems = new Problems();
  const envelope = ResourceListSchema.safeParse(body);
  if (!envelope.success) {
    problems.addZodIssues([], envelope.error.issues);
    problems.throwIfAny();
  }
  const data = (body as { data: unknown[] }).data;
  checkResourceCount(problems, ['data'], data.length, maxResources, what);
  checkJsonValues(body, [], problems);
  const out: T[] = [];
  data.forEach((item, i) => {
    const parsed = parseItem(item, i, problems);
    if (parsed !== undefined) out.push(parsed);
  });
  problems.throwIfAny();
  return out;
}

export function planProfilesDocument(body: unknown, options: IngestOptions = {}): ProfileUpsert[] {
  return validatedList(body, options, 'profiles were', (item, i, problems) => {
    const parsed = ProfileResourceSchema.safeParse(item);
    if (!parsed.success) {
      problems.addZodIssues(['data', i], parsed.error.issues);
      return undefined;
    }
    return profileUpsertFrom(parsed.data, item as Record<string, unknown>);
  });
}

export function planMetricsDocument(body: unknown, options: IngestOptions = {}): MetricUpsert[] {
  return validatedList(body, options, 'metrics were', (item, i, problems) => {
    const parsed = MetricResourceSchema.safeParse(item);
    if (!parsed.success) {
      problems.addZodIssues(['data', i], parsed.error.issues);
      return undefined;
    }
    return metricUpsertFrom(parsed.data, item as Record<string, unknown>);
  });
}

export async function upsertProfilesDocument(
  db: Db,
  accountId: string,
  body: unknown,
  options: IngestOptions = {},
): Promise<IngestCounts> {
  const profiles = planProfilesDocument(body, options);
  const result = await db.transaction((tx) => upsertProfiles(tx, accountId, profiles));
  return {
    received: profiles.length,
    inserted: 0,
    duplicates: 0,
    metrics_upserted: 0,
    profiles_upserted: result.written,
  };
}

export async function upsertMetricsDocument(
  db: Db,
  accountId: string,
  body: unknown,
  options: IngestOptions = {},
): Promise<IngestCounts> {
  const metrics = planMetricsDocument(body, options);
  const result = await db.transaction((tx) => upsertMetrics(tx, accountId, metrics));
  return {
    received: metrics.length,
    inserted: 0,
    duplicates: 0,
    metrics_upserted: result.written,
    profiles_upserted: 0,
  };
}
