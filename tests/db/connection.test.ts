import { connect, createServer } from 'node:net';
import { freePort } from '../../lib/db/embedded';
import { createPostgresDb } from '../../lib/db/postgres';
import { isTransientDbError } from '../../lib/db/errors';
import { useFreshDatabase } from '../support/database';
import { tuning } from '../support/env';

describe('postgres.js driver', () => {
  const t = useFreshDatabase({ setEnv: false });

  it('converts types as the port promises', async () => {
    const [row] = await t.db.query(
      `SELECT 1::int4 AS i, 9007199254740993::int8 AS big, 12345678901234567890.123456::numeric AS num,
              true AS b, '2024-01-02T03:04:05Z'::timestamptz AS ts, '{"a":[1]}'::jsonb AS j, NULL::text AS n`,
    );
    expect(row).toEqual({
      i: 1,
      big: '9007199254740993',
      num: '12345678901234567890.123456',
      b: true,
      ts: new Date('2024-01-02T03:04:05Z'),
      j: { a: [1] },
      n: null,
    });
  });

  it('binds parameters with SQL casts, bigint included', async () => {
    const [row] = await t.db.query<{ v: string; j: unknown }>('SELECT $1::int8 AS v, $2::jsonb AS j', [
      9007199254740993n,
      JSON.stringify({ x: 'y' }),
    ]);
    expect(row).toEqual({ v: '9007199254740993', j: { x: 'y' } });
  });

  it('keeps the microseconds of an instant sent as text, and Dates still bind', async () => {
    const [row] = await t.db.query<{ micro: string; fromDate: string }>(
      `SELECT to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS micro,
              to_char($2::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS "fromDate"`,
      ['2024-01-02T03:04:05.123456Z', new Date('2024-01-02T03:04:05.789Z')],
    );
    expect(row).toEqual({ micro: '2024-01-02T03:04:05.123456', fromDate: '2024-01-02T03:04:05.789000' });
  });

  it('plans prepared statements for their parameters (no generic plans)', async () => {
    const [row] = await t.db.query<{ mode: string }>(`SELECT current_setting('plan_cache_mode') AS mode`);
    expect(row?.mode).toBe('force_custom_plan');
  });

  it('rolls a transaction back when its function throws', async () => {
    await t.db.query('CREATE TABLE IF NOT EXISTS tx_probe (id int)');
    await expect(
      t.db.transaction(async (tx) => {
        await tx.query('INSERT INTO tx_probe VALUES (1)');
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await t.db.query('SELECT id FROM tx_probe')).toEqual([]);
  });

  it('serves the next call after the server terminated its connection (pool of one, as in Lambda)', async () => {
    const db = createPostgresDb({ url: t.url, ...tuning, poolMax: 1 });
    try {
      const [first] = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await t.db.query('SELECT pg_terminate_backend($1::int)', [first?.pid ?? 0]);
      const [second] = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      expect(second?.pid).toEqual(expect.any(Number));
      expect(second?.pid).not.toBe(first?.pid);
      // A transaction after a termination works as well.
      const [third] = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await t.db.query('SELECT pg_terminate_backend($1::int)', [third?.pid ?? 0]);
      const inTx = await db.transaction(async (tx) => tx.query<{ one: number }>('SELECT 1 AS one'));
      expect(inTx).toEqual([{ one: 1 }]);
    } finally {
      await db.close();
    }
  });

  it('connects once the server is back, after refused connects (a restart, a failover)', async () => {
    const target = new URL(t.url);
    const port = await freePort();
    const db = createPostgresDb({
      url: Object.assign(new URL(t.url), { port: String(port) }).toString(),
      ...tuning,
      poolMax: 1,
      connectTimeoutSeconds: 3,
    });
    // Stands in for the restarted server: the same address, forwarding to the test server.
    const server = createServer((client) => {
      const upstream = connect(Number(target.port), target.hostname);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    try {
      // Several calls, each with its retries, while nothing listens: every connect is refused.
      for (let i = 0; i < 3; i += 1) {
        await expect(db.query('SELECT 1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      }
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
      expect(await db.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await db.close();
      server.close();
    }
  });

  it('classifies a statement timeout as transient', async () => {
    // Long enough that the driver's own start-up queries finish on a loaded machine; the sleep far longer.
    const db = createPostgresDb({ url: t.url, ...tuning, poolMax: 1, statementTimeoutMs: 1000 });
    try {
      const err = await db.query('SELECT pg_sleep(10)').catch((e: unknown) => e);
      expect(err).toMatchObject({ code: '57014' });
      expect(isTransientDbError(err)).toBe(true);
    } finally {
      await db.close();
    }
  });
});

describe('postgres.js driver: copyRows', () => {
  const t = useFreshDatabase({ setEnv: false });

  const awkward = [
    'tab\there',
    'line\nbreak',
    'cr\rlf\r\n',
    'back\\slash \\N \\.',
    '\\',
    '\\N',
    'ünïcødé ✓ 😀 \u2028',
    '\u0001\u001f',
    '',
    ' ',
  ];

  it('loads rows byte for byte, NULLs included, only inside a transaction', async () => {
    const db = createPostgresDb({ url: t.url, ...tuning, poolMax: 1 });
    try {
      expect(db.copyRows).toBeUndefined();
      const stored = await db.transaction(async (tx) => {
        await tx.query('CREATE TEMP TABLE copied (n int, v text) ON COMMIT DROP');
        await tx.copyRows?.(
          'copied',
          ['n', 'v'],
          [...awkward.map((v, i) => [String(i), v]), [String(awkward.length), null]],
        );
        return tx.query<{ n: number; v: string | null }>('SELECT n, v FROM copied ORDER BY n');
      });
      expect(stored).toEqual([...awkward.map((v, n) => ({ n, v })), { n: awkward.length, v: null }]);
    } finally {
      await db.close();
    }
  });

  it('takes rows made lazily, a chunk at a time, and abandons the COPY with its own reason when a row cannot be sent', async () => {
    const db = createPostgresDb({ url: t.url, ...tuning, poolMax: 1 });
    const rows = function* (count: number, unsendableAt?: number) {
      for (let n = 0; n < count; n += 1) yield [String(n), n === unsendableAt ? 'a\u0000b' : `row ${n}`];
    };
    try {
      await db.query('CREATE TABLE copied_lazily (n int PRIMARY KEY, v text)');
      // Several chunks, all stored in order.
      await db.transaction(async (tx) => tx.copyRows?.('copied_lazily', ['n', 'v'], rows(1234)));
      const stored = await db.query<{ n: string; last: string }>(
        `SELECT count(*) AS n, max(v) FILTER (WHERE n = 1233) AS last FROM copied_lazily`,
      );
      expect(stored).toEqual([{ n: '1234', last: 'row 1233' }]);
      // No rows, and counts at the edges of a piece of COPY text (100 rows): every row once.
      for (const count of [0, 1, 99, 100, 101, 200]) {
        await db.query('TRUNCATE copied_lazily');
        await db.transaction(async (tx) => tx.copyRows?.('copied_lazily', ['n', 'v'], rows(count)));
        expect(
          await db.query<{ n: string; top: string | null }>(
            'SELECT count(*) AS n, max(n)::text AS top FROM copied_lazily',
          ),
        ).toEqual([{ n: String(count), top: count === 0 ? null : String(count - 1) }]);
      }
      // A NUL past the first chunks: this process's error (not the server's 57014 for a cancelled
      // COPY, which would read as a passing failure), nothing of the COPY stored, the connection usable.
      await db.query('TRUNCATE copied_lazily');
      const refused = await db
        .transaction(async (tx) => tx.copyRows?.('copied_lazily', ['n', 'v'], rows(1234, 777)))
        .catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(Error);
      expect((refused as Error).message).toMatch(/NUL/);
      expect((refused as { code?: unknown }).code).toBeUndefined();
      expect(await db.query<{ n: string }>('SELECT count(*) AS n FROM copied_lazily')).toEqual([{ n: '0' }]);
    } finally {
      await db.close();
    }
  });

  it('offers no COPY without prepared statements (the RDS Proxy / PgBouncer setting, where COPY has not been tried)', async () => {
    const proxied = createPostgresDb({ url: t.url, ...tuning, poolMax: 1, prepare: false });
    const direct = createPostgresDb({ url: t.url, ...tuning, poolMax: 1, prepare: true });
    try {
      expect(await proxied.transaction(async (tx) => typeof tx.copyRows)).toBe('undefined');
      expect(await direct.transaction(async (tx) => typeof tx.copyRows)).toBe('function');
      expect(await direct.transaction(async (tx) => tx.transaction(async (sp) => typeof sp.copyRows))).toBe('function');
    } finally {
      await proxied.close();
      await direct.close();
    }
  });

  // The connection forces custom plans for its own statements; under that setting PostgreSQL would
  // also re-plan a foreign key check's internal query for every copied row. A row trigger sees the
  // setting the COPY runs with.
  it('copies with cached plans, and gives the transaction back with custom plans forced, also after a refused COPY', async () => {
    await t.db.query(`CREATE TABLE plan_seen (mode text)`);
    await t.db.query(`CREATE TABLE planned (n int CHECK (n > 0))`);
    await t.db.query(`CREATE FUNCTION note_plan_mode() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO plan_seen VALUES (current_setting('plan_cache_mode')); RETURN NEW; END $$`);
    await t.db.query(
      `CREATE TRIGGER note_plan_mode BEFORE INSERT ON planned FOR EACH ROW EXECUTE FUNCTION note_plan_mode()`,
    );
    const db = createPostgresDb({ url: t.url, ...tuning, poolMax: 1, prepare: true });
    const mode = async (q: { query: typeof db.query }) =>
      (await q.query<{ m: string }>(`SELECT current_setting('plan_cache_mode') AS m`))[0]?.m;
    try {
      const inside = await db.transaction(async (tx) => {
        await tx.copyRows?.('planned', ['n'], [['1'], ['2']]);
        const refused = await tx
          .transaction((sp) => sp.copyRows?.('planned', ['n'], [['3'], ['-1']]) ?? Promise.resolve())
          .catch((e: unknown) => e);
        expect(refused).toMatchObject({ code: '23514' });
        return mode(tx);
      });
      expect(inside).toBe('force_custom_plan');
      expect(await mode(db)).toBe('force_custom_plan');
      expect(await t.db.query<{ mode: string }>('SELECT mode FROM plan_seen')).toEqual([
        { mode: 'auto' },
        { mode: 'auto' },
      ]);
    } finally {
      await db.close();
    }
  });

  // A statement trigger refuses the COPY before any row: the server's error can arrive in the same
  // read as its go-ahead, so postgres.js destroys the stream in the tick it hands it over. Repeated,
  // because which read it lands in is up to the socket.
  it("rejects with the server's error when a statement trigger refuses the COPY before any row", async () => {
    await t.db.query(`CREATE TABLE guarded (n int)`);
    await t.db.query(`CREATE FUNCTION refuse_copy() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '40001'; END $$`);
    await t.db.query(
      `CREATE TRIGGER refuse_copy BEFORE INSERT ON guarded FOR EACH STATEMENT EXECUTE FUNCTION refuse_copy()`,
    );
    const db = createPostgresDb({ url: t.url, ...tuning, poolMax: 1 });
    try {
      for (let attempt = 0; attempt < 30; attempt += 1) {
        const err = await db
          .transaction((tx) => tx.copyRows?.('guarded', ['n'], [['1'], ['2']]) ?? Promise.resolve())
          .catch((e: unknown) => e);
        expect(err).toMatchObject({ code: '40001' });
      }
      expect(await db.query<{ n: string }>('SELECT count(*) AS n FROM guarded')).toEqual([{ n: '0' }]);
    } finally {
      await db.close();
    }
  });

  it('refuses NUL and unpaired surrogates before sending anything', async () => {
    const db = createPostgresDb({ url: t.url, ...tuning, poolMax: 1 });
    try {
      for (const bad of ['a\u0000b', 'x\ud800', '\udc00y']) {
        const err = await db
          .transaction(async (tx) => {
            await tx.query('CREATE TEMP TABLE refused (v text) ON COMMIT DROP');
            await tx.copyRows?.('refused', ['v'], [['fine'], [bad]]);
          })
          .catch((e: unknown) => e);
        expect(String(err)).toMatch(/NUL or an unpaired UTF-16 surrogate/);
      }
    } finally {
      await db.close();
    }
  });

  // postgres.js never settles a COPY's writable when the server refuses the data after the last
  // byte (porsager/postgres#1173); copyRows must still reject, with the COPY's own SQLSTATE, whether
  // the server refuses the last row or the first of several megabytes still being sent.
  it.each([
    ['the last row of a small load', () => [['1'], ['2'], ['three']]],
    [
      'the first row of a large load',
      () => [['one'], ...Array.from({ length: 200_000 }, (_, i) => [String(i).padStart(40, '0')])],
    ],
  ])(
    "rejects with the server's error when it refuses %s, and the connection serves the next call",
    async (_label, rows) => {
      const db = createPostgresDb({ url: t.url, ...tuning, poolMax: 1 });
      try {
        const err = await db
          .transaction(async (tx) => {
            await tx.query('CREATE TEMP TABLE typed (n numeric) ON COMMIT DROP');
            await tx.copyRows?.('typed', ['n'], rows());
            return 'loaded';
          })
          .catch((e: unknown) => e);
        expect(err).toMatchObject({ code: '22P02' });
        expect(await db.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
      } finally {
        await db.close();
      }
    },
  );
});
