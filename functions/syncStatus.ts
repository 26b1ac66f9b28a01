import { getDb } from '../lib/db';
import { httpHandler } from '../lib/http/handler';
import { getSyncStatusDocument } from '../lib/app/syncStatus';

/** GET /api/sync-status: per stream, last success, cursor, lag, rows pulled, rejects and the last error. */
export const handler = httpHandler({ name: 'sync-status', scope: 'read' }, async (_request, _fields, caller) => ({
  status: 200,
  body: await getSyncStatusDocument(getDb(), caller.accountId),
}));
