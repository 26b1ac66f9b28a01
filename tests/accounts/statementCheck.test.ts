import { checkStatement, loadParser } from './support/statementCheck';

/**
 * The checker itself, on statements written to pass and to fail: the statement test
 * (statements.test.ts) is only as good as this rule.
 */
const TABLES = new Set(['klaviyo_events', 'klaviyo_metrics', 'klaviyo_aggregate_dirty', 'klaviyo_aggregated_metrics']);
const problemsOf = (sql: string) => checkStatement(sql, TABLES).problems;

beforeAll(() => loadParser());

describe('statements bound to one account pass', () => {
  it.each([
    ['a filter', 'SELECT id FROM klaviyo_events WHERE account_id = $1 AND metric_id = $2'],
    ['a qualified filter with a cast', 'SELECT e.id FROM klaviyo_events e WHERE e.account_id = $1::text'],
    ['a constant (pg_stat_statements keeps $n for it)', "SELECT 1 FROM klaviyo_metrics WHERE account_id = 'a'"],
    [
      'a join within the account',
      `SELECT e.id, m.name FROM klaviyo_events e JOIN klaviyo_metrics m
         ON m.account_id = e.account_id AND m.id = e.metric_id WHERE e.account_id = $1`,
    ],
    [
      'a join USING (account_id, ...)',
      `SELECT e.id FROM klaviyo_events e JOIN klaviyo_metrics m USING (account_id)
         WHERE e.account_id = $1 AND m.id = e.metric_id`,
    ],
    [
      'both sides filtered on the same parameter',
      `SELECT e.id FROM klaviyo_events e, klaviyo_metrics m
         WHERE e.account_id = $1 AND m.account_id = $1 AND m.id = e.metric_id`,
    ],
    ['a row comparison', 'SELECT 1 FROM klaviyo_metrics WHERE (account_id, id) = ($1, $2)'],
    ['an INSERT ... VALUES', 'INSERT INTO klaviyo_metrics (account_id, id, name) VALUES ($1, $2, $3)'],
    [
      'an INSERT from a recordset with the account column',
      `INSERT INTO klaviyo_metrics (account_id, id) SELECT $1, r.id FROM jsonb_to_recordset($2::jsonb) AS r(id text)
         ON CONFLICT (account_id, id) DO NOTHING`,
    ],
    [
      'an INSERT ... SELECT from a filtered table',
      `INSERT INTO klaviyo_aggregate_dirty (account_id, metric_id, bucket)
         SELECT e.account_id, e.metric_id, date_trunc('hour', e."timestamp") FROM klaviyo_events e WHERE e.account_id = $1`,
    ],
    [
      'a DML CTE with SKIP LOCKED within one account, joined through the CTE',
      `WITH taken AS (
         DELETE FROM klaviyo_aggregate_dirty d WHERE d.account_id = $1 AND (d.metric_id, d.bucket) IN (
           SELECT metric_id, bucket FROM klaviyo_aggregate_dirty WHERE account_id = $1 LIMIT 10 FOR UPDATE SKIP LOCKED)
         RETURNING d.account_id, d.metric_id, d.bucket)
       SELECT r.metric_id FROM klaviyo_aggregated_metrics r JOIN taken t
         ON r.account_id = t.account_id AND r.metric_id = t.metric_id`,
    ],
    [
      'a correlated subquery',
      `SELECT m.id FROM klaviyo_metrics m WHERE m.account_id = $1 AND EXISTS (
       SELECT 1 FROM klaviyo_events e WHERE e.account_id = m.account_id AND e.metric_id = m.id)`,
    ],
    ['COPY with the account column', 'COPY klaviyo_events (account_id, id, "timestamp") FROM STDIN'],
    ['no account-scoped table', 'SELECT extname FROM pg_extension WHERE extname = $1'],
    ['a transaction statement', 'BEGIN'],
    ['SET LOCAL', 'SET LOCAL plan_cache_mode = auto'],
    ['a savepoint as pg_stat_statements records it', 'savepoint $1'],
    ['a rollback to one', 'rollback to $1'],
    [
      "PostgreSQL's own foreign key check (OPERATOR(pg_catalog.=))",
      `SELECT $3 FROM ONLY "public"."klaviyo_metrics" x WHERE "account_id" OPERATOR(pg_catalog.=) $1
         AND "id"::pg_catalog.text OPERATOR(pg_catalog.=) $2::pg_catalog.text FOR KEY SHARE OF x`,
    ],
  ])('%s', async (_name, sql) => {
    expect(problemsOf(sql)).toEqual([]);
  });
});

describe('statements that are not bound to one account fail', () => {
  it.each([
    ['no filter', 'SELECT id FROM klaviyo_events WHERE metric_id = $1', /not filtered on account_id: klaviyo_events/],
    ['the filter under OR', 'SELECT id FROM klaviyo_events WHERE account_id = $1 OR metric_id = $2', /not filtered/],
    ['ANY of several accounts', 'SELECT id FROM klaviyo_events WHERE account_id = ANY($1)', /not filtered/],
    [
      'a join that forgets the account',
      `SELECT e.id FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id WHERE e.account_id = $1`,
      /not filtered on account_id: klaviyo_metrics m/,
    ],
    [
      'a join across two accounts',
      `SELECT e.id FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id
         WHERE e.account_id = $1 AND m.account_id = $2`,
      /touches more than one account/,
    ],
    [
      'an unfiltered subquery',
      `SELECT id FROM klaviyo_metrics WHERE account_id = $1 AND id IN (SELECT metric_id FROM klaviyo_events)`,
      /not filtered on account_id: klaviyo_events/,
    ],
    [
      'SKIP LOCKED across accounts',
      'SELECT metric_id FROM klaviyo_aggregate_dirty ORDER BY bucket LIMIT 10 FOR UPDATE SKIP LOCKED',
      /not filtered on account_id: klaviyo_aggregate_dirty \(a locking clause/,
    ],
    ['an INSERT without the column', 'INSERT INTO klaviyo_metrics (id, name) VALUES ($1, $2)', /lists no account_id/],
    ['COPY without the column', 'COPY klaviyo_events (id, "timestamp") FROM STDIN', /COPY klaviyo_events lists no/],
    ['an UPDATE without a filter', 'UPDATE klaviyo_metrics SET name = $1 WHERE id = $2', /not filtered/],
    ['a DELETE without a filter', 'DELETE FROM klaviyo_aggregate_dirty WHERE bucket < $1', /not filtered/],
    [
      'an UPDATE ... FROM that leaves the FROM table unbound',
      `UPDATE klaviyo_metrics m SET name = e.id FROM klaviyo_events e WHERE m.account_id = $1 AND e.metric_id = m.id`,
      /not filtered on account_id: klaviyo_events e/,
    ],
    [
      'an unfiltered CTE next to a filtered one, whose outputs meet without account_id',
      `WITH stored AS (SELECT a.bucket AS i, a.event_count AS n FROM klaviyo_aggregated_metrics a WHERE a.metric_id = $2),
            fresh AS (SELECT e."timestamp" AS i, 1 AS n FROM klaviyo_events e WHERE e.account_id = $1)
       SELECT i, sum(n) FROM (SELECT i, n FROM stored UNION ALL SELECT i, n FROM fresh) x GROUP BY i`,
      /not filtered on account_id: klaviyo_aggregated_metrics a/,
    ],
    ['maintenance', 'VACUUM ANALYZE klaviyo_events', /VacuumStmt on klaviyo_events/],
    ['TRUNCATE', 'TRUNCATE klaviyo_events', /TruncateStmt on klaviyo_events/],
  ])('%s', async (_name, sql, expected) => {
    const problems = problemsOf(sql);
    expect(problems.join('\n')).toMatch(expected);
  });
});
