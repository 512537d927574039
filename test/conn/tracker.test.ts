/**
 * The connection tracker's knowledge across connections: inference of an unannounced
 * max-requests limit (and its bounds), per-server state (RTT median, advertised settings) and the
 * per-connection caps of src/config/limits.ts. Driven through the Engine with small limits, since
 * the tracker only ever sees TCP flows.
 */
import { describe, expect, it } from 'vitest';
import { Engine, type EngineOptions } from '../../src/conn/engine.js';
import { ServerState } from '../../src/conn/servers.js';
import type { ConnectionRecord, RequestRecord } from '../../src/conn/records.js';
import { Conversation, type ConvPacket, feed, httpRequest, httpResponse, merge } from '../helpers/conversation.js';

const T0 = 1_700_000_000;
const SERVER = '10.0.0.2:80';
const KA = { Connection: 'keep-alive' };
const KA_REQ = httpRequest('GET', '/', KA);
const PLAIN_REQ = httpRequest('GET', '/');
const KA_RESP = httpResponse(200, 'ok', { Connection: 'keep-alive' });
const CLOSE_RESP = httpResponse(200, 'bye', { Connection: 'close' });

let nextPort = 30000;
function conv(t0 = T0, server = SERVER): Conversation {
  return new Conversation({ client: `10.0.0.1:${nextPort++}`, server, t0 });
}

/** `n` sequential exchanges, the last one answered with Connection: close and the server's FIN. */
function limited(c: Conversation, n: number, opts: { req?: string; resp?: (i: number) => string } = {}): Conversation {
  c.handshake(0.001);
  for (let i = 1; i <= n; i++) c.clientSends(opts.req ?? KA_REQ, 0.001).serverSends(i === n ? CLOSE_RESP : opts.resp?.(i) ?? KA_RESP, 0.001);
  return c.close('server', 0.001);
}

class Recorder {
  readonly engine: Engine;
  readonly closed: ConnectionRecord[] = [];
  readonly requests: RequestRecord[] = [];
  constructor(opts: EngineOptions = {}) {
    this.engine = new Engine(opts);
    this.engine.subscribe({
      closed: (c) => this.closed.push({ ...c }),
      request: (_c, r) => this.requests.push({ ...r }),
    });
  }
  feed(p: Conversation | ConvPacket[]): this {
    feed(this.engine, Array.isArray(p) ? p : p.packets());
    return this;
  }
  get reasons(): string[] {
    return this.closed.map((c) => c.closeReason);
  }
}

describe('inferring an unannounced max-requests limit', () => {
  it('known server defaults (100, 101, 1000) are taken as the limit at once', () => {
    for (const n of [100, 101]) {
      const r = new Recorder().feed(limited(conv(), n));
      expect(r.reasons, `${n} requests`).toEqual(['max_requests']);
      expect(r.engine.servers.get(SERVER)?.inferredMax).toBe(n);
    }
    // Any other count waits for a second connection.
    expect(new Recorder().feed(limited(conv(), 99)).reasons).toEqual([]);
  });

  it('Apache: a connection that did not ask for keep-alive, closed at the announced max + 1, is max_requests', () => {
    // First connection asks for keep-alive: Apache announces max=3, 2, 1, then closes the 4th.
    const announced = limited(conv(), 4, { resp: (i) => httpResponse(200, 'ok', { Connection: 'Keep-Alive', 'Keep-Alive': `timeout=2, max=${4 - i}` }) });
    // Second: plain HTTP/1.1 requests, no header at all on the responses, closed at the 4th.
    const plain = limited(conv(T0 + 5), 4, { req: PLAIN_REQ, resp: () => httpResponse(200, 'ok') });
    const r = new Recorder().feed(merge(announced, plain));
    expect(r.reasons).toEqual(['max_requests', 'max_requests']);
    expect(r.engine.servers.get(SERVER)?.advertisedMax).toBe(3);
  });

  it('inferMaxRequestsAfter: with 3, two connections at the same count are not enough', () => {
    const r = new Recorder({ limits: { inferMaxRequestsAfter: 3 } });
    r.feed(limited(conv(), 5)).feed(limited(conv(T0 + 1), 5));
    expect(r.closed).toHaveLength(0);
    r.feed(limited(conv(T0 + 2), 5));
    expect(r.reasons).toEqual(['max_requests', 'max_requests', 'max_requests']);
  });

  it('an error response with Connection: close is server_close, never evidence for a limit', () => {
    const err = (c: Conversation) => c.handshake(0.001).clientSends(KA_REQ, 0.001).serverSends(KA_RESP, 0.001)
      .clientSends(KA_REQ, 0.001).serverSends(httpResponse(503, 'busy', { Connection: 'close' }), 0.001).close('server', 0.001);
    const r = new Recorder().feed(err(conv())).feed(err(conv(T0 + 1)));
    // Decided at once, each one.
    expect(r.reasons).toEqual(['server_close', 'server_close']);
    expect(r.engine.servers.get(SERVER)?.inferredMax).toBeNull();
  });

  it('maxPendingInferences: the oldest waiting candidate is released as server_close and counted', () => {
    const r = new Recorder({ limits: { maxPendingInferences: 2 } });
    const servers = ['10.0.0.11:80', '10.0.0.12:80', '10.0.0.13:80'];
    const convs = servers.map((s, i) => limited(conv(T0 + i, s), 3));
    r.feed(convs[0]).feed(convs[1]);
    expect(r.closed).toHaveLength(0);
    r.feed(convs[2]);
    expect(r.closed.map((c) => [c.server, c.closeReason])).toEqual([[servers[0], 'server_close']]);
    expect(r.engine.stats().anomalies.inference_overflow).toBe(1);
    r.engine.finish();
    expect(r.closed.map((c) => c.server)).toEqual(servers);
  });

  it('a waiting candidate is released by later traffic once the wait has passed in capture time', () => {
    const r = new Recorder({ limits: { inferMaxRequestsWaitSeconds: 10 } });
    const a = limited(conv(), 3);
    r.feed(a);
    // Unrelated traffic 5 s later: still waiting.
    r.feed(conv(a.now + 5, '10.0.0.9:80').handshake(0.001));
    expect(r.closed).toHaveLength(0);
    r.feed(conv(a.now + 11, '10.0.0.9:80').handshake(0.001));
    expect(r.reasons).toEqual(['server_close']);
  });

  it('maxServers: a server beyond the cap has no state and no inference, but its connections are reported', () => {
    const r = new Recorder({ limits: { maxServers: 1 } });
    r.feed(limited(conv(T0, '10.0.0.21:80'), 3)).feed(limited(conv(T0 + 1, '10.0.0.22:80'), 3));
    // The second server has no state: its close is decided at once.
    expect(r.closed.map((c) => [c.server, c.closeReason])).toEqual([['10.0.0.22:80', 'server_close']]);
    expect([...r.engine.servers.keys()]).toEqual(['10.0.0.21:80']);
    r.engine.finish();
    expect(r.closed).toHaveLength(2);
  });
});

describe('per-server state', () => {
  it('ServerState.medianRtt: null when none, middle value, mean of the middle two', () => {
    const s = new ServerState(10);
    expect(s.medianRtt()).toBeNull();
    s.addRtt(0.3);
    expect(s.medianRtt()).toBe(0.3);
    s.addRtt(0.1);
    expect(s.medianRtt()).toBeCloseTo(0.2, 12);
    s.addRtt(0.2);
    expect(s.medianRtt()).toBe(0.2);
  });

  it('ServerState keeps only the most recent samples', () => {
    const s = new ServerState(3);
    for (const x of [0.001, 0.002, 0.003, 0.5, 0.6, 0.7]) s.addRtt(x);
    expect(s.medianRtt()).toBe(0.6);
  });

  it('advertised timeout is the last one seen; advertised max the one on the first response of a connection', () => {
    const c = conv().handshake(0.001)
      .clientSends(KA_REQ, 0.001).serverSends(httpResponse(200, 'a', { 'Keep-Alive': 'timeout=5, max=100' }), 0.001)
      .clientSends(KA_REQ, 0.001).serverSends(httpResponse(200, 'a', { 'Keep-Alive': 'timeout=7, max=99' }), 0.001)
      .close('client', 0.1);
    const r = new Recorder().feed(c);
    r.engine.finish();
    const s = r.engine.servers.get(SERVER)!;
    expect(s.advertisedTimeout).toBe(7);
    expect(s.advertisedMax).toBe(100);
    expect(r.closed[0]).toMatchObject({ advertisedTimeout: 7, advertisedMax: 99 });
  });

  it('the RTT median only uses handshakes to that server', () => {
    const a = conv(T0, '10.0.0.31:80').handshake(0.01).clientSends(KA_REQ, 0.001).serverSends(KA_RESP, 0.001).close('client', 0.1);
    const b = conv(T0 + 1, '10.0.0.32:80').handshake(0.5).clientSends(KA_REQ, 0.001).serverSends(KA_RESP, 0.001).close('client', 0.1);
    const mid = conv(T0 + 2, '10.0.0.31:80');
    mid.clientSends(KA_REQ, 0).serverSends(KA_RESP, 0.001).clientSends(KA_REQ, 0.01).serverSends(KA_RESP, 0.001);
    const r = new Recorder().feed(merge(a, b, mid));
    r.engine.finish();
    const reused = r.requests.filter((q) => q.savedFrom === 'server_median');
    expect(reused).toHaveLength(1);
    expect(reused[0].savedSeconds).toBeCloseTo(0.01, 6);
  });
});

describe('per-connection caps', () => {
  it('maxPendingRequests: pipelined requests beyond the cap are counted, and still counted as requests', () => {
    const reqs = Array.from({ length: 8 }, (_, i) => httpRequest('GET', `/${i}`, KA)).join('');
    const r = new Recorder({ limits: { maxPendingRequests: 3 } });
    r.feed(conv().handshake(0.001).clientSends(reqs, 0.001).close('client', 0.5));
    r.engine.finish();
    expect(r.engine.stats().anomalies.pipeline_overflow).toBe(5);
    expect(r.closed[0].requests).toBe(8);
  });

  it('a response nobody asked for (on a connection seen from its start) is counted, not invented as a request', () => {
    const c = conv().handshake(0.001).serverSends(httpResponse(200, 'surprise'), 0.001)
      .clientSends(KA_REQ, 0.01).serverSends(KA_RESP, 0.001).close('server', 2);
    const r = new Recorder().feed(c);
    r.engine.finish();
    expect(r.engine.stats().anomalies.http_unexpected_response).toBe(1);
    expect(r.closed[0]).toMatchObject({ requests: 1, responses: 1, closeReason: 'idle_timeout' });
  });
});
