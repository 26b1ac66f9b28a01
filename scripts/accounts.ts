import { parseArgs } from 'node:util';
import { ACCOUNT_ID_PATTERN } from '../lib/config';
import { closeDb, getDb } from '../lib/db';
import { getAccount, listAccounts, saveAccount } from '../lib/repositories/accounts';

/**
 * npm run accounts -- list
 * npm run accounts -- set ID [--name "Acme Inc."] [--klaviyo-secret NAME_OR_ARN | --no-klaviyo-secret]
 *
 * The accounts a deployment keeps (klaviyo_accounts), for an operator. Writes of events register an
 * account by themselves; `set` gives it a display name and names the Secrets Manager secret holding its
 * Klaviyo private key, which the scheduled sync then pulls with (docs/sync.md, "Many accounts").
 * `--no-klaviyo-secret` stops the account's sync and keeps its data. What `set` is not told, it keeps.
 * The key itself never passes through here: only the secret's name.
 */
const USAGE =
  'usage: npm run accounts -- list\n' +
  '       npm run accounts -- set ID [--name NAME] [--klaviyo-secret SECRET_NAME_OR_ARN | --no-klaviyo-secret]';

class UsageError extends Error {}

type Command =
  | { readonly kind: 'list' }
  | {
      readonly kind: 'set';
      readonly accountId: string;
      readonly displayName: string | undefined;
      /** undefined: keep; null: clear. */
      readonly klaviyoKeySecretId: string | null | undefined;
    };

// Secrets Manager names: 1-512 characters of letters, digits and /_+=.@-; an ARN adds its prefix.
const SECRET_ID = /^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:)?[A-Za-z0-9/_+=.@-]{1,512}$/;

function parseCommand(argv: string[]): Command {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      name: { type: 'string' },
      'klaviyo-secret': { type: 'string' },
      'no-klaviyo-secret': { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
  const [verb, accountId, ...rest] = positionals;
  if (verb === 'list') {
    if (accountId !== undefined || Object.keys(values).length > 0) throw new UsageError('list takes no arguments');
    return { kind: 'list' };
  }
  if (verb !== 'set') throw new UsageError(verb === undefined ? 'a command is needed' : `unknown command "${verb}"`);
  if (accountId === undefined) throw new UsageError('set needs the account id');
  if (rest.length > 0) throw new UsageError(`unexpected "${rest.join(' ')}"`);
  if (!ACCOUNT_ID_PATTERN.test(accountId)) throw new UsageError(`"${accountId}" is not an account id`);
  const secret = values['klaviyo-secret'];
  if (secret !== undefined && values['no-klaviyo-secret'] === true)
    throw new UsageError('--klaviyo-secret and --no-klaviyo-secret contradict each other');
  if (secret !== undefined && !SECRET_ID.test(secret))
    throw new UsageError('--klaviyo-secret must be a Secrets Manager secret name or ARN (not the key itself)');
  // A private key pasted by mistake would be stored in plain text: refuse what looks like one.
  if (secret !== undefined && /^pk_/.test(secret))
    throw new UsageError('--klaviyo-secret takes the name of the secret holding the key, not the key');
  const name = values.name;
  if (name !== undefined && (name.trim() === '' || name.length > 200))
    throw new UsageError('--name must be 1 to 200 characters');
  return {
    kind: 'set',
    accountId,
    displayName: name?.trim(),
    klaviyoKeySecretId: values['no-klaviyo-secret'] === true ? null : secret,
  };
}

function accountLine(account: {
  accountId: string;
  displayName: string | null;
  klaviyoKeySecretId: string | null;
  createdAt: Date;
}): string {
  return [
    account.accountId,
    account.displayName ?? '-',
    account.klaviyoKeySecretId ?? '(no Klaviyo key: not synced)',
    account.createdAt.toISOString(),
  ].join('\t');
}

async function main(): Promise<void> {
  let command: Command;
  try {
    command = parseCommand(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const db = getDb();
  if (command.kind === 'list') {
    const accounts = await listAccounts(db);
    process.stdout.write(`account\tname\tklaviyo key secret\tcreated\n`);
    for (const account of accounts) process.stdout.write(`${accountLine(account)}\n`);
    return;
  }
  const stored = await getAccount(db, command.accountId);
  const saved = await saveAccount(db, {
    accountId: command.accountId,
    displayName: command.displayName ?? stored?.displayName ?? null,
    klaviyoKeySecretId:
      command.klaviyoKeySecretId === undefined ? (stored?.klaviyoKeySecretId ?? null) : command.klaviyoKeySecretId,
  });
  process.stdout.write(`${stored ? 'updated' : 'created'}\t${accountLine(saved)}\n`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`accounts: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => closeDb());
