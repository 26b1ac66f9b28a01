import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModule, parseSync } from 'libpg-query';
import { useFreshDatabase } from '../support/database';

/**
 * scripts/citus/setup.sql against the migrated schema. Citus cannot run here, so this checks, on the
 * real schema, the rules Citus's documentation states for what the script does (docs/scaling.md lists
 * the sources): every table is distributed on account_id, a reference table, or the local
 * schema_migrations; primary keys and unique indexes of a distributed table include the distribution
 * column; a foreign key between distributed tables joins co-located tables on it, and the referenced
 * table is distributed first; a reference table references no distributed table; no key takes a
 * global sequence.
 */

interface Call {
  readonly fn: 'create_distributed_table' | 'create_reference_table';
  readonly table: string;
  readonly column?: string;
  readonly colocateWith?: string;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function constString(node: unknown): string | undefined {
  if (!isObject(node)) return undefined;
  const c = node.A_Const;
  if (isObject(c) && isObject(c.sval) && typeof c.sval.sval === 'string') return c.sval.sval;
  const cast = node.TypeCast;
  if (isObject(cast)) return constString(cast.arg);
  return undefined;
}

/** The script's create_*_table calls, in order (psql's backslash commands removed first). */
function setupCalls(): Call[] {
  const text = readFileSync(join(__dirname, '..', '..', 'scripts', 'citus', 'setup.sql'), 'utf8')
    .split('\n')
    .filter((line) => !line.startsWith('\\'))
    .join('\n');
  const calls: Call[] = [];
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (!isObject(node)) return;
    const call = node.FuncCall;
    if (isObject(call)) {
      const name = (Array.isArray(call.funcname) ? call.funcname : [])
        .map((n) => (isObject(n) && isObject(n.String) ? n.String.sval : ''))
        .join('.');
      if (name === 'create_distributed_table' || name === 'create_reference_table') {
        const args = Array.isArray(call.args) ? call.args : [];
        const positional = args.filter((a) => !(isObject(a) && 'NamedArgExpr' in a)).map(constString);
        const named = new Map<string, string | undefined>();
        for (const a of args) {
          if (isObject(a) && isObject(a.NamedArgExpr)) {
            named.set(String(a.NamedArgExpr.name), constString(a.NamedArgExpr.arg));
          }
        }
        calls.push({
          fn: name,
          table: positional[0] ?? '',
          column: positional[1],
          colocateWith: named.get('colocate_with') ?? positional[3],
        });
      }
    }
    Object.values(node).forEach(visit);
  };
  visit(parseSync(text));
  return calls;
}

const LOCAL_TABLES = new Set(['schema_migrations']);

describe('scripts/citus/setup.sql against the migrated schema', () => {
  const database = useFreshDatabase({ setEnv: false });
  let calls: Call[] = [];

  beforeAll(async () => {
    await loadModule();
    calls = setupCalls();
  });

  const distributed = () => calls.filter((c) => c.fn === 'create_distributed_table');
  const reference = () => new Set(calls.filter((c) => c.fn === 'create_reference_table').map((c) => c.table));

  it('covers every table once: distributed on account_id, a reference table, or local', async () => {
    const rows = await database.db.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`,
    );
    const named = calls.map((c) => c.table);
    expect(new Set(named).size).toBe(named.length);
    expect([...named, ...LOCAL_TABLES].sort()).toEqual(rows.map((r) => r.name));
    expect(distributed().filter((c) => c.column !== 'account_id')).toEqual([]);
  });

  it('co-locates every distributed table in one group, each with a table distributed before it', () => {
    const [anchor, ...rest] = distributed();
    expect(anchor?.colocateWith).toBe('none');
    const seen = new Set([anchor?.table]);
    for (const call of rest) {
      expect({ table: call.table, colocatedWithEarlier: seen.has(call.colocateWith) }).toEqual({
        table: call.table,
        colocatedWithEarlier: true,
      });
      seen.add(call.table);
    }
    expect(calls.find((c) => c.table === 'klaviyo_metrics')).toBeDefined();
  });

  it('the primary key and every unique index of a distributed table include account_id', async () => {
    const rows = await database.db.query<{ tbl: string; idx: string; has_account: boolean }>(
      `SELECT t.relname AS tbl, i.relname AS idx,
              EXISTS (SELECT 1 FROM unnest(x.indkey) k JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k
                      WHERE a.attname = 'account_id') AS has_account
       FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
       WHERE n.nspname = 'public' AND x.indisunique ORDER BY 1, 2`,
    );
    const names = new Set(distributed().map((c) => c.table));
    expect(rows.filter((r) => names.has(r.tbl) && !r.has_account).map((r) => `${r.tbl}.${r.idx}`)).toEqual([]);
  });

  it('foreign keys: between distributed tables on account_id = account_id, to a table distributed first', async () => {
    const rows = await database.db.query<{ child: string; parent: string; name: string; pairs: string[] }>(
      `SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent, c.conname AS name,
              array(SELECT ca.attname || '=' || pa.attname
                    FROM unnest(c.conkey, c.confkey) AS k(ck, pk)
                    JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.ck
                    JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.pk) AS pairs
       FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
       WHERE c.contype = 'f' AND n.nspname = 'public' ORDER BY 1, 3`,
    );
    const order = new Map(distributed().map((c, i) => [c.table, i]));
    const refs = reference();
    const problems: string[] = [];
    for (const fk of rows) {
      const childOrder = order.get(fk.child);
      const parentOrder = order.get(fk.parent);
      if (refs.has(fk.child) && !refs.has(fk.parent))
        problems.push(`${fk.name}: a reference table references ${fk.parent}`);
      if (childOrder === undefined || parentOrder === undefined) continue;
      if (!fk.pairs.includes('account_id=account_id')) problems.push(`${fk.name}: not on account_id = account_id`);
      if (parentOrder > childOrder) problems.push(`${fk.name}: ${fk.parent} is distributed after ${fk.child}`);
    }
    expect(rows.length).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  });

  it('no key or default takes a global sequence', async () => {
    const rows = await database.db.query<{ tbl: string; col: string }>(
      `SELECT c.relname AS tbl, a.attname AS col
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
         AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%')`,
    );
    expect(rows).toEqual([]);
  });
});
