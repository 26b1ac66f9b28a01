import { removeEmbeddedData } from '../../lib/db/embedded';
import postgres from 'postgres';
import { TEST_ENV } from './env';

export default async function globalTeardown(): Promise<void> {
  // Before the server: the endpoint holds connections (and open transactions) to it.
  await globalThis.__dataApiServer?.stop();
  globalThis.__dataApiServer = undefined;
  const server = globalThis.__embeddedPostgres;
  if (server) {
    await server.stop();
    removeEmbeddedData(server.dataDir);
    globalThis.__embeddedPostgres = undefined;
    return;
  }
  const adminUrl = process.env[TEST_ENV.adminUrl];
  const template = process.env[TEST_ENV.template];
  if (adminUrl && template) {
    const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
    try {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`);
    } finally {
      await admin.end({ timeout: 5 });
    }
  }
}
