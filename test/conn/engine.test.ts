/**
 * The Engine as a specification: minimal synthetic TCP conversations (test/helpers/conversation.ts)
 * go through the real decode -> TCP -> HTTP -> connection pipeline, and the facts that come out
 * must follow docs/keepalive-semantics.md (the close reasons and saved handshakes) and the framing
 * rules of RFC 9112.
 */
import { describe, expect, it } from 'vitest';
import { Engine, type EngineOptions } from '../../src/conn/engine.js';
import type { ConnectionRecord, RequestRecord } from '../../src/conn/records.js';
import { Conversation, type ConversationOptions, type ConvPacket, chunked, feed, httpRequest, httpResponse, merge } from '../helpers/conversation.js';

const T0 = 1_700_000_000;
const SERVER = '10.0.0.2:80';

let nextPort = 40000;
function conv(over: Partial<ConversationOptions> = {}): Conversation {
  return new Conversation({ client: `10.0.0.1:${nextPort++}`, server: SERVER, t0: T0, ...over });
}

const KA = { Connection: 'keep-alive' };
const KA_REQ = httpRequest('GET', '/', KA);
const KA_RESP = httpResponse(200, 'hello', { Connection: 'keep-alive', 'Keep-Alive': 'timeout=2' });
const CLOSE_RESP = (status = 200) => httpResponse(status, 'bye', { Connection: 'close' });

interface Ev {
  kind: 'opened' | 'request' | 'response' | 'closed';
  id: number;
  /** Snapshot of the connection record when the event was emitted. */
  conn: ConnectionRecord;
  req?: RequestRecord;
}

interface Run {
  engine: Engine;
  events: Ev[];
  closed: ConnectionRecord[];
  requests: RequestRecord[];
  responses: RequestRecord[];
}

function subscribe(engine: Engine): Ev[] {
  const events: Ev[] = [];
  engine.subscribe({
    opened: (c) => events.push({ kind: 'opened', id: c.id, conn: { ...c } }),
    request: (c, r) => events.push({ kind: 'request', id: c.id, conn: { ...c }, req: { ...r } }),
    response: (c, r) => events.push({ kind: 'response', id: c.id, conn: { ...c }, req: { ...r } }),
    closed: (c) => events.push({ kind: 'closed', id: c.id, conn: { ...c } }),
  });
  return events;
}

function view(engine: Engine, events: Ev[]): Run {
  return {
    engine,
    events,
    closed: events.filter((e) => e.kind === 'closed').map((e) => e.conn),
    requests: events.filter((e) => e.kind === 'request').map((e) => e.req!),
    responses: events.filter((e) => e.kind === 'response').map((e) => e.req!),
  };
}

/** Feeds the packets to a fresh Engine and ends the input (unless `finish` is false). */
function run(packets: ConvPacket[] | Conversation, opts: EngineOptions = {}, finish = true): Run {
  const engine = new Engine(opts);
  const events = subscribe(engine);
  feed(engine, packets instanceof Conversation ? packets.packets() : packets);
  if (finish) engine.finish();
  return view(engine, events);
}

/** The one connection a run reported. */
function only(r: Run): ConnectionRecord {
  expect(r.closed).toHaveLength(1);
  return r.closed[0];
}

/** A handshake and one keep-alive exchange answered with a persistent response. */
function oneExchange(c: Conversation, resp = KA_RESP, req = KA_REQ): Conversation {
  return c.handshake(0.001).clientSends(req, 0.001).serverSends(resp, 0.002);
}

describe('close reasons (decided at the first FIN or RST)', () => {
  it('idle_timeout: the server closes an idle connection whose last response kept it alive', () => {
    const c = oneExchange(conv()).clientSends(KA_REQ, 0.1).serverSends(KA_RESP, 0.002);
    const lastResponse = c.now;
    c.close('server', 2);
    const conn = only(run(c));
    expect(conn.closeReason).toBe('idle_timeout');
    expect(conn.closedBy).toBe('server');
    expect(conn.closedWith).toBe('fin');
    expect(conn.requests).toBe(2);
    expect(conn.responses).toBe(2);
    expect(conn.advertisedTimeout).toBe(2);
    expect(conn.closedAt).toBeCloseTo(lastResponse + 2, 6);
    expect(conn.idleBeforeClose).toBeCloseTo(2, 6);
  });

  it('idle_timeout over IPv6, endpoints written "[addr]:port"', () => {
    const c = oneExchange(conv({ client: '[2001:db8::1]:40000', server: '[2001:db8::2]:8080' })).close('server', 2);
    const conn = only(run(c));
    expect(conn.client).toBe('[2001:db8::1]:40000');
    expect(conn.server).toBe('[2001:db8::2]:8080');
    expect(conn.ipVersion).toBe(6);
    expect(conn.closeReason).toBe('idle_timeout');
  });

  it('max_requests, announced: Keep-Alive max=1 on the previous response, then Connection: close', () => {
    const c = oneExchange(conv(), httpResponse(200, 'a', { Connection: 'Keep-Alive', 'Keep-Alive': 'timeout=5, max=1' }))
      .clientSends(KA_REQ, 0.01)
      .serverSends(CLOSE_RESP(), 0.002)
      .close('server', 0.001);
    const r = run(c, {}, false);
    // Announced: decided at once, no need to wait for another connection.
    const conn = only(r);
    expect(conn.closeReason).toBe('max_requests');
    expect(conn.closedBy).toBe('server');
    expect(conn.advertisedMax).toBe(1);
    expect(r.engine.servers.get(SERVER)?.advertisedMax).toBe(1);
  });

  it('the same close after max=5 is not an announced limit (it waits for inference, then server_close)', () => {
    const c = oneExchange(conv(), httpResponse(200, 'a', { Connection: 'Keep-Alive', 'Keep-Alive': 'timeout=5, max=5' }))
      .clientSends(KA_REQ, 0.01)
      .serverSends(CLOSE_RESP(), 0.002)
      .close('server', 0.001);
    const engine = new Engine();
    const events = subscribe(engine);
    c.feed(engine);
    expect(view(engine, events).closed).toHaveLength(0);
    engine.finish();
    expect(only(view(engine, events)).closeReason).toBe('server_close');
  });

  describe('max_requests inferred (nginx announces nothing)', () => {
    /** `n` keep-alive exchanges, the last answered 200 with Connection: close, then the server's FIN. */
    function limited(c: Conversation, n: number, dt = 0): Conversation {
      c.handshake(0.001, dt);
      for (let i = 1; i <= n; i++) c.clientSends(KA_REQ, 0.01).serverSends(i === n ? CLOSE_RESP() : KA_RESP, 0.002);
      return c.close('server', 0.001);
    }

    it('a lone close stays undecided, then is server_close at the end of the input', () => {
      const engine = new Engine();
      const events = subscribe(engine);
      limited(conv(), 3).feed(engine);
      const before = view(engine, events);
      expect(before.events.map((e) => e.kind)).toEqual(['opened', 'request', 'response', 'request', 'response', 'request', 'response']);
      engine.finish();
      const conn = only(view(engine, events));
      expect(conn.closeReason).toBe('server_close');
      expect(conn.closedBy).toBe('server');
      expect(engine.servers.get(SERVER)?.inferredMax).toBeNull();
    });

    it('a lone close is released as server_close once the wait expires in capture time', () => {
      const engine = new Engine();
      const events = subscribe(engine);
      const c = limited(conv(), 3);
      c.feed(engine);
      const wait = engine.limits.inferMaxRequestsWaitSeconds;
      engine.tick(c.now + wait - 1);
      expect(view(engine, events).closed).toHaveLength(0);
      engine.tick(c.now + wait + 1);
      expect(only(view(engine, events)).closeReason).toBe('server_close');
    });

    it('the same count on a second connection to the server makes both max_requests, the first one released first', () => {
      const engine = new Engine();
      const events = subscribe(engine);
      const a = limited(conv(), 3);
      a.feed(engine);
      expect(view(engine, events).closed).toHaveLength(0);
      const b = limited(conv({ t0: a.now + 5 }), 3);
      b.feed(engine);
      const r = view(engine, events);
      expect(r.closed.map((c) => [c.client, c.closeReason])).toEqual([
        [`10.0.0.1:${a.client.port}`, 'max_requests'],
        [`10.0.0.1:${b.client.port}`, 'max_requests'],
      ]);
      expect(engine.servers.get(SERVER)?.inferredMax).toBe(3);
      // A third connection at that count is decided at once.
      limited(conv({ t0: b.now + 5 }), 3).feed(engine);
      expect(view(engine, events).closed.map((c) => c.closeReason)).toEqual(['max_requests', 'max_requests', 'max_requests']);
    });

    it('different counts do not confirm each other', () => {
      const a = limited(conv(), 3);
      const b = limited(conv({ t0: a.now + 5 }), 2);
      const r = run(merge(a, b));
      expect(r.closed.map((c) => c.closeReason)).toEqual(['server_close', 'server_close']);
      expect(r.engine.servers.get(SERVER)?.inferredMax).toBeNull();
    });

    it('the same count on another server does not confirm', () => {
      const a = limited(conv(), 3);
      const b = limited(conv({ server: '10.0.0.3:80', t0: a.now + 5 }), 3);
      expect(run(merge(a, b)).closed.map((c) => c.closeReason)).toEqual(['server_close', 'server_close']);
    });
  });

  it('server_close: a 500 with Connection: close, decided at once', () => {
    const c = oneExchange(conv()).clientSends(KA_REQ, 0.01).serverSends(CLOSE_RESP(500), 0.002).close('server', 0.001);
    const conn = only(run(c, {}, false));
    expect(conn.closeReason).toBe('server_close');
    expect(conn.closedBy).toBe('server');
  });

  it('max_requests: nginx\'s 100th response is a 404 with Connection: close: the count is a known limit (never evidence for one)', () => {
    const c = conv().handshake(0.001);
    for (let i = 1; i <= 100; i++) c.clientSends(KA_REQ, 0.001).serverSends(i === 100 ? CLOSE_RESP(404) : KA_RESP, 0.001);
    c.close('server', 0.0001);
    const at7 = conv({ server: '10.0.0.2:80', t0: T0 + 5 }).handshake(0.001);
    for (let i = 1; i <= 7; i++) at7.clientSends(KA_REQ, 0.001).serverSends(i === 7 ? CLOSE_RESP(404) : KA_RESP, 0.001);
    at7.close('server', 0.0001);
    // a 404 closing at 7 twice is still no limit: errors close anywhere
    const again = conv({ server: '10.0.0.2:80', t0: T0 + 10 }).handshake(0.001);
    for (let i = 1; i <= 7; i++) again.clientSends(KA_REQ, 0.001).serverSends(i === 7 ? CLOSE_RESP(404) : KA_RESP, 0.001);
    again.close('server', 0.0001);
    const r = run(merge(c, at7, again), {}, false);
    expect(r.closed.map((x) => [x.requests, x.closeReason])).toEqual([[100, 'max_requests'], [7, 'server_close'], [7, 'server_close']]);
  });

  it('client_close: the last request carried Connection: close (the server sends the FIN)', () => {
    const c = oneExchange(conv())
      .clientSends(httpRequest('GET', '/2', { Connection: 'close' }), 0.01)
      .serverSends(CLOSE_RESP(), 0.002)
      .close('server', 0.001);
    const conn = only(run(c));
    expect(conn.closeReason).toBe('client_close');
    expect(conn.closedBy).toBe('server');
    expect(conn.requests).toBe(2);
  });

  it('client_close: the client closes right after the last response (inside the prompt window: 100 ms + 4 handshake RTTs)', () => {
    const conn = only(run(oneExchange(conv()).close('client', 0.02)));
    expect(conn.closeReason).toBe('client_close');
    expect(conn.closedBy).toBe('client');
    expect(conn.idleBeforeClose).toBeCloseTo(0.02, 6);
  });

  it('client_idle: a pool timeout 250 ms after the last response is past the prompt window of a 1 ms path', () => {
    const conn = only(run(oneExchange(conv()).close('client', 0.25)));
    expect(conn.closeReason).toBe('client_idle');
  });

  it('client_close: on a 100 ms path the same 250 ms is a reaction to the response (window 500 ms)', () => {
    const c = conv().handshake(0.1).clientSends(KA_REQ, 0.001).serverSends(KA_RESP, 0.05).close('client', 0.25);
    const conn = only(run(c));
    expect(conn.handshakeRtt).toBeCloseTo(0.1, 6);
    expect(conn.closeReason).toBe('client_close');
  });

  it('client_idle: the client closes an idle keep-alive connection after more than 1 s', () => {
    const conn = only(run(oneExchange(conv()).close('client', 1.5)));
    expect(conn.closeReason).toBe('client_idle');
    expect(conn.closedBy).toBe('client');
    expect(conn.idleBeforeClose).toBeCloseTo(1.5, 6);
  });

  it('not_persistent: an HTTP/1.0 request without keep-alive', () => {
    const c = conv().handshake(0.001)
      .clientSends(httpRequest('GET', '/', {}, '', '1.0'), 0.001)
      .serverSends(CLOSE_RESP(), 0.002)
      .close('server', 0.001);
    const r = run(c);
    const conn = only(r);
    expect(conn.closeReason).toBe('not_persistent');
    expect(r.requests[0]).toMatchObject({ version: '1.0', wantsKeepAlive: false });
  });

  it('not_persistent: an HTTP/1.0 response without keep-alive (close-delimited body ended by the FIN)', () => {
    const c = conv().handshake(0.001)
      .clientSends(KA_REQ, 0.001)
      .serverSends(httpResponse(200, 'body until close', {}, { version: '1.0', lengthless: true }), 0.002)
      .close('server', 0.001);
    const r = run(c);
    const conn = only(r);
    expect(conn.closeReason).toBe('not_persistent');
    expect(conn.closedBy).toBe('server');
    // The FIN completed the response before the close was judged: not aborted.
    expect(conn.responses).toBe(1);
    expect(r.responses[0]).toMatchObject({ status: 200, responseVersion: '1.0', responseKeepAlive: false });
  });

  describe('race: a request on a connection the server was closing, never answered', () => {
    it('server FIN, then the client\'s request crosses it, then the server\'s RST', () => {
      const c = oneExchange(conv()).serverFin(2).clientSends(KA_REQ, 0.0005).rst('server', 0.0005);
      const conn = only(run(c));
      expect(conn.closeReason).toBe('race');
      expect(conn.closedBy).toBe('server');
      expect(conn.closedWith).toBe('fin');
      expect(conn.requests).toBe(2);
      expect(conn.responses).toBe(1);
    });

    it('the request crosses the FIN and is silently dropped (Apache\'s lingering close), the client FINs later', () => {
      const c = oneExchange(conv()).serverFin(2).clientSends(KA_REQ, 1).clientFin(0.7);
      expect(only(run(c)).closeReason).toBe('race');
    });

    it('the request is captured just before the server\'s FIN it crossed (within the race window)', () => {
      const c = oneExchange(conv()).clientSends(KA_REQ, 2).serverFin(0.3).rst('server', 0.001);
      expect(only(run(c)).closeReason).toBe('race');
    });

    it('a request left unanswered for longer than the race window before the server closes is aborted, not a race', () => {
      const c = oneExchange(conv()).clientSends(KA_REQ, 2).close('server', 3);
      expect(only(run(c))).toMatchObject({ closeReason: 'aborted', closedBy: 'server' });
    });

    it('the request on an idle connection is answered by a RST alone', () => {
      const c = oneExchange(conv()).clientSends(KA_REQ, 3).rst('server', 0.0002);
      const conn = only(run(c));
      expect(conn.closeReason).toBe('race');
      expect(conn.closedWith).toBe('rst');
    });
  });

  describe('aborted: closed with a request in flight for another reason', () => {
    it('the client FINs right after its request', () => {
      const c = conv().handshake(0.001).clientSends(KA_REQ, 0.001).clientFin(0.001).serverFin(0.5).ack('client', 0.0001);
      const conn = only(run(c));
      expect(conn.closeReason).toBe('aborted');
      expect(conn.closedBy).toBe('client');
    });

    it('the client resets right after its request', () => {
      const conn = only(run(conv().handshake(0.001).clientSends(KA_REQ, 0.001).rst('client', 0.001)));
      expect(conn.closeReason).toBe('aborted');
      expect(conn.closedWith).toBe('rst');
    });

    it('the client resets in the middle of the response', () => {
      const resp = httpResponse(200, 'x'.repeat(5000));
      const c = conv().handshake(0.001).clientSends(KA_REQ, 0.001).serverSends(resp.slice(0, 2000), 0.5).rst('client', 0.001);
      const conn = only(run(c));
      expect(conn.closeReason).toBe('aborted');
      expect(conn.closedBy).toBe('client');
      expect(conn.responses).toBe(0);
    });

    it('the server FINs in the middle of a response of known length', () => {
      const resp = httpResponse(200, 'x'.repeat(5000));
      const c = conv().handshake(0.001).clientSends(KA_REQ, 0.001).serverSends(resp.slice(0, 2000), 0.5).close('server', 0.001);
      const conn = only(run(c));
      expect(conn.closeReason).toBe('aborted');
      expect(conn.closedBy).toBe('server');
    });
  });

  it('reset: RST on an idle connection, by its sender', () => {
    const byClient = only(run(oneExchange(conv()).rst('client', 0.3)));
    expect(byClient).toMatchObject({ closeReason: 'reset', closedBy: 'client', closedWith: 'rst' });
    expect(byClient.idleBeforeClose).toBeCloseTo(0.3, 6);
    const byServer = only(run(oneExchange(conv()).rst('server', 0.3)));
    expect(byServer).toMatchObject({ closeReason: 'reset', closedBy: 'server', closedWith: 'rst' });
  });

  describe('unused: a handshake and no request', () => {
    it('counted when another connection carried HTTP to that server port', () => {
      const http = oneExchange(conv()).close('server', 2);
      const idle = conv({ t0: T0 + 0.5 }).handshake(0.001).close('client', 0.5);
      const r = run(merge(http, idle));
      expect(r.closed.map((c) => c.closeReason)).toEqual(['unused', 'idle_timeout']);
      const unused = r.closed[0];
      expect(unused).toMatchObject({ requests: 0, closedBy: 'client', server: SERVER });
      expect(unused.openedAt).toBeCloseTo(T0 + 0.5, 6);
    });

    it('closed by the server (its first-request timeout)', () => {
      const http = oneExchange(conv()).close('server', 2);
      const idle = conv({ t0: T0 + 0.5 }).handshake(0.001).close('server', 3);
      const r = run(merge(http, idle));
      expect(r.closed.find((c) => c.requests === 0)).toMatchObject({ closeReason: 'unused', closedBy: 'server' });
    });

    it('not counted on a port that never carried HTTP', () => {
      const r = run(conv({ server: '10.0.0.2:9999' }).handshake(0.001).close('client', 0.5));
      expect(r.events).toEqual([]);
      expect(r.engine.stats().connectionsOpened).toBe(0);
    });

    it('counted on a port named in --ports even with no HTTP seen', () => {
      const conn = only(run(conv({ server: '10.0.0.2:9999' }).handshake(0.001).close('client', 0.5), { ports: [9999] }));
      expect(conn.closeReason).toBe('unused');
    });

    it('a TLS flow to an HTTP port is not an unused HTTP connection', () => {
      const http = oneExchange(conv()).close('server', 2);
      const tls = conv({ t0: T0 + 0.5 }).handshake(0.001).clientSends(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 1, 0, 0, 0]), 0.001).close('client', 0.5);
      const r = run(merge(http, tls));
      expect(r.closed.map((c) => c.closeReason)).toEqual(['idle_timeout']);
      expect(r.engine.stats().nonHttp.tls).toBe(1);
    });
  });

  it('open: still open when the input ends', () => {
    const r = run(oneExchange(conv()).clientSends(KA_REQ, 1).serverSends(KA_RESP, 0.002));
    const conn = only(r);
    expect(conn).toMatchObject({ closeReason: 'open', closedAt: null, closedBy: null, closedWith: null, requests: 2 });
    const s = r.engine.stats();
    expect(s.connectionsOpened).toBe(1);
    expect(s.connectionsClosed).toBe(0);
    expect(s.openConnections).toBe(0);
  });
});

describe('close reasons on more servers (each case as the server was seen to behave)', () => {
  /** Node.js 20 with maxRequestsPerSocket = 3: `max=3` on every response, no countdown, no Keep-Alive on the last. */
  const NODE_KA = httpResponse(200, 'hi', { Connection: 'keep-alive', 'Keep-Alive': 'timeout=2, max=3' });

  it('max_requests: Node.js announces a fixed max=3 and closes on the 3rd request; the first such connection is decided at once', () => {
    const c = conv().handshake(0.001);
    for (let i = 1; i <= 3; i++) c.clientSends(KA_REQ, 0.01).serverSends(i === 3 ? CLOSE_RESP() : NODE_KA, 0.002);
    c.close('server', 0.0001);
    const engine = new Engine();
    const events = subscribe(engine);
    c.feed(engine);
    // Not held back for inference: the announcement is the evidence.
    const conn = only(view(engine, events));
    expect([conn.closeReason, conn.closedBy, conn.requests, conn.advertisedMax]).toEqual(['max_requests', 'server', 3, 3]);
  });

  it('server_close: Node.js answers an HTTP/1.0 keep-alive request with Connection: close and no length (close-delimited); it feeds no inference', () => {
    const closeDelimited = 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello';
    const one = (t0: number) => conv({ t0 }).handshake(0.001)
      .clientSends(httpRequest('GET', '/', KA, '', '1.0'), 0.001)
      .serverSends(closeDelimited, 0.002)
      .close('server', 0.0001);
    const a = one(T0);
    const b = one(a.now + 1);
    const r = run(merge(a, b));
    expect(r.closed.map((c) => [c.closeReason, c.closedBy, c.requests])).toEqual([['server_close', 'server', 1], ['server_close', 'server', 1]]);
    expect(r.engine.servers.get(SERVER)?.inferredMax).toBeNull();
  });

  describe('HAProxy (mode http) resets nginx\'s backend connection 38 us after nginx\'s Connection: close at keepalive_requests', () => {
    function backend(t0: number, n: number): Conversation {
      const c = conv({ t0 }).handshake(0.0001);
      for (let i = 1; i <= n; i++) c.clientSends(KA_REQ, 0.01).serverSends(i === n ? CLOSE_RESP() : KA_RESP, 0.002);
      return c.rst('client', 0.000038);
    }

    it('the reset connections are max_requests (closed by the client side, with RST), and they confirm the inference', () => {
      const a = backend(T0, 3);
      const b = backend(a.now + 1, 3);
      const r = run(merge(a, b));
      expect(r.closed.map((c) => [c.closeReason, c.closedBy, c.closedWith, c.requests])).toEqual([
        ['max_requests', 'client', 'rst', 3],
        ['max_requests', 'client', 'rst', 3],
      ]);
      expect(r.engine.servers.get(SERVER)?.inferredMax).toBe(3);
    });

    it('a neighbour that reached the same limit with an orderly FIN is max_requests too', () => {
      const a = backend(T0, 3);
      const c = conv({ t0: a.now + 1 }).handshake(0.0001);
      for (let i = 1; i <= 3; i++) c.clientSends(KA_REQ, 0.01).serverSends(i === 3 ? CLOSE_RESP() : KA_RESP, 0.002);
      c.close('server', 0.0001);
      expect(run(merge(a, c)).closed.map((x) => x.closeReason)).toEqual(['max_requests', 'max_requests']);
    });
  });

  it('max_requests: a client pipelining 5 requests past nginx\'s limit of 3 (4 and 5 never answered); the served count 3 is what is inferred', () => {
    const pipelined = (t0: number) => {
      const c = conv({ t0 }).handshake(0.001).clientSends(KA_REQ.repeat(5), 0.001);
      c.serverSends(KA_RESP + KA_RESP + CLOSE_RESP(), 0.002);
      return c.close('server', 0.0001);
    };
    const a = pipelined(T0);
    const b = pipelined(a.now + 1);
    const r = run(merge(a, b));
    expect(r.closed.map((c) => [c.closeReason, c.closedBy, c.requests, c.responses])).toEqual([
      ['max_requests', 'server', 5, 3],
      ['max_requests', 'server', 5, 3],
    ]);
    expect(r.engine.servers.get(SERVER)?.inferredMax).toBe(3);
  });

  it('server_close: a server FIN 76 us after a keep-alive response ended persistence; it is never an idle timeout', () => {
    const conn = only(run(oneExchange(conv()).close('server', 0.000076)));
    expect([conn.closeReason, conn.closedBy]).toEqual(['server_close', 'server']);
  });

  it('server_close: the same on a capture cut by snaplen (the response head was not fully captured)', () => {
    const resp = httpResponse(200, 'hello', { Date: 'Tue, 01 Dec 2026 11:00:00 GMT', Server: 'example', Connection: 'close' });
    const c = conv().handshake(0.001).clientSends(KA_REQ, 0.001).serverSends(resp, 0.002).close('server', 0.000076);
    const engine = new Engine();
    const events = subscribe(engine);
    // snaplen 96: Ethernet + IPv4 + TCP headers (54 bytes) and the first 42 bytes of payload.
    for (const p of c.packets()) engine.packet(1, p.data, 0, Math.min(96, p.data.length), p.data.length, p.ts);
    engine.finish();
    const conn = only(view(engine, events));
    expect([conn.closeReason, conn.closedBy, conn.requests]).toEqual(['server_close', 'server', 1]);
  });

  it('max_requests, not aborted: on -i any nginx\'s FIN is captured 20 us before the last segment of its Connection: close response', () => {
    const c = conv().handshake(0.001);
    c.clientSends(KA_REQ, 0.01).serverSends(KA_RESP, 0.002);
    c.clientSends(KA_REQ, 0.01).serverSends(CLOSE_RESP(), 0.002, { segments: [20] });
    c.close('server', 0.00001);
    const p = c.packets();
    // handshake 3, request, response, request, two response segments, FIN, FIN, ACK
    const [lastData, fin] = [p[7], p[8]];
    p[7] = { ...fin, ts: lastData.ts };
    p[8] = { ...lastData, ts: lastData.ts + 0.00002 };
    const r = run(p);
    expect(r.closed.map((x) => [x.closeReason, x.closedBy, x.requests, x.responses])).toEqual([['server_close', 'server', 2, 2]]);
    // The same count on a second connection confirms nginx's limit: both max_requests.
    const again = conv({ t0: c.now + 1 }).handshake(0.001);
    again.clientSends(KA_REQ, 0.01).serverSends(KA_RESP, 0.002).clientSends(KA_REQ, 0.01).serverSends(CLOSE_RESP(), 0.002).close('server', 0.0001);
    expect(run(merge(p, again)).closed.map((x) => x.closeReason)).toEqual(['max_requests', 'max_requests']);
  });

  it('max_requests: Node.js answers the 4th and 5th pipelined requests with 503 after closing persistence on the 3rd', () => {
    const c = conv().handshake(0.001).clientSends(KA_REQ.repeat(5), 0.001);
    c.serverSends(NODE_KA + NODE_KA + CLOSE_RESP() + CLOSE_RESP(503) + CLOSE_RESP(503), 0.002).close('server', 3);
    const conn = only(run(c));
    expect([conn.closeReason, conn.closedBy, conn.requests, conn.responses]).toEqual(['max_requests', 'server', 5, 5]);
  });

  it('server_close, not aborted: nginx answers a bad request 400 with Connection: close; the request pipelined after it is never answered', () => {
    const bad = 'GET / HTTP/1.1\r\nHost : example.test\r\n\r\n';
    const c = conv().handshake(0.001).clientSends(bad + KA_REQ, 0.001).serverSends(CLOSE_RESP(400), 0.001).close('server', 0.0001);
    const r = run(c);
    expect(r.closed.map((x) => [x.closeReason, x.closedBy, x.requests, x.responses])).toEqual([['server_close', 'server', 2, 1]]);
    expect(r.engine.servers.get(SERVER)?.inferredMax ?? null).toBeNull();
  });

  it('idle_timeout: Node.js closes an idle connection about 1 s after its announced timeout=2 (3 s after the response)', () => {
    const conn = only(run(oneExchange(conv(), NODE_KA).close('server', 3.0)));
    expect([conn.closeReason, conn.advertisedTimeout]).toEqual(['idle_timeout', 2]);
    expect(conn.idleBeforeClose).toBeCloseTo(3.0, 6);
  });
});

describe('handshakes and reuse', () => {
  it('handshake RTT is the client SYN to the client ACK of the SYN-ACK', () => {
    const c = conv().handshake(0.025).clientSends(KA_REQ, 0.001).serverSends(KA_RESP, 0.002).close('client', 0.1);
    const conn = only(run(c));
    // The SYN-ACK is at half the RTT: SYN -> SYN-ACK would give 0.0125.
    expect(conn.handshakeRtt).toBeCloseTo(0.025, 6);
    expect(conn.openedAt).toBe(T0);
  });

  it('every request after the first is reused and saved the connection\'s own RTT', () => {
    const c = conv().handshake(0.02);
    for (let i = 0; i < 3; i++) c.clientSends(KA_REQ, 0.05).serverSends(KA_RESP, 0.002);
    const r = run(c.close('server', 2));
    expect(r.requests.map((q) => [q.index, q.reused, q.savedFrom])).toEqual([
      [1, false, 'unknown'], [2, true, 'handshake'], [3, true, 'handshake'],
    ]);
    expect(r.requests.map((q) => q.savedSeconds)).toEqual([0, expect.closeTo(0.02, 6), expect.closeTo(0.02, 6)]);
    const conn = only(r);
    expect(conn.reusedRequests).toBe(2);
    expect(conn.handshakeTimeSaved).toBeCloseTo(0.04, 6);
  });

  it('a connection seen mid-stream saves the server\'s median RTT and says so', () => {
    const a = conv().handshake(0.01).clientSends(KA_REQ, 0.001).serverSends(KA_RESP, 0.001).close('client', 0.1);
    const b = conv({ t0: T0 + 1 }).handshake(0.03).clientSends(KA_REQ, 0.001).serverSends(KA_RESP, 0.001).close('client', 0.1);
    const mid = conv({ t0: T0 + 2 });
    for (let i = 0; i < 3; i++) mid.clientSends(KA_REQ, 0.05).serverSends(KA_RESP, 0.002);
    const r = run(merge(a, b, mid.close('server', 2)));
    const m = r.closed.find((c) => c.midstream)!;
    expect(m.handshakeRtt).toBeNull();
    expect(m.requests).toBe(3);
    // The first request seen may have been the first: not reused.
    expect(m.reusedRequests).toBe(2);
    const reqs = r.events.filter((e) => e.kind === 'request' && e.id === m.id).map((e) => e.req!);
    expect(reqs.map((q) => [q.reused, q.savedFrom])).toEqual([[false, 'unknown'], [true, 'server_median'], [true, 'server_median']]);
    expect(reqs[1].savedSeconds).toBeCloseTo(0.02, 6); // median of 0.01 and 0.03
    expect(m.handshakeTimeSaved).toBeCloseTo(0.04, 6);
  });

  it('mid-stream to a server whose RTT is unknown: reused, nothing saved, savedFrom unknown', () => {
    const mid = conv();
    mid.clientSends(KA_REQ, 0).serverSends(KA_RESP, 0.002).clientSends(KA_REQ, 0.05).serverSends(KA_RESP, 0.002);
    const r = run(mid);
    expect(r.requests.map((q) => [q.reused, q.savedFrom, q.savedSeconds])).toEqual([[false, 'unknown', 0], [true, 'unknown', 0]]);
  });
});

describe('HTTP framing on the wire', () => {
  it('pipelining: three requests in one segment, responses paired in order', () => {
    const reqs = ['/a', '/b', '/c'].map((p) => httpRequest('GET', p, KA)).join('');
    const resps = httpResponse(200, 'a') + httpResponse(404, 'bb') + httpResponse(201, 'ccc');
    const c = conv().handshake(0.001).clientSends(reqs, 0.001).serverSends(resps, 0.002).close('server', 2);
    const r = run(c);
    expect(r.requests.map((q) => [q.index, q.outstandingAtStart])).toEqual([[1, 0], [2, 1], [3, 2]]);
    expect(r.responses.map((q) => [q.index, q.status])).toEqual([[1, 200], [2, 404], [3, 201]]);
    expect(only(r)).toMatchObject({ requests: 3, responses: 3, closeReason: 'idle_timeout' });
  });

  it('a HEAD response has no body even with Content-Length: the next response is read', () => {
    const reqs = httpRequest('HEAD', '/', KA) + httpRequest('GET', '/', KA);
    const resps = httpResponse(200, '', { 'Content-Length': '1054' }) + httpResponse(203, 'x'.repeat(10));
    const r = run(conv().handshake(0.001).clientSends(reqs, 0.001).serverSends(resps, 0.002).close('server', 2));
    expect(r.responses.map((q) => [q.method, q.status])).toEqual([['HEAD', 200], ['GET', 203]]);
    expect(only(r).closeReason).toBe('idle_timeout');
  });

  it('100 Continue is interim: the final response answers the request, the next exchange still pairs', () => {
    const c = conv().handshake(0.001)
      .clientSends(httpRequest('POST', '/up', { ...KA, Expect: '100-continue', 'Content-Length': '5' }), 0.001)
      .serverSends('HTTP/1.1 100 Continue\r\n\r\n', 0.001)
      .clientSends('hello', 0.001)
      .serverSends(httpResponse(201, 'created'), 0.002)
      .clientSends(KA_REQ, 0.01)
      .serverSends(httpResponse(200, 'ok'), 0.002)
      .close('server', 2);
    const r = run(c);
    expect(r.responses.map((q) => [q.index, q.method, q.status])).toEqual([[1, 'POST', 201], [2, 'GET', 200]]);
    expect(r.engine.stats().anomalies).toEqual({});
  });

  it('a chunked response split across segments completes with its last segment', () => {
    const resp = httpResponse(200, '', { 'Transfer-Encoding': 'chunked' }) + chunked('hello', '0123456789abcdef', 'z');
    const c = conv().handshake(0.001).clientSends(KA_REQ, 0.001);
    // Cuts inside the head, inside a chunk-size line, inside chunk data and inside the last-chunk.
    c.serverSends(resp, 0.01, { segments: [20, 30, 3, 4, 9, 11, 6, 2], spacing: 0.01 });
    const end = c.now;
    c.clientSends(KA_REQ, 0.05).serverSends(KA_RESP, 0.002).close('server', 2);
    const r = run(c);
    expect(r.responses.map((q) => q.status)).toEqual([200, 200]);
    expect(r.responses[0].responseEnd).toBe(end);
    expect(r.engine.stats().anomalies).toEqual({});
  });

  it('mid-stream (no SYN) starting with the client: roles from HTTP, midstream, first request not reused', () => {
    const c = conv();
    c.clientSends(KA_REQ, 0).serverSends(KA_RESP, 0.002).clientSends(KA_REQ, 0.05).serverSends(KA_RESP, 0.002).close('server', 2);
    const conn = only(run(c));
    expect(conn).toMatchObject({ client: `10.0.0.1:${c.client.port}`, server: SERVER, midstream: true, requests: 2, reusedRequests: 1, handshakeRtt: null });
    expect(conn.closeReason).toBe('idle_timeout');
  });

  it('mid-stream starting with the server\'s response: the roles still come out right', () => {
    const c = conv();
    // The first packet captured answers a request sent before the capture started.
    c.serverSends(KA_RESP, 0).clientSends(KA_REQ, 0.05).serverSends(KA_RESP, 0.002).close('server', 2);
    const r = run(c);
    const conn = only(r);
    expect(conn).toMatchObject({ client: `10.0.0.1:${c.client.port}`, server: SERVER, midstream: true, requests: 1, reusedRequests: 0, responses: 1 });
    expect(conn.closeReason).toBe('idle_timeout');
  });

  it('port reuse: a new SYN on the 4-tuple of a closed connection is a new connection', () => {
    const client = `10.0.0.1:${nextPort++}`;
    const first = oneExchange(new Conversation({ client, server: SERVER, t0: T0 })).close('client', 0.01);
    const second = new Conversation({ client, server: SERVER, t0: first.now + 1, clientIsn: 777_777, serverIsn: 888_888 })
      .handshake(0.03).clientSends(KA_REQ, 0.001).serverSends(KA_RESP, 0.002).clientSends(KA_REQ, 0.01).serverSends(KA_RESP, 0.002).close('server', 2);
    const r = run(merge(first, second));
    expect(r.closed).toHaveLength(2);
    expect(new Set(r.closed.map((c) => c.id)).size).toBe(2);
    expect(r.closed.map((c) => [c.client, c.requests, c.closeReason])).toEqual([[client, 1, 'client_close'], [client, 2, 'idle_timeout']]);
    expect(r.closed[1].handshakeRtt).toBeCloseTo(0.03, 6);
    expect(r.closed[1].openedAt).toBeCloseTo(first.now + 1, 6);
  });

  it('TLS flows are counted apart, never as connections; an h2c prior-knowledge flow is an HTTP/2 connection', () => {
    const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x30, 0x01, 0x00, 0x00, 0x2c, 0x03, 0x03]), Buffer.alloc(42, 7)]);
    const tls = conv({ server: '10.0.0.2:443' }).handshake(0.001).clientSends(hello, 0.001)
      .serverSends(Buffer.from([0x16, 0x03, 0x03, 0x00, 0x02, 0x02, 0x00]), 0.002).close('client', 0.1);
    const preface = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    const h2 = conv({ server: '10.0.0.2:8080', t0: T0 + 1 }).handshake(0.001).clientSends(Buffer.concat([Buffer.from(preface), settings]), 0.001)
      .serverSends(settings, 0.001).close('client', 0.1);
    const r = run(merge(tls, h2));
    const s = r.engine.stats();
    expect(s.nonHttp).toEqual({ tls: 1, http2: 0, other: 0 });
    // The preface and SETTINGS carry no request: an unused HTTP/2 connection.
    expect(r.closed.map((c) => [c.server, c.protocol, c.requests, c.closeReason])).toEqual([['10.0.0.2:8080', 'h2c', 0, 'unused']]);
  });

  it('CONNECT answered 2xx is a tunnel: nothing after it is parsed', () => {
    const c = conv({ server: '10.0.0.2:3128' }).handshake(0.001)
      .clientSends(httpRequest('CONNECT', 'example.test:443', { Host: 'example.test:443' }), 0.001)
      .serverSends('HTTP/1.1 200 Connection established\r\n\r\n', 0.01)
      .clientSends(KA_REQ, 0.01).serverSends(KA_RESP, 0.01)
      .clientSends(Buffer.from([0x16, 0x03, 0x01, 0, 1, 1]), 0.01)
      .close('client', 0.5);
    const r = run(c);
    const conn = only(r);
    expect(conn).toMatchObject({ tunneled: true, requests: 1, responses: 1 });
    expect(r.requests.map((q) => q.method)).toEqual(['CONNECT']);
    expect(r.engine.stats().anomalies).toEqual({});
  });

  it('101 Switching Protocols is a tunnel: nothing after it is parsed', () => {
    const c = conv().handshake(0.001)
      .clientSends(httpRequest('GET', '/chat', { Upgrade: 'websocket', Connection: 'Upgrade' }), 0.001)
      .serverSends('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 0.01)
      .clientSends(KA_REQ, 0.01).serverSends(KA_RESP, 0.01)
      .close('client', 0.5);
    const r = run(c);
    expect(only(r)).toMatchObject({ tunneled: true, requests: 1, responses: 1 });
    expect(r.responses.map((q) => q.status)).toEqual([101]);
  });

  it('a capture gap inside a Content-Length body keeps the framing: later requests still count', () => {
    const big = httpResponse(200, 'y'.repeat(3000));
    const c = conv().handshake(0.001).clientSends(KA_REQ, 0.001);
    const head = big.length - 3000;
    c.serverSends(big, 0.002, { segments: [head + 1000, 1000, 1000], lose: [1] }).ack('client', 0.001);
    c.clientSends(KA_REQ, 0.1).serverSends(KA_RESP, 0.002).clientSends(KA_REQ, 0.1).serverSends(KA_RESP, 0.002).close('server', 2);
    const r = run(c);
    const conn = only(r);
    expect(conn).toMatchObject({ requests: 3, responses: 3, closeReason: 'idle_timeout' });
    expect(r.responses.map((q) => [q.index, q.status])).toEqual([[1, 200], [2, 200], [3, 200]]);
    const s = r.engine.stats();
    expect(s.gaps).toBe(1);
    expect(s.gapBytes).toBe(1000);
    expect(s.anomalies.http_resync).toBeUndefined();
    expect(s.anomalies.http_response_lost).toBeUndefined();
  });
});

/** A mix of every kind of connection above, interleaved in time. */
function mixedCapture(): ConvPacket[] {
  const t = (dt: number) => ({ t0: T0 + dt });
  const convs = [
    oneExchange(conv(t(0))).close('server', 2),
    oneExchange(conv(t(0.1))).clientSends(KA_REQ, 0.01).serverSends(CLOSE_RESP(500), 0.001).close('server', 0.001),
    oneExchange(conv(t(0.2))).close('client', 1.5),
    oneExchange(conv(t(0.3))).serverFin(2).clientSends(KA_REQ, 0.0005).rst('server', 0.0005),
    conv(t(0.4)).handshake(0.001).clientSends(KA_REQ, 0.001).rst('client', 0.001),
    conv(t(0.5)).handshake(0.002).close('client', 0.5),
    conv(t(0.6)).handshake(0.001).clientSends(['/1', '/2', '/3'].map((p) => httpRequest('GET', p, KA)).join(''), 0.001)
      .serverSends(httpResponse(200, 'a') + httpResponse(200, 'b') + httpResponse(200, 'c'), 0.002).close('server', 2),
    conv(t(0.7)).clientSends(KA_REQ, 0).serverSends(KA_RESP, 0.001).clientSends(KA_REQ, 0.01).serverSends(KA_RESP, 0.001),
    oneExchange(conv({ ...t(0.8), server: '[2001:db8::2]:80', client: '[2001:db8::1]:41000' })).rst('client', 0.3),
    conv({ ...t(0.9), server: '10.0.0.2:443' }).handshake(0.001).clientSends(Buffer.from([0x16, 3, 1, 0, 1, 1]), 0.001).close('client', 0.1),
    oneExchange(conv({ ...t(1.0), server: '10.0.0.5:8080' }), httpResponse(200, 'a', { 'Keep-Alive': 'timeout=5, max=1' }))
      .clientSends(KA_REQ, 0.01).serverSends(CLOSE_RESP(), 0.001).close('server', 0.001),
  ];
  return merge(...convs);
}

describe('events and determinism', () => {
  it('per connection: opened, then its requests and responses, then closed exactly once', () => {
    const r = run(mixedCapture());
    const ids = [...new Set(r.events.map((e) => e.id))];
    expect(ids.length).toBe(10); // every connection but the TLS one
    for (const id of ids) {
      const evs = r.events.filter((e) => e.id === id);
      expect(evs[0].kind, `connection ${id}`).toBe('opened');
      expect(evs.at(-1)!.kind, `connection ${id}`).toBe('closed');
      expect(evs.filter((e) => e.kind === 'opened' || e.kind === 'closed')).toHaveLength(2);
      // Requests in index order; each response after its request, responses in index order.
      const reqIdx = evs.filter((e) => e.kind === 'request').map((e) => e.req!.index);
      expect(reqIdx).toEqual(reqIdx.map((_, i) => i + 1));
      const seen = new Set<number>();
      let lastResp = 0;
      for (const e of evs) {
        if (e.kind === 'request') seen.add(e.req!.index);
        if (e.kind === 'response') {
          expect(seen.has(e.req!.index)).toBe(true);
          expect(e.req!.index).toBeGreaterThan(lastResp);
          lastResp = e.req!.index;
        }
      }
      const closed = evs.at(-1)!.conn;
      expect(closed.requests).toBe(reqIdx.length);
      expect(closed.responses).toBe(lastResp === 0 ? 0 : evs.filter((e) => e.kind === 'response').length);
    }
    const s = r.engine.stats();
    expect(s.connectionsOpened).toBe(10);
    expect(s.connectionsClosed).toBe(9); // the mid-stream one is still open
    expect(s.openConnections).toBe(0);
    expect(r.closed.map((c) => c.closeReason).sort()).toEqual(
      ['aborted', 'client_idle', 'idle_timeout', 'idle_timeout', 'max_requests', 'open', 'race', 'reset', 'server_close', 'unused'],
    );
  });

  it('replaying the same packets gives identical facts', () => {
    const packets = mixedCapture();
    const a = run(packets);
    const b = run(packets);
    expect(b.events).toEqual(a.events);
    expect(b.engine.stats()).toEqual(a.engine.stats());
    expect(a.events.length).toBeGreaterThan(30);
  });

  it('finish() is idempotent: nothing is reported twice', () => {
    const engine = new Engine();
    const events = subscribe(engine);
    feed(engine, mixedCapture());
    engine.finish();
    const n = events.length;
    engine.finish();
    expect(events.length).toBe(n);
  });

  it('--ports: connections to other server ports are ignored', () => {
    const on80 = oneExchange(conv()).close('server', 2);
    const on8080 = oneExchange(conv({ server: '10.0.0.2:8080', t0: T0 + 0.1 })).close('server', 2);
    const mid8080 = conv({ server: '10.0.0.2:8080', t0: T0 + 0.2 }).clientSends(KA_REQ, 0).serverSends(KA_RESP, 0.001);
    const all = run(merge(on80, on8080, mid8080));
    expect(all.closed.map((c) => c.server).sort()).toEqual([SERVER, '10.0.0.2:8080', '10.0.0.2:8080']);
    const only8080 = run(merge(on80, on8080, mid8080), { ports: [8080] });
    expect(only8080.closed.map((c) => c.server)).toEqual(['10.0.0.2:8080', '10.0.0.2:8080']);
    expect(only8080.engine.stats().connectionsOpened).toBe(2);
    expect(only8080.engine.servers.has(SERVER)).toBe(false);
  });

  it('--ports names server ports: a mid-stream flow whose client port is listed is still ignored', () => {
    // Let in on its client port (roles unknown), then HTTP shows the server is on port 80.
    const c = new Conversation({ client: '10.0.0.1:8080', server: SERVER, t0: T0 });
    c.clientSends(KA_REQ, 0).serverSends(KA_RESP, 0.001).clientSends(KA_REQ, 0.01).serverSends(KA_RESP, 0.001).close('server', 2);
    const r = run(c, { ports: [8080] });
    expect(r.events).toEqual([]);
    expect(r.engine.stats().connectionsOpened).toBe(0);
    expect(r.engine.stats().nonHttp).toEqual({ tls: 0, http2: 0, other: 0 });
    // The same flow with its server port listed is analysed.
    expect(only(run(c, { ports: [80] }))).toMatchObject({ server: SERVER, requests: 2, midstream: true });
  });
});
