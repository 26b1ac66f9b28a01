import type { Context, ScheduledEvent } from 'aws-lambda';
import { z } from 'zod';
import { config } from '../lib/config';
import { getDb } from '../lib/db';
import { errorCode } from '../lib/db/errors';
import { log } from '../lib/log';
import { runScheduledSync, scheduledSyncLogFields, type AccountSyncSummary } from '../lib/app/sync';

/**
 * The scheduled Klaviyo sync (EventBridge, every 5 minutes by default): every account with a key, least
 * recently synced first, each within its share of the time budget (lib/app/sync.ts, runScheduledSync).
 * Each run checkpoints every page; the next run resumes there. An account whose lease another run holds
 * is skipped; an account that fails does not stop the others. It never throws to the runtime: a failure is logged and
 * returned, and Lambda's own retry of an async invocation would only repeat the same safe work.
 */
const ScheduledEventSchema = z.looseObject({ id: z.string().optional() }).optional().catch(undefined);

export type SyncHandlerResult =
  | {
      readonly status: 'done' | 'partial' | 'error' | 'skipped';
      readonly scheduledEventId?: string;
      readonly durationMs: number;
      readonly accounts: readonly Pick<AccountSyncSummary, 'accountId' | 'status'>[];
    }
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
    const result = await runScheduledSync(getDb(), settings, timeBudgetMs);
    const fields = { function: 'sync', scheduled_event_id: scheduledEventId, ...scheduledSyncLogFields(result) };
    if (result.status === 'error') log.error('sync run failed', fields);
    else log.info(result.status === 'skipped' ? 'sync run skipped: other runs hold the leases' : 'sync run', fields);
    return {
      status: result.status,
      scheduledEventId,
      durationMs: result.durationMs,
      accounts: result.accounts.map((a) => ({ accountId: a.accountId, status: a.status })),
    };
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
