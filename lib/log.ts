import { logLevelFromEnv } from './config';

/**
 * Structured JSON logs, one object per line. Everything passes through `redact`, so an email,
 * a phone number or a key cannot reach CloudWatch even when it hides inside an error message
 * or a Postgres error detail (e.g. "Key (email)=(a@b.c) already exists").
 */
type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export type LogFields = Record<string, unknown>;
type Sink = (line: string) => void;

let sink: Sink = (line) => process.stdout.write(line + '\n');
let threshold = order[logLevelFromEnv()];

/** Tests capture every line to prove that nothing personal is logged. */
export function setLogSink(next: Sink | undefined): void {
  sink = next ?? ((line) => process.stdout.write(line + '\n'));
}

export function setLogLevel(level: Level | 'silent'): void {
  threshold = order[level];
}

export function isDebugEnabled(): boolean {
  return threshold <= order.debug;
}

const SENSITIVE_KEY =
  /^(email|e-mail|phone|phone_number|\$email|\$phone_number|authorization|api[_-]?key|password|secret|token|x-api-key)$/i;
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
// E.164 and common national formats: a run of 7+ digits with optional separators, standing alone:
// digits glued to letters or hyphens are part of an id (a UUID's groups read like a dashed number).
const PHONE = /(?<![\w-])\+?\(?\d[\d\s().-]{6,}\d(?![\w-])/g;
const BEARER = /(bearer|klaviyo-api-key)\s+[^\s"',;]+/gi;

export function redactText(text: string): string {
  return text.replace(BEARER, '$1 [redacted]').replace(EMAIL, '[email]').replace(PHONE, redactPhone);
}

/** Digit runs are also timestamps, dates, addresses and ids: only what reads as a phone number goes. */
function redactPhone(match: string): string {
  if (/^\d{1,3}(\.\d{1,3}){3}/.test(match) || /^\d{4}-\d{2}-\d{2}/.test(match)) return match;
  const digits = match.replace(/\D/g, '').length;
  const looksLikePhone = match.startsWith('+') ? digits >= 7 : digits >= 10 && digits <= 15 && /[\s().-]/.test(match);
  return looksLikePhone ? '[phone]' : match;
}

export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8) return '[depth]';
  if (typeof value === 'string') return redactText(value);
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return {
      name: value.name,
      message: redactText(value.message),
      ...(code !== undefined ? { code } : {}),
      ...(value.stack ? { stack: redactText(value.stack.split('\n').slice(0, 6).join('\n')) } : {}),
    };
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SENSITIVE_KEY.test(k) ? '[redacted]' : redact(v, depth + 1);
    }
    return out;
  }
  return value;
}

/** One log contract: every top-level key in snake_case, whatever the caller's field names. */
const snakeCase = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function write(level: Level, message: string, fields?: LogFields): void {
  if (order[level] < threshold) return;
  const entry: LogFields = { level, time: new Date().toISOString(), message: redactText(message) };
  for (const [key, value] of Object.entries(redact(fields ?? {}) as LogFields)) entry[snakeCase(key)] = value;
  sink(JSON.stringify(entry));
}

export const log = {
  debug: (message: string, fields?: LogFields) => write('debug', message, fields),
  info: (message: string, fields?: LogFields) => write('info', message, fields),
  warn: (message: string, fields?: LogFields) => write('warn', message, fields),
  error: (message: string, fields?: LogFields) => write('error', message, fields),
};
