import type { Context, ScheduledEvent } from 'aws-lambda';
import { z } from 'zod';
import { config } from '../lib/config';
import { getDb } from '../lib/db';
import { errorCode } from '../lib/db/errors';
import { log } from '../lib/log';
import { runConfiguredSync, syncLogFields, type SyncRunResult } from '../lib/app/sync';

/**
 * The scheduled Klaviyo sync (EventBridge, every 5 minutes by default). Each run works within its
 * time budget and checkpoints every page; the next run resumes there. A run that finds another one
 * holding the account's lease exits at once. It never throws to the runtime: a failure is logged and
 * returned, and Lambda's own retry of an async invocation would only repeat the same safe work.
 */
const ScheduledEventSchema = z.looseObject({ id: z.string().optional() }).optional().catch(undefined);

export type SyncHandlerResult =
  | (Omit<SyncRunResult, 'streams'> & { readonly scheduledEventId?: string })
  | {
      readonly status: 'error';
      readonly scheduledEventId?: string;
      readonly durationMs: number;
      readonly error: { readonly name: string; readonly code?: string };
    };

// The page in flight, its commit and the log line must fit in what is left of the Lambda's time.
const SAFETY_MARGIN_MS = 30_000;

export async function handler(
  event?: Partial<ScheduledEvent> | null,
  context?: Partial<Context>,
): Promise<SyncHandlerResult> {
  const started = performance.now();
  const scheduledEventId = ScheduledEventSchema.parse(event ?? undefined)?.id;
  try {
    const settings = config().sync;
    const remaining =
      typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : Infinity;
    const timeBudgetMs = Math.max(1, Math.min(settings.timeBudgetMs, remaining - SAFETY_MARGIN_MS));
    const result = await runConfiguredSync(getDb(), settings, timeBudgetMs);
    const fields = { function: 'sync', scheduled_event_id: scheduledEventId, ...syncLogFields(result) };
    if (result.status === 'error') log.error('sync run failed', fields);
    else log.info(result.status === 'skipped' ? 'sync run skipped: another run holds the lease' : 'sync run', fields);
    const { streams: _streams, ...summary } = result;
    return { ...summary, scheduledEventId };
  } catch (err) {
    const durationMs = Math.round(performance.now() - started);
    const code = errorCode(err);
    log.error('sync run failed', {
      function: 'sync',
      scheduled_event_id: scheduledEventId,
      status: 'error',
      duration_ms: durationMs,
      error: err,
    });
    const name = err instanceof Error ? err.name : 'Error';
    return { status: 'error', scheduledEventId, durationMs, error: { name, ...(code ? { code } : {}) } };
  }
}
