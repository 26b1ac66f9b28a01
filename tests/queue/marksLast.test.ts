import { consumeIngestMessages } from '../../lib/app/ingest/consume';
import { eventsPage } from '../ingest/helpers';
import { useFreshDatabase } from '../support/database';
import { createEventBody, logged, receivedMessages } from './support';

/**
 * A batch's dirty marks are row-locked from their write to the commit, and every batch in flight
 * that shares a (metric, hour) with it waits meanwhile. The consumer therefore writes them last,
 * all of the transaction's events' marks in one statement, after the metrics and profiles
 * (lib/app/ingest/consume.ts, writeMessages). What the marks are is checked against the synchronous
 * path by tests/queue/queue.test.ts; this checks when they are written, on both drivers.
 */

const MARKS = /INSERT INTO klaviyo_aggregate_dirty/;

describe('the consumer writes the dirty marks last', () => {
  const t = useFreshDatabase();

  it('marks the events of every message in one statement, after the profiles, as its last', async () => {
    const messages = receivedMessages('ml', [
      ['events-page', eventsPage({ events: 40, prefix: 'ml', metrics: 2, profiles: 5 })],
      ['create-event', createEventBody('ml-created', 'Marked Last', 'marked-last@example.com')],
    ]);
    // The page in several messages, and the created event.
    expect(messages.length).toBeGreaterThan(2);

    const log: string[] = [];
    const outcome = await consumeIngestMessages(logged(t.db, log), messages);
    expect(outcome.failed).toEqual([]);
    expect(outcome.path).toBe('batch');

    const marking = log.flatMap((text, i) => (MARKS.test(text) ? [i] : []));
    expect(marking).toEqual([log.length - 1]);
    const lastProfileWrite = log.findLastIndex((text) => /klaviyo_profiles/.test(text));
    expect(lastProfileWrite).toBeGreaterThanOrEqual(0);
    expect(lastProfileWrite).toBeLessThan(log.length - 1);

    // Every stored event's (metric, hour) marked, the page's and the created event's alike, and nothing else.
    const unmarked = await t.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM (
         SELECT DISTINCT metric_id, date_trunc('hour', "timestamp", 'UTC') AS bucket FROM klaviyo_events WHERE account_id = 'default'
       ) e FULL JOIN (SELECT metric_id, bucket FROM klaviyo_aggregate_dirty WHERE account_id = 'default') d USING (metric_id, bucket)
       WHERE e.metric_id IS NULL OR d.metric_id IS NULL`,
    );
    const stored = await t.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM klaviyo_events WHERE account_id = 'default'`,
    );
    expect(Number(stored[0]?.n)).toBe(41);
    expect(Number(unmarked[0]?.n)).toBe(0);
  });
});
