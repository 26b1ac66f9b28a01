import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { inflateRawSync } from 'node:zlib';

/**
 * npm run package: builds every function's deployment zip with `osls package` (serverless-esbuild:
 * one minified bundle per function, @aws-sdk left to the Lambda runtime) and reports the sizes.
 *
 * Needs no AWS credentials and no network. No function setting holds a secret: the functions read the
 * database password (or sign an IAM token) and the API key hashes at run time. Without the deploy
 * settings (DB_HOST, DB_USER, DB_NAME, DB_CONNECT_ARN or DB_SECRET_ARN) the template is built with
 * placeholders (said so below): the zips are the same, only `osls deploy` needs the real values.
 * Exit code 1 when a zip is over the limit (PACKAGE_MAX_KB, 250 by default), or when the template
 * puts a secret or a dynamic reference into a function's environment (see secretsInTemplate).
 *
 * Usage: npm run package [-- --stage prod]
 */

const ROOT = resolve(__dirname, '..');
const OUT_DIR = join(ROOT, '.serverless');
const PLACEHOLDER_SECRET = 'arn:aws:secretsmanager:us-east-1:000000000000:secret:package-only-placeholder';
const PLACEHOLDERS: Readonly<Record<string, string>> = {
  DB_HOST: 'package-only-placeholder.invalid',
  DB_USER: 'klaviyo_app',
  DB_NAME: 'klaviyo',
  DB_CONNECT_ARN: 'arn:aws:rds-db:us-east-1:000000000000:dbuser:package-only-placeholder/klaviyo_app',
};

// A function setting whose name says it holds a credential.
// A secret's ARN or id (its name) is not a secret; its value is.
const SECRET_NAME = /PASSWORD|SECRET(?!_(ARN|ID)$)|TOKEN|PRIVATE_KEY|API_KEYS$/i;

/**
 * What in a CloudFormation template would put a secret into a function's settings (readable by
 * anyone allowed lambda:GetFunctionConfiguration): a dynamic reference ({{resolve:...}}, which
 * CloudFormation resolves into the plain value) in any function's environment, or a non-empty
 * variable whose name says it holds a credential. Returns one line per finding.
 */
export function secretsInTemplate(template: unknown): string[] {
  const findings: string[] = [];
  const resources = (template as { Resources?: Record<string, { Type?: string; Properties?: unknown }> }).Resources;
  for (const [name, resource] of Object.entries(resources ?? {})) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const variables =
      (resource.Properties as { Environment?: { Variables?: Record<string, unknown> } } | undefined)?.Environment
        ?.Variables ?? {};
    for (const [key, value] of Object.entries(variables)) {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      if (text.includes('{{resolve:')) findings.push(`${name}.${key}: a dynamic reference (${text.slice(0, 60)})`);
      else if (SECRET_NAME.test(key) && text !== '' && text !== '""') findings.push(`${name}.${key}: a credential`);
    }
  }
  return findings;
}

interface ZipEntry {
  readonly name: string;
  readonly compressed: number;
  readonly size: number;
}

/** The central directory of a zip: what is in it, without unpacking (no unzip on every machine). */
export function zipEntries(zip: Buffer): ZipEntry[] {
  const EOCD = 0x06054b50;
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65_557); i -= 1) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip file (no end of central directory)');
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const entries: ZipEntry[] = [];
  for (let n = 0; n < count; n += 1) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const compressed = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    entries.push({ name: zip.toString('utf8', at + 46, at + 46 + nameLength), compressed, size });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** One file's content from a zip (stored or deflated), to check what a bundle really contains. */
export function zipFile(zip: Buffer, name: string): Buffer | undefined {
  let at = 0;
  while (at + 30 <= zip.length && zip.readUInt32LE(at) === 0x04034b50) {
    const method = zip.readUInt16LE(at + 8);
    const compressed = zip.readUInt32LE(at + 18);
    const nameLength = zip.readUInt16LE(at + 26);
    const extraLength = zip.readUInt16LE(at + 28);
    const entryName = zip.toString('utf8', at + 30, at + 30 + nameLength);
    const start = at + 30 + nameLength + extraLength;
    if (entryName === name) {
      const data = zip.subarray(start, start + compressed);
      return method === 0 ? Buffer.from(data) : inflateRawSync(data);
    }
    at = start + compressed;
  }
  return undefined;
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: 'inherit' });
    child.once('error', fail);
    child.once('exit', (code, signal) => done(code ?? (signal ? 1 : 0)));
  });
}

export interface BundleReport {
  readonly fn: string;
  readonly zipBytes: number;
  readonly jsBytes: number;
  readonly mapBytes: number;
  readonly files: number;
}

export function reportBundles(dir: string): BundleReport[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.zip'))
    .sort()
    .map((file) => {
      const zip = readFileSync(join(dir, file));
      const entries = zipEntries(zip);
      const sum = (filter: (e: ZipEntry) => boolean) => entries.filter(filter).reduce((s, e) => s + e.size, 0);
      return {
        fn: file.replace(/\.zip$/, ''),
        zipBytes: statSync(join(dir, file)).size,
        jsBytes: sum((e) => e.name.endsWith('.js')),
        mapBytes: sum((e) => e.name.endsWith('.js.map')),
        files: entries.length,
      };
    });
}

async function main(argv: readonly string[]): Promise<number> {
  const stageAt = argv.indexOf('--stage');
  const stage = stageAt >= 0 ? argv[stageAt + 1] : (process.env.PACKAGE_STAGE ?? 'prod');
  if (!stage) throw new Error('--stage needs a value');
  const maxKb = Number(process.env.PACKAGE_MAX_KB ?? 250);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SLS_TELEMETRY_DISABLED: '1',
    SLS_NOTIFICATIONS_MODE: 'off',
    SLS_INTERACTIVE_SETUP_DISABLE: '1',
  };
  const placeholder = stage !== 'local' && (env.DB_DRIVER === 'data-api' ? !env.DB_SECRET_ARN : !env.DB_HOST);
  if (placeholder) {
    if (env.DB_DRIVER === 'data-api') {
      env.DB_SECRET_ARN ??= PLACEHOLDER_SECRET;
      env.DB_CLUSTER_ARN ??= 'arn:aws:rds:us-east-1:000000000000:cluster:package-only-placeholder';
      env.DB_NAME ??= 'klaviyo';
    } else {
      for (const [key, value] of Object.entries(PLACEHOLDERS)) env[key] ??= value;
      if (env.DB_AUTH === 'secret') env.DB_SECRET_ARN ??= PLACEHOLDER_SECRET;
    }
  }
  rmSync(OUT_DIR, { recursive: true, force: true });
  const oslsBin = require.resolve('osls/bin/serverless.js');
  const started = performance.now();
  const code = await run(process.execPath, [oslsBin, 'package', '--stage', stage, '--package', OUT_DIR], env);
  if (code !== 0) return code;
  if (!existsSync(OUT_DIR)) throw new Error(`osls package wrote nothing to ${OUT_DIR}`);

  const reports = reportBundles(OUT_DIR);
  const width = Math.max(...reports.map((r) => r.fn.length), 8);
  const lines = [
    '',
    `Packaged stage "${stage}" in ${((performance.now() - started) / 1000).toFixed(1)} s into .serverless/ (goal: each zip at most ${maxKb} KB)`,
    `${'function'.padEnd(width)}  ${'zip'.padStart(10)}  ${'bundle .js'.padStart(10)}  ${'.js.map'.padStart(10)}  files`,
    ...reports.map(
      (r) =>
        `${r.fn.padEnd(width)}  ${kb(r.zipBytes).padStart(10)}  ${kb(r.jsBytes).padStart(10)}  ${kb(r.mapBytes).padStart(10)}  ${String(r.files).padStart(5)}` +
        (r.zipBytes > maxKb * 1024 ? `   OVER ${maxKb} KB` : ''),
    ),
  ];
  if (placeholder) {
    lines.push(
      '',
      'The deploy settings are not set (DB_HOST, DB_USER, DB_NAME, DB_CONNECT_ARN or DB_SECRET_ARN): the',
      'CloudFormation template holds placeholders. The zips do not depend on them; `osls deploy --stage <stage>`',
      'packages again with the real values.',
    );
  }
  const template: unknown = JSON.parse(
    readFileSync(join(OUT_DIR, 'cloudformation-template-update-stack.json'), 'utf8'),
  );
  const findings = secretsInTemplate(template);
  if (findings.length > 0) {
    lines.push('', 'The template puts secrets into function settings:', ...findings.map((f) => `  ${f}`));
  }
  process.stdout.write(lines.join('\n') + '\n');
  return reports.some((r) => r.zipBytes > maxKb * 1024) || findings.length > 0 ? 1 : 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`package failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
