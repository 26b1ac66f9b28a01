/**
 * Ingest, callable with or without HTTP (handlers, scripts, benches, the demo seeder). Each entry
 * point validates the whole request first (HttpError 400 listing every problem, nothing written),
 * then writes in one transaction and returns what it did.
 */
export { ingestEventsPage, planEventsPage, writeEventsPage, type EventsPagePlan } from './eventsPage';
export { upsertProfilesDocument, upsertMetricsDocument, planProfilesDocument } from './resources';
export { createEvent, bulkCreateEvents } from './klaviyoWrites';
export { ingestResultDocument, type IngestCounts } from './result';
export {
  planEventsPageSettingAside,
  planMetricsSettingAside,
  planProfilesSettingAside,
  type SetAsideItem,
} from './setAside';
export { createProfile, importProfile, bulkImportProfiles } from './profileWrites';
export { enqueueIngest, queueReceiptDocument, type EnqueueContext, type QueueReceipt } from './enqueue';
export { consumeIngestBatch, type ReceivedMessage } from './consume';
export type { QueuedKind } from './queueMessages';
