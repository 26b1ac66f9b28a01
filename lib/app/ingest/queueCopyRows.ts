import { z } from 'zod';
import { checkedCopyLine, copyField, copyFieldValue, copyLineOf } from '../../db/copyFormat';
import { EVENT_COLUMNS, eventScalars, type NewEvent } from '../../repositories/events';
import type { EventsPagePlan } from './eventsPage';
import {
  eventPropertiesOf,
  InvalidRowsError,
  MetricRowSchema,
  ProfileRowSchema,
  resourcesFromRows,
  splitPlanAs,
  type PlanPart,
} from './queueRows';
import { asciiJsonOf } from '../../db/asciiJson';
import { isPlainObject } from './validation';

/**
 * A page of events on the queue as the COPY text of its events (envelope version 3, docs/queue.md):
 * the message is a line of JSON (the envelope, and the metrics and profiles as in version 2), then
 * one line per event, the fields of klaviyo_events after account_id in COPY's text format. The
 * consumer streams those lines into the events' COPY, after the account id, instead of parsing each
 * event's JSON into objects and serialising it back to text (version 2: about half the consumer's
 * client work on a batch).
 *
 * The queue stays a trust boundary: each line is checked before any database work (its number of
 * fields, only the escapes this process writes, the JSON columns shaped as objects, the id, time and
 * metric present, the metric and profile among the message's own), and what the database refuses in
 * a line that passed (JSON it cannot parse, a time, a value) makes the message a reject, as for the
 * other versions.
 *
 * A page's event properties are its raw event's `attributes.event_properties`: they travel once,
 * inside raw_data, and the properties field says where (`@start:end`, the span of raw_data's escaped
 * text that spells them), so the consumer takes them as a slice of text.
 */

/** klaviyo_events' columns after account_id: a line's fields. */
const LINE_WIDTH = EVENT_COLUMNS.length - 1;
const PROPERTIES = 8;
const RAW_DATA = 9;
const SPAN = /^@(\d{1,9}):(\d{1,9})$/;

export const EventLinesHeadSchema = z.object({
  metrics: z.array(MetricRowSchema),
  profiles: z.array(ProfileRowSchema),
  /** How many event lines follow: a message cut short is refused, not half written. */
  events: z.number().int().nonnegative(),
});
export type EventLinesHead = z.infer<typeof EventLinesHeadSchema>;

/** An event as its line: the route's encoding. */
export function eventLineOf(e: NewEvent): string {
  // In ASCII (asciiJson): the same span of both, since each character is escaped on its own.
  const raw = copyField(asciiJsonOf(e.rawData));
  const properties = copyField(asciiJsonOf(e.properties));
  const at = e.properties === eventPropertiesOf(e.rawData) ? raw.indexOf(properties) : -1;
  const scalars = copyLineOf(eventScalars(e));
  return `${scalars}\t${at >= 0 ? `@${at}:${at + properties.length}` : properties}\t${raw}`;
}

/** A planned page as the parts of its messages (version 3), each under `maxBytes` once in its envelope. */
export function splitPlanAsLines(
  plan: EventsPagePlan,
  maxBytes: number,
  pointerOf: (rawData: object) => string,
): PlanPart<string>[] {
  return splitPlanAs(plan, maxBytes, pointerOf, (e) => {
    const line = eventLineOf(e);
    return { item: line, bytes: Buffer.byteLength(line, 'utf8') };
  });
}

const isObjectText = (text: string) => text.startsWith('{') && text.endsWith('}');

/**
 * An event read from its checked line: the fields the write and the bookkeeping read, the line to
 * copy, and its properties and raw data parsed only when something asks for them (the JSON
 * statement, taken without COPY, reads both; the pending rows' dimension values read the registered
 * keys' values from the properties' text, topLevelJson.ts).
 */
class LineEvent implements NewEvent {
  private parsedProperties: Readonly<Record<string, unknown>> | undefined;
  private parsedRawData: Readonly<Record<string, unknown>> | undefined;

  constructor(
    readonly id: string,
    readonly timestamp: string,
    readonly metricId: string,
    readonly profileId: string | null,
    readonly value: string | null,
    readonly valueCurrency: string | null,
    readonly uuid: string | null,
    readonly uniqueId: string | null,
    readonly copyLine: string,
    private readonly propertiesText: string,
    private readonly rawDataText: string,
    /** The properties are raw data's `attributes.event_properties` (they travelled as its span). */
    private readonly inRawData: boolean,
  ) {}

  get properties(): Readonly<Record<string, unknown>> {
    // Raw data already parsed (the JSON statement's path reads it first): the span's properties are
    // its event_properties, the same object, which that statement then does not send twice.
    const own = this.inRawData && this.parsedRawData ? eventPropertiesOf(this.parsedRawData) : undefined;
    this.parsedProperties ??= isPlainObject(own) ? own : parsedObject(this.propertiesText);
    return this.parsedProperties;
  }

  get propertiesJson(): string | undefined {
    // Parsed already (the JSON statement's path): the objects serve the pending row as they are.
    if (this.parsedProperties !== undefined || this.parsedRawData !== undefined) return undefined;
    return copyFieldValue(this.propertiesText) ?? undefined;
  }

  get rawData(): Readonly<Record<string, unknown>> {
    this.parsedRawData ??= parsedObject(this.rawDataText);
    return this.parsedRawData;
  }
}

/**
 * A JSON field of a checked line, parsed. Without COPY (the Data API) this is the first reading of
 * the JSON, inside the write's transaction: a field that is not JSON fails the message there as
 * invalid rows (consume.ts records it so), where COPY would have had the database refuse it.
 */
function parsedObject(field: string): Readonly<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(copyFieldValue(field) ?? 'null');
  } catch {
    throw new InvalidRowsError('a JSON field of an event line is not JSON');
  }
  if (!isPlainObject(value)) throw new InvalidRowsError('a JSON field of an event line is not an object');
  return value;
}

/** The plan the consumer writes, from a version 3 message's head and event lines. */
export function planFromLines(head: EventLinesHead, text: string): EventsPagePlan {
  const lines = text === '' ? [] : text.split('\n');
  if (lines.length !== head.events)
    throw new InvalidRowsError(`/events: ${lines.length} event lines, where the message says ${head.events}.`);
  const metricIds = new Set(head.metrics.map((m) => m.id));
  const profileIds = new Set(head.profiles.map((p) => p.id));
  const events = lines.map((line, i): NewEvent => {
    const fail = (why: string) => new InvalidRowsError(`/events/${i}: ${why}.`);
    const fields = checkedCopyLine(line, LINE_WIDTH);
    if (typeof fields === 'string') throw fail(fields);
    const [id, timestamp, metricId, profileId, value, valueCurrency, uuid, uniqueId] = fields
      .slice(0, PROPERTIES)
      .map(copyFieldValue);
    if (!id || !timestamp || !metricId) throw fail('the id, the time and the metric are required');
    if (!metricIds.has(metricId)) throw fail(`its metric ${metricId} is not in the message`);
    if (profileId && !profileIds.has(profileId)) throw fail(`its profile ${profileId} is not in the message`);
    const raw = fields[RAW_DATA] as string;
    if (!isObjectText(raw)) throw fail('raw_data is not a JSON object');
    let properties = fields[PROPERTIES] as string;
    let copyLine = line;
    const span = SPAN.exec(properties);
    if (span) {
      const start = Number(span[1]);
      const end = Number(span[2]);
      properties = end <= raw.length && start < end ? raw.slice(start, end) : '';
      if (!isObjectText(properties)) throw fail('the properties span is not a JSON object of raw_data');
      copyLine = `${fields.slice(0, PROPERTIES).join('\t')}\t${properties}\t${raw}`;
    } else if (!isObjectText(properties)) throw fail('properties is not a JSON object');
    return new LineEvent(
      id,
      timestamp,
      metricId,
      profileId ?? null,
      value ?? null,
      valueCurrency ?? null,
      uuid ?? null,
      uniqueId ?? null,
      copyLine,
      properties,
      raw,
      span !== null,
    );
  });
  return { received: events.length, ...resourcesFromRows(head), events };
}
