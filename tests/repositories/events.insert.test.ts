import { useFreshDatabase } from '../support/database';
import { storeEvents } from '../support/events';

describe('insertEvents', () => {
  const t = useFreshDatabase({ setEnv: false });

  it('inserts once, reports re-deliveries as duplicates, and marks UTC hour buckets dirty', async () => {
    const events = [
      { id: 'e1', metricId: 'm1', profileId: 'p1', at: '2024-03-10T05:30:00Z', value: '10.50' },
      { id: 'e2', metricId: 'm1', profileId: 'p2', at: '2024-03-10T05:59:59Z', value: 1 },
      { id: 'e3', metricId: 'm2', profileId: 'p1', at: '2024-03-10T06:00:00Z' },
    ];
    // A session in a half-hour zone must not shift the buckets.
    const first = await t.db.transaction(async (tx) => {
      await tx.query(`SET LOCAL TIME ZONE 'Asia/Kolkata'`);
      return storeEvents(tx, events);
    });
    expect(first).toEqual({ inserted: 3, duplicates: 0 });
    expect(await storeEvents(t.db, events)).toEqual({ inserted: 0, duplicates: 3 });
    const stored = await t.db.query<{ id: string; value: string | null }>(
      `SELECT id, value FROM klaviyo_events WHERE account_id = 'default' ORDER BY id`,
    );
    expect(stored).toEqual([
      { id: 'e1', value: '10.50' },
      { id: 'e2', value: '1' },
      { id: 'e3', value: null },
    ]);
    const dirty = await t.db.query<{ metric_id: string; bucket: Date }>(
      `SELECT metric_id, bucket FROM klaviyo_aggregate_dirty WHERE account_id = 'default' ORDER BY metric_id, bucket`,
    );
    expect(dirty).toEqual([
      { metric_id: 'm1', bucket: new Date('2024-03-10T05:00:00Z') },
      { metric_id: 'm2', bucket: new Date('2024-03-10T06:00:00Z') },
    ]);
  });

  it('skips a duplicate inside the same batch', async () => {
    const e = { id: 'dup', metricId: 'm1', profileId: 'p1', at: '2024-04-01T00:00:00Z' };
    expect(await storeEvents(t.db, [e, e])).toEqual({ inserted: 1, duplicates: 1 });
  });
});
