import { HttpError } from '../../lib/klaviyo/errors';
import {
  planEventsPage,
  planEventsPageSettingAside,
  planMetricsSettingAside,
  planProfilesSettingAside,
} from '../../lib/app/ingest';
import type { SyncSettings } from '../../lib/config';
import { forgetCachedApiKey, keyFromSecretString, klaviyoApiKey } from '../../lib/sync/apiKey';
import { retryAfterSeconds } from '../../lib/sync/klaviyoClient';
import { eventOf, metricOf, profileOf } from '../support/fakeKlaviyo';

/** The lenient planners (lib/app/ingest/setAside.ts), the key's sources and Retry-After: no database needed. */
const AT = Date.parse('2026-03-01T00:00:00Z');

function page() {
  const events = [0, 1, 2, 3, 4].map((i) => eventOf(`E${i}`, 'MetricOrder1', 'P1', AT + i * 1000, { $value: i }));
  (events[1]?.attributes.event_properties as Record<string, unknown>).note = 'a\u0000';
  (events[3]?.attributes as Record<string, unknown>).datetime = 'yesterday';
  return {
    data: events,
    included: [metricOf('MetricOrder1', 'Placed Order'), profileOf('P1', AT, { first_name: 'bad\u0000' })],
  };
}

describe('planning a page, setting bad items aside', () => {
  it('keeps the good items and points at the bad ones where they were in the page as received', () => {
    const { plan, setAside, kept } = planEventsPageSettingAside(page(), { now: new Date(AT), maxResources: 1000 });
    expect(plan.events.map((e) => e.id)).toEqual(['E0', 'E2', 'E4']);
    // The profile was set aside: the events reference a stub of it.
    expect(plan.profiles).toEqual([{ id: 'P1', isStub: true }]);
    expect(kept).toBe(4);
    expect(setAside.map((s) => [s.pointer, s.code])).toEqual([
      ['/data/1/attributes/event_properties/note', 'invalid_character'],
      ['/included/1/attributes/first_name', 'invalid_character'],
      ['/data/3/attributes/datetime', 'invalid_format'],
    ]);
    expect((setAside[0]?.item as { id: string }).id).toBe('E1');
  });

  it('leaves the HTTP routes all-or-nothing: the strict planner still refuses the page', () => {
    expect(() => planEventsPage(page(), { now: new Date(AT), maxResources: 1000 })).toThrow(HttpError);
  });

  it('still refuses what is not about one item', () => {
    expect(() => planEventsPageSettingAside({ data: 'nope' }, { maxResources: 1000 })).toThrow(HttpError);
    const many = { data: Array.from({ length: 3 }, (_, i) => eventOf(`E${i}`, 'M', 'P', AT)) };
    expect(() => planEventsPageSettingAside(many, { maxResources: 2 })).toThrow(/at most 2/);
  });

  it('sets aside profiles and metrics of their own lists', () => {
    const profiles = planProfilesSettingAside(
      { data: [profileOf('P1', AT), { type: 'profile', id: 'P2' }] },
      { maxResources: 100 },
    );
    expect(profiles.plan.map((p) => p.id)).toEqual(['P1']);
    expect(profiles.setAside.map((s) => s.pointer)).toEqual(['/data/1/attributes']);
    const metrics = planMetricsSettingAside(
      { data: [{ type: 'metric', id: 'M1', attributes: {} }, metricOf('M2', 'Ok')] },
      { maxResources: 100 },
    );
    expect(metrics.plan.map((m) => m.id)).toEqual(['M2']);
    expect(metrics.setAside[0]?.pointer).toBe('/data/0/attributes/name');
  });
});

describe('the Klaviyo key', () => {
  const settings = (secret?: string): SyncSettings => ({
    baseUrl: 'https://a.klaviyo.com',
    apiKeySecret: secret,
    accountId: 'default',
    timeBudgetMs: 1,
    lookbackMs: 1,
    lookbackEveryMs: 1,
    safetyLagMs: 1,
    backfillMs: 1,
    sliceMs: 1,
    rateShare: 0.5,
  });
  beforeEach(() => forgetCachedApiKey());

  it('comes from the secret (the key, or JSON holding it), read once per cache period', async () => {
    const reads: string[] = [];
    const readSecret = async (id: string) => {
      reads.push(id);
      return '{"api_key": "pk_from_secret"}';
    };
    const s = settings('klaviyo-analytics/prod/klaviyo-api-key');
    expect(await klaviyoApiKey(s, {}, { readSecret, now: 0 })).toBe('pk_from_secret');
    expect(await klaviyoApiKey(s, {}, { readSecret, now: 60_000 })).toBe('pk_from_secret');
    expect(reads).toHaveLength(1);
    await klaviyoApiKey(s, {}, { readSecret, now: 16 * 60_000 });
    expect(reads).toHaveLength(2);
    expect(keyFromSecretString(' pk_plain \n')).toBe('pk_plain');
    expect(() => keyFromSecretString('{"other": 1}')).toThrow(/api_key/);
  });

  it('comes from KLAVIYO_API_KEY without a secret, and a missing one fails loudly', async () => {
    expect(await klaviyoApiKey(settings(), { KLAVIYO_API_KEY: 'pk_env' })).toBe('pk_env');
    await expect(klaviyoApiKey(settings(), {})).rejects.toThrow(/KLAVIYO_API_KEY/);
  });
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates, and waits a default when it cannot', () => {
    expect(retryAfterSeconds('30', 0)).toBe(30);
    expect(retryAfterSeconds(new Date(90_000).toUTCString(), 30_000)).toBe(60);
    expect(retryAfterSeconds(null, 0)).toBe(10);
    expect(retryAfterSeconds('soon', 0)).toBe(10);
  });
});
