/**
 * The proxy tap: a transparent TCP relay in front of a service, for where packet capture is not
 * allowed. One upstream connection per client connection (never pooled: pooling would change
 * the very reuse being measured). Bytes pass unchanged; the tap only reads them into the engine.
 *
 * - Backpressure both ways: a side whose peer cannot take more is paused until it drains.
 * - Half-close forwarded: a FIN from one side ends that direction on the other.
 * - A reset on one side resets the other.
 * - Upstream refused or unreachable: the client connection is closed and the failure counted.
 * - Idle sockets are closed after `idleTimeoutMs` with no byte either way.
 * - The handshake RTT of a proxied connection is the upstream connect time.
 * - Refused visibly, never dropped silently (see `refused`): at `maxConnections` relayed at once,
 *   and near the process's file descriptor limit (see FdBudget), a new client connection is reset
 *   at once, before any byte is relayed or an upstream connection made; counted by reason and
 *   logged once per listener and reason.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { Engine } from '../conn/engine.js';
import { CLIENT_TO_SERVER, SERVER_TO_CLIENT } from '../conn/stream-tap.js';
import { proxyProtocolHeader, type ProxyProtocol } from './proxy-protocol.js';

export interface ProxyRoute {
  listenHost: string;
  listenPort: number;
  upstreamHost: string;
  upstreamPort: number;
  /** The `source` label; default proxy:PORT. The daemon's config makes it unique among its routes. */
  name?: string;
}

export interface RelayOptions {
  /** Close both sides after this long without a byte either way. */
  idleTimeoutMs: number;
  /** Upstream connect timeout. */
  connectTimeoutMs: number;
  proxyProtocol: ProxyProtocol | null;
  /** Client connections relayed at once (--proxy.max-connections); more are refused. Default 10000. */
  maxConnections?: number;
}

/** --proxy.max-connections' default: 20,000 fds, within a LimitNOFILE of 65536 or more. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

/**
 * File descriptors the relays leave to the rest of the process: concurrent scrapes (up to
 * --web.max-requests, 40 by default), tcpdump's pipes on a restart, --pcap files, logs.
 */
export const FD_RESERVE = 64;

/** Why a client connection was refused (the `reason` label). */
export type RefusalReason = 'limit' | 'fd_limit';

/**
 * The process's file descriptors as the relays see them, shared by every listener of the process
 * (each relayed connection holds two: the client's and the upstream's).
 *
 * Why the relay must refuse before the limit rather than react to EMFILE: when accept() fails
 * with EMFILE, libuv closes a reserve fd, accepts and closes every pending connection with it,
 * and reports nothing to Node when that succeeds (uv__emfile_trick in src/unix/stream.c): the
 * clients are dropped, and no 'error', no callback, no count. Measured on Node 20.20 under
 * `prlimit --nofile=64:64` (before this budget), 50 clients at once: 22 relayed, the other 28
 * closed by libuv, `accepted` 22, nothing logged. (With the last free fd at the upstream's
 * socket() instead, the same run gave EMFILE there, counted as upstream failures.)
 * So a connection is refused (and counted) while FD_RESERVE fds are still free, by two lower
 * bounds on the fds in use, either of which is enough to refuse:
 * - the count: fds open when the last listener started (`baseline`, its own listener included)
 *   plus the sockets every relay holds now (`relayFds`);
 * - the number of the accepted socket: open() and accept() return the lowest free descriptor
 *   (POSIX), so fd k means 0..k are all in use; this also sees fds taken since the start.
 * RLIMIT_NOFILE caps descriptor numbers (a new fd is < the soft limit), hence `limit` below.
 * EMFILE/ENFILE that still happen (on the upstream's socket(), or an accept error libuv passes
 * on when its reserve fd is gone) are counted as fd_limit refusals too.
 */
class FdBudget {
  /** The soft RLIMIT_NOFILE ("Max open files" in /proc/self/limits); null where unknown. */
  readonly limit: number | null = readSoftFdLimit();
  baseline = 0;
  /** Sockets (client and upstream) the relays of this process hold now. */
  relayFds = 0;
  /** Fds the listeners' max-connections may take (2 × max each). */
  committed = 0;
  /** Listeners started and not stopped. */
  listeners = 0;
  warned = false;

  /**
   * Fds in use with a client just accepted (not yet in `relayFds`), the larger of the two lower
   * bounds; `fd` is that client's descriptor, where known.
   */
  inUse(fd: number | undefined): number {
    return Math.max(this.baseline + this.relayFds + 1, typeof fd === 'number' && fd >= 0 ? fd + 1 : 0);
  }

  /** Whether that client must be refused: its upstream socket (+1) would eat into the reserve. */
  exhausted(fd: number | undefined): boolean {
    return this.limit !== null && this.inUse(fd) + 1 + FD_RESERVE > this.limit;
  }
}

function readSoftFdLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : null;
  } catch {
    return null; // not Linux: only the EMFILE backstops apply
  }
}

function countOpenFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

const FDS = new FdBudget();

const isFdLimit = (e: NodeJS.ErrnoException): boolean => e.code === 'EMFILE' || e.code === 'ENFILE';

/**
 * Where every upstream socket of the process reads into (`onread`): one buffer, reused by each
 * read, instead of a fresh allocation per read plus the stream machinery of 'data' events.
 * Reads are synchronous on the event loop, and each chunk is tapped and copied before the next
 * read, so sharing it is safe. (Accepted client sockets cannot take `onread`: Node's server does
 * not offer it; requests are the small direction anyway.)
 */
const UPSTREAM_READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export interface RelayLog {
  warn(msg: string): void;
}

export class ProxyRelay {
  accepted = 0;
  active = 0;
  upstreamFailures = 0;
  idleClosed = 0;
  /** Client connections refused at once (reset), by reason; never relayed, nothing sent upstream
   * (an fd_limit refusal from the upstream's socket() is also counted in `accepted`). */
  readonly refused: Record<RefusalReason, number> = { limit: 0, fd_limit: 0 };
  up = false;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly logged = new Set<RefusalReason>();
  private readonly maxConnections: number;

  constructor(
    readonly route: ProxyRoute,
    private readonly engine: Engine,
    private readonly opts: RelayOptions,
    private readonly log: RelayLog,
  ) {
    this.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  }

  get name(): string {
    return this.route.name ?? `proxy:${this.route.listenPort}`;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      // allowHalfOpen: a FIN from the client must not make Node end our side towards it (the
      // default), or the upstream's answer after the client's FIN would be lost.
      const server = createServer({ pauseOnConnect: true, noDelay: true, allowHalfOpen: true }, (client) => this.accept(client));
      server.once('error', reject);
      server.listen(this.route.listenPort, this.route.listenHost, () => {
        server.off('error', reject);
        server.on('error', (e: NodeJS.ErrnoException) => {
          // An accept that failed for want of fds, which libuv passes on only when its reserve-fd
          // trick could not run (see FdBudget): the connection is gone, still counted.
          if (e.syscall === 'accept' && isFdLimit(e)) this.refuse(null, 'fd_limit', `accept failed with ${e.code}`);
          else this.log.warn(`proxy ${this.name}: ${e.message}`);
        });
        this.server = server;
        this.up = true;
        this.checkFdBudget();
        resolve();
      });
    });
  }

  /** Stops accepting and closes every relayed connection. */
  async stop(): Promise<void> {
    this.up = false;
    const server = this.server;
    this.server = null;
    if (server) {
      FDS.committed -= 2 * this.maxConnections;
      FDS.listeners--;
    }
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /**
   * At start: the fds this listener's max-connections may take on top of those open now. One
   * warning per process, since the listeners share the limit.
   */
  private checkFdBudget(): void {
    FDS.baseline = countOpenFds() - FDS.relayFds;
    FDS.committed += 2 * this.maxConnections;
    FDS.listeners++;
    const limit = FDS.limit;
    if (limit === null || FDS.warned || FDS.baseline + FDS.committed + FD_RESERVE <= limit) return;
    FDS.warned = true;
    const fits = Math.max(0, Math.floor((limit - FDS.baseline - FD_RESERVE) / 2));
    this.log.warn(`proxy: --proxy.max-connections allows ${FDS.committed / 2} connections at once${FDS.listeners > 1 ? ` on ${FDS.listeners} listeners` : ''} (two file descriptors each), `
      + `but the fd soft limit is ${limit} ("Max open files"; ${FDS.baseline} open now, ${FD_RESERVE} kept for the rest): `
      + `beyond about ${fits} the tap refuses connections (reason="fd_limit"); raise the limit (LimitNOFILE= in the systemd unit, ulimit -n) `
      + `to at least ${FDS.baseline + FDS.committed + FD_RESERVE}, or lower --proxy.max-connections`);
  }

  /** Resets a client connection without relaying it, counts it and logs the first per reason. */
  private refuse(client: Socket | null, reason: RefusalReason, detail = ''): void {
    this.refused[reason]++;
    // A reset, not a FIN: a client sees "connection reset" (not an empty reply, which reads
    // like a server closing an idle keep-alive connection), the tap keeps no TIME_WAIT under a
    // flood, and it is deterministic (a close with request bytes unread is a reset anyway).
    if (client && !client.destroyed) client.resetAndDestroy();
    if (this.logged.has(reason)) return;
    this.logged.add(reason);
    this.log.warn(reason === 'limit'
      ? `proxy ${this.name}: refusing client connections: ${this.maxConnections} relayed at once (--proxy.max-connections); `
        + 'raise --proxy.max-connections, and the fd limit with it (two per connection: LimitNOFILE=, ulimit -n); '
        + 'counted in keepalive_proxy_connections_refused_total{reason="limit"}, logged once'
      : `proxy ${this.name}: refusing client connections: near the file descriptor limit (${detail}; soft limit ${FDS.limit ?? 'unknown'}, `
        + `${FD_RESERVE} kept for the rest of the process, two per connection); `
        + 'raise the fd limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower --proxy.max-connections; '
        + 'counted in keepalive_proxy_connections_refused_total{reason="fd_limit"}, logged once');
  }

  private accept(client: Socket): void {
    if (this.active >= this.maxConnections) {
      this.refuse(client, 'limit');
      return;
    }
    // The accepted socket's descriptor (TCPWrap's fd; undefined where it has none).
    const fd = (client as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (FDS.exhausted(fd)) {
      const counted = FDS.baseline + FDS.relayFds + 1;
      this.refuse(client, 'fd_limit', typeof fd === 'number' && fd + 1 > counted ? `descriptor ${fd} was the lowest free one` : `${counted} in use`);
      return;
    }
    this.accepted++;
    this.active++;
    const t0 = performance.now();
    const clientEnd = { address: client.remoteAddress ?? '0.0.0.0', port: client.remotePort ?? 0 };
    // allowHalfOpen, likewise: after the upstream's FIN the client may still send (the keep-alive
    // race); those bytes must reach the upstream, as without the tap.
    let fromUpstream: ((chunk: Buffer) => void) | null = null;
    const upstream = connect({
      host: this.route.upstreamHost,
      port: this.route.upstreamPort,
      noDelay: true,
      allowHalfOpen: true,
      onread: {
        buffer: UPSTREAM_READ_BUFFER,
        callback: (n: number, buf: Buffer): boolean => {
          fromUpstream?.(buf.subarray(0, n));
          return true;
        },
      },
    });
    this.sockets.add(client);
    this.sockets.add(upstream);
    FDS.relayFds += 2;
    let tap: ReturnType<Engine['openStream']> | null = null;
    let closed = 0;
    const now = (): number => Date.now() / 1000;
    const done = (): void => {
      if (++closed < 2) return;
      this.active--;
      tap?.end(now());
    };
    client.once('close', () => { this.sockets.delete(client); FDS.relayFds--; done(); });
    upstream.once('close', () => { this.sockets.delete(upstream); FDS.relayFds--; done(); });

    const connectTimer = setTimeout(() => upstream.destroy(new Error('connect timeout')), this.opts.connectTimeoutMs);
    upstream.once('error', (e: NodeJS.ErrnoException) => {
      if (!tap) {
        clearTimeout(connectTimer);
        // No fd for the upstream's socket: the process's limit, not the upstream's failure.
        if (isFdLimit(e)) this.refuse(client, 'fd_limit', `${e.code} on the upstream socket`);
        else {
          this.upstreamFailures++;
          client.destroy();
        }
        return;
      }
      // Reset (or broken) upstream: reset the client too.
      tap.rst(SERVER_TO_CLIENT, now());
      if (!client.destroyed) client.resetAndDestroy();
      void e;
    });
    client.once('error', () => {
      if (tap) tap.rst(CLIENT_TO_SERVER, now());
      if (!upstream.destroyed) upstream.resetAndDestroy();
    });

    upstream.once('connect', () => {
      clearTimeout(connectTimer);
      const rtt = (performance.now() - t0) / 1000;
      tap = this.engine.openStream(clientEnd, { address: upstream.remoteAddress ?? this.route.upstreamHost, port: this.route.upstreamPort }, now(), rtt);
      if (this.opts.proxyProtocol) {
        upstream.write(proxyProtocolHeader(this.opts.proxyProtocol, clientEnd, { address: client.localAddress ?? '0.0.0.0', port: client.localPort ?? 0 }));
      }
      const t = tap;
      this.pipe(client, upstream, (b) => t.data(CLIENT_TO_SERVER, b, now()), () => t.fin(CLIENT_TO_SERVER, now()));
      // Upstream to client: chunks arrive in the shared read buffer (see UPSTREAM_READ_BUFFER).
      fromUpstream = (chunk) => {
        t.data(SERVER_TO_CLIENT, chunk, now());
        // The buffer is overwritten by the next read: the client gets a copy (a slice of Node's
        // buffer pool for small chunks), since its write may still be pending then.
        if (!client.write(Buffer.from(chunk))) upstream.pause();
      };
      client.on('drain', () => upstream.resume());
      upstream.once('end', () => {
        t.fin(SERVER_TO_CLIENT, now());
        client.end();
      });
      const idle = (): void => {
        this.idleClosed++;
        // The tap closes both sides with a FIN; to the upstream it is the client closing an idle
        // connection, which is what a capture on the upstream side would see.
        t.fin(CLIENT_TO_SERVER, now());
        client.destroy();
        upstream.destroy();
      };
      client.setTimeout(this.opts.idleTimeoutMs, idle);
      client.resume();
    });
  }

  /** Copies from → to with backpressure, tapping every chunk, forwarding FIN as a half-close. */
  private pipe(from: Socket, to: Socket, tap: (b: Buffer) => void, fin: () => void): void {
    from.on('data', (b: Buffer) => {
      tap(b);
      if (!to.write(b)) from.pause();
    });
    to.on('drain', () => from.resume());
    from.once('end', () => {
      fin();
      to.end();
    });
  }
}
