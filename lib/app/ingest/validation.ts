import type { z } from 'zod';
import { invalidInput, type ErrorItem } from '../../klaviyo/errors';

/**
 * Collecting every problem of a request as JSON:API error items with exact JSON pointers
 * (/data/17/attributes/datetime), so that a rejected batch says at once all that is wrong with it.
 */

/** Klaviyo: "each string cannot be larger than 100 KB" (UTF-8 bytes). */
export const MAX_STRING_BYTES = 100 * 1024;
/** Deeper JSON than this is refused: PostgreSQL's jsonb parser would hit its stack depth limit long after
 * any real Klaviyo payload ends, and a 5 MB body of brackets must not cost a 500. */
export const MAX_JSON_DEPTH = 64;
/** A response must stay far below Lambda's 6 MB: past this many items, one more item says how many were left out. */
export const MAX_ERROR_ITEMS = 2000;

export type PathSegment = string | number;

function escapeSegment(segment: PathSegment): string {
  return typeof segment === 'number' ? String(segment) : segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** RFC 6901 JSON pointer of a path. */
export function pointer(path: readonly PathSegment[]): string {
  let out = '';
  for (const segment of path) out += '/' + escapeSegment(segment);
  return out;
}

export class Problems {
  private readonly items: ErrorItem[] = [];
  private omitted = 0;

  get count(): number {
    return this.items.length + this.omitted;
  }

  add(path: readonly PathSegment[], code: string, detail: string): void {
    if (this.items.length >= MAX_ERROR_ITEMS) {
      this.omitted += 1;
      return;
    }
    this.items.push({ code, detail, pointer: pointer(path) });
  }

  /** Adds zod's issues under a base path, with details that name the field. */
  addZodIssues(base: readonly PathSegment[], issues: readonly z.core.$ZodIssue[]): void {
    for (const issue of issues) {
      const path = [...base, ...issue.path.filter((s): s is PathSegment => typeof s !== 'symbol')];
      const field = path.length > 0 ? String(path[path.length - 1]) : 'the document';
      const missing = issue.code === 'invalid_type' && 'input' in issue && issue.input === undefined;
      this.add(
        path,
        missing ? 'required' : codeOf(issue),
        missing ? `${field} is required.` : `${field} ${issue.message}.`,
      );
    }
  }

  /** Throws the 400 listing every problem, when there is any. */
  throwIfAny(): void {
    if (this.count === 0) return;
    const items = [...this.items];
    if (this.omitted > 0) {
      items.push({
        code: 'too_many_errors',
        detail: `${this.omitted} more problems are not listed; fix the ones above and send the request again.`,
        pointer: '',
      });
    }
    throw invalidInput(items);
  }
}

function codeOf(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'too_big':
      return 'too_long';
    case 'too_small':
      return 'too_short';
    case 'invalid_format':
      return 'invalid_format';
    case 'invalid_value':
      return 'invalid_value';
    case 'invalid_type':
      return 'invalid_type';
    default:
      return 'invalid';
  }
}

const hasSurrogate = /[\ud800-\udfff]/;

/**
 * Strings PostgreSQL cannot store: NUL (\u0000) is refused by both text and jsonb, and a lone UTF-16
 * surrogate ("\ud800" in JSON) is not Unicode at all. Both are rejected with a pointer rather than
 * silently stripped: changing a value (or an id) behind the sender's back would store something
 * Klaviyo never had and break re-delivery de-duplication.
 */
function stringProblem(s: string): { code: string; detail: string } | undefined {
  if (s.indexOf('\u0000') !== -1) {
    return {
      code: 'invalid_character',
      detail: 'contains the NUL character (\\u0000), which PostgreSQL cannot store; remove it.',
    };
  }
  if (hasSurrogate.test(s) && !isWellFormed(s)) {
    return {
      code: 'invalid_character',
      detail: 'contains an unpaired UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode.',
    };
  }
  // A UTF-8 character takes at most 3 bytes per UTF-16 unit, so short strings skip the byte count.
  if (s.length * 3 > MAX_STRING_BYTES && Buffer.byteLength(s, 'utf8') > MAX_STRING_BYTES) {
    return {
      code: 'string_too_long',
      detail: `is larger than ${MAX_STRING_BYTES} bytes (100 KB), Klaviyo's limit for a string.`,
    };
  }
  return undefined;
}

function isWellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i += 1) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i += 1;
        continue;
      }
      return false;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

/**
 * Reports every string (values and keys) of a parsed JSON value that cannot be stored, and nesting
 * beyond MAX_JSON_DEPTH, under `path` (the pointer path of `value`). A tight pass that only answers
 * "all fine" runs first; pointers are built only when it finds something.
 */
export function checkJsonValues(value: unknown, path: PathSegment[], problems: Problems): void {
  if (!allStorable(value, 0)) reportUnstorable(value, path, problems, 0);
}

function storable(s: string): boolean {
  return (
    s.indexOf('\u0000') === -1 &&
    (s.length * 3 <= MAX_STRING_BYTES || Buffer.byteLength(s, 'utf8') <= MAX_STRING_BYTES) &&
    !(hasSurrogate.test(s) && !isWellFormed(s))
  );
}

function allStorable(value: unknown, depth: number): boolean {
  if (typeof value === 'string') return storable(value);
  if (value === null || typeof value !== 'object') return true;
  if (depth >= MAX_JSON_DEPTH) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) if (!allStorable(value[i], depth + 1)) return false;
    return true;
  }
  const record = value as Record<string, unknown>;
  for (const key in record) {
    if (!storable(key) || !allStorable(record[key], depth + 1)) return false;
  }
  return true;
}

function reportUnstorable(value: unknown, path: PathSegment[], problems: Problems, depth: number): void {
  if (typeof value === 'string') {
    const problem = stringProblem(value);
    if (problem) problems.add(path, problem.code, `${labelOf(path)} ${problem.detail}`);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  if (depth >= MAX_JSON_DEPTH) {
    problems.add(path, 'too_deep', `${labelOf(path)} is nested more than ${MAX_JSON_DEPTH} levels deep.`);
    return;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) {
      path.push(i);
      reportUnstorable(value[i], path, problems, depth + 1);
      path.pop();
    }
    return;
  }
  for (const key in value as Record<string, unknown>) {
    path.push(key);
    const keyProblem = stringProblem(key);
    if (keyProblem) problems.add(path, keyProblem.code, `The key of ${labelOf(path)} ${keyProblem.detail}`);
    reportUnstorable((value as Record<string, unknown>)[key], path, problems, depth + 1);
    path.pop();
  }
}

function labelOf(path: readonly PathSegment[]): string {
  return path.length === 0 ? 'The document' : String(path[path.length - 1]);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
