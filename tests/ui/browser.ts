import { existsSync } from 'node:fs';
import type { Browser } from 'playwright-core';

/**
 * Debian's chromium package, driven by playwright-core: nothing downloads a browser. A missing
 * browser fails the browser tests; they are skipped only when SKIP_BROWSER_TESTS=1 asks for it.
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

/** True when the browser tests should run; throws when they should but cannot, so a skip is never silent. */
export function browserTestsEnabled(what: string): boolean {
  if (process.env.SKIP_BROWSER_TESTS === '1') {
    console.warn(`SKIPPED: ${what}, as SKIP_BROWSER_TESTS=1 asks.`);
    return false;
  }
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `${what} need Chromium at ${CHROMIUM_PATH}: apt-get install -y chromium, set CHROMIUM_PATH, ` +
        'or set SKIP_BROWSER_TESTS=1 to skip them.',
    );
  }
  return true;
}

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_FLAGS, timeout: 60_000 });
}
