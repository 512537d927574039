/**
 * The HTTP/2 session as a specification: synthetic h2c conversations (frames from
 * test/helpers/h2.ts over TCP from test/helpers/conversation.ts) through the whole engine, each
 * case a server or client behaviour seen on the wire (test/fixtures/h2c/README.md has the real
 * captures of each). Decided as in docs/keepalive-semantics.md, "HTTP/2".
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/conn/engine.js';
import type { ConnectionRecord, RequestRecord } from '../../src/conn/records.js';
import { MAX_OPEN_STREAMS } from '../../src/h2/session.js';
import { Conversation, type ConvPacket, feed, httpRequest, merge } from '../helpers/conversation.js';
import { ERR, PREFACE, data, goaway, headers, hpackIndexed, ping, rstStream, settings, settingsAck } from '../helpers/h2.js';

const T0 = 1_700_000_000;
const SERVER = '10.0.0.2:8080';
let nextPort = 50000;
const conv = (t0 = T0) => new Conversation({ client: `10.0.0.1:${nextPort++}`, server: SERVER, t0 });

/** `:method GET :scheme http :path /` */
const GET = hpackIndexed(2, 6, 4);
/** `:status 200` */
const OK = hpackIndexed(8);
/** `:status 503` as a literal without indexing (name: static index 8). */
const UNAVAILABLE = Buffer.from([0x08, 0x03, ...Buffer.from('503')]);

/** Preface and SETTINGS both ways, as every h2c client and server start. */
function open(c: Conversation): Conversation {
  return c.handshake(0.0001)
    .clientSends(Buffer.concat([PREFACE, settings()]), 0.0001)
    .serverSends(Buffer.concat([settings([[3, 100]]), settingsAck()]), 0.0001)
    .clientSends(settingsAck(), 0.0001);
}

/** One stream: request HEADERS (END_STREAM), response HEADERS + DATA (END_STREAM). */
function exchange(c: Conversation, id: number, gap = 0.01): Conversation {
  return c.clientSends(headers(id, GET, { endStream: true }), gap)
    .serverSends(Buffer.concat([headers(id, OK), data(id, 'hello', { endStream: true })]), 0.001);
}

interface Run {
  engine: Engine;
  closed: ConnectionRecord[];
  requests: RequestRecord[];
  responses: RequestRecord[];
}

function run(packets: ConvPacket[] | Conversation): Run {
  const engine = new Engine();
  const r: Run = { engine, closed: [], requests: [], responses: [] };
  engine.subscribe({
    closed: (c) => r.closed.push({ ...c }),
    request: (_c, q) => r.requests.push({ ...q }),
    response: (_c, q) => r.responses.push({ ...q }),
  });
  feed(engine, packets instanceof Conversation ? packets.packets() : packets);
  engine.finish();
  return r;
}

const summary = (c: ConnectionRecord) => [c.protocol, c.requests, c.responses, c.closeReason, c.closedBy];

describe('HTTP/2 streams are requests', () => {
  it('each client stream is a request of its connection, paired with the server\'s :status; reuse counts from the second', () => {
    const c = open(conv());
    for (const id of [1, 3, 5]) exchange(c, id);
    const r = run(c.close('client', 0.001));
    expect(r.closed.map(summary)).toEqual([['h2c', 3, 3, 'client_close', 'client']]);
    expect(r.requests.map((q) => [q.index, q.method, q.reused])).toEqual([[1, 'GET', false], [2, 'GET', true], [3, 'GET', true]]);
    expect(r.responses.map((q) => q.status)).toEqual([200, 200, 200]);
    expect(r.closed[0].h2).toMatchObject({ peakConcurrentStreams: 1, streamsRefused: 0, serverMaxConcurrentStreams: 100 });
  });

  it('multiplexed streams: the peak concurrency is counted', () => {
    const c = open(conv());
    c.clientSends(Buffer.concat([1, 3, 5, 7].map((id) => headers(id, GET, { endStream: true }))), 0.01);
    c.serverSends(Buffer.concat([1, 3, 5, 7].flatMap((id) => [headers(id, OK), data(id, 'x', { endStream: true })])), 0.001);
    const r = run(c.close('client', 0.001));
    expect(r.closed.map(summary)).toEqual([['h2c', 4, 4, 'client_close', 'client']]);
    expect(r.closed[0].h2?.peakConcurrentStreams).toBe(4);
  });

  it('a response is complete when its DATA reaches content-length, before a later empty END_STREAM (Node.js), so a client closing at once is client_close, not aborted', () => {
    const withLength = Buffer.concat([OK, Buffer.from([0x0f, 0x0d, 0x01, 0x35])]); // :status 200, content-length: 5
    const c = open(conv()).clientSends(headers(1, GET, { endStream: true }), 0.01)
      .serverSends(Buffer.concat([headers(1, withLength), data(1, 'hello')]), 0.001)
      .clientFin(0.0003);
    const r = run(c);
    expect(r.closed.map(summary)).toEqual([['h2c', 1, 1, 'client_close', 'client']]);
  });

  it('PRIORITY-only streams (nghttp opens 3-11 so) and PINGs are not requests', () => {
    const c = open(conv()).clientSends(Buffer.concat([3, 5, 7].map((id) => Buffer.from([0, 0, 5, 2, 0, 0, 0, 0, id, 0, 0, 0, 0, 15]))), 0.001);
    c.clientSends(ping(1, 2), 0.001).serverSends(ping(1, 2, { ack: true }), 0.0001);
    exchange(c, 13);
    const r = run(c.close('client', 0.001));
    expect(r.closed.map(summary)).toEqual([['h2c', 1, 1, 'client_close', 'client']]);
  });
});

describe('why an HTTP/2 connection closed', () => {
  it('idle_timeout: the server\'s GOAWAY NO_ERROR on an idle connection, then its FIN (nginx at keepalive_timeout)', () => {
    const c = exchange(open(conv()), 1);
    c.serverSends(goaway(1, ERR.NO_ERROR), 1.0).close('server', 0);
    const r = run(c);
    expect(r.closed.map(summary)).toEqual([['h2c', 1, 1, 'idle_timeout', 'server']]);
    expect(r.closed[0].h2?.goaways).toEqual([{ side: 'server', time: expect.any(Number), lastStreamId: 1, error: 'NO_ERROR', debug: '' }]);
  });

  it('idle_timeout: PINGs every 400 ms are not activity (nginx and Node.js close on time)', () => {
    const c = exchange(open(conv()), 1);
    for (let i = 0; i < 2; i++) c.clientSends(ping(i, i), 0.4).serverSends(ping(i, i, { ack: true }), 0.0001);
    c.serverSends(goaway(1, ERR.NO_ERROR), 0.2).close('server', 0);
    const r = run(c);
    expect(r.closed[0].closeReason).toBe('idle_timeout');
    expect(r.closed[0].idleBeforeClose).toBeGreaterThan(0.9);
  });

  it('idle_timeout even when the client\'s FIN comes first: caddy sends GOAWAY at the timeout and FIN a second later', () => {
    const c = exchange(open(conv()), 1);
    c.serverSends(goaway(1, ERR.NO_ERROR), 1.0).close('client', 0.0007);
    const r = run(c);
    expect(r.closed.map(summary)).toEqual([['h2c', 1, 1, 'idle_timeout', 'client']]);
  });

  it('max_requests: nginx sends GOAWAY with last-stream-id N on the Nth stream\'s HEADERS, before its response; the same count on a second connection confirms', () => {
    const limited = (t0: number) => {
      const c = open(conv(t0));
      exchange(c, 1);
      exchange(c, 3);
      c.clientSends(headers(5, GET, { endStream: true }), 0.01).serverSends(goaway(5, ERR.NO_ERROR), 0.0001);
      c.serverSends(Buffer.concat([headers(5, OK), data(5, 'x', { endStream: true })]), 0.0005);
      return c.close('server', 0.0001);
    };
    const a = limited(T0);
    const r = run(merge(a, limited(a.now + 1)));
    expect(r.closed.map(summary)).toEqual([['h2c', 3, 3, 'max_requests', 'server'], ['h2c', 3, 3, 'max_requests', 'server']]);
    expect(r.engine.servers.get(SERVER)?.inferredMax).toBe(3);
  });

  it('server_close, at once: a GOAWAY 1 ms after the last stream completed, none open, is the server ending the session, not a limit waiting for inference', () => {
    const c = exchange(open(conv()), 1).serverSends(goaway(1, ERR.NO_ERROR), 0.001).close('server', 0.0001);
    const engine = new Engine();
    const closed: ConnectionRecord[] = [];
    engine.subscribe({ closed: (x) => closed.push({ ...x }) });
    feed(engine, c.packets());
    // Decided without waiting for the end of the input (a limit candidate would wait).
    expect(closed.map(summary)).toEqual([['h2c', 1, 1, 'server_close', 'server']]);
  });

  it('max_requests with a 4th stream sent in the same write: above last-stream-id it was not processed (counted refused), the reason stays the limit', () => {
    const limited = (t0: number) => {
      const c = open(conv(t0));
      c.clientSends(Buffer.concat([1, 3, 5, 7].map((id) => headers(id, GET, { endStream: true }))), 0.01);
      c.serverSends(goaway(5, ERR.NO_ERROR), 0.0001);
      c.serverSends(Buffer.concat([1, 3, 5].flatMap((id) => [headers(id, OK), data(id, 'x', { endStream: true })])), 0.0005);
      return c.close('server', 0.0001);
    };
    const a = limited(T0);
    const r = run(merge(a, limited(a.now + 1)));
    expect(r.closed.map(summary)).toEqual([['h2c', 4, 3, 'max_requests', 'server'], ['h2c', 4, 3, 'max_requests', 'server']]);
    expect(r.closed[0].h2?.streamsRefused).toBe(1);
  });

  it('max_age: nginx keepalive_time ends connections at a constant age with different stream counts', () => {
    const aged = (t0: number, every: number, n: number) => {
      const c = open(conv(t0));
      for (let k = 0; k < n - 1; k++) exchange(c, 2 * k + 1, every);
      const last = 2 * (n - 1) + 1;
      c.clientSends(headers(last, GET, { endStream: true }), every).serverSends(goaway(last, ERR.NO_ERROR), 0.0001);
      c.serverSends(Buffer.concat([headers(last, OK), data(last, 'x', { endStream: true })]), 0.0005);
      return c.close('server', 0.0001);
    };
    const a = aged(T0, 0.3, 5);
    const b = aged(a.now + 1, 0.45, 4);
    const r = run(merge(a, b));
    expect(r.closed.map(summary)).toEqual([['h2c', 5, 5, 'max_age', 'server'], ['h2c', 4, 4, 'max_age', 'server']]);
    expect(r.engine.servers.get(SERVER)?.inferredMaxAge).not.toBeNull();
  });

  it('race: a stream the client sent as the server\'s idle GOAWAY went out, above its last-stream-id, never answered', () => {
    const c = exchange(open(conv()), 1);
    c.serverSends(goaway(1, ERR.NO_ERROR), 1.0).clientSends(headers(3, GET, { endStream: true }), 0.00005);
    const r = run(c.close('server', 0.0001));
    expect(r.closed.map(summary)).toEqual([['h2c', 2, 1, 'race', 'server']]);
  });

  it('server_close: a GOAWAY with an error code (ENHANCE_YOUR_CALM, gRPC answering too many pings)', () => {
    const c = exchange(open(conv()), 1);
    const r = run(c.serverSends(goaway(1, ERR.ENHANCE_YOUR_CALM, 'too_many_pings\x01'), 0.01).close('server', 0));
    expect(r.closed[0].closeReason).toBe('server_close');
    // The debug data as printable ASCII (gRPC and Go put the reason there).
    expect(r.closed[0].h2?.goaways).toEqual([{ side: 'server', time: expect.any(Number), lastStreamId: 1, error: 'ENHANCE_YOUR_CALM', debug: 'too_many_pings?' }]);
  });

  it('gRPC\'s graceful shutdown (GOAWAY 2^31-1, a PING, the real GOAWAY) is one close', () => {
    const c = exchange(open(conv()), 1);
    c.serverSends(goaway(0x7fffffff, ERR.NO_ERROR), 1.0).serverSends(ping(7, 7), 0).clientSends(ping(7, 7, { ack: true }), 0.0001);
    c.serverSends(goaway(1, ERR.NO_ERROR), 0.0001).close('server', 0);
    const r = run(c);
    expect(r.closed.map(summary)).toEqual([['h2c', 1, 1, 'idle_timeout', 'server']]);
    expect(r.closed[0].h2?.goaways.map((g) => [g.side, g.lastStreamId])).toEqual([['server', 1]]);
  });

  it('client_idle: the client\'s GOAWAY 300 ms after its last stream (a pool timeout); client_close right after it (h2load, nghttp)', () => {
    const late = exchange(open(conv()), 1).clientSends(goaway(0, ERR.NO_ERROR), 0.3).close('client', 0);
    const prompt = exchange(open(conv(T0 + 5)), 1).clientSends(goaway(0, ERR.NO_ERROR), 0.0005).close('client', 0);
    expect(run(merge(late, prompt)).closed.map((x) => x.closeReason)).toEqual(['client_idle', 'client_close']);
  });

  it('a server answering the client\'s GOAWAY with its own (Node.js, twice) does not make it a server close', () => {
    const c = exchange(open(conv()), 1).clientSends(goaway(0, ERR.NO_ERROR), 0.0005)
      .serverSends(Buffer.concat([goaway(1, ERR.NO_ERROR), goaway(1, ERR.NO_ERROR)]), 0.0001).close('server', 0.0001);
    const r = run(c);
    expect(r.closed.map(summary)).toEqual([['h2c', 1, 1, 'client_close', 'server']]);
  });

  it('the same when the reply carries the same timestamp (the proxy tap\'s clock): the GOAWAY that arrived first decides', () => {
    const c = exchange(open(conv()), 1).clientSends(goaway(0, ERR.NO_ERROR), 0.0005)
      .serverSends(goaway(1, ERR.NO_ERROR), 0).close('client', 0.0001);
    const r = run(c);
    expect(r.closed.map(summary)).toEqual([['h2c', 1, 1, 'client_close', 'client']]);
  });

  it('aborted: the client closes while its stream waits for a response; reset: a TCP RST on an idle connection', () => {
    const inflight = open(conv()).clientSends(headers(1, GET, { endStream: true }), 0.01).close('client', 0.3);
    const reset = exchange(open(conv(T0 + 5)), 1).rst('client', 0.3);
    expect(run(merge(inflight, reset)).closed.map((x) => x.closeReason)).toEqual(['aborted', 'reset']);
  });

  it('unused: preface and SETTINGS only', () => {
    const r = run(open(conv()).close('client', 0.3));
    expect(r.closed.map(summary)).toEqual([['h2c', 0, 0, 'unused', 'client']]);
  });

  it('a stream refused with RST_STREAM REFUSED_STREAM is counted and is not a response', () => {
    const c = open(conv());
    c.clientSends(Buffer.concat([1, 3].map((id) => headers(id, GET, { endStream: true }))), 0.01);
    c.serverSends(Buffer.concat([rstStream(3, ERR.REFUSED_STREAM), headers(1, UNAVAILABLE), data(1, 'busy', { endStream: true })]), 0.001);
    const r = run(c.close('client', 0.001));
    expect(r.closed.map(summary)).toEqual([['h2c', 2, 1, 'client_close', 'client']]);
    expect(r.responses.map((q) => q.status)).toEqual([503]);
    expect(r.closed[0].h2?.streamsRefused).toBe(1);
  });
});

describe('h2c by Upgrade (caddy): the upgrade request is stream 1', () => {
  it('the 101 is not its answer; the response on stream 1 is, and later streams follow', () => {
    const up = httpRequest('GET', '/', { Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c', 'HTTP2-Settings': 'AAMAAABkAAQAoAAAAAIAAAAA' });
    const c = conv().handshake(0.0001).clientSends(up, 0.001);
    c.serverSends(Buffer.concat([Buffer.from('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n'), settings()]), 0.001);
    c.clientSends(Buffer.concat([PREFACE, settings(), settingsAck()]), 0.0005);
    c.serverSends(Buffer.concat([settingsAck(), headers(1, OK), data(1, 'one', { endStream: true })]), 0.001);
    exchange(c, 3);
    const r = run(c.close('client', 0.001));
    expect(r.closed.map(summary)).toEqual([['h2c', 2, 2, 'client_close', 'client']]);
    expect(r.closed[0].tunneled).toBe(false);
    expect(r.responses.map((q) => q.status)).toEqual([200, 200]);
  });

  it('an Upgrade: h2c the server ignores stays HTTP/1.1', () => {
    const up = httpRequest('GET', '/', { Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c', 'HTTP2-Settings': 'AAMAAABkAAQAoAAAAAIAAAAA' });
    const c = conv().handshake(0.0001).clientSends(up, 0.001).serverSends('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 0.001).close('client', 0.001);
    const r = run(c);
    expect(r.closed.map(summary)).toEqual([['http/1.1', 1, 1, 'client_close', 'client']]);
  });
});

describe('hostile HTTP/2 stays bounded', () => {
  it(`a client opening streams that are never answered: at most ${MAX_OPEN_STREAMS} are tracked, the rest counted`, () => {
    const c = open(conv());
    const n = MAX_OPEN_STREAMS + 50;
    c.clientSends(Buffer.concat(Array.from({ length: n }, (_, k) => headers(2 * k + 1, GET, { endStream: true }))), 0.01);
    const r = run(c.close('client', 0.01));
    expect(r.closed[0].requests).toBe(n);
    expect(r.engine.stats().anomalies.h2_stream_overflow).toBe(50);
  });

  it('garbage after the preface: counted, the connection is not a request', () => {
    const c = conv().handshake(0.0001).clientSends(Buffer.concat([PREFACE, Buffer.from('not a frame at all, just bytes')]), 0.001).close('client', 0.01);
    const r = run(c);
    expect(r.engine.stats().anomalies.h2_bad_preface).toBeGreaterThan(0);
    expect(r.closed.every((x) => x.requests === 0)).toBe(true);
  });
});
