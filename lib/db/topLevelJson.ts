/**
 * The values of a few top-level keys of a JSON object's text, each parsed on its own, the rest of the
 * object stepped over without being built.
 *
 * Why: an event's pending row carries the values of the registered dimension keys (a handful) of
 * its properties, and the consumer makes it for every event of a batch while the events' COPY runs.
 * Parsing the whole properties object for that built every key and value of it, about a tenth of
 * the consumer's client work and of its garbage (docs/queue.md). Stepping over the text finds the
 * same values: JSON.parse's (the last of a repeated key, as JSON.parse and jsonb keep), since each is
 * given to JSON.parse alone.
 *
 * What it checks: the object's top level (keys, colons, commas, its scalar values) as JSON.parse
 * would; nested objects and arrays it steps over are only matched by their brackets and strings, so
 * malformed JSON inside them is left for PostgreSQL to refuse when the text is stored (jsonb reads
 * all of it). Returns undefined for a text it cannot walk, so that the caller parses it whole and
 * JSON.parse says why.
 */

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

/** The index after the string that starts (with its quote) at `at`, or -1 when it does not end. */
function stringEnd(text: string, at: number): number {
  let from = at + 1;
  for (;;) {
    const quote = text.indexOf('"', from);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes += 1;
    if (backslashes % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** The index after the object or array that starts at `at`, found by its brackets; -1 when it does not end. */
function nestedEnd(text: string, at: number): number {
  let depth = 0;
  for (let i = at; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
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

function valueEnd(text: string, at: number): number {
  const c = text.charCodeAt(at);
  if (c === QUOTE) return stringEnd(text, at);
  if (c === OPEN_OBJECT || c === OPEN_ARRAY) return nestedEnd(text, at);
  return scalarEnd(text, at);
}

function parsed(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

/** The values of `keys` the object in `text` has at its top level (see above), or undefined. */
export function topLevelValues(text: string, keys: ReadonlySet<string>): Map<string, unknown> | undefined {
  const values = new Map<string, unknown>();
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_OBJECT) return undefined;
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) === CLOSE_OBJECT) return skipSpace(text, i + 1) === text.length ? values : undefined;
  for (;;) {
    if (text.charCodeAt(i) !== QUOTE) return undefined;
    const keyEnd = stringEnd(text, i);
    if (keyEnd < 0) return undefined;
    const spelled = text.slice(i + 1, keyEnd - 1);
    let key = spelled;
    if (spelled.includes('\\')) {
      const decoded = parsed(text.slice(i, keyEnd));
      if (decoded === undefined) return undefined;
      key = decoded.value as string;
    }
    i = skipSpace(text, keyEnd);
    if (text.charCodeAt(i) !== COLON) return undefined;
    i = skipSpace(text, i + 1);
    const end = valueEnd(text, i);
    if (end < 0) return undefined;
    if (keys.has(key)) {
      const value = parsed(text.slice(i, end));
      if (value === undefined) return undefined;
      values.set(key, value.value);
    }
    i = skipSpace(text, end);
    const c = text.charCodeAt(i);
    if (c === COMMA) i = skipSpace(text, i + 1);
    else if (c === CLOSE_OBJECT) return skipSpace(text, i + 1) === text.length ? values : undefined;
    else return undefined;
  }
}
