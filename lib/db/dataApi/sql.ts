/**
 * SQL text as the Data API needs it. The Data API takes named parameters (`:p1`) where the port
 * speaks `$1`, and runs exactly one statement per call ("Multistatements aren't supported"), so
 * parameterless scripts such as migrations are split here. Both need to know where SQL code is
 * and where it is only text: string constants ('..', E'..'), quoted identifiers, comments and
 * dollar-quoted bodies (DO blocks, function bodies) are skipped exactly as PostgreSQL's lexer does.
 *
 * Not handled: SQL-standard function bodies (`BEGIN ATOMIC ... END`) whose inner statements end
 * with unquoted semicolons; write such functions with a dollar-quoted body instead.
 */

export type SegmentKind = 'code' | 'string' | 'identifier' | 'comment' | 'dollar';

export interface Segment {
  readonly kind: SegmentKind;
  readonly start: number;
  readonly end: number;
}

const isIdentifierStart = (c: string | undefined): boolean => c !== undefined && /[A-Za-z_\u0080-\uffff]/.test(c);
const isIdentifierChar = (c: string | undefined): boolean => c !== undefined && /[A-Za-z0-9_$\u0080-\uffff]/.test(c);

/** The dollar-quote tag starting at `i` (`$$` or `$tag$`), or undefined when `$` starts something else. */
function dollarTagAt(text: string, i: number): string | undefined {
  // `a$b$` is an identifier, and `$1` a parameter: a tag follows no identifier and starts with no digit.
  if (isIdentifierChar(text[i - 1])) return undefined;
  let j = i + 1;
  if (text[j] !== '$') {
    if (!isIdentifierStart(text[j])) return undefined;
    while (j < text.length && text[j] !== '$') {
      if (!isIdentifierChar(text[j])) return undefined;
      j += 1;
    }
    if (text[j] !== '$') return undefined;
  }
  return text.slice(i, j + 1);
}

/** Splits SQL text into code and non-code segments (an unterminated constant runs to the end). */
export function segments(text: string): Segment[] {
  const out: Segment[] = [];
  let codeStart = 0;
  let i = 0;
  const push = (kind: SegmentKind, start: number, end: number) => {
    if (codeStart < start) out.push({ kind: 'code', start: codeStart, end: start });
    out.push({ kind, start, end });
    codeStart = end;
  };
  while (i < text.length) {
    const c = text[i];
    const next = text[i + 1];
    if (c === '-' && next === '-') {
      const eol = text.indexOf('\n', i + 2);
      const end = eol === -1 ? text.length : eol;
      push('comment', i, end);
      i = end;
    } else if (c === '/' && next === '*') {
      // Block comments nest in PostgreSQL.
      let depth = 1;
      let j = i + 2;
      while (j < text.length && depth > 0) {
        if (text[j] === '/' && text[j + 1] === '*') {
          depth += 1;
          j += 2;
        } else if (text[j] === '*' && text[j + 1] === '/') {
          depth -= 1;
          j += 2;
        } else j += 1;
      }
      push('comment', i, j);
      i = j;
    } else if (c === "'") {
      // E'..' (escape string syntax) honours backslash escapes; plain strings only double quotes.
      const prefix = text[i - 1];
      const escapes = (prefix === 'E' || prefix === 'e') && !isIdentifierChar(text[i - 2]);
      let j = i + 1;
      while (j < text.length) {
        if (escapes && text[j] === '\\') j += 2;
        else if (text[j] === "'" && text[j + 1] === "'") j += 2;
        else if (text[j] === "'") break;
        else j += 1;
      }
      const end = Math.min(j + 1, text.length);
      push('string', i, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      while (j < text.length) {
        if (text[j] === '"' && text[j + 1] === '"') j += 2;
        else if (text[j] === '"') break;
        else j += 1;
      }
      const end = Math.min(j + 1, text.length);
      push('identifier', i, end);
      i = end;
    } else if (c === '$') {
      const tag = dollarTagAt(text, i);
      if (tag === undefined) {
        i += 1;
        continue;
      }
      const close = text.indexOf(tag, i + tag.length);
      const end = close === -1 ? text.length : close + tag.length;
      push('dollar', i, end);
      i = end;
    } else {
      i += 1;
    }
  }
  if (codeStart < text.length) out.push({ kind: 'code', start: codeStart, end: text.length });
  return out;
}

/**
 * The statements of a script, in order, without their terminating semicolons. Statements that hold
 * nothing but whitespace and comments are dropped.
 */
export function splitStatements(text: string): string[] {
  const statements: string[] = [];
  let start = 0;
  let hasContent = false;
  const finish = (end: number) => {
    if (hasContent) statements.push(text.slice(start, end).trim());
    start = end + 1;
    hasContent = false;
  };
  for (const seg of segments(text)) {
    if (seg.kind === 'comment') continue;
    if (seg.kind !== 'code') {
      hasContent = true;
      continue;
    }
    for (let i = seg.start; i < seg.end; i += 1) {
      const c = text[i] as string;
      if (c === ';') finish(i);
      else if (!/\s/.test(c)) hasContent = true;
    }
  }
  finish(text.length);
  return statements;
}

export interface NamedSql {
  readonly sql: string;
  /** The highest $n the text references (0 when none). */
  readonly highest: number;
}

/** The Data API's name for the port's `$n`. */
export const parameterName = (position: number): string => `p${position}`;

/**
 * Rewrites `$1..$n` placeholders in code as `:p1..:pn`, leaving strings, identifiers, comments and
 * dollar-quoted bodies alone. Casts keep working: `$1::jsonb` becomes `:p1::jsonb`.
 */
export function toNamedParameters(text: string): NamedSql {
  let sql = '';
  let highest = 0;
  for (const seg of segments(text)) {
    const piece = text.slice(seg.start, seg.end);
    if (seg.kind !== 'code') {
      sql += piece;
      continue;
    }
    sql += piece.replace(/\$(\d+)/g, (match: string, digits: string, offset: number) => {
      // `a$1` is part of an identifier; so is `$1` right after one (`x$1`).
      const before = offset === 0 ? text[seg.start - 1] : piece[offset - 1];
      if (isIdentifierChar(before)) return match;
      const position = Number(digits);
      highest = Math.max(highest, position);
      // After a colon (an array slice, `a[$1:$2]`), `:p2` would make `::`, a cast.
      return `${before === ':' ? ' ' : ''}:${parameterName(position)}`;
    });
  }
  return { sql, highest };
}
