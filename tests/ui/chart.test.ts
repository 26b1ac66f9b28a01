/// <reference lib="dom" />
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { closeDb } from '../../lib/db';
import { startLocalApi, type LocalApi } from '../../scripts/local-api';
import { freshDatabase, type TestDatabase } from '../support/database';
import { storeEvents, type SimpleEvent } from '../support/events';
import { TEST_KEYS } from '../support/setupEnv';
import { browserTestsEnabled, launchChromium } from './browser';

/**
 * The chart page in a real browser: served by functions/ui.ts, it asks the API (the real handlers,
 * routed as serverless.yml says) for the metrics and their aggregates, and charts what the database
 * holds. Each assertion reads what the page shows, so a broken page, handler or query fails it.
 */
const describeInBrowser = browserTestsEnabled('tests/ui (the chart page in headless Chromium)')
  ? describe
  : describe.skip;

const DAY_MS = 86_400_000;
const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
const dayText = (ms: number) => new Date(ms).toISOString().slice(0, 10);

// Placed Order: 3, 5 and 2 orders on the three days before today, at noon UTC, worth 10 each + day index.
const ORDERS_PER_DAY = [3, 5, 2];
const orders: SimpleEvent[] = ORDERS_PER_DAY.flatMap((n, d) =>
  Array.from({ length: n }, (_, i) => ({
    metricId: 'UIORDER',
    profileId: `UIPROFILE${i % 2}`,
    at: new Date(today - (3 - d) * DAY_MS + 12 * 3_600_000 + i * 60_000),
    value: 10 + d,
  })),
);
const views: SimpleEvent[] = [
  { metricId: 'UIVIEW', profileId: 'UIPROFILE0', at: new Date(today - DAY_MS + 3_600_000) },
];

describeInBrowser('chart page (GET /) in headless Chromium', () => {
  let t: TestDatabase;
  let api: LocalApi;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    t = await freshDatabase();
    await storeEvents(t.db, [...orders, ...views]);
    api = await startLocalApi();
    browser = await launchChromium();
    context = await browser.newContext({ timezoneId: 'UTC', viewport: { width: 1200, height: 900 } });
    page = await context.newPage();
    // A CSP violation, a script error or a failed request shows up here.
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  }, 90_000);

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await api?.close();
    await closeDb();
    await t?.drop();
  });

  async function waitForState(state: 'ready' | 'error'): Promise<void> {
    await page.waitForFunction((s) => document.body.dataset.state === s, state, { timeout: 30_000 });
  }

  async function tableRows(): Promise<string[][]> {
    return page.$$eval('#table tr', (rows) =>
      rows.slice(1).map((r) => Array.from(r.querySelectorAll('td')).map((c) => c.textContent ?? '')),
    );
  }

  it('takes the key from the fragment, lists the metrics and charts the busiest one by day', async () => {
    await page.goto(`${api.url}/#key=${TEST_KEYS.read}`);
    await waitForState('ready');

    expect(page.url()).toBe(`${api.url}/`); // the key left the address bar
    expect(await page.inputValue('#key')).toBe(TEST_KEYS.read);
    const options = await page.$$eval('#metric option', (os) =>
      os.map((o) => ({ value: (o as HTMLOptionElement).value, text: o.textContent })),
    );
    expect(options.map((o) => o.value).sort()).toEqual(['UIORDER', 'UIVIEW']);
    expect(await page.inputValue('#metric')).toBe('UIORDER');

    expect(await page.textContent('#summary [data-measurement="count"] b')).toBe('10');
    const byDay = new Map((await tableRows()).map(([bucket, count]) => [bucket?.slice(0, 10), count]));
    ORDERS_PER_DAY.forEach((n, d) => expect(byDay.get(dayText(today - (3 - d) * DAY_MS))).toBe(String(n)));

    // uPlot drew into its canvas: some pixels are not blank.
    const inked = await page.$eval('#chart canvas', (canvas) => {
      const c = canvas as HTMLCanvasElement;
      const data = c.getContext('2d')?.getImageData(0, 0, c.width, c.height).data ?? new Uint8ClampedArray();
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if ((data[i] as number) > 0) n += 1;
      return n;
    });
    expect(inked).toBeGreaterThan(100);
    expect(problems).toEqual([]);
  });

  it('charts sum_value and unique per week in another time zone', async () => {
    await page.uncheck('input[value=count]');
    await page.check('input[value=sum_value]');
    await page.check('input[value=unique]');
    await page.fill('#timezone', 'America/New_York');
    await page.selectOption('#interval', 'week');
    await waitForState('ready');
    await page.fill('#from', dayText(today - 20 * DAY_MS));
    await page.fill('#to', dayText(today + DAY_MS));
    await page.click('#draw');
    await waitForState('ready');

    const sum = ORDERS_PER_DAY.reduce((s, n, d) => s + n * (10 + d), 0);
    expect(await page.textContent('#summary [data-measurement="sum_value"] b')).toBe(String(sum));
    // unique is per bucket: the two profiles ordered in whichever weeks the three days fall in.
    const rows = await tableRows();
    const uniqueColumn = rows.map((r) => Number(r[2]));
    expect(uniqueColumn.every((u) => u === 0 || u === 2)).toBe(true);
    expect(uniqueColumn.some((u) => u === 2)).toBe(true);
    expect(await page.textContent('#chart .u-title')).toContain('per week (America/New_York)');
    expect(problems).toEqual([]);
  });

  it('shows the API error when the key is wrong', async () => {
    await page.fill('#key', 'not-a-key');
    await page.click('#connect');
    await waitForState('error');
    expect(await page.textContent('#status')).toMatch(/^401 Not authenticated: The API key is not valid/);
  });

  it('draws figures handed to window.klaviyoChart.show, as npm run chart does', async () => {
    await page.evaluate(() =>
      (window as unknown as { klaviyoChart: { show(spec: unknown): void } }).klaviyoChart.show({
        title: 'bench',
        categories: ['ingest', 'query'],
        series: [{ label: 'events/s', values: [25000, 900] }],
      }),
    );
    await waitForState('ready');
    expect(await page.$eval('body', (b) => b.classList.contains('static'))).toBe(true);
    expect(await tableRows()).toEqual([
      ['ingest', '25,000'],
      ['query', '900'],
    ]);
    expect(await page.textContent('#chart .u-title')).toBe('bench');
  });
});
