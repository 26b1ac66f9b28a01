import { randomUUID } from 'node:crypto';
import type { Db } from '../db/port';
import {
  planEventsPageSettingAside,
  planMetricsSettingAside,
  planProfilesSettingAside,
  writeEventsPage,
  type SetAsideItem,
} from './ingest';
import { redactText } from '../log';
import { upsertMetrics } from '../repositories/metrics';
import { upsertProfiles } from '../repositories/profiles';
import type { SyncSettings } from '../config';
import { accountsToSync } from '../repositories/accounts';
import { klaviyoApiKey, type SecretReader } from '../sync/apiKey';
import { systemClock, type Clock } from '../sync/clock';
import { KlaviyoApiError, KlaviyoClient, PAGE_SIZES, SyncDeadline, type Endpoint } from '../sync/klaviyoClient';
import {
  acquireLease,
  EMPTY_STATE,
  itemKey,
  loadStreamStates,
  markRunFailed,
  markRunStarted,
  markRunSucceeded,
  recordRejects,
  releaseLease,
  renewLease,
  saveStreamState,
  STREAMS,
  type StreamName,
  type StreamState,
} from '../repositories/sync';

/**
 * One sync run of one Klaviyo account: metrics (full refresh), then profiles (incremental on
 * `updated`), then events: first the incremental window up to now minus a safety lag, then as much of
 * the first backfill as the time budget allows, newest slice first.
 *
 * Events are read with `greater-or-equal(datetime,start),less-than(datetime,end)` and `sort=datetime`.
 * The cursor only ever moves to a window's end, which is computed from the clock (never from the
 * events' datetimes), so an event dated a year ahead cannot move it past now. Every `lookbackEvery`
 * a sweep window starts `lookback` before the cursor, re-reading recent hours for events Klaviyo
 * accepted late; ingest is idempotent by id, so re-reading stores nothing twice.
 *
 * Each page is stored with its stream's checkpoint in one transaction, through the same ingest
 * library as the HTTP routes; items ingest cannot store are set aside in klaviyo_sync_rejects and the
 * rest of the page is stored. A stop (time budget, crash) loses at most the page in flight.
 */
export interface SyncOptions extends Pick<
  SyncSettings,
  'accountId' | 'timeBudgetMs' | 'lookbackMs' | 'lookbackEveryMs' | 'safetyLagMs' | 'backfillMs' | 'sliceMs'
> {
  readonly clock: Clock;
  /** How long the lease outlives a run that dies; default the budget plus two minutes. */
  readonly leaseTtlMs?: number;
  readonly onProgress?: (progress: SyncProgress) => void;
  /** Ends the run at the next page boundary, as the time budget does (the CLI's Ctrl-C). */
  readonly signal?: AbortSignal;
}

export interface SyncProgress {
  readonly stream: StreamName;
  readonly phase: 'refresh' | 'incremental' | 'backfill';
  readonly rowsPulled: number;
  /** Backfill only: share of the backfill range read, 0..1. */
  readonly backfillDone?: number;
}

export interface StreamRunSummary {
  /** 'done': the stream did all it had to; 'partial': the time budget ended it first. */
  readonly status: 'done' | 'partial' | 'error' | 'not_run';
  readonly rows_pulled: number;
  readonly rejects: number;
  readonly inserted: number;
  readonly duration_ms: number;
  readonly cursor: string | null;
  /** events: how far the cursor is behind now, in seconds. */
  readonly lag_seconds?: number | null;
  readonly backfill_complete?: boolean;
  readonly error?: string;
}

export interface SyncRunResult {
  readonly status: 'done' | 'partial' | 'error' | 'skipped';
  /** Nothing left to read now: the backfill is complete and the incremental window closed. */
  readonly caughtUp: boolean;
  readonly durationMs: number;
  readonly streams: Readonly<Record<StreamName, StreamRunSummary>>;
  readonly requests: number;
  readonly throttled: number;
  readonly retried: number;
}

class LeaseLost extends Error {
  override readonly name = 'LeaseLost';
}

const SECOND = 1000;
const floorToSecond = (ms: number) => Math.floor(ms / SECOND) * SECOND;

/** Klaviyo's filter date-time form: 2025-03-01T12:00:00+00:00 (milliseconds only when there are some). */
export function filterTime(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/\.000Z$/, 'Z')
    .replace(/Z$/, '+00:00');
}

interface PageEnvelope {
  readonly data: unknown[];
  readonly next: string | null;
}

function envelopeOf(body: unknown, url: string): PageEnvelope {
  const page = body as { data?: unknown; links?: { next?: unknown } | null } | null;
  if (!page || !Array.isArray(page.data)) {
    throw new KlaviyoApiError(200, 'not_a_page', `Klaviyo's answer to ${pathOf(url)} has no data array`);
  }
  const next = page.links?.next;
  return { data: page.data, next: typeof next === 'string' && next.length > 0 ? next : null };
}

function pathOf(url: string): string {
  return new URL(url).pathname;
}

/** The latest parseable value of an attribute among a page's items (datetime for events, updated for profiles). */
function latestOf(items: readonly unknown[], attribute: 'datetime' | 'updated'): number | null {
  let latest: number | null = null;
  for (const item of items) {
    const value = (item as { attributes?: Record<string, unknown> } | null)?.attributes?.[attribute];
    if (typeof value !== 'string') continue;
    const at = Date.parse(/(?:[zZ]|[+-]\d{2}:?\d{2})$/.test(value) ? value : `${value}Z`);
    if (Number.isFinite(at) && (latest === null || at > latest)) latest = at;
  }
  return latest;
}

/**
 * An account's share of what is left of the invocation: an even split among the accounts not yet
 * run, so one large backfill cannot take the whole run from the others, and time an account did not
 * use (a caught-up account takes seconds) goes to the ones after it. The floor keeps a share worth a
 * few pages when many accounts wait; the accounts it leaves without time come first next run, as
 * they are then the least recently synced.
 */
export const MIN_ACCOUNT_BUDGET_MS = 20_000;

export function accountBudgetMs(remainingMs: number, accountsLeft: number): number {
  return Math.min(remainingMs, Math.max(MIN_ACCOUNT_BUDGET_MS, Math.floor(remainingMs / Math.max(1, accountsLeft))));
}

export interface AccountSyncSummary {
  readonly accountId: string;
  /** 'not_run': the invocation's time ran out before this account's turn. */
  readonly status: SyncRunResult['status'] | 'not_run';
  readonly result?: SyncRunResult;
  /** Why the account could not run (its key could not be read; a database failure), redacted. */
  readonly error?: string;
}

export interface ScheduledSyncResult {
  /** 'error' when any account failed, 'partial' when any did not finish, 'skipped' when every one was. */
  readonly status: 'done' | 'partial' | 'error' | 'skipped';
  readonly durationMs: number;
  readonly accounts: readonly AccountSyncSummary[];
}

export interface ScheduledSyncOptions {
  readonly clock?: Clock;
  readonly env?: NodeJS.ProcessEnv;
  /** How a secret is read; Secrets Manager when unset. */
  readonly readSecret?: SecretReader;
  /** Passed to each account's KlaviyoClient (tests: a stand-in fetch). */
  readonly fetch?: typeof fetch;
}

/**
 * The scheduled sync of every account (accountsToSync: those with a key secret, and the configured
 * SYNC_ACCOUNT_ID when the environment holds a key), least recently synced first, each with its own
 * key and its own KlaviyoClient (its own rate budget: Klaviyo limits each account by its key), one
 * after the other within the invocation's budget. An account whose lease another run holds is
 * skipped; one whose key cannot be read or that Klaviyo refuses is recorded on its streams (GET
 * /api/sync-status) and the others go on.
 */
export async function runScheduledSync(
  db: Db,
  settings: SyncSettings,
  timeBudgetMs: number,
  options: ScheduledSyncOptions = {},
): Promise<ScheduledSyncResult> {
  const clock = options.clock ?? systemClock;
  const env = options.env ?? process.env;
  const started = clock.now();
  const deadline = started + timeBudgetMs;
  const environmentHasKey = settings.apiKeySecret !== undefined || Boolean(env.KLAVIYO_API_KEY?.trim());
  const accounts = await accountsToSync(db, environmentHasKey ? settings.accountId : null);
  const summaries: AccountSyncSummary[] = [];
  for (const [index, account] of accounts.entries()) {
    const remaining = deadline - clock.now();
    if (remaining <= 0) {
      summaries.push({ accountId: account.accountId, status: 'not_run' });
      continue;
    }
    const accountSettings: SyncSettings = {
      ...settings,
      accountId: account.accountId,
      ...(account.klaviyoKeySecretId ? { apiKeySecret: account.klaviyoKeySecretId } : {}),
    };
    try {
      const apiKey = await klaviyoApiKey(accountSettings, env, { readSecret: options.readSecret });
      const client = new KlaviyoClient({
        baseUrl: settings.baseUrl,
        apiKey,
        clock,
        rateShare: settings.rateShare,
        ...(options.fetch ? { fetch: options.fetch } : {}),
      });
      const result = await runSync(db, client, {
        ...accountSettings,
        timeBudgetMs: accountBudgetMs(remaining, accounts.length - index),
        clock,
      });
      summaries.push({ accountId: account.accountId, status: result.status, result });
    } catch (err) {
      const message = errorMessage(err);
      // Where GET /api/sync-status shows it: on each stream of the account.
      const at = new Date(clock.now());
      for (const stream of STREAMS) {
        await markRunStarted(db, account.accountId, stream, at)
          .then(() => markRunFailed(db, account.accountId, stream, at, message))
          .catch(() => undefined);
      }
      summaries.push({ accountId: account.accountId, status: 'error', error: message });
    }
  }
  const statuses = summaries.map((s) => s.status);
  const status = statuses.includes('error')
    ? 'error'
    : statuses.length > 0 && statuses.every((s) => s === 'skipped')
      ? 'skipped'
      : statuses.every((s) => s === 'done' || s === 'skipped')
        ? 'done'
        : 'partial';
  return { status, durationMs: Math.round(clock.now() - started), accounts: summaries };
}

/** One invocation's log fields: each account's figures (no key, no personal data). */
export function scheduledSyncLogFields(result: ScheduledSyncResult): Record<string, unknown> {
  return {
    status: result.status,
    duration_ms: result.durationMs,
    accounts: result.accounts.map((a) => ({
      account_id: a.accountId,
      ...(a.result ? syncLogFields(a.result) : { status: a.status }),
      ...(a.error ? { error: a.error } : {}),
    })),
  };
}

export async function runSync(db: Db, client: KlaviyoClient, options: SyncOptions): Promise<SyncRunResult> {
  const { clock, accountId } = options;
  const started = clock.now();
  const deadline = started + options.timeBudgetMs;
  const leaseTtlMs = options.leaseTtlMs ?? options.timeBudgetMs + 120_000;
  const owner = randomUUID();
  const summaries: Record<StreamName, StreamRunSummary> = {
    metrics: notRun(),
    profiles: notRun(),
    events: notRun(),
  };
  const statsBefore = { ...client.stats };
  const finish = (status: SyncRunResult['status'], caughtUp: boolean): SyncRunResult => ({
    status,
    caughtUp,
    durationMs: Math.round(clock.now() - started),
    streams: summaries,
    requests: client.stats.requests - statsBefore.requests,
    throttled: client.stats.throttled - statsBefore.throttled,
    retried: client.stats.retried - statsBefore.retried,
  });

  if (!(await acquireLease(db, accountId, owner, leaseTtlMs))) return finish('skipped', false);
  client.setDeadline(deadline);
  let leaseLost = false;
  try {
    const states = await loadStreamStates(db, accountId);
    for (const stream of STREAMS) {
      if (clock.now() >= deadline || options.signal?.aborted) {
        summaries[stream] = { ...notRun(), status: 'partial' };
        continue;
      }
      const runner = new StreamRunner(
        db,
        client,
        options,
        stream,
        states.get(stream) ?? EMPTY_STATE,
        owner,
        leaseTtlMs,
        deadline,
      );
      await markRunStarted(db, accountId, stream, new Date(clock.now()));
      try {
        const complete = await runner.run();
        await markRunSucceeded(db, accountId, stream, new Date(clock.now()));
        summaries[stream] = runner.summary(complete ? 'done' : 'partial');
      } catch (err) {
        if (err instanceof SyncDeadline) {
          await markRunSucceeded(db, accountId, stream, new Date(clock.now()));
          summaries[stream] = runner.summary('partial');
        } else if (err instanceof LeaseLost) {
          summaries[stream] = runner.summary('partial');
          leaseLost = true;
          break;
        } else {
          const message = errorMessage(err);
          await markRunFailed(db, accountId, stream, new Date(clock.now()), message).catch(() => undefined);
          summaries[stream] = { ...runner.summary('error'), error: message };
          if (!(err instanceof KlaviyoApiError)) throw err;
        }
      }
    }
  } finally {
    if (!leaseLost) await releaseLease(db, accountId, owner).catch(() => undefined);
  }
  const all = Object.values(summaries);
  const status = all.some((s) => s.status === 'error')
    ? 'error'
    : all.some((s) => s.status !== 'done')
      ? 'partial'
      : 'done';
  return finish(status, status === 'done' && summaries.events.backfill_complete === true);
}

/** The figures of one run for its one structured log line (snake_case, no key, no personal data). */
export function syncLogFields(result: SyncRunResult): Record<string, unknown> {
  return {
    status: result.status,
    caught_up: result.caughtUp,
    duration_ms: result.durationMs,
    requests: result.requests,
    throttled: result.throttled,
    retried: result.retried,
    streams: result.streams,
  };
}

function notRun(): StreamRunSummary {
  return { status: 'not_run', rows_pulled: 0, rejects: 0, inserted: 0, duration_ms: 0, cursor: null };
}

/** Klaviyo's refusals and our own failures, fit for the status route and the log: no key, no personal data. */
function errorMessage(err: unknown): string {
  if (err instanceof KlaviyoApiError) return redactText(err.message).slice(0, 500);
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return `${err.name}${typeof code === 'string' ? ` ${code}` : ''}: ${redactText(err.message).slice(0, 300)}`;
  }
  return 'unknown error';
}

class StreamRunner {
  private rowsPulled = 0;
  /** Items set aside in this run, each counted once however many pages brought it. */
  private readonly rejected = new Set<string>();
  private readonly startedAt: number;
  private inserted = 0;

  constructor(
    private readonly db: Db,
    private readonly client: KlaviyoClient,
    private readonly options: SyncOptions,
    private readonly stream: StreamName,
    private state: StreamState,
    private readonly owner: string,
    private readonly leaseTtlMs: number,
    private readonly deadline: number,
  ) {
    this.startedAt = options.clock.now();
  }

  summary(status: StreamRunSummary['status']): StreamRunSummary {
    const s = this.state;
    return {
      status,
      rows_pulled: this.rowsPulled,
      rejects: this.rejected.size,
      inserted: this.inserted,
      duration_ms: Math.round(this.now() - this.startedAt),
      cursor: s.cursor === null ? null : new Date(s.cursor).toISOString(),
      ...(this.stream === 'events'
        ? {
            lag_seconds: s.cursor === null ? null : Math.max(0, Math.round((this.now() - s.cursor) / 1000)),
            backfill_complete: s.backfillDoneAt !== null,
          }
        : {}),
    };
  }

  /** True when the stream has nothing left to read for now. */
  async run(): Promise<boolean> {
    switch (this.stream) {
      case 'metrics':
        await this.readAll('metrics', this.client.urlOf('metrics', {}), 'refresh', (next) => next);
        return true;
      case 'profiles':
        return this.runProfiles();
      case 'events':
        return this.runEvents();
    }
  }

  private now(): number {
    return this.options.clock.now();
  }

  private checkBudget(): void {
    if (this.now() >= this.deadline) throw new SyncDeadline('the run reached its time budget');
    if (this.options.signal?.aborted) throw new SyncDeadline('the run was asked to stop');
  }

  private async runProfiles(): Promise<boolean> {
    const cursor = this.state.cursor;
    const params: Record<string, string> = { sort: 'updated', 'page[size]': String(PAGE_SIZES.profiles) };
    // `updated` takes greater-than only; a second back re-reads profiles of the cursor's own second
    // that a page boundary may have split (upserts keep the newest `updated`, so this stores nothing twice).
    if (cursor !== null) params.filter = `greater-than(updated,${filterTime(floorToSecond(cursor) - SECOND)})`;
    await this.readAll('profiles', this.client.urlOf('profiles', params), 'incremental', (next, page) => {
      const latest = latestOf(page, 'updated');
      if (latest === null) return next;
      // Klaviyo sets `updated`, but a clock ahead of ours must not put the cursor past now.
      const capped = Math.min(latest, this.now());
      return { ...next, cursor: next.cursor === null ? capped : Math.max(next.cursor, capped) };
    });
    return true;
  }

  private async runEvents(): Promise<boolean> {
    const o = this.options;
    if (this.state.cursor === null) {
      const t0 = floorToSecond(this.now() - o.safetyLagMs);
      await this.save({
        ...this.state,
        cursor: t0,
        lastSweepAt: t0,
        backfillHorizon: t0 - o.backfillMs,
        backfillNextEnd: t0,
        backfillPosition: null,
        backfillDoneAt: null,
      });
    }

    await this.readIncrementalWindow();
    const backfilled = await this.readBackfill();
    // A backfill takes minutes: what arrived meanwhile is read now, so that a finished run is current.
    if (backfilled) await this.readIncrementalWindow();
    return true;
  }

  /** The incremental window: opened here unless a stopped run left one open. */
  private async readIncrementalWindow(): Promise<void> {
    const o = this.options;
    if (this.state.windowEnd === null) {
      const cursor = this.state.cursor as number;
      const end = Math.max(cursor, floorToSecond(this.now() - o.safetyLagMs));
      const sweep = this.state.lastSweepAt === null || this.now() - this.state.lastSweepAt >= o.lookbackEveryMs;
      const start = sweep ? cursor - o.lookbackMs : cursor;
      if (end > start) {
        await this.save({
          ...this.state,
          windowStart: start,
          windowEnd: end,
          windowPosition: null,
          windowIsSweep: sweep,
        });
      }
    }
    const s = this.state;
    if (s.windowEnd !== null) {
      const from = s.windowPosition ?? s.windowStart ?? s.windowEnd;
      await this.readEventRange(from, s.windowEnd, 'incremental', (position, last) => {
        const current = this.state;
        if (!last) return { ...current, windowPosition: position ?? current.windowPosition };
        return {
          ...current,
          cursor: current.windowEnd,
          lastSweepAt: current.windowIsSweep ? current.windowEnd : current.lastSweepAt,
          windowStart: null,
          windowEnd: null,
          windowPosition: null,
          windowIsSweep: false,
        };
      });
    }
  }

  /** The first backfill, newest slice first, each slice read in datetime order; true when it read anything. */
  private async readBackfill(): Promise<boolean> {
    const o = this.options;
    let read = false;
    while (this.state.backfillDoneAt === null && this.state.backfillNextEnd !== null) {
      read = true;
      this.checkBudget();
      const s = this.state;
      const horizon = s.backfillHorizon as number;
      const end = s.backfillNextEnd as number;
      const sliceStart = Math.max(horizon, end - o.sliceMs);
      if (end <= horizon) {
        await this.save({ ...s, backfillPosition: null, backfillDoneAt: this.now() });
        break;
      }
      await this.readEventRange(s.backfillPosition ?? sliceStart, end, 'backfill', (position, last) => {
        const current = this.state;
        if (!last) return { ...current, backfillPosition: position ?? current.backfillPosition };
        return {
          ...current,
          backfillNextEnd: sliceStart,
          backfillPosition: null,
          backfillDoneAt: sliceStart <= horizon ? this.now() : null,
        };
      });
    }
    return read;
  }

  private backfillShare(): number {
    const s = this.state;
    if (s.backfillDoneAt !== null) return 1;
    if (s.backfillHorizon === null || s.backfillNextEnd === null) return 0;
    const top = s.backfillHorizon + this.options.backfillMs;
    const sliceStart = Math.max(s.backfillHorizon, s.backfillNextEnd - this.options.sliceMs);
    const inSlice = s.backfillPosition === null ? 0 : s.backfillPosition - sliceStart;
    return Math.min(1, Math.max(0, (top - s.backfillNextEnd + inSlice) / (top - s.backfillHorizon)));
  }

  /**
   * Reads [from, to) of events in datetime order, following links.next; `nextState` gives the state
   * to store with each page: `position` is the page's latest datetime, `last` says the range is done.
   */
  private async readEventRange(
    from: number,
    to: number,
    phase: 'incremental' | 'backfill',
    nextState: (position: number | null, last: boolean) => StreamState,
  ): Promise<void> {
    const url = this.client.urlOf('events', {
      filter: `greater-or-equal(datetime,${filterTime(from)}),less-than(datetime,${filterTime(to)})`,
      sort: 'datetime',
      'page[size]': String(PAGE_SIZES.events),
      include: 'metric,profile',
    });
    await this.readAll('events', url, phase, (_current, data, last) => nextState(latestOf(data, 'datetime'), last));
  }

  /**
   * Reads every page from `url` on, storing each with the state `nextState` gives. The next page is
   * requested while this one is stored: Klaviyo's answer time and the write overlap, and the
   * checkpoints stay in page order (a page is stored only after the one before it).
   */
  private async readAll(
    endpoint: Endpoint,
    firstUrl: string,
    phase: SyncProgress['phase'],
    nextState: (current: StreamState, data: readonly unknown[], last: boolean) => StreamState,
  ): Promise<void> {
    this.checkBudget();
    let url = firstUrl;
    let pending = this.client.get(endpoint, url);
    for (;;) {
      const body = await pending;
      const page = envelopeOf(body, url);
      let prefetch: Promise<unknown> | undefined;
      if (page.next !== null && this.now() < this.deadline && !this.options.signal?.aborted) {
        prefetch = this.client.get(endpoint, page.next);
        // Observed now, awaited after the store: a failure must not go unhandled meanwhile.
        prefetch.catch(() => undefined);
      }
      const state = nextState(this.state, page.data, page.next === null);
      await this.storePage(endpoint, body, page.data.length, url, state);
      this.options.onProgress?.({
        stream: this.stream,
        phase,
        rowsPulled: this.rowsPulled,
        ...(phase === 'backfill' ? { backfillDone: this.backfillShare() } : {}),
      });
      if (page.next === null) return;
      this.checkBudget();
      if (!prefetch) throw new SyncDeadline('the run reached its time budget');
      url = page.next;
      pending = prefetch;
    }
  }

  /** The page, its rejects and the stream's checkpoint, in one transaction; the lease is renewed with them. */
  private async storePage(endpoint: Endpoint, body: unknown, received: number, url: string, state: StreamState) {
    const now = new Date(this.now());
    let setAside: SetAsideItem[];
    let write: (tx: Db) => Promise<number>;
    const { accountId } = this.options;
    if (endpoint === 'events') {
      const lenient = planEventsPageSettingAside(body, { maxResources: PAGE_SIZES.events, now });
      setAside = lenient.setAside;
      write = async (tx) => (await writeEventsPage(tx, accountId, lenient.plan)).inserted;
    } else if (endpoint === 'profiles') {
      const lenient = planProfilesSettingAside(body, { maxResources: Math.max(received, 1), now });
      setAside = lenient.setAside;
      write = async (tx) => (await upsertProfiles(tx, accountId, lenient.plan)).written;
    } else {
      const lenient = planMetricsSettingAside(body, { maxResources: Math.max(received, 1), now });
      setAside = lenient.setAside;
      write = async (tx) => (await upsertMetrics(tx, accountId, lenient.plan)).written;
    }
    const inserted = await this.db.transaction(async (tx) => {
      const written = await write(tx);
      await recordRejects(tx, accountId, this.stream, setAside, url);
      await saveStreamState(tx, accountId, this.stream, state, received);
      if (!(await renewLease(tx, accountId, this.owner, this.leaseTtlMs))) {
        throw new LeaseLost('another run took the lease: this run stops without storing its page');
      }
      return written;
    });
    this.state = state;
    this.rowsPulled += received;
    for (const item of setAside) this.rejected.add(itemKey(item.item));
    this.inserted += inserted;
  }

  private async save(state: StreamState): Promise<void> {
    await saveStreamState(this.db, this.options.accountId, this.stream, state, 0);
    this.state = state;
  }
}
