import { generatePages } from '../lib/demo/generator';
import { KLAVIYO_LIMITS } from '../lib/sync/klaviyoClient';
import { FakeKlaviyo } from '../tests/support/fakeKlaviyo';
import { defaultDemoProfiles } from './seed';

/**
 * npm run fake-klaviyo [-- --events N --days D --port P --key K --throttle]
 *
 * A local stand-in for Klaviyo's read API serving the demo generator's account (the data of
 * `npm run seed`, dated over the last D days) as Klaviyo's JSON:API pages, so that `npm run sync`
 * can be watched before it is pointed at a real account. With --throttle it refuses requests beyond
 * Klaviyo's documented limits with 429 and Retry-After, as Klaviyo does.
 */
const DEFAULTS = { events: 20_000, days: 30, port: 4010, key: 'pk_fake_demo_key' };

function parse(argv: readonly string[]) {
  const settings = { ...DEFAULTS, throttle: false };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === '--throttle') {
      settings.throttle = true;
      continue;
    }
    if (arg === '--help' || arg === '-h') throw new Error('usage');
    const value = argv[(i += 1)];
    if (value === undefined) throw new Error(`${arg} needs a value`);
    if (arg === '--key') settings.key = value;
    else if (arg === '--events' || arg === '--days' || arg === '--port') {
      const number = Number(value.replace(/_/g, ''));
      const min = arg === '--port' ? 0 : 1;
      if (!Number.isSafeInteger(number) || number < min) throw new Error(`${arg} must be a whole number >= ${min}`);
      settings[arg.slice(2) as 'events' | 'days' | 'port'] = number;
    } else throw new Error(`unknown option ${arg}`);
  }
  return settings;
}

async function main(): Promise<void> {
  let settings: ReturnType<typeof parse>;
  try {
    settings = parse(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(
      `${err instanceof Error && err.message !== 'usage' ? `${err.message}\n` : ''}` +
        'Usage: npm run fake-klaviyo -- [--events N] [--days D] [--port P] [--key K] [--throttle]\n',
    );
    process.exitCode = 2;
    return;
  }
  const end = new Date(Math.floor(Date.now() / 60_000) * 60_000 - 60_000);
  const start = new Date(end.getTime() - settings.days * 86_400_000);
  const fake = new FakeKlaviyo({
    apiKey: settings.key,
    port: settings.port,
    ...(settings.throttle ? { throttle: KLAVIYO_LIMITS } : {}),
  });
  for (const page of generatePages({
    events: settings.events,
    profiles: defaultDemoProfiles(settings.events),
    start,
    end,
  })) {
    fake.addEventsPage(page);
  }
  const url = await fake.start();
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(
    `Fake Klaviyo on ${url}: ${settings.events.toLocaleString('en-US')} events of the demo account, ` +
      `${fake.profiles.size.toLocaleString('en-US')} profiles, ${fake.metrics.size} metrics, ` +
      `from ${start.toISOString()} to ${end.toISOString()}${settings.throttle ? "; throttled at Klaviyo's limits" : ''}.`,
  );
  out(
    `In another terminal: KLAVIYO_BASE_URL=${url} KLAVIYO_API_KEY=${settings.key === DEFAULTS.key ? DEFAULTS.key : '<the --key you gave>'} npm run sync`,
  );
  out('Ctrl-C stops it.');
  const stop = () => {
    void fake.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

void main();
