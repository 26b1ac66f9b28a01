import { existsSync } from 'node:fs';
import type { Browser } from 'playwright-core';

/**
 * Debian's chromium package, driven by playwright-core: nothing downloads a browser. Where
 * /usr/bin/chromium is missing the browser tests are skipped, loudly (see README "Tests").
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM_PATH);
}

export function warnChromiumMissing(what: string): void {
  console.warn(
    [
      '',
      '*'.repeat(100),
      `*** SKIPPED: ${what}: no Chromium at ${CHROMIUM_PATH}.`,
      '*** Install it to run the browser tests: apt-get install -y chromium (or set CHROMIUM_PATH).',
      '*'.repeat(100),
      '',
    ].join('\n'),
  );
}

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_FLAGS, timeout: 60_000 });
}
