/**
 * JSON text with every character beyond ASCII written as its `\uXXXX` escape (a character beyond
 * the BMP as its two surrogates' escapes, as JSON spells it): the same value for JSON.parse and for
 * PostgreSQL's jsonb, in bytes that are all ASCII.
 *
 * Why the queue's messages (and the COPY text made from the same events) are written so: one
 * character beyond ASCII, an emoji in one subject line, makes a whole SQS event a two-byte string once
 * decoded, and every message and line sliced from it too. Decoding the event is then about three
 * times slower, and every later step over those strings slower too, up to the UTF-8 encoding of the
 * COPY text (docs/queue.md has the figures). The cost is three to eight more bytes for each such
 * character, and only where there are some.
 */
const BEYOND_ASCII = /[\u0080-\uffff]/;
const BEYOND_ASCII_ALL = /[\u0080-\uffff]/g;

const escaped = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

export function asciiJson(json: string): string {
  return BEYOND_ASCII.test(json) ? json.replace(BEYOND_ASCII_ALL, escaped) : json;
}

/** JSON.stringify's text of a value, in ASCII (asciiJson). */
export function asciiJsonOf(value: unknown): string {
  return asciiJson(JSON.stringify(value) ?? 'null');
}
