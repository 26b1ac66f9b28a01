/**
 * The values of a few top-level keys of a JSON object's text, each as the text spells it, the rest of
 * the object stepped over without being built.
 *
 * Why: an event's pending row carries the values of the registered dimension keys (a handful) of
 * its properties, and the consumer makes it for every event of a batch while the events' COPY runs.
 * Parsing the whole properties object for that built every key and value of it, about a tenth of
 * the consumer's client work and of its garbage (docs/queue.md); parsing each value asked for and
 * writing it again as JSON was half of what was left. The values' texts go into the pending row's
 * JSON as they are: the same values JSON.parse finds (the last of a repeated key, as JSON.parse and
 * jsonb keep).
 *
 * What it checks: the object's top level (keys, colons, commas, its scalar values) as JSON.parse
 * would, and each value asked for (a string without escapes by its characters, anything else by
 * JSON.parse); nested objects and arrays it steps over are only matched by their brackets and
 * strings, so malformed JSON inside them is left for PostgreSQL to refuse when the text is stored
 * (jsonb reads all of it). Returns undefined for a text it cannot walk, so that the caller parses it
 * whole and JSON.parse says why.
 *
 * With `copyEscaped`, the text is the JSON as a field of COPY text (copyField: every backslash
 * doubled, a line end or tab as `\n`, `\r`, `\t`), as a queued event line carries it: read as it
 * is, and only the values asked for unescaped, rather than unescaping the whole object first (a copy
 * of it for every event whose JSON has one escape). Whitespace spelled as a COPY escape between the
 * tokens, which this process never writes, makes it give up.
 */
import { copyFieldValue } from './copyFormat';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

const SCALAR = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)$/;

function skipSpace(text: string, at: number): number {
  let i = at;
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
    i += 1;
  }
}

/**
 * The index after the string that starts (with its quote) at `at`, or -1 when it does not end. A
 * quote is escaped by an odd number of backslashes before it: JSON's own, each doubled in COPY text.
 */
function stringEnd(text: string, at: number, copyEscaped: boolean): number {
  let from = at + 1;
  for (;;) {
    const quote = text.indexOf('"', from);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes += 1;
    if ((copyEscaped ? backslashes >> 1 : backslashes) % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** The index after the object or array that starts at `at`, found by its brackets; -1 when it does not end. */
function nestedEnd(text: string, at: number, copyEscaped: boolean): number {
  let depth = 0;
  for (let i = at; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i, copyEscaped);
      if (end < 0) return -1;
      i = end - 1;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) depth += 1;
    else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth -= 1;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/** The index after the scalar (number or literal) at `at`, or -1 when it is not one JSON has. */
function scalarEnd(text: string, at: number): number {
  let i = at;
  for (;;) {
    const c = text.charCodeAt(i);
    if (Number.isNaN(c) || c === COMMA || c === CLOSE_OBJECT || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)
      break;
    i += 1;
  }
  return i > at && SCALAR.test(text.slice(at, i)) ? i : -1;
}

function valueEnd(text: string, at: number, copyEscaped: boolean): number {
  const c = text.charCodeAt(at);
  if (c === QUOTE) return stringEnd(text, at, copyEscaped);
  if (c === OPEN_OBJECT || c === OPEN_ARRAY) return nestedEnd(text, at, copyEscaped);
  return scalarEnd(text, at);
}

function parsed(json: string, copyEscaped: boolean): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(copyEscaped ? (copyFieldValue(json) ?? '') : json) as unknown };
  } catch {
    return undefined;
  }
}

/** The asked keys by length, so that a key of the text is compared in place, with no string made of it. */
const keysByLength = new WeakMap<ReadonlySet<string>, Map<number, string[]>>();

function byLength(keys: ReadonlySet<string>): Map<number, string[]> {
  let index = keysByLength.get(keys);
  if (index === undefined) {
    index = new Map();
    for (const key of keys) index.set(key.length, [...(index.get(key.length) ?? []), key]);
    keysByLength.set(keys, index);
  }
  return index;
}

/**
 * The asked key the text spells between `from` and `to` (a key's characters); null when it spells
 * another, undefined when it spells none JSON can read.
 */
function askedKey(
  text: string,
  from: number,
  to: number,
  keys: ReadonlySet<string>,
  keysOfLength: Map<number, string[]>,
  copyEscaped: boolean,
): string | null | undefined {
  for (let i = from; i < to; i += 1)
    if (text.charCodeAt(i) === BACKSLASH) {
      // Spelled with an escape: decoded, then looked up.
      const decoded = parsed(text.slice(from - 1, to + 1), copyEscaped);
      if (decoded === undefined || typeof decoded.value !== 'string') return undefined;
      return keys.has(decoded.value) ? decoded.value : null;
    }
  for (const key of keysOfLength.get(to - from) ?? []) if (text.startsWith(key, from)) return key;
  return null;
}

/** Whether the value text from `at` to `end` (found by valueEnd) is one JSON.parse reads. */
function isValue(text: string, at: number, end: number, copyEscaped: boolean): boolean {
  const first = text.charCodeAt(at);
  // A scalar was checked whole by scalarEnd.
  if (first !== QUOTE && first !== OPEN_OBJECT && first !== OPEN_ARRAY) return true;
  // A string without escapes needs only its characters looked at, with no string made of them.
  if (first === QUOTE) {
    let plain = true;
    for (let i = at + 1; i < end - 1 && plain; i += 1) {
      const c = text.charCodeAt(i);
      if (c < 0x20) return false;
      plain = c !== BACKSLASH;
    }
    if (plain) return true;
  }
  return parsed(text.slice(at, end), copyEscaped) !== undefined;
}

/**
 * The values of `keys` the object in `text` has at its top level (see above), each as the text spells
 * it (with `copyEscaped`, as COPY text still), or undefined.
 */
export function topLevelValueTexts(
  text: string,
  keys: ReadonlySet<string>,
  { copyEscaped = false }: { copyEscaped?: boolean } = {},
): Map<string, string> | undefined {
  const values = new Map<string, string>();
  const keysOfLength = byLength(keys);
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_OBJECT) return undefined;
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) === CLOSE_OBJECT) return skipSpace(text, i + 1) === text.length ? values : undefined;
  for (;;) {
    if (text.charCodeAt(i) !== QUOTE) return undefined;
    const keyEnd = stringEnd(text, i, copyEscaped);
    if (keyEnd < 0) return undefined;
    const asked = askedKey(text, i + 1, keyEnd - 1, keys, keysOfLength, copyEscaped);
    if (asked === undefined) return undefined;
    i = skipSpace(text, keyEnd);
    if (text.charCodeAt(i) !== COLON) return undefined;
    i = skipSpace(text, i + 1);
    const end = valueEnd(text, i, copyEscaped);
    if (end < 0) return undefined;
    if (asked !== null) {
      if (!isValue(text, i, end, copyEscaped)) return undefined;
      values.set(asked, text.slice(i, end));
    }
    i = skipSpace(text, end);
    const c = text.charCodeAt(i);
    if (c === COMMA) i = skipSpace(text, i + 1);
    else if (c === CLOSE_OBJECT) return skipSpace(text, i + 1) === text.length ? values : undefined;
    else return undefined;
  }
}
