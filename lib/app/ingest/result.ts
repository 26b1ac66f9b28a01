import { config } from '../../config';

/** What one ingest request did. Every count is there even when it is zero. */
export interface IngestCounts {
  /** Events (or resources, for the profile and metric upserts) in the request. */
  readonly received: number;
  /** Events stored by this request. */
  readonly inserted: number;
  /** Events that were already stored (a re-delivery) or repeated within the request. */
  readonly duplicates: number;
  /** Metric rows created (stubs included) or replaced by a newer copy. */
  readonly metrics_upserted: number;
  /** Profile rows created (stubs included) or replaced by a newer copy. */
  readonly profiles_upserted: number;
}

export interface IngestOptions {
  /** Most resources per request; defaults to config().limits.ingestMaxResources (INGEST_MAX_RESOURCES). */
  readonly maxResources?: number;
  /** The present, for the "at most one year ahead" rule; tests pin it. */
  readonly now?: Date;
}

export function resolvedLimits(options: IngestOptions): { maxResources: number; now: Date } {
  return {
    maxResources: options.maxResources ?? config().limits.ingestMaxResources,
    now: options.now ?? new Date(),
  };
}

export function ingestResultDocument(counts: IngestCounts): {
  data: { type: 'ingest-result'; attributes: IngestCounts };
} {
  return {
    data: {
      type: 'ingest-result',
      attributes: {
        received: counts.received,
        inserted: counts.inserted,
        duplicates: counts.duplicates,
        metrics_upserted: counts.metrics_upserted,
        profiles_upserted: counts.profiles_upserted,
      },
    },
  };
}
