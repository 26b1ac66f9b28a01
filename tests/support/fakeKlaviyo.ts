import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for Klaviyo's read API, shaped from its OpenAPI specification (revision 2026-07-15):
 * GET /api/events, /api/profiles and /api/metrics as JSON:API pages, with Klaviyo's filter syntax,
 * sorts, page sizes, opaque `page[cursor]` links and its required headers. It serves the tests, the
 * sync bench and `npm run fake-klaviyo`.
 *
 * What it checks like Klaviyo: the `Authorization: Klaviyo-API-Key ...` and `revision` headers; the
 * filter operators each field allows (events: datetime with greater-or-equal, greater-than,
 * less-or-equal, less-than; profiles: `updated` with greater-than only); `sort`; `page[size]` within
 * 1..1000 for events (default 200) and 1..100 for profiles (default 20). A refused request gets
 * Klaviyo's error document with a 400.
 *
 * Faults and throttling are on request: `fail()` queues answers (429 with Retry-After, 5xx, a dropped
 * connection) for the next matching requests; `throttle` refuses with 429 past a rate, as Klaviyo does.
 */
export type FakeEndpoint = 'events' | 'profiles' | 'metrics';

type Resource = Record<string, unknown> & { type: string; id: string; attributes: Record<string, unknown> };

export interface FakeRequest {
  readonly endpoint: FakeEndpoint | null;
  readonly url: string;
  readonly query: URLSearchParams;
  readonly status: number;
  /** Milliseconds since the epoch when the request arrived. */
  readonly at: number;
}

export type Fault =
  | { readonly status: 429; readonly retryAfter?: string }
  | { readonly status: 500 | 502 | 503 | 504 }
  | { readonly status: 'drop' };

export interface Throttle {
  readonly perSecond: number;
  readonly perMinute: number;
}

export interface FakeKlaviyoOptions {
  readonly apiKey: string;
  readonly throttle?: Partial<Record<FakeEndpoint, Throttle>>;
  readonly host?: string;
  readonly port?: number;
}

const PAGE_LIMITS: Record<FakeEndpoint, { default: number; max: number } | null> = {
  events: { default: 200, max: 1000 },
  profiles: { default: 20, max: 100 },
  metrics: null,
};
const METRICS_PAGE = 200;

const FILTERS: Record<FakeEndpoint, Record<string, readonly string[]>> = {
  events: { datetime: ['greater-or-equal', 'greater-than', 'less-or-equal', 'less-than'] },
  profiles: { updated: ['greater-than'] },
  metrics: {},
};
const SORTS: Record<FakeEndpoint, readonly string[]> = {
  events: ['datetime', '-datetime', 'timestamp', '-timestamp'],
  profiles: ['updated', '-updated', 'created', '-created', 'id', '-id'],
  metrics: [],
};

class BadRequest extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
    readonly parameter?: string,
  ) {
    super(detail);
  }
}

function timeOf(value: unknown): number {
  if (typeof value !== 'string') return NaN;
  return Date.parse(/(?:[zZ]|[+-]\d{2}:?\d{2})$/.test(value) ? value : `${value}Z`);
}

interface Condition {
  readonly op: string;
  readonly ms: number;
}

function parseFilter(endpoint: FakeEndpoint, filter: string | null): Map<string, Condition[]> {
  const conditions = new Map<string, Condition[]>();
  if (filter === null || filter === '') return conditions;
  const pattern = /([a-z-]+)\(([a-z_.]+),([^()]*)\)(?:,|$)/gy;
  let consumed = 0;
  for (let m = pattern.exec(filter); m !== null; m = pattern.exec(filter)) {
    consumed = pattern.lastIndex;
    const [, op, field, raw] = m as unknown as [string, string, string, string];
    const allowed = FILTERS[endpoint][field];
    if (!allowed)
      throw new BadRequest(400, 'invalid', `'${field}' is not a valid field for the resource '${endpoint}'.`, 'filter');
    if (!allowed.includes(op))
      throw new BadRequest(400, 'invalid', `'${op}' is not a valid operator for '${field}'.`, 'filter');
    const ms = timeOf(raw);
    if (!Number.isFinite(ms)) throw new BadRequest(400, 'invalid', `'${raw}' is not a valid datetime.`, 'filter');
    conditions.set(field, [...(conditions.get(field) ?? []), { op, ms }]);
  }
  if (consumed !== filter.length) throw new BadRequest(400, 'invalid', 'Invalid filter provided.', 'filter');
  return conditions;
}

function passes(ms: number, conditions: readonly Condition[]): boolean {
  return conditions.every(({ op, ms: bound }) =>
    op === 'greater-or-equal'
      ? ms >= bound
      : op === 'greater-than'
        ? ms > bound
        : op === 'less-or-equal'
          ? ms <= bound
          : ms < bound,
  );
}

export class FakeKlaviyo {
  readonly metrics = new Map<string, Resource>();
  readonly profiles = new Map<string, Resource>();
  private readonly events = new Map<string, Resource>();
  /** allEvents() and their times, kept until the next change (a bench serves a million of them). */
  private sorted: { events: Resource[]; times: number[] } | undefined;
  readonly requests: FakeRequest[] = [];
  private readonly faults: { endpoint: FakeEndpoint | null; fault: Fault }[] = [];
  private readonly recent = new Map<FakeEndpoint, number[]>();
  private server: Server | undefined;
  private origin = '';
  /** Other Klaviyo accounts this server answers for, by their key (serveAccount). */
  private readonly accounts = new Map<string, FakeKlaviyo>();

  constructor(private readonly options: FakeKlaviyoOptions) {}

  get baseUrl(): string {
    return this.origin;
  }

  /** Every event, in Klaviyo's order (datetime, then id). */
  allEvents(): Resource[] {
    return [...this.sortedEvents().events];
  }

  private sortedEvents(): { events: Resource[]; times: number[] } {
    if (!this.sorted) {
      const events = [...this.events.values()]
        .map((e) => ({ e, t: timeOf(e.attributes.datetime) }))
        .sort(
          (a, b) =>
            Number(Number.isNaN(a.t)) - Number(Number.isNaN(b.t)) ||
            a.t - b.t ||
            (a.e.id < b.e.id ? -1 : a.e.id > b.e.id ? 1 : 0),
        );
      this.sorted = { events: events.map((x) => x.e), times: events.map((x) => x.t) };
    }
    return this.sorted;
  }

  addMetric(resource: Resource): void {
    this.metrics.set(resource.id, resource);
  }

  /** Adds or replaces a profile (a replacement is an update: give it a later `updated`). */
  putProfile(resource: Resource): void {
    this.profiles.set(resource.id, resource);
  }

  addEvent(resource: Resource): void {
    this.events.set(resource.id, resource);
    this.sorted = undefined;
  }

  /** Loads a page of GET /api/events?include=metric,profile (the demo generator's shape). */
  addEventsPage(page: { data: readonly unknown[]; included?: readonly unknown[] | null }): void {
    for (const item of page.included ?? []) {
      const r = item as Resource;
      if (r.type === 'metric') this.addMetric(r);
      else if (r.type === 'profile' && !this.profiles.has(r.id)) this.putProfile(r);
    }
    for (const item of page.data) this.addEvent(item as Resource);
  }

  /** The next `times` requests (to `endpoint`, or to any) get this answer instead. */
  fail(fault: Fault, options: { endpoint?: FakeEndpoint; times?: number } = {}): void {
    for (let i = 0; i < (options.times ?? 1); i += 1) this.faults.push({ endpoint: options.endpoint ?? null, fault });
  }

  /**
   * Another Klaviyo account on the same server: requests carrying `apiKey` read the returned stand-in's
   * data (and are recorded in its `requests`), as Klaviyo answers each private key with its own account.
   */
  serveAccount(apiKey: string): FakeKlaviyo {
    const account = new FakeKlaviyo({ ...this.options, apiKey });
    this.accounts.set(apiKey, account);
    return account;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) =>
      this.server?.listen(this.options.port ?? 0, this.options.host ?? '127.0.0.1', resolve),
    );
    const address = this.server.address() as AddressInfo;
    this.origin = `http://${this.options.host ?? '127.0.0.1'}:${address.port}`;
    return this.origin;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const at = Date.now();
    const url = new URL(req.url ?? '/', this.origin);
    const match = /^\/api\/(events|profiles|metrics)\/?$/.exec(url.pathname);
    const endpoint = (match?.[1] as FakeEndpoint | undefined) ?? null;
    const auth = req.headers.authorization ?? '';
    const key = auth.startsWith('Klaviyo-API-Key ') ? auth.slice('Klaviyo-API-Key '.length) : null;
    const account = key === this.options.apiKey ? this : key === null ? undefined : this.accounts.get(key);
    const record = (status: number) =>
      (account ?? this).requests.push({ endpoint, url: url.toString(), query: url.searchParams, status, at });
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      record(status);
      res.writeHead(status, { 'content-type': 'application/vnd.api+json', ...headers });
      res.end(JSON.stringify(body));
    };
    try {
      if (req.method !== 'GET' || endpoint === null) throw new BadRequest(404, 'not_found', 'Not found.');
      if (!account) throw new BadRequest(401, 'not_authenticated', 'Incorrect authentication credentials.');
      if (!req.headers.revision) throw new BadRequest(400, 'invalid', 'The revision header is required.');

      const faultIndex = account.faults.findIndex((f) => f.endpoint === null || f.endpoint === endpoint);
      if (faultIndex !== -1) {
        const fault = (account.faults.splice(faultIndex, 1)[0] as { fault: Fault }).fault;
        if (fault.status === 'drop') {
          record(0);
          req.socket.destroy();
          return;
        }
        if (fault.status === 429) {
          send(429, errorDocument(429, 'throttled', 'Request was throttled.'), {
            'retry-after': fault.retryAfter ?? '1',
          });
          return;
        }
        send(fault.status, errorDocument(fault.status, 'error', 'A server error occurred.'));
        return;
      }
      const wait = account.throttled(endpoint, at);
      if (wait > 0) {
        send(429, errorDocument(429, 'throttled', 'Request was throttled.'), { 'retry-after': String(wait) });
        return;
      }
      send(200, account.page(endpoint, url));
    } catch (err) {
      if (err instanceof BadRequest) {
        send(err.status, errorDocument(err.status, err.code, err.message, err.parameter));
        return;
      }
      send(500, errorDocument(500, 'error', 'A server error occurred.'));
    }
  }

  /** Seconds until a request would fit the endpoint's throttle; 0 when it fits now. */
  private throttled(endpoint: FakeEndpoint, at: number): number {
    const limit = this.options.throttle?.[endpoint];
    if (!limit) return 0;
    const times = (this.recent.get(endpoint) ?? []).filter((t) => t > at - 60_000);
    this.recent.set(endpoint, times);
    const lastSecond = times.filter((t) => t > at - 1000).length;
    if (times.length >= limit.perMinute) return Math.ceil(((times[0] as number) + 60_000 - at) / 1000);
    if (lastSecond >= limit.perSecond) return 1;
    times.push(at);
    return 0;
  }

  private page(endpoint: FakeEndpoint, url: URL): unknown {
    const q = url.searchParams;
    const conditions = parseFilter(endpoint, q.get('filter'));
    const sort = q.get('sort');
    if (sort !== null && !SORTS[endpoint].includes(sort)) {
      throw new BadRequest(400, 'invalid', `'${sort}' is not a valid sort field for '${endpoint}'.`, 'sort');
    }
    const limits = PAGE_LIMITS[endpoint];
    let size = METRICS_PAGE;
    const sizeParam = q.get('page[size]');
    if (limits) {
      size = sizeParam === null ? limits.default : Number(sizeParam);
      if (!Number.isInteger(size) || size < 1 || size > limits.max) {
        throw new BadRequest(400, 'invalid', `Page size must be an integer between 1 and ${limits.max}.`, 'page[size]');
      }
    } else if (sizeParam !== null) {
      throw new BadRequest(400, 'invalid', "'page[size]' is not a valid parameter for this endpoint.", 'page[size]');
    }

    let items: Resource[];
    if (endpoint === 'events') {
      const { events, times } = this.sortedEvents();
      // Bounds by binary search; events without a readable datetime (NaN) match no datetime filter.
      const bounds = conditions.get('datetime') ?? [];
      let lo = 0;
      let hi = events.length;
      for (const c of bounds) {
        if (c.op === 'greater-or-equal')
          lo = Math.max(
            lo,
            firstIndex(times, (t) => t >= c.ms),
          );
        else if (c.op === 'greater-than')
          lo = Math.max(
            lo,
            firstIndex(times, (t) => t > c.ms),
          );
        else if (c.op === 'less-than')
          hi = Math.min(
            hi,
            firstIndex(times, (t) => t >= c.ms),
          );
        else
          hi = Math.min(
            hi,
            firstIndex(times, (t) => t > c.ms),
          );
      }
      items = events
        .slice(lo, Math.max(lo, hi))
        .filter((e, i) => bounds.length === 0 || Number.isFinite(times[lo + i]));
      if (sort === '-datetime' || sort === '-timestamp') items.reverse();
    } else if (endpoint === 'profiles') {
      items = [...this.profiles.values()]
        .filter((p) => passes(timeOf(p.attributes.updated), conditions.get('updated') ?? []))
        .sort((a, b) => compareBy(a, b, sort));
    } else {
      items = [...this.metrics.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    }

    const offset = decodeCursor(q.get('page[cursor]'));
    const data = items.slice(offset, offset + size);
    const nextOffset = offset + size < items.length ? offset + size : null;
    const self = url.toString();
    let next: string | null = null;
    if (nextOffset !== null) {
      const nextUrl = new URL(self);
      nextUrl.searchParams.set('page[cursor]', encodeCursor(nextOffset));
      next = nextUrl.toString();
    }
    const document: Record<string, unknown> = { data, links: { self, next, prev: null } };
    const include = (q.get('include') ?? '').split(',').filter(Boolean);
    if (endpoint === 'events' && include.length > 0) {
      const included: Resource[] = [];
      const seen = new Set<string>();
      for (const event of data) {
        const rel = event.relationships as Record<string, { data?: { type: string; id: string } | null }> | undefined;
        for (const kind of include) {
          const ref = rel?.[kind]?.data;
          if (!ref || seen.has(`${ref.type}:${ref.id}`)) continue;
          seen.add(`${ref.type}:${ref.id}`);
          const resource = ref.type === 'metric' ? this.metrics.get(ref.id) : this.profiles.get(ref.id);
          if (resource) included.push(resource);
        }
      }
      document.included = included;
    }
    return document;
  }
}

/** The first index whose time satisfies `at` (times ascending, NaN last); times.length when none does. */
function firstIndex(times: readonly number[], at: (t: number) => boolean): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const t = times[mid] as number;
    if (Number.isNaN(t) || at(t)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function compareBy(a: Resource, b: Resource, sort: string | null): number {
  if (sort === null || sort === 'id' || sort === '-id') {
    const c = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    return sort === '-id' ? -c : c;
  }
  const field = sort.replace(/^-/, '');
  const c = timeOf(a.attributes[field]) - timeOf(b.attributes[field]) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  return sort.startsWith('-') ? -c : c;
}

// Opaque to the client, as Klaviyo's are.
function encodeCursor(offset: number): string {
  return Buffer.from(`o:${offset}`).toString('base64url');
}

function decodeCursor(cursor: string | null): number {
  if (cursor === null) return 0;
  const match = /^o:(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!match) throw new BadRequest(400, 'invalid', 'Invalid page cursor.', 'page[cursor]');
  return Number(match[1]);
}

function errorDocument(status: number, code: string, detail: string, parameter?: string): unknown {
  return {
    errors: [
      {
        id: `fake-${status}`,
        status,
        code,
        title: status === 429 ? 'Throttled' : status >= 500 ? 'Server error' : 'Invalid input',
        detail,
        source: parameter ? { parameter } : {},
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Resources for tests.

export function isoSecond(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, '+00:00');
}

export function metricOf(id: string, name: string, created = '2024-01-01T00:00:00+00:00'): Resource {
  return {
    type: 'metric',
    id,
    attributes: {
      name,
      created,
      updated: created,
      integration: { key: 'shopify', name: 'Shopify', category: 'eCommerce' },
    },
  };
}

export function profileOf(id: string, updatedMs: number, attributes: Record<string, unknown> = {}): Resource {
  return {
    type: 'profile',
    id,
    attributes: {
      email: `${id.toLowerCase()}@example.com`,
      first_name: 'Ada',
      created: '2024-01-01T00:00:00+00:00',
      updated: isoSecond(updatedMs),
      properties: {},
      ...attributes,
    },
  };
}

export function eventOf(
  id: string,
  metricId: string,
  profileId: string,
  atMs: number,
  properties: Record<string, unknown> = {},
): Resource {
  return {
    type: 'event',
    id,
    attributes: {
      timestamp: Math.floor(atMs / 1000),
      datetime: isoSecond(atMs),
      uuid: `00000000-0000-4000-8000-${id.padStart(12, '0').slice(-12)}`,
      event_properties: properties,
    },
    relationships: {
      metric: { data: { type: 'metric', id: metricId } },
      profile: { data: { type: 'profile', id: profileId } },
    },
  };
}
