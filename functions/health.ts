import { getDb } from '../lib/db';
import { databaseMode } from '../lib/db/migrate';
import { httpHandler } from '../lib/http/handler';

/** GET /api/health: public, for load balancers and uptime checks; says whether the database answers. */
export const handler = httpHandler({ name: 'health', scope: 'public' }, async () => {
  const mode = await databaseMode(getDb());
  return { status: 200, body: { data: { type: 'health', id: 'api', attributes: { status: 'ok', database: mode } } } };
});
