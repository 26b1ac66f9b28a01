import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchCommand } from '../../bench/support/results';
import { benchResultTable } from '../../scripts/chart';
import { readBenchResults, renderBenchReport, REPORT_PATH } from '../../scripts/bench-report';

/** docs/benchmarks.md is rendered from bench/results/*.json by `npm run bench:report`, never written by hand. */
const SAMPLE = {
  bench: 'sample',
  title: 'Sample: incremental against full',
  command: 'BENCH_EVENTS=1000 npm run bench:sample',
  reference: 'a full rebuild in the same run',
  dataset: { events: 1000, seed: 1 },
  tables: [
    {
      title: 'Runs (ms)',
      columns: ['round', 'incremental', 'full rebuild', 'ratio', 'note'],
      rows: [
        ['round 1', 812.4, 35013, 0.0232, 'cold | caches'],
        ['round 2', 640, null, 0.0183, 'warm'],
      ],
    },
  ],
  goals: ['An incremental run at most 1 s: 640 ms (met).'],
  notes: ['Checked against raw events.'],
  date: '2026-12-06',
  machine: { cpus: 2, cpu_model: 'Some CPU', memory_gib: 8, node: 'v20.20.2' },
};

describe('bench report', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bench-results-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('renders a result: its command, reference, machine, date, tables and goals', () => {
    writeFileSync(join(dir, 'sample.json'), JSON.stringify(SAMPLE));
    const report = renderBenchReport(readBenchResults(dir));
    const lines = report.split('\n');
    expect(lines[0]).toBe('# Benchmarks');
    expect(lines).toContain('## Goals');
    expect(lines).toContain('- **Sample: incremental against full**: An incremental run at most 1 s: 640 ms (met).');
    expect(lines).toContain('## Sample: incremental against full');
    expect(lines).toContain('- Command: `BENCH_EVENTS=1000 npm run bench:sample`');
    expect(lines).toContain('- Reference: a full rebuild in the same run');
    expect(lines).toContain('- Machine: 2 × Some CPU, 8 GiB, Node v20.20.2');
    expect(lines).toContain('- Date: 2026-12-06');
    expect(lines).toContain('- Dataset and settings: events 1,000, seed 1');
    expect(lines).toContain('### Runs (ms)');
    // Number columns right-aligned (gaps allowed), text columns not; pipes in text escaped.
    expect(lines).toContain('| round | incremental | full rebuild | ratio | note |');
    expect(lines).toContain('| --- | ---: | ---: | ---: | --- |');
    expect(lines).toContain('| round 1 | 812.4 | 35,013 | 0.023 | cold \\| caches |');
    expect(lines).toContain('| round 2 | 640 | – | 0.018 | warm |');
    expect(lines).toContain('- Checked against raw events.');
    // The same results give the same file.
    expect(renderBenchReport(readBenchResults(dir))).toBe(report);
  });

  it('orders the sections aggregate, ingest, query, drivers, then the rest', () => {
    for (const bench of ['zeta', 'drivers', 'aggregate', 'ingest']) {
      writeFileSync(join(dir, `${bench}.json`), JSON.stringify({ ...SAMPLE, bench, title: `Title ${bench}` }));
    }
    const report = renderBenchReport(readBenchResults(dir));
    const at = (bench: string) => report.indexOf(`## Title ${bench}`);
    expect(at('aggregate')).toBeGreaterThan(0);
    expect(at('aggregate')).toBeLessThan(at('ingest'));
    expect(at('ingest')).toBeLessThan(at('drivers'));
    expect(at('drivers')).toBeLessThan(at('zeta'));
  });

  it('refuses a result without the fields it renders, naming the file and the field', () => {
    writeFileSync(join(dir, 'broken.json'), JSON.stringify({ ...SAMPLE, command: undefined }));
    expect(() => readBenchResults(dir)).toThrow(/broken\.json is not a bench result: command/);
  });

  it('docs/benchmarks.md is what bench/results renders (run `npm run bench:report` after a bench)', () => {
    expect(readFileSync(REPORT_PATH, 'utf8')).toBe(renderBenchReport(readBenchResults()));
  });
});

describe('benchCommand', () => {
  it('records the BENCH_* settings in order, then the npm script or the file', () => {
    expect(
      benchCommand('bench/x.ts', {
        BENCH_RUNS: '5',
        HOME: '/root',
        BENCH_EVENTS: '100',
        npm_lifecycle_event: 'bench:x',
      }),
    ).toBe('BENCH_EVENTS=100 BENCH_RUNS=5 npm run bench:x');
    expect(benchCommand('bench/x.ts', { BENCH_EMPTY: '' })).toBe('npx tsx bench/x.ts');
  });
});

describe('npm run chart -- --bench', () => {
  it("charts a result's table: the first column names the bars, each all-number column is a series", () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-results-'));
    try {
      const file = join(dir, 'sample.json');
      writeFileSync(file, JSON.stringify(SAMPLE));
      const spec = benchResultTable(file, 1);
      expect(spec.title).toBe('Sample: incremental against full: Runs (ms)');
      expect(spec.categories).toEqual(['round 1', 'round 2']);
      expect(spec.series.map((s) => [s.label, s.values])).toEqual([
        ['incremental', [812.4, 640]],
        ['ratio', [0.0232, 0.0183]],
      ]);
      expect(new Set(spec.series.map((s) => s.scale)).size).toBe(2);
      writeFileSync(file, JSON.stringify({ ...SAMPLE, tables: [{ ...SAMPLE.tables[0], unit: 'ms' }] }));
      expect(benchResultTable(file, 1).series.map((s) => s.scale)).toEqual(['ms', 'ms']);
      expect(() => benchResultTable(file, 2)).toThrow(/has no table 2/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
