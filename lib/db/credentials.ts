import type { PasswordSource } from '../config';
import { log } from '../log';
import type * as RdsSignerModule from '@aws-sdk/rds-signer';
import type * as SecretsManagerModule from '@aws-sdk/client-secrets-manager';

/**
 * Where the postgres driver's password comes from. No deployed function holds one in its settings
 * (anyone allowed lambda:GetFunctionConfiguration reads those):
 *
 * - iam: an RDS IAM authentication token, signed with the function's role for every new connection
 *   (valid 15 minutes; needs TLS, and `rds_iam` granted to the database user).
 * - secret: the `password` of a Secrets Manager secret (RDS's JSON shape, or a plain string), read at
 *   run time with the function's role, kept for the container's life, and read again when the server
 *   refuses it (the secret was rotated).
 * - static: a password given in the environment (local development, tests, scripts).
 */

export interface Credentials {
  /** The password for a new connection. */
  password(): Promise<string>;
  /** True when another call may return a different password (the server refused the last one). */
  readonly refreshable: boolean;
  /** Forgets a cached password: the next connection reads it again. */
  invalidate(): void;
}

/** SQLSTATE class 28 (invalid_authorization_specification, invalid_password). */
export function isAuthFailure(code: string | undefined): boolean {
  return code === '28P01' || code === '28000';
}

export function credentialsFor(
  source: PasswordSource,
  target: { readonly host: string; readonly port: number; readonly user: string },
): Credentials {
  if (source.kind === 'static') {
    const password = source.password ?? '';
    return { password: async () => password, refreshable: false, invalidate: () => undefined };
  }
  if (source.kind === 'iam') return iamCredentials(source.region, target);
  return secretCredentials(source);
}

function iamCredentials(region: string, target: { host: string; port: number; user: string }): Credentials {
  // Loaded only when chosen: the Lambda runtime provides the AWS SDK; other setups never load it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Signer } = require('@aws-sdk/rds-signer') as typeof RdsSignerModule;
  const signer = new Signer({ hostname: target.host, port: target.port, username: target.user, region });
  return {
    // A fresh token per connection: signing is local (no network), and a token is valid 15 minutes.
    password: () => signer.getAuthToken(),
    refreshable: true,
    invalidate: () => undefined,
  };
}

function secretCredentials(source: { secretArn: string; region?: string; endpoint?: string }): Credentials {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sdk = require('@aws-sdk/client-secrets-manager') as typeof SecretsManagerModule;
  const client = new sdk.SecretsManagerClient({
    ...(source.region ? { region: source.region } : {}),
    ...(source.endpoint ? { endpoint: source.endpoint } : {}),
    maxAttempts: 2,
  });
  let cached: Promise<string> | undefined;
  const read = async (): Promise<string> => {
    const output = await client.send(new sdk.GetSecretValueCommand({ SecretId: source.secretArn }));
    return passwordOf(output.SecretString);
  };
  return {
    password: () => {
      const current = (cached ??= read());
      // A failed read is not kept: the next connection tries again.
      current.catch(() => {
        if (cached === current) cached = undefined;
      });
      return current;
    },
    refreshable: true,
    invalidate: () => {
      if (cached) log.warn('database password refused; reading the secret again');
      cached = undefined;
    },
  };
}

/** RDS's secret shape is JSON with a `password` field; a plain-text secret is the password itself. */
export function passwordOf(secretString: string | undefined): string {
  if (secretString === undefined || secretString === '') throw new Error('the database secret has no SecretString');
  if (!secretString.trimStart().startsWith('{')) return secretString;
  let parsed: unknown;
  try {
    parsed = JSON.parse(secretString);
  } catch {
    throw new Error('the database secret is not valid JSON');
  }
  const password =
    parsed !== null && typeof parsed === 'object' ? (parsed as { password?: unknown }).password : undefined;
  if (typeof password !== 'string' || password === '') throw new Error('the database secret has no "password"');
  return password;
}
