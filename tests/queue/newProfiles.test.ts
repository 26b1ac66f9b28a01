import { consumeIngestMessages, type ReceivedMessage } from '../../lib/app/ingest/consume';
import { ingestMessages } from '../../lib/app/ingest/enqueue';
import { planEventsPage } from '../../lib/app/ingest';
import { createPostgresDb } from '../../lib/db/postgres';
import type { Db } from '../../lib/db/port';
import { upsertProfiles, type ProfileUpsert } from '../../lib/repositories/profiles';
import { eventsPage } from '../ingest/helpers';
import { untilHeld } from '../reliability/support/faults';
import { tuning } from '../support/env';
import { useFreshDatabase } from '../support/database';

/**
 * Batches in flight bring the same new profiles (a page's events name its profiles, and the next
 * pages name many of them again). Each batch reads which of its profiles are stored, then copies
 * the others: the later of two COPYs of the same new profile waits for the other's commit and is
 * refused, and its profiles go again by a slower INSERT. With oneInserterPerAccount (the queue
 * consumer's batches of pages), a batch that finds new profiles copies them after the last such
 * batch of the account has committed, reading again first (lib/repositories/profiles.ts).
 */

/** The db, in every transaction and savepoint of it, with each statement's text (and each COPY's table) logged. */
function logged(db: Db, log: string[]): Db {
  const out: Db = {
    driver: db.driver,
    query: (text, params) => {
      log.push(text);
      return db.query(text, params);
    },
    transaction: (fn) => db.transaction((tx) => fn(logged(tx, log))),
  };
  const copyRows = db.copyRows?.bind(db);
  if (copyRows)
    out.copyRows = (table, columns, rows) => {
      log.push(`COPY ${table}`);
      return copyRows(table, columns, rows);
    };
  return out;
}

const LOCK = /pg_advisory_xact_lock\(\$1::int4/;
const REFUSED_COPY_RETRIED = /ON CONFLICT \(account_id, id\) DO NOTHING/;
const STORED_STATE_READ = /FROM klaviyo_profiles p\s+WHERE p\.account_id = \$1 AND p\.id = ANY/;
const LIMITS = { maxResources: 1000 };

function profilesOf(prefix: string, count: number): ProfileUpsert[] {
  return planEventsPage(eventsPage({ events: count, prefix, metrics: 1, profiles: count }), LIMITS).profiles;
}

async function storedIds(db: Db, prefix: string): Promise<string[]> {
  const rows = await db.query<{ id: string }>(
    `SELECT id FROM klaviyo_profiles WHERE account_id = 'default' AND id LIKE $1 ORDER BY id`,
    [`P${prefix}%`],
  );
  return rows.map((r) => r.id);
}

describe('new profiles, one writer of an account at a time', () => {
  const t = useFreshDatabase();

  it('makes a writer of the same new profiles wait for the holder, read again, and copy only the rest', async () => {
    const profiles = profilesOf('nw', 10);
    const holderProfiles = profiles.filter((_, i) => i % 2 === 0);
    const holder = createPostgresDb({ url: t.url, ...tuning, poolMax: 1 });
    const monitor = createPostgresDb({ url: t.url, ...tuning, poolMax: 1 });
    let release = () => undefined as void;
    const released = new Promise<void>((resolve) => (release = resolve));
    try {
      let holding = () => undefined as void;
      const held = new Promise<void>((resolve) => (holding = resolve));
      const holderDone = holder.transaction(async (tx) => {
        const result = await upsertProfiles(tx, 'default', holderProfiles, { oneInserterPerAccount: true });
        holding();
        await released;
        return result;
      });
      await held;
      const log: string[] = [];
      const writer = t.db.transaction((tx) =>
        upsertProfiles(logged(tx, log), 'default', profiles, { oneInserterPerAccount: true }),
      );
      await untilHeld(monitor);
      release();
      expect(await holderDone).toEqual({ written: 5 });
      // The holder's copies are the page's own: only the other five are the writer's to store.
      expect(await writer).toEqual({ written: 5 });

      if (t.db.driver === 'postgres') {
        // It waited for the lock, read again once the holder had committed, and copied five: no
        // COPY refused, no INSERT of the same profiles again.
        expect(log.filter((s) => LOCK.test(s))).toHaveLength(1);
        expect(log.filter((s) => STORED_STATE_READ.test(s))).toHaveLength(2);
        expect(log.filter((s) => s === 'COPY klaviyo_profiles')).toHaveLength(1);
        expect(log.some((s) => REFUSED_COPY_RETRIED.test(s))).toBe(false);
      } else {
        // Without COPY (the Data API) one statement inserts unless stored, waiting on the holder's rows.
        expect(log.some((s) => LOCK.test(s))).toBe(false);
      }
    } finally {
      release();
      await holder.close();
      await monitor.close();
    }
    expect(await storedIds(t.db, 'nw')).toEqual(profiles.map((p) => p.id).sort());
  });

  it('takes no lock for profiles that are all stored already', async () => {
    const profiles = profilesOf('ns', 6);
    await t.db.transaction((tx) => upsertProfiles(tx, 'default', profiles));
    const log: string[] = [];
    const written = await t.db.transaction((tx) =>
      upsertProfiles(logged(tx, log), 'default', profiles, { oneInserterPerAccount: true }),
    );
    expect(written).toEqual({ written: 0 });
    expect(log.filter((s) => STORED_STATE_READ.test(s))).toHaveLength(1);
    expect(log.some((s) => LOCK.test(s))).toBe(false);
  });

  describe('the consumer', () => {
    const acceptedAt = new Date();
    const context = (requestId: string) => ({ accountId: 'default', acceptedAt, requestId, maxMessageBytes: 8_192 });
    const received = (bodies: readonly string[], prefix: string): ReceivedMessage[] =>
      bodies.map((body, i) => ({ messageId: `${prefix}-${i}`, body }));

    it('takes the lock for a batch of pages that brings new profiles', async () => {
      const page = ingestMessages(
        'events-page',
        eventsPage({ events: 30, prefix: 'nc', metrics: 2, profiles: 6 }),
        context('nc'),
      );
      const log: string[] = [];
      const outcome = await consumeIngestMessages(logged(t.db, log), received(page.messages, 'nc'));
      expect(outcome.failed).toEqual([]);
      expect(log.filter((s) => LOCK.test(s))).toHaveLength(t.db.driver === 'postgres' ? 1 : 0);
      expect(await storedIds(t.db, 'nc')).toHaveLength(6);
    });

    it("takes none for a batch with Klaviyo's write shapes, whose writes after the profiles a waiting batch may hold", async () => {
      const page = ingestMessages(
        'events-page',
        eventsPage({ events: 30, prefix: 'nk', metrics: 2, profiles: 6 }),
        context('nk'),
      );
      const created = ingestMessages(
        'create-event',
        {
          data: {
            type: 'event',
            attributes: {
              properties: { source: 'test' },
              time: '2024-06-01T10:00:00Z',
              unique_id: 'nk-created',
              metric: { data: { type: 'metric', attributes: { name: 'No Lock' } } },
              profile: { data: { type: 'profile', attributes: { email: 'no-lock@example.com' } } },
            },
          },
        },
        context('nk-created'),
      );
      const log: string[] = [];
      const outcome = await consumeIngestMessages(
        logged(t.db, log),
        received([...page.messages, ...created.messages], 'nk'),
      );
      expect(outcome.failed).toEqual([]);
      expect(outcome.path).toBe('batch');
      expect(log.some((s) => LOCK.test(s))).toBe(false);
      // The page's new profiles were copied all the same.
      expect(await storedIds(t.db, 'nk')).toHaveLength(6);
    });
  });
});
