import {
  BatchExecuteStatementCommand,
  BeginTransactionCommand,
  ExecuteStatementCommand,
  RDSDataClient,
  RollbackTransactionCommand,
} from '@aws-sdk/client-rds-data';
import { loadConfig } from '../../lib/config';
import { createDb } from '../../lib/db';
import {
  createDataApiDb,
  DataApiDatabaseError,
  DataApiRequestError,
  DataApiRequestTooLargeError,
  DataApiResultTooLargeError,
} from '../../lib/db/dataApi';
import { isTransientDbError, TransientDbError } from '../../lib/db/errors';
import type { ClosableDb } from '../../lib/db/port';
import { createPostgresDb } from '../../lib/db/postgres';
import { callCounts, clearFaults, FAULTS, injectFaults, startDataApiServer } from '../support/dataApiServer';
import { adminUrl, dataApiDb, freshDatabase, type TestDatabase } from '../support/database';
import { DATA_API_TEST, dataApiEnv, TEST_ENV, tuning } from '../support/env';

/**
 * The RDS Data API driver against the local endpoint over the real PostgreSQL, each result checked
 * against explicit values and against postgres.js on the same database.
 */
describe('RDS Data API driver', () => {
  let t: TestDatabase;
  let api: ClosableDb;
  let pg: ClosableDb;
  let endpoint: string;

  beforeAll(async () => {
    t = await freshDatabase({ setEnv: false });
    endpoint = process.env[TEST_ENV.dataApiEndpoint] as string;
    api = dataApiDb(t.name, 2_000);
    pg = createPostgresDb({ url: t.url, ...tuning });
  });
  afterEach(async () => {
    await clearFaults(endpoint, t.name);
  });
  afterAll(async () => {
    await api.close();
    await pg.close();
    await t.drop();
  });

  const calls = async (operation: string) => (await callCounts(endpoint, t.name))[operation] ?? 0;

  describe('result types', () => {
    const TYPES_SQL = `
      SELECT 32767::int2 AS i2, (-2147483648)::int4 AS i4, 9007199254740993::int8 AS big, (-9223372036854775808)::int8 AS min8,
             12345678901234567890.123456789012::numeric AS num, 0.1::numeric(10,4) AS money_like,
             1.5::float4 AS f4, 0.1::float8 AS f8, 'NaN'::float8 AS nan,
             true AS yes, false AS no,
             '2024-01-02T03:04:05.678901+05:30'::timestamptz AS tstz,
             '{"a":[1,"x",null],"b":{"c":true},"n":12345678901234567890}'::jsonb AS doc,
             '"just text"'::jsonb AS jtext, '[1,2]'::json AS jarr,
             '8d3c6ad2-5f0e-4c4f-9d0f-8f5f1c2b3a41'::uuid AS id,
             'héllo ✓ "quoted"' AS txt, ''::text AS empty, '1 day 02:00:00'::interval AS span,
             ARRAY[1,2,NULL]::int4[] AS ints, ARRAY['9007199254740993']::int8[] AS bigs,
             ARRAY['a,b', 'c"d', NULL, 'NULL', '']::text[] AS texts, ARRAY[1.10, 2]::numeric[] AS nums,
             ARRAY[true, false]::bool[] AS flags, ARRAY['2024-05-06 07:08:09+00']::timestamptz[] AS times,
             '\\xdeadbeef'::bytea AS bytes, pg_sleep(0) AS nothing,
             NULL::int8 AS null_big, NULL::timestamptz AS null_ts, NULL::jsonb AS null_doc, NULL::text AS null_text`;

    it('decodes every type as the port promises', async () => {
      const [row] = await api.query(TYPES_SQL);
      expect(row).toEqual({
        i2: 32767,
        i4: -2147483648,
        big: '9007199254740993',
        min8: '-9223372036854775808',
        num: '12345678901234567890.123456789012',
        money_like: '0.1000',
        f4: 1.5,
        f8: 0.1,
        nan: Number.NaN,
        yes: true,
        no: false,
        tstz: new Date('2024-01-01T21:34:05.678Z'),
        doc: { a: [1, 'x', null], b: { c: true }, n: 12345678901234567000 },
        jtext: 'just text',
        jarr: [1, 2],
        id: '8d3c6ad2-5f0e-4c4f-9d0f-8f5f1c2b3a41',
        txt: 'héllo ✓ "quoted"',
        empty: '',
        span: '1 day 02:00:00',
        ints: [1, 2, null],
        // Array elements come as JSON numbers: beyond 2^53 they are rounded by the SDK, as from AWS.
        bigs: ['9007199254740992'],
        texts: ['a,b', 'c"d', null, 'NULL', ''],
        nums: ['1.10', '2'],
        flags: [true, false],
        times: [new Date('2024-05-06T07:08:09Z')],
        bytes: Buffer.from('deadbeef', 'hex'),
        nothing: '',
        null_big: null,
        null_ts: null,
        null_doc: null,
        null_text: null,
      });
    });

    it('matches postgres.js on the same query, but for arrays with NULL elements or int8 elements beyond 2^53', async () => {
      const [fromApi] = await api.query(TYPES_SQL);
      const [fromPg] = await pg.query(TYPES_SQL);
      // postgres.js 3.4 reads a NULL element of int4[] as NaN and of text[] as the string 'NULL'.
      const apart = { bigs: null, ints: null, texts: null };
      expect({ ...fromApi, ...apart }).toEqual({ ...fromPg, ...apart });
      expect(fromPg).toMatchObject({ ints: [1, 2, Number.NaN], texts: ['a,b', 'c"d', 'NULL', 'NULL', ''] });
    });

    it('returns timestamptz in UTC whatever the session time zone', async () => {
      const rows = await api.transaction(async (tx) => {
        await tx.query(`SET LOCAL TIME ZONE 'Asia/Kolkata'`);
        return tx.query<{ ts: Date; local: string }>(
          `SELECT '2024-03-10T05:30:00Z'::timestamptz AS ts, '2024-03-10T05:30:00Z'::timestamptz::text AS local`,
        );
      });
      expect(rows).toEqual([{ ts: new Date('2024-03-10T05:30:00Z'), local: '2024-03-10 11:00:00+05:30' }]);
    });

    it('returns rows as objects for tables, and nothing for statements without rows', async () => {
      await api.query('CREATE TABLE typed_rows (id int8 PRIMARY KEY, at timestamptz, amount numeric, tags jsonb)');
      expect(
        await api.query(`INSERT INTO typed_rows VALUES (1, '2024-01-01Z', 10.50, '["a"]'), (2, NULL, NULL, NULL)`),
      ).toEqual([]);
      expect(await api.query('SELECT id, at, amount, tags FROM typed_rows ORDER BY id')).toEqual([
        { id: '1', at: new Date('2024-01-01T00:00:00Z'), amount: '10.50', tags: ['a'] },
        { id: '2', at: null, amount: null, tags: null },
      ]);
      expect(await api.query('SELECT id FROM typed_rows WHERE false')).toEqual([]);
    });
  });

  describe('parameters', () => {
    it('binds every parameter type faithfully', async () => {
      const at = new Date('2024-02-29T23:59:58.123Z');
      const sql = `SELECT $1::text AS s, $2::int4 AS small, $3::int8 AS beyond_int4, $4::int8 AS beyond_2_53,
                          $5::numeric AS beyond_int8, $6::float8 AS f, $7::bool AS b, $8::text IS NULL AS was_null,
                          $9::timestamptz AS at, $10::jsonb AS doc, $11::uuid AS id, $12::numeric AS exact,
                          $13::float8 AS not_a_number, $14::int8 AS negative`;
      const params = [
        "it's $1 -- not a comment",
        7,
        3_000_000_000,
        9007199254740993n,
        -(2n ** 70n),
        1.25,
        false,
        null,
        at,
        JSON.stringify({ k: ['v', 1] }),
        '8d3c6ad2-5f0e-4c4f-9d0f-8f5f1c2b3a41',
        '123456789012345678901234567890.000000000000000001',
        Number.NaN,
        -5n,
      ] as const;
      const expected = {
        s: "it's $1 -- not a comment",
        small: 7,
        beyond_int4: '3000000000',
        beyond_2_53: '9007199254740993',
        beyond_int8: '-1180591620717411303424',
        f: 1.25,
        b: false,
        was_null: true,
        at,
        doc: { k: ['v', 1] },
        id: '8d3c6ad2-5f0e-4c4f-9d0f-8f5f1c2b3a41',
        exact: '123456789012345678901234567890.000000000000000001',
        not_a_number: Number.NaN,
        negative: '-5',
      };
      expect(await api.query(sql, params)).toEqual([expected]);
      expect(await pg.query(sql, params)).toEqual([expected]);
    });

    it('compares parameters with columns without casts where the types meet', async () => {
      await api.query('CREATE TABLE param_cmp (id int4, big int8, amount numeric, at timestamptz)');
      await api.query(`INSERT INTO param_cmp VALUES (1, 9007199254740993, 2.5, '2024-01-01T00:00:00Z')`);
      const rows = await api.query<{ id: number }>(
        'SELECT id FROM param_cmp WHERE id = $1 AND big = $2 AND amount > $3 AND at < $4',
        [1, 9007199254740993n, 2, new Date('2024-01-01T00:00:01Z')],
      );
      expect(rows).toEqual([{ id: 1 }]);
    });

    it('sends strings as varchar, as the Data API does, so a timestamp compared without a cast fails', async () => {
      await api.query('CREATE TABLE IF NOT EXISTS strict_types (at timestamptz)');
      const err = await api
        .query('SELECT 1 FROM strict_types WHERE at > $1', ['2024-01-01T00:00:00Z'])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DataApiDatabaseError);
      expect(err).toMatchObject({ code: '42883' });
      // With the cast the port asks for, it works.
      expect(
        await api.query('SELECT 1 AS one FROM strict_types WHERE at > $1::timestamptz', ['2024-01-01T00:00:00Z']),
      ).toEqual([]);
    });

    it('reads a placeholder inside a string as text', async () => {
      expect(await api.query(`SELECT '$1' AS s, $1::int AS n, "n$1" FROM (SELECT 3 AS "n$1") q`, [5])).toEqual([
        { s: '$1', n: 5, n$1: 3 },
      ]);
    });

    it('expands a JSON parameter with jsonb_to_recordset, the bulk path of both drivers', async () => {
      const rows = Array.from({ length: 2_000 }, (_, i) => ({ id: i, label: `row ${i}`, amount: `${i}.01` }));
      const out = await api.query<{ n: string; total: string }>(
        `SELECT count(*) AS n, sum(amount) AS total FROM jsonb_to_recordset($1::jsonb) AS r(id int, label text, amount numeric)`,
        [JSON.stringify(rows)],
      );
      expect(out).toEqual([{ n: '2000', total: '1999020.00' }]);
    });
  });

  describe('transactions', () => {
    beforeAll(async () => {
      await api.query('CREATE TABLE tx_rows (id int PRIMARY KEY, note text)');
    });
    beforeEach(async () => {
      await api.query('TRUNCATE tx_rows');
    });
    const ids = async () => (await pg.query<{ id: number }>('SELECT id FROM tx_rows ORDER BY id')).map((r) => r.id);

    it('commits when the function resolves', async () => {
      const result = await api.transaction(async (tx) => {
        await tx.query('INSERT INTO tx_rows VALUES (1), (2)');
        // Inside, the transaction sees its own rows; outside, nobody does yet.
        expect(await tx.query('SELECT count(*) AS n FROM tx_rows')).toEqual([{ n: '2' }]);
        expect(await pg.query('SELECT count(*) AS n FROM tx_rows')).toEqual([{ n: '0' }]);
        return 'done';
      });
      expect(result).toBe('done');
      expect(await ids()).toEqual([1, 2]);
    });

    it('rolls back when the function throws', async () => {
      await expect(
        api.transaction(async (tx) => {
          await tx.query('INSERT INTO tx_rows VALUES (1)');
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(await ids()).toEqual([]);
    });

    it('turns a nested transaction into a savepoint', async () => {
      await api.transaction(async (tx) => {
        await tx.query('INSERT INTO tx_rows VALUES (1)');
        await expect(
          tx.transaction(async (inner) => {
            await inner.query('INSERT INTO tx_rows VALUES (2)');
            throw new Error('inner failure');
          }),
        ).rejects.toThrow('inner failure');
        await tx.transaction(async (inner) => {
          await inner.query('INSERT INTO tx_rows VALUES (3)');
          // A failed statement in a savepoint is rolled back alone, the transaction goes on.
          await expect(
            inner.transaction((deeper) => deeper.query('INSERT INTO tx_rows VALUES (3)')),
          ).rejects.toMatchObject({
            code: '23505',
          });
        });
      });
      expect(await ids()).toEqual([1, 3]);
    });

    it('serialises concurrent statements of one transaction (the Data API refuses overlapping calls)', async () => {
      await api.transaction(async (tx) => {
        await Promise.all(Array.from({ length: 10 }, (_, i) => tx.query('INSERT INTO tx_rows VALUES ($1)', [i + 1])));
      });
      expect(await ids()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    });

    it('reports a PostgreSQL error by SQLSTATE, with its detail, and rolls back', async () => {
      await api.query('INSERT INTO tx_rows VALUES (1)');
      const err = await api
        .transaction(async (tx) => {
          await tx.query('INSERT INTO tx_rows VALUES (2)');
          await tx.query('INSERT INTO tx_rows VALUES (1)');
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DataApiDatabaseError);
      expect(err).toMatchObject({
        code: '23505',
        message: 'duplicate key value violates unique constraint "tx_rows_pkey"',
        detail: 'Key (id)=(1) already exists.',
      });
      expect(isTransientDbError(err)).toBe(false);
      expect(await ids()).toEqual([1]);
    });

    it('refuses statements after the transaction ended', async () => {
      let leaked: ClosableDb['query'] | undefined;
      await api.transaction(async (tx) => {
        leaked = tx.query.bind(tx);
      });
      await expect(leaked?.('SELECT 1')).rejects.toThrow(/already ended/);
    });
  });

  describe('scripts', () => {
    it('runs a parameterless script statement by statement, dollar-quoted bodies whole', async () => {
      const rows = await api.query(`
        CREATE TABLE script_rows (v text);
        INSERT INTO script_rows VALUES ('a;b');
        DO $$ BEGIN INSERT INTO script_rows VALUES ('from; do'); END $$;
        SELECT v FROM script_rows ORDER BY v;
      `);
      expect(rows).toEqual([{ v: 'a;b' }, { v: 'from; do' }]);
    });

    it('runs a script atomically: a failing statement leaves nothing of the earlier ones', async () => {
      await expect(api.query('CREATE TABLE half_done (id int); SELECT no_such_function();')).rejects.toMatchObject({
        code: '42883',
      });
      expect(await pg.query(`SELECT 1 FROM pg_tables WHERE tablename = 'half_done'`)).toEqual([]);
    });

    it('refuses several statements with parameters, as both PostgreSQL and the Data API do', async () => {
      const err = await api.query('SELECT $1::int; SELECT 2', [1]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DataApiRequestError);
      expect(err).toMatchObject({
        code: 'ValidationException',
        message: expect.stringMatching(/Multistatements aren't supported/),
      });
    });

    it('treats a script of nothing but comments as no statement', async () => {
      expect(await api.query('-- nothing\n/* at all */')).toEqual([]);
    });
  });

  describe('transient failures', () => {
    it('retries throttling and answers once the service accepts', async () => {
      const before = await calls('ExecuteStatement');
      await injectFaults(endpoint, t.name, FAULTS.throttling, FAULTS.throttling);
      expect(await api.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
      expect((await calls('ExecuteStatement')) - before).toBe(3);
    });

    it('retries a communications link failure and a cluster resuming from a pause', async () => {
      await injectFaults(
        endpoint,
        t.name,
        FAULTS.communicationsLinkFailure,
        FAULTS.resuming,
        FAULTS.serviceUnavailable,
        FAULTS.databaseUnavailable,
      );
      expect(await api.query('SELECT 2 AS two')).toEqual([{ two: 2 }]);
    });

    it('retries a whole transaction from BeginTransaction, so a unit of work is never half applied', async () => {
      await api.query('CREATE TABLE IF NOT EXISTS retried (id int PRIMARY KEY)');
      const begins = await calls('BeginTransaction');
      await injectFaults(
        endpoint,
        t.name,
        { ...FAULTS.resuming, operation: 'BeginTransaction' },
        // The second statement of the first attempt fails: its first statement must be rolled back.
        { ...FAULTS.communicationsLinkFailure, operation: 'ExecuteStatement' },
      );
      let attempts = 0;
      await api.transaction(async (tx) => {
        attempts += 1;
        await tx.query('INSERT INTO retried VALUES (1)');
        if (attempts === 1) await tx.query('SELECT 1');
      });
      expect((await calls('BeginTransaction')) - begins).toBe(3);
      expect(attempts).toBe(2);
      expect(await pg.query('SELECT id FROM retried')).toEqual([{ id: 1 }]);
    });

    it('gives up after the time budget with a TransientDbError (503 with Retry-After)', async () => {
      const quick = dataApiDb(t.name, 150);
      try {
        await injectFaults(endpoint, t.name, ...Array.from({ length: 50 }, () => FAULTS.throttling));
        const err = await quick.query('SELECT 1').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(TransientDbError);
        expect(err).toMatchObject({ code: 'ThrottlingException' });
        expect(isTransientDbError(err)).toBe(true);
      } finally {
        await quick.close();
      }
    });

    it('answers a statement timeout as transient at once, without running the statement again', async () => {
      const before = await calls('ExecuteStatement');
      await injectFaults(endpoint, t.name, FAULTS.statementTimeout);
      const err = await api.query('SELECT 1').catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'TransientDbError', code: 'StatementTimeoutException' });
      expect((await calls('ExecuteStatement')) - before).toBe(1);
    });

    it('reads the SQLSTATE of a Serverless v1 BadRequestException, and does not retry a serialization failure', async () => {
      const before = await calls('ExecuteStatement');
      await injectFaults(endpoint, t.name, {
        status: 400,
        type: 'BadRequestException',
        message: 'ERROR: could not serialize access due to concurrent update; SQLState: 40001',
      });
      const err = await api.query('SELECT 1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DataApiDatabaseError);
      expect(err).toMatchObject({ code: '40001', message: 'could not serialize access due to concurrent update' });
      expect(isTransientDbError(err)).toBe(true);
      expect((await calls('ExecuteStatement')) - before).toBe(1);
    });

    it('does not retry what will not pass (a refused request)', async () => {
      await injectFaults(endpoint, t.name, { status: 403, type: 'AccessDeniedException', message: 'not allowed' });
      const err = await api.query('SELECT 1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DataApiRequestError);
      expect(err).toMatchObject({ code: 'AccessDeniedException' });
      expect(isTransientDbError(err)).toBe(false);
    });

    it("stops a statement at the service's call timeout", async () => {
      const server = await startDataApiServer({ adminUrl: adminUrl(), callTimeoutMs: 300 });
      const slow = createDataApiDb({
        ...DATA_API_TEST,
        database: t.name,
        endpoint: server.endpoint,
        retryBudgetMs: 1_000,
      });
      try {
        const err = await slow.query('SELECT pg_sleep(5)').catch((e: unknown) => e);
        expect(err).toMatchObject({ name: 'TransientDbError', code: 'StatementTimeoutException' });
        // The statement was cancelled, not left running (the cancel request itself takes a moment).
        let running: unknown[] = [];
        for (let i = 0; i < 100; i += 1) {
          running = await pg.query(
            `SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)' AND state = 'active'`,
          );
          if (running.length === 0) break;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect(running).toEqual([]);
      } finally {
        await slow.close();
        await server.stop();
      }
    });
  });

  describe('size limits', () => {
    it('fails clearly on a result over 1 MiB instead of returning part of it', async () => {
      const err = await api
        .query(`SELECT repeat('x', 1000) AS filler FROM generate_series(1, 1100)`)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DataApiResultTooLargeError);
      expect((err as Error).message).toMatch(/1 MiB.*Page the query/);
      // A page under the limit passes whole.
      const page = await api.query(`SELECT repeat('x', 1000) AS filler FROM generate_series(1, 900)`);
      expect(page).toHaveLength(900);
    });

    it('refuses to send a request over 4 MiB', async () => {
      const before = await calls('ExecuteStatement');
      const err = await api.query('SELECT length($1) AS n', ['y'.repeat(4 * 1024 * 1024)]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DataApiRequestTooLargeError);
      expect(await calls('ExecuteStatement')).toBe(before);
    });
  });

  describe('configuration', () => {
    it('is chosen by DB_DRIVER=data-api, with a retry budget below the function timeout', async () => {
      const env = dataApiEnv(t.name);
      const cfg = loadConfig(env);
      expect(cfg.db).toEqual({
        driver: 'data-api',
        clusterArn: DATA_API_TEST.clusterArn,
        secretArn: DATA_API_TEST.secretArn,
        database: t.name,
        endpoint,
        region: 'us-east-1',
        retryBudgetMs: 10_000,
      });
      expect(loadConfig({ ...env, DB_DATA_API_RETRY_BUDGET_MS: '2500' }).db).toMatchObject({ retryBudgetMs: 2500 });
      const db = createDb(cfg.db);
      try {
        expect(db.driver).toBe('data-api');
        expect(await db.query('SELECT current_database() AS name')).toEqual([{ name: t.name }]);
      } finally {
        await db.close();
      }
    });
  });
});

/** The local endpoint itself, through the SDK: what the driver relies on must be what AWS does. */
describe('local Data API endpoint', () => {
  let t: TestDatabase;
  let client: RDSDataClient;
  const target = () => ({
    resourceArn: DATA_API_TEST.clusterArn,
    secretArn: DATA_API_TEST.secretArn,
    database: t.name,
  });

  beforeAll(async () => {
    t = await freshDatabase({ setEnv: false });
    const env = dataApiEnv(t.name);
    client = new RDSDataClient({
      region: 'us-east-1',
      endpoint: env.DB_DATA_API_ENDPOINT,
      credentials: { accessKeyId: 'AKIDLOCALTEST', secretAccessKey: 'local-test-secret' },
      maxAttempts: 1,
    });
  });
  afterAll(async () => {
    client.destroy();
    await t.drop();
  });

  it('returns int8 as a JSON number by default, which the SDK rounds beyond 2^53 (hence longReturnType STRING)', async () => {
    const sql = 'SELECT 9007199254740993::int8 AS big, 7::int4 AS small';
    const plain = await client.send(new ExecuteStatementCommand({ ...target(), sql, includeResultMetadata: true }));
    expect(plain.records).toEqual([[{ longValue: 9007199254740992 }, { longValue: 7 }]]);
    expect(plain.columnMetadata?.map((c) => [c.name, c.typeName])).toEqual([
      ['big', 'int8'],
      ['small', 'int4'],
    ]);
    const exact = await client.send(
      new ExecuteStatementCommand({ ...target(), sql, resultSetOptions: { longReturnType: 'STRING' } }),
    );
    expect(exact.records).toEqual([[{ stringValue: '9007199254740993' }, { stringValue: '7' }]]);
  });

  it('binds longValue as bigint without truncating to int', async () => {
    const out = await client.send(
      new ExecuteStatementCommand({
        ...target(),
        sql: 'SELECT (:v + 1)::text AS v, pg_typeof(:v)::text AS t',
        parameters: [{ name: 'v', value: { longValue: 2 ** 40 } }],
      }),
    );
    expect(out.records).toEqual([[{ stringValue: String(2 ** 40 + 1) }, { stringValue: 'bigint' }]]);
  });

  it('validates the TIMESTAMP typeHint format as the service does', async () => {
    const err = await client
      .send(
        new ExecuteStatementCommand({
          ...target(),
          sql: 'SELECT :at::timestamptz',
          parameters: [{ name: 'at', value: { stringValue: '2024-01-01T00:00:00Z' }, typeHint: 'TIMESTAMP' }],
        }),
      )
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'BadRequestException', message: expect.stringMatching(/Timestamp format/) });
  });

  it('refuses array parameters and a second concurrent call on one transaction', async () => {
    await expect(
      client.send(
        new ExecuteStatementCommand({
          ...target(),
          sql: 'SELECT :a',
          parameters: [{ name: 'a', value: { arrayValue: { longValues: [1, 2] } } }],
        }),
      ),
    ).rejects.toMatchObject({ name: 'BadRequestException' });
    const { transactionId } = await client.send(new BeginTransactionCommand(target()));
    const results = await Promise.allSettled([
      client.send(new ExecuteStatementCommand({ ...target(), transactionId, sql: 'SELECT pg_sleep(0.3)' })),
      client.send(new ExecuteStatementCommand({ ...target(), transactionId, sql: 'SELECT 1' })),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toMatchObject({
      name: 'DatabaseErrorException',
      message: 'Transaction is still running a query',
    });
    await client.send(
      new RollbackTransactionCommand({
        resourceArn: DATA_API_TEST.clusterArn,
        secretArn: DATA_API_TEST.secretArn,
        transactionId,
      }),
    );
  });

  it('runs BatchExecuteStatement over parameter sets, all or nothing', async () => {
    await client.send(
      new ExecuteStatementCommand({ ...target(), sql: 'CREATE TABLE batch_rows (id int PRIMARY KEY)' }),
    );
    const sets = [1, 2, 3].map((id) => [{ name: 'id', value: { longValue: id } }]);
    const out = await client.send(
      new BatchExecuteStatementCommand({
        ...target(),
        sql: 'INSERT INTO batch_rows VALUES (:id)',
        parameterSets: sets,
      }),
    );
    expect(out.updateResults).toHaveLength(3);
    await expect(
      client.send(
        new BatchExecuteStatementCommand({
          ...target(),
          sql: 'INSERT INTO batch_rows VALUES (:id)',
          parameterSets: [[{ name: 'id', value: { longValue: 4 } }], sets[0] ?? []],
        }),
      ),
    ).rejects.toMatchObject({ name: 'DatabaseErrorException', message: expect.stringMatching(/SQLState: 23505$/) });
    const rows = await client.send(
      new ExecuteStatementCommand({ ...target(), sql: 'SELECT count(*) AS n FROM batch_rows' }),
    );
    expect(rows.records).toEqual([[{ longValue: 3 }]]);
  });

  it('refuses money and multidimensional arrays as the service does', async () => {
    for (const sql of [`SELECT 1::money AS m`, `SELECT ARRAY[[1,2],[3,4]] AS a`]) {
      await expect(client.send(new ExecuteStatementCommand({ ...target(), sql }))).rejects.toMatchObject({
        name: 'UnsupportedResultException',
      });
    }
  });
});
