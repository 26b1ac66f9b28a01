import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import postgres from 'postgres';
import { startEmbeddedPostgres } from '../lib/db/embedded';
import { migrate } from '../lib/db/migrate';
import type { ClosableDb } from '../lib/db/port';
import { createPostgresDb } from '../lib/db/postgres';
import { ingestEventsPage, upsertMetricsDocument, upsertProfilesDocument } from '../lib/app/ingest';
import { DEFAULT_ACCOUNT_ID } from '../lib/config';
import { setLogLevel } from '../lib/log';
import { systemClock } from '../lib/sync/clock';
import { KLAVIYO_LIMITS, KlaviyoClient, PAGE_SIZES } from '../lib/sync/klaviyoClient';
import { runSync } from '../lib/app/sync';
import { BENCH_SERVER_SETTINGS } from './support/dataset';
import { intFromEnv } from './support/env';
import { writeBenchResult } from './support/results';

/**
 * npm run bench:sync: events pulled and stored per second by the sync's events stream, against the
 * stand-in Klaviyo without throttling, compared with direct ingest (ingestEventsPage, one transaction
 * per page, JSON.parse included) of the very pages the sync receives, in the same run, on a fresh
 * database holding the same metrics and profiles (as the events stream finds them: it runs after the
 * metrics and profiles streams). An untimed first sync pass captures the pages and warms both paths;
 * then rounds alternate which goes first. The stand-in runs in a process of its own, as Klaviyo runs
 * on machines of its own: serving a page is not the sync's cost. From the measured cost of a page it
 * states how long a 1M-event backfill takes at Klaviyo's default steady limit.
 *
 * Knobs: BENCH_SYNC_EVENTS (default 100,000), BENCH_SYNC_ROUNDS (default 2), BENCH_SYNC_DAYS (the
 * window the events lie in, default 30).
 */
const ROOT = resolve(__dirname, '..');
const EVENTS = intFromEnv('BENCH_SYNC_EVENTS', 100_000);
const ROUNDS = intFromEnv('BENCH_SYNC_ROUNDS', 2);
const DAYS = intFromEnv('BENCH_SYNC_DAYS', 30);
const API_KEY = 'pk_bench_sync_key';
const MILLION = 1_000_000;
const DAY_MS = 86_400_000;

const say = (line: string) => process.stdout.write(`${line}\n`);
const round1 = (v: number) => Math.round(v * 10) / 10;
const perSecond = (seconds: number) => Math.round(EVENTS / seconds);

interface StandIn {
  readonly child: ChildProcess;
  readonly baseUrl: string;
  readonly profiles: number;
  readonly metrics: number;
}

/** npm run fake-klaviyo in a child process; resolves once it listens. */
function startStandIn(): Promise<StandIn> {
  const script = join(ROOT, 'scripts', 'fake-klaviyo.ts');
  const args = ['--events', String(EVENTS), '--days', String(DAYS), '--port', '0', '--key', API_KEY];
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolveStandIn, reject) => {
    let text = '';
    const onExit = (code: number | null) =>
      reject(new Error(`the stand-in exited (${code}) before listening: ${text}`));
    child.once('exit', onExit);
    child.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const m =
        /Fake Klaviyo on (http:\/\/[^:]+:\d+): [\d,]+ events of the demo account, ([\d,]+) profiles, (\d+) metrics/.exec(
          text,
        );
      if (!m) return;
      child.off('exit', onExit);
      resolveStandIn({
        child,
        baseUrl: m[1] as string,
        profiles: Number((m[2] as string).replace(/,/g, '')),
        metrics: Number(m[3]),
      });
    });
  });
}

interface RoundFigures {
  readonly round: number;
  readonly first: 'sync' | 'direct';
  readonly syncSeconds: number;
  readonly directSeconds: number;
}

async function main(): Promise<void> {
  setLogLevel('warn');
  const dataDir = join(ROOT, '.data', 'bench-sync');
  rmSync(dataDir, { recursive: true, force: true });
  const server = await startEmbeddedPostgres({ dataDir, database: 'postgres', settings: BENCH_SERVER_SETTINGS });
  const admin = postgres(server.urlFor('postgres'), { max: 1, onnotice: () => undefined });
  let standIn: StandIn | undefined;
  try {
    standIn = await startStandIn();
    const fake = standIn;
    say(
      `bench:sync: ${EVENTS.toLocaleString('en-US')} events, ${fake.profiles.toLocaleString('en-US')} profiles, ` +
        `${fake.metrics} metrics over ${DAYS} days; ${ROUNDS} rounds`,
    );

    const freshDb = async (name: string): Promise<ClosableDb> => {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name}`);
      await admin.unsafe(`CREATE DATABASE ${name}`);
      const db = createPostgresDb({
        url: server.urlFor(name),
        ssl: 'disable',
        poolMax: 1,
        idleTimeoutSeconds: 0,
        connectTimeoutSeconds: 30,
        statementTimeoutMs: 0,
        prepare: true,
        applicationName: `bench-sync-${name}`,
      });
      await migrate(db);
      return db;
    };
    const drop = async (db: ClosableDb, name: string) => {
      await db.close();
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name}`);
    };

    // The pages a sync receives, captured by the untimed pass: the direct reference ingests the same ones.
    const received = { events: [] as string[], profiles: [] as string[], metrics: [] as string[] };
    let requests = 0;

    /** A first backfill into a fresh database; the seconds of its events stream. */
    const syncPass = async (name: string, capture: boolean): Promise<number> => {
      const db = await freshDb(name);
      try {
        const capturingFetch: typeof fetch = async (input, init) => {
          const response = await fetch(input, init);
          const path = new URL(input instanceof Request ? input.url : input).pathname.replace(
            '/api/',
            '',
          ) as keyof typeof received;
          received[path].push(await response.clone().text());
          return response;
        };
        const client = new KlaviyoClient({
          baseUrl: fake.baseUrl,
          apiKey: API_KEY,
          clock: systemClock,
          rateShare: 1,
          ...(capture ? { fetch: capturingFetch } : {}),
        });
        const result = await runSync(db, client, {
          accountId: 'default',
          timeBudgetMs: 3_600_000,
          lookbackMs: DAY_MS,
          lookbackEveryMs: 3_600_000,
          safetyLagMs: 5_000,
          backfillMs: (DAYS + 1) * DAY_MS,
          sliceMs: 7 * DAY_MS,
          clock: systemClock,
        });
        if (result.status !== 'done' || result.streams.events.inserted !== EVENTS) {
          throw new Error(`the sync did not store every event: ${JSON.stringify(result)}`);
        }
        requests = result.requests;
        return result.streams.events.duration_ms / 1000;
      } finally {
        await drop(db, name);
      }
    };

    /** Direct ingest of the captured events pages, metrics and profiles stored first (untimed). */
    const directPass = async (name: string): Promise<number> => {
      const db = await freshDb(name);
      try {
        for (const text of received.metrics)
          await upsertMetricsDocument(db, DEFAULT_ACCOUNT_ID, JSON.parse(text), { maxResources: 1000 });
        for (const text of received.profiles) {
          await upsertProfilesDocument(db, DEFAULT_ACCOUNT_ID, JSON.parse(text), { maxResources: PAGE_SIZES.profiles });
        }
        const startedAt = performance.now();
        let inserted = 0;
        for (const text of received.events) {
          inserted += (
            await ingestEventsPage(db, DEFAULT_ACCOUNT_ID, JSON.parse(text), { maxResources: PAGE_SIZES.events })
          ).inserted;
        }
        const seconds = (performance.now() - startedAt) / 1000;
        if (inserted !== EVENTS) throw new Error(`direct ingest stored ${inserted} events, not ${EVENTS}`);
        return seconds;
      } finally {
        await drop(db, name);
      }
    };

    say('capturing the pages (an untimed sync pass, which also warms up both paths)...');
    await syncPass('capture', true);
    const pages = received.events.length;
    const rounds: RoundFigures[] = [];
    for (let round = 1; round <= ROUNDS; round += 1) {
      const syncFirst = round % 2 === 1;
      let syncSeconds: number;
      let directSeconds: number;
      if (syncFirst) {
        syncSeconds = await syncPass(`sync_${round}`, false);
        directSeconds = await directPass(`direct_${round}`);
      } else {
        directSeconds = await directPass(`direct_${round}`);
        syncSeconds = await syncPass(`sync_${round}`, false);
      }
      rounds.push({ round, first: syncFirst ? 'sync' : 'direct', syncSeconds, directSeconds });
      say(
        `round ${round} (${syncFirst ? 'sync' : 'direct'} first): sync ${perSecond(syncSeconds).toLocaleString('en-US')} events/s ` +
          `(${syncSeconds.toFixed(2)} s), direct ingest ${perSecond(directSeconds).toLocaleString('en-US')} events/s ` +
          `(${directSeconds.toFixed(2)} s): ${((directSeconds / syncSeconds) * 100).toFixed(1)} %`,
      );
    }

    const ratios = rounds.map((r) => r.directSeconds / r.syncSeconds).sort((a, b) => a - b);
    const medianRatio = ratios[Math.floor((ratios.length - 1) / 2)] as number;
    const fastest = Math.min(...rounds.map((r) => r.syncSeconds));
    const perPageMs = (fastest * 1000) / pages;
    // A 1M-event backfill: pages of 1000, plus at most one partial page per weekly slice of a year.
    const millionPages = MILLION / PAGE_SIZES.events + 52;
    const limitSeconds = (share: number) => (millionPages / (KLAVIYO_LIMITS.events.perMinute * share)) * 60;
    const processingSeconds = (millionPages * perPageMs) / 1000;
    const backfillSeconds = Math.max(limitSeconds(0.5), processingSeconds);
    const estimate =
      `A 1M-event backfill is about ${millionPages} Get Events requests (1000 events a page, weekly slices): ` +
      `Klaviyo's steady limit of ${KLAVIYO_LIMITS.events.perMinute}/min allows them in ${round1(limitSeconds(1))} s, ` +
      `${round1(limitSeconds(0.5))} s at the default 50 % share; at the measured ${perPageMs.toFixed(0)} ms a page ` +
      `(the stand-in's answer time on this machine included), processing takes ${round1(processingSeconds)} s, so the ` +
      `backfill takes about ${Math.round(backfillSeconds)} s (${round1(backfillSeconds / 60)} min) plus whatever Klaviyo's ` +
      `answer time exceeds the stand-in's: this process, not the limit, bounds it.`;
    say(`median: the sync at ${(medianRatio * 100).toFixed(1)} % of direct ingest's events/s (goal: at least 90 %)`);
    say(estimate);

    const path = writeBenchResult({
      bench: 'sync',
      title: 'Klaviyo sync: events pulled and stored, against direct ingest of the same pages',
      command: `BENCH_SYNC_EVENTS=${EVENTS} BENCH_SYNC_ROUNDS=${ROUNDS} BENCH_SYNC_DAYS=${DAYS} npm run bench:sync`,
      reference:
        'Direct ingest (ingestEventsPage, one transaction per page, JSON.parse included) of the pages the sync received, ' +
        'on a fresh database holding the same metrics and profiles, in the same run',
      dataset: {
        events: EVENTS,
        profiles: fake.profiles,
        metrics: fake.metrics,
        days: DAYS,
        event_pages: pages,
        sync_requests: requests,
        rounds: ROUNDS,
      },
      tables: [
        {
          title: 'The events stream of a first backfill from the stand-in (no throttling), per round',
          columns: ['round', 'first', 'sync s', 'sync events/s', 'direct s', 'direct events/s', 'sync / direct'],
          rows: rounds.map((r) => [
            r.round,
            r.first,
            Number(r.syncSeconds.toFixed(2)),
            perSecond(r.syncSeconds),
            Number(r.directSeconds.toFixed(2)),
            perSecond(r.directSeconds),
            `${((r.directSeconds / r.syncSeconds) * 100).toFixed(1)} %`,
          ]),
        },
        {
          title: "A 1M-event backfill at Klaviyo's default steady limit (arithmetic from the fastest round)",
          columns: ['figure', 'value'],
          rows: [
            ['ms per 1000-event page (sync, measured)', Number(perPageMs.toFixed(1))],
            ['Get Events requests for 1M events', millionPages],
            ['seconds the 3,500/min limit allows them in (100 % share)', round1(limitSeconds(1))],
            ['seconds at the default 50 % share', round1(limitSeconds(0.5))],
            ['seconds of processing at the measured page cost', round1(processingSeconds)],
            ['estimated backfill seconds (50 % share)', Math.round(backfillSeconds)],
          ],
        },
      ],
      goals: [
        `The sync at least 90 % of direct ingest's events/s: median ${(medianRatio * 100).toFixed(1)} % over ${ROUNDS} rounds.`,
      ],
      notes: [
        estimate,
        'The sync time is its events stream only (metrics and profiles run before it); it includes the HTTP round trip ' +
          'to the stand-in on the same machine, JSON parsing, validation, the write and the checkpoint of each page, with ' +
          'the next page requested while one is stored.',
      ],
    });
    say(`wrote ${path.replace(ROOT + '/', '')}`);
  } finally {
    standIn?.child.kill('SIGTERM');
    await admin.end({ timeout: 5 });
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:sync failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
