import { copyUnlessDuplicate } from '../db/copy';
import { copyField, copyLineOf } from '../db/copyFormat';
import type { CopyFields, CopyRow, Db } from '../db/port';
import { isLaterInstant } from './instants';

/**
 * Profiles. A batch's writes sort its rows by id, so concurrent ingests lock profiles in the same
 * order (upsertProfiles says why they cannot deadlock).
 */

export interface ProfileRow {
  readonly id: string;
  readonly email: string | null;
  readonly phoneNumber: string | null;
  readonly externalId: string | null;
  readonly anonymousId: string | null;
  readonly firstName: string | null;
  readonly lastName: string | null;
  readonly organization: string | null;
  readonly locale: string | null;
  readonly title: string | null;
  readonly image: string | null;
  readonly location: Readonly<Record<string, unknown>> | null;
  readonly properties: Readonly<Record<string, unknown>> | null;
  readonly created: Date | null;
  readonly updated: Date | null;
  readonly lastEventDate: Date | null;
  readonly rawData: Readonly<Record<string, unknown>> | null;
  /** Created because an event named the profile before the profile itself arrived. */
  readonly isStub: boolean;
  readonly ingestedAt: Date;
}

/** The scalar attributes a profile row stores in columns of the same names. */
export const PROFILE_TEXT_FIELDS = [
  'email',
  'phone_number',
  'external_id',
  'anonymous_id',
  'first_name',
  'last_name',
  'organization',
  'locale',
  'title',
  'image',
] as const;
export type ProfileTextField = (typeof PROFILE_TEXT_FIELDS)[number];

export type ProfileAttributes = { readonly [K in ProfileTextField]: string | null } & {
  readonly location: Readonly<Record<string, unknown>> | null;
  readonly properties: Readonly<Record<string, unknown>> | null;
};

/**
 * A profile resource to store (newest `updated` wins), or (isStub) only an id that events reference.
 * `lastEventDate` is the date Klaviyo states on the resource; it never moves the stored one back.
 */
export type ProfileUpsert =
  | (ProfileAttributes & {
      readonly id: string;
      readonly isStub: false;
      /** ISO 8601 instants. */
      readonly created: string | null;
      readonly updated: string | null;
      readonly lastEventDate: string | null;
      readonly rawData: Readonly<Record<string, unknown>>;
      /**
       * The same resource as a field of COPY text (its JSON, escaped as copyField escapes it), where
       * the profile has it so: the COPY of a new profile sends it as it is instead of serialising
       * rawData again. A queued page's profile lines carry it.
       */
      readonly rawDataCopyText?: string;
    })
  | { readonly id: string; readonly isStub: true };

export interface ProfileDbRow extends Record<string, unknown> {
  id: string;
  email: string | null;
  phone_number: string | null;
  external_id: string | null;
  anonymous_id: string | null;
  first_name: string | null;
  last_name: string | null;
  organization: string | null;
  locale: string | null;
  title: string | null;
  image: string | null;
  location: Record<string, unknown> | null;
  properties: Record<string, unknown> | null;
  created: Date | null;
  updated: Date | null;
  last_event_date: Date | null;
  raw_data: Record<string, unknown> | null;
  is_stub: boolean;
  ingested_at: Date;
}

/**
 * A profile's last event date, derived when read: the later of what Klaviyo stated on the resource
 * and the profile's newest stored event, one probe of klaviyo_events_profile_time_idx. Ingest then
 * never rewrites the ~1000 profiles a page names just to move a date (a large share of a page's time).
 */
export const PROFILE_LAST_EVENT_DATE_SQL = `greatest(p.last_event_date,
  (SELECT e."timestamp" FROM klaviyo_events e
    WHERE e.account_id = p.account_id AND e.profile_id = p.id ORDER BY e."timestamp" DESC, e.id DESC LIMIT 1))`;

export const PROFILE_COLUMNS =
  'p.id, p.email, p.phone_number, p.external_id, p.anonymous_id, p.first_name, p.last_name, p.organization, p.locale, ' +
  `p.title, p.image, p.location, p.properties, p.created, p.updated, ${PROFILE_LAST_EVENT_DATE_SQL} AS last_event_date, ` +
  'p.raw_data, p.is_stub, p.ingested_at';

export function toProfileRow(r: ProfileDbRow): ProfileRow {
  return {
    id: r.id,
    email: r.email,
    phoneNumber: r.phone_number,
    externalId: r.external_id,
    anonymousId: r.anonymous_id,
    firstName: r.first_name,
    lastName: r.last_name,
    organization: r.organization,
    locale: r.locale,
    title: r.title,
    image: r.image,
    location: r.location,
    properties: r.properties,
    created: r.created,
    updated: r.updated,
    lastEventDate: r.last_event_date,
    rawData: r.raw_data,
    isStub: r.is_stub,
    ingestedAt: r.ingested_at,
  };
}

export async function getProfileById(db: Db, accountId: string, id: string): Promise<ProfileRow | null> {
  const rows = await db.query<ProfileDbRow>(
    `SELECT ${PROFILE_COLUMNS} FROM klaviyo_profiles p WHERE p.account_id = $1 AND p.id = $2`,
    [accountId, id],
  );
  return rows[0] ? toProfileRow(rows[0]) : null;
}

export interface UpsertProfilesOptions {
  /**
   * New profiles are copied by one such writer of the account at a time, each after the last one's
   * commit (a transaction-scoped advisory lock, taken only when the unlocked read finds new ones):
   * for a writer whose transaction goes on after its profiles, such as the queue consumer's batch.
   * Without it, two batches in flight that bring the same new profile both copy it; the later
   * COPY waits for the other transaction to commit, is refused, and its profiles go again by the
   * slower INSERT (upsertProfiles says why that is correct, docs/queue.md what it cost).
   *
   * The caller must hold no row another holder of the lock could wait for: the consumer takes it
   * only for a batch whose only writes after its profiles are its dirty marks.
   */
  readonly oneInserterPerAccount?: boolean;
}

/** The advisory lock class (the first key of the two-key form) of oneInserterPerAccount. */
const NEW_PROFILES_LOCK_CLASS = 718_262_001;

export interface UpsertProfilesResult {
  /** Rows inserted (stubs included) or replaced by a newer copy. */
  readonly written: number;
}

const ATTRIBUTE_COLUMNS = [...PROFILE_TEXT_FIELDS, 'location', 'properties', 'created', 'updated', 'raw_data'] as const;

// An incoming full copy replaces the stored row when the stored one is a stub, is older, or has no
// `updated` at all and differs. An equal or older copy changes no attribute, so a late, older copy
// never overwrites a newer one and re-deliveries are no-ops.
const WINS_OVER_STORED = `(NOT excluded.is_stub AND (
     p.is_stub
  OR excluded.updated > p.updated
  OR (p.updated IS NULL AND excluded.raw_data IS DISTINCT FROM p.raw_data)))`;

// The JSON rows' columns, as profileRows writes them.
const INPUT_COLUMNS = `id text, is_stub boolean, ${PROFILE_TEXT_FIELDS.map((f) => `${f} text`).join(', ')},
      location jsonb, properties jsonb, created timestamptz, updated timestamptz, last_event_date timestamptz, raw_data jsonb`;

const UPSERT_PROFILES_SQL = `
  WITH input AS (
    SELECT r.* FROM jsonb_to_recordset($2::jsonb) AS r(${INPUT_COLUMNS})
  ), changes AS (
    -- Rows that would not change are left out here, so they are not row-locked by the INSERT.
    SELECT i.* FROM input i LEFT JOIN klaviyo_profiles p ON p.account_id = $1 AND p.id = i.id
     WHERE p.id IS NULL
        OR (NOT i.is_stub AND (p.is_stub OR i.updated > p.updated OR (p.updated IS NULL AND i.raw_data IS DISTINCT FROM p.raw_data)))
  ), written AS (
    INSERT INTO klaviyo_profiles AS p (account_id, id, ${ATTRIBUTE_COLUMNS.join(', ')}, last_event_date, is_stub)
    SELECT $1::text, id, ${ATTRIBUTE_COLUMNS.join(', ')}, last_event_date, is_stub FROM changes ORDER BY id
    ON CONFLICT (account_id, id) DO UPDATE SET
      ${ATTRIBUTE_COLUMNS.map((c) => `${c} = excluded.${c}`).join(',\n      ')},
      is_stub = false,
      ingested_at = now(),
      last_event_date = greatest(p.last_event_date, excluded.last_event_date)
    WHERE ${WINS_OVER_STORED}
    RETURNING 1
  )
  SELECT count(*) AS written FROM written`;

// New profiles after a COPY of them was refused: each inserted unless another transaction has
// stored it meanwhile (waiting for one still open), in the order the COPY had them. No stored row
// is locked, and nothing is retried.
const INSERT_UNLESS_STORED_SQL = `
  INSERT INTO klaviyo_profiles AS p (account_id, id, ${ATTRIBUTE_COLUMNS.join(', ')}, last_event_date, is_stub)
  SELECT $1::text, r.id, ${ATTRIBUTE_COLUMNS.map((c) => `r.${c}`).join(', ')}, r.last_event_date, r.is_stub
    FROM ROWS FROM (jsonb_to_recordset($2::jsonb) AS (${INPUT_COLUMNS})) WITH ORDINALITY
         AS r(id, is_stub, ${PROFILE_TEXT_FIELDS.join(', ')}, location, properties, created, updated, last_event_date, raw_data, position)
   ORDER BY r.position
  ON CONFLICT (account_id, id) DO NOTHING
  RETURNING p.id`;

// A page names ~1000 profiles, nearly all already stored and unchanged. This read (no locks) finds
// the stored state of the batch's ids, so that only rows that are new or may win travel to the
// write, and a page of known, unchanged profiles costs this one read and no write at all.
// The ids go in as one array (ANY) rather than a set to join: PostgreSQL then looks them up in one
// sorted pass over the primary key and visits each heap page once, where the join probed the index
// once per id (docs/queue.md has the figures).
// `updated` comes back in exact microseconds: a Date keeps milliseconds, and judging "may be newer"
// at that precision sent every copy whose `updated` equals the stored one (a page's ~950 known
// profiles, to write a few dozen).
const STORED_STATE_SQL = `
  SELECT p.id, p.is_stub, (extract(epoch FROM p.updated) * 1000000)::int8 AS updated_us
    FROM klaviyo_profiles p
   WHERE p.account_id = $1 AND p.id = ANY (ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))`;

interface StoredState extends Record<string, unknown> {
  readonly id: string;
  readonly is_stub: boolean;
  /** Microseconds since the epoch, as int8 text (the port's contract for int8). */
  readonly updated_us: string | null;
}

/**
 * Upserts profile resources and stubs. A stub is always filled in by the first full copy whatever
 * its `updated`; between full copies the newer `updated` wins, and an older copy arriving late
 * changes nothing.
 *
 * An unlocked read of the batch's ids decides what each copy needs: profiles it did not find go by
 * COPY straight into the table (where the postgres.js driver offers COPY), and copies that may
 * replace a stored one go to ONE upsert statement, which locks them in id order and re-checks
 * every condition on the locked row. The read can be stale in one direction only (profiles are never
 * deleted, a stored copy gets newer, never older, and never turns back into a stub), so what it
 * leaves out could not have changed anything.
 *
 * When a COPY is refused, another transaction inserted one of those profiles after the read (the
 * COPY waited for it to commit). The savepoint rolls back, and the same profiles go to one INSERT
 * ... ON CONFLICT DO NOTHING in the same order, which waits for any such transaction still open and
 * skips what it stored; the copies it skipped join the upsert, which replaces a stored copy only
 * when ours wins. Starting again from the read instead (the first version) could be refused again
 * by the next writer, and again: with several pages in flight that each brought new profiles, a page
 * could wait for many seconds (bench/ingest.ts with BENCH_CONCURRENCY).
 *
 * No deadlock between two such writers. Each first inserts its new profiles in one statement, in
 * one order all writers share (by id, as the COPY has them, and the same after a refusal), locking
 * no stored row meanwhile: two inserting writers can wait for each other's rows only along that
 * order, never in a cycle. Only then does each lock the stored rows it may replace, in one statement
 * in id order. A writer that holds such a row is past its own inserts, so it never waits for rows a
 * writer still at this step holds: that one has inserted its profiles and nothing else yet.
 *
 * With oneInserterPerAccount, a writer that found new profiles first waits for the account's
 * advisory lock, which its holder keeps to its commit. A writer waiting for it has inserted no
 * profile and locked no stored one yet, so the holder never waits for it here; what the callers
 * write after their profiles is theirs to keep out of such a wait (UpsertProfilesOptions).
 */
export async function upsertProfiles(
  db: Db,
  accountId: string,
  profiles: readonly ProfileUpsert[],
  options: UpsertProfilesOptions = {},
): Promise<UpsertProfilesResult> {
  if (profiles.length === 0) return { written: 0 };
  // The read goes out before the copies are merged and sorted, with their ids as they come (the
  // statement sorts them itself): this process merges while the server reads.
  const reading = storedStates(db, accountId, profiles);
  const merged = mergeById(profiles);
  const stored = await reading;
  let unseen = merged.filter((p) => !stored.has(p.id));
  const copies = db.copyRows !== undefined && unseen.length > 0;
  // Once the lock is this transaction's, any writer that held it before has committed (or rolled
  // back), and a new read sees the profiles it inserted, which this one then does not copy again.
  // The two statements go together (postgres.js pipelines them on the transaction's connection, and
  // the server runs them in turn: the read's snapshot is taken after the lock is granted), and the
  // copies that may replace stored ones are judged meanwhile.
  const readAgain = copies && options.oneInserterPerAccount ? lockedAndReadAgain(db, accountId, unseen) : undefined;
  let mayReplace = mayReplaceStored(merged, stored);
  if (!copies) return upsertThroughJson(db, accountId, [...unseen, ...mayReplace]);
  if (readAgain) {
    const storedByEarlierHolder = await readAgain;
    if (storedByEarlierHolder.size > 0) {
      mayReplace = [...mayReplace, ...mayReplaceStored(unseen, storedByEarlierHolder)].sort(compareIds);
      unseen = unseen.filter((p) => !storedByEarlierHolder.has(p.id));
    }
    if (unseen.length === 0) return upsertThroughJson(db, accountId, mayReplace);
  }
  if ((await copyUnseen(db, accountId, unseen)) === undefined)
    return { written: unseen.length + (await upsertThroughJson(db, accountId, mayReplace)).written };
  const inserted = await db.query<{ id: string }>(INSERT_UNLESS_STORED_SQL, [
    accountId,
    JSON.stringify(profileRows(unseen)),
  ]);
  const insertedIds = new Set(inserted.map((r) => r.id));
  const storedMeanwhile = unseen.filter((p) => !p.isStub && !insertedIds.has(p.id));
  return {
    written: inserted.length + (await upsertThroughJson(db, accountId, [...mayReplace, ...storedMeanwhile])).written,
  };
}

const compareIds = (a: { readonly id: string }, b: { readonly id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** The stored state of the profiles' ids (unlocked), by id. */
async function storedStates(
  db: Db,
  accountId: string,
  profiles: readonly ProfileUpsert[],
): Promise<Map<string, StoredState>> {
  const rows = await db.query<StoredState>(STORED_STATE_SQL, [accountId, JSON.stringify(profiles.map((p) => p.id))]);
  return new Map(rows.map((r) => [r.id, r]));
}

/** The copies that may replace their stored profile (a stub, or a copy no newer, changes nothing). */
function mayReplaceStored(
  profiles: readonly ProfileUpsert[],
  stored: ReadonlyMap<string, StoredState>,
): ProfileUpsert[] {
  return profiles.filter((p) => {
    const known = stored.get(p.id);
    return known !== undefined && !p.isStub && mayWin(p, known);
  });
}

/** The account's lock of oneInserterPerAccount, then the stored state of the ids read again. */
async function lockedAndReadAgain(
  db: Db,
  accountId: string,
  unseen: readonly ProfileUpsert[],
): Promise<Map<string, StoredState>> {
  const [, stored] = await Promise.all([
    db.query('SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))', [NEW_PROFILES_LOCK_CLASS, accountId]),
    storedStates(db, accountId, unseen),
  ]);
  return stored;
}

/** Every profile column a write sets, in COPY's order; ingested_at keeps its default. */
const COPY_COLUMNS = ['account_id', 'id', 'is_stub', ...ATTRIBUTE_COLUMNS, 'last_event_date'] as const;

/**
 * Profiles the unlocked read did not find, by COPY straight into the table, in a savepoint. Returns
 * the unique violation that refused them (the savepoint then rolled back), or undefined once stored.
 */
function copyUnseen(db: Db, accountId: string, unseen: readonly ProfileUpsert[]): Promise<unknown> {
  const json = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));
  const copyRowOf = (p: ProfileUpsert): CopyRow => {
    if (p.isStub) return [accountId, p.id, 'true', ...ATTRIBUTE_COLUMNS.map(() => null), null];
    const before: CopyFields = [
      accountId,
      p.id,
      'false',
      ...PROFILE_TEXT_FIELDS.map((f) => p[f]),
      json(p.location),
      json(p.properties),
      p.created,
      p.updated,
    ];
    // The resource is most of a new profile's row: as its line has it, neither serialised nor escaped again.
    return p.rawDataCopyText === undefined
      ? [...before, json(p.rawData), p.lastEventDate]
      : { line: `${copyLineOf(before)}\t${p.rawDataCopyText}\t${copyField(p.lastEventDate)}` };
  };
  // Made as the COPY takes them (a generator), so that the server stores the first rows while the
  // rest are serialised, as the events' COPY does.
  const rows = function* (): Generator<CopyRow> {
    for (const p of unseen) yield copyRowOf(p);
  };
  return copyUnlessDuplicate(db, 'klaviyo_profiles', COPY_COLUMNS, rows());
}

/** Profiles as the JSON rows of INPUT_COLUMNS. */
function profileRows(profiles: readonly ProfileUpsert[]) {
  return profiles.map((p) =>
    p.isStub
      ? { id: p.id, is_stub: true }
      : {
          id: p.id,
          is_stub: false,
          email: p.email,
          phone_number: p.phone_number,
          external_id: p.external_id,
          anonymous_id: p.anonymous_id,
          first_name: p.first_name,
          last_name: p.last_name,
          organization: p.organization,
          locale: p.locale,
          title: p.title,
          image: p.image,
          location: p.location,
          properties: p.properties,
          created: p.created,
          updated: p.updated,
          last_event_date: p.lastEventDate,
          raw_data: p.rawData,
        },
  );
}

async function upsertThroughJson(
  db: Db,
  accountId: string,
  profiles: readonly ProfileUpsert[],
): Promise<UpsertProfilesResult> {
  if (profiles.length === 0) return { written: 0 };
  const result = await db.query<{ written: string }>(UPSERT_PROFILES_SQL, [
    accountId,
    JSON.stringify(profileRows(profiles)),
  ]);
  return { written: Number(result[0]?.written ?? 0) };
}

/** Whether a full copy could replace the stored row (WINS_OVER_STORED, judged from the unlocked read). */
function mayWin(p: ProfileUpsert & { isStub: false }, stored: StoredState | undefined): boolean {
  if (!stored || stored.is_stub || stored.updated_us === null) return true;
  if (p.updated === null) return false;
  const micros = epochMicros(p.updated);
  // A time this cannot read exactly travels: the statement decides on the locked row anyway.
  return micros === undefined || micros > Number(stored.updated_us);
}

const ISO_PARTS = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})$/i;

/**
 * An ISO 8601 instant in microseconds since the epoch, exactly as PostgreSQL stores it, or undefined
 * for a form this does not read exactly (more than six fractional digits, which PostgreSQL rounds;
 * no seconds; an offset without a colon). Exact in a double: 2^53 microseconds is the year 2255.
 */
export function epochMicros(iso: string): number | undefined {
  const parts = ISO_PARTS.exec(iso);
  if (!parts) return undefined;
  const wholeSecondMs = Date.parse(`${parts[1]}${parts[3]}`);
  if (!Number.isFinite(wholeSecondMs)) return undefined;
  return wholeSecondMs * 1000 + Number((parts[2] ?? '').padEnd(6, '0'));
}

/** One row per id (ON CONFLICT cannot touch a row twice in one statement), sorted by id. */
function mergeById(profiles: readonly ProfileUpsert[]): ProfileUpsert[] {
  const byId = new Map<string, ProfileUpsert>();
  for (const p of profiles) {
    const seen = byId.get(p.id);
    if (!seen) {
      byId.set(p.id, p);
      continue;
    }
    if (seen.isStub || p.isStub) {
      byId.set(p.id, seen.isStub ? p : seen);
      continue;
    }
    const keep = isNewer(p.updated, seen.updated) ? p : seen;
    byId.set(p.id, withLastEventDate(keep, latest(seen.lastEventDate, p.lastEventDate)));
  }
  return [...byId.values()].sort(compareIds);
}

/**
 * A profile as a plain object, its fields read one by one (withLastEventDate says why), without the
 * COPY text it may carry: the profile as a value, as the route plans it.
 */
export function plainProfile(p: ProfileUpsert): ProfileUpsert {
  return p.isStub ? { id: p.id, isStub: true } : withLastEventDate(p, p.lastEventDate, { keepCopyText: false });
}

/**
 * The copy with another lastEventDate, its fields named one by one: a copy may keep them behind
 * getters (a queued profile parsed only when read, lib/app/ingest/queueCopyRows.ts), which a spread
 * would leave out.
 */
function withLastEventDate(
  p: Extract<ProfileUpsert, { isStub: false }>,
  lastEventDate: string | null,
  { keepCopyText } = { keepCopyText: true },
): ProfileUpsert {
  const texts = Object.fromEntries(PROFILE_TEXT_FIELDS.map((f) => [f, p[f]])) as {
    [K in ProfileTextField]: string | null;
  };
  return {
    id: p.id,
    isStub: false,
    ...texts,
    location: p.location,
    properties: p.properties,
    created: p.created,
    updated: p.updated,
    lastEventDate,
    rawData: p.rawData,
    ...(keepCopyText && p.rawDataCopyText !== undefined ? { rawDataCopyText: p.rawDataCopyText } : {}),
  };
}

/** Whether `updated` a is strictly later than b, to the microsecond (a missing one is never later). */
const isNewer = isLaterInstant;

function latest(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return isLaterInstant(b, a) ? b : a;
}

/** Identifiers of a profile named by a Klaviyo write (Create Event, Bulk Create Events). */
export interface ProfileIdentifiers {
  readonly id: string | null;
  readonly email: string | null;
  readonly phoneNumber: string | null;
  readonly externalId: string | null;
  readonly anonymousId?: string | null;
  /** Klaviyo's `_kx` (exchange id). */
  readonly kx?: string | null;
}

/**
 * For each identifier set, the stored profile it names: by id, then email (case-insensitive),
 * phone_number, external_id, anonymous_id, _kx, as Klaviyo resolves them; null when none matches.
 * Ties go to the lowest id. One statement for the whole batch.
 */
export async function resolveProfiles(
  db: Db,
  accountId: string,
  identities: readonly ProfileIdentifiers[],
): Promise<(string | null)[]> {
  if (identities.length === 0) return [];
  const payload = JSON.stringify(
    identities.map((p, ord) => ({
      ord,
      id: p.id,
      email: p.email,
      phone_number: p.phoneNumber,
      external_id: p.externalId,
      anonymous_id: p.anonymousId ?? null,
      kx: p.kx ?? null,
    })),
  );
  const rows = await db.query<{ ord: number; id: string | null }>(
    `SELECT i.ord, m.id
       FROM jsonb_to_recordset($2::jsonb) AS i(ord int, id text, email text, phone_number text, external_id text,
                                               anonymous_id text, kx text)
       LEFT JOIN LATERAL (
         SELECT c.id FROM (
           SELECT p.id, 1 AS rank FROM klaviyo_profiles p WHERE p.account_id = $1 AND p.id = i.id
           UNION ALL
           SELECT p.id, 2 FROM klaviyo_profiles p
            WHERE p.account_id = $1 AND lower(p.email) = lower(i.email) AND p.email IS NOT NULL
           UNION ALL
           SELECT p.id, 3 FROM klaviyo_profiles p WHERE p.account_id = $1 AND p.phone_number = i.phone_number
           UNION ALL
           SELECT p.id, 4 FROM klaviyo_profiles p WHERE p.account_id = $1 AND p.external_id = i.external_id
           UNION ALL
           SELECT p.id, 5 FROM klaviyo_profiles p WHERE p.account_id = $1 AND p.anonymous_id = i.anonymous_id
           UNION ALL
           SELECT p.id, 6 FROM klaviyo_profiles p WHERE p.account_id = $1 AND p.kx = i.kx
         ) c ORDER BY c.rank, c.id LIMIT 1
       ) m ON true
      ORDER BY i.ord`,
    [accountId, payload],
  );
  const out: (string | null)[] = identities.map(() => null);
  for (const r of rows) out[r.ord] = r.id;
  return out;
}

/**
 * A profile written by a Klaviyo write: the attributes given (absent ones are null) merge over the
 * stored ones, properties and location key by key, as Klaviyo's Create Event does.
 */
export interface ProfileMerge {
  readonly id: string;
  readonly attributes: ProfileAttributes;
  /** Klaviyo's `_kx`, kept as an identifier (not an attribute any GET returns). */
  readonly kx?: string | null;
}

export interface MergeProfilesResult {
  /** Profiles created or whose attributes changed. */
  readonly written: number;
}

const MERGED = {
  text: (f: string) => `coalesce(excluded.${f}, p.${f})`,
  object: (f: string) =>
    `CASE WHEN excluded.${f} IS NULL THEN p.${f} ELSE coalesce(p.${f}, '{}'::jsonb) || excluded.${f} END`,
};
const MERGED_ROW = `ROW(${PROFILE_TEXT_FIELDS.map(MERGED.text).join(', ')}, ${MERGED.object('location')}, ${MERGED.object('properties')})`;
const STORED_ROW = `ROW(${PROFILE_TEXT_FIELDS.map((f) => `p.${f}`).join(', ')}, p.location, p.properties)`;
const ATTRIBUTES_CHANGE = `(p.is_stub OR ${MERGED_ROW} IS DISTINCT FROM ${STORED_ROW})`;

const MERGE_PROFILES_SQL = `
  WITH input AS (
    SELECT r.* FROM jsonb_to_recordset($2::jsonb) AS r(
      id text, ${PROFILE_TEXT_FIELDS.map((f) => `${f} text`).join(', ')}, location jsonb, properties jsonb, kx text)
  ), written AS (
    INSERT INTO klaviyo_profiles AS p (account_id, id, ${PROFILE_TEXT_FIELDS.join(', ')}, location, properties, created,
                                       updated, raw_data, is_stub, kx)
    SELECT $1::text, id, ${PROFILE_TEXT_FIELDS.join(', ')}, location, properties, now(), now(),
           jsonb_build_object('type', 'profile', 'id', id, 'attributes',
             jsonb_strip_nulls(jsonb_build_object(${PROFILE_TEXT_FIELDS.map((f) => `'${f}', ${f}`).join(', ')},
               'location', location, 'properties', properties)) || jsonb_build_object('created', now(), 'updated', now())),
           false, kx
      FROM input ORDER BY id
    ON CONFLICT (account_id, id) DO UPDATE SET
      ${PROFILE_TEXT_FIELDS.map((f) => `${f} = ${MERGED.text(f)}`).join(',\n      ')},
      location = ${MERGED.object('location')},
      properties = ${MERGED.object('properties')},
      updated = CASE WHEN ${ATTRIBUTES_CHANGE} THEN now() ELSE p.updated END,
      created = coalesce(p.created, now()),
      raw_data = CASE WHEN ${ATTRIBUTES_CHANGE}
        THEN coalesce(p.raw_data, jsonb_build_object('type', 'profile', 'id', p.id))
             || jsonb_build_object('attributes', coalesce(p.raw_data->'attributes', '{}'::jsonb)
                  || ((excluded.raw_data->'attributes') - 'created'::text - 'updated'::text)
                  || jsonb_build_object('location', ${MERGED.object('location')}, 'properties', ${MERGED.object('properties')},
                                        'updated', now()))
        ELSE p.raw_data END,
      ingested_at = CASE WHEN ${ATTRIBUTES_CHANGE} THEN now() ELSE p.ingested_at END,
      is_stub = false,
      kx = coalesce(excluded.kx, p.kx)
    WHERE ${ATTRIBUTES_CHANGE} OR (excluded.kx IS NOT NULL AND excluded.kx IS DISTINCT FROM p.kx)
    RETURNING (xmax = 0) AS inserted, updated = now() AS changed
  )
  SELECT count(*) FILTER (WHERE inserted OR changed) AS written FROM written`;

/**
 * Creates or merges the profiles of a Klaviyo write in one statement. A retry that changes nothing
 * leaves the row as it was (its `updated` included), so retried requests are idempotent.
 */
export async function mergeProfiles(
  db: Db,
  accountId: string,
  profiles: readonly ProfileMerge[],
): Promise<MergeProfilesResult> {
  if (profiles.length === 0) return { written: 0 };
  const byId = new Map<string, ProfileMerge>();
  for (const p of profiles) {
    const seen = byId.get(p.id);
    byId.set(p.id, seen ? mergeTwo(seen, p) : p);
  }
  const payload = JSON.stringify(
    [...byId.values()].sort(compareIds).map((p) => ({ id: p.id, ...p.attributes, kx: p.kx ?? null })),
  );
  const rows = await db.query<{ written: string }>(MERGE_PROFILES_SQL, [accountId, payload]);
  return { written: Number(rows[0]?.written ?? 0) };
}

/** Two writes to one profile in one request: the later one's given attributes win. */
function mergeTwo(a: ProfileMerge, b: ProfileMerge): ProfileMerge {
  const attributes: Record<string, unknown> = { ...a.attributes };
  for (const f of PROFILE_TEXT_FIELDS) attributes[f] = b.attributes[f] ?? a.attributes[f];
  attributes.location = b.attributes.location
    ? { ...a.attributes.location, ...b.attributes.location }
    : a.attributes.location;
  attributes.properties = b.attributes.properties
    ? { ...a.attributes.properties, ...b.attributes.properties }
    : a.attributes.properties;
  return { id: a.id, attributes: attributes as ProfileAttributes, kx: b.kx ?? a.kx ?? null };
}

/** What a Klaviyo write can clear by sending null (Create or Update Profile). */
export type ClearableProfileField = ProfileTextField | 'location' | 'properties';
const CLEARABLE: readonly ClearableProfileField[] = [...PROFILE_TEXT_FIELDS, 'location', 'properties'];

/**
 * Sets these attributes to null, in the columns and in the stored resource, and moves `updated`
 * when one of them had a value. Klaviyo's Create or Update Profile clears an attribute sent as null.
 */
export async function clearProfileAttributes(
  db: Db,
  accountId: string,
  id: string,
  fields: readonly ClearableProfileField[],
): Promise<void> {
  const names = CLEARABLE.filter((f) => fields.includes(f));
  if (names.length === 0) return;
  const hadValue = names.map((f) => `p.${f} IS NOT NULL`).join(' OR ');
  await db.query(
    `UPDATE klaviyo_profiles AS p SET
       ${names.map((f) => `${f} = NULL`).join(', ')},
       raw_data = jsonb_set(coalesce(p.raw_data, jsonb_build_object('type', 'profile', 'id', p.id)), '{attributes}',
                   coalesce(p.raw_data->'attributes', '{}'::jsonb)
                   || jsonb_build_object(${names.map((f) => `'${f}', NULL::text`).join(', ')}, 'updated', now())),
       updated = now(),
       ingested_at = now()
     WHERE p.account_id = $1 AND p.id = $2 AND (${hadValue})`,
    [accountId, id],
  );
}
