import { readFileSync } from 'node:fs';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';

/**
 * TLS to PostgreSQL with libpq's meaning of sslmode, negotiated here rather than by postgres.js:
 * postgres.js lets an explicit `ssl: false` override the URL's sslmode, and with a custom socket it
 * verifies the certificate against "localhost" instead of the host connected to. Here the socket is
 * handed to postgres.js already encrypted (or refused), and postgres.js is told `ssl: false`.
 *
 * - disable: plain TCP.
 * - require: TLS or nothing, certificate not checked (libpq's `require`: protects against a passive
 *   eavesdropper, not against a man in the middle).
 * - verify-ca: TLS, the certificate must chain to the trusted CAs; the host name is not checked.
 * - verify-full: TLS, the chain and the host name (or IP) are checked.
 *
 * libpq's `allow` and `prefer` are refused: both fall back to plain text without saying so, which is
 * exactly what this module exists to prevent.
 */
export const TLS_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type TlsMode = (typeof TLS_MODES)[number];

export function isTlsMode(value: string): value is TlsMode {
  return (TLS_MODES as readonly string[]).includes(value);
}

/** What the URL's query says about TLS (sslmode, sslrootcert), and the URL without those parameters. */
export interface UrlTls {
  readonly url: string;
  readonly sslmode?: string;
  readonly sslrootcert?: string;
}

// libpq's TLS parameters. postgres.js would send any query parameter it does not know to the server
// as a run-time setting, which the server refuses; they are read here and taken out.
const URL_TLS_PARAMS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslnegotiation', 'ssl'] as const;

export function splitUrlTls(url: string): UrlTls {
  const at = url.indexOf('?');
  if (at < 0) return { url };
  const params = new URLSearchParams(url.slice(at + 1));
  const sslmode = params.get('sslmode') ?? undefined;
  const sslrootcert = params.get('sslrootcert') ?? undefined;
  const unsupported = ['sslcert', 'sslkey', 'sslnegotiation', 'ssl'].filter((p) => params.has(p));
  if (unsupported.length > 0) {
    throw new TlsConfigError(`DATABASE_URL: ${unsupported.join(', ')} is not supported; use sslmode and sslrootcert`);
  }
  for (const name of URL_TLS_PARAMS) params.delete(name);
  const rest = params.toString();
  return { url: url.slice(0, at) + (rest ? `?${rest}` : ''), sslmode, sslrootcert };
}

export class TlsConfigError extends Error {
  override readonly name = 'TlsConfigError';
}

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|::1|\[::1\])$/i;

/** A host on this machine (or a Unix socket): traffic never leaves it. */
export function isLoopbackHost(host: string | undefined): boolean {
  return host === undefined || host === '' || host.startsWith('/') || LOOPBACK.test(host);
}

/**
 * One mode from the two places that may name it. Both set and different is a configuration error
 * (neither can be assumed to be the intended one). Neither set: plain TCP only to this machine,
 * verify-full to any other host.
 */
export function resolveTlsMode(sources: {
  readonly urlMode?: string;
  readonly envMode?: string;
  readonly host?: string;
}): TlsMode {
  const check = (value: string, where: string): TlsMode => {
    if (isTlsMode(value)) return value;
    const why = value === 'prefer' || value === 'allow' ? ` (${value} falls back to plain text without saying so)` : '';
    throw new TlsConfigError(`${where}=${value} is not supported${why}; use one of ${TLS_MODES.join(', ')}`);
  };
  const fromUrl = sources.urlMode === undefined ? undefined : check(sources.urlMode, 'DATABASE_URL sslmode');
  const fromEnv = sources.envMode === undefined ? undefined : check(sources.envMode, 'DB_SSL');
  if (fromUrl && fromEnv && fromUrl !== fromEnv) {
    throw new TlsConfigError(
      `DATABASE_URL says sslmode=${fromUrl} but DB_SSL=${fromEnv}: set one of them, or make them agree`,
    );
  }
  return fromUrl ?? fromEnv ?? (isLoopbackHost(sources.host) ? 'disable' : 'verify-full');
}

/** A host from a postgres URL, for the default mode; undefined when it has none. */
export function hostOfUrl(url: string): string | undefined {
  const match = /^postgres(?:ql)?:\/\/(?:[^@/]*@)?(\[[^\]]*\]|[^:/?,]*)/.exec(url);
  return match?.[1] || undefined;
}

export interface TlsSettings {
  readonly mode: TlsMode;
  /**
   * A PEM file of the CAs to trust (libpq's sslrootcert). Unset, or `system`: Node's own trust store
   * plus NODE_EXTRA_CA_CERTS.
   */
  readonly rootCertFile?: string;
}

/** Thrown when the server will not speak TLS and the mode requires it. Not retried: it is not transient. */
export class TlsRefusedError extends Error {
  override readonly name = 'TlsRefusedError';
  readonly code = 'TLS_REFUSED';
}

/** The error a connect attempt ends with when it did not complete in its time. */
function connectTimeout(host: string, port: number, ms: number): Error {
  return Object.assign(new Error(`could not connect to ${host}:${port} within ${ms} ms`), {
    code: 'CONNECT_TIMEOUT',
  });
}

// SSLRequest: length 8, code 1234 5679 (PostgreSQL protocol, "SSL Session Encryption").
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]);

let cachedCa: { file: string; pem: string } | undefined;
function caFrom(file: string): string {
  if (cachedCa?.file !== file) cachedCa = { file, pem: readFileSync(file, 'utf8') };
  return cachedCa.pem;
}

function tlsOptions(settings: TlsSettings, host: string): ConnectionOptions {
  const ca = settings.rootCertFile && settings.rootCertFile !== 'system' ? { ca: caFrom(settings.rootCertFile) } : {};
  const servername = isIP(host) ? {} : { servername: host };
  switch (settings.mode) {
    case 'require':
      return { rejectUnauthorized: false, ...servername };
    case 'verify-ca':
      // The chain is checked; the name is not (libpq's verify-ca).
      return { rejectUnauthorized: true, checkServerIdentity: () => undefined, ...ca, ...servername };
    default:
      // Node checks the name against `host` (an IP is matched against the certificate's IP entries).
      return { rejectUnauthorized: true, host, ...ca, ...servername };
  }
}

/**
 * A connected socket to the server, encrypted as `settings` says, within `timeoutMs` (TCP connect,
 * the SSLRequest and the TLS handshake together). Nagle's algorithm is off, as libpq and pgjdbc set it
 * (postgres.js leaves it on): with it on, a small message right behind a large one (COPY's CopyDone,
 * a COMMIT after a COPY) waits for the server's delayed ACK on every page.
 */
export async function openDatabaseSocket(
  target: { readonly host: string; readonly port: number; readonly path?: string },
  settings: TlsSettings,
  timeoutMs: number,
): Promise<Socket | TLSSocket> {
  const tcp = target.path ? netConnect(target.path) : netConnect(target.port, target.host);
  tcp.setNoDelay(true);
  let current: Socket | TLSSocket = tcp;
  let timer: NodeJS.Timeout | undefined;
  const work = new Promise<Socket | TLSSocket>((resolve, reject) => {
    timer = setTimeout(() => {
      const err = connectTimeout(target.host, target.port, timeoutMs);
      current.destroy();
      tcp.destroy();
      reject(err);
    }, timeoutMs);
    const fail = (err: Error) => reject(err);
    tcp.once('error', fail);
    tcp.once('connect', () => {
      if (settings.mode === 'disable') {
        tcp.off('error', fail);
        resolve(tcp);
        return;
      }
      tcp.once('data', (answer: Buffer) => {
        if (answer[0] !== 0x53 /* S */) {
          tcp.destroy();
          reject(
            new TlsRefusedError(
              `sslmode ${settings.mode}: the server at ${target.host}:${target.port} does not accept TLS ` +
                'connections; refusing to connect in plain text (fix the server, or set DB_SSL=disable ' +
                'for a server on a trusted network)',
            ),
          );
          return;
        }
        tcp.off('error', fail);
        const secure = tlsConnect({ socket: tcp, ...tlsOptions(settings, target.host) });
        current = secure;
        secure.once('error', fail);
        secure.once('secureConnect', () => {
          secure.off('error', fail);
          resolve(secure);
        });
      });
      tcp.write(SSL_REQUEST);
    });
  });
  try {
    return await work;
  } catch (err) {
    current.destroy();
    tcp.destroy();
    return failedSocket(err);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A socket that fails as a refused TCP connect does: 'error' with the cause, then 'close'.
 * postgres.js cleans a connection up (its queue, its retry) on the socket's 'close'; a socket
 * factory that rejects instead leaves the connection half-open, and later queries wait forever.
 *
 * It fails once postgres.js has written its StartupMessage to it, not before: postgres.js buffers
 * that message until the next turn of the event loop, and a 'close' that comes first leaves it in the
 * buffer (its close handler cancels the flush but keeps the bytes). The next connection then sends
 * the stale message ahead of its own, the server reads a startup packet of the wrong length and
 * waits, and every connect from then on times out: a warm client never recovered from a restart.
 */
function failedSocket(err: unknown): Socket {
  // Kept as it is (its code says what failed), whichever realm made it.
  const cause = err !== null && typeof err === 'object' ? (err as Error) : new Error(String(err));
  const fail = () => {
    if (!stub.destroyed) stub.destroy(cause);
  };
  const stub = new Duplex({
    read: () => undefined,
    write: (_chunk, _encoding, done) => {
      done();
      process.nextTick(fail);
    },
  });
  // postgres.js always writes first; should a version not, the connect still fails, later.
  setTimeout(fail, 1000).unref();
  return stub as unknown as Socket;
}
