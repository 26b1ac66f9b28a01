import { log, redactText, setLogLevel, setLogSink } from '../lib/log';

describe('log redaction', () => {
  it('removes emails, phone numbers and keys from text', () => {
    expect(redactText('user sarah.mason@klaviyo-demo.com called +15005550006 and (500) 555-0006')).toBe(
      'user [email] called [phone] and [phone]',
    );
    expect(redactText('Authorization: Bearer abc123 / Klaviyo-API-Key pk_live_1')).toBe(
      'Authorization: Bearer [redacted] / Klaviyo-API-Key [redacted]',
    );
  });

  it('keeps addresses, dates and ids readable', () => {
    const text = 'connect 127.0.0.1:5432 at 2024-01-02T03:04:05Z id 01GDDKASAP8TKDDA2GRZDSVP4H ts 1667870625';
    expect(redactText(text)).toBe(text);
    // A UUID's digit groups joined by hyphens once read as a dashed phone number.
    const uuids = 'event abcfb975-ae12-3456-7890-d87bf831d000 and 12345678-1234-1234-1234-123456789abc';
    expect(redactText(uuids)).toBe(uuids);
    expect(redactText('call 555-123-4567, or +44 20 7946 0958.')).toBe('call [phone], or [phone].');
  });

  it('redacts sensitive keys and nested values in structured fields', () => {
    const lines: string[] = [];
    setLogSink((line) => lines.push(line));
    setLogLevel('info');
    log.info('ingest', {
      email: 'a@b.co',
      nested: { phone_number: '+4420', note: 'mail a@b.co' },
      authorization: 'Bearer x',
    });
    setLogSink(undefined);
    setLogLevel('silent');
    const entry = JSON.parse(lines[0] ?? '{}');
    expect(entry).toMatchObject({ level: 'info', message: 'ingest', email: '[redacted]', authorization: '[redacted]' });
    expect(entry.nested).toEqual({ phone_number: '[redacted]', note: 'mail [email]' });
  });
});
