import { randomUUID } from 'node:crypto';
import type { Db } from '../../db/port';
import { HttpError } from '../../klaviyo/errors';
import { profileAttributesFrom } from '../../klaviyo/mapping';
import {
  ProfileImportJobBodySchema,
  ProfileWriteBodySchema,
  ProfileWriteSchema,
  type ProfileWrite,
} from '../../klaviyo/schemas';
import {
  clearProfileAttributes,
  getProfileById,
  mergeProfiles,
  PROFILE_TEXT_FIELDS,
  type ClearableProfileField,
  resolveProfiles,
  type ProfileMerge,
  type ProfileRow,
} from '../../repositories/profiles';
import { checkResourceCount } from './eventsPage';
import { identifiersOf, newProfileId } from './klaviyoWrites';
import { resolvedLimits, type IngestOptions } from './result';
import { checkJsonValues, Problems, type PathSegment } from './validation';

/**
 * Klaviyo's profile writes. Create Profile (POST /api/profiles with one object) answers 201 with the
 * profile, or 409 `duplicate_profile` naming the stored profile when one of its identifiers is
 * taken. Create or Update Profile (POST /api/profile-import) answers 200 when it updated a profile,
 * 201 when it created one. Bulk Import Profiles (POST /api/profile-bulk-import-jobs) creates or
 * updates many, synchronously: its job is complete when the answer arrives.
 *
 * A profile is found by id, email (case-insensitive), phone_number, external_id, anonymous_id or
 * _kx, as Klaviyo resolves them. Given attributes merge over stored ones (properties and location
 * key by key); an attribute left out is kept; on Create or Update Profile, one sent as null is cleared.
 */

const IDENTIFIERS = 'email, phone_number, external_id, anonymous_id or _kx';

function checkProfile(
  item: unknown,
  path: PathSegment[],
  allowId: boolean,
  problems: Problems,
): ProfileWrite | undefined {
  const parsed = ProfileWriteSchema.safeParse(item);
  if (!parsed.success) {
    problems.addZodIssues(path, parsed.error.issues);
    return undefined;
  }
  const p = parsed.data;
  const a = p.attributes;
  if (!allowId && p.id) {
    problems.add([...path, 'id'], 'invalid', 'Create Profile takes no id; use POST /api/profile-import to update.');
    return undefined;
  }
  if (!(p.id || a.email || a.phone_number || a.external_id || a.anonymous_id || a._kx)) {
    problems.add([...path, 'attributes'], 'missing_identifier', `A profile needs one of ${IDENTIFIERS}.`);
    return undefined;
  }
  if (a.meta !== undefined && a.meta !== null) {
    problems.add(
      [...path, 'attributes', 'meta'],
      'not_supported',
      'meta.patch_properties (append, unappend, unset) is not supported here; send the properties to set.',
    );
    return undefined;
  }
  return p;
}

function planOne(body: unknown, allowId: boolean): ProfileWrite {
  const problems = new Problems();
  checkJsonValues(body, [], problems);
  const envelope = ProfileWriteBodySchema.safeParse(body);
  if (!envelope.success) {
    problems.addZodIssues([], envelope.error.issues);
    problems.throwIfAny();
  }
  const profile = checkProfile((body as { data: unknown }).data, ['data'], allowId, problems);
  problems.throwIfAny();
  if (!profile) throw new Error('unreachable: problems were thrown');
  return profile;
}

function mergeOf(id: string, p: ProfileWrite): ProfileMerge {
  return { id, attributes: profileAttributesFrom(p.attributes), kx: p.attributes._kx ?? null };
}

const identity = (p: ProfileWrite) => ({ type: 'profile' as const, id: p.id, attributes: p.attributes });

async function stored(tx: Db, accountId: string, id: string): Promise<ProfileRow> {
  const row = await getProfileById(tx, accountId, id);
  if (!row) throw new Error(`profile ${id} vanished inside its own transaction`);
  return row;
}

/** Create Profile: the new profile, or a 409 naming the profile that holds one of its identifiers. */
export async function createProfile(db: Db, accountId: string, body: unknown): Promise<ProfileRow> {
  const profile = planOne(body, false);
  return db.transaction(async (tx) => {
    const [existing] = await resolveProfiles(tx, accountId, [identifiersOf(identity(profile))]);
    if (existing) {
      throw new HttpError(409, {
        code: 'duplicate_profile',
        detail: 'A profile already exists with one of these identifiers.',
        pointer: '/data/attributes',
        meta: { duplicate_profile_id: existing },
      });
    }
    const id = newProfileId(identity(profile));
    await mergeProfiles(tx, accountId, [mergeOf(id, profile)]);
    return stored(tx, accountId, id);
  });
}

/** The attributes a write sends as null: Klaviyo clears them. */
function clearedBy(p: ProfileWrite): ClearableProfileField[] {
  const a = p.attributes as Record<string, unknown>;
  return ([...PROFILE_TEXT_FIELDS, 'location', 'properties'] as const).filter((f) => f in a && a[f] === null);
}

/** Create or Update Profile: the profile, and whether this request created it. */
export async function importProfile(
  db: Db,
  accountId: string,
  body: unknown,
): Promise<{ profile: ProfileRow; created: boolean }> {
  const profile = planOne(body, true);
  return db.transaction(async (tx) => {
    const [existing] = await resolveProfiles(tx, accountId, [identifiersOf(identity(profile))]);
    const id = existing ?? newProfileId(identity(profile));
    await mergeProfiles(tx, accountId, [mergeOf(id, profile)]);
    if (existing) await clearProfileAttributes(tx, accountId, id, clearedBy(profile));
    return { profile: await stored(tx, accountId, id), created: existing === null || existing === undefined };
  });
}

export interface ProfileImportJob {
  readonly id: string;
  readonly totalCount: number;
  readonly createdAt: Date;
  readonly completedAt: Date;
}

/** Bulk Import Profiles, processed at once: every profile created or updated, or (invalid) none. */
export async function bulkImportProfiles(
  db: Db,
  accountId: string,
  body: unknown,
  options: IngestOptions = {},
): Promise<ProfileImportJob> {
  const createdAt = new Date();
  const { maxResources } = resolvedLimits(options);
  const problems = new Problems();
  const envelope = ProfileImportJobBodySchema.safeParse(body);
  if (!envelope.success) {
    problems.addZodIssues([], envelope.error.issues);
    problems.throwIfAny();
  }
  const job = envelope.data!.data;
  const listsPath: PathSegment[] = ['data', 'relationships', 'lists'];
  const relationships = job.relationships as { lists?: { data?: unknown[] } } | undefined | null;
  if (relationships?.lists?.data && relationships.lists.data.length > 0) {
    problems.add(listsPath, 'not_supported', 'Lists are not stored here: send the job without relationships.lists.');
  }
  const itemsPath: PathSegment[] = ['data', 'attributes', 'profiles', 'data'];
  const items = job.attributes.profiles.data;
  checkResourceCount(problems, itemsPath, items.length, maxResources, 'profiles were');
  checkJsonValues(body, [], problems);
  const profiles: ProfileWrite[] = [];
  items.forEach((item, i) => {
    const p = checkProfile(item, [...itemsPath, i], true, problems);
    if (p) profiles.push(p);
  });
  problems.throwIfAny();
  await db.transaction(async (tx) => {
    const matched = await resolveProfiles(
      tx,
      accountId,
      profiles.map((p) => identifiersOf(identity(p))),
    );
    await mergeProfiles(
      tx,
      accountId,
      profiles.map((p, i) => mergeOf(matched[i] ?? newProfileId(identity(p)), p)),
    );
  });
  return { id: randomUUID(), totalCount: profiles.length, createdAt, completedAt: new Date() };
}
