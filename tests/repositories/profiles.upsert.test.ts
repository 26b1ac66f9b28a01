import type { Db } from '../../lib/db/port';
import { epochMicros, upsertProfiles, type ProfileUpsert } from '../../lib/repositories/profiles';
import { useFreshDatabase } from '../support/database';
import { DEFAULT_ACCOUNT_ID } from '../../lib/config';

/** Which copies travel to the write statement: only those that may replace the stored row. */
function copy(id: string, updated: string | null, firstName: string): ProfileUpsert {
  return {
    id,
    isStub: false,
    email: null,
    phone_number: null,
    external_id: null,
    anonymous_id: null,
    first_name: firstName,
    last_name: null,
    organization: null,
    locale: null,
    title: null,
    image: null,
    location: null,
    properties: null,
    created: null,
    updated,
    lastEventDate: null,
    rawData: { type: 'profile', id, attributes: { first_name: firstName, updated } },
  };
}

function counting(db: Db, statements: string[]): Db {
  return {
    driver: db.driver,
    query: (text, params) => {
      statements.push(text);
      return db.query(text, params);
    },
    transaction: (fn) => db.transaction((tx) => fn(counting(tx, statements))),
  };
}

const writes = (statements: readonly string[]) =>
  statements.filter((s) => s.includes('INSERT INTO klaviyo_profiles')).length;

describe('upsertProfiles: what travels', () => {
  const t = useFreshDatabase({ setEnv: false });

  it('sends no write for copies equal to the stored ones to the microsecond, and sends one newer by a microsecond', async () => {
    const first = [copy('Pa', '2024-05-01T00:00:00.123456Z', 'one'), copy('Pb', '2024-05-01T02:00:00+02:00', 'one')];
    expect(await upsertProfiles(t.db, DEFAULT_ACCOUNT_ID, first)).toEqual({ written: 2 });

    const statements: string[] = [];
    // The same instants written another way (offset, trailing zeros): equal, so nothing to write.
    const same = [copy('Pa', '2024-05-01T01:00:00.123456+01:00', 'two'), copy('Pb', '2024-05-01T00:00:00.000Z', 'two')];
    expect(await upsertProfiles(counting(t.db, statements), DEFAULT_ACCOUNT_ID, same)).toEqual({ written: 0 });
    expect(writes(statements)).toBe(0);

    const newer = [copy('Pa', '2024-05-01T00:00:00.123457Z', 'three'), copy('Pb', '2024-05-01T00:00:00Z', 'three')];
    expect(await upsertProfiles(counting(t.db, statements), DEFAULT_ACCOUNT_ID, newer)).toEqual({ written: 1 });
    expect(writes(statements)).toBe(1);
    expect(
      await t.db.query(`SELECT id, first_name FROM klaviyo_profiles WHERE account_id = 'default' ORDER BY id`),
    ).toEqual([
      { id: 'Pa', first_name: 'three' },
      { id: 'Pb', first_name: 'one' },
    ]);
  });
  it('reads ISO instants in exact microseconds, and declines forms it cannot read exactly', () => {
    expect(epochMicros('1970-01-01T00:00:00Z')).toBe(0);
    expect(epochMicros('2024-05-01T01:00:00.123456+01:00')).toBe(Date.parse('2024-05-01T00:00:00Z') * 1000 + 123456);
    expect(epochMicros('2024-05-01T00:00:00.5z')).toBe(Date.parse('2024-05-01T00:00:00Z') * 1000 + 500000);
    expect(epochMicros('1969-12-31T23:59:59.25Z')).toBe(-750000);
    // PostgreSQL rounds a seventh digit; no seconds; an offset without a colon: the copy travels instead.
    expect(epochMicros('2024-05-01T00:00:00.1234567Z')).toBeUndefined();
    expect(epochMicros('2024-05-01T00:00Z')).toBeUndefined();
    expect(epochMicros('2024-05-01T00:00:00+0100')).toBeUndefined();
  });
});
