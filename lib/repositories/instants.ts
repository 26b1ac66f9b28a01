/**
 * Instants compared as PostgreSQL stores them: in microseconds. "Newest updated wins" within one
 * request must agree with the statement that decides against the stored row, which compares
 * timestamptz values; JavaScript's Date keeps milliseconds only, so two copies 0.4 ms apart were a
 * tie and the first one in the request won.
 */
const ISO = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2})?(?:\.(\d+))?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * An ISO 8601 instant in microseconds since the epoch (exact in a double until the year 2255), with
 * more than six fractional digits rounded as PostgreSQL rounds them and a missing offset read as
 * UTC (as the ingest reads it); undefined for text that is not an instant.
 */
export function instantMicros(text: string): number | undefined {
  const parts = ISO.exec(text.trim());
  if (!parts) {
    const ms = Date.parse(text);
    return Number.isFinite(ms) ? ms * 1000 : undefined;
  }
  const [, date, minutes, seconds, fraction = '', rawOffset] = parts;
  const offset =
    rawOffset === undefined || rawOffset.toUpperCase() === 'Z'
      ? 'Z'
      : rawOffset.length === 3
        ? `${rawOffset}:00`
        : rawOffset.includes(':')
          ? rawOffset
          : `${rawOffset.slice(0, 3)}:${rawOffset.slice(3)}`;
  const wholeSecondMs = Date.parse(`${date}T${minutes}${seconds ?? ':00'}${offset}`);
  if (!Number.isFinite(wholeSecondMs)) return undefined;
  const digits = fraction.padEnd(7, '0');
  const micros = Number(digits.slice(0, 6)) + (Number(digits[6]) >= 5 ? 1 : 0);
  return wholeSecondMs * 1000 + micros;
}

/** Whether `a` is strictly later than `b`; a missing or unreadable instant is never later. */
export function isLaterInstant(a: string | null | undefined, b: string | null | undefined): boolean {
  const x = a ? instantMicros(a) : undefined;
  if (x === undefined) return false;
  const y = b ? instantMicros(b) : undefined;
  return y === undefined || x > y;
}
