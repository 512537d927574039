/**
 * Issue 10 items 6 and 7, end to end through the Engine (decode -> TCP -> HTTP -> connections) on
 * synthetic conversations: one bad request head must not make its connection vanish.
 *
 * Item 7: a head whose start line is a valid HTTP/1.x request (or status) line but whose fields
 * are bad (a line without a colon, whitespace before the colon, `Content-Length: -1`, conflicting
 * Content-Length values, one beyond a safe integer) is still a message: the connection and the
 * request are counted, the anomaly too, and the server's answer pairs with it. The server answers
 * here as nginx 1.22 does on loopback (test/robustness/bad-heads-real-servers.test.ts checks it): a 400 with
 * Content-Length: 157 and Connection: close, then its FIN; except for a line without a colon,
 * which nginx ignores, answering 200 and keeping the connection.
 *
 * Item 6: `Content-Length: 00000000000000000000000000000050` is valid framing (RFC 9110 8.6:
 * Content-Length = 1*DIGIT), so the request and the one pipelined after it are both counted.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/conn/engine.js';
import type { ConnectionRecord, RequestRecord } from '../../src/conn/records.js';
import { Conversation, httpRequest, httpResponse } from '../helpers/conversation.js';

const T0 = 1_700_000_000;
const SERVER = '10.0.0.2:80';
let nextPort = 41000;
const conv = (handshake = true): Conversation => {
  const c = new Conversation({ client: `10.0.0.1:${nextPort++}`, server: SERVER, t0: T0 });
  return handshake ? c.handshake(0.001) : c;
};

/** nginx's own 400 page (its length is the 157 nginx sends). */
const NGINX_400_BODY = '<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n';
const NGINX_400 = httpResponse(400, NGINX_400_BODY, { Server: 'nginx/1.22.1', 'Content-Type': 'text/html', Connection: 'close' }, { reason: 'Bad Request' });
const OK_KA = httpResponse(200, 'hello', { Connection: 'keep-alive' });

interface Result {
  engine: Engine;
  opened: ConnectionRecord[];
  closed: ConnectionRecord[];
  requests: RequestRecord[];
  responses: RequestRecord[];
  anomalies: Record<string, number>;
}

function run(...convs: Conversation[]): Result {
  const engine = new Engine();
  const r: Result = { engine, opened: [], closed: [], requests: [], responses: [], anomalies: {} };
  engine.subscribe({
    opened: (c) => r.opened.push(c),
    closed: (c) => r.closed.push({ ...c }),
    request: (_c, q) => r.requests.push(q),
    response: (_c, q) => r.responses.push({ ...q }),
  });
  for (const c of convs) c.feed(engine);
  engine.finish();
  r.anomalies = engine.stats().anomalies;
  return r;
}

/** The bad requests of item 7 that nginx answers with 400 + Connection: close. */
const REJECTED: Array<{ what: string; head: string; anomaly: string }> = [
  { what: 'a space before the colon', head: 'GET /a HTTP/1.1\r\nHost: localhost\r\nX-Thing : 1\r\n\r\n', anomaly: 'http_malformed_head' },
  { what: 'a tab before the colon', head: 'GET /a HTTP/1.1\r\nHost: localhost\r\nX-Thing\t: 1\r\n\r\n', anomaly: 'http_malformed_head' },
  { what: 'Content-Length: -1', head: 'POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n', anomaly: 'http_bad_content_length' },
  { what: 'two conflicting Content-Length fields', head: 'POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', anomaly: 'http_bad_content_length' },
  { what: 'a conflicting Content-Length list', head: 'POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 6\r\n\r\nhello!', anomaly: 'http_bad_content_length' },
  { what: 'a Content-Length beyond a safe integer', head: 'POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999999999999\r\n\r\n', anomaly: 'http_bad_content_length' },
];

describe('a bad request head (valid request line) is counted with its connection, and the 400 pairs with it', () => {
  for (const bad of REJECTED) {
    it(`${bad.what}: 1 connection, 1 request answered 400, server_close, the anomaly once`, () => {
      const c = conv().clientSends(bad.head, 0.001).serverSends(NGINX_400, 0.0002).close('server', 0.00005);
      const r = run(c);
      expect(r.opened).toHaveLength(1);
      expect(r.closed.map((x) => [x.closeReason, x.closedBy, x.requests, x.responses, x.midstream])).toEqual([['server_close', 'server', 1, 1, false]]);
      expect(r.requests.map((q) => q.method)).toEqual([bad.head.slice(0, bad.head.indexOf(' '))]);
      expect(r.responses.map((q) => [q.status, q.responseConnectionClose])).toEqual([[400, true]]);
      expect(r.anomalies).toEqual({ [bad.anomaly]: 1 });
      expect(r.engine.stats().connectionsClosed).toBe(1);
    });
  }

  it('the same seen mid-stream (no handshake captured): counted, roles from the bad request', () => {
    const c = conv(false).clientSends(REJECTED[2].head, 0.001).serverSends(NGINX_400, 0.0002).close('server', 0.00005);
    const r = run(c);
    expect(r.closed.map((x) => [x.client, x.server, x.closeReason, x.requests, x.responses, x.midstream])).toEqual([
      [`10.0.0.1:${c.client.port}`, SERVER, 'server_close', 1, 1, true],
    ]);
    expect(r.anomalies).toEqual({ http_bad_content_length: 1 });
  });

  it('a bad request after two good ones on a keep-alive connection: 3 requests, 2 reused, the 400 ends it', () => {
    const c = conv();
    for (let i = 0; i < 2; i++) c.clientSends(httpRequest('GET', '/'), 0.01).serverSends(OK_KA, 0.001);
    c.clientSends(REJECTED[0].head, 0.01).serverSends(NGINX_400, 0.0002).close('server', 0.00005);
    const r = run(c);
    expect(r.closed.map((x) => [x.closeReason, x.requests, x.reusedRequests, x.responses])).toEqual([['server_close', 3, 2, 3]]);
    expect(r.responses.map((q) => q.status)).toEqual([200, 200, 400]);
    expect(r.anomalies).toEqual({ http_malformed_head: 1 });
  });

  it('a line without a colon, which nginx ignores (200, keep-alive): the next request is found and the connection reused', () => {
    const bad = 'GET /a HTTP/1.1\r\nHost: localhost\r\nBrokenHeaderLine\r\n\r\n';
    const c = conv().clientSends(bad, 0.001).serverSends(OK_KA, 0.001)
      .clientSends(httpRequest('GET', '/b'), 0.01).serverSends(OK_KA, 0.001).close('client', 0.001);
    const r = run(c);
    expect(r.closed.map((x) => [x.closeReason, x.closedBy, x.requests, x.reusedRequests, x.responses])).toEqual([['client_close', 'client', 2, 1, 2]]);
    expect(r.responses.map((q) => q.status)).toEqual([200, 200]);
    expect(r.anomalies).toEqual({ http_malformed_head: 1 });
  });

  it('the bad head keeps the Connection tokens before the bad line: HTTP/1.0 keep-alive answered 400 close is server_close', () => {
    const bad = 'GET /a HTTP/1.0\r\nConnection: keep-alive\r\nX-Thing : 1\r\n\r\n';
    const r = run(conv().clientSends(bad, 0.001).serverSends(NGINX_400, 0.0002).close('server', 0.00005));
    expect(r.requests.map((q) => [q.version, q.wantsKeepAlive])).toEqual([['1.0', true]]);
    expect(r.closed.map((x) => x.closeReason)).toEqual(['server_close']);
  });
});

describe('a bad response head (valid status line) is counted, its status known', () => {
  it('200 with conflicting Content-Length, then the client closes (as RFC 9112 6.3 tells it to)', () => {
    const bad = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello';
    const r = run(conv().clientSends(httpRequest('GET', '/'), 0.001).serverSends(bad, 0.001).close('client', 0.001));
    expect(r.closed.map((x) => [x.closedBy, x.requests, x.responses])).toEqual([['client', 1, 1]]);
    // The response completed at its head: the close does not cut an exchange in flight.
    expect(r.closed[0].closeReason).not.toBe('aborted');
    expect(r.responses.map((q) => q.status)).toEqual([200]);
    expect(r.anomalies).toEqual({ http_bad_content_length: 1 });
  });

  it('502 with a field line without a colon and Connection: close before it, then the server FIN: server_close', () => {
    const bad = 'HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nbroken line\r\nContent-Length: 3\r\n\r\nbad';
    const r = run(conv().clientSends(httpRequest('GET', '/'), 0.001).serverSends(bad, 0.001).close('server', 0.0001));
    expect(r.closed.map((x) => [x.closeReason, x.closedBy, x.requests, x.responses])).toEqual([['server_close', 'server', 1, 1]]);
    expect(r.responses.map((q) => [q.status, q.responseConnectionClose])).toEqual([[502, true]]);
    expect(r.anomalies).toEqual({ http_malformed_head: 1 });
  });
});

describe('Content-Length with leading zeros is valid framing (issue 10 item 6)', () => {
  const body = 'x'.repeat(50);
  const post = `POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 00000000000000000000000000000050\r\n\r\n${body}`;

  it('the request and the one pipelined after it are both counted and answered, no anomaly', () => {
    const c = conv().clientSends(post + httpRequest('GET', '/next'), 0.001)
      .serverSends(OK_KA + OK_KA, 0.001).close('client', 0.001);
    const r = run(c);
    expect(r.closed.map((x) => [x.closeReason, x.requests, x.reusedRequests, x.responses])).toEqual([['client_close', 2, 1, 2]]);
    expect(r.requests.map((q) => q.method)).toEqual(['POST', 'GET']);
    expect(r.anomalies).toEqual({});
  });

  it('the same with the body and the pipelined request in separate segments', () => {
    const c = conv().clientSends(post + httpRequest('GET', '/next'), 0.001, { segments: [40, 70] })
      .serverSends(OK_KA, 0.001).serverSends(OK_KA, 0.001).close('client', 0.001);
    const r = run(c);
    expect(r.closed.map((x) => [x.requests, x.responses])).toEqual([[2, 2]]);
    expect(r.anomalies).toEqual({});
  });

  it('a response framed by a leading-zero Content-Length is followed by the next response', () => {
    const resp = `HTTP/1.1 200 OK\r\nContent-Length: ${'0'.repeat(30)}5\r\n\r\nhello`;
    const c = conv().clientSends(httpRequest('GET', '/1') + httpRequest('GET', '/2'), 0.001).serverSends(resp + OK_KA, 0.001).close('client', 0.001);
    const r = run(c);
    expect(r.responses.map((q) => q.status)).toEqual([200, 200]);
    expect(r.closed.map((x) => [x.closeReason, x.requests, x.responses])).toEqual([['client_close', 2, 2]]);
    expect(r.anomalies).toEqual({});
  });

  it('identical Content-Length values (a list, or two fields) frame the body too', () => {
    for (const cl of ['Content-Length: 5, 5', `Content-Length: 5, ${'0'.repeat(20)}5`, `Content-Length: 5\r\nContent-Length: ${'0'.repeat(20)}5`]) {
      const req = `POST / HTTP/1.1\r\nHost: localhost\r\n${cl}\r\n\r\nhello`;
      const r = run(conv().clientSends(req + httpRequest('GET', '/next'), 0.001).serverSends(NGINX_400, 0.0002).close('server', 0.00005));
      expect(r.requests.map((q) => q.method), cl).toEqual(['POST', 'GET']);
      expect(r.anomalies, cl).toEqual({});
    }
  });
});
