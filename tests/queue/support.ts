import type { ReceivedMessage } from '../../lib/app/ingest/consume';
import { ingestMessages } from '../../lib/app/ingest/enqueue';
import type { QueuedKind } from '../../lib/app/ingest/queueMessages';
import type { Db } from '../../lib/db/port';

/** The db, in every transaction and savepoint of it, with each statement's text (and each COPY's table) logged. */
export function logged(db: Db, log: string[]): Db {
  const out: Db = {
    driver: db.driver,
    query: (text, params) => {
      log.push(text);
      return db.query(text, params);
    },
    transaction: (fn) => db.transaction((tx) => fn(logged(tx, log))),
  };
  const copyRows = db.copyRows?.bind(db);
  if (copyRows)
    out.copyRows = (table, columns, rows) => {
      log.push(`COPY ${table}`);
      return copyRows(table, columns, rows);
    };
  return out;
}

/** A Klaviyo Create Event body: one event of a metric named `metricName`, for a profile named by its email. */
export function createEventBody(uniqueId: string, metricName: string, email: string) {
  return {
    data: {
      type: 'event',
      attributes: {
        properties: { source: 'test' },
        time: '2024-06-01T10:00:00Z',
        unique_id: uniqueId,
        metric: { data: { type: 'metric', attributes: { name: metricName } } },
        profile: { data: { type: 'profile', attributes: { email } } },
      },
    },
  };
}

/**
 * The messages the ingest route queues for these requests (account `default`, parts of at most
 * 8 KiB, so that a page makes several), as the consumer receives them: ids `<prefix>-<n>`.
 */
export function receivedMessages(
  prefix: string,
  requests: readonly (readonly [QueuedKind, unknown])[],
): ReceivedMessage[] {
  const acceptedAt = new Date();
  return requests
    .flatMap(
      ([kind, body], r) =>
        ingestMessages(kind, body, {
          accountId: 'default',
          acceptedAt,
          requestId: `${prefix}-${r}`,
          maxMessageBytes: 8_192,
        }).messages,
    )
    .map((body, i) => ({ messageId: `${prefix}-${i}`, body }));
}
