import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { inflateRawSync } from 'node:zlib';

/**
 * npm run package: builds every function's deployment zip with `osls package` (serverless-esbuild:
 * one minified bundle per function, @aws-sdk left to the Lambda runtime) and reports the sizes.
 *
 * Needs no AWS credentials and no network: the deployed stage takes its secrets through CloudFormation
 * dynamic references, resolved by CloudFormation at deploy time. Without DB_SECRET_ARN the template is
 * built with a placeholder ARN (said so below): the zips are the same, only `osls deploy` needs the
 * real one. Exit code 1 when a zip is over the limit (PACKAGE_MAX_KB, 250 by default).
 *
 * Usage: npm run package [-- --stage prod]
 */

const ROOT = resolve(__dirname, '..');
const OUT_DIR = join(ROOT, '.serverless');
const PLACEHOLDER_SECRET = 'arn:aws:secretsmanager:us-east-1:000000000000:secret:package-only-placeholder';

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
  const placeholder = stage !== 'local' && !env.DB_SECRET_ARN;
  if (placeholder) {
    env.DB_SECRET_ARN = PLACEHOLDER_SECRET;
    if (env.DB_DRIVER === 'data-api') {
      env.DB_CLUSTER_ARN ??= 'arn:aws:rds:us-east-1:000000000000:cluster:package-only-placeholder';
      env.DB_NAME ??= 'klaviyo';
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
      `DB_SECRET_ARN is not set: the CloudFormation template holds the placeholder ${PLACEHOLDER_SECRET}.`,
      'The zips do not depend on it; `osls deploy --stage <stage>` packages again with the real ARN.',
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
  return reports.some((r) => r.zipBytes > maxKb * 1024) ? 1 : 0;
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
