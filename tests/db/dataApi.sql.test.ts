import { runInNewContext } from 'node:vm';
import { classify, DataApiRequestError, parseDatabaseMessage } from '../../lib/db/dataApi/failures';
import { TransientDbError } from '../../lib/db/errors';
import { readMigrations } from '../../lib/db/migrate';
import { splitStatements, toNamedParameters } from '../../lib/db/dataApi/sql';
import { formatTimestamp, parseTimestamp, toSqlParameters } from '../../lib/db/dataApi/values';

/** The Data API driver's pure parts: placeholder translation, script splitting, values, error text. */
describe('Data API SQL text', () => {
  it.each([
    ['SELECT $1', 'SELECT :p1', 1],
    ['SELECT $1::jsonb, $2::timestamptz', 'SELECT :p1::jsonb, :p2::timestamptz', 2],
    ['SELECT $2, $10, $1', 'SELECT :p2, :p10, :p1', 10],
    ["SELECT '$1', $1", "SELECT '$1', :p1", 1],
    ["SELECT 'it''s $1', $1", "SELECT 'it''s $1', :p1", 1],
    ["SELECT E'\\'$1', $1", "SELECT E'\\'$1', :p1", 1],
    ['SELECT "col$1", "a""$1", $1', 'SELECT "col$1", "a""$1", :p1', 1],
    ['SELECT x$1 FROM t WHERE y = $1', 'SELECT x$1 FROM t WHERE y = :p1', 1],
    ['SELECT 1 -- $1\n, $2', 'SELECT 1 -- $1\n, :p2', 2],
    ['SELECT /* a /* nested $1 */ still $1 */ $2', 'SELECT /* a /* nested $1 */ still $1 */ :p2', 2],
    ['DO $$ BEGIN PERFORM $1; END $$; SELECT $1', 'DO $$ BEGIN PERFORM $1; END $$; SELECT :p1', 1],
    ['SELECT $fn$ $1 $fn$, $1', 'SELECT $fn$ $1 $fn$, :p1', 1],
    // An array slice: `:p1::p2` would read as a cast, so the second placeholder is set apart.
    ['SELECT arr[$1:$2] FROM t', 'SELECT arr[:p1: :p2] FROM t', 2],
  ])('translates %j', (input, expected, highest) => {
    expect(toNamedParameters(input)).toEqual({ sql: expected, highest });
  });

  it('leaves text without placeholders untouched', () => {
    expect(toNamedParameters("SELECT 'x' -- y\n")).toEqual({ sql: "SELECT 'x' -- y\n", highest: 0 });
  });

  it('splits a script on the semicolons of code only', () => {
    const script = `
      -- a comment; with a semicolon
      CREATE TABLE t (v text);
      INSERT INTO t VALUES ('a;b'), (E'c\\';d'), ($q$e;f$q$);
      /* block; comment */
      DO $body$
      BEGIN
        INSERT INTO t VALUES ('g');
      END
      $body$;
      SELECT "weird;name" FROM t;;
      -- trailing comment only
    `;
    expect(splitStatements(script)).toEqual([
      '-- a comment; with a semicolon\n      CREATE TABLE t (v text)',
      "INSERT INTO t VALUES ('a;b'), (E'c\\';d'), ($q$e;f$q$)",
      "/* block; comment */\n      DO $body$\n      BEGIN\n        INSERT INTO t VALUES ('g');\n      END\n      $body$",
      'SELECT "weird;name" FROM t',
    ]);
  });

  it('keeps a single statement whole and drops an empty script', () => {
    expect(splitStatements('SELECT 1')).toEqual(['SELECT 1']);
    expect(splitStatements('SELECT 1;')).toEqual(['SELECT 1']);
    expect(splitStatements('  -- nothing\n /* at all */ ;; ')).toEqual([]);
  });

  it('splits the schema migration into its statements, the DO block whole', () => {
    const [schema] = readMigrations();
    const statements = splitStatements(schema?.sql ?? '');
    const doBlock = statements.filter((s) => s.includes('DO $timescale$'));
    expect(doBlock).toHaveLength(1);
    expect(doBlock[0]).toMatch(/END\s+\$timescale\$$/);
    expect(
      statements.filter((s) => /^CREATE TABLE/m.test(s.replace(/^--.*$/gm, '').trim())).length,
    ).toBeGreaterThanOrEqual(5);
  });
});

describe('Data API values', () => {
  it('encodes every parameter type faithfully', () => {
    const params = toSqlParameters([
      'text',
      42,
      3_000_000_000,
      1.5,
      Number.NaN,
      true,
      null,
      9007199254740993n,
      12n,
      -(2n ** 70n),
      new Date('2024-02-29T23:59:58.123Z'),
    ]);
    expect(params).toEqual([
      { name: 'p1', value: { stringValue: 'text' } },
      { name: 'p2', value: { longValue: 42 } },
      { name: 'p3', value: { longValue: 3_000_000_000 } },
      { name: 'p4', value: { doubleValue: 1.5 } },
      { name: 'p5', value: { stringValue: 'NaN' } },
      { name: 'p6', value: { booleanValue: true } },
      { name: 'p7', value: { isNull: true } },
      { name: 'p8', value: { stringValue: '9007199254740993' }, typeHint: 'DECIMAL' },
      { name: 'p9', value: { longValue: 12 } },
      { name: 'p10', value: { stringValue: '-1180591620717411303424' }, typeHint: 'DECIMAL' },
      { name: 'p11', value: { stringValue: '2024-02-29 23:59:58.123' }, typeHint: 'TIMESTAMP' },
    ]);
  });

  it('refuses a Date it cannot send', () => {
    expect(() => formatTimestamp(new Date(Number.NaN))).toThrow(/Invalid Date/);
  });

  it('reads the timestamps the Data API returns as UTC', () => {
    expect(parseTimestamp('2024-01-02 03:04:05')).toEqual(new Date('2024-01-02T03:04:05Z'));
    expect(parseTimestamp('2024-01-02 03:04:05.123456')).toEqual(new Date('2024-01-02T03:04:05.123Z'));
    expect(parseTimestamp('2024-01-02 03:04:05.5')).toEqual(new Date('2024-01-02T03:04:05.500Z'));
    expect(parseTimestamp('2024-01-02')).toEqual(new Date('2024-01-02T00:00:00Z'));
    expect(parseTimestamp('0099-01-02 00:00:00')).toEqual(new Date('0099-01-02T00:00:00Z'));
    expect(parseTimestamp('2024-01-02 03:04:05+05:30')).toEqual(new Date('2024-01-01T21:34:05Z'));
    expect(Number.isNaN(parseTimestamp('infinity').getTime())).toBe(true);
  });
});

describe('Data API error text', () => {
  it('reads the SQLSTATE and the sections of PgJDBC messages', () => {
    expect(
      parseDatabaseMessage(
        'ERROR: duplicate key value violates unique constraint "t_pkey"\n  Detail: Key (id)=(1) already exists.; SQLState: 23505',
      ),
    ).toEqual({
      code: '23505',
      message: 'duplicate key value violates unique constraint "t_pkey"',
      detail: 'Key (id)=(1) already exists.',
    });
    expect(
      parseDatabaseMessage('ERROR: column "x" does not exist\n  Hint: Perhaps x1.\n  Position: 8; SQLState: 42703'),
    ).toEqual({
      code: '42703',
      message: 'column "x" does not exist',
      hint: 'Perhaps x1.',
      position: '8',
    });
  });

  it('finds no code where the message only mentions one', () => {
    expect(parseDatabaseMessage('Communications link failure')).toBeUndefined();
    expect(parseDatabaseMessage('ERROR: value "; SQLState: 23505" is odd\n  Detail: x')).toBeUndefined();
  });

  it('retries a network error the SDK wrapped without its code (a reset keep-alive socket)', () => {
    // What the SDK's retry middleware makes of an error from another realm: only the text survives.
    const wrapped = Object.assign(new Error('AWS SDK error wrapper for TimeoutError: read ECONNRESET'), {
      $metadata: {},
    });
    const verdict = classify(wrapped);
    expect(verdict.retryable).toBe(true);
    expect(verdict.error).toBeInstanceOf(TransientDbError);
    const reset = classify(
      Object.assign(new Error('AWS SDK error wrapper for Error: socket hang up ECONNRESET'), { $metadata: {} }),
    );
    expect(reset.retryable).toBe(true);
    // Another wrapped failure is not guessed to be transient.
    const other = classify(
      Object.assign(new Error('AWS SDK error wrapper for TypeError: x is not a function'), { $metadata: {} }),
    );
    expect(other).toMatchObject({ retryable: false });
    expect(other.error).toBeInstanceOf(DataApiRequestError);
  });

  it('reads an error made in another realm by its code, as one of this realm', () => {
    const foreign = runInNewContext("Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })") as unknown;
    expect(foreign instanceof Error).toBe(false);
    const verdict = classify(foreign);
    expect(verdict.retryable).toBe(true);
    expect(verdict.error).toBeInstanceOf(TransientDbError);
  });
});
