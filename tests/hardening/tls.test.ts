import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../lib/config';
import { createDb } from '../../lib/db';
import type { ClosableDb } from '../../lib/db/port';
import { testDriver } from '../support/env';
import { adminUrl } from '../support/database';
import { startOwnServer, type OwnServer } from '../reliability/support/ownServer';
import { makeTestCertificates, type TestCertificates } from './support/certificates';

/**
 * TLS against a real PostgreSQL started here with ssl=on and a certificate made at test time, and
 * against the shared test server, which has no TLS. The driver is reached through loadConfig, as a
 * function reaches it: the URL's sslmode and DB_SSL as a user writes them.
 */
const describeOnPostgres = testDriver() === 'postgres' ? describe : describe.skip;

async function encrypted(db: ClosableDb): Promise<boolean> {
  const rows = await db.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
  return rows[0]?.ssl === true;
}

function clientFor(env: Record<string, string>): ClosableDb {
  const cfg = loadConfig({ DB_CONNECT_TIMEOUT_S: '5', ...env });
  return createDb(cfg.db);
}

async function withClient<R>(env: Record<string, string>, use: (db: ClosableDb) => Promise<R>): Promise<R> {
  const db = clientFor(env);
  try {
    return await use(db);
  } finally {
    await db.close().catch(() => undefined);
  }
}

describeOnPostgres('TLS to PostgreSQL, with libpq sslmode semantics', () => {
  let certs: TestCertificates;
  let server: OwnServer;
  let port: string;

  beforeAll(async () => {
    // Under the temp folder, not the clone: as root the server runs as the postgres user, which cannot
    // read files inside a clone in a private folder (mode 0700).
    certs = makeTestCertificates(join(tmpdir(), `klaviyo-analytics-tls-certs-${process.pid}`));
    server = await startOwnServer('tls', {
      ssl: 'on',
      ssl_cert_file: certs.serverCertFile,
      ssl_key_file: certs.serverKeyFile,
    });
    port = new URL(server.url).port;
  }, 120_000);
  afterAll(async () => {
    await server?.destroy();
    certs?.remove();
  }, 60_000);

  const urlTo = (host: string, query = '') => `postgres://postgres:postgres@${host}:${port}/klaviyo${query}`;

  it('sslmode=require in the URL encrypts the connection (and DB_SSL=disable no longer overrides it)', async () => {
    expect(await withClient({ DATABASE_URL: urlTo('127.0.0.1', '?sslmode=require') }, encrypted)).toBe(true);
    expect(await withClient({ DATABASE_URL: urlTo('127.0.0.1'), DB_SSL: 'require' }, encrypted)).toBe(true);
    // Without TLS asked for, to this machine, the same server is reached in plain text.
    expect(await withClient({ DATABASE_URL: urlTo('127.0.0.1') }, encrypted)).toBe(false);
  });

  it('verify-full accepts the certificate signed by the trusted CA for the host connected to', async () => {
    const env = {
      DATABASE_URL: urlTo('127.0.0.1', `?sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.caFile)}`),
    };
    expect(await withClient(env, encrypted)).toBe(true);
    const fromEnv = { DATABASE_URL: urlTo('127.0.0.1'), DB_SSL: 'verify-full', DB_SSL_ROOT_CERT: certs.caFile };
    expect(await withClient(fromEnv, encrypted)).toBe(true);
  });

  it('verify-full with the wrong CA fails, and nothing is sent in plain text instead', async () => {
    const env = { DATABASE_URL: urlTo('127.0.0.1'), DB_SSL: 'verify-full', DB_SSL_ROOT_CERT: certs.otherCaFile };
    await expect(withClient(env, encrypted)).rejects.toMatchObject({
      code: expect.stringMatching(/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/),
    });
    // Node's own trust store does not know the test CA either.
    await expect(withClient({ DATABASE_URL: urlTo('127.0.0.1'), DB_SSL: 'verify-full' }, encrypted)).rejects.toThrow();
  });

  it('verify-full checks the host name; verify-ca checks only the chain', async () => {
    // The certificate names 127.0.0.1 only: "localhost" is another name for the same server.
    const base = { DATABASE_URL: urlTo('localhost'), DB_SSL_ROOT_CERT: certs.caFile };
    await expect(withClient({ ...base, DB_SSL: 'verify-full' }, encrypted)).rejects.toMatchObject({
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
    expect(await withClient({ ...base, DB_SSL: 'verify-ca' }, encrypted)).toBe(true);
    await expect(
      withClient({ ...base, DB_SSL: 'verify-ca', DB_SSL_ROOT_CERT: certs.otherCaFile }, encrypted),
    ).rejects.toThrow();
  });

  it('require against a server without TLS fails with a clear message instead of falling back', async () => {
    const plain = new URL(adminUrl());
    plain.search = '?sslmode=require';
    const attempt = withClient({ DATABASE_URL: plain.toString() }, encrypted);
    await expect(attempt).rejects.toMatchObject({ code: 'TLS_REFUSED' });
    await expect(attempt).rejects.toThrow(/does not accept TLS connections; refusing to connect in plain text/);
  });
});
