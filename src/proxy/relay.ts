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
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { Engine } from '../conn/engine.js';
import { CLIENT_TO_SERVER, SERVER_TO_CLIENT } from '../conn/stream-tap.js';
import { proxyProtocolHeader, type ProxyProtocol } from './proxy-protocol.js';

export interface ProxyRoute {
  listenHost: string;
  listenPort: number;
  upstreamHost: string;
  upstreamPort: number;
}

export interface RelayOptions {
  /** Close both sides after this long without a byte either way. */
  idleTimeoutMs: number;
  /** Upstream connect timeout. */
  connectTimeoutMs: number;
  proxyProtocol: ProxyProtocol | null;
}

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
  up = false;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly route: ProxyRoute,
    private readonly engine: Engine,
    private readonly opts: RelayOptions,
    private readonly log: RelayLog,
  ) {}

  get name(): string {
    return `proxy:${this.route.listenPort}`;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      // allowHalfOpen: a FIN from the client must not make Node end our side towards it (the
      // default), or the upstream's answer after the client's FIN would be lost.
      const server = createServer({ pauseOnConnect: true, noDelay: true, allowHalfOpen: true }, (client) => this.accept(client));
      server.once('error', reject);
      server.listen(this.route.listenPort, this.route.listenHost, () => {
        server.off('error', reject);
        server.on('error', (e) => this.log.warn(`proxy ${this.name}: ${e.message}`));
        this.server = server;
        this.up = true;
        resolve();
      });
    });
  }

  /** Stops accepting and closes every relayed connection. */
  async stop(): Promise<void> {
    this.up = false;
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private accept(client: Socket): void {
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
    let tap: ReturnType<Engine['openStream']> | null = null;
    let closed = 0;
    const now = (): number => Date.now() / 1000;
    const done = (): void => {
      if (++closed < 2) return;
      this.active--;
      tap?.end(now());
    };
    client.once('close', () => { this.sockets.delete(client); done(); });
    upstream.once('close', () => { this.sockets.delete(upstream); done(); });

    const connectTimer = setTimeout(() => upstream.destroy(new Error('connect timeout')), this.opts.connectTimeoutMs);
    upstream.once('error', (e: NodeJS.ErrnoException) => {
      if (!tap) {
        this.upstreamFailures++;
        client.destroy();
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
