import { handler as ingest } from '../../functions/ingest';
import { instantMicros } from '../../lib/repositories/instants';
import { useFreshDatabase } from '../support/database';
import { klaviyoFixture } from '../support/fixtures';
import { invoke } from '../support/http';

/**
 * "Newest updated wins" within one request, at microsecond precision, as PostgreSQL compares the
 * stored timestamptz: two copies of one profile or metric 300 microseconds apart (the same
 * millisecond) arrive older first; the newer one must be stored, by every ingest route.
 */
type Resource = { type: string; id: string; attributes: Record<string, unknown> };

const OLDER = '2024-03-01T10:00:00.000100+00:00';
const NEWER = '2024-03-01T10:00:00.000400+00:00';

function copy(resource: Resource, updated: string, changes: Record<string, unknown>): Resource {
  return { ...resource, attributes: { ...resource.attributes, ...changes, updated } };
}

describe('newest wins within one request, to the microsecond', () => {
  const t = useFreshDatabase();
  const post = (path: string, body: unknown) =>
    invoke(ingest, { method: 'POST', path, routeKey: `POST ${path}`, body, key: 'write' });

  async function stored(table: 'klaviyo_profiles' | 'klaviyo_metrics', id: string, column: string) {
    const rows = await t.db.query<{ value: string; updated: string }>(
      `SELECT ${column} AS value, to_char(updated AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS updated
         FROM ${table} WHERE account_id = 'default' AND id = $1`,
      [id],
    );
    return rows[0];
  }

  it('POST /api/profiles keeps the later of two copies in the same millisecond', async () => {
    const profile = klaviyoFixture<Resource>('profile.json');
    const res = await post('/api/profiles', {
      data: [copy(profile, OLDER, { first_name: 'Older' }), copy(profile, NEWER, { first_name: 'Newer' })],
    });
    expect(res.status).toBe(200);
    expect(await stored('klaviyo_profiles', profile.id, 'first_name')).toEqual({
      value: 'Newer',
      updated: '2024-03-01T10:00:00.000400',
    });
  });

  it('POST /api/metrics keeps the later of two copies in the same millisecond', async () => {
    const metric = klaviyoFixture<Resource>('metric.json');
    const res = await post('/api/metrics', {
      data: [copy(metric, OLDER, { name: 'Older' }), copy(metric, NEWER, { name: 'Newer' })],
    });
    expect(res.status).toBe(200);
    expect(await stored('klaviyo_metrics', metric.id, 'name')).toEqual({
      value: 'Newer',
      updated: '2024-03-01T10:00:00.000400',
    });
  });

  it("POST /api/events keeps the later of a page's two included copies of a profile", async () => {
    const page = klaviyoFixture<{ included: Resource[] }>('events-page.json');
    const profile = page.included.find((r) => r.type === 'profile') as Resource;
    page.included = [
      ...page.included.filter((r) => r !== profile),
      copy(profile, OLDER, { first_name: 'Older' }),
      copy(profile, NEWER, { first_name: 'Newer' }),
    ];
    const res = await post('/api/events', page);
    expect(res.status).toBe(200);
    expect((await stored('klaviyo_profiles', profile.id, 'first_name'))?.value).toBe('Newer');
  });

  it('reads instants as PostgreSQL does: offsets, missing offset as UTC, rounding past six digits', () => {
    expect(instantMicros('2024-03-01T10:00:00.000400Z')).toBe(Date.UTC(2024, 2, 1, 10) * 1000 + 400);
    expect(instantMicros('2024-03-01T12:00:00.0004+02:00')).toBe(Date.UTC(2024, 2, 1, 10) * 1000 + 400);
    expect(instantMicros('2024-03-01T10:00:00.0000005')).toBe(Date.UTC(2024, 2, 1, 10) * 1000 + 1);
    expect(instantMicros('not a time')).toBeUndefined();
  });
});
