import { ConfigError, loadConfig } from '../../lib/config';

/** The configuration's TLS, password and link settings: contradictions fail loudly, at start. */
describe('database hardening configuration', () => {
  const remote = 'postgres://app@db.example.internal:5432/klaviyo';

  it('reads sslmode from the URL, takes it out of the URL, and accepts a DB_SSL that agrees', () => {
    const cfg = loadConfig({ DATABASE_URL: `${remote}?sslmode=require&application_name=x`, DB_SSL: 'require' });
    expect(cfg.db).toMatchObject({ driver: 'postgres', ssl: 'require', url: `${remote}?application_name=x` });
  });

  it('refuses a URL and DB_SSL that disagree, naming both', () => {
    expect(() => loadConfig({ DATABASE_URL: `${remote}?sslmode=require`, DB_SSL: 'disable' })).toThrow(ConfigError);
    expect(() => loadConfig({ DATABASE_URL: `${remote}?sslmode=require`, DB_SSL: 'disable' })).toThrow(
      /sslmode=require but DB_SSL=disable/,
    );
    expect(() =>
      loadConfig({ DATABASE_URL: `${remote}?sslrootcert=/a.pem`, DB_SSL: 'verify-full', DB_SSL_ROOT_CERT: '/b.pem' }),
    ).toThrow(/sslrootcert/);
  });

  it('refuses the modes that fall back to plain text silently, and unknown ones', () => {
    expect(() => loadConfig({ DATABASE_URL: remote, DB_SSL: 'prefer' })).toThrow(/prefer falls back to plain text/);
    expect(() => loadConfig({ DATABASE_URL: `${remote}?sslmode=allow` })).toThrow(/allow/);
    expect(() => loadConfig({ DATABASE_URL: remote, DB_SSL: 'maybe' })).toThrow(/DB_SSL=maybe/);
  });

  it('defaults to verify-full for another host and to plain TCP only on this machine', () => {
    expect(loadConfig({ DATABASE_URL: remote }).db).toMatchObject({ ssl: 'verify-full' });
    expect(loadConfig({ DB_HOST: 'db.example.internal', DB_USER: 'u', DB_NAME: 'd' }).db).toMatchObject({
      ssl: 'verify-full',
    });
    expect(loadConfig({ DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/d' }).db).toMatchObject({ ssl: 'disable' });
    expect(loadConfig({ DATABASE_URL: 'postgres://u:p@localhost/d' }).db).toMatchObject({ ssl: 'disable' });
  });

  it('takes the password from IAM or a secret at run time, never two sources at once', () => {
    const iam = loadConfig({ DATABASE_URL: remote, DB_IAM_AUTH: 'true', AWS_REGION: 'eu-west-1' });
    expect(iam.db).toMatchObject({ passwordSource: { kind: 'iam', region: 'eu-west-1' } });
    const secret = loadConfig({ DB_HOST: 'db.example.internal', DB_USER: 'u', DB_NAME: 'd', DB_SECRET_ARN: 'arn:x' });
    expect(secret.db).toMatchObject({ passwordSource: { kind: 'secret', secretArn: 'arn:x' } });
    expect(() =>
      loadConfig({ DB_HOST: 'db.example.internal', DB_USER: 'u', DB_NAME: 'd', DB_PASSWORD: 'p', DB_SECRET_ARN: 'a' }),
    ).toThrow(/given twice \(DB_PASSWORD, DB_SECRET_ARN\)/);
    expect(() =>
      loadConfig({ DATABASE_URL: 'postgres://u:p@127.0.0.1/d', DB_IAM_AUTH: 'true', AWS_REGION: 'x' }),
    ).toThrow(/given twice/);
    // RDS refuses IAM tokens without TLS.
    expect(() =>
      loadConfig({ DATABASE_URL: 'postgres://u@127.0.0.1/d', DB_IAM_AUTH: 'true', AWS_REGION: 'x' }),
    ).toThrow(/DB_IAM_AUTH needs TLS/);
  });

  it('accepts only an origin as the public base URL of links', () => {
    expect(loadConfig({ DATABASE_URL: remote, PUBLIC_BASE_URL: 'https://api.example.com' }).publicBaseUrl).toBe(
      'https://api.example.com',
    );
    expect(() => loadConfig({ DATABASE_URL: remote, PUBLIC_BASE_URL: 'https://api.example.com/x?y' })).toThrow(
      /PUBLIC_BASE_URL/,
    );
  });
});
