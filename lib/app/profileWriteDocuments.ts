import type { Db } from '../db/port';
import { HttpError } from '../klaviyo/errors';
import { applyFieldset, parseFieldsets } from '../klaviyo/fieldsets';
import { checkKnownParams } from '../klaviyo/listParams';
import { klaviyoDateTime, profileResource } from '../klaviyo/resources';
import type { ProfileRow } from '../repositories/profiles';
import { bulkImportProfiles, createProfile, importProfile } from './ingest';

/**
 * Klaviyo's profile writes as Klaviyo answers them: the written profile shaped by the request's
 * fields[profile] and additional-fields[profile], or the bulk import job, already complete.
 */
type Query = Readonly<Record<string, string>>;
interface RequestContext {
  readonly baseUrl: string;
  readonly query: Query;
}

const PROFILE_WRITE_PARAMS = ['additional-fields[profile]', 'fields[profile]'];

function profileDocument(profile: ProfileRow, context: RequestContext) {
  const fieldsets = parseFieldsets(context.query);
  const resource = profileResource(profile, context.baseUrl, fieldsets.additionalProfile);
  return { data: applyFieldset(resource, fieldsets.byType.get('profile')) };
}

/** Create Profile: the parameters are checked before anything is written. */
export async function createProfileDocument(db: Db, accountId: string, body: unknown, context: RequestContext) {
  checkKnownParams(context.query, PROFILE_WRITE_PARAMS);
  parseFieldsets(context.query);
  return profileDocument(await createProfile(db, accountId, body), context);
}

/** Create or Update Profile: `created` tells 201 from 200. */
export async function importProfileDocument(db: Db, accountId: string, body: unknown, context: RequestContext) {
  checkKnownParams(context.query, PROFILE_WRITE_PARAMS);
  parseFieldsets(context.query);
  const { profile, created } = await importProfile(db, accountId, body);
  return { created, document: profileDocument(profile, context) };
}

const JOB_FIELDS = [
  'completed_at',
  'completed_count',
  'created_at',
  'expires_at',
  'failed_count',
  'id',
  'started_at',
  'status',
  'total_count',
];

/** Klaviyo's profile-bulk-import-job, complete: the profiles were written before the answer. */
export async function bulkImportProfilesDocument(db: Db, accountId: string, body: unknown, query: Query) {
  checkKnownParams(query, ['fields[profile-bulk-import-job]']);
  const names = query['fields[profile-bulk-import-job]']?.split(',').map((n) => n.trim());
  const unknown = names?.filter((n) => !JOB_FIELDS.includes(n)) ?? [];
  if (unknown.length > 0) {
    throw new HttpError(400, {
      code: 'invalid',
      detail: `fields[profile-bulk-import-job] takes ${JOB_FIELDS.join(', ')}.`,
      parameter: 'fields[profile-bulk-import-job]',
    });
  }
  const job = await bulkImportProfiles(db, accountId, body);
  const resource = {
    type: 'profile-bulk-import-job',
    id: job.id,
    attributes: {
      status: 'complete',
      created_at: klaviyoDateTime(job.createdAt),
      total_count: job.totalCount,
      completed_count: job.totalCount,
      failed_count: 0,
      completed_at: klaviyoDateTime(job.completedAt),
      // Nothing is kept to expire: the job was done when this answer was sent.
      expires_at: null,
      started_at: klaviyoDateTime(job.createdAt),
    },
  };
  return { totalCount: job.totalCount, document: { data: applyFieldset(resource, names) } };
}
