import { consumeIngestMessages } from '../../lib/app/ingest/consume';
import { planEventsPage } from '../../lib/app/ingest';
import type { Db } from '../../lib/db/port';
import { upsertProfiles, type ProfileUpsert } from '../../lib/repositories/profiles';
import { eventsPage } from '../ingest/helpers';
import { whileHeld } from '../reliability/support/faults';
import { useFreshDatabase } from '../support/database';
import { createEventBody, logged, receivedMessages } from './support';

/**
 * Batches in flight bring the same new profiles (a page's events name its profiles, and the next
 * pages name many of them again). Each batch reads which of its profiles are stored, then copies
 * the others: the later of two COPYs of the same new profile waits for the other's commit and is
 * refused, and its profiles go again by a slower INSERT. With oneInserterPerAccount (the queue
 * consumer's batches of pages), a batch that finds new profiles copies them after the last such
 * batch of the account has committed, reading again first (lib/repositories/profiles.ts).
 */

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
    const log: string[] = [];
    const [held, written] = await whileHeld(
      t.url,
      (tx) => upsertProfiles(tx, 'default', holderProfiles, { oneInserterPerAccount: true }),
      () =>
        t.db.transaction((tx) => upsertProfiles(logged(tx, log), 'default', profiles, { oneInserterPerAccount: true })),
    );
    expect(held).toEqual({ written: 5 });
    // The holder's copies are the page's own: only the other five are the writer's to store.
    expect(written).toEqual({ written: 5 });
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
    it('takes the lock for a batch of pages that brings new profiles', async () => {
      const messages = receivedMessages('nc', [
        ['events-page', eventsPage({ events: 30, prefix: 'nc', metrics: 2, profiles: 6 })],
      ]);
      const log: string[] = [];
      const outcome = await consumeIngestMessages(logged(t.db, log), messages);
      expect(outcome.failed).toEqual([]);
      expect(log.filter((s) => LOCK.test(s))).toHaveLength(t.db.driver === 'postgres' ? 1 : 0);
      expect(await storedIds(t.db, 'nc')).toHaveLength(6);
    });

    it("takes none for a batch with Klaviyo's write shapes, whose writes after the profiles a waiting batch may hold", async () => {
      const messages = receivedMessages('nk', [
        ['events-page', eventsPage({ events: 30, prefix: 'nk', metrics: 2, profiles: 6 })],
        ['create-event', createEventBody('nk-created', 'No Lock', 'no-lock@example.com')],
      ]);
      const log: string[] = [];
      const outcome = await consumeIngestMessages(logged(t.db, log), messages);
      expect(outcome.failed).toEqual([]);
      expect(outcome.path).toBe('batch');
      expect(log.some((s) => LOCK.test(s))).toBe(false);
      // The page's new profiles were copied all the same.
      expect(await storedIds(t.db, 'nk')).toHaveLength(6);
    });
  });
});
