/// <reference lib="dom" />
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { closeDb } from '../lib/db';
import { embeddedDataDir, startEmbeddedPostgres, type EmbeddedServer } from '../lib/db/embedded';
import { hashApiKey } from '../lib/http/auth';
import { setLogLevel } from '../lib/log';
import { CHROMIUM_PATH, launchChromium } from '../tests/ui/browser';
import { startLocalApi, type LocalApi } from './local-api';

/**
 * npm run chart: a PNG drawn by the chart page (GET /) in headless Chromium, the page a user sees.
 *
 *   npm run chart -- [--metric <id or name>] [--measurements count,sum_value,unique] [--interval day]
 *                    [--timezone UTC] [--from 2025-01-01] [--to 2026-01-01] [--out chart.png]
 *       A metric's aggregates, from the API of a running `npm start` when one answers on HTTP_PORT
 *       (3000), else from the handlers run in this process on DATABASE_URL or the embedded database
 *       in .data/dev-pg (which `npm start` creates and seeds). Without --metric: the busiest metric.
 *   npm run chart -- --figures figures.json [--out bench.png]
 *       Figures of your own: {"title", "categories": [...], "series": [{"label", "values": [...]}]}
 *       (or "dates" instead of "categories" for a time axis).
 *   npm run chart -- --bench [aggregate] [--table 1] [--out bench.png]
 *       A table of a bench's results (bench/results/<bench>.json, the figures of docs/benchmarks.md;
 *       default aggregate): the first column names the bars, every numeric column becomes a series.
 *       A path to a .json result or a markdown file (its "## Benchmarks" section, else the whole
 *       file) works too.
 */
const ROOT = resolve(__dirname, '..');

interface ChartSpec {
  readonly title: string;
  readonly categories?: readonly string[];
  readonly dates?: readonly string[];
  readonly series: readonly { label: string; values: readonly number[]; scale?: string }[];
}

interface Options {
  readonly out: string;
  readonly metric?: string;
  readonly measurements: string[];
  readonly interval: string;
  readonly timezone: string;
  readonly from?: string;
  readonly to?: string;
  readonly figures?: string;
  readonly bench?: string;
  readonly table: number;
}

function parseArgs(argv: readonly string[]): Options {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) throw new Error(`Unexpected argument ${arg}`);
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      values.set(arg.slice(2), next);
      i += 1;
    } else values.set(arg.slice(2), '');
  }
  const known = ['out', 'metric', 'measurements', 'interval', 'timezone', 'from', 'to', 'figures', 'bench', 'table'];
  for (const name of values.keys()) if (!known.includes(name)) throw new Error(`Unknown option --${name}`);
  const bench = values.has('bench') ? values.get('bench') || 'aggregate' : undefined;
  return {
    out: resolve(values.get('out') || (bench || values.has('figures') ? 'bench-chart.png' : 'chart.png')),
    metric: values.get('metric') || undefined,
    measurements: (values.get('measurements') || 'count')
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean),
    interval: values.get('interval') || 'day',
    timezone: values.get('timezone') || 'UTC',
    from: values.get('from') || undefined,
    to: values.get('to') || undefined,
    figures: values.get('figures') || undefined,
    bench,
    table: Number(values.get('table') || 1),
  };
}

const number = (cell: string): number | undefined => {
  const match = /-?\d[\d,]*(\.\d+)?/.exec(cell.replace(/\*\*/g, ''));
  return match ? Number(match[0].replace(/,/g, '')) : undefined;
};

/** Bars named by the first column; every column whose cells are all numbers becomes a series. */
function tableSpec(
  title: string,
  header: readonly string[],
  rows: readonly (readonly (number | undefined | string)[])[],
  unit?: string,
): ChartSpec | undefined {
  const series = header
    .slice(1)
    .map((label, i) => ({ label, values: rows.map((r) => r[i + 1]) }))
    .filter((s): s is { label: string; values: number[] } => s.values.every((v) => typeof v === 'number'))
    // Columns are different quantities (events/s, ms, a ratio): each gets its own axis, unless the
    // table says they share one unit.
    .map((s) => ({ label: s.label, values: s.values, scale: unit ?? s.label }));
  if (series.length === 0) return undefined;
  return { title, categories: rows.map((r) => String(r[0] ?? '')), series };
}

/** The Nth table of a bench's results (bench/results/<bench>.json, or a path to such a file). */
export function benchResultTable(bench: string, n: number): ChartSpec {
  const file = bench.endsWith('.json') ? resolve(bench) : join(ROOT, 'bench', 'results', `${bench}.json`);
  if (!existsSync(file)) throw new Error(`No bench results in ${file}: run the bench first (npm run bench:${bench})`);
  const doc = JSON.parse(readFileSync(file, 'utf8')) as {
    title?: string;
    tables?: { title?: string; columns?: string[]; rows?: (string | number | null)[][]; unit?: string }[];
  };
  const table = doc.tables?.[n - 1];
  if (!table?.columns || !table.rows || table.rows.length === 0)
    throw new Error(`${file} has no table ${n} (it has ${doc.tables?.length ?? 0})`);
  const rows = table.rows.map((r) => r.map((c) => (c === null ? undefined : c)));
  const spec = tableSpec(`${doc.title ?? bench}: ${table.title ?? `table ${n}`}`, table.columns, rows, table.unit);
  if (!spec) throw new Error(`table ${n} of ${file} has no column of numbers`);
  return spec;
}

/** The Nth markdown table of the "## Benchmarks" section (or of the whole file when it has none). */
export function benchTable(markdown: string, n: number, source: string): ChartSpec {
  const section = /^## Benchmarks\s*$([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(markdown)?.[1] ?? markdown;
  const tables: string[][][] = [];
  let current: string[][] | undefined;
  for (const line of section.split('\n')) {
    if (/^\s*\|/.test(line)) {
      const cells = line
        .trim()
        .replace(/^\||\|$/g, '')
        .split('|')
        .map((c) => c.trim());
      if (cells.every((c) => /^:?-{2,}:?$/.test(c))) continue;
      if (!current) tables.push((current = []));
      current.push(cells);
    } else current = undefined;
  }
  const table = tables[n - 1];
  if (!table || table.length < 2)
    throw new Error(`${source} has no table ${n} under "## Benchmarks" (found ${tables.length})`);
  const [header, ...rows] = table as [string[], ...string[][]];
  const spec = tableSpec(
    `Benchmarks: ${header[0] || 'table ' + n}`,
    header,
    rows.map((r) => [r[0] ?? '', ...r.slice(1).map((c) => number(c))]),
  );
  if (!spec) throw new Error(`table ${n} of ${source} has no column of numbers`);
  return spec;
}

async function render(page: Page, out: string): Promise<void> {
  mkdirSync(dirname(out), { recursive: true });
  await page.locator('#figure').screenshot({ path: out });
  process.stdout.write(`wrote ${out}\n`);
}

async function waitForChart(page: Page): Promise<void> {
  await page.waitForFunction(() => ['ready', 'error', 'empty'].includes(document.body.dataset.state ?? ''), undefined, {
    timeout: 60_000,
  });
  const state = await page.evaluate(() => document.body.dataset.state);
  if (state !== 'ready') throw new Error(`the chart page says: ${await page.textContent('#status')}`);
}

interface ApiSource {
  readonly url: string;
  readonly key: string;
  close(): Promise<void>;
}

/** A running `npm start` if one answers, else the handlers in this process on the local database. */
async function apiSource(): Promise<ApiSource> {
  const port = process.env.HTTP_PORT ?? '3000';
  const running = `http://localhost:${port}`;
  const keyFile = join(ROOT, '.data', 'dev-pg.api-key');
  const health = await fetch(`${running}/api/health`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
  if (health?.status === 200) {
    const key = process.env.API_KEY ?? (existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : '');
    if (!key) throw new Error(`npm start answers on ${running}, but its key is unknown: set API_KEY`);
    process.stdout.write(`using the API of npm start on ${running}\n`);
    return { url: running, key, close: async () => undefined };
  }

  let server: EmbeddedServer | undefined;
  if (!process.env.DATABASE_URL) {
    const dataDir = join(ROOT, '.data', 'dev-pg');
    if (!existsSync(join(embeddedDataDir(dataDir), 'PG_VERSION')))
      throw new Error('No data yet: run `npm start` once (it seeds demo data), or set DATABASE_URL.');
    server = await startEmbeddedPostgres({ dataDir, database: 'klaviyo' });
    process.env.DATABASE_URL = server.url;
    process.stdout.write(`started the embedded database in ${server.dataDir}\n`);
  }
  // A key for this run only: the handlers read API_KEYS when first called.
  const key = randomBytes(24).toString('base64url');
  process.env.API_KEYS = `read:${hashApiKey(key)}`;
  const api: LocalApi = await startLocalApi();
  return {
    url: api.url,
    key,
    close: async () => {
      await api.close();
      await closeDb();
      await server?.stop();
    },
  };
}

async function metricChart(page: Page, options: Options): Promise<void> {
  const source = await apiSource();
  try {
    await page.goto(`${source.url}/#key=${source.key}`);
    await waitForChart(page);
    if (options.metric) {
      const wanted = options.metric.toLowerCase();
      const value = await page.$$eval(
        '#metric option',
        (os, w) =>
          os
            .map((o) => ({ v: (o as HTMLOptionElement).value, t: (o.textContent ?? '').replace(/\s+\(.*$/, '') }))
            .find((o) => o.v.toLowerCase() === w || o.t.toLowerCase() === w)?.v,
        wanted,
      );
      if (!value) throw new Error(`No metric with the id or name ${options.metric}`);
      await page.selectOption('#metric', value);
      await waitForChart(page);
    }
    for (const m of ['count', 'sum_value', 'unique']) {
      if (options.measurements.includes(m)) await page.check(`input[value=${m}]`);
      else await page.uncheck(`input[value=${m}]`);
    }
    await page.fill('#timezone', options.timezone);
    if (options.interval !== (await page.inputValue('#interval'))) {
      await page.selectOption('#interval', options.interval);
      await waitForChart(page);
    }
    if (options.from) await page.fill('#from', options.from);
    if (options.to) await page.fill('#to', options.to);
    await page.click('#draw');
    await waitForChart(page);
    await render(page, options.out);
  } finally {
    await source.close();
  }
}

async function figuresChart(page: Page, spec: ChartSpec, out: string): Promise<void> {
  const api = await startLocalApi();
  try {
    await page.goto(`${api.url}/`);
    await page.evaluate(
      (s) => (window as unknown as { klaviyoChart: { show(spec: unknown): void } }).klaviyoChart.show(s),
      spec,
    );
    await waitForChart(page);
    await render(page, out);
  } finally {
    await api.close();
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const options = parseArgs(argv);
  // The handlers' one-line-per-request logs would bury the one line this script prints.
  if (!process.env.LOG_LEVEL) setLogLevel('warn');
  if (!existsSync(CHROMIUM_PATH))
    throw new Error(`No Chromium at ${CHROMIUM_PATH}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  const browser = await launchChromium();
  try {
    const context = await browser.newContext({
      viewport: { width: 1100, height: 800 },
      deviceScaleFactor: 2,
      timezoneId: 'UTC',
    });
    const page = await context.newPage();
    if (options.figures) {
      await figuresChart(page, JSON.parse(readFileSync(options.figures, 'utf8')) as ChartSpec, options.out);
    } else if (options.bench) {
      await figuresChart(
        page,
        options.bench.endsWith('.md')
          ? benchTable(readFileSync(options.bench, 'utf8'), options.table, options.bench)
          : benchResultTable(options.bench, options.table),
        options.out,
      );
    } else {
      await metricChart(page, options);
    }
  } finally {
    await browser.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`chart failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
