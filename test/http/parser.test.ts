import { describe, expect, it } from 'vitest';
import { HttpStreamParser, Mode, State, type HttpEvents, type NotHttpKind } from '../../src/http/parser.js';
import type { MessageHead } from '../../src/http/head.js';
import { prng } from '../helpers/prng.js';

// ---------------------------------------------------------------------------------------------
// A recording sink: every event becomes one string of an event log.
// ---------------------------------------------------------------------------------------------

class Recorder implements HttpEvents {
  readonly log: string[] = [];
  readonly heads: MessageHead[] = [];
  readonly times: string[] = [];
  private lastWasRequest = false;
  /** Methods of the requests the responses answer, oldest first (what the tracker keeps). */
  readonly methods: string[];

  constructor(methods: string[] = []) {
    this.methods = [...methods];
  }

  head(_dir: number, h: MessageHead, ts: number): void {
    this.lastWasRequest = h.isRequest;
    this.heads.push(h);
    const e = h.isRequest ? `head req ${h.method}` : `head res ${h.status}`;
    this.log.push(e);
    this.times.push(`${e} @${ts}`);
  }

  complete(_dir: number, ts: number): void {
    const e = `complete ${this.lastWasRequest ? 'req' : 'res'}`;
    if (!this.lastWasRequest) this.methods.shift();
    this.log.push(e);
    this.times.push(`${e} @${ts}`);
  }

  requestMethod(_dir: number): string {
    return this.methods[0] ?? '';
  }

  notHttp(_dir: number, kind: NotHttpKind): void {
    this.log.push(`notHttp ${kind}`);
  }

  anomaly(name: string): void {
    this.log.push(`anomaly ${name}`);
  }
}

interface Opts {
  mode?: Mode;
  fromStart?: boolean;
  methods?: string[];
  maxHeaderBytes?: number;
  maxResyncBytes?: number;
  /** Call end() after the data (FIN): completes close-delimited bodies. */
  end?: boolean;
}

function newParser(o: Opts, rec: Recorder): HttpStreamParser {
  return new HttpStreamParser(0, o.mode ?? Mode.Request, rec, o.maxHeaderBytes ?? 64 * 1024, o.maxResyncBytes ?? 64 * 1024, o.fromStart ?? true);
}

const bytes = (s: string | Buffer): Buffer => (typeof s === 'string' ? Buffer.from(s, 'latin1') : s);

/** Feeds the input in the given segments (as subranges of a larger buffer, to exercise offsets). */
function feed(o: Opts, segments: Buffer[]): { log: string[]; rec: Recorder; parser: HttpStreamParser } {
  const rec = new Recorder(o.methods);
  const parser = newParser(o, rec);
  let ts = 1;
  for (const seg of segments) {
    const padded = Buffer.concat([Buffer.from('##'), seg, Buffer.from('##')]);
    parser.data(padded, 2, seg.length, ts++);
  }
  if (o.end) parser.end(ts);
  return { log: rec.log, rec, parser };
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of cuts) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

/**
 * Resynchronisation looks for whole start lines at segment starts and after line ends, so inputs
 * that need it are checked fed whole and split at every line start (where text senders split).
 */
function expectAtLineSplits(input: string | Buffer, expected: string[], o: Opts = {}): void {
  const buf = bytes(input);
  expect(feed(o, [buf]).log, 'fed whole').toEqual(expected);
  const lineStarts: number[] = [];
  for (let i = 1; i < buf.length; i++) if (buf[i - 1] === 10) lineStarts.push(i);
  for (const i of lineStarts) expect(feed(o, splitAt(buf, [i])).log, `split at ${i}`).toEqual(expected);
  expect(feed(o, splitAt(buf, lineStarts)).log, 'line by line').toEqual(expected);
}


/**
 * llhttp-style check: the input fed whole, split in two at every offset, byte by byte, and in
 * random pieces must all give the expected event log.
 */
function expectFraming(input: string | Buffer, expected: string[], o: Opts = {}): void {
  const buf = bytes(input);
  expect(feed(o, [buf]).log, 'fed whole').toEqual(expected);
  for (let i = 1; i < buf.length; i++) {
    expect(feed(o, splitAt(buf, [i])).log, `split at ${i}`).toEqual(expected);
  }
  expect(feed(o, splitAt(buf, Array.from({ length: buf.length - 1 }, (_, i) => i + 1))).log, 'byte by byte').toEqual(expected);
  const rnd = prng(buf.length);
  for (let k = 0; k < 20; k++) {
    const cuts = new Set<number>();
    const n = 1 + Math.floor(rnd() * 6);
    for (let j = 0; j < n; j++) cuts.add(1 + Math.floor(rnd() * (buf.length - 1)));
    const sorted = [...cuts].sort((a, b) => a - b);
    expect(feed(o, splitAt(buf, sorted)).log, `split at ${sorted.join(',')}`).toEqual(expected);
  }
}

const REQ_GET = 'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n';
const RES_OK = (body: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
const RES = { mode: Mode.Response } as const;

// A TLS 1.2 ClientHello record start (handshake, version 3.1, length, ClientHello type).
const CLIENT_HELLO = Buffer.from(
  '16030100c4010000c00303' + '5b'.repeat(32) + '00' + '0020' + 'c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a' + '0100',
  'hex',
);

// ---------------------------------------------------------------------------------------------

describe('HttpStreamParser: Content-Length framing (RFC 9112 6.3 item 6)', () => {
  it('completes a request after exactly Content-Length body bytes', () => {
    expectFraming('POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello', ['head req POST', 'complete req']);
  });

  it('does not complete a request whose body is still incomplete', () => {
    expectFraming('POST /form HTTP/1.1\r\nContent-Length: 6\r\n\r\nhello', ['head req POST']);
  });

  it('completes a request without a body at the end of its head', () => {
    expectFraming(REQ_GET, ['head req GET', 'complete req']);
  });

  it('completes a response with Content-Length: 0 at the end of its head', () => {
    expectFraming('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', ['head res 200', 'complete res'], RES);
  });

  it('never reads a body as a head, even when the body looks like HTTP', () => {
    const body = 'HTTP/1.1 500 Oops\r\n\r\n';
    expectFraming(RES_OK(body) + RES_OK('x'), ['head res 200', 'complete res', 'head res 200', 'complete res'], RES);
  });

  it('accepts repeated identical Content-Length fields', () => {
    expectFraming('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok', ['head res 200', 'complete res'], RES);
  });

  it('reports a response with differing Content-Length fields as an anomaly and as a message, complete at its head', () => {
    const log = feed(RES, [bytes('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok')]).log;
    expect(log).toEqual(['anomaly http_bad_content_length', 'head res 200', 'complete res']);
  });

  it('frames a Content-Length with leading zeros, and the message pipelined after it (RFC 9110 8.6)', () => {
    const body = 'x'.repeat(50);
    expectFraming(`POST / HTTP/1.1\r\nContent-Length: 00000000000000000000000000000050\r\n\r\n${body}${REQ_GET}`, [
      'head req POST', 'complete req', 'head req GET', 'complete req',
    ]);
    expectFraming(`HTTP/1.1 200 OK\r\nContent-Length: 0000000000000000000002\r\n\r\nok${RES_OK('x')}`, ['head res 200', 'complete res', 'head res 200', 'complete res'], RES);
  });

  it('frames a list of identical Content-Length values with leading zeros', () => {
    expectFraming(`POST / HTTP/1.1\r\nContent-Length: 5, 0000000000000000000005\r\n\r\nhello${REQ_GET}`, ['head req POST', 'complete req', 'head req GET', 'complete req']);
  });

  it('accepts bare LF line endings in the head', () => {
    expectFraming('HTTP/1.1 200 OK\nContent-Length: 2\n\nok', ['head res 200', 'complete res'], RES);
  });

  it('reports the time of the first head byte and of the last body byte', () => {
    const { rec } = feed(RES, [bytes('HTTP/1.1 200 OK\r\n'), bytes('Content-Length: 4\r\n\r\nab'), bytes('cd')]);
    expect(rec.times).toEqual(['head res 200 @1', 'complete res @3']);
  });
});

describe('HttpStreamParser: lastHeadBytes (what a decrypting owner reads first of the next record)', () => {
  const res = RES_OK('hello');
  const headLength = res.length - 'hello'.length;

  it('0 before any head; the whole head, start line to empty line, when it came in one piece', () => {
    expect(newParser(RES, new Recorder()).lastHeadBytes).toBe(0);
    expect(feed(RES, [bytes(res)]).parser.lastHeadBytes).toBe(headLength);
  });

  it('the same when the head was cut anywhere, and the last of several heads', () => {
    for (let cut = 1; cut < headLength; cut++) expect(feed(RES, splitAt(bytes(res), [cut])).parser.lastHeadBytes).toBe(headLength);
    const longer = 'HTTP/1.1 404 Not Found\r\nServer: x\r\nContent-Length: 0\r\n\r\n';
    expect(feed(RES, [bytes(res + longer)]).parser.lastHeadBytes).toBe(longer.length);
  });
});

describe('HttpStreamParser: chunked framing (RFC 9112 7.1)', () => {
  const chunkedRes =
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
    '5;name=value\r\nhello\r\n' +
    '6 ; ext="quoted;\\"x"\r\n world\r\n' +
    'A\r\n0123456789\r\n' +
    '1a\r\nabcdefghijklmnopqrstuvwxyz\r\n' +
    '0;last\r\nExpires: never\r\nX-Checksum: abc\r\n\r\n';

  it('completes a chunked response with chunk extensions and trailer fields', () => {
    expectFraming(chunkedRes, ['head res 200', 'complete res'], RES);
  });

  it('completes a chunked response split at every byte, then parses the next one', () => {
    expectFraming(chunkedRes + RES_OK('next'), ['head res 200', 'complete res', 'head res 200', 'complete res'], RES);
  });

  it('completes a chunked response with only the last chunk', () => {
    expectFraming('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', ['head res 200', 'complete res'], RES);
  });

  it('does not complete a chunked response before the empty line after the last chunk', () => {
    expectFraming('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n', ['head res 200'], RES);
  });

  it('frames a chunked request body', () => {
    const req = 'POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n0\r\n\r\n';
    expectFraming(req + REQ_GET, ['head req POST', 'complete req', 'head req GET', 'complete req']);
  });

  it('prefers chunked over Content-Length when both are present', () => {
    const res = 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n';
    expectFraming(res + RES_OK('x'), ['head res 200', 'complete res', 'head res 200', 'complete res'], RES);
  });

  it('treats "gzip, chunked" as chunked', () => {
    const res = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n';
    expectFraming(res, ['head res 200', 'complete res'], RES);
  });

  it('reads a response whose final coding is not chunked until the connection closes', () => {
    const res = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n';
    expectFraming(res, ['head res 200'], RES);
    expectFraming(res, ['head res 200', 'complete res'], { ...RES, end: true });
  });

  it('reports a request whose final coding is not chunked as unframeable', () => {
    const log = feed({}, [bytes('POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxxxx')]).log;
    expect(log).toEqual(['head req POST', 'anomaly http_bad_chunk']);
  });

  it('reports a chunk size that is not hex as a bad chunk and resynchronises', () => {
    const log = feed(RES, [bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'), bytes(RES_OK('ok'))]).log;
    expect(log).toEqual(['head res 200', 'anomaly http_bad_chunk', 'head res 200', 'complete res']);
  });

  it('reports chunk data not followed by CRLF as a bad chunk', () => {
    const log = feed(RES, [bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n')]).log;
    expect(log).toEqual(['head res 200', 'anomaly http_bad_chunk']);
  });

  it('reports an absurdly long chunk size as a bad chunk', () => {
    const log = feed(RES, [bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + 'f'.repeat(20) + '\r\n')]).log;
    expect(log).toEqual(['head res 200', 'anomaly http_bad_chunk']);
  });
});

describe('HttpStreamParser: close-delimited responses (RFC 9112 6.3 item 8)', () => {
  const res = 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall the bytes until the FIN\r\nHTTP/1.1 200 OK\r\n\r\n';

  it('does not complete a response without length before the end of the stream', () => {
    expectFraming(res, ['head res 200'], RES);
  });

  it('completes a response without length at the end of the stream', () => {
    expectFraming(res, ['head res 200', 'complete res'], { ...RES, end: true });
  });

  it('completes a response without length at the end of the stream even with no body byte', () => {
    expectFraming('HTTP/1.1 200 OK\r\n\r\n', ['head res 200', 'complete res'], { ...RES, end: true });
  });

  it('does nothing at the end of the stream between messages', () => {
    expectFraming(RES_OK('ok'), ['head res 200', 'complete res'], { ...RES, end: true });
  });

  it('a request without length has no body, so end() adds nothing', () => {
    expectFraming(REQ_GET, ['head req GET', 'complete req'], { end: true });
  });
});

describe('HttpStreamParser: responses without a body', () => {
  it('completes a response to HEAD at the end of its head, whatever its Content-Length', () => {
    expectFraming(
      'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' + RES_OK('hi'),
      ['head res 200', 'complete res', 'head res 200', 'complete res'],
      { ...RES, methods: ['HEAD', 'GET'] },
    );
  });

  it('completes a chunked response to HEAD at the end of its head', () => {
    expectFraming(
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + RES_OK('hi'),
      ['head res 200', 'complete res', 'head res 200', 'complete res'],
      { ...RES, methods: ['HEAD', 'GET'] },
    );
  });

  it('gives 100 Continue no completion: the final response completes the exchange once', () => {
    expectFraming('HTTP/1.1 100 Continue\r\n\r\n' + RES_OK('done'), ['head res 100', 'head res 200', 'complete res'], {
      ...RES, methods: ['POST'],
    });
  });

  it('gives several interim responses (100, 103 with fields) no completion', () => {
    expectFraming(
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n' + RES_OK('done'),
      ['head res 100', 'head res 103', 'head res 200', 'complete res'],
      RES,
    );
  });

  it('completes a 204 at the end of its head, ignoring a Content-Length', () => {
    expectFraming('HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n' + RES_OK('x'), [
      'head res 204', 'complete res', 'head res 200', 'complete res',
    ], RES);
  });

  it('completes a 304 at the end of its head, ignoring Content-Length and Transfer-Encoding', () => {
    expectFraming('HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nTransfer-Encoding: chunked\r\n\r\n' + RES_OK('x'), [
      'head res 304', 'complete res', 'head res 200', 'complete res',
    ], RES);
  });
});

describe('HttpStreamParser: tunnels (101 Switching Protocols, CONNECT)', () => {
  const wsFrames = Buffer.from('8105' + Buffer.from('hello').toString('hex') + '880203e8', 'hex');

  it('enters a tunnel on 101 and ignores every later byte', () => {
    const input = Buffer.concat([
      bytes('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'),
      wsFrames,
      bytes(RES_OK('not http any more')),
    ]);
    expectFraming(input, ['head res 101'], { ...RES, methods: ['GET'], end: true });
    const { parser } = feed({ ...RES, methods: ['GET'] }, [input]);
    expect(parser.state).toBe(State.Tunnel);
  });

  it('completes an Upgrade request at its head and then waits for the answer, ignoring bytes', () => {
    const input = Buffer.concat([
      bytes('GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n'),
      wsFrames,
      bytes(REQ_GET),
    ]);
    expectFraming(input, ['head req GET', 'complete req']);
    expect(feed({}, [input]).parser.state).toBe(State.AwaitUpgrade);
  });

  it('ignores every byte after the sink accepts the upgrade', () => {
    const rec = new Recorder();
    const p = newParser({}, rec);
    const up = bytes('GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    p.data(up, 0, up.length, 1);
    p.enterTunnel();
    p.data(bytes(REQ_GET), 0, REQ_GET.length, 2);
    p.gap(10, 3);
    p.end(4);
    expect(rec.log).toEqual(['head req GET', 'complete req']);
    expect(p.state).toBe(State.Tunnel);
  });

  it('resumes parsing at the next message start when the upgrade is refused', () => {
    const rec = new Recorder();
    const p = newParser({}, rec);
    const up = bytes('GET /chat HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n');
    p.data(up, 0, up.length, 1);
    p.upgradeRefused();
    const next = bytes(REQ_GET);
    p.data(next, 0, next.length, 2);
    expect(rec.log).toEqual(['head req GET', 'complete req', 'head req GET', 'complete req']);
  });

  it('completes a CONNECT request at its head and ignores the bytes that follow', () => {
    const input = Buffer.concat([bytes('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'), CLIENT_HELLO]);
    expectFraming(input, ['head req CONNECT', 'complete req']);
  });

  it('completes a 2xx to CONNECT at its head and enters a tunnel', () => {
    const input = Buffer.concat([bytes('HTTP/1.1 200 Connection Established\r\n\r\n'), CLIENT_HELLO, bytes(RES_OK('x'))]);
    expectFraming(input, ['head res 200', 'complete res'], { ...RES, methods: ['CONNECT'], end: true });
    expect(feed({ ...RES, methods: ['CONNECT'] }, [input]).parser.state).toBe(State.Tunnel);
  });

  it('frames a refused CONNECT (407) like any other response', () => {
    expectFraming('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 3\r\n\r\nno!' + RES_OK('x'), [
      'head res 407', 'complete res', 'head res 200', 'complete res',
    ], { ...RES, methods: ['CONNECT', 'GET'] });
  });
});

describe('HttpStreamParser: message sequences', () => {
  it('parses pipelined requests in one buffer', () => {
    const input = REQ_GET + 'POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc' + 'DELETE /d HTTP/1.1\r\n\r\n';
    expectFraming(input, ['head req GET', 'complete req', 'head req POST', 'complete req', 'head req DELETE', 'complete req']);
  });

  it('parses consecutive responses of every framing split anywhere', () => {
    const input =
      RES_OK('first') +
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
      'HTTP/1.1 304 Not Modified\r\n\r\n' +
      'HTTP/1.1 200 OK\r\n\r\nclose-delimited';
    expectFraming(input, ['head res 200', 'complete res', 'head res 200', 'complete res', 'head res 304', 'complete res', 'head res 200', 'complete res'], {
      ...RES, end: true,
    });
  });

  it('ignores empty lines before a request', () => {
    expectFraming('\r\n\r\n' + REQ_GET, ['head req GET', 'complete req']);
  });

  it('ignores a stray CRLF after a request body (old clients send one)', () => {
    expectFraming('POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab\r\n' + REQ_GET, [
      'head req POST', 'complete req', 'head req GET', 'complete req',
    ]);
  });

  it('reports a response on a request stream as malformed and keeps going', () => {
    const log = feed({ mode: Mode.Request }, [bytes(REQ_GET), bytes(RES_OK('x')), bytes(REQ_GET)]).log;
    expect(log).toEqual(['head req GET', 'complete req', 'anomaly http_resync', 'head req GET', 'complete req']);
  });

  it('reports a malformed head as an anomaly and a message, and recovers at the next message', () => {
    const log = feed({}, [bytes('GET / HTTP/1.1\r\nbroken header line\r\n\r\n'), bytes(REQ_GET)]).log;
    // The bad request has no completion: its body, if any, cannot be delimited.
    expect(log).toEqual(['anomaly http_malformed_head', 'head req GET', 'head req GET', 'complete req']);
  });
});

describe('HttpStreamParser: heads with a valid start line and a bad field (issue 10 item 7)', () => {
  /** The bad requests of the issue, each as nginx 1.22 sees them (it answers 400 + close to all but the first). */
  const BAD_REQUESTS: Array<[string, string, string]> = [
    ['a field line without a colon', 'GET /a HTTP/1.1\r\nHost: x\r\nBrokenHeaderLine\r\n\r\n', 'http_malformed_head'],
    ['a space before the colon', 'GET /a HTTP/1.1\r\nHost: x\r\nX-Thing : 1\r\n\r\n', 'http_malformed_head'],
    ['a tab before the colon', 'GET /a HTTP/1.1\r\nHost: x\r\nX-Thing\t: 1\r\n\r\n', 'http_malformed_head'],
    ['Content-Length: -1', 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', 'http_bad_content_length'],
    ['conflicting Content-Length fields', 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', 'http_bad_content_length'],
    ['a conflicting Content-Length list', 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n', 'http_bad_content_length'],
    ['a Content-Length beyond a safe integer', 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n', 'http_bad_content_length'],
  ];

  for (const [what, req, anomaly] of BAD_REQUESTS) {
    it(`reports a request with ${what} as a message and an anomaly, then finds the next request`, () => {
      const method = req.slice(0, req.indexOf(' '));
      expectAtLineSplits(req + REQ_GET, [`anomaly ${anomaly}`, `head req ${method}`, 'head req GET', 'complete req']);
    });
  }

  it('reports the bad request from the first byte of a stream in Detect mode, and takes it as the request direction', () => {
    const { log, parser } = feed({ mode: Mode.Detect }, [bytes(BAD_REQUESTS[0][1])]);
    expect(log).toEqual(['anomaly http_malformed_head', 'head req GET']);
    expect(parser.mode).toBe(Mode.Request);
    expect(parser.messages).toBe(1);
  });

  it('does not give up on a stream whose first message had a bad field (it is HTTP)', () => {
    const { log, parser } = feed({ fromStart: true, maxResyncBytes: 16 }, [bytes(BAD_REQUESTS[3][1]), Buffer.alloc(1000, 0x41)]);
    expect(log).toEqual(['anomaly http_bad_content_length', 'head req POST']);
    expect(parser.state).not.toBe(State.Dead);
  });

  it('gives the head what the lines before the bad one said', () => {
    const { rec } = feed({}, [bytes('GET / HTTP/1.0\r\nConnection: keep-alive\r\nbad\r\n\r\n')]);
    expect(rec.heads[0]).toMatchObject({ method: 'GET', minor: 0, keepAlive: true, contentLength: -1, fieldError: 'http_malformed_head' });
  });

  it('reports a 400 with a bad field as complete at its head, then resynchronises at the next response', () => {
    expectAtLineSplits(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: -1\r\n\r\n<html>oops</html>\r\n${RES_OK('x')}`,
      ['anomaly http_bad_content_length', 'head res 400', 'complete res', 'head res 200', 'complete res'], RES);
  });

  it('keeps framing after a bad field on a response that has no body anyway (204, 304, HEAD)', () => {
    expectFraming(`HTTP/1.1 204 No Content\r\nbad\r\n\r\n${RES_OK('x')}`, ['anomaly http_malformed_head', 'head res 204', 'complete res', 'head res 200', 'complete res'], RES);
    expectFraming(`HTTP/1.1 304 Not Modified\r\nContent-Length: 1, 2\r\n\r\n${RES_OK('x')}`, ['anomaly http_bad_content_length', 'head res 304', 'complete res', 'head res 200', 'complete res'], RES);
    expectFraming(`HTTP/1.1 200 OK\r\nContent-Length: 7\r\nbad\r\n\r\n${RES_OK('x')}`,
      ['anomaly http_malformed_head', 'head res 200', 'complete res', 'head res 200', 'complete res'], { ...RES, methods: ['HEAD', 'GET'] });
  });

  it('gives an interim response with a bad field no completion: the final one completes the exchange', () => {
    expectFraming(`HTTP/1.1 100 Continue\r\nbad\r\n\r\n${RES_OK('x')}`, ['anomaly http_malformed_head', 'head res 100', 'head res 200', 'complete res'], RES);
  });

  it('reports no message for a bad-field request on a response stream: it is lost framing there', () => {
    const log = feed(RES, [bytes(RES_OK('x')), bytes(BAD_REQUESTS[0][1])]).log;
    expect(log).toEqual(['head res 200', 'complete res', 'anomaly http_resync']);
  });

  it('never throws on a bad-field head fed byte by byte, and reports it once', () => {
    const input = bytes(BAD_REQUESTS[4][1] + REQ_GET);
    const log = feed({}, splitAt(input, Array.from({ length: input.length - 1 }, (_, i) => i + 1))).log;
    expect(log.filter((e) => e.startsWith('anomaly'))).toEqual(['anomaly http_bad_content_length']);
    expect(log[1]).toBe('head req POST');
  });
});

describe('HttpStreamParser: Detect mode', () => {
  it('takes a stream whose first message is a request as the request direction', () => {
    const { log, parser } = feed({ mode: Mode.Detect }, [bytes(REQ_GET)]);
    expect(log).toEqual(['head req GET', 'complete req']);
    expect(parser.mode).toBe(Mode.Request);
  });

  it('takes a stream whose first message is a response as the response direction', () => {
    const { log, parser } = feed({ mode: Mode.Detect }, [bytes(RES_OK('hi'))]);
    expect(log).toEqual(['head res 200', 'complete res']);
    expect(parser.mode).toBe(Mode.Response);
  });

  it('detects the direction the same way at every split', () => {
    expectFraming(RES_OK('hi') + RES_OK('again'), ['head res 200', 'complete res', 'head res 200', 'complete res'], { mode: Mode.Detect });
    expectFraming(REQ_GET + REQ_GET, ['head req GET', 'complete req', 'head req GET', 'complete req'], { mode: Mode.Detect });
  });

  it('rejects a request once the stream was detected as responses', () => {
    const log = feed({ mode: Mode.Detect }, [bytes(RES_OK('hi')), bytes(REQ_GET)]).log;
    expect(log).toEqual(['head res 200', 'complete res', 'anomaly http_resync']);
  });
});

describe('HttpStreamParser: gaps (bytes lost from the capture)', () => {
  it('keeps Content-Length framing across a gap inside the body', () => {
    const rec = new Recorder();
    const p = newParser(RES, rec);
    const head = bytes('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    p.data(head, 0, head.length, 1);
    p.gap(4, 2);
    p.data(bytes('xyz'), 0, 3, 3);
    const next = bytes(RES_OK('ok'));
    p.data(next, 0, next.length, 4);
    expect(rec.log).toEqual(['head res 200', 'complete res', 'head res 200', 'complete res']);
    expect(rec.times[1]).toBe('complete res @3');
  });

  it('completes a Content-Length body that a gap ends exactly', () => {
    const rec = new Recorder();
    const p = newParser(RES, rec);
    const head = bytes('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    p.data(head, 0, head.length, 1);
    p.gap(7, 2);
    const next = bytes(RES_OK('ok'));
    p.data(next, 0, next.length, 3);
    expect(rec.log).toEqual(['head res 200', 'complete res', 'head res 200', 'complete res']);
  });

  it('completes the body and resynchronises when a gap runs past a Content-Length body', () => {
    const rec = new Recorder();
    const p = newParser(RES, rec);
    const head = bytes('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    p.data(head, 0, head.length, 1);
    p.gap(50, 2);
    const next = bytes('tail of a lost message\r\n' + RES_OK('ok'));
    p.data(next, 0, next.length, 3);
    expect(rec.log).toEqual(['head res 200', 'complete res', 'anomaly http_resync', 'head res 200', 'complete res']);
  });

  it('keeps chunked framing across a gap inside one chunk', () => {
    const rec = new Recorder();
    const p = newParser(RES, rec);
    const a = bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01234');
    p.data(a, 0, a.length, 1);
    p.gap(3, 2);
    const b = bytes('89\r\n0\r\n\r\n');
    p.data(b, 0, b.length, 3);
    expect(rec.log).toEqual(['head res 200', 'complete res']);
  });

  it('resynchronises at a message starting exactly at the next data after a gap in a chunked body', () => {
    const rec = new Recorder();
    const p = newParser(RES, rec);
    const a = bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab');
    p.data(a, 0, a.length, 1);
    p.gap(100, 2);
    const b = bytes(RES_OK('ok'));
    p.data(b, 0, b.length, 3);
    expect(rec.log).toEqual(['head res 200', 'anomaly http_resync', 'head res 200', 'complete res']);
  });

  it('resynchronises after a gap in a chunk-size line, at a message after a line end', () => {
    const rec = new Recorder();
    const p = newParser(RES, rec);
    const a = bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1');
    p.data(a, 0, a.length, 1);
    p.gap(20, 2);
    const b = bytes('chunk bytes\r\n0\r\n\r\n' + RES_OK('ok'));
    p.data(b, 0, b.length, 3);
    expect(rec.log).toEqual(['head res 200', 'anomaly http_resync', 'head res 200', 'complete res']);
  });

  it('resynchronises after a gap inside a head, skipping body bytes of the lost message', () => {
    const rec = new Recorder();
    const p = newParser({}, rec);
    const a = bytes('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Le');
    p.data(a, 0, a.length, 1);
    p.gap(30, 2);
    const b = bytes('GET-looking body text\r\nmore body\r\n' + REQ_GET);
    p.data(b, 0, b.length, 3);
    // The lost head's request is still reported (its framing is unknown), then framing resumes.
    expect(rec.log).toEqual(['head req POST', 'anomaly http_resync', 'head req GET', 'complete req']);
  });

  it('resynchronises at a message starting exactly at the next data after a gap inside a head', () => {
    const rec = new Recorder();
    const p = newParser(RES, rec);
    const a = bytes('HTTP/1.1 200 OK\r\nContent-Ty');
    p.data(a, 0, a.length, 1);
    p.gap(500, 2);
    const b = bytes(RES_OK('ok'));
    p.data(b, 0, b.length, 3);
    expect(rec.log).toEqual(['head res 200', 'complete res', 'anomaly http_resync', 'head res 200', 'complete res']);
  });

  it('resynchronises without an anomaly after a gap between messages', () => {
    const rec = new Recorder();
    const p = newParser({}, rec);
    const a = bytes(REQ_GET);
    p.data(a, 0, a.length, 1);
    p.gap(40, 2);
    const b = bytes('ost: lost\r\n\r\n' + REQ_GET);
    p.data(b, 0, b.length, 3);
    expect(rec.log).toEqual(['head req GET', 'complete req', 'head req GET', 'complete req']);
  });

  it('stays in a close-delimited body across a gap', () => {
    const rec = new Recorder();
    const p = newParser(RES, rec);
    const a = bytes('HTTP/1.1 200 OK\r\n\r\nbody');
    p.data(a, 0, a.length, 1);
    p.gap(1000, 2);
    p.data(bytes(RES_OK('x')), 0, 10, 3);
    p.end(4);
    expect(rec.log).toEqual(['head res 200', 'complete res']);
  });
});

describe('HttpStreamParser: header size limit', () => {
  const big = 'GET /big HTTP/1.1\r\nX-Big: ' + 'a'.repeat(200) + '\r\n\r\n';

  it('reports a head larger than maxHeaderBytes and recovers at the next message (next segment)', () => {
    const log = feed({ maxHeaderBytes: 100 }, [bytes(big), bytes(REQ_GET)]).log;
    expect(log).toEqual(['anomaly header_too_large', 'head req GET', 'complete req']);
  });

  it('reports a head larger than maxHeaderBytes arriving over several segments, and recovers', () => {
    const log = feed({ maxHeaderBytes: 100 }, [bytes(big.slice(0, 60)), bytes(big.slice(60, 150)), bytes(big.slice(150)), bytes(REQ_GET)]).log;
    expect(log).toEqual(['anomaly header_too_large', 'head req GET', 'complete req']);
  });

  it('reports a head larger than maxHeaderBytes and recovers at the next message in the same segment', () => {
    expectAtLineSplits(big + REQ_GET, ['anomaly header_too_large', 'head req GET', 'complete req'], { maxHeaderBytes: 100 });
  });

  it('accepts a head of exactly maxHeaderBytes', () => {
    const head = 'GET / HTTP/1.1\r\nX: ' + 'b'.repeat(40) + '\r\n\r\n';
    expectFraming(head, ['head req GET', 'complete req'], { maxHeaderBytes: head.length });
  });

  it('does not count body bytes that follow a head split across segments against the limit', () => {
    const req = 'POST /u HTTP/1.1\r\nContent-Length: 300\r\n\r\n' + 'x'.repeat(300);
    expectFraming(req + REQ_GET, ['head req POST', 'complete req', 'head req GET', 'complete req'], { maxHeaderBytes: 64 });
  });
});

describe('HttpStreamParser: streams that are not HTTP/1.x', () => {
  it('reports a TLS ClientHello at the start of a stream as tls', () => {
    expectFraming(CLIENT_HELLO, ['notHttp tls'], { mode: Mode.Detect });
  });

  it('reports a TLS ServerHello at the start of a response stream as tls', () => {
    const serverHello = Buffer.from('160303003d020000390303' + '11'.repeat(32) + '00c02f000011ff01000100', 'hex');
    expectFraming(serverHello, ['notHttp tls'], RES);
  });

  it('reports the HTTP/2 connection preface as http2', () => {
    expectFraming('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + '\x00\x00\x12\x04\x00\x00\x00\x00\x00', ['notHttp http2'], { mode: Mode.Detect });
  });

  it('reports an SSH banner as other', () => {
    expectFraming('SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n', ['notHttp other'], { mode: Mode.Detect });
  });

  it('reports a binary protocol as other', () => {
    expectFraming(Buffer.from('000000a4ff534d4272000000001843c8', 'hex'), ['notHttp other'], { mode: Mode.Detect });
  });

  it('ignores everything after deciding a stream is not HTTP', () => {
    const { log, parser } = feed({ mode: Mode.Detect }, [CLIENT_HELLO, bytes(REQ_GET)]);
    parser.gap(10, 5);
    parser.end(6);
    expect(log).toEqual(['notHttp tls']);
    expect(parser.state).toBe(State.Dead);
  });

  it('treats garbage after a first HTTP message as lost framing, not as another protocol', () => {
    const log = feed({}, [bytes(REQ_GET), Buffer.from('16030100', 'hex'), bytes(REQ_GET)]).log;
    expect(log).toEqual(['head req GET', 'complete req', 'anomaly http_resync', 'head req GET', 'complete req']);
  });
});

describe('HttpStreamParser: streams joined mid-way (no handshake captured)', () => {
  it('skips the rest of a body and starts at the next request after a line end', () => {
    const input = 'dy bytes of a POST\r\nmore\r\n' + REQ_GET;
    expectAtLineSplits(input, ['head req GET', 'complete req'], { fromStart: false });
  });

  it('starts at a response that begins exactly at the first data', () => {
    expect(feed({ ...RES, fromStart: false }, [bytes(RES_OK('ok'))]).log).toEqual(['head res 200', 'complete res']);
  });

  it('skips the rest of a response body and starts at the next response', () => {
    const log = feed({ ...RES, fromStart: false }, [bytes('{"json": "tail"}\r\n' + RES_OK('ok'))]).log;
    expect(log).toEqual(['head res 200', 'complete res']);
  });

  it('does not start at a line that only mentions HTTP inside a body', () => {
    const log = feed({ ...RES, fromStart: false }, [bytes('see HTTP/1.1 200 in the docs\r\nGET / HTTP/1.1\r\n\r\n'), bytes(RES_OK('ok'))]).log;
    expect(log).toEqual(['head res 200', 'complete res']);
  });

  it('detects the direction of a mid-stream flow from the first message found', () => {
    const { log, parser } = feed({ mode: Mode.Detect, fromStart: false }, [bytes('binary\x00\x01\r\n' + RES_OK('ok'))]);
    expect(log).toEqual(['head res 200', 'complete res']);
    expect(parser.mode).toBe(Mode.Response);
  });

  it('gives up with resync_failed after maxResyncBytes without a message', () => {
    const junk = Buffer.alloc(300, 0x41);
    const { log, parser } = feed({ mode: Mode.Detect, fromStart: false, maxResyncBytes: 1000 }, [junk, junk, junk, junk, bytes(REQ_GET)]);
    expect(log).toEqual(['anomaly resync_failed', 'notHttp other']);
    expect(parser.state).toBe(State.Dead);
  });

  it('never gives up on a stream known to carry HTTP', () => {
    const rec = new Recorder();
    const p = newParser({ fromStart: false, maxResyncBytes: 100 }, rec);
    p.established = true;
    const junk = Buffer.alloc(300, 0x41);
    for (let i = 0; i < 5; i++) p.data(junk, 0, junk.length, i);
    p.data(bytes(REQ_GET), 0, REQ_GET.length, 9);
    expect(rec.log).toEqual(['head req GET', 'complete req']);
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile input: the parser never throws, and its event log stays well formed.
// ---------------------------------------------------------------------------------------------

const FRAGMENTS = [
  'GET / HTTP/1.1\r\n', 'HTTP/1.1 200 OK\r\n', 'HTTP/1.0 101 x\r\n', 'HTTP/1.1 100 Continue\r\n\r\n', 'CONNECT a:1 HTTP/1.1\r\n',
  'Content-Length: 5\r\n', 'Content-Length: 99999999999999\r\n', 'Content-Length: 3, 4\r\n', 'Transfer-Encoding: chunked\r\n',
  'Transfer-Encoding: gzip\r\n', 'Connection: Upgrade\r\n', 'Keep-Alive: timeout=5, max=1\r\n', ' folded\r\n', '\r\n', '\n', '\r',
  '5\r\nhello\r\n', '0\r\n\r\n', 'ffffffffffffffffff\r\n', ';ext\r\n', 'PRI * HTTP/2.0\r\n', '\x16\x03\x01', 'HTTP/', 'GE', ':', ' ',
];

function hostileInput(rnd: () => number): Buffer {
  const parts: Buffer[] = [];
  const n = 1 + Math.floor(rnd() * 12);
  for (let i = 0; i < n; i++) {
    if (rnd() < 0.5) parts.push(bytes(FRAGMENTS[Math.floor(rnd() * FRAGMENTS.length)]));
    else {
      const b = Buffer.alloc(Math.floor(rnd() * 40));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      parts.push(b);
    }
  }
  return Buffer.concat(parts);
}

describe('HttpStreamParser: hostile input', () => {
  const modes = [Mode.Detect, Mode.Request, Mode.Response];

  for (const mode of modes) {
    for (const fromStart of [true, false]) {
      it(`never throws on random bytes, gaps and ends (mode ${['Detect', 'Request', 'Response'][mode]}, fromStart ${fromStart})`, () => {
        const rnd = prng(0xc0ffee + mode * 7 + (fromStart ? 1 : 0));
        for (let iter = 0; iter < 2500; iter++) {
          const rec = new Recorder(['GET', 'HEAD', 'CONNECT', 'GET']);
          const p = new HttpStreamParser(1, mode, rec, 32 + Math.floor(rnd() * 200), 64 + Math.floor(rnd() * 500), fromStart);
          const steps = 1 + Math.floor(rnd() * 8);
          for (let s = 0; s < steps; s++) {
            const r = rnd();
            if (r < 0.75) {
              const buf = hostileInput(rnd);
              const off = Math.floor(rnd() * (buf.length + 1));
              const len = Math.floor(rnd() * (buf.length - off + 1));
              p.data(buf, off, len, s);
            } else if (r < 0.9) p.gap(1 + Math.floor(rnd() * 100), s);
            else if (r < 0.95) p.upgradeRefused();
            else p.end(s);
          }
          p.end(99);
          const log = rec.log;
          const heads = log.filter((e) => e.startsWith('head')).length;
          const completes = log.filter((e) => e.startsWith('complete')).length;
          expect(completes).toBeLessThanOrEqual(heads);
          const dead = log.findIndex((e) => e.startsWith('notHttp'));
          if (dead >= 0) expect(log.slice(dead + 1).filter((e) => !e.startsWith('anomaly'))).toEqual([]);
        }
      });
    }
  }

  it('never throws on any single byte value at the start of a stream, in every mode', () => {
    for (const mode of modes) {
      for (let b = 0; b < 256; b++) {
        const p = newParser({ mode }, new Recorder());
        expect(() => {
          p.data(Buffer.from([b]), 0, 1, 1);
          p.gap(5, 2);
          p.end(3);
        }).not.toThrow();
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Property: any sequence of well-formed messages gives the same event log however it is split.
// ---------------------------------------------------------------------------------------------

function randomBody(rnd: () => number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(rnd() < 0.1 ? 10 : 32 + Math.floor(rnd() * 95));
  return s;
}

function randomChunked(rnd: () => number): string {
  let s = '';
  const chunks = Math.floor(rnd() * 4);
  for (let i = 0; i < chunks; i++) {
    const n = 1 + Math.floor(rnd() * 40);
    const size = rnd() < 0.5 ? n.toString(16) : n.toString(16).toUpperCase();
    s += `${size}${rnd() < 0.3 ? ';ext=1' : ''}\r\n${randomBody(rnd, n)}\r\n`;
  }
  return s + '0\r\n' + (rnd() < 0.3 ? 'Trailer-Field: x\r\n' : '') + '\r\n';
}

/** A random exchange sequence: the request stream, the response stream, and the expected logs. */
function randomExchanges(rnd: () => number): { req: string; res: string; methods: string[]; reqLog: string[]; resLog: string[] } {
  let req = '';
  let res = '';
  const methods: string[] = [];
  const reqLog: string[] = [];
  const resLog: string[] = [];
  const n = 1 + Math.floor(rnd() * 5);
  for (let i = 0; i < n; i++) {
    const kind = Math.floor(rnd() * 4);
    const method = ['GET', 'POST', 'HEAD', 'PUT'][kind];
    methods.push(method);
    if (method === 'POST') req += `POST /p${i} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n${randomChunked(rnd)}`;
    else if (method === 'PUT') {
      const body = randomBody(rnd, Math.floor(rnd() * 50));
      req += `PUT /u${i} HTTP/1.1\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    } else req += `${method} /r${i} HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n`;
    reqLog.push(`head req ${method}`, 'complete req');

    if (rnd() < 0.2) {
      res += 'HTTP/1.1 100 Continue\r\n\r\n';
      resLog.push('head res 100');
    }
    const r = rnd();
    if (method === 'HEAD') {
      res += `HTTP/1.1 200 OK\r\nContent-Length: ${Math.floor(rnd() * 1000)}\r\n\r\n`;
      resLog.push('head res 200');
    } else if (r < 0.15) {
      res += 'HTTP/1.1 204 No Content\r\n\r\n';
      resLog.push('head res 204');
    } else if (r < 0.3) {
      res += 'HTTP/1.1 304 Not Modified\r\nContent-Length: 77\r\n\r\n';
      resLog.push('head res 304');
    } else if (r < 0.65) {
      res += `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${randomChunked(rnd)}`;
      resLog.push('head res 200');
    } else {
      const body = randomBody(rnd, Math.floor(rnd() * 80));
      res += `HTTP/1.1 404 Not Found\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
      resLog.push('head res 404');
    }
    resLog.push('complete res');
  }
  return { req, res, methods, reqLog, resLog };
}

describe('HttpStreamParser: split invariance of random well-formed exchanges', () => {
  it('gives the same events for 500 random exchange sequences split at random places', () => {
    const rnd = prng(20240601);
    for (let iter = 0; iter < 500; iter++) {
      const ex = randomExchanges(rnd);
      for (const [stream, expected, o] of [
        [ex.req, ex.reqLog, { mode: Mode.Request }],
        [ex.res, ex.resLog, { mode: Mode.Response, methods: ex.methods }],
        [ex.req, ex.reqLog, { mode: Mode.Detect }],
      ] as const) {
        const buf = bytes(stream);
        expect(feed(o, [buf]).log).toEqual(expected);
        const cuts = new Set<number>();
        const k = Math.floor(rnd() * 12);
        for (let j = 0; j < k; j++) cuts.add(1 + Math.floor(rnd() * (buf.length - 1)));
        const sorted = [...cuts].sort((a, b) => a - b);
        expect(feed(o, splitAt(buf, sorted)).log, `iteration ${iter}, split at ${sorted.join(',')}`).toEqual(expected);
      }
    }
  });
});

describe('HttpStreamParser: a start cut by a segment end', () => {
  it('reports the same lost framing whether a non-HTTP line after a message arrives whole or split', () => {
    const junk = 'SSH-2.0-OpenSSH_9.2\r\n';
    const whole = feed({}, [bytes(REQ_GET), bytes(junk), bytes(REQ_GET)]).log;
    expect(whole).toEqual(['head req GET', 'complete req', 'anomaly http_resync', 'head req GET', 'complete req']);
    for (let i = 1; i < junk.length; i++) {
      expect(feed({}, [bytes(REQ_GET), bytes(junk.slice(0, i)), bytes(junk.slice(i)), bytes(REQ_GET)]).log, `split at ${i}`).toEqual(whole);
    }
  });

  it('keeps a method cut by the segment end as a possible start', () => {
    expect(feed({}, [bytes('GE'), bytes('T / HTTP/1.1\r\n\r\n')]).log).toEqual(['head req GET', 'complete req']);
    expect(feed(RES, [bytes('HTT'), bytes('P/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')]).log).toEqual(['head res 200', 'complete res']);
  });
});

describe('heads across segments within a shared memory budget', () => {
  const partial = Buffer.from('GET /a HTTP/1.1\r\nHost: example\r\nUser-Agent: t', 'latin1');
  const rest = Buffer.from('est\r\n\r\n', 'latin1');

  it('copies a cut head only while every parser together holds less than the budget', () => {
    const budget = { heldBytes: 0, maxBufferedBytes: 4096 };
    const recs = Array.from({ length: 6 }, () => new Recorder());
    const parsers = recs.map((r) => new HttpStreamParser(0, Mode.Request, r, 64 * 1024, 64 * 1024, true, budget));
    parsers.forEach((p, i) => p.data(partial, 0, partial.length, i));
    // 1 KiB copies: four fit in 4 KiB; the fifth and sixth report the request from what arrived.
    expect(budget.heldBytes).toBe(4096);
    expect(recs.slice(0, 4).map((r) => r.log)).toEqual([[], [], [], []]);
    for (const r of recs.slice(4)) expect(r.log).toEqual(['anomaly buffer_budget_exceeded', 'head req GET']);
    // The rest of the head completes the four that waited, and their copies go back to the budget.
    parsers.forEach((p, i) => p.data(rest, 0, rest.length, 10 + i));
    for (const r of recs.slice(0, 4)) expect(r.log).toEqual(['head req GET', 'complete req']);
    expect(budget.heldBytes).toBe(0);
  });

  it('a connection that ends with half a head gives its copy back', () => {
    const budget = { heldBytes: 0, maxBufferedBytes: 1 << 20 };
    const p = new HttpStreamParser(0, Mode.Request, new Recorder(), 64 * 1024, 64 * 1024, true, budget);
    p.data(partial, 0, partial.length, 1);
    expect(budget.heldBytes).toBeGreaterThan(0);
    p.release();
    expect(budget.heldBytes).toBe(0);
  });

  it('keeps no buffer for heads that fit one segment', () => {
    const budget = { heldBytes: 0, maxBufferedBytes: 1 << 20 };
    const rec = new Recorder();
    const p = new HttpStreamParser(0, Mode.Request, rec, 64 * 1024, 64 * 1024, true, budget);
    const whole = Buffer.concat([partial, rest]);
    for (let i = 0; i < 10; i++) p.data(whole, 0, whole.length, i);
    expect(rec.log.filter((e) => e === 'complete req')).toHaveLength(10);
    expect(budget.heldBytes).toBe(0);
  });
});
