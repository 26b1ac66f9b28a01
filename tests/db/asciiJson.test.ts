import { asciiJson, asciiJsonOf } from '../../lib/db/asciiJson';
import { freshDatabase, type TestDatabase } from '../support/database';

/**
 * JSON in ASCII (lib/db/asciiJson.ts), which the queue's messages and the events' COPY text carry:
 * the same value for JSON.parse and for PostgreSQL's jsonb as the plain JSON, whatever the characters.
 */
const VALUES: unknown[] = [
  { subject: 'Soldes — été 🎉', city: 'Łódź', name: 'Zoë', cjk: '日本語', separators: '\u2028\u2029' },
  { looksEscaped: 'd\\u00e9j\\u00e0 \\ud83c', backslash: '\\', quote: '"', controls: 'tab\there\nline' },
  ['🎉', { nested: ['é', null, 1.5e-7, true] }],
  'plain ASCII',
];

describe('JSON in ASCII', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await freshDatabase({ setEnv: false });
  });
  afterAll(async () => {
    await t.drop();
  });

  it('writes only ASCII, leaves ASCII JSON as it is, and parses back to the same value', () => {
    for (const value of VALUES) {
      const text = asciiJsonOf(value);
      expect(text).not.toMatch(/[\u0080-\uffff]/);
      expect(JSON.parse(text)).toEqual(value);
    }
    const ascii = JSON.stringify(VALUES[1]);
    expect(asciiJson(ascii)).toBe(ascii);
    // A character beyond the BMP as its two surrogates, as JSON spells it.
    expect(asciiJsonOf('🎉')).toBe('"\\ud83c\\udf89"');
  });

  it('is read by jsonb as the same value as the plain JSON', async () => {
    for (const value of VALUES) {
      const rows = await t.db.query<{ ascii: string; plain: string }>(
        'SELECT $1::jsonb::text AS ascii, $2::jsonb::text AS plain',
        [asciiJsonOf(value), JSON.stringify(value)],
      );
      expect(rows[0]?.ascii).toBe(rows[0]?.plain);
      expect(JSON.parse(rows[0]?.ascii ?? 'null')).toEqual(value);
    }
  });
});
