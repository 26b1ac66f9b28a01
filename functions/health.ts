import { healthDocument } from '../lib/app/health';
import { getDb } from '../lib/db';
import { httpHandler } from '../lib/http/handler';

/** GET /api/health: public, for load balancers and uptime checks; says whether the database answers. */
export const handler = httpHandler({ name: 'health', scope: 'public' }, async () => ({
  status: 200,
  body: await healthDocument(getDb()),
}));
