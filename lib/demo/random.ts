/**
 * Seeded pseudo-random numbers for the demo generator. sfc32 (Chris Doty-Humphrey's Small Fast
 * Counting generator): 128 bits of state, so ten million events that each draw tens of numbers stay
 * far from its period, and it needs only 32-bit integer arithmetic, which V8 runs at full speed.
 * Output depends on nothing but the seed, on every platform.
 */

/** splitmix32: spreads a small or structured seed (0, 1, 2, index-based) over all 32 bits. */
export function mix32(value: number): number {
  let z = (value + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Combines a seed with a stream number (a profile's index, a vocabulary's name) into one seed. */
export function deriveSeed(seed: number, stream: number): number {
  return mix32((mix32(seed) ^ Math.imul(stream + 1, 0x27d4eb2f)) >>> 0);
}

export class Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = mix32(seed);
    this.b = mix32(this.a ^ 0x6a09e667);
    this.c = mix32(this.b ^ 0xbb67ae85);
    this.d = 1;
    // The first outputs of a freshly seeded sfc32 are correlated with the seed.
    for (let i = 0; i < 12; i += 1) this.uint32();
  }

  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Uniform integer in [min, max]. */
  between(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new RangeError('pick from an empty list');
    return item;
  }

  /** A log-normal draw: prices, basket sizes and delays are skewed, not bell-shaped. */
  logNormal(median: number, sigma: number): number {
    // Box-Muller; 1 - next() keeps the logarithm's argument away from zero.
    const u = 1 - this.next();
    const v = this.next();
    return median * Math.exp(sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
  }
}

const BASE62_CODES = Array.from('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', (c) =>
  c.charCodeAt(0),
);
const CROCKFORD32_CODES = Array.from('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (c) => c.charCodeAt(0));
const HEX_CODES = Array.from('0123456789abcdef', (c) => c.charCodeAt(0));
const DASH = 45;
const ZERO = 48;

/*
 * Ids and datetimes are built from character codes passed to String.fromCharCode as separate
 * arguments: one flat string per id, and several times faster than concatenating characters or
 * spreading an array (measured), which matters at millions of events per run.
 */
const B = (index: number) => BASE62_CODES[index] as number;
const X = (index: number) => HEX_CODES[index] as number;
const K = (index: number) => CROCKFORD32_CODES[index] as number;

/** `length` base-62 characters from the generator (5 per draw: 62^5 < 2^32; the bias is irrelevant for fake ids). */
export function base62(random: Random, length: number): string {
  let out = '';
  while (out.length < length) {
    const w = random.uint32();
    const n = Math.min(5, length - out.length);
    const c0 = B(w % 62);
    const c1 = B(Math.floor(w / 62) % 62);
    const c2 = B(Math.floor(w / 3844) % 62);
    const c3 = B(Math.floor(w / 238_328) % 62);
    const c4 = B(Math.floor(w / 14_776_336) % 62);
    out +=
      n === 5
        ? String.fromCharCode(c0, c1, c2, c3, c4)
        : n === 4
          ? String.fromCharCode(c0, c1, c2, c3)
          : n === 3
            ? String.fromCharCode(c0, c1, c2)
            : n === 2
              ? String.fromCharCode(c0, c1)
              : String.fromCharCode(c0);
  }
  return out;
}

/** A fixed-width base62 rendering of a non-negative integer (below 2^53). */
export function base62Fixed(value: number, length: number): string {
  let out = '';
  let rest = value;
  for (let i = 0; i < length; i += 1) {
    out = String.fromCharCode(B(rest % 62)) + out;
    rest = Math.floor(rest / 62);
  }
  return out;
}

/**
 * A 12-character id, unique per sequence number below 62^7: five random characters, then the
 * sequence's seven base-62 digits, each shifted by a hash of the digits below it. The shift is a
 * bijection (digits are recovered from the lowest up), and it makes consecutive ids look unrelated.
 */
export function sequenceId(random: Random, sequence: number, key: number): string {
  const w = random.uint32();
  const shifted: number[] = SHIFTED;
  let rest = sequence;
  let state = key;
  for (let i = 6; i >= 0; i -= 1) {
    const digit = rest % 62;
    rest = Math.floor(rest / 62);
    shifted[i] = B((digit + (state % 62)) % 62);
    state = mix32(state ^ Math.imul(digit + 1, 0x2545f491));
  }
  const s = shifted as [number, number, number, number, number, number, number];
  return String.fromCharCode(
    B(w % 62),
    B(Math.floor(w / 62) % 62),
    B(Math.floor(w / 3844) % 62),
    B(Math.floor(w / 238_328) % 62),
    B(Math.floor(w / 14_776_336) % 62),
    s[0],
    s[1],
    s[2],
    s[3],
    s[4],
    s[5],
    s[6],
  );
}
const SHIFTED: number[] = [0, 0, 0, 0, 0, 0, 0];

/** A ULID (the shape of Klaviyo's 26-character profile ids): 48-bit milliseconds, then 80 bits from four words. */
export function ulidFromWords(epochMs: number, a: number, b: number, c: number, d: number): string {
  const t = Math.max(0, Math.floor(epochMs));
  const high = Math.floor(t / 1_073_741_824); // top 18 bits: 2^30
  const low = t % 1_073_741_824; // bottom 30 bits
  return String.fromCharCode(
    K((high >>> 15) & 31),
    K((high >>> 10) & 31),
    K((high >>> 5) & 31),
    K(high & 31),
    K((low >>> 25) & 31),
    K((low >>> 20) & 31),
    K((low >>> 15) & 31),
    K((low >>> 10) & 31),
    K((low >>> 5) & 31),
    K(low & 31),
    K(a & 31),
    K((a >>> 5) & 31),
    K((a >>> 10) & 31),
    K((a >>> 15) & 31),
    K(b & 31),
    K((b >>> 5) & 31),
    K((b >>> 10) & 31),
    K((b >>> 15) & 31),
    K(c & 31),
    K((c >>> 5) & 31),
    K((c >>> 10) & 31),
    K((c >>> 15) & 31),
    K(d & 31),
    K((d >>> 5) & 31),
    K((d >>> 10) & 31),
    K((d >>> 15) & 31),
  );
}

/** An RFC 4122 version-4 UUID drawn from the generator. */
export function uuid4(random: Random): string {
  const a = random.uint32();
  const b = random.uint32();
  const c = random.uint32();
  const d = random.uint32();
  return String.fromCharCode(
    X((a >>> 28) & 15),
    X((a >>> 24) & 15),
    X((a >>> 20) & 15),
    X((a >>> 16) & 15),
    X((a >>> 12) & 15),
    X((a >>> 8) & 15),
    X((a >>> 4) & 15),
    X(a & 15),
    DASH,
    X((b >>> 28) & 15),
    X((b >>> 24) & 15),
    X((b >>> 20) & 15),
    X((b >>> 16) & 15),
    DASH,
    X(4),
    X((b >>> 8) & 15),
    X((b >>> 4) & 15),
    X(b & 15),
    DASH,
    X(8 | ((c >>> 28) & 3)),
    X((c >>> 24) & 15),
    X((c >>> 20) & 15),
    X((c >>> 16) & 15),
    DASH,
    X((c >>> 12) & 15),
    X((c >>> 8) & 15),
    X((c >>> 4) & 15),
    X(c & 15),
    X((d >>> 28) & 15),
    X((d >>> 24) & 15),
    X((d >>> 20) & 15),
    X((d >>> 16) & 15),
    X((d >>> 12) & 15),
    X((d >>> 8) & 15),
    X((d >>> 4) & 15),
    X(d & 15),
  );
}

/**
 * Unix seconds as Klaviyo writes datetimes: 2022-11-08T01:23:45+00:00. The civil date comes from
 * Howard Hinnant's days-to-date algorithm: a Date object and toISOString per event cost more than
 * building the rest of the event.
 */
export function isoSeconds(seconds: number): string {
  const days = Math.floor(seconds / 86_400);
  const secondOfDay = seconds - days * 86_400;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const mp = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const hour = Math.floor(secondOfDay / 3600);
  const minute = Math.floor((secondOfDay % 3600) / 60);
  const second = secondOfDay % 60;
  return String.fromCharCode(
    ZERO + (Math.floor(year / 1000) % 10),
    ZERO + (Math.floor(year / 100) % 10),
    ZERO + (Math.floor(year / 10) % 10),
    ZERO + (year % 10),
    DASH,
    ZERO + Math.floor(month / 10),
    ZERO + (month % 10),
    DASH,
    ZERO + Math.floor(day / 10),
    ZERO + (day % 10),
    84 /* T */,
    ZERO + Math.floor(hour / 10),
    ZERO + (hour % 10),
    58 /* : */,
    ZERO + Math.floor(minute / 10),
    ZERO + (minute % 10),
    58,
    ZERO + Math.floor(second / 10),
    ZERO + (second % 10),
    43 /* + */,
    ZERO,
    ZERO,
    58,
    ZERO,
    ZERO,
  );
}
