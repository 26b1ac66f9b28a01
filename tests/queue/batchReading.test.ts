import { consumeIngestMessages, type ReceivedMessage } from '../../lib/app/ingest/consume';
import { ingestMessages } from '../../lib/app/ingest/enqueue';
import type { CopyRow, Db } from '../../lib/db/port';
import { eventsPage } from '../ingest/helpers';
import { testDriver } from '../support/env';
import { useFreshDatabase } from '../support/database';

/**
 * The consumer reads a batch's messages as the first account's COPY asks for their events, so that
 * this process parses and checks a message while the server stores the ones before it
 * (lib/app/ingest/consume.ts, writeMessages). Reading lazily must change nothing of what is stored:
 * the rejects among the messages, a second account's messages, and a COPY refused part way by a
 * re-delivered message (whose batch-mates after it were never asked for) all end as when every
 * message was read first.
 */
/** The db, in every transaction and savepoint of it, with the rows of a COPY into the events passed through `rowsOf`. */
function onEventsCopy(db: Db, rowsOf: (rows: Iterable<CopyRow>) => Iterable<CopyRow>): Db {
  const out: Db = {
    driver: db.driver,
    query: (text, params) => db.query(text, params),
    transaction: (fn) => db.transaction((tx) => fn(onEventsCopy(tx, rowsOf))),
  };
  const copyRows = db.copyRows?.bind(db);
  if (copyRows)
    out.copyRows = (table, columns, rows) => copyRows(table, columns, table === 'klaviyo_events' ? rowsOf(rows) : rows);
  return out;
}

describe('the consumer reads a batch as it writes it', () => {
  const t = useFreshDatabase();
  const acceptedAt = new Date();

  /** A page's queue messages, its events split over several. */
  function pageMessages(prefix: string, accountId = 'default', events = 30): string[] {
    return ingestMessages('events-page', eventsPage({ events, prefix, metrics: 2, profiles: 4 }), {
      accountId,
      acceptedAt,
      requestId: prefix,
      maxMessageBytes: 8_192,
    }).messages;
  }

  const received = (prefix: string, bodies: readonly string[]): ReceivedMessage[] =>
    bodies.map((body, i) => ({ messageId: `${prefix}-${i}`, body }));

  async function storedIds(prefix: string): Promise<{ account_id: string; n: string }[]> {
    return t.db.query<{ account_id: string; n: string }>(
      `SELECT account_id, count(*) AS n FROM klaviyo_events WHERE id LIKE $1 GROUP BY account_id ORDER BY account_id`,
      [`${prefix}%`],
    );
  }

  (testDriver() === 'data-api' ? it.skip : it)(
    'starts the COPY of the events having read only the first message',
    async () => {
      const messages = received('lazy', pageMessages('lazy', 'default', 60));
      expect(messages.length).toBeGreaterThan(3);
      const envelopes = (): number => parsed.filter((text) => text.includes('"account_id"')).length;
      const parsed: string[] = [];
      const parse = JSON.parse;
      const spy = jest.spyOn(JSON, 'parse').mockImplementation((text: string, reviver) => {
        parsed.push(text);
        return parse(text, reviver) as unknown;
      });
      let readAtCopy: number | undefined;
      try {
        const watched = onEventsCopy(t.db, (rows) => {
          readAtCopy ??= envelopes();
          return rows;
        });
        const outcome = await consumeIngestMessages(watched, messages);
        expect(outcome.failed).toEqual([]);
        expect(outcome.path).toBe('batch');
      } finally {
        spy.mockRestore();
      }
      expect(readAtCopy).toBe(1);
      expect(envelopes()).toBe(messages.length);
      expect(await storedIds('lazy')).toEqual([{ account_id: 'default', n: '60' }]);
    },
  );

  it("sorts out rejects and a second account's messages read during the first account's COPY", async () => {
    const a = pageMessages('mixa');
    const b = pageMessages('mixb', 'acme');
    const cut = `${(a[0] as string).split('\n')[0]}\n`;
    const messages = [
      { messageId: 'junk', body: '{"hello":"world"}' },
      ...received('a', a.slice(0, 2)),
      ...received('b', b),
      { messageId: 'cut', body: cut },
      ...received('a-rest', a.slice(2)),
    ];
    const outcome = await consumeIngestMessages(t.db, messages);
    expect(outcome.failed).toEqual(['junk', 'cut']);
    expect(outcome.rejected).toBe(2);
    expect(outcome.stored).toBe(messages.length - 2);
    expect(outcome.path).toBe('batch');
    expect(outcome.counts.inserted).toBe(60);
    expect(await storedIds('mixa')).toEqual([{ account_id: 'default', n: '30' }]);
    expect(await storedIds('mixb')).toEqual([{ account_id: 'acme', n: '30' }]);
    const rejects = await t.db.query<{ message_id: string }>(
      `SELECT message_id FROM klaviyo_queue_rejects WHERE message_id IN ('junk', 'cut') ORDER BY message_id`,
    );
    expect(rejects.map((r) => r.message_id)).toEqual(['cut', 'junk']);
  });

  it('stores what follows a re-delivered message when the COPY is refused part way', async () => {
    const bodies = pageMessages('redo', 'default', 60);
    expect(bodies.length).toBeGreaterThan(4);
    const middle = Math.floor(bodies.length / 2);
    const first = await consumeIngestMessages(t.db, received('redo-first', [bodies[middle] as string]));
    expect(first.failed).toEqual([]);
    const before = first.counts.inserted;
    expect(before).toBeGreaterThan(0);

    const storedBefore = new Set(
      (await t.db.query<{ id: string }>(`SELECT id FROM klaviyo_events WHERE id LIKE 'redo%'`)).map((r) => r.id),
    );
    // The COPY sends rows up to the first stored one and no further, as when the server refuses it
    // before this process has read the rest of the batch (on a small batch the whole text would be
    // in the socket before the refusal came back, whatever the code did after it).
    const refusedEarly = onEventsCopy(t.db, function* (rows) {
      for (const row of rows) {
        yield row;
        const id = 'line' in row ? row.line.split('\t')[1] : row[1];
        if (id !== null && id !== undefined && storedBefore.has(id)) return;
      }
    });
    const outcome = await consumeIngestMessages(refusedEarly, received('redo', bodies));
    expect(outcome.failed).toEqual([]);
    expect(outcome.path).toBe('batch');
    expect(outcome.counts.inserted).toBe(60 - before);
    expect(outcome.counts.duplicates).toBe(before);
    expect(await storedIds('redo')).toEqual([{ account_id: 'default', n: '60' }]);
    const pending = await t.db.query<{ n: string; distinct_events: string }>(
      `SELECT count(*) AS n, count(DISTINCT event_id) AS distinct_events FROM klaviyo_aggregate_pending
        WHERE event_id LIKE 'redo%'`,
    );
    expect(pending[0]).toEqual({ n: '60', distinct_events: '60' });
  });
});
