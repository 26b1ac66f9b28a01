import { ConfigError, type SyncSettings } from '../config';
import type * as SecretsManagerModule from '@aws-sdk/client-secrets-manager';

/**
 * The Klaviyo private key. Deployed, it lives in Secrets Manager (KLAVIYO_API_KEY_SECRET_ID: the
 * secret's ARN or name) and is read at run time, never through the template: a CloudFormation
 * dynamic reference would put it in the function's plain environment, readable by anyone who may
 * read the function's configuration. Locally and in the CLI, KLAVIYO_API_KEY holds it.
 *
 * The value is cached for the container's warm invocations and read again after KEY_CACHE_MS, so a
 * rotated key is picked up without a deployment.
 */
const KEY_CACHE_MS = 15 * 60_000;

// By secret: the scheduled sync reads one secret per account in every invocation.
const cached = new Map<string, { readonly key: string; readonly readAt: number }>();

export type SecretReader = (secretId: string) => Promise<string | undefined>;

async function readSecretsManager(secretId: string): Promise<string | undefined> {
  // Loaded only when a secret is configured: the CLI and the tests never load the AWS SDK.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sdk = require('@aws-sdk/client-secrets-manager') as typeof SecretsManagerModule;
  const client = new sdk.SecretsManagerClient({});
  const answer = await client.send(new sdk.GetSecretValueCommand({ SecretId: secretId }));
  return answer.SecretString;
}

/** A secret's string is the key itself, or JSON holding it as `api_key` (or `KLAVIYO_API_KEY`). */
export function keyFromSecretString(text: string): string {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new ConfigError('The Klaviyo key secret is neither a key nor JSON');
    }
    const record = parsed as Record<string, unknown>;
    const key = record.api_key ?? record.KLAVIYO_API_KEY;
    if (typeof key !== 'string' || key.trim() === '') {
      throw new ConfigError('The Klaviyo key secret is JSON without an "api_key" string');
    }
    return key.trim();
  }
  if (trimmed === '') throw new ConfigError('The Klaviyo key secret is empty');
  return trimmed;
}

export async function klaviyoApiKey(
  settings: SyncSettings,
  env: NodeJS.ProcessEnv = process.env,
  options: { readonly readSecret?: SecretReader; readonly now?: number } = {},
): Promise<string> {
  const now = options.now ?? Date.now();
  if (settings.apiKeySecret) {
    const hit = cached.get(settings.apiKeySecret);
    if (hit && now - hit.readAt < KEY_CACHE_MS) return hit.key;
    const text = await (options.readSecret ?? readSecretsManager)(settings.apiKeySecret);
    if (text === undefined) throw new ConfigError('The Klaviyo key secret has no SecretString');
    const key = keyFromSecretString(text);
    cached.set(settings.apiKeySecret, { key, readAt: now });
    return key;
  }
  const key = env.KLAVIYO_API_KEY?.trim();
  if (!key) {
    throw new ConfigError(
      'Invalid configuration: set KLAVIYO_API_KEY (a private key) or KLAVIYO_API_KEY_SECRET_ID (a Secrets Manager secret holding it)',
    );
  }
  return key;
}

/** Tests only. */
export function forgetCachedApiKey(): void {
  cached.clear();
}
