import type { Db } from '../db/port';
import { databaseMode } from '../db/migrate';

/** The health document: the database answered, and which schema branch it runs (plain or TimescaleDB). */
export async function healthDocument(db: Db) {
  const mode = await databaseMode(db);
  return { data: { type: 'health', id: 'api', attributes: { status: 'ok', database: mode } } };
}
