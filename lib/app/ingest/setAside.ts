import { HttpError } from '../../klaviyo/errors';
import type { MetricUpsert } from '../../repositories/metrics';
import type { ProfileUpsert } from '../../repositories/profiles';
import { planEventsPage, type EventsPagePlan } from './eventsPage';
import { planMetricsDocument, planProfilesDocument } from './resources';
import type { IngestOptions } from './result';
import { isPlainObject } from './validation';

/**
 * The lenient planners a sync uses. The HTTP routes refuse a whole request when one item is bad (the
 * sender can fix it and send again); a sync cannot fix Klaviyo's data, and refusing the page would
 * stop it at that page for ever. These run the same validation and mapping as the routes, take the
 * items the validation pointed at out of the page, and plan the rest: the caller stores the plan and
 * records each item set aside with its reason and pointer.
 *
 * Problems that are not about one item (an envelope that is not a page, too many items) still throw.
 */
export interface SetAsideItem {
  /** Pointer of the problem in the page as received, e.g. /data/3/attributes/event_properties/note. */
  readonly pointer: string;
  readonly code: string;
  readonly detail: string;
  /** The item's own JSON as received. */
  readonly item: unknown;
}

export interface Lenient<P> {
  readonly plan: P;
  /** Items of the page, `data` and `included` together, that reached the plan. */
  readonly kept: number;
  readonly setAside: SetAsideItem[];
}

type Section = 'data' | 'included';
const ITEM_POINTER = /^\/(data|included)\/(\d+)(?:\/|$)/;

// Each pass removes at least one item; a removal can only change what the page's other items are
// checked against (a duplicate id), so a second pass normally ends it.
const MAX_PASSES = 4;

function planSettingAside<P>(
  body: unknown,
  sections: readonly Section[],
  plan: (page: unknown) => P,
  count: (page: Record<string, unknown>) => number,
): Lenient<P> {
  const setAside: SetAsideItem[] = [];
  if (!isPlainObject(body)) return { plan: plan(body), kept: 0, setAside };
  // Positions in the page as received, so that pointers stay true after items are removed.
  const positions = new Map<Section, number[]>();
  let page: Record<string, unknown> = body;
  for (const section of sections) {
    const items = body[section];
    if (Array.isArray(items))
      positions.set(
        section,
        items.map((_, i) => i),
      );
  }
  for (let pass = 0; ; pass += 1) {
    try {
      return { plan: plan(page), kept: count(page), setAside };
    } catch (err) {
      if (!(err instanceof HttpError) || err.status !== 400 || pass >= MAX_PASSES) throw err;
      const drop = new Map<Section, Set<number>>();
      for (const problem of err.items) {
        const match = problem.pointer === undefined ? null : ITEM_POINTER.exec(problem.pointer);
        const section = match?.[1] as Section | undefined;
        if (!match || !section || !sections.includes(section)) throw err;
        const index = Number(match[2]);
        const original = positions.get(section)?.[index];
        const items = page[section];
        if (original === undefined || !Array.isArray(items)) throw err;
        const rest = (problem.pointer as string).slice(match[0].length);
        setAside.push({
          pointer: `/${section}/${original}${rest ? `/${rest}` : ''}`,
          code: problem.code,
          detail: problem.detail,
          item: items[index],
        });
        if (!drop.has(section)) drop.set(section, new Set());
        drop.get(section)?.add(index);
      }
      const next: Record<string, unknown> = { ...page };
      for (const [section, indexes] of drop) {
        const items = page[section] as unknown[];
        next[section] = items.filter((_, i) => !indexes.has(i));
        positions.set(
          section,
          (positions.get(section) ?? []).filter((_, i) => !indexes.has(i)),
        );
      }
      page = next;
    }
  }
}

const lengthOf = (value: unknown) => (Array.isArray(value) ? value.length : 0);

/** planEventsPage, setting aside the bad events and included resources instead of refusing the page. */
export function planEventsPageSettingAside(body: unknown, options: IngestOptions = {}): Lenient<EventsPagePlan> {
  return planSettingAside(
    body,
    ['data', 'included'],
    (page) => planEventsPage(page, options),
    (page) => lengthOf(page.data) + lengthOf(page.included),
  );
}

export function planProfilesSettingAside(body: unknown, options: IngestOptions = {}): Lenient<ProfileUpsert[]> {
  return planSettingAside(
    body,
    ['data'],
    (page) => planProfilesDocument(page, options),
    (page) => lengthOf(page.data),
  );
}

export function planMetricsSettingAside(body: unknown, options: IngestOptions = {}): Lenient<MetricUpsert[]> {
  return planSettingAside(
    body,
    ['data'],
    (page) => planMetricsDocument(page, options),
    (page) => lengthOf(page.data),
  );
}
