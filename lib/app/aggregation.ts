import { config, rollupSettings } from '../config';
import type { Db } from '../db/port';
import {
  aggregationSpan,
  dirtyBacklog,
  planBatchStatementsOnce,
  rebuildHourRange,
  recomputeHourBuckets,
  takeDirtyBuckets,
  takeDirtyBucketsInRange,
  tryLockAggregation,
  waitLockAggregation,
} from '../repositories/aggregates';
import {
  applyDimensionBatch,
  deleteZoneDays,
  keysAwaitingBackfill,
  markKeysReady,
  rebuildDimensionRange,
  registerKeys,
  resetDailyDimensionRange,
  unregisterDayZonesExcept,
  type DimensionFallback,
} from '../repositories/dimensions';
import { applyDimensionProfileBatch, rebuildDimensionProfileRange } from '../repositories/dimensionProfiles';
import { applyLookbackAdjustmentsOutside, resetLookbacksInRange, syncProfileHours } from '../repositories/profileHours';
import { ensureAccount, listAccounts } from '../repositories/accounts';
import { log } from '../log';

/**
 * Incremental hourly rollups.
 *
 * Ingest marks each (metric, UTC hour) it inserts into in klaviyo_aggregate_dirty, in the transaction
 * that inserts the events and after them (the same statement on the JSON path; the statement after
 * the COPY's pending rows on the COPY path; the queue consumer's, the last before its commit), with
 * INSERT ... ON CONFLICT DO UPDATE (WHERE false: a mark there already is locked, not rewritten, as
 * DO UPDATE locks every conflicting row): the mark is row-locked until the ingest commits. With the mark it writes one klaviyo_aggregate_pending row per event it really
 * inserted (re-deliveries write none), so pending rows commit together with their events and marks.
 * A batch of the aggregator is one transaction:
 *   1. the account's row lock (klaviyo_accounts, FOR NO KEY UPDATE SKIP LOCKED): one writer of an
 *      account's rollups at a time, and accounts in parallel; a run that finds it taken stops.
 *      Every statement below touches that account's rows only.
 *   2. statement A: DELETE the oldest marks ... FOR UPDATE SKIP LOCKED ... RETURNING them;
 *   2b. statement D, for those buckets: the dimension rollups (lib/repositories/dimensions.ts) add the
 *      events of the pending rows (read, not taken; from the values the rows carry, migration 0012),
 *      or recount an hour without pending rows. It reads
 *      what B takes: between D and B no pending row of a taken hour can commit (its ingest would
 *      first have to re-mark the hour, which waits for this transaction), so both see the same rows;
 *   3. statement B, for those buckets: their profile-hours gain the pending rows' profiles (or, for a
 *      bucket without pending rows, are compared with its raw events), their neighbours are re-linked
 *      (lib/repositories/profileHours.ts); it takes all their pending rows and adds them to the stored
 *      rollups (count, sum, min, max, the profiles new to the hour and the lookback changes), or
 *      recomputes from raw events a bucket that has no pending row (lib/repositories/aggregates.ts);
 *      one statement, so one snapshot for the profile-hours and the rollups;
 *   4. commit.
 * A run therefore reads what was ingested since the last run, not everything the touched hours hold.
 * The deltas are exact because events are never updated or deleted (ingest inserts ON CONFLICT DO
 * NOTHING): what a rollup counted stays true.
 *
 * Why this cannot lose or double-count an event under READ COMMITTED (each statement sees what was
 * committed when it started). Take an ingest transaction I that inserts an event into bucket X and the
 * batch T that takes X's mark in statement A. I writes the event, its pending row, and then upserts
 * the mark, all before it commits (only that order and the one commit matter below).
 *   - I upserted the mark before A reached it: I holds its row lock until it commits, so A skips it
 *     (or does not even see it, if I created it). X stays marked; a later batch takes it.
 *   - A took the mark first: I's upsert meets A's deleted but uncommitted row and waits for T. After
 *     T commits, I's ON CONFLICT finds no row and inserts a fresh mark. I therefore commits after T,
 *     B saw neither I's event nor its pending row, and X is marked again, with I's pending rows, for
 *     the next batch.
 *   - I committed before A locked the mark: B starts after A ended, so B's snapshot contains the event
 *     and its pending row, and B takes that row.
 * So B's snapshot holds, for each taken bucket, exactly two kinds of visible events: those already in
 * the stored rollup (their pending rows were taken by an earlier committed batch or cleared by a
 * rebuild in the snapshot that counted them) and those whose pending rows B takes now. Adding the
 * latter to the rollup is exact, and so is the "new profile" probe, which counts the profile's events
 * in the hour and compares with its taken rows. At T's commit every committed event of X is in X's
 * rollup, and every event committing later leaves a mark and a pending row: an hour without a mark is
 * exact at every instant, which is what readers rely on.
 * Statements A and B must stay separate (the design first had them as one statement; that is wrong):
 * in one statement, B would read with the snapshot taken before A waited for and followed (READ
 * COMMITTED re-check of an updated row) a mark that I updated and committed meanwhile. A would take the
 * mark while B could not see I's pending rows: they would stay behind without a mark, and X, unmarked,
 * would be short of I's events.
 * The account's lock is what keeps two writers from storing figures out of order: without it a rebuild
 * that read a bucket before an event committed could overwrite, after it, the newer figures of an
 * incremental batch that took the event's mark.
 * Nothing here waits on ingest (SKIP LOCKED, and MVCC reads of events), and ingest waits only on marks,
 * which a batch holds for one statement and a commit: no lock cycle, no deadlock.
 */

export interface AggregationOptions {
  /** Marks taken per transaction. */
  readonly batchBuckets?: number;
  /** No new batch starts once this much time (ms) is spent, or when the next one would exceed it. */
  readonly timeBudgetMs?: number;
  /** The dimension rollups' cardinality limit (default: config, ROLLUP_MAX_VALUES_PER_HOUR). */
  readonly maxValuesPerHour?: number;
}

export interface AggregationResult {
  /** 'skipped': another run held the aggregation lock; it does the work. */
  readonly status: 'done' | 'skipped';
  /** Marked buckets brought up to date. */
  readonly bucketsRecomputed: number;
  /** Of those, the buckets without pending rows, recomputed from all their raw events. */
  readonly bucketsFromRaw: number;
  /** Pending rows taken, plus the raw events of the buckets recomputed from raw. */
  readonly eventsScanned: number;
  /** Rollup rows inserted, changed or removed. */
  readonly rowsChanged: number;
  /** Of those, dimension rollup rows (klaviyo_dimension_rollups). */
  readonly dimensionRowsChanged: number;
  /** Time spent in the batches' dimension statements (their share of durationMs). */
  readonly dimensionMs: number;
  readonly batches: number;
  readonly durationMs: number;
  /** Age in seconds of the oldest mark still waiting after the run; 0 when none waits. */
  readonly lagSeconds: number;
  readonly bucketsWaiting: number;
  /** Why the run ended: no mark left to take, the time budget, or another run took the lock. */
  readonly stoppedBy: 'drained' | 'budget' | 'lock';
}

interface BatchOutcome {
  readonly taken: number;
  readonly fromRaw: number;
  readonly eventsScanned: number;
  readonly rowsChanged: number;
  readonly dimensionRowsChanged: number;
  readonly dimensionMs: number;
}

/** Says once, in the log, which (metric, dimension) pairs were left to raw events and why. */
function logFallbacks(accountId: string, fallbacks: readonly DimensionFallback[]): void {
  for (const f of fallbacks) {
    log.warn('dimension left to raw events', {
      account_id: accountId,
      metric_id: f.metricId,
      dimension: f.dimension,
      reason: f.reason,
      hour: f.bucket.toISOString(),
      distinct_values: f.distinctValues,
    });
  }
}

/**
 * One batch of one account, in one transaction under the account's lock; 'locked' when another run
 * holds it. The account's klaviyo_accounts row must exist (ensureAccount).
 */
export async function aggregateBatch(
  db: Db,
  accountId: string,
  batchBuckets: number,
  maxValuesPerHour: number,
): Promise<BatchOutcome | 'locked'> {
  const outcome = await db.transaction(async (tx) => {
    if (!(await tryLockAggregation(tx, accountId))) return 'locked' as const;
    await planBatchStatementsOnce(tx);
    const taken = await takeDirtyBuckets(tx, accountId, batchBuckets);
    const dimensionsStarted = performance.now();
    const dimensions = await applyDimensionBatch(tx, accountId, taken, maxValuesPerHour);
    // After the fallbacks the dimension statement records, which this one skips.
    const profileRows = await applyDimensionProfileBatch(tx, accountId, taken);
    const dimensionMs = performance.now() - dimensionsStarted;
    const result = await recomputeHourBuckets(tx, accountId, taken);
    return {
      taken: taken.length,
      fromRaw: result.bucketsFromRaw,
      eventsScanned: result.eventsScanned,
      rowsChanged: result.rowsWritten + result.rowsDeleted + dimensions.rowsChanged + profileRows,
      dimensionRowsChanged: dimensions.rowsChanged + profileRows,
      dimensionMs,
      fallbacks: dimensions.fallbacks,
    };
  });
  if (outcome === 'locked') return outcome;
  logFallbacks(accountId, outcome.fallbacks);
  return outcome;
}

/**
 * One run: batches until no mark is left, the time budget is spent or another run holds the lock.
 * Each batch commits on its own, so a run cut short (timeout, crash) loses nothing: what it had not
 * committed is still marked.
 */
export async function runAggregation(
  db: Db,
  accountId: string,
  options: AggregationOptions = {},
): Promise<AggregationResult> {
  const batchBuckets = options.batchBuckets ?? config().limits.aggregateBatchBuckets;
  const timeBudgetMs = options.timeBudgetMs ?? config().limits.aggregateTimeBudgetMs;
  const maxValuesPerHour = options.maxValuesPerHour ?? rollupSettings().maxValuesPerHour;
  const started = performance.now();
  let dimensionRowsChanged = 0;
  let dimensionMs = 0;
  let bucketsRecomputed = 0;
  let bucketsFromRaw = 0;
  let eventsScanned = 0;
  let rowsChanged = 0;
  let batches = 0;
  let stoppedBy: AggregationResult['stoppedBy'];
  await ensureAccount(db, accountId);
  for (;;) {
    const batchStarted = performance.now();
    const outcome = await aggregateBatch(db, accountId, batchBuckets, maxValuesPerHour);
    if (outcome === 'locked') {
      stoppedBy = 'lock';
      break;
    }
    batches += 1;
    bucketsRecomputed += outcome.taken;
    bucketsFromRaw += outcome.fromRaw;
    eventsScanned += outcome.eventsScanned;
    rowsChanged += outcome.rowsChanged;
    dimensionRowsChanged += outcome.dimensionRowsChanged;
    dimensionMs += outcome.dimensionMs;
    // A short batch means the rest is locked by ingests still running (or there is nothing left).
    if (outcome.taken < batchBuckets) {
      stoppedBy = 'drained';
      break;
    }
    const now = performance.now();
    if (now - started + (now - batchStarted) > timeBudgetMs) {
      stoppedBy = 'budget';
      break;
    }
  }
  const backlog = await dirtyBacklog(db, accountId);
  return {
    status: stoppedBy === 'lock' && batches === 0 ? 'skipped' : 'done',
    bucketsRecomputed,
    bucketsFromRaw,
    eventsScanned,
    rowsChanged,
    dimensionRowsChanged,
    dimensionMs: Math.round(dimensionMs),
    batches,
    durationMs: Math.round(performance.now() - started),
    lagSeconds: backlog.oldestAgeSeconds,
    bucketsWaiting: backlog.bucketsWaiting,
    stoppedBy,
  };
}

export interface RebuildProgress {
  readonly chunksDone: number;
  readonly chunksTotal: number;
  /** The chunk just finished: [from, to). */
  readonly from: Date;
  readonly to: Date;
  readonly bucketsRecomputed: number;
  readonly eventsScanned: number;
}

export interface RebuildOptions {
  /** Inclusive; rounded down to the UTC hour. Default: the first event (or stored hour). */
  readonly from?: Date;
  /** Exclusive; rounded up to the UTC hour. Default: just after the last event (or stored hour). */
  readonly to?: Date;
  readonly metricId?: string;
  /** Hours per transaction (default a week): the unit of progress and of lock holding. */
  readonly chunkHours?: number;
  readonly onProgress?: (progress: RebuildProgress) => void;
  /** The dimension rollups' cardinality limit (default: config, ROLLUP_MAX_VALUES_PER_HOUR). */
  readonly maxValuesPerHour?: number;
}

export interface RebuildResult {
  readonly from: Date | null;
  readonly to: Date | null;
  readonly chunks: number;
  /** Hours that have events, computed from raw events. */
  readonly bucketsRecomputed: number;
  readonly rowsWritten: number;
  readonly rowsDeleted: number;
  readonly eventsScanned: number;
  /** Dirty marks of the range that the rebuild satisfied and removed. */
  readonly marksCleared: number;
  readonly durationMs: number;
}

const HOUR_MS = 3_600_000;
export const DEFAULT_REBUILD_CHUNK_HOURS = 7 * 24;

const floorHour = (d: Date) => new Date(Math.floor(d.getTime() / HOUR_MS) * HOUR_MS);
const ceilHour = (d: Date) => new Date(Math.ceil(d.getTime() / HOUR_MS) * HOUR_MS);

/**
 * Recomputes the hourly rollups of a time range from raw events, chunk by chunk, each chunk one
 * transaction under the aggregation lock (waiting for a running batch rather than skipping). The
 * chunk first takes the range's unlocked dirty marks, then recomputes every hour of the range and
 * clears the range's pending rows in one statement, so in one snapshot: the same two-statement order,
 * and the same argument, as an incremental batch (above). A mark the chunk skipped (an ingest still
 * open) stays; if that ingest commits before the recomputation, its events are counted and its pending
 * rows cleared, and the next batch finds the mark without pending rows and recomputes the hour from raw.
 * Unchanged hours are not rewritten, so a rebuild of correct rollups writes nothing.
 */
export async function rebuildAggregates(
  db: Db,
  accountId: string,
  options: RebuildOptions = {},
): Promise<RebuildResult> {
  const started = performance.now();
  const chunkHours = options.chunkHours ?? DEFAULT_REBUILD_CHUNK_HOURS;
  if (!Number.isInteger(chunkHours) || chunkHours < 1)
    throw new RangeError('chunkHours must be a whole number of hours, at least 1');
  const maxValuesPerHour = options.maxValuesPerHour ?? rollupSettings().maxValuesPerHour;
  let from = options.from;
  let to = options.to;
  if (!from || !to) {
    const span = await aggregationSpan(db, accountId, options.metricId);
    from ??= span?.from;
    // The last event's hour is included: the end is the start of the following hour.
    to ??= span ? new Date(floorHour(span.to).getTime() + HOUR_MS) : undefined;
  }
  const empty = { chunks: 0, bucketsRecomputed: 0, rowsWritten: 0, rowsDeleted: 0, eventsScanned: 0, marksCleared: 0 };
  if (!from || !to) return { from: null, to: null, ...empty, durationMs: Math.round(performance.now() - started) };
  const start = floorHour(from);
  const end = ceilHour(to);
  if (end.getTime() <= start.getTime()) {
    return { from: start, to: end, ...empty, durationMs: Math.round(performance.now() - started) };
  }

  const chunkMs = chunkHours * HOUR_MS;
  const chunksTotal = Math.ceil((end.getTime() - start.getTime()) / chunkMs);
  const totals = { ...empty };
  await ensureAccount(db, accountId);
  for (let i = 0; i < chunksTotal; i += 1) {
    const range = {
      from: new Date(start.getTime() + i * chunkMs),
      to: new Date(Math.min(end.getTime(), start.getTime() + (i + 1) * chunkMs)),
      metricId: options.metricId,
    };
    const [marks, result, dimensions] = await db.transaction(async (tx) => {
      await waitLockAggregation(tx, accountId);
      const cleared = await takeDirtyBucketsInRange(tx, accountId, range);
      await syncProfileHours(tx, accountId, range);
      const rebuilt = await rebuildHourRange(tx, accountId, range);
      // The range's lookbacks are set from its profile-hours; the hours after it take the changes.
      await resetLookbacksInRange(tx, accountId, range);
      await applyLookbackAdjustmentsOutside(tx, accountId, range);
      // After rebuildHourRange: the events it counted have no pending row left, and those it could not
      // see keep theirs, so "events without a pending row" is what the hourly rollups now hold.
      const dims = await rebuildDimensionRange(tx, accountId, range, maxValuesPerHour);
      await resetDailyDimensionRange(tx, accountId, range);
      await rebuildDimensionProfileRange(tx, accountId, range);
      return [cleared, rebuilt, dims] as const;
    });
    logFallbacks(accountId, dimensions.fallbacks);
    totals.chunks += 1;
    totals.bucketsRecomputed += result.bucketsRecomputed;
    totals.rowsWritten += result.rowsWritten;
    totals.rowsDeleted += result.rowsDeleted;
    totals.eventsScanned += result.eventsScanned;
    totals.marksCleared += marks;
    options.onProgress?.({
      chunksDone: i + 1,
      chunksTotal,
      from: range.from,
      to: range.to,
      bucketsRecomputed: totals.bucketsRecomputed,
      eventsScanned: totals.eventsScanned,
    });
  }
  return { from: start, to: end, ...totals, durationMs: Math.round(performance.now() - started) };
}

export interface DimensionBackfillResult {
  /** Keys registered by this call (from the configuration). */
  readonly registered: readonly string[];
  /** Keys registered by this call for unique (ROLLUP_UNIQUE_DIMENSIONS). */
  readonly registeredUnique: readonly string[];
  /** Keys whose rollups were backfilled and declared ready. */
  readonly backfilled: readonly string[];
  /** Keys whose dimension profiles (unique) were backfilled and declared ready. */
  readonly backfilledUnique: readonly string[];
  /** Zones registered by this call (ROLLUP_DAY_ZONES). */
  readonly registeredZones: readonly string[];
  /** Zones whose daily rows were filled from the hourly rows and declared ready. */
  readonly backfilledZones: readonly string[];
  /** Zones no longer configured: unregistered, their rows removed. */
  readonly droppedZones: readonly string[];
  readonly chunks: number;
  readonly rowsChanged: number;
  readonly durationMs: number;
}

/**
 * Registers the configured extra keys (ROLLUP_DIMENSIONS, and ROLLUP_UNIQUE_DIMENSIONS for unique) and
 * backfills every registered key that is not ready, rollups and dimension profiles alike: chunk by chunk over all stored events, each chunk one transaction under the aggregation
 * lock (ingest never waits for it: it takes no lock ingest needs), counting the events that have no
 * pending row, as a rebuild does. The aggregator counts new events for a registered key from the
 * moment it is registered, so when the last chunk commits the key's rollups cover every event, and
 * the same transaction declares them ready.
 */
export async function backfillDimensions(
  db: Db,
  options: {
    readonly extraDimensions?: readonly string[];
    /** Keys whose distinct profiles to roll up besides the registered ones (ROLLUP_UNIQUE_DIMENSIONS). */
    readonly extraUniqueDimensions?: readonly string[];
    /** Zones whose days get daily rows of their own (ROLLUP_DAY_ZONES). */
    readonly dayZones?: readonly string[];
    readonly chunkHours?: number;
    readonly maxValuesPerHour?: number;
    readonly onProgress?: (progress: { chunksDone: number; chunksTotal: number; to: Date }) => void;
  } = {},
): Promise<DimensionBackfillResult> {
  const started = performance.now();
  const extraUnique = options.extraUniqueDimensions ?? rollupSettings().extraUniqueDimensions;
  // A unique key is also a rolled-up key: its counts, sums and cardinality check come from there.
  const registered = await registerKeys(db, 'klaviyo_rollup_dimensions', [
    ...new Set([...(options.extraDimensions ?? rollupSettings().extraDimensions), ...extraUnique]),
  ]);
  const registeredUnique = await registerKeys(db, 'klaviyo_rollup_unique_dimensions', extraUnique);
  const dayZones = options.dayZones ?? rollupSettings().dayZones;
  const registeredZones = await registerKeys(db, 'klaviyo_rollup_day_zones', dayZones);
  // The configured zones are the ones kept: a zone taken off the list costs the writers nothing more.
  // Unregistered first, so no batch that starts later writes its days; each account's rows are then
  // removed under the account's lock, after any batch that started before.
  const droppedZones = await unregisterDayZonesExcept(db, dayZones);
  if (droppedZones.length > 0) {
    for (const { accountId } of await listAccounts(db)) {
      await db.transaction(async (tx) => {
        await waitLockAggregation(tx, accountId);
        await deleteZoneDays(tx, accountId, droppedZones);
      });
    }
  }
  const dimensions = await keysAwaitingBackfill(db, 'klaviyo_rollup_dimensions');
  const uniqueDimensions = await keysAwaitingBackfill(db, 'klaviyo_rollup_unique_dimensions');
  const zones = await keysAwaitingBackfill(db, 'klaviyo_rollup_day_zones');
  const maxValuesPerHour = options.maxValuesPerHour ?? rollupSettings().maxValuesPerHour;
  const chunkMs = (options.chunkHours ?? DEFAULT_REBUILD_CHUNK_HOURS) * HOUR_MS;
  if (dimensions.length === 0 && uniqueDimensions.length === 0 && zones.length === 0) {
    return {
      registered,
      registeredUnique,
      backfilled: [],
      backfilledUnique: [],
      registeredZones,
      backfilledZones: [],
      droppedZones,
      chunks: 0,
      rowsChanged: 0,
      durationMs: Math.round(performance.now() - started),
    };
  }
  // Each account is backfilled on its own, chunk by chunk under its own lock; the keys are declared
  // ready (the registry is shared by all accounts) once every account's last chunk has committed.
  let rowsChanged = 0;
  let chunks = 0;
  for (const { accountId } of await listAccounts(db)) {
    const span = await aggregationSpan(db, accountId);
    if (!span) continue;
    const start = floorHour(span.from);
    const end = new Date(floorHour(span.to).getTime() + HOUR_MS);
    const chunksTotal = Math.max(1, Math.ceil((end.getTime() - start.getTime()) / chunkMs));
    for (let i = 0; i < chunksTotal; i += 1) {
      const from = new Date(start.getTime() + i * chunkMs);
      const to = new Date(Math.min(end.getTime(), start.getTime() + (i + 1) * chunkMs));
      const write = await db.transaction(async (tx) => {
        await waitLockAggregation(tx, accountId);
        const w =
          dimensions.length > 0
            ? await rebuildDimensionRange(tx, accountId, { from, to, dimensions }, maxValuesPerHour)
            : { rowsChanged: 0, fallbacks: [] };
        if (dimensions.length > 0) await resetDailyDimensionRange(tx, accountId, { from, to, dimensions });
        // A new zone's days: every key's, from the hourly rows (the keys just backfilled included).
        const zoneRows =
          zones.length > 0 ? await resetDailyDimensionRange(tx, accountId, { from, to }, { kind: 'zones', zones }) : 0;
        const profileRows =
          uniqueDimensions.length > 0
            ? await rebuildDimensionProfileRange(tx, accountId, { from, to, dimensions: uniqueDimensions })
            : 0;
        return { ...w, rowsChanged: w.rowsChanged + profileRows + zoneRows };
      });
      logFallbacks(accountId, write.fallbacks);
      rowsChanged += write.rowsChanged;
      chunks += 1;
      options.onProgress?.({ chunksDone: i + 1, chunksTotal, to });
    }
  }
  // Events stored after an account's span was read are counted by the aggregator (pending rows): the
  // keys are complete once every account's stored events are.
  if (dimensions.length > 0) await markKeysReady(db, 'klaviyo_rollup_dimensions', dimensions);
  if (uniqueDimensions.length > 0) await markKeysReady(db, 'klaviyo_rollup_unique_dimensions', uniqueDimensions);
  if (zones.length > 0) await markKeysReady(db, 'klaviyo_rollup_day_zones', zones);
  return {
    registered,
    registeredUnique,
    backfilled: dimensions,
    backfilledUnique: uniqueDimensions,
    registeredZones,
    backfilledZones: zones,
    droppedZones,
    chunks,
    rowsChanged,
    durationMs: Math.round(performance.now() - started),
  };
}
