import { createServer, type Server } from 'node:http';
import { loadConfig } from '../../lib/config';
import { createDb } from '../../lib/db';
import { credentialsFor, passwordOf } from '../../lib/db/credentials';
import type { ClosableDb } from '../../lib/db/port';
import { createPostgresDb } from '../../lib/db/postgres';
import { adminUrl, useFreshDatabase } from '../support/database';
import { testDriver, tuning } from '../support/env';

/**
 * The password read at run time: from a Secrets Manager secret (a local endpoint speaking its JSON
 * protocol), kept for the container's life, and read again when the server refuses it after a
 * rotation; or an RDS IAM token signed per connection. The server checks passwords (embedded
 * PostgreSQL uses password authentication on TCP).
 */
const describeOnPostgres = testDriver() === 'postgres' ? describe : describe.skip;

const SECRET_ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:klaviyo-db-AbCdEf';
const AWS_ENV = {
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'AKIDLOCALTEST',
  AWS_SECRET_ACCESS_KEY: 'local-test-secret',
  AWS_EC2_METADATA_DISABLED: 'true',
};

describeOnPostgres('database password read at run time', () => {
  const t = useFreshDatabase();
  const role = `secret_user_${process.pid}`;
  let server: Server;
  let endpoint: string;
  let current = 'first-password';
  let reads = 0;
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    for (const [k, v] of Object.entries(AWS_ENV)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      req.on('end', () => {
        const target = req.headers['x-amz-target'];
        const secretId = (JSON.parse(body || '{}') as { SecretId?: string }).SecretId;
        if (target !== 'secretsmanager.GetSecretValue' || secretId !== SECRET_ARN) {
          res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
          res.end(JSON.stringify({ __type: 'ResourceNotFoundException', message: 'no such secret' }));
          return;
        }
        reads += 1;
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(
          JSON.stringify({
            ARN: SECRET_ARN,
            Name: 'klaviyo-db',
            SecretString: JSON.stringify({ username: role, password: current, host: '127.0.0.1' }),
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    endpoint = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    await t.db.query(`DROP ROLE IF EXISTS ${role}`);
    await t.db.query(`CREATE ROLE ${role} LOGIN PASSWORD '${current}'`);
  });
  afterAll(async () => {
    // A client of its own: the test database's client may already be closed by its own afterAll.
    const admin = createPostgresDb({ url: adminUrl(), ...tuning, poolMax: 1 });
    try {
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [role]);
      await admin.query(`DROP ROLE IF EXISTS ${role}`);
    } finally {
      await admin.close();
    }
    await new Promise((resolve) => server.close(resolve));
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  function client(): ClosableDb {
    const url = new URL(t.url);
    const cfg = loadConfig({
      DB_HOST: '127.0.0.1',
      DB_PORT: url.port,
      DB_USER: role,
      DB_NAME: t.name,
      DB_SECRET_ARN: SECRET_ARN,
      DB_SECRETS_ENDPOINT: endpoint,
      ...AWS_ENV,
    });
    return createDb(cfg.db);
  }

  it('reads the secret once, and again once after a rotation the server refuses', async () => {
    const db = client();
    try {
      for (let i = 0; i < 3; i += 1) {
        expect(await db.query<{ who: string }>('SELECT current_user AS who')).toEqual([{ who: role }]);
      }
      expect(reads).toBe(1);

      // Rotation: the server and the secret change; the container still holds the old password.
      current = 'second-password';
      await t.db.query(`ALTER ROLE ${role} PASSWORD '${current}'`);
      await t.db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [role]);

      expect(await db.query<{ who: string }>('SELECT current_user AS who')).toEqual([{ who: role }]);
      expect(reads).toBe(2);
      expect(await db.query<{ n: number }>('SELECT 1 AS n')).toEqual([{ n: 1 }]);
      expect(reads).toBe(2);
    } finally {
      await db.close();
    }
  });

  it('a wrong password that a fresh read does not fix fails with the server error, after one read more', async () => {
    const db = client();
    const before = reads;
    current = 'not-the-password';
    try {
      await expect(db.query('SELECT 1')).rejects.toMatchObject({ code: '28P01' });
      expect(reads - before).toBe(2);
    } finally {
      current = 'second-password';
      await db.close();
    }
  });

  it('reads RDS JSON secrets and plain-text ones', () => {
    expect(passwordOf('{"username":"u","password":"p w"}')).toBe('p w');
    expect(passwordOf('plain')).toBe('plain');
    expect(() => passwordOf('{"username":"u"}')).toThrow(/no "password"/);
  });

  it('signs an RDS IAM token for the host, port and user connected to', async () => {
    const credentials = credentialsFor(
      { kind: 'iam', region: 'us-east-1' },
      { host: 'db.example.internal', port: 5432, user: 'klaviyo_app' },
    );
    const token = await credentials.password();
    expect(token).toMatch(/^db\.example\.internal:5432\/\?/);
    expect(token).toContain('Action=connect');
    expect(token).toContain('DBUser=klaviyo_app');
    expect(token).toContain('X-Amz-Signature=');
    expect(token).toContain('AKIDLOCALTEST');
  });
});
