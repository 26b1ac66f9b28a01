import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

/**
 * What every bench leaves behind: its figures as JSON in bench/results/<bench>.json, from which
 * `npm run bench:report` renders docs/benchmarks.md. Figures are never copied into documents by hand.
 */
export interface BenchTable {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly (string | number | null)[])[];
  /** Set when every number column is in this one unit (e.g. "ms"): a chart then draws them on one axis. */
  readonly unit?: string;
}

export interface BenchResult {
  /** File name and section key, e.g. "query". */
  readonly bench: string;
  /** Human title of the section. */
  readonly title: string;
  /** The exact command that printed these figures. */
  readonly command: string;
  /** The reference measured in the same run that ratios are taken against. */
  readonly reference: string;
  /** Dataset and knobs (events stored, metrics, seed, ...). */
  readonly dataset: Readonly<Record<string, string | number>>;
  readonly tables: readonly BenchTable[];
  /** Goals and how this run compares with them, one sentence each. */
  readonly goals?: readonly string[];
  readonly notes?: readonly string[];
}

export interface BenchMachine {
  readonly cpus: number;
  readonly cpu_model: string;
  readonly memory_gib: number;
  readonly node: string;
}

export function benchMachine(): BenchMachine {
  const list = cpus();
  return {
    cpus: list.length,
    cpu_model: list[0]?.model.trim() ?? 'unknown',
    memory_gib: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
}

export const benchResultsDir = join(__dirname, '..', 'results');

/** Writes bench/results/<bench>.json (date and machine added here) and returns its path. */
export function writeBenchResult(result: BenchResult): string {
  mkdirSync(benchResultsDir, { recursive: true });
  const path = join(benchResultsDir, `${result.bench}.json`);
  const document = { ...result, date: new Date().toISOString().slice(0, 10), machine: benchMachine() };
  writeFileSync(path, `${JSON.stringify(document, null, 2)}\n`);
  return path;
}

/**
 * The command that is running, as typed: the BENCH_* settings in the environment (sorted), then
 * `npm run <script>` when npm started it, else `npx tsx <file>`. Recorded in the JSON so that anyone
 * can run the same measurement again.
 */
export function benchCommand(file: string, env: NodeJS.ProcessEnv = process.env): string {
  const settings = Object.keys(env)
    .filter((name) => name.startsWith('BENCH_') && env[name] !== undefined && env[name] !== '')
    .sort()
    .map((name) => `${name}=${env[name] as string}`);
  const script = env.npm_lifecycle_event;
  const run = script ? `npm run ${script}` : `npx tsx ${file}`;
  return [...settings, run].join(' ');
}
