import type { Clock } from './clock';

/**
 * A polite reader of Klaviyo's API for one account.
 *
 * - Every request waits for a token of its endpoint's bucket, refilled at a share of Klaviyo's steady
 *   limit (other integrations of the account draw on the same limits).
 * - A 429 pauses the whole client until its Retry-After has passed, not only the request that got it:
 *   the limits are per account, so every request sent meanwhile would be refused too.
 * - 5xx answers and network failures are retried with exponential backoff and full jitter.
 * - Nothing waits past the run's deadline: a wait that would end after it throws SyncDeadline, and
 *   the run stops at its last checkpoint.
 *
 * Hand-written rather than Bottleneck or p-retry: both sleep on the real timers, and the 429 pause
 * must be shared by every endpoint's queue and testable with a virtual clock.
 *
 * The key goes in one header and nowhere else: not in URLs, errors or logs. Links are followed only
 * on the configured origin, so a `links.next` elsewhere never receives it.
 */
export const KLAVIYO_REVISION = '2026-07-15';

export type Endpoint = 'events' | 'profiles' | 'metrics';

/** Klaviyo's documented limits per account: burst per second, steady per minute. */
export const KLAVIYO_LIMITS: Readonly<Record<Endpoint, { readonly perSecond: number; readonly perMinute: number }>> = {
  events: { perSecond: 350, perMinute: 3500 },
  profiles: { perSecond: 75, perMinute: 750 },
  metrics: { perSecond: 10, perMinute: 150 },
};

/** Largest page each endpoint accepts at the pinned revision (Get Metrics takes no size). */
export const PAGE_SIZES = { events: 1000, profiles: 100 } as const;

const MAX_ATTEMPTS = 6;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;
/** A 429 without a readable Retry-After. */
const DEFAULT_RETRY_AFTER_S = 10;
const REQUEST_TIMEOUT_MS = 30_000;

export class SyncDeadline extends Error {
  override readonly name = 'SyncDeadline';
}

/** A refusal from Klaviyo that retrying will not fix (bad key, bad filter, missing scope). */
export class KlaviyoApiError extends Error {
  override readonly name = 'KlaviyoApiError';
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

export interface KlaviyoClientOptions {
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly clock: Clock;
  /** Share of the steady limits to use, 0 < share <= 1. */
  readonly rateShare: number;
  /** Absolute time (clock ms) no wait may pass. */
  readonly deadline?: number;
  readonly random?: () => number;
  readonly fetch?: typeof fetch;
}

export interface ClientStats {
  requests: number;
  throttled: number;
  retried: number;
  waitedMs: number;
}

class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly capacity: number,
    private readonly perMs: number,
    now: number,
  ) {
    this.tokens = capacity;
    this.last = now;
  }

  /** How long to wait before a token is there (0: take it now). */
  take(now: number): number {
    this.tokens = Math.min(this.capacity, this.tokens + (now - this.last) * this.perMs);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.tokens) / this.perMs);
  }
}

export class KlaviyoClient {
  readonly stats: ClientStats = { requests: 0, throttled: 0, retried: 0, waitedMs: 0 };
  private pausedUntil = 0;
  private readonly buckets = new Map<Endpoint, TokenBucket>();
  private readonly origin: string;
  private deadline: number;

  constructor(private readonly options: KlaviyoClientOptions) {
    if (!(options.rateShare > 0 && options.rateShare <= 1)) throw new RangeError('rateShare must be within (0, 1]');
    this.origin = new URL(options.baseUrl).origin;
    this.deadline = options.deadline ?? Infinity;
    for (const [endpoint, limit] of Object.entries(KLAVIYO_LIMITS) as [Endpoint, (typeof KLAVIYO_LIMITS)[Endpoint]][]) {
      const perMinute = limit.perMinute * options.rateShare;
      // A burst of one second's share, then the steady share.
      const capacity = Math.max(1, Math.floor(Math.min(limit.perSecond * options.rateShare, perMinute / 10)));
      this.buckets.set(endpoint, new TokenBucket(capacity, perMinute / 60_000, options.clock.now()));
    }
  }

  setDeadline(deadline: number): void {
    this.deadline = deadline;
  }

  /** The first page of an endpoint: `/api/<endpoint>` with these query parameters. */
  urlOf(endpoint: Endpoint, params: Readonly<Record<string, string>>): string {
    const url = new URL(`/api/${endpoint}`, this.options.baseUrl);
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return url.toString();
  }

  /** GETs a page (a first page from urlOf, or a links.next as given) and returns its JSON. */
  async get(endpoint: Endpoint, url: string): Promise<unknown> {
    if (new URL(url).origin !== this.origin) {
      throw new KlaviyoApiError(0, 'foreign_link', `Klaviyo sent a link to another origin (${new URL(url).origin})`);
    }
    // Failures (5xx, network) count towards MAX_ATTEMPTS; 429s do not: they are waited out until the deadline.
    let attempt = 0;
    for (;;) {
      attempt += 1;
      await this.waitForTurn(endpoint);
      this.stats.requests += 1;
      let response: Response;
      try {
        response = await (this.options.fetch ?? fetch)(url, {
          headers: {
            authorization: `Klaviyo-API-Key ${this.options.apiKey}`,
            revision: KLAVIYO_REVISION,
            accept: 'application/vnd.api+json',
          },
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
      } catch (err) {
        if (attempt >= MAX_ATTEMPTS) throw new KlaviyoApiError(0, 'network', `Klaviyo unreachable: ${causeOf(err)}`);
        await this.backoff(attempt);
        continue;
      }
      if (response.status === 429) {
        this.stats.throttled += 1;
        const seconds = retryAfterSeconds(response.headers.get('retry-after'), this.options.clock.now());
        this.pausedUntil = Math.max(this.pausedUntil, this.options.clock.now() + seconds * 1000);
        await response.body?.cancel();
        attempt -= 1;
        continue;
      }
      if (response.status >= 500) {
        await response.body?.cancel();
        if (attempt >= MAX_ATTEMPTS) {
          throw new KlaviyoApiError(response.status, 'server_error', `Klaviyo answered ${response.status}`);
        }
        await this.backoff(attempt);
        continue;
      }
      let body: unknown;
      try {
        body = await response.json();
      } catch {
        if (response.ok && attempt < MAX_ATTEMPTS) {
          // A body cut off mid-way: a network failure by another name.
          await this.backoff(attempt);
          continue;
        }
        throw new KlaviyoApiError(response.status, 'invalid_json', `Klaviyo answered ${response.status} without JSON`);
      }
      if (!response.ok) throw apiErrorOf(response.status, body);
      return body;
    }
  }

  private async waitForTurn(endpoint: Endpoint): Promise<void> {
    const clock = this.options.clock;
    const bucket = this.buckets.get(endpoint) as TokenBucket;
    for (;;) {
      const now = clock.now();
      const wait = this.pausedUntil > now ? this.pausedUntil - now : bucket.take(now);
      if (wait <= 0) return;
      await this.sleep(wait);
    }
  }

  private async backoff(attempt: number): Promise<void> {
    this.stats.retried += 1;
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
    await this.sleep(Math.max(1, Math.floor((this.options.random ?? Math.random)() * ceiling)));
  }

  private async sleep(ms: number): Promise<void> {
    if (this.options.clock.now() + ms > this.deadline) {
      throw new SyncDeadline(`waiting ${ms} ms more would pass the run's time budget`);
    }
    this.stats.waitedMs += ms;
    await this.options.clock.sleep(ms);
  }
}

/** Retry-After in seconds (a number of seconds or an HTTP date); a missing or unreadable one waits a default. */
export function retryAfterSeconds(header: string | null, now: number): number {
  if (header === null || header.trim() === '') return DEFAULT_RETRY_AFTER_S;
  const trimmed = header.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isFinite(at) ? Math.max(0, (at - now) / 1000) : DEFAULT_RETRY_AFTER_S;
}

function apiErrorOf(status: number, body: unknown): KlaviyoApiError {
  const first = (body as { errors?: { code?: unknown; detail?: unknown; title?: unknown }[] } | null)?.errors?.[0];
  const code = typeof first?.code === 'string' ? first.code : undefined;
  const detail = typeof first?.detail === 'string' ? first.detail : typeof first?.title === 'string' ? first.title : '';
  return new KlaviyoApiError(
    status,
    code,
    `Klaviyo answered ${status}${code ? ` ${code}` : ''}${detail ? `: ${detail}` : ''}`,
  );
}

function causeOf(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: unknown } }).cause;
    return typeof cause?.code === 'string' ? cause.code : err.name;
  }
  return 'unknown error';
}
