import fc from 'fast-check';
import { asciiJson, asciiJsonOf } from '../../lib/db/asciiJson';
import { copyField, copyFieldValue } from '../../lib/db/copyFormat';
import { topLevelValueTexts } from '../../lib/db/topLevelJson';

/**
 * The registered keys' values read from an event's properties text (lib/db/topLevelJson.ts), which
 * the consumer's pending rows carry: the same values JSON.parse gives, whatever the object holds.
 */

/** The values topLevelValueTexts finds, each text parsed (unescaped from COPY text first, with `copyEscaped`). */
function topLevelValues(
  text: string,
  keys: ReadonlySet<string>,
  options: { copyEscaped?: boolean } = {},
): Map<string, unknown> | undefined {
  const texts = topLevelValueTexts(text, keys, options);
  if (texts === undefined) return undefined;
  const unescaped = (t: string) => (options.copyEscaped ? (copyFieldValue(t) ?? '') : t);
  return new Map([...texts].map(([key, t]) => [key, JSON.parse(unescaped(t)) as unknown]));
}

/** What the values would be from the parsed object: each asked key the object has, last copy winning. */
function fromParse(text: string, keys: ReadonlySet<string>): Map<string, unknown> {
  const object = JSON.parse(text) as Record<string, unknown>;
  const values = new Map<string, unknown>();
  for (const key of keys) if (Object.hasOwn(object, key)) values.set(key, object[key]);
  return values;
}

describe('top-level values of a JSON object', () => {
  it('finds what JSON.parse finds for any object, spaced or compact, in ASCII or not', () => {
    const key = fc.oneof(fc.constantFrom('$flow', '$message', 'a', 'Campaign Name', '__proto__', 'é"\\'), fc.string());
    fc.assert(
      fc.property(
        fc.dictionary(key, fc.jsonValue()),
        fc.uniqueArray(key, { maxLength: 4 }),
        fc.boolean(),
        (object, asked, spaced) => {
          const text = JSON.stringify(object, null, spaced ? 2 : undefined);
          const keys = new Set([...asked, ...Object.keys(object).slice(0, 2)]);
          expect(topLevelValues(text, keys)).toEqual(fromParse(text, keys));
          // Keys spelled with escapes, as asciiJson writes characters beyond ASCII.
          const escaped = asciiJson(text);
          expect(topLevelValues(escaped, keys)).toEqual(fromParse(escaped, keys));
          // As a field of COPY text, the way a queued event line carries it (compact, as written).
          const compact = asciiJsonOf(object);
          expect(topLevelValues(copyField(compact), keys, { copyEscaped: true })).toEqual(fromParse(compact, keys));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('keeps the last copy of a repeated key, as JSON.parse and jsonb do, and decodes escaped keys', () => {
    const text = '{"$flow":"first","nested":{"$flow":"inside"},"$fl\\u006fw":"last","q":"a \\"quoted\\" }"}';
    expect(topLevelValues(text, new Set(['$flow', 'q']))).toEqual(
      new Map([
        ['$flow', 'last'],
        ['q', 'a "quoted" }'],
      ]),
    );
  });

  it('steps over nested objects, arrays and strings holding brackets, quotes and backslashes', () => {
    const text = '{"x":[{"}":"]"},"\\\\",["{"]],"y":{"a":"\\\\\\"}"},"z":-1.5e3}';
    expect(topLevelValues(text, new Set(['z']))).toEqual(new Map([['z', -1500]]));
    expect(topLevelValues(copyField(text), new Set(['z', 'y']), { copyEscaped: true })).toEqual(
      new Map<string, unknown>([
        ['y', { a: '\\"}' }],
        ['z', -1500],
      ]),
    );
  });

  it('as COPY text, gives up on whitespace spelled as an escape between the tokens', () => {
    const spaced = JSON.stringify({ a: 1, b: 'x' }, null, 2);
    expect(topLevelValues(copyField(spaced), new Set(['a']), { copyEscaped: true })).toBeUndefined();
    expect(topLevelValues(spaced, new Set(['a']))).toEqual(new Map([['a', 1]]));
  });

  it('gives up on a text whose top level is not JSON, so that the caller parses it and says why', () => {
    for (const text of [
      '',
      '[]',
      '{"not": json}',
      '{"a":1,}',
      '{"a" 1}',
      '{"a":1} trailing',
      '{"a":"unended}',
      '{"a":[1,2}',
      '{"a":01}',
      '{a:1}',
      '{"a":1',
    ])
      expect(topLevelValues(text, new Set(['a']))).toBeUndefined();
    expect(topLevelValues(' { } ', new Set(['a']))).toEqual(new Map());
  });

  it('gives each value as the text spells it, COPY escapes and all', () => {
    const text = '{"n":1.50,"s":"caf\\u00e9 \\"x\\"","o":{"a":[1, 2]},"b":false}';
    expect(topLevelValueTexts(text, new Set(['n', 's', 'o', 'b']))).toEqual(
      new Map([
        ['n', '1.50'],
        ['s', '"caf\\u00e9 \\"x\\""'],
        ['o', '{"a":[1, 2]}'],
        ['b', 'false'],
      ]),
    );
    expect(topLevelValueTexts(copyField(text), new Set(['s']), { copyEscaped: true })).toEqual(
      new Map([['s', copyField('"caf\\u00e9 \\"x\\""')]]),
    );
  });

  it('gives up on a value asked for that JSON.parse refuses, and steps over one not asked for', () => {
    for (const value of ['"a\tb"', '"bad \\x escape"', '[1,}', '{"a":}'])
      expect(topLevelValueTexts(`{"a":${value}}`, new Set(['a']))).toBeUndefined();
    expect(topLevelValueTexts('{"a":1,"b":[1,,2]}', new Set(['a']))).toEqual(new Map([['a', '1']]));
  });
});
