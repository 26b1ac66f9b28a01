import { z } from 'zod';
import { checkedCopyLine, COPY_NULL, copyField, copyFieldValue, copyLineOf } from '../../db/copyFormat';
import { EVENT_COLUMNS, eventScalars, type NewEvent } from '../../repositories/events';
import type { ProfileUpsert } from '../../repositories/profiles';
import { profileUpsertFrom } from '../../klaviyo/mapping';
import type { ProfileResource } from '../../klaviyo/schemas';
import type { EventsPagePlan } from './eventsPage';
import {
  eventPropertiesOf,
  InvalidRowsError,
  MetricRowSchema,
  ProfileRowSchema,
  profileRowItem,
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
 * Version 4 carries the profiles the same way, a line each after the head (`id`, `updated`, the
 * resource's JSON), instead of inside the head's JSON: most of a batch's profiles are stored
 * already and no newer, and the consumer then reads only each line's id and `updated`, parsing the
 * resource (LineProfile) only for a profile the write stores. Parsing every profile of the head was
 * the largest part of the consumer's client work left (docs/queue.md).
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

/** Version 4's head: the profiles are lines of their own, before the events' (profileLineOf). */
export const ProfileLinesHeadSchema = z.object({
  metrics: z.array(MetricRowSchema),
  profiles: z.number().int().nonnegative(),
  events: z.number().int().nonnegative(),
});
export type ProfileLinesHead = z.infer<typeof ProfileLinesHeadSchema>;

/**
 * A profile as its line (version 4): its id, its `updated` as mapped, and the resource as received,
 * in ASCII; a stub (an id events name, with no resource) has neither of the last two.
 */
export function profileLineOf(p: ProfileUpsert): string {
  return p.isStub ? copyLineOf([p.id, null, null]) : copyLineOf([p.id, p.updated, asciiJsonOf(p.rawData)]);
}

/** An event as its line: the route's encoding. */
export function eventLineOf(e: NewEvent): string {
  // In ASCII (asciiJson): the same span of both, since each character is escaped on its own.
  const raw = copyField(asciiJsonOf(e.rawData));
  const properties = copyField(asciiJsonOf(e.properties));
  const at = e.properties === eventPropertiesOf(e.rawData) ? raw.indexOf(properties) : -1;
  const scalars = copyLineOf(eventScalars(e));
  return `${scalars}\t${at >= 0 ? `@${at}:${at + properties.length}` : properties}\t${raw}`;
}

const lineItem = (line: string) => ({ item: line, bytes: Buffer.byteLength(line, 'utf8') });

/** A planned page as the parts of its messages (version 4), each under `maxBytes` once in its envelope. */
export function splitPlanAsLines(
  plan: EventsPagePlan,
  maxBytes: number,
  pointerOf: (rawData: object) => string,
): PlanPart<string, string>[] {
  return splitPlanAs(
    plan,
    maxBytes,
    pointerOf,
    (e) => lineItem(eventLineOf(e)),
    (p) => lineItem(profileLineOf(p)),
  );
}

/** The same parts with the profiles as rows of the head (version 3, as the route queued before version 4). */
export function splitPlanAsEventLines(
  plan: EventsPagePlan,
  maxBytes: number,
  pointerOf: (rawData: object) => string,
): PlanPart<string>[] {
  return splitPlanAs(plan, maxBytes, pointerOf, (e) => lineItem(eventLineOf(e)), profileRowItem);
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

  get propertiesCopyText(): string | undefined {
    // Parsed already (the JSON statement's path): the objects serve the pending row as they are.
    if (this.parsedProperties !== undefined || this.parsedRawData !== undefined) return undefined;
    return this.propertiesText;
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
    throw new InvalidRowsError('a JSON field of a line is not JSON');
  }
  if (!isPlainObject(value)) throw new InvalidRowsError('a JSON field of a line is not an object');
  return value;
}

type FullProfile = Extract<ProfileUpsert, { isStub: false }>;

/**
 * A profile read from its line: its id and `updated` for the write's decision, the resource parsed
 * and mapped (as the route mapped it) only when the write reads anything else, which it does for
 * profiles it stores. A resource that is not the profile its line names, or whose `updated` is not
 * the line's, fails the message there as invalid rows (consume.ts records it so).
 */
class LineProfile implements FullProfile {
  readonly isStub = false;
  private mapped: FullProfile | undefined;

  constructor(
    readonly id: string,
    readonly updated: string | null,
    private readonly resourceField: string,
  ) {}

  private get full(): FullProfile {
    if (this.mapped) return this.mapped;
    const resource = parsedObject(this.resourceField);
    const fail = (why: string) => new InvalidRowsError(`/profiles/${this.id}: ${why}.`);
    if (resource.type !== 'profile' || resource.id !== this.id || !isPlainObject(resource.attributes))
      throw fail('the line holds no profile resource of its id');
    const mapped = profileUpsertFrom(resource as unknown as ProfileResource, resource);
    if (mapped.isStub || mapped.updated !== this.updated) throw fail("the line's updated is not its resource's");
    this.mapped = mapped;
    return mapped;
  }

  get email() {
    return this.full.email;
  }
  get phone_number() {
    return this.full.phone_number;
  }
  get external_id() {
    return this.full.external_id;
  }
  get anonymous_id() {
    return this.full.anonymous_id;
  }
  get first_name() {
    return this.full.first_name;
  }
  get last_name() {
    return this.full.last_name;
  }
  get organization() {
    return this.full.organization;
  }
  get locale() {
    return this.full.locale;
  }
  get title() {
    return this.full.title;
  }
  get image() {
    return this.full.image;
  }
  get location() {
    return this.full.location;
  }
  get properties() {
    return this.full.properties;
  }
  get created() {
    return this.full.created;
  }
  get lastEventDate() {
    return this.full.lastEventDate;
  }
  get rawData() {
    return this.full.rawData;
  }
  // Unchecked until the write has read a field above, which checks the resource: the profiles' COPY
  // reads the fields of a row before its resource.
  get rawDataCopyText() {
    return this.resourceField;
  }
}

/** A version 4 profile line, checked for its form (its resource is read when the write needs it). */
function profileFromLine(line: string, i: number): ProfileUpsert {
  const fail = (why: string) => new InvalidRowsError(`/profiles/${i}: ${why}.`);
  const fields = checkedCopyLine(line, 3);
  if (typeof fields === 'string') throw fail(fields);
  const [idField, updatedField, resourceField] = fields as [string, string, string];
  const id = copyFieldValue(idField);
  const updated = copyFieldValue(updatedField);
  if (!id) throw fail('the id is required');
  if (resourceField === COPY_NULL) {
    if (updated !== null) throw fail('a profile without a resource has no updated');
    return { id, isStub: true };
  }
  if (!isObjectText(resourceField)) throw fail('the resource is not a JSON object');
  return new LineProfile(id, updated, resourceField);
}

/** A checked line's field, unescaped; null for COPY's null. */
function fieldValue(fields: readonly string[], at: number): string | null {
  return copyFieldValue(fields[at] as string);
}

/**
 * The plan the consumer writes, from a version 3 or 4 message's head and the lines after it: version
 * 4's profile lines, then the event lines.
 */
export function planFromLines(head: EventLinesHead | ProfileLinesHead, text: string): EventsPagePlan {
  const lines = text === '' ? [] : text.split('\n');
  const profileLines = typeof head.profiles === 'number' ? head.profiles : 0;
  if (lines.length !== profileLines + head.events)
    throw new InvalidRowsError(
      `/events: ${lines.length} lines, where the message says ${profileLines} profiles and ${head.events} events.`,
    );
  // Version 3's profiles are rows of the head, version 4's the first lines: one of the two is empty.
  const resources = resourcesFromRows({
    metrics: head.metrics,
    profiles: typeof head.profiles === 'number' ? [] : head.profiles,
  });
  const metrics = resources.metrics;
  const profiles = [...resources.profiles, ...lines.slice(0, profileLines).map(profileFromLine)];
  const metricIds = new Set(metrics.map((m) => m.id));
  const profileIds = new Set(profiles.map((p) => p.id));
  const fail = (i: number, why: string) => new InvalidRowsError(`/events/${i}: ${why}.`);
  const events = lines.slice(profileLines).map((line, i): NewEvent => {
    const fields = checkedCopyLine(line, LINE_WIDTH);
    if (typeof fields === 'string') throw fail(i, fields);
    const id = fieldValue(fields, 0);
    const timestamp = fieldValue(fields, 1);
    const metricId = fieldValue(fields, 2);
    const profileId = fieldValue(fields, 3);
    if (!id || !timestamp || !metricId) throw fail(i, 'the id, the time and the metric are required');
    if (!metricIds.has(metricId)) throw fail(i, `its metric ${metricId} is not in the message`);
    if (profileId && !profileIds.has(profileId)) throw fail(i, `its profile ${profileId} is not in the message`);
    const raw = fields[RAW_DATA] as string;
    if (!isObjectText(raw)) throw fail(i, 'raw_data is not a JSON object');
    let properties = fields[PROPERTIES] as string;
    let copyLine = line;
    const span = SPAN.exec(properties);
    if (span) {
      const start = Number(span[1]);
      const end = Number(span[2]);
      properties = end <= raw.length && start < end ? raw.slice(start, end) : '';
      if (!isObjectText(properties)) throw fail(i, 'the properties span is not a JSON object of raw_data');
      // The fields before the properties, with their tabs, are the line's own start: sliced, not joined
      // again. The properties field and raw data are the line's last two fields.
      const before = line.length - (fields[PROPERTIES] as string).length - 1 - raw.length;
      copyLine = `${line.slice(0, before)}${properties}\t${raw}`;
    } else if (!isObjectText(properties)) throw fail(i, 'properties is not a JSON object');
    return new LineEvent(
      id,
      timestamp,
      metricId,
      profileId,
      fieldValue(fields, 4),
      fieldValue(fields, 5),
      fieldValue(fields, 6),
      fieldValue(fields, 7),
      copyLine,
      properties,
      raw,
      span !== null,
    );
  });
  return { received: events.length, metrics, profiles, events };
}
