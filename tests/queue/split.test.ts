import { planEventsPage } from '../../lib/app/ingest';
import { planBulkCreate } from '../../lib/app/ingest/klaviyoWrites';
import { ingestMessages } from '../../lib/app/ingest/enqueue';
import { planFromLines, splitPlanAsEventLines } from '../../lib/app/ingest/queueCopyRows';
import {
  AnyQueuedMessageSchema,
  framedMessage,
  queuedEventLinesMessages,
  queuedMessages,
  queuedRowsMessages,
  splitForQueue,
} from '../../lib/app/ingest/queueMessages';
import { planFromRows, splitPlanForQueue } from '../../lib/app/ingest/queueRows';
import { copyTextOf } from '../../lib/db/copyFormat';
import { EVENT_COLUMNS, eventCopyRow, plainEvent, type NewEvent } from '../../lib/repositories/events';
import { plainProfile, type ProfileUpsert } from '../../lib/repositories/profiles';
import { eventsPage } from '../ingest/helpers';

/**
 * Splitting a validated request into queue messages (lib/app/ingest/queueMessages.ts): every
 * message fits, and the parts together plan exactly what the whole plans, so that the consumer
 * stores what the synchronous path would.
 */
const now = new Date('2024-06-01T00:00:00Z');
const bytes = (text: string) => Buffer.byteLength(text, 'utf8');
const options = { now, maxResources: 1000 };
const context = { accountId: 'default', acceptedAt: now, requestId: 'r-1' };

describe('splitting a request into queue messages', () => {
  beforeAll(() => {
    // The route's limits come from the configuration, which needs a database address (unused here).
    process.env.INGEST_MAX_RESOURCES = '1000';
    process.env.DATABASE_URL ??= 'postgres://unused@127.0.0.1:1/unused';
  });

  it.each([16_384, 65_536, 262_144])(
    'a page, at most %i bytes a message: every part fits, together they are the page',
    (max) => {
      const page = eventsPage({ events: 400, prefix: 's', metrics: 5, profiles: 60 });
      // An included profile no event names is stored all the same.
      page.included.push({ type: 'profile', id: 'Plonely', attributes: { email: 'lonely@example.com' } });
      const parts = splitForQueue('events-page', page, max);
      const messages = queuedMessages('events-page', parts, context);
      for (const m of messages) expect(bytes(m)).toBeLessThanOrEqual(max);
      if (max < 262_144) expect(messages.length).toBeGreaterThan(1);
      const whole = planEventsPage(page, options);
      const planned = parts.map((part) => planEventsPage(part, options));
      expect(planned.flatMap((p) => p.events).sort((a, b) => (a.id < b.id ? -1 : 1))).toEqual(whole.events);
      const ids = (list: { id: string; isStub: boolean }[]) =>
        [...new Set(list.filter((x) => !x.isStub).map((x) => x.id))].sort();
      expect(ids(planned.flatMap((p) => p.profiles))).toEqual(ids(whole.profiles));
      expect(ids(planned.flatMap((p) => p.metrics))).toEqual(ids(whole.metrics));
      // Each part carries the included resources its events name, so no event of it waits on a stub.
      for (const p of planned) expect(p.profiles.filter((x) => x.isStub)).toEqual([]);
      expect(messages.map((m) => JSON.parse(m))).toEqual(
        parts.map((body, part) => ({
          v: 1,
          kind: 'events-page',
          account_id: 'default',
          accepted_at: now.toISOString(),
          request_id: 'r-1',
          part,
          parts: parts.length,
          body,
        })),
      );
    },
  );

  // Version 4 is what the route sends; versions 3 and 2 are still read (messages queued before it).
  it.each([
    [4, 16_384],
    [4, 65_536],
    [4, 262_144],
    [3, 16_384],
    [3, 65_536],
    [3, 262_144],
    [2, 16_384],
    [2, 262_144],
  ])(
    'a page queued as the route queues it (version %i), at most %i bytes a message: every part fits, together they are the page',
    (version, max) => {
      const page = eventsPage({ events: 400, prefix: 'r', metrics: 5, profiles: 60, includeMetrics: max > 16_384 });
      page.included.push({ type: 'profile', id: 'Plonely', attributes: { email: 'lonely@example.com' } });
      // Text COPY must escape, and properties of their own (not the raw event's), travel too.
      page.data[0].attributes.event_properties.note = 'tab\there\nnew line, "quoted", back\\slash, \r, é 😀';
      page.data[0].id = 'r\\id\twith\nescapes';
      delete page.data[1].attributes.event_properties;
      const whole = planEventsPage(page, options);
      const { received, messages } =
        version === 4
          ? ingestMessages('events-page', page, { ...context, maxMessageBytes: max })
          : version === 3
            ? {
                received: whole.received,
                messages: queuedEventLinesMessages(
                  splitPlanAsEventLines(whole, max, () => '/data'),
                  context,
                ),
              }
            : {
                received: whole.received,
                messages: queuedRowsMessages(
                  splitPlanForQueue(whole, max, () => '/data'),
                  context,
                ),
              };
      expect(received).toBe(400);
      for (const m of messages) expect(bytes(m)).toBeLessThanOrEqual(max);
      if (max < 262_144) expect(messages.length).toBeGreaterThan(1);
      const framed = messages.map(framedMessage);
      const envelopes = framed.map((f) => AnyQueuedMessageSchema.parse(JSON.parse(f.json)));
      envelopes.forEach((e, part) =>
        expect({ ...e, body: undefined }).toEqual({
          v: version,
          kind: 'events-page',
          account_id: 'default',
          accepted_at: now.toISOString(),
          request_id: 'r-1',
          part,
          parts: messages.length,
          body: undefined,
        }),
      );
      const planned = envelopes.map((e, i) =>
        e.v === 3 || e.v === 4
          ? planFromLines(e.body, framed[i]?.lines ?? '')
          : e.v === 2
            ? planFromRows(e.body)
            : planEventsPage(e.body, options),
      );
      const events = planned.flatMap((p) => p.events).sort((a, b) => (a.id < b.id ? -1 : 1));
      if (version !== 2)
        // The line COPY is sent is the text of the row COPY would be sent from the mapped event.
        for (const e of events) {
          const mapped = whole.events.find((w) => w.id === e.id) as NewEvent;
          expect(`default\t${e.copyLine}`).toBe(
            copyTextOf([eventCopyRow('default', mapped)], EVENT_COLUMNS.length).slice(0, -1),
          );
        }
      // What the whole page plans, row for row (the rows went through the queue's text).
      const expected = JSON.parse(JSON.stringify(whole)) as ReturnType<typeof planEventsPage>;
      expect(events.map(plainEvent)).toEqual(expected.events);
      const byId = <T extends { id: string }>(list: T[]) => [...new Map(list.map((x) => [x.id, x])).values()];
      const sorted = <T extends { id: string }>(list: T[]) => list.sort((a, b) => (a.id < b.id ? -1 : 1));
      expect(sorted(byId(planned.flatMap((p) => p.profiles))).map(plainProfile)).toEqual(expected.profiles);
      expect(sorted(byId(planned.flatMap((p) => p.metrics)))).toEqual(expected.metrics);
      // Each part carries the rows its events name, as the whole has them (a full copy, or a stub).
      for (const p of planned) {
        const profiles = new Map(p.profiles.map((x) => [x.id, plainProfile(x)]));
        const metrics = new Map(p.metrics.map((x) => [x.id, x]));
        for (const e of p.events) {
          expect(metrics.get(e.metricId)).toEqual(expected.metrics.find((m) => m.id === e.metricId));
          if (e.profileId !== null)
            expect(profiles.get(e.profileId)).toEqual(expected.profiles.find((x) => x.id === e.profileId));
        }
      }
    },
  );

  it('Bulk Create: by profile entry, and an entry too large for one message by its events', () => {
    const entry = (i: number, events: number) => ({
      type: 'event-bulk-create',
      attributes: {
        profile: { data: { type: 'profile', attributes: { email: `b${i}@example.com` } } },
        events: {
          data: Array.from({ length: events }, (_, k) => ({
            type: 'event',
            attributes: {
              properties: { k, filler: 'f'.repeat(200) },
              unique_id: `u-${i}-${k}`,
              time: '2024-05-01T10:00:00Z',
              metric: { data: { type: 'metric', attributes: { name: 'Split' } } },
            },
          })),
        },
      },
    });
    const body = {
      data: {
        type: 'event-bulk-create-job',
        attributes: { 'events-bulk-create': { data: [entry(0, 3), entry(1, 200), entry(2, 5)] } },
      },
    };
    const parts = splitForQueue('bulk-create', body, 16_384);
    for (const m of queuedMessages('bulk-create', parts, context)) expect(bytes(m)).toBeLessThanOrEqual(16_384);
    const events = (entries: ReturnType<typeof planBulkCreate>) =>
      entries.flatMap((e) => e.events.map((ev) => `${e.identity.attributes?.email}:${ev.attributes.unique_id}`)).sort();
    expect(parts.flatMap((p) => events(planBulkCreate(p, options))).sort()).toEqual(
      events(planBulkCreate(body, options)),
    );
  });

  it('a page with a control character outside its JSON travels as rows of JSON (version 2), which SQS can carry', () => {
    const page = eventsPage({ events: 20, prefix: 'ctl', metrics: 2, profiles: 4 });
    page.data[5].attributes.unique_id = 'bell\u0007';
    const { messages } = ingestMessages('events-page', page, { ...context, maxMessageBytes: 16_384 });
    // eslint-disable-next-line no-control-regex
    for (const m of messages) expect(m).not.toMatch(/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/);
    const envelopes = messages.map((m) => AnyQueuedMessageSchema.parse(JSON.parse(m)));
    expect(envelopes.map((e) => e.v)).toEqual(messages.map(() => 2));
    const events = envelopes.flatMap((e) => (e.v === 2 ? planFromRows(e.body).events : []));
    expect(events.find((e) => e.id === 'ctl000005')?.uniqueId).toBe('bell\u0007');
    // Without it, the same page travels as COPY lines.
    page.data[5].attributes.unique_id = 'bell';
    const plain = ingestMessages('events-page', page, { ...context, maxMessageBytes: 16_384 }).messages;
    expect(plain.map((m) => (JSON.parse(framedMessage(m).json) as { v: number }).v)).toEqual(plain.map(() => 4));
  });

  it('a page whose characters beyond ASCII are all in its JSON travels in ASCII, to the same rows, and still fits', () => {
    const page = eventsPage({ events: 120, prefix: 'asc', metrics: 3, profiles: 12 });
    // A subject line with an emoji (beyond the BMP), an em dash, accents, a line separator, and text
    // that only looks like an escape; the profiles' names and locations too.
    page.data.forEach((event, i) => {
      event.attributes.event_properties.Subject = `Soldes d\u00e9j\u00e0 — été 🎉 ${i}\u2028 ${'日本語'.repeat(i % 40)}`;
    });
    page.included.forEach((resource) => {
      if (resource.type === 'profile')
        Object.assign(resource.attributes, {
          first_name: 'Zoë 🎉',
          location: { city: 'Łódź' },
          properties: { bio: '日本語'.repeat(300) },
        });
    });
    const whole = planEventsPage(page, options);
    const { messages } = ingestMessages('events-page', page, { ...context, maxMessageBytes: 16_384 });
    expect(messages.length).toBeGreaterThan(1);
    for (const m of messages) {
      expect(bytes(m)).toBeLessThanOrEqual(16_384);
      expect(m).not.toMatch(/[\u0080-\uffff]/);
    }
    const planned = messages.map((m) => {
      const framed = framedMessage(m);
      const envelope = AnyQueuedMessageSchema.parse(JSON.parse(framed.json));
      if (envelope.v !== 4) throw new Error('not version 4');
      return planFromLines(envelope.body, framed.lines ?? '');
    });
    const events = planned.flatMap((p) => p.events).sort((a, b) => (a.id < b.id ? -1 : 1));
    expect(events.map((e) => e.properties)).toEqual(whole.events.map((e) => e.properties));
    expect(events.map(plainEvent)).toEqual(JSON.parse(JSON.stringify(whole.events)));
    const profiles = new Map(planned.flatMap((p) => p.profiles).map((x) => [x.id, x]));
    for (const p of whole.profiles) expect(plainProfile(profiles.get(p.id) as ProfileUpsert)).toEqual(p);
  });

  it('a page of included resources and no events: one version 4 message with a profile line and no event lines', () => {
    const page = {
      data: [],
      included: [{ type: 'profile', id: 'Palone', attributes: { email: 'alone@example.com' } }],
    };
    const { messages } = ingestMessages('events-page', page, { ...context, maxMessageBytes: 16_384 });
    expect(messages).toHaveLength(1);
    const framed = framedMessage(messages[0] as string);
    expect(framed.lines?.split('\n')).toHaveLength(1);
    const envelope = AnyQueuedMessageSchema.parse(JSON.parse(framed.json));
    expect(envelope).toMatchObject({ v: 4, body: { profiles: 1, events: 0 } });
    if (envelope.v !== 4) throw new Error('not version 4');
    const plan = planFromLines(envelope.body, framed.lines ?? '');
    expect(plan.events).toEqual([]);
    expect(plan.profiles.map(plainProfile)).toEqual(planEventsPage(page, options).profiles);
    // And with nothing at all: a head and an empty line.
    const [empty] = ingestMessages('events-page', { data: [] }, { ...context, maxMessageBytes: 16_384 }).messages;
    expect(framedMessage(empty as string).lines).toBe('');
  });

  it("reads a version 4 profile's resource only when the write asks for more than its id and updated, and checks it then", () => {
    const page = eventsPage({ events: 2, prefix: 'lazy', metrics: 1, profiles: 1 });
    const [message] = ingestMessages('events-page', page, { ...context, maxMessageBytes: 16_384 }).messages;
    const framed = framedMessage(message as string);
    const envelope = AnyQueuedMessageSchema.parse(JSON.parse(framed.json));
    if (envelope.v !== 4) throw new Error('not version 4');
    const [profileLine, ...eventLines] = (framed.lines ?? '').split('\n') as [string, ...string[]];
    const withProfile = (change: (fields: string[]) => void) => {
      const fields = profileLine.split('\t');
      change(fields);
      return [fields.join('\t'), ...eventLines].join('\n');
    };
    const expected = planEventsPage(page, options).profiles[0] as ProfileUpsert & { isStub: false };
    // A resource that is not JSON at all: the id and updated are read, the resource only when asked.
    const unread = planFromLines(
      envelope.body,
      withProfile((f) => (f[2] = '{not json}')),
    ).profiles[0] as ProfileUpsert & { isStub: false };
    expect([unread.id, unread.updated]).toEqual([expected.id, expected.updated]);
    expect(() => unread.email).toThrow('a JSON field of a line is not JSON');
    // An updated that is not its resource's, and a resource of another profile.
    const stale = planFromLines(
      envelope.body,
      withProfile((f) => (f[1] = '2999-01-01T00:00:00.000Z')),
    ).profiles[0] as ProfileUpsert & { isStub: false };
    expect(() => stale.rawData).toThrow("the line's updated is not its resource's");
    const other = planFromLines(
      envelope.body,
      withProfile((f) => (f[2] = (f[2] as string).replace(expected.id, 'Pother'))),
    ).profiles[0] as ProfileUpsert & { isStub: false };
    expect(() => other.created).toThrow('the line holds no profile resource of its id');
    // Profiles events name but the page does not include travel as stubs: an id alone.
    const named = eventsPage({ events: 2, prefix: 'stub', metrics: 1, profiles: 1, includeProfiles: false });
    const [stubs] = ingestMessages('events-page', named, { ...context, maxMessageBytes: 16_384 }).messages;
    const stubFramed = framedMessage(stubs as string);
    const stubEnvelope = AnyQueuedMessageSchema.parse(JSON.parse(stubFramed.json));
    if (stubEnvelope.v !== 4) throw new Error('not version 4');
    expect(stubFramed.lines?.split('\n')[0]).toBe('Pstub0\t\\N\t\\N');
    expect(planFromLines(stubEnvelope.body, stubFramed.lines ?? '').profiles).toEqual([{ id: 'Pstub0', isStub: true }]);
    // Lines whose form is wrong are refused as the message is read.
    for (const [change, why] of [
      [(f: string[]) => f.pop(), /\/profiles\/0: 2 fields, not 3/],
      [(f: string[]) => (f[0] = '\\N'), /\/profiles\/0: the id is required/],
      [(f: string[]) => (f[2] = '[]'), /\/profiles\/0: the resource is not a JSON object/],
      [(f: string[]) => (f[2] = '\\N'), /\/profiles\/0: a profile without a resource has no updated/],
    ] as const)
      expect(() => planFromLines(envelope.body, withProfile(change))).toThrow(why);
  });

  it('refuses with 413 and its pointer what no message can hold', () => {
    const page = eventsPage({ events: 3, prefix: 't' });
    page.data[2].attributes.event_properties.blob = 'x'.repeat(20_000);
    const refused = expect.objectContaining({ status: 413, items: [expect.objectContaining({ pointer: '/data/2' })] });
    expect(() => splitForQueue('events-page', page, 16_384)).toThrow(refused);
    // As rows too: the pointer is the event's place in the request, not in the sorted rows.
    page.data.reverse();
    expect(() => ingestMessages('events-page', page, { ...context, maxMessageBytes: 16_384 })).toThrow(
      expect.objectContaining({ status: 413, items: [expect.objectContaining({ pointer: '/data/0' })] }),
    );
  });
});
