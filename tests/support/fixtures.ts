import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Klaviyo's example documents (tests/fixtures/klaviyo, see its SOURCE.md), parsed afresh for each use. */
export function klaviyoFixture<T = unknown>(name: string): T {
  return JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'klaviyo', name), 'utf8')) as T;
}
