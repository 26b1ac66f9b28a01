import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { removeEmbeddedData } from '../../../lib/db/embedded';
import { migrate } from '../../../lib/db/migrate';
import { createPostgresDb } from '../../../lib/db/postgres';
import type { ClosableDb } from '../../../lib/db/port';
import { tuning } from '../../support/env';
import type { ServerCommand, ServerReply } from './serverProcess';

/**
 * A PostgreSQL server of this test file's own, in .data/reliability-<name>-<pid>, for tests that stop
 * and restart the database: the shared test server must stay up for the other test files.
 * The restarted server listens on the same port, so clients configured with the URL reconnect to it.
 * It runs under a child process (see serverProcess.ts) that jest's module registry does not touch.
 */
export interface OwnServer {
  readonly url: string;
  /** A client of the test's own, for setup and assertions. Reconnects by itself after a restart. */
  readonly db: ClosableDb;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server, ends its process and removes its data directory. */
  destroy(): Promise<void>;
}

const DATABASE = 'klaviyo';
// Thrown-away data: durability only costs time.
const SETTINGS = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' };

function send(child: ChildProcess, command: ServerCommand): Promise<ServerReply & { ok: true }> {
  return new Promise((resolve, reject) => {
    const onExit = () => reject(new Error('the PostgreSQL server process exited'));
    child.once('exit', onExit);
    child.once('message', (reply: ServerReply) => {
      child.off('exit', onExit);
      if (reply.ok) resolve(reply);
      else reject(new Error(reply.error));
    });
    child.send(command);
  });
}

export async function startOwnServer(
  name: string,
  extraSettings: Readonly<Record<string, string>> = {},
): Promise<OwnServer> {
  const settings = { ...SETTINGS, ...extraSettings };
  const dataDir = join(__dirname, '..', '..', '..', '.data', `reliability-${name}-${process.pid}`);
  removeEmbeddedData(dataDir);
  const child = fork(join(__dirname, 'serverProcess.ts'), [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  let started: ServerReply & { ok: true };
  try {
    started = await send(child, { cmd: 'start', dataDir, database: DATABASE, settings });
  } catch (err) {
    child.kill();
    throw err;
  }
  const url = started.url as string;
  const port = started.port as number;
  const db = createPostgresDb({ url, ...tuning, applicationName: 'reliability-test' });
  await migrate(db);

  return {
    url,
    db,
    stop: async () => {
      await send(child, { cmd: 'stop' });
    },
    start: async () => {
      await send(child, { cmd: 'start', dataDir, database: DATABASE, port, settings });
    },
    destroy: async () => {
      await db.close().catch(() => undefined);
      if (child.connected) {
        await send(child, { cmd: 'stop' }).catch(() => undefined);
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.disconnect();
        await exited;
      }
      removeEmbeddedData(dataDir);
    },
  };
}
