import { loadModule, parseSync } from 'libpg-query';

/**
 * The Citus-readiness rule for one SQL statement, checked on PostgreSQL's own parse tree (libpg-query
 * is the server's parser compiled to WebAssembly), not on the text:
 *
 * - every reference to an account-scoped table is bound to an account: a filter `<rel>.account_id = $n`
 *   (or a constant) among the AND-ed conditions of its WHERE or JOIN ... ON, an equality with another
 *   reference's account_id that is itself bound (a join within the account), `JOIN ... USING (account_id)`,
 *   or, for INSERT and COPY, an `account_id` column in the column list;
 * - all of a statement's references are bound to ONE account: two references bound to different
 *   parameters, or joined on anything but account_id, make the statement touch several accounts (on
 *   Citus, a multi-shard query; for the product, a leak);
 * - a locking clause (FOR UPDATE, SKIP LOCKED) is held to the same rule, so it stays within one account.
 *
 * An equality under OR or NOT is not a filter. `account_id = ANY($1)` or `IN (...)` binds nothing (it
 * may name several accounts). A CTE or subquery in FROM is bound when the account-scoped references
 * inside it are, and its `account_id` column is then that account.
 *
 * Statements that touch no account-scoped table (catalog reads, SET, BEGIN, SELECT 1) pass. DDL and
 * maintenance on an account-scoped table (VACUUM, TRUNCATE, LOCK, CREATE INDEX ...) are problems unless
 * the caller allow-lists them: the allow-list is the test's, with a reason per entry.
 */

const ACCOUNT_COLUMN = 'account_id';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** The single `{ NodeType: {...} }` wrapper libpg-query puts around every node. */
function unwrap(node: unknown): [string, Json] | undefined {
  if (!isObject(node)) return undefined;
  const keys = Object.keys(node);
  if (keys.length !== 1) return undefined;
  const [type] = keys as [string];
  const inner = node[type];
  return isObject(inner) ? [type, inner] : undefined;
}

function stringsOf(fields: unknown): string[] {
  return asArray(fields).flatMap((f) => {
    const s = unwrap(f);
    return s && s[0] === 'String' && typeof s[1].sval === 'string' ? [s[1].sval] : [];
  });
}

interface Rel {
  readonly key: string;
  /** The name a column reference uses: the alias, else the table or CTE name. */
  readonly refName: string;
  /** Set for account-scoped tables. */
  readonly table?: string;
  readonly derived: boolean;
}

interface Scope {
  readonly rels: Rel[];
  readonly parent?: Scope;
  /** CTE name -> the node its account_id column stands for. */
  readonly ctes: Map<string, string>;
}

class UnionFind {
  private readonly parent = new Map<string, string>();
  find(x: string): string {
    let p = this.parent.get(x) ?? x;
    if (p !== x) {
      p = this.find(p);
      this.parent.set(x, p);
    }
    return p;
  }
  union(a: string, b: string): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.parent.set(ra, rb);
  }
}

class Analysis {
  readonly uf = new UnionFind();
  readonly accountRels: Rel[] = [];
  readonly anchors = new Set<string>();
  readonly problems: string[] = [];
  private counter = 0;
  locking = false;

  constructor(private readonly accountTables: ReadonlySet<string>) {}

  fresh(prefix: string): string {
    this.counter += 1;
    return `${prefix}:${this.counter}`;
  }

  anchor(key: string): string {
    this.anchors.add(key);
    return key;
  }

  isAccountTable(name: string): boolean {
    return this.accountTables.has(name);
  }

  /** A table (or CTE) reference in FROM, USING, or a DML target. */
  addRangeVar(rv: Json, scope: Scope): Rel {
    const name = typeof rv.relname === 'string' ? rv.relname : '';
    const alias = isObject(rv.alias) && typeof rv.alias.aliasname === 'string' ? rv.alias.aliasname : undefined;
    const hasSchema = typeof rv.schemaname === 'string';
    const cte = hasSchema ? undefined : lookupCte(scope, name);
    const key = this.fresh(`rel:${name}`);
    let rel: Rel;
    if (cte !== undefined) {
      rel = { key, refName: alias ?? name, derived: true };
      this.uf.union(key, cte);
    } else if (this.isAccountTable(name)) {
      rel = { key, refName: alias ?? name, table: name, derived: false };
      this.accountRels.push(rel);
    } else {
      rel = { key, refName: alias ?? name, derived: true };
    }
    scope.rels.push(rel);
    return rel;
  }
}

function lookupCte(scope: Scope | undefined, name: string): string | undefined {
  for (let s = scope; s; s = s.parent) {
    const found = s.ctes.get(name);
    if (found) return found;
  }
  return undefined;
}

/** Finds what `rel.account_id` or a bare `account_id` names, nearest scope first. */
function resolveAccountColumn(scope: Scope, qualifier: string | undefined): Rel[] {
  for (let s: Scope | undefined = scope; s; s = s.parent) {
    if (qualifier !== undefined) {
      const rel = [...s.rels].reverse().find((r) => r.refName === qualifier);
      if (rel) return [rel];
      continue;
    }
    const tables = s.rels.filter((r) => r.table !== undefined);
    if (tables.length > 0) return tables;
    const derived = s.rels.filter((r) => r.derived);
    if (derived.length > 0) return derived;
  }
  return [];
}

function stripCasts(node: unknown): unknown {
  let current = node;
  for (;;) {
    const n = unwrap(current);
    if (n && n[0] === 'TypeCast') current = n[1].arg;
    else if (n && n[0] === 'CollateClause') current = n[1].arg;
    else return current;
  }
}

/** The union-find node an equality operand stands for, when it is an account value. */
function accountOperand(a: Analysis, scope: Scope, node: unknown): string | undefined {
  const n = unwrap(stripCasts(node));
  if (!n) return undefined;
  const [type, body] = n;
  if (type === 'ParamRef') return a.anchor(`param:${String(body.number)}`);
  if (type === 'A_Const') return a.anchor(`const:${JSON.stringify(body)}`);
  if (type === 'ColumnRef') {
    const names = stringsOf(body.fields);
    if (names.at(-1) !== ACCOUNT_COLUMN) return undefined;
    const qualifier = names.length >= 2 ? names.at(-2) : undefined;
    const rels = resolveAccountColumn(scope, qualifier);
    if (rels.length === 0) return undefined;
    const [first, ...rest] = rels as [Rel, ...Rel[]];
    for (const r of rest) a.uf.union(first.key, r.key);
    return first.key;
  }
  return undefined;
}

/** AND-ed conditions of a WHERE or ON: their equalities on account_id bind references. */
function collectFilter(a: Analysis, scope: Scope, expr: unknown): void {
  const n = unwrap(expr);
  if (!n) return;
  const [type, body] = n;
  if (type === 'BoolExpr' && body.boolop === 'AND_EXPR') {
    for (const arg of asArray(body.args)) collectFilter(a, scope, arg);
    return;
  }
  // `=` or, as PostgreSQL's own foreign-key checks write it, `OPERATOR(pg_catalog.=)`.
  if (type === 'A_Expr' && body.kind === 'AEXPR_OP' && stringsOf(body.name).at(-1) === '=') {
    const l = unwrap(stripCasts(body.lexpr));
    const r = unwrap(stripCasts(body.rexpr));
    if (l && r && l[0] === 'RowExpr' && r[0] === 'RowExpr') {
      const la = asArray(l[1].args);
      const ra = asArray(r[1].args);
      la.forEach((item, i) => equate(a, scope, item, ra[i]));
    } else {
      equate(a, scope, body.lexpr, body.rexpr);
    }
  }
  visitExpressions(a, scope, expr);
}

function equate(a: Analysis, scope: Scope, left: unknown, right: unknown): void {
  const l = accountOperand(a, scope, left);
  const r = accountOperand(a, scope, right);
  // Two anchors equal to each other bind nothing; a column equal to an anchor or a column does.
  if (l && r && !(a.anchors.has(l) && a.anchors.has(r))) a.uf.union(l, r);
}

/** Any expression: subqueries inside it are statements of their own, in this scope. */
function visitExpressions(a: Analysis, scope: Scope, node: unknown): void {
  if (Array.isArray(node)) {
    for (const item of node) visitExpressions(a, scope, item);
    return;
  }
  const n = unwrap(node);
  if (n) {
    const [type, body] = n;
    if (type === 'SubLink') {
      visitExpressions(a, scope, body.testexpr);
      analyzeStatement(a, body.subselect, scope);
      return;
    }
    if (type === 'SelectStmt' || type === 'InsertStmt' || type === 'UpdateStmt' || type === 'DeleteStmt') {
      analyzeStatement(a, node, scope);
      return;
    }
    visitExpressions(a, scope, body);
    return;
  }
  if (isObject(node)) for (const value of Object.values(node)) visitExpressions(a, scope, value);
}

function childScope(parent: Scope | undefined): Scope {
  return { rels: [], parent, ctes: new Map() };
}

function addWith(a: Analysis, scope: Scope, withClause: unknown): void {
  if (!isObject(withClause)) return;
  for (const cteNode of asArray(withClause.ctes)) {
    const cte = unwrap(cteNode);
    if (!cte || cte[0] !== 'CommonTableExpr') continue;
    const name = String(cte[1].ctename);
    const node = a.fresh(`cte:${name}`);
    // A recursive CTE may name itself: known before its body is read.
    scope.ctes.set(name, node);
    const inner = childScope(scope);
    analyzeStatement(a, cte[1].ctequery, inner, node);
  }
}

/** A FROM item: tables, joins (their ON conditions are filters), subqueries, functions. */
function addFromItem(a: Analysis, scope: Scope, item: unknown): Rel[] {
  const n = unwrap(item);
  if (!n) return [];
  const [type, body] = n;
  if (type === 'RangeVar') return [a.addRangeVar(body, scope)];
  if (type === 'JoinExpr') {
    const left = addFromItem(a, scope, body.larg);
    const right = addFromItem(a, scope, body.rarg);
    const using = stringsOf(body.usingClause);
    if (using.includes(ACCOUNT_COLUMN)) {
      const joined = [...left, ...right];
      const [first, ...rest] = joined;
      if (first) for (const r of rest) a.uf.union(first.key, r.key);
    }
    if (body.quals) collectFilter(a, scope, body.quals);
    return [...left, ...right];
  }
  if (type === 'RangeSubselect') {
    const alias = isObject(body.alias) && typeof body.alias.aliasname === 'string' ? body.alias.aliasname : '';
    const key = a.fresh(`subquery:${alias}`);
    // LATERAL subqueries see the FROM items before them: the current scope is their parent either way.
    analyzeStatement(a, body.subquery, scope, key);
    const rel: Rel = { key, refName: alias, derived: true };
    scope.rels.push(rel);
    return [rel];
  }
  if (type === 'RangeFunction') {
    visitExpressions(a, scope, body.functions);
    const alias = isObject(body.alias) && typeof body.alias.aliasname === 'string' ? body.alias.aliasname : '';
    // Rows a function makes from parameters (unnest, jsonb_to_recordset) carry whatever account the
    // caller put in them: their account_id is an account value of its own, like a parameter.
    const rel: Rel = { key: a.anchor(a.fresh(`function:${alias}`)), refName: alias, derived: true };
    scope.rels.push(rel);
    return [rel];
  }
  visitExpressions(a, scope, body);
  return [];
}

/**
 * One statement (or sub-statement) in a scope of its own. `output`, when given, is the node that the
 * statement's account_id column stands for (a CTE or a subquery in FROM): it is joined to every
 * account-scoped reference at the statement's top level.
 */
function analyzeStatement(
  a: Analysis,
  stmtNode: unknown,
  parent: Scope | undefined,
  output?: string,
  onSelectScope?: (scope: Scope, targetList: unknown[]) => void,
): void {
  const n = unwrap(stmtNode);
  if (!n) return;
  const [type, body] = n;
  const scope = childScope(parent);
  // The statement's account_id output column (SELECT list or RETURNING), if it has one, is what a
  // reference to the CTE's or subquery's account_id stands for; `*` passes every relation's on.
  const bindOutput = (targets: unknown[]) => {
    if (!output) return;
    for (const target of targets) {
      const rt = unwrap(target);
      if (!rt || rt[0] !== 'ResTarget') continue;
      const ref = unwrap(stripCasts(rt[1].val));
      const fields = ref && ref[0] === 'ColumnRef' ? asArray(ref[1].fields) : [];
      if (fields.some((f) => unwrap(f)?.[0] === 'A_Star')) {
        for (const rel of scope.rels) a.uf.union(output, rel.key);
        continue;
      }
      const name = typeof rt[1].name === 'string' ? rt[1].name : stringsOf(fields).at(-1);
      if (name !== ACCOUNT_COLUMN) continue;
      const node = accountOperand(a, scope, rt[1].val);
      if (node) a.uf.union(output, node);
    }
  };
  const returning = (): unknown[] =>
    isObject(body.returningClause) ? asArray(body.returningClause.exprs) : asArray(body.returningList);
  switch (type) {
    case 'SelectStmt': {
      addWith(a, scope, body.withClause);
      if (body.op && body.op !== 'SETOP_NONE') {
        analyzeStatement(a, body.larg ? { SelectStmt: body.larg } : undefined, scope, output);
        analyzeStatement(a, body.rarg ? { SelectStmt: body.rarg } : undefined, scope, output);
        return;
      }
      if (asArray(body.lockingClause).length > 0) a.locking = true;
      for (const item of asArray(body.fromClause)) addFromItem(a, scope, item);
      collectFilter(a, scope, body.whereClause);
      collectFilter(a, scope, body.havingClause);
      visitExpressions(a, scope, [body.targetList, body.valuesLists, body.groupClause, body.sortClause]);
      visitExpressions(a, scope, [body.limitCount, body.limitOffset, body.distinctClause]);
      onSelectScope?.(scope, asArray(body.targetList));
      bindOutput(asArray(body.targetList));
      return;
    }
    case 'InsertStmt': {
      addWith(a, scope, body.withClause);
      const target = isObject(body.relation) ? a.addRangeVar(body.relation, scope) : undefined;
      const columns = asArray(body.cols).map((c) => {
        const rt = unwrap(c);
        return rt && typeof rt[1].name === 'string' ? rt[1].name : '';
      });
      const index = columns.indexOf(ACCOUNT_COLUMN);
      const select = unwrap(body.selectStmt);
      const values = select && select[0] === 'SelectStmt' ? asArray(select[1].valuesLists) : [];
      const bindsTarget = target?.table !== undefined && index >= 0;
      if (target?.table !== undefined && index < 0) {
        a.problems.push(`INSERT INTO ${target.table} lists no ${ACCOUNT_COLUMN} column`);
      }
      if (bindsTarget && values.length > 0) bindInsertedValues(a, scope, target, values, index);
      // INSERT ... SELECT: the SELECT's column at that position, resolved in the SELECT's own scope
      // (a column of a recordset, or anything computed, carries the rows' own account).
      analyzeStatement(a, body.selectStmt, scope, undefined, (selectScope, targetList) => {
        if (!bindsTarget || values.length > 0) return;
        const item = unwrap(targetList[index]);
        const value = item && item[0] === 'ResTarget' ? item[1].val : undefined;
        a.uf.union(target.key, accountOperand(a, selectScope, value) ?? a.anchor(a.fresh('inserted')));
      });
      if (isObject(body.onConflictClause)) {
        const conflict = body.onConflictClause;
        visitExpressions(a, scope, conflict.targetList);
        collectFilter(a, scope, conflict.whereClause);
      }
      visitExpressions(a, scope, body.returningClause ?? body.returningList);
      bindOutput(returning());
      return;
    }
    case 'UpdateStmt': {
      addWith(a, scope, body.withClause);
      if (isObject(body.relation)) a.addRangeVar(body.relation, scope);
      for (const item of asArray(body.fromClause)) addFromItem(a, scope, item);
      collectFilter(a, scope, body.whereClause);
      visitExpressions(a, scope, [body.targetList, body.returningClause ?? body.returningList]);
      bindOutput(returning());
      return;
    }
    case 'DeleteStmt': {
      addWith(a, scope, body.withClause);
      if (isObject(body.relation)) a.addRangeVar(body.relation, scope);
      for (const item of asArray(body.usingClause)) addFromItem(a, scope, item);
      collectFilter(a, scope, body.whereClause);
      visitExpressions(a, scope, body.returningClause ?? body.returningList);
      bindOutput(returning());
      return;
    }
    case 'CopyStmt': {
      if (body.query) {
        analyzeStatement(a, body.query, scope);
        return;
      }
      const rv = isObject(body.relation) ? body.relation : undefined;
      const name = rv && typeof rv.relname === 'string' ? rv.relname : '';
      if (a.isAccountTable(name)) {
        const rel = a.addRangeVar(rv as Json, scope);
        if (stringsOf(body.attlist).includes(ACCOUNT_COLUMN)) a.uf.union(rel.key, a.anchor(a.fresh('copied')));
        else a.problems.push(`COPY ${name} lists no ${ACCOUNT_COLUMN} column`);
      }
      return;
    }
    case 'ExplainStmt':
      analyzeStatement(a, body.query, scope);
      return;
    case 'TransactionStmt':
    case 'VariableSetStmt':
    case 'VariableShowStmt':
    case 'DiscardStmt':
    case 'DeallocateStmt':
    case 'PrepareStmt':
    case 'ExecuteStmt':
      return;
    default: {
      // DDL and maintenance: a problem when it names an account-scoped table.
      const named = new Set<string>();
      collectRangeVarNames(body, named);
      const scoped = [...named].filter((t) => a.isAccountTable(t));
      if (scoped.length > 0) a.problems.push(`${type} on ${scoped.join(', ')} (maintenance: allow-list it explicitly)`);
    }
  }
}

function collectRangeVarNames(node: unknown, out: Set<string>): void {
  if (Array.isArray(node)) {
    for (const item of node) collectRangeVarNames(item, out);
    return;
  }
  if (!isObject(node)) return;
  // A RangeVar is sometimes unwrapped (VACUUM's relation): any object naming a relation counts.
  if (typeof node.relname === 'string') out.add(node.relname);
  for (const value of Object.values(node)) collectRangeVarNames(value, out);
}

/** INSERT ... VALUES: each row's account_id value binds the target (a parameter or a constant). */
function bindInsertedValues(a: Analysis, scope: Scope, target: Rel, rows: unknown[], index: number): void {
  for (const row of rows) {
    const list = unwrap(row);
    const value = list && list[0] === 'List' ? asArray(list[1].items)[index] : undefined;
    a.uf.union(target.key, accountOperand(a, scope, value) ?? a.anchor(a.fresh('inserted')));
  }
}

export interface StatementVerdict {
  readonly statement: string;
  readonly problems: string[];
  /** Names of the account-scoped tables the statement touches. */
  readonly tables: string[];
}

let loaded: Promise<void> | undefined;

/** The parser is WebAssembly: load it once before checking. */
export function loadParser(): Promise<void> {
  loaded ??= loadModule();
  return loaded;
}

/** Checks one statement text (as pg_stat_statements records it: constants become $n). */
export function checkStatement(sql: string, accountTables: ReadonlySet<string>): StatementVerdict {
  // pg_stat_statements records savepoint names as parameters, which no longer parse.
  if (/^\s*(savepoint|release(\s+savepoint)?|rollback\s+to(\s+savepoint)?)\s+\$\d+\s*;?\s*$/i.test(sql)) {
    return { statement: sql, problems: [], tables: [] };
  }
  let parsed: unknown;
  try {
    parsed = parseSync(sql);
  } catch (err) {
    return { statement: sql, problems: [`unparseable: ${(err as Error).message}`], tables: [] };
  }
  const a = new Analysis(accountTables);
  const stmts = isObject(parsed) ? asArray(parsed.stmts) : [];
  for (const raw of stmts) {
    const stmt = isObject(raw) ? raw.stmt : undefined;
    analyzeStatement(a, stmt, undefined);
  }
  const problems = [...a.problems];
  const lock = a.locking ? ' (a locking clause: FOR UPDATE / SKIP LOCKED)' : '';
  const components = new Map<string, Rel[]>();
  for (const rel of a.accountRels) {
    const root = a.uf.find(rel.key);
    components.set(root, [...(components.get(root) ?? []), rel]);
  }
  const anchoredRoots = new Set([...a.anchors].map((k) => a.uf.find(k)));
  const describe = (rels: Rel[]) => rels.map((r) => (r.refName === r.table ? r.table : `${r.table} ${r.refName}`));
  for (const [root, rels] of components) {
    if (!anchoredRoots.has(root)) {
      problems.push(`not filtered on ${ACCOUNT_COLUMN}: ${describe(rels).join(', ')}${lock}`);
    }
  }
  const bound = [...components.entries()].filter(([root]) => anchoredRoots.has(root));
  if (bound.length > 1) {
    problems.push(
      `touches more than one account: ${bound.map(([, rels]) => `{${describe(rels).join(', ')}}`).join(' and ')} ` +
        `are bound to different account values${lock}`,
    );
  }
  const tables = [...new Set(a.accountRels.map((r) => r.table ?? ''))].sort();
  return { statement: sql, problems: [...new Set(problems)], tables };
}
