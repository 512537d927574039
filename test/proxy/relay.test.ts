/**
 * The proxy tap's relay (src/proxy/relay.ts) with real sockets: node:net and node:http servers
 * and clients on 127.0.0.1, a ProxyRelay in between, and an Engine fed by it.
 *
 * - Bytes: large random bodies both ways, pipelined requests, chunked messages, written in random
 *   slices; sha256 of what each side sent equals sha256 of what the other side received.
 * - Backpressure both ways: a reader that stops makes the relay pause the other side (its own
 *   buffer stays small and the writer stalls), instead of reading everything into memory.
 * - Half-close both ways, resets both ways, refused and unreachable upstreams, the idle timeout.
 * - The facts the engine reports for proxied connections (requests, reuse, handshake RTT, close
 *   reason), and no socket left open after any test (relay.active, the servers' connections).
 * - maxConnections: past it a client is reset at once, counted, logged once (the fd limit is
 *   in fd-limit.test.ts: it needs a process with a low RLIMIT_NOFILE).
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import http from 'node:http';
import http2 from 'node:http2';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Engine } from '../../src/conn/engine.js';
import { ProxyRelay, type RelayOptions } from '../../src/proxy/relay.js';
import type { ConnectionRecord, RequestRecord } from '../../src/conn/records.js';

const HOST = '127.0.0.1';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha = (...bufs: Buffer[]): string => {
  const h = createHash('sha256');
  for (const b of bufs) h.update(b);
  return h.digest('hex');
};

/** Polls until `pred` holds; throws with `what` after `timeoutMs`. */
async function until(what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

// ------------------------------------------------------------------ harness

interface Facts {
  opened: ConnectionRecord[];
  closed: ConnectionRecord[];
  requests: Array<{ conn: ConnectionRecord; req: RequestRecord }>;
  responses: Array<{ conn: ConnectionRecord; req: RequestRecord }>;
}

interface Tap {
  relay: ProxyRelay;
  engine: Engine;
  port: number;
  facts: Facts;
  warnings: string[];
}

interface Upstream {
  server: net.Server;
  port: number;
  /** Every connection the server accepted. */
  accepted: net.Socket[];
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  // Forced cleanup (a failed test may leave things behind); the tests assert the clean state themselves.
  while (cleanups.length) await cleanups.pop()!();
});

async function startTap(upstreamPort: number, opts: Partial<RelayOptions> = {}, where: { listenHost?: string; upstreamHost?: string } = {}): Promise<Tap> {
  const engine = new Engine();
  const facts: Facts = { opened: [], closed: [], requests: [], responses: [] };
  engine.subscribe({
    opened: (c) => facts.opened.push(c),
    request: (c, r) => facts.requests.push({ conn: c, req: r }),
    response: (c, r) => facts.responses.push({ conn: c, req: r }),
    closed: (c) => facts.closed.push(c),
  });
  const warnings: string[] = [];
  const relay = new ProxyRelay(
    { listenHost: where.listenHost ?? HOST, listenPort: 0, upstreamHost: where.upstreamHost ?? HOST, upstreamPort },
    engine,
    // maxConnections 1000: within any test machine's fd limit, so no start-up fd warning.
    { idleTimeoutMs: 30_000, connectTimeoutMs: 5000, proxyProtocol: null, maxConnections: 1000, ...opts },
    { warn: (m) => warnings.push(m) },
  );
  await relay.start();
  cleanups.push(() => relay.stop());
  // Listening on port 0: the OS picked the port; the relay keeps its server private.
  const port = ((relay as unknown as { server: net.Server }).server.address() as net.AddressInfo).port;
  return { relay, engine, port, facts, warnings };
}

async function startUpstream(onConn: (s: net.Socket) => void, opts: net.ServerOpts = {}): Promise<Upstream> {
  const accepted: net.Socket[] = [];
  const server = net.createServer(opts, (s) => {
    accepted.push(s);
    s.on('error', () => { /* the tests look at what they expect */ });
    onConn(s);
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  cleanups.push(() => new Promise<void>((r) => {
    for (const s of accepted) s.destroy();
    server.close(() => r());
  }));
  return { server, port: (server.address() as net.AddressInfo).port, accepted };
}

function connections(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** Sockets the relay holds (both sides of every relayed connection). */
function relaySockets(relay: ProxyRelay): Set<net.Socket> {
  return (relay as unknown as { sockets: Set<net.Socket> }).sockets;
}

/** The end state every test must reach: nothing open on the relay or on the upstream server. */
async function expectAllClosed(tap: Tap, ...servers: net.Server[]): Promise<void> {
  await until('the relay to close every connection', () => tap.relay.active === 0 && relaySockets(tap.relay).size === 0);
  for (const s of servers) await until('the upstream server to have no connection left', async () => (await connections(s)) === 0);
  expect(tap.relay.active).toBe(0);
  expect(relaySockets(tap.relay).size).toBe(0);
  // Every connection the engine opened was also closed (it reports each exactly once).
  expect(tap.facts.closed.length).toBe(tap.facts.opened.length);
}

interface Client {
  sock: net.Socket;
  /** The client's own port (kept: the socket forgets it once closed). */
  port: number;
  chunks: Buffer[];
  received(): Buffer;
  ended: boolean;
  closed: boolean;
  error: NodeJS.ErrnoException | null;
}

function connectClient(port: number, opts: { host?: string; allowHalfOpen?: boolean } = {}): Promise<Client> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: opts.host ?? HOST, port, allowHalfOpen: opts.allowHalfOpen ?? true, noDelay: true });
    const c: Client = { sock, port: 0, chunks: [], received: () => Buffer.concat(c.chunks), ended: false, closed: false, error: null };
    cleanups.push(() => { sock.destroy(); });
    sock.on('data', (b: Buffer) => c.chunks.push(b));
    sock.on('end', () => { c.ended = true; });
    sock.on('close', () => { c.closed = true; });
    sock.on('error', (e) => { c.error = e; });
    sock.once('connect', () => { c.port = sock.localPort!; resolve(c); });
    sock.once('error', reject);
  });
}

/** Writes `buf` in random slices (1 B to 64 KiB), honouring backpressure. */
async function writeSliced(sock: net.Socket, buf: Buffer, rnd: () => number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = Math.min(buf.length - off, 1 + Math.floor(rnd() * (rnd() < 0.3 ? 64 : 65536)));
    const ok = sock.write(buf.subarray(off, off + n));
    off += n;
    if (!ok) await new Promise((r) => sock.once('drain', r));
    else if (rnd() < 0.05) await new Promise((r) => setImmediate(r));
  }
}

/** A deterministic PRNG so a failure can be replayed. */
function prng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}

const CRLF = '\r\n';
function request(method: string, path: string, headers: Record<string, string> = {}, body: Buffer = Buffer.alloc(0)): Buffer {
  const h = { Host: 'relay.test', ...headers };
  const head = `${method} ${path} HTTP/1.1${CRLF}${Object.entries(h).map(([k, v]) => `${k}: ${v}${CRLF}`).join('')}${CRLF}`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}
function response(status: number, headers: Record<string, string>, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = `HTTP/1.1 ${status} X${CRLF}${Object.entries(headers).map(([k, v]) => `${k}: ${v}${CRLF}`).join('')}${CRLF}`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}
/** A chunked body of random chunks (sizes 1 B .. 100 KB) of `data`. */
function chunkedBody(data: Buffer, rnd: () => number): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; ) {
    const n = Math.min(data.length - off, 1 + Math.floor(rnd() * 100_000));
    parts.push(Buffer.from(`${n.toString(16)}${CRLF}`, 'latin1'), data.subarray(off, off + n), Buffer.from(CRLF, 'latin1'));
    off += n;
  }
  parts.push(Buffer.from(`0${CRLF}${CRLF}`, 'latin1'));
  return Buffer.concat(parts);
}
const OK_RESPONSE = response(200, { 'Content-Length': '2' }, Buffer.from('ok'));
const GET = request('GET', '/');

// ------------------------------------------------------------------ bytes

describe('ProxyRelay: bytes pass unchanged both ways', () => {
  it('relays pipelined requests with large random and chunked bodies both ways, byte for byte', async () => {
    const rnd = prng(42);
    // 5 pipelined requests: two with large random bodies (one Content-Length, one chunked).
    const up1 = randomBytes(3 * 1024 * 1024);
    const up2 = randomBytes(2 * 1024 * 1024 + 17);
    const reqs = [
      request('GET', '/a'),
      request('POST', '/upload', { 'Content-Length': String(up1.length) }, up1),
      request('PUT', '/chunked', { 'Transfer-Encoding': 'chunked' }, chunkedBody(up2, rnd)),
      request('GET', '/b'),
      request('GET', '/c', { Connection: 'keep-alive' }),
    ];
    const clientSent = Buffer.concat(reqs);
    // 5 responses: a 5 MB random body, a chunked 2 MB one, small ones.
    const down1 = randomBytes(5 * 1024 * 1024 + 3);
    const down2 = randomBytes(2 * 1024 * 1024 - 5);
    const resps = [
      response(200, { 'Content-Length': String(down1.length) }, down1),
      response(201, { 'Transfer-Encoding': 'chunked' }, chunkedBody(down2, rnd)),
      response(204, {}),
      response(200, { 'Content-Length': '0' }),
      response(200, { 'Content-Length': '5', 'Keep-Alive': 'timeout=5, max=100' }, Buffer.from('hello')),
    ];
    const serverSent = Buffer.concat(resps);

    const serverGot: Buffer[] = [];
    let serverSawEnd = false;
    const upstream = await startUpstream((s) => {
      let n = 0;
      let answered = false;
      s.on('data', (b: Buffer) => {
        serverGot.push(b);
        n += b.length;
        // Answers once every request byte is in (the client pipelined them all).
        if (!answered && n >= clientSent.length) {
          answered = true;
          void writeSliced(s, serverSent, rnd);
        }
      });
      s.on('end', () => { serverSawEnd = true; s.end(); });
    });
    const tap = await startTap(upstream.port);
    const c = await connectClient(tap.port);
    await writeSliced(c.sock, clientSent, rnd);
    await until('every response byte at the client', () => c.chunks.reduce((a, b) => a + b.length, 0) >= serverSent.length, 15_000);
    c.sock.end();
    await until('the client socket to close', () => c.closed);

    const got = c.received();
    expect(got.length).toBe(serverSent.length);
    expect(sha(got)).toBe(sha(serverSent));
    const atServer = Buffer.concat(serverGot);
    expect(atServer.length).toBe(clientSent.length);
    expect(sha(atServer)).toBe(sha(clientSent));
    expect(serverSawEnd).toBe(true);
    expect(c.error).toBeNull();
    await expectAllClosed(tap, upstream.server);

    // The engine saw one connection with the five requests in order, pipelined.
    expect(tap.facts.closed).toHaveLength(1);
    const conn = tap.facts.closed[0];
    expect(conn.requests).toBe(5);
    expect(conn.responses).toBe(5);
    expect(conn.reusedRequests).toBe(4);
    expect(tap.facts.requests.map((r) => [r.req.method, r.req.reused])).toEqual([
      ['GET', false], ['POST', true], ['PUT', true], ['GET', true], ['GET', true],
    ]);
    expect(tap.facts.responses.map((r) => r.req.status)).toEqual([200, 201, 204, 200, 200]);
    expect(Math.max(...tap.facts.requests.map((r) => r.req.outstandingAtStart))).toBeGreaterThan(0);
    expect(conn.closedBy).toBe('client');
    expect(conn.closedWith).toBe('fin');
    expect(conn.closeReason).toBe('client_close');
    expect(conn.advertisedTimeout).toBe(5);
    expect(conn.advertisedMax).toBe(100);
    expect(conn.server).toBe(`${HOST}:${upstream.port}`);
    expect(conn.client).toBe(`${HOST}:${c.port}`);
    expect(tap.engine.stats().anomalies).toEqual({});
    expect(tap.warnings).toEqual([]);
  }, 30_000);

  it('relays 16 MB of random non-HTTP bytes each way at the same time, byte for byte', async () => {
    const rnd = prng(7);
    // A leading zero byte: certainly not HTTP, TLS or HTTP/2.
    const fromClient = Buffer.concat([Buffer.from([0]), randomBytes(16 * 1024 * 1024)]);
    const fromServer = Buffer.concat([Buffer.from([0]), randomBytes(16 * 1024 * 1024)]);
    const serverGot: Buffer[] = [];
    const upstream = await startUpstream((s) => {
      s.on('data', (b: Buffer) => serverGot.push(b));
      s.on('end', () => s.end());
      void writeSliced(s, fromServer, rnd);
    });
    const tap = await startTap(upstream.port);
    const c = await connectClient(tap.port);
    await writeSliced(c.sock, fromClient, rnd);
    await until('all bytes both ways', () => c.chunks.reduce((a, b) => a + b.length, 0) >= fromServer.length
      && serverGot.reduce((a, b) => a + b.length, 0) >= fromClient.length, 20_000);
    c.sock.end();
    await until('the client socket to close', () => c.closed);
    expect(sha(c.received())).toBe(sha(fromServer));
    expect(sha(Buffer.concat(serverGot))).toBe(sha(fromClient));
    await expectAllClosed(tap, upstream.server);
    // Not HTTP: counted apart, never reported as a connection.
    expect(tap.facts.opened).toHaveLength(0);
    const nonHttp = tap.engine.stats().nonHttp;
    expect(nonHttp.tls + nonHttp.http2 + nonHttp.other).toBe(1);
  }, 30_000);

  it('keeps 12 concurrent connections apart: distinct random 8 MB responses, fast and stalled readers, every byte intact', async () => {
    // The relay reads every upstream into one shared buffer and writes copies: a slow reader's
    // pending write must never see bytes of another connection.
    const sent = new Map<number, Buffer>();
    let n = 0;
    const upstream = await startUpstream((s) => {
      // More than the kernel buffers on the way hold: a stalled reader leaves writes pending.
      const body = randomBytes(8 * 1024 * 1024 + n++);
      s.once('data', (b: Buffer) => {
        const id = Number(/GET \/(\d+)/.exec(b.toString('latin1'))![1]);
        const whole = response(200, { 'Content-Length': String(body.length) }, body);
        sent.set(id, whole);
        void writeSliced(s, whole, prng(id + 1));
      });
      s.on('end', () => s.end());
    });
    const tap = await startTap(upstream.port);
    const clients = await Promise.all(Array.from({ length: 12 }, () => connectClient(tap.port)));
    clients.forEach((c, id) => {
      if (id % 2) {
        // A stalled reader: reads nothing for 300 ms, then pauses 5 ms after every chunk,
        // while the others read at full speed.
        c.sock.pause();
        setTimeout(() => c.sock.resume(), 300);
        c.sock.on('data', () => { c.sock.pause(); setTimeout(() => c.sock.resume(), 5); });
      }
      c.sock.write(request('GET', `/${id}`));
    });
    await until('every response', () => clients.every((c, id) => sent.has(id) && c.received().length >= sent.get(id)!.length), 30_000);
    clients.forEach((c, id) => expect(sha(c.received()), `connection ${id}`).toBe(sha(sent.get(id)!)));
    for (const c of clients) c.sock.end();
    await expectAllClosed(tap, upstream.server);
    expect(tap.facts.closed.map((r) => r.responses)).toEqual(Array(12).fill(1));
  }, 40_000);

  it('relays node:http keep-alive traffic: request and response bodies intact, one upstream connection per client connection', async () => {
    const served: Array<{ method: string; bodySha: string; sentSha: string }> = [];
    const server = http.createServer((req, res) => {
      const h = createHash('sha256');
      req.on('data', (b: Buffer) => h.update(b));
      req.on('end', () => {
        const bodySha = h.digest('hex');
        const size = Number(new URL(req.url!, 'http://x').searchParams.get('size') ?? '0');
        const body = randomBytes(size);
        served.push({ method: req.method!, bodySha, sentSha: sha(body) });
        if (req.url!.startsWith('/chunked')) {
          // No Content-Length: node:http sends Transfer-Encoding: chunked, one chunk per write.
          res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
          let off = 0;
          const step = (): void => {
            if (off >= body.length) { res.end(); return; }
            res.write(body.subarray(off, off + 50_000));
            off += 50_000;
            setImmediate(step);
          };
          step();
        } else {
          res.writeHead(200, { 'Content-Length': String(body.length) });
          res.end(body);
        }
      });
    });
    server.keepAliveTimeout = 10_000;
    await new Promise<void>((r) => server.listen(0, HOST, r));
    cleanups.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
    const tap = await startTap((server.address() as net.AddressInfo).port);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    const call = (method: string, path: string, body?: Buffer): Promise<{ status: number; sha: string; headers: http.IncomingHttpHeaders }> =>
      new Promise((resolve, reject) => {
        const req = http.request({ host: HOST, port: tap.port, method, path, agent }, (res) => {
          const h = createHash('sha256');
          res.on('data', (b: Buffer) => h.update(b));
          res.on('end', () => resolve({ status: res.statusCode!, sha: h.digest('hex'), headers: res.headers }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(body);
      });

    const upload = randomBytes(4 * 1024 * 1024 + 1);
    const r1 = await call('POST', '/echo?size=6000000', upload);
    const r2 = await call('GET', '/chunked?size=2500000');
    const r3 = await call('GET', '/small?size=10');
    expect([r1.status, r2.status, r3.status]).toEqual([200, 200, 200]);
    expect(r2.headers['transfer-encoding']).toBe('chunked');
    expect(served.map((s) => s.method)).toEqual(['POST', 'GET', 'GET']);
    expect(served[0].bodySha).toBe(sha(upload));
    expect([r1.sha, r2.sha, r3.sha]).toEqual(served.map((s) => s.sentSha));
    agent.destroy();
    await expectAllClosed(tap, server);

    expect(tap.relay.accepted).toBe(1);
    expect(tap.facts.closed).toHaveLength(1);
    const conn = tap.facts.closed[0];
    expect({ requests: conn.requests, responses: conn.responses, reused: conn.reusedRequests, closedBy: conn.closedBy })
      .toEqual({ requests: 3, responses: 3, reused: 2, closedBy: 'client' });
    expect(tap.facts.requests.map((r) => r.req.reused)).toEqual([false, true, true]);
  }, 30_000);
});

// ------------------------------------------------------------------ facts

describe('ProxyRelay: the engine facts of proxied connections', () => {
  it('reports requests per connection, reuse, and the upstream connect time as handshake RTT', async () => {
    const upstream = await startUpstream((s) => {
      let buf = '';
      s.on('data', (b: Buffer) => {
        buf += b.toString('latin1');
        for (let i; (i = buf.indexOf('\r\n\r\n')) >= 0; ) {
          const head = buf.slice(0, i);
          buf = buf.slice(i + 4);
          s.write(/connection: close/i.test(head)
            ? response(200, { 'Content-Length': '2', Connection: 'close' }, Buffer.from('ok'))
            : OK_RESPONSE);
          if (/connection: close/i.test(head)) s.end();
        }
      });
      s.on('end', () => s.end());
    });
    const tap = await startTap(upstream.port);
    const exchange = async (c: Client, bytes: Buffer, n: number): Promise<void> => {
      const before = c.received().length;
      c.sock.write(bytes);
      await until('a response', () => c.received().length >= before + n * OK_RESPONSE.length);
    };
    // Connection A: 3 requests, then the client closes. Connection B: 1 request, then one with
    // Connection: close (the server closes). Connection C: nothing at all.
    const a = await connectClient(tap.port);
    for (let i = 0; i < 3; i++) await exchange(a, GET, 1);
    a.sock.end();
    const b = await connectClient(tap.port);
    await exchange(b, GET, 1);
    b.sock.write(request('GET', '/last', { Connection: 'close' }));
    await until('the server to close B', () => b.ended);
    b.sock.end();
    const c = await connectClient(tap.port);
    await sleep(50);
    c.sock.end();
    await until('all clients closed', () => a.closed && b.closed && c.closed);
    await expectAllClosed(tap, upstream.server);

    const byClient = new Map(tap.facts.closed.map((r) => [r.client, r]));
    const ca = byClient.get(`${HOST}:${a.port}`)!;
    const cb = byClient.get(`${HOST}:${b.port}`)!;
    const cc = byClient.get(`${HOST}:${c.port}`)!;
    expect([ca?.requests, cb?.requests, cc?.requests]).toEqual([3, 2, 0]);
    expect([ca.reusedRequests, cb.reusedRequests]).toEqual([2, 1]);
    expect([ca.closeReason, cb.closeReason, cc.closeReason]).toEqual(['client_close', 'client_close', 'unused']);
    expect([ca.closedBy, cb.closedBy, cc.closedBy]).toEqual(['client', 'server', 'client']);
    for (const r of [ca, cb, cc]) {
      // The upstream connect time on loopback: positive and small (under a loaded test run too).
      expect(r.handshakeRtt).not.toBeNull();
      expect(r.handshakeRtt!).toBeGreaterThan(0);
      expect(r.handshakeRtt!).toBeLessThan(0.5);
      expect(r.midstream).toBe(false);
      expect(r.server).toBe(`${HOST}:${upstream.port}`);
    }
    // Each reused request saved its connection's handshake RTT.
    const reusedA = tap.facts.requests.filter((r) => r.conn === ca && r.req.reused);
    expect(reusedA.map((r) => r.req.savedFrom)).toEqual(['handshake', 'handshake']);
    for (const r of reusedA) expect(r.req.savedSeconds).toBe(ca.handshakeRtt);
    expect(ca.handshakeTimeSaved).toBeCloseTo(2 * ca.handshakeRtt!, 12);
    expect(tap.relay.accepted).toBe(3);
    expect(tap.relay.upstreamFailures).toBe(0);
    expect(tap.engine.stats().streams).toBe(3);
    expect(tap.engine.servers.get(`${HOST}:${upstream.port}`)?.medianRtt()).toBeGreaterThan(0);
  });

  it('a client that resets mid-response gives `aborted` (and the upstream is reset too)', async () => {
    let upstreamError: NodeJS.ErrnoException | null = null;
    const upstream = await startUpstream((s) => {
      s.once('data', () => {
        // Head and 1 KB of a 1 MB body, then nothing more: the response stays in flight.
        s.write(response(200, { 'Content-Length': String(1024 * 1024) }, randomBytes(1024)));
      });
      s.on('error', (e) => { upstreamError = e; });
    });
    const tap = await startTap(upstream.port);
    const c = await connectClient(tap.port);
    c.sock.once('data', () => c.sock.resetAndDestroy());
    c.sock.write(GET);
    await until('the client socket to close', () => c.closed);
    await until('the upstream to see the reset', () => upstreamError !== null);
    expect(upstreamError!.code).toBe('ECONNRESET');
    await expectAllClosed(tap, upstream.server);
    expect(tap.facts.closed).toHaveLength(1);
    const r = tap.facts.closed[0];
    expect({ reason: r.closeReason, by: r.closedBy, with: r.closedWith, requests: r.requests, responses: r.responses })
      .toEqual({ reason: 'aborted', by: 'client', with: 'rst', requests: 1, responses: 0 });
  });

  it('a client that closes (FIN) mid-response gives `aborted`', async () => {
    const upstream = await startUpstream((s) => {
      s.once('data', () => s.write(response(200, { 'Content-Length': '100000' }, Buffer.alloc(100, 0x61))));
      s.on('end', () => s.end());
    });
    const tap = await startTap(upstream.port);
    const c = await connectClient(tap.port, { allowHalfOpen: false });
    c.sock.once('data', () => c.sock.end());
    c.sock.write(GET);
    await until('the client socket to close', () => c.closed);
    await expectAllClosed(tap, upstream.server);
    const r = tap.facts.closed[0];
    expect({ reason: r.closeReason, by: r.closedBy, with: r.closedWith }).toEqual({ reason: 'aborted', by: 'client', with: 'fin' });
  });
});

// ------------------------------------------------------------------ backpressure

describe('ProxyRelay: backpressure both ways', () => {
  const BLOCK = randomBytes(1024 * 1024);
  const TOTAL_MB = 256;

  /**
   * Writes TOTAL_MB of BLOCK as fast as `s` takes it, honouring its backpressure; `accepted()`
   * is how many bytes the socket took off our hands (written to the kernel).
   */
  function pump(s: net.Socket, prefix: Buffer): { accepted: () => number; done: Promise<void> } {
    let accepted = 0;
    const done = (async () => {
      s.write(prefix, () => { accepted += prefix.length; });
      for (let i = 0; i < TOTAL_MB && !s.destroyed; i++) {
        const ok = s.write(BLOCK, (err) => { if (!err) accepted += BLOCK.length; });
        // Whichever comes first, the other listener goes too: a 'close' listener left per wait
        // piled up past Node's 10 (the MaxListenersExceededWarning at the start of a full run).
        if (!ok) {
          await new Promise<void>((r) => {
            const on = () => { s.off('drain', on); s.off('close', on); r(); };
            s.once('drain', on);
            s.once('close', on);
          });
        }
      }
    })();
    return { accepted: () => accepted, done };
  }

  /** Waits until `value()` stops growing for `quietMs`; returns it. */
  async function stalled(value: () => number, quietMs = 400, timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let last = -1;
    let since = Date.now();
    for (;;) {
      const v = value();
      if (v !== last) { last = v; since = Date.now(); }
      else if (Date.now() - since >= quietMs) return v;
      if (Date.now() > deadline) throw new Error(`still moving after ${timeoutMs} ms (${v} bytes)`);
      await sleep(50);
    }
  }

  /** Largest writable buffer of the relay's sockets, sampled every few ms until stopped. */
  function sampleRelayBuffers(relay: ProxyRelay): { max: () => number; stop: () => void } {
    let max = 0;
    const t = setInterval(() => {
      for (const s of relaySockets(relay)) max = Math.max(max, s.writableLength);
    }, 2);
    return { max: () => max, stop: () => clearInterval(t) };
  }

  const total = TOTAL_MB * BLOCK.length;
  const expectedSha = (prefix: Buffer): string => sha(prefix, ...Array<Buffer>(TOTAL_MB).fill(BLOCK));

  it('a client that stops reading a 256 MB response pauses the upstream; the relay buffers next to nothing; then every byte arrives', async () => {
    let p: ReturnType<typeof pump> | null = null;
    const head = response(200, { 'Content-Length': String(total) });
    const upstream = await startUpstream((s) => {
      s.once('data', () => { p = pump(s, head); });
      s.on('end', () => s.end());
    });
    const tap = await startTap(upstream.port);
    const samples = sampleRelayBuffers(tap.relay);
    const c = await connectClient(tap.port);
    c.sock.pause(); // a client that reads nothing for now
    // It says this is its last request: checking the 256 MB takes the client about a second, so
    // its FIN comes long after the last byte, and only the request explains the close.
    const lastGet = request('GET', '/', { Connection: 'close' });
    c.sock.write(lastGet);
    await until('the upstream to start sending', () => p !== null);
    const atStall = await stalled(() => p!.accepted());
    // The upstream is held back: what it got rid of fits in the kernel's socket buffers on the
    // way (a few MB to a few tens of MB on loopback), far from the 256 MB it wants to send.
    expect(atStall).toBeLessThan(total / 2);
    // ...because the relay stopped reading from it, not because it reads into memory.
    const relayed = [...relaySockets(tap.relay)];
    const upSide = relayed.find((s) => s.remotePort === upstream.port)!;
    await until('the relay to have paused its upstream socket', () => upSide.isPaused());
    expect(samples.max()).toBeLessThan(2 * 1024 * 1024);

    // Now a slow reader: 64 KB at a time with pauses, then at full speed.
    const h = createHash('sha256');
    let got = 0;
    c.sock.removeAllListeners('data');
    c.sock.on('data', (b: Buffer) => {
      h.update(b);
      got += b.length;
      if (got < 32 * 1024 * 1024 && got % (1024 * 1024) < b.length) {
        c.sock.pause();
        setTimeout(() => c.sock.resume(), 5);
      }
    });
    c.sock.resume();
    await until('the whole response at the client', () => got >= head.length + total, 60_000);
    await p!.done;
    samples.stop();
    expect(got).toBe(head.length + total);
    expect(h.digest('hex')).toBe(expectedSha(head));
    expect(samples.max()).toBeLessThan(2 * 1024 * 1024);
    c.sock.end();
    await expectAllClosed(tap, upstream.server);
    expect(tap.facts.closed[0]).toMatchObject({ requests: 1, responses: 1, closeReason: 'client_close' });
  }, 90_000);

  it('an upstream that stops reading a 256 MB upload pauses the client; then every byte arrives', async () => {
    const head = request('POST', '/upload', { 'Content-Length': String(total) });
    let upSock: net.Socket | null = null;
    const h = createHash('sha256');
    let got = 0;
    const upstream = await startUpstream((s) => {
      upSock = s;
      s.pause(); // an upstream that reads nothing for now
      s.on('data', (b: Buffer) => {
        h.update(b);
        got += b.length;
        if (got === head.length + total) s.write(OK_RESPONSE);
      });
      s.on('end', () => s.end());
    });
    const tap = await startTap(upstream.port);
    const samples = sampleRelayBuffers(tap.relay);
    const c = await connectClient(tap.port);
    const p = pump(c.sock, head);
    const atStall = await stalled(() => p.accepted());
    expect(atStall).toBeLessThan(total / 2);
    const clientSide = [...relaySockets(tap.relay)].find((s) => s.remotePort === c.port)!;
    await until('the relay to have paused its client socket', () => clientSide.isPaused());
    expect(samples.max()).toBeLessThan(2 * 1024 * 1024);
    upSock!.resume();
    await p.done;
    await until('the whole upload at the upstream', () => got >= head.length + total, 60_000);
    samples.stop();
    expect(h.digest('hex')).toBe(expectedSha(head));
    expect(samples.max()).toBeLessThan(2 * 1024 * 1024);
    await until('the response', () => c.received().length >= OK_RESPONSE.length);
    expect(c.received().equals(OK_RESPONSE)).toBe(true);
    c.sock.end();
    await expectAllClosed(tap, upstream.server);
    expect(tap.facts.closed[0]).toMatchObject({ requests: 1, responses: 1 });
  }, 90_000);
});

// ------------------------------------------------------------------ closing

describe('ProxyRelay: half-close, reset, failures, idle timeout', () => {
  it('forwards a client half-close: the upstream sees the end of the request and can still answer', async () => {
    const events: string[] = [];
    const upstream = await startUpstream((s) => {
      const got: Buffer[] = [];
      s.on('data', (b: Buffer) => got.push(b));
      s.on('end', () => {
        events.push(`upstream end after ${Buffer.concat(got).length} bytes`);
        // Answers only after the client's FIN, then closes its side.
        setTimeout(() => { s.write(OK_RESPONSE); s.end(); }, 50);
      });
    }, { allowHalfOpen: true });
    const tap = await startTap(upstream.port);
    const c = await connectClient(tap.port);
    c.sock.on('end', () => events.push(`client end after ${c.received().length} bytes`));
    c.sock.end(GET);
    await until('the client socket to close', () => c.closed);
    expect(c.error).toBeNull();
    expect(c.received().equals(OK_RESPONSE)).toBe(true);
    expect(events).toEqual([`upstream end after ${GET.length} bytes`, `client end after ${OK_RESPONSE.length} bytes`]);
    await expectAllClosed(tap, upstream.server);
    expect(tap.facts.closed[0]).toMatchObject({ requests: 1, responses: 1, closedBy: 'client', closedWith: 'fin' });
  });

  it('forwards an upstream half-close: the client sees the end of the response and can still send', async () => {
    const late = request('GET', '/late');
    const got: Buffer[] = [];
    let upstreamEnded = false;
    const upstream = await startUpstream((s) => {
      // A keep-alive response, then the server's FIN: it ends persistence without saying so, as an
      // idle close does. (After a `Connection: close` the late request would be the client's own
      // mistake, and the response would decide the reason.)
      s.once('data', () => s.end(response(200, { 'Content-Length': '2' }, Buffer.from('ok'))));
      s.on('data', (b: Buffer) => got.push(b));
      s.on('end', () => { upstreamEnded = true; });
    }, { allowHalfOpen: true });
    const tap = await startTap(upstream.port);
    const c = await connectClient(tap.port);
    c.sock.write(GET);
    await until('the upstream FIN at the client', () => c.ended);
    expect(c.closed).toBe(false);
    // The client still writes after the server's FIN (as in a keep-alive race), then closes.
    c.sock.write(late);
    await until('the late bytes at the upstream', () => Buffer.concat(got).length >= GET.length + late.length);
    expect(Buffer.concat(got).equals(Buffer.concat([GET, late]))).toBe(true);
    expect(upstreamEnded).toBe(false);
    c.sock.end();
    await until('the client FIN at the upstream', () => upstreamEnded);
    await until('the client socket to close', () => c.closed);
    expect(c.error).toBeNull();
    await expectAllClosed(tap, upstream.server);
    // The server closed; the request sent after its FIN got no answer: the keep-alive race.
    expect(tap.facts.closed[0]).toMatchObject({ requests: 2, responses: 1, closedBy: 'server', closedWith: 'fin', closeReason: 'race' });
  });

  it('a client reset resets the upstream connection', async () => {
    let upstreamError: NodeJS.ErrnoException | null = null;
    const upstream = await startUpstream((s) => {
      s.on('data', () => s.write(OK_RESPONSE));
      s.on('error', (e) => { upstreamError = e; });
    });
    const tap = await startTap(upstream.port);
    const c = await connectClient(tap.port);
    c.sock.write(GET);
    await until('the response', () => c.received().length >= OK_RESPONSE.length);
    await sleep(50);
    c.sock.resetAndDestroy();
    await until('the upstream to see the reset', () => upstreamError !== null);
    expect(upstreamError!.code).toBe('ECONNRESET');
    await expectAllClosed(tap, upstream.server);
    expect(tap.facts.closed[0]).toMatchObject({ requests: 1, closeReason: 'reset', closedBy: 'client', closedWith: 'rst' });
  });

  it('an upstream reset resets the client connection', async () => {
    const upstream = await startUpstream((s) => {
      s.once('data', () => {
        s.write(OK_RESPONSE);
        setTimeout(() => s.resetAndDestroy(), 50);
      });
    });
    const tap = await startTap(upstream.port);
    const c = await connectClient(tap.port);
    c.sock.write(GET);
    await until('the client socket to close', () => c.closed);
    expect(c.error?.code).toBe('ECONNRESET');
    expect(c.received().equals(OK_RESPONSE)).toBe(true);
    await expectAllClosed(tap, upstream.server);
    expect(tap.facts.closed[0]).toMatchObject({ requests: 1, closeReason: 'reset', closedBy: 'server', closedWith: 'rst' });
  });

  it('an upstream that refuses closes the client connection and is counted', async () => {
    // A port nobody listens on: the OS hands it out, then it is closed again.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, HOST, r));
    const dead = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const tap = await startTap(dead);
    const c = await connectClient(tap.port);
    c.sock.write(GET);
    await until('the client socket to close', () => c.closed);
    expect(c.received().length).toBe(0);
    expect(tap.relay.upstreamFailures).toBe(1);
    expect(tap.relay.accepted).toBe(1);
    await expectAllClosed(tap);
    expect(tap.facts.opened).toHaveLength(0);
    expect(tap.engine.stats().streams).toBe(0);
  });

  it('an upstream that never answers the connect times out, closes the client and is counted', async () => {
    // A listener that never accepts (its event loop is blocked) with a full accept queue: the
    // kernel drops further SYNs, so a connect hangs, as to an unreachable host.
    const child: ChildProcess = spawn(process.execPath, ['-e', `
      const net = require('node:net');
      const s = net.createServer().listen({ port: 0, host: '${HOST}', backlog: 1 }, () => {
        console.log(s.address().port);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20000);
      });`], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanups.push(() => { child.kill('SIGKILL'); });
    const port = await new Promise<number>((resolve) => child.stdout!.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))));
    // Fill the accept queue.
    const fillers: net.Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const f = net.connect({ host: HOST, port });
      f.on('error', () => {});
      fillers.push(f);
      cleanups.push(() => { f.destroy(); });
    }
    await sleep(200);
    const tap = await startTap(port, { connectTimeoutMs: 300 });
    const c = await connectClient(tap.port, { allowHalfOpen: false });
    const t0 = Date.now();
    await until('the client socket to close', () => c.closed, 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(tap.relay.upstreamFailures).toBe(1);
    await expectAllClosed(tap);
    expect(tap.facts.opened).toHaveLength(0);
  }, 15_000);

  it('closes both sides of a connection idle for idleTimeoutMs, counts it, and reports it as the client side closing', async () => {
    let upstreamEnded = false;
    const upstream = await startUpstream((s) => {
      s.on('data', () => s.write(OK_RESPONSE));
      s.on('end', () => { upstreamEnded = true; });
    });
    // Longer than the engine's prompt-close window (1 s), so the close reads as an idle close.
    const tap = await startTap(upstream.port, { idleTimeoutMs: 1200 });
    const c = await connectClient(tap.port, { allowHalfOpen: false });
    const t0 = Date.now();
    c.sock.write(GET);
    await until('the client socket to close', () => c.closed, 4000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1150);
    expect(c.received().equals(OK_RESPONSE)).toBe(true);
    expect(c.ended).toBe(true); // an orderly FIN, not a reset
    await until('the upstream to see the FIN', () => upstreamEnded);
    expect(tap.relay.idleClosed).toBe(1);
    await expectAllClosed(tap, upstream.server);
    // To the upstream the tap is the client, and it closed an idle keep-alive connection.
    expect(tap.facts.closed[0]).toMatchObject({ requests: 1, responses: 1, closedBy: 'client', closedWith: 'fin', closeReason: 'client_idle' });
  });

  it('an idle connection that is not idle is left alone', async () => {
    const upstream = await startUpstream((s) => s.on('data', () => s.write(OK_RESPONSE)));
    const tap = await startTap(upstream.port, { idleTimeoutMs: 300 });
    const c = await connectClient(tap.port);
    for (let i = 0; i < 6; i++) {
      c.sock.write(GET);
      await sleep(150);
    }
    expect(c.closed).toBe(false);
    expect(tap.relay.idleClosed).toBe(0);
    c.sock.end();
    await expectAllClosed(tap, upstream.server);
    expect(tap.facts.closed[0]).toMatchObject({ requests: 6, responses: 6, closedBy: 'client' });
  });

  it('stop() closes every relayed connection and the listener', async () => {
    const upstream = await startUpstream((s) => s.on('data', () => s.write(OK_RESPONSE)));
    const tap = await startTap(upstream.port);
    const clients = await Promise.all([0, 1, 2].map(() => connectClient(tap.port, { allowHalfOpen: false })));
    for (const c of clients) c.sock.write(GET);
    await until('every response', () => clients.every((c) => c.received().length >= OK_RESPONSE.length));
    expect(tap.relay.active).toBe(3);
    await tap.relay.stop();
    await until('the clients to close', () => clients.every((c) => c.closed));
    await expectAllClosed(tap, upstream.server);
    expect(tap.relay.up).toBe(false);
    await expect(connectClient(tap.port)).rejects.toThrow(/ECONNREFUSED/);
    expect(tap.facts.closed).toHaveLength(3);
  });

  it('many short connections at once: every one relayed, counted and closed', async () => {
    const upstream = await startUpstream((s) => {
      s.on('data', () => s.end(response(200, { 'Content-Length': '2', Connection: 'close' }, Buffer.from('ok'))));
    });
    const tap = await startTap(upstream.port);
    const clients = await Promise.all(Array.from({ length: 100 }, () => connectClient(tap.port, { allowHalfOpen: false })));
    for (const c of clients) c.sock.write(request('GET', '/', { Connection: 'close' }));
    await until('every client closed', () => clients.every((c) => c.closed), 10_000);
    for (const c of clients) expect(c.received().toString('latin1')).toMatch(/^HTTP\/1\.1 200 X\r\n.*\r\n\r\nok$/s);
    await expectAllClosed(tap, upstream.server);
    expect(tap.relay.accepted).toBe(100);
    expect(tap.facts.closed).toHaveLength(100);
    expect(new Set(tap.facts.closed.map((r) => r.closeReason))).toEqual(new Set(['client_close']));
  }, 20_000);
});

describe('ProxyRelay: address families', () => {
  it('an IPv6 client in front of an IPv4 upstream keeps the upstream address as the server', async () => {
    const upstream = await startUpstream((s) => s.on('data', () => s.write(OK_RESPONSE)));
    const tap = await startTap(upstream.port, {}, { listenHost: '::1' });
    const c = await connectClient(tap.port, { host: '::1' });
    c.sock.write(GET);
    await until('the response', () => c.received().length >= OK_RESPONSE.length);
    c.sock.end();
    await expectAllClosed(tap, upstream.server);
    const r = tap.facts.closed[0];
    expect(r.server).toBe(`${HOST}:${upstream.port}`);
    expect(r.ipVersion).toBe(4);
    // An IPv6 address has no IPv4 form: the client shows as 0.0.0.0 with its own port.
    expect(r.client).toBe(`0.0.0.0:${c.port}`);
    expect(r.requests).toBe(1);
  });

  it('an IPv4 client through a dual-stack listener is reported as IPv4, not IPv4-mapped', async () => {
    const upstream = await startUpstream((s) => s.on('data', () => s.write(OK_RESPONSE)));
    const tap = await startTap(upstream.port, {}, { listenHost: '::' });
    const c = await connectClient(tap.port, { host: HOST });
    c.sock.write(GET);
    await until('the response', () => c.received().length >= OK_RESPONSE.length);
    c.sock.end();
    await expectAllClosed(tap, upstream.server);
    const r = tap.facts.closed[0];
    expect(r.client).toBe(`${HOST}:${c.port}`);
    expect(r.server).toBe(`${HOST}:${upstream.port}`);
    expect(r.ipVersion).toBe(4);
  });
});

// ------------------------------------------------------------------ refusals

interface Refused {
  /** The socket's error: ECONNRESET for a reset (also when the reset beat the connect). */
  error: NodeJS.ErrnoException | null;
  received: number;
  open: boolean;
}

/** A client the relay is expected to refuse: connects, sends a request, resolves once closed
 * (or after 5 s, still open: `open` true). */
function connectRefused(port: number): Promise<Refused> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port, noDelay: true });
    cleanups.push(() => { sock.destroy(); });
    const r: Refused = { error: null, received: 0, open: false };
    const timer = setTimeout(() => { r.open = true; resolve(r); }, 5000);
    sock.on('connect', () => sock.write(GET));
    sock.on('data', (b: Buffer) => { r.received += b.length; });
    sock.on('error', (e) => { r.error = e; });
    sock.on('close', () => { clearTimeout(timer); resolve(r); });
  });
}

describe('ProxyRelay: refuses visibly at maxConnections', () => {
  it('with maxConnections 3: three held connections relay, more are reset at once without a byte or an upstream connection, counted as limit, logged once; a freed slot is used again', async () => {
    const upstream = await startUpstream((s) => s.on('data', () => s.write(OK_RESPONSE)));
    const tap = await startTap(upstream.port, { maxConnections: 3 });
    const held = await Promise.all([0, 1, 2].map(() => connectClient(tap.port)));
    for (const c of held) c.sock.write(GET);
    await until('three responses', () => held.every((c) => c.received().length === OK_RESPONSE.length));
    expect(tap.relay.active).toBe(3);

    // The 4th alone, then 20 at once (bounded): every one reset, none relayed.
    const refused = [await connectRefused(tap.port), ...await Promise.all(Array.from({ length: 20 }, () => connectRefused(tap.port)))];
    for (const r of refused) {
      expect(r.open).toBe(false);
      expect(r.received).toBe(0);
      expect(r.error?.code).toBe('ECONNRESET');
    }
    expect(tap.relay.refused).toEqual({ limit: 21, fd_limit: 0 });
    expect(tap.relay.accepted).toBe(3);
    expect(tap.relay.active).toBe(3);
    // Nothing reached the upstream: still the three connections (a 4th would be there by now: the
    // next relayed connection below arrives after it, in order).
    expect(upstream.accepted).toHaveLength(3);
    expect(tap.facts.opened).toHaveLength(3);
    // One line for all of them, saying what to change.
    expect(tap.warnings).toHaveLength(1);
    expect(tap.warnings[0]).toMatch(/proxy:\d+: refusing client connections: 3 relayed at once \(--proxy\.max-connections\); raise --proxy\.max-connections.*LimitNOFILE=.*ulimit -n.*reason="limit"/);

    // The held ones still relay.
    for (const c of held) c.sock.write(GET);
    await until('a second response on each held connection', () => held.every((c) => c.received().length === 2 * OK_RESPONSE.length));

    // One closes: its slot is free once both its sides are, and a new client is relayed.
    held[0].sock.end();
    await until('the relay to release the closed connection', () => tap.relay.active === 2);
    const next = await connectClient(tap.port);
    next.sock.write(GET);
    await until('the response on the new connection', () => next.received().length === OK_RESPONSE.length);
    expect(next.received().equals(OK_RESPONSE)).toBe(true);
    expect(upstream.accepted).toHaveLength(4);
    expect(tap.relay.accepted).toBe(4);
    expect(tap.relay.refused).toEqual({ limit: 21, fd_limit: 0 });
    expect(tap.warnings).toHaveLength(1);

    for (const c of [...held.slice(1), next]) c.sock.end();
    await expectAllClosed(tap, upstream.server);
    // No refused connection reached the engine: four opened, four closed, each with its requests.
    expect(tap.facts.closed.map((r) => r.requests).sort()).toEqual([1, 2, 2, 2]);
  }, 20_000);

  it('counts and logs per listener: a second relay at its cap logs its own line', async () => {
    const upstream = await startUpstream((s) => s.on('data', () => s.write(OK_RESPONSE)));
    const a = await startTap(upstream.port, { maxConnections: 1 });
    const b = await startTap(upstream.port, { maxConnections: 1 });
    const ca = await connectClient(a.port);
    const cb = await connectClient(b.port);
    ca.sock.write(GET);
    cb.sock.write(GET);
    await until('both responses', () => ca.received().length > 0 && cb.received().length > 0);
    for (let i = 0; i < 3; i++) expect(await connectRefused(a.port)).toMatchObject({ open: false, received: 0 });
    expect(await connectRefused(b.port)).toMatchObject({ open: false, received: 0 });
    expect(a.relay.refused.limit).toBe(3);
    expect(b.relay.refused.limit).toBe(1);
    expect(a.warnings).toHaveLength(1);
    expect(b.warnings).toHaveLength(1);
    expect(a.warnings[0]).toContain(`proxy:`);
    ca.sock.end();
    cb.sock.end();
    await expectAllClosed(a);
    await expectAllClosed(b, upstream.server);
  });
});

describe('ProxyRelay: HTTP/2 in cleartext through the tap', () => {
  it('node:http2 client and server: one h2c connection, each stream a request with its status, closed by the client\'s GOAWAY right after', async () => {
    const server = http2.createServer();
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on('session', (s) => sessions.add(s));
    server.on('stream', (stream, headers) => {
      stream.respond({ ':status': headers[':path'] === '/missing' ? 404 : 200 });
      stream.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const tap = await startTap((server.address() as net.AddressInfo).port);
    const client = http2.connect(`http://${HOST}:${tap.port}`);
    const get = (path: string) => new Promise<number>((resolve, reject) => {
      const req = client.request({ ':path': path });
      let status = 0;
      req.on('response', (h) => { status = Number(h[':status']); });
      req.on('error', reject);
      req.resume();
      req.on('end', () => resolve(status));
    });
    expect([await get('/'), await get('/missing'), await get('/')]).toEqual([200, 404, 200]);
    await new Promise<void>((r) => client.close(() => r()));
    // The server side need not close a session the client left (Node.js sometimes keeps it
    // half-open): end it, so the tap sees both sockets go and reports the connection.
    for (const s of sessions) s.close();
    await until('the tap to report the connection closed', () => tap.facts.closed.length === 1, 10_000);
    expect(tap.facts.closed[0]).toMatchObject({ protocol: 'h2c', requests: 3, reusedRequests: 2, responses: 3, closeReason: 'client_close', closedBy: 'client' });
    expect(tap.facts.responses.map((x) => [x.req.method, x.req.status])).toEqual([['GET', 200], ['GET', 404], ['GET', 200]]);
  });
});
