import { handler as ingest } from '../../functions/ingest';
import * as profiles from '../../functions/profiles';
import { useFreshDatabase } from '../support/database';
import { invoke } from '../support/http';

/**
 * GET /api/profiles sorted by id, created, updated or email, either way, paged forwards by
 * links.next and back by links.prev, against an oracle computed here: every profile exactly once, in
 * order, with ties on one microsecond and profiles without the sorted value (stubs, copies without
 * `created`) among them. Then the same while profiles change under the reader.
 */
interface Known {
  readonly id: string;
  email: string | null;
  created: string | null;
  updated: string | null;
}

const known: Known[] = [];
const TIMES = [
  '2024-01-01T00:00:00.000001Z',
  '2024-01-01T00:00:00.000002Z',
  '2024-01-01T00:00:00.000002Z', // a tie on the microsecond
  '2024-03-05T10:00:00.5Z',
  null,
];
for (let i = 0; i < 23; i++) {
  known.push({
    id: `P${String((i * 7) % 23).padStart(2, '0')}`,
    email: i % 6 === 5 ? null : `${i % 2 === 0 ? 'A' : 'a'}${String(i % 4)}@example.com`,
    created: TIMES[(i * 3) % TIMES.length] ?? null,
    updated: TIMES[i % TIMES.length] ?? null,
  });
}

function resource(p: Known) {
  return {
    type: 'profile',
    id: p.id,
    attributes: { email: p.email, first_name: p.id, created: p.created, updated: p.updated },
  };
}

type Field = 'id' | 'email' | 'created' | 'updated';
const micros = (t: string) => Date.parse(t) * 1000 + Number(/\.(\d+)Z$/.exec(t)?.[1]?.padEnd(6, '0').slice(3) ?? 0);

/** The order the API must give: nulls last ascending and first descending, the id breaking ties. */
function oracle(rows: readonly Known[], field: Field, descending: boolean): string[] {
  const value = (p: Known): string | number | null =>
    field === 'id' ? p.id : field === 'email' ? p.email : p[field] === null ? null : micros(p[field]);
  const cmp = (a: Known, b: Known): number => {
    const va = value(a);
    const vb = value(b);
    if (va === null || vb === null) {
      if (va !== vb) return va === null ? 1 : -1;
    } else if (va !== vb) return va < vb ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  };
  const sorted = [...rows].sort(cmp).map((p) => p.id);
  return descending ? sorted.reverse() : sorted;
}

async function page(query: Record<string, string>) {
  const res = await invoke(profiles.list, { method: 'GET', path: '/api/profiles', query, key: 'read' });
  expect(res.status).toBe(200);
  return res.body as { data: { id: string }[]; links: { next?: string; prev?: string } };
}

const paramsOf = (link: string) => Object.fromEntries(new URL(link, 'http://x').searchParams.entries());

describe('GET /api/profiles keyset paging', () => {
  useFreshDatabase();

  beforeAll(async () => {
    const res = await invoke(ingest, {
      method: 'POST',
      path: '/api/profiles',
      body: { data: known.map(resource) },
      key: 'write',
    });
    expect(res.status).toBe(200);
  });

  const sorts: Array<[Field, boolean]> = (['id', 'email', 'created', 'updated'] as Field[]).flatMap((f) => [
    [f, false] as [Field, boolean],
    [f, true] as [Field, boolean],
  ]);

  it.each(sorts)(
    'sort by %s (descending: %s): forwards by next and back by prev, each profile once',
    async (field, desc) => {
      const expected = oracle(known, field, desc);
      for (const size of [1, 4, 100]) {
        const pages: string[][] = [];
        let query: Record<string, string> | undefined = {
          sort: `${desc ? '-' : ''}${field}`,
          'page[size]': String(size),
        };
        let last: { links: { prev?: string } } | undefined;
        while (query) {
          const body = await page(query);
          pages.push(body.data.map((p) => p.id));
          if (pages.length === 1) expect(body.links.prev).toBeUndefined();
          last = body;
          query = body.links.next ? paramsOf(body.links.next) : undefined;
        }
        expect({ size, ids: pages.flat() }).toEqual({ size, ids: expected });
        // Back from the last page: the same pages in reverse, and the first one has no prev.
        const back: string[][] = [];
        let prev = last?.links.prev;
        while (prev) {
          const body = await page(paramsOf(prev));
          back.unshift(body.data.map((p) => p.id));
          prev = body.links.prev;
        }
        expect({ size, ids: [...back.flat(), ...(pages[pages.length - 1] ?? [])] }).toEqual({ size, ids: expected });
      }
    },
  );

  it('filters on created and updated as Klaviyo lists them', async () => {
    const after = '2024-01-01T00:00:00.000001Z';
    const res = await page({ filter: `greater-than(updated,${after})`, sort: 'updated', 'page[size]': '100' });
    const want = known.filter((p) => p.updated !== null && micros(p.updated) > micros(after));
    expect(res.data.map((p) => p.id)).toEqual(oracle(want, 'updated', false));
    const before = await page({ filter: 'less-than(created,2024-02-01T00:00:00Z)', 'page[size]': '100' });
    const wantBefore = known.filter((p) => p.created !== null && micros(p.created) < micros('2024-02-01T00:00:00Z'));
    expect(before.data.map((p) => p.id)).toEqual(oracle(wantBefore, 'id', false));
  });

  it('stays exact while profiles change: every profile that does not change is read once', async () => {
    const first = await page({ sort: 'updated', 'page[size]': '5' });
    const seen = first.data.map((p) => p.id);
    // A profile already read is updated (it moves to the end), and one not read yet too.
    const movedSeen = known.find((p) => p.id === seen[0]) as Known;
    const unread = oracle(known, 'updated', false).find((id) => !seen.includes(id)) as string;
    const movedUnread = known.find((p) => p.id === unread) as Known;
    for (const p of [movedSeen, movedUnread]) p.updated = '2025-06-01T00:00:00.000003Z';
    const res = await invoke(ingest, {
      method: 'POST',
      path: '/api/profiles',
      body: { data: [resource(movedSeen), resource(movedUnread)] },
      key: 'write',
    });
    expect(res.body.data.attributes.profiles_upserted).toBe(2);
    let next = first.links.next;
    while (next) {
      const body = await page(paramsOf(next));
      seen.push(...body.data.map((p) => p.id));
      next = body.links.next;
    }
    const counts = new Map<string, number>();
    for (const id of seen) counts.set(id, (counts.get(id) ?? 0) + 1);
    for (const p of known)
      expect({ id: p.id, times: counts.get(p.id) }).toEqual({ id: p.id, times: p === movedSeen ? 2 : 1 });
  });
});
