import { describe, expect, it } from 'vitest';
import { parseHead, parseTruncatedHead, scanHead, headScan, wantsPersistence, type HeadResult, type MessageHead } from '../../src/http/head.js';

/** Parses a head given as lines; the terminating empty line is added. */
function parse(...lines: string[]): HeadResult {
  const buf = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  return parseHead(buf, 0, buf.length);
}

function head(...lines: string[]): MessageHead {
  const h = parse(...lines);
  if (typeof h === 'string') throw new Error(`expected a head, got ${h}`);
  return h;
}

describe('parseHead: start lines', () => {
  it('parses a request line into method and version 1.1', () => {
    const h = head('GET /index.html HTTP/1.1', 'Host: a');
    expect(h.isRequest).toBe(true);
    expect(h.method).toBe('GET');
    expect(h.minor).toBe(1);
    expect(h.status).toBe(0);
  });

  it('parses an HTTP/1.0 request line as minor version 0', () => {
    expect(head('POST /x HTTP/1.0').minor).toBe(0);
  });

  it('accepts any token as a method, including extension methods', () => {
    expect(head('M-SEARCH * HTTP/1.1').method).toBe('M-SEARCH');
    expect(head('PROPFIND /dav HTTP/1.1').method).toBe('PROPFIND');
  });

  it('parses a status line into status and version', () => {
    const h = head('HTTP/1.1 404 Not Found', 'Content-Length: 0');
    expect(h.isRequest).toBe(false);
    expect(h.status).toBe(404);
    expect(h.minor).toBe(1);
    expect(h.method).toBe('');
  });

  it('parses an HTTP/1.0 status line as minor version 0', () => {
    expect(head('HTTP/1.0 200 OK').minor).toBe(0);
  });

  it('accepts a status line without a reason phrase', () => {
    expect(head('HTTP/1.1 204').status).toBe(204);
    expect(head('HTTP/1.1 204 ').status).toBe(204);
  });

  it('accepts bare LF line endings', () => {
    const buf = Buffer.from('HTTP/1.1 200 OK\nContent-Length: 7\n\n');
    const h = parseHead(buf, 0, buf.length) as MessageHead;
    expect(h.status).toBe(200);
    expect(h.contentLength).toBe(7);
  });

  it('parses a head inside a larger buffer by offsets', () => {
    const buf = Buffer.from('garbageHTTP/1.1 301 Moved\r\nContent-Length: 3\r\n\r\nabc');
    const h = parseHead(buf, 7, buf.length - 3) as MessageHead;
    expect(h.status).toBe(301);
    expect(h.contentLength).toBe(3);
  });

  it('rejects an HTTP/2.0 request line as not_http1', () => {
    expect(parse('PRI * HTTP/2.0')).toBe('not_http1');
  });

  it('rejects an HTTP/2.0 status line as not_http1', () => {
    expect(parse('HTTP/2.0 200 OK')).toBe('not_http1');
  });

  it('rejects method characters outside the token set as malformed', () => {
    expect(parse('GE(T / HTTP/1.1')).toBe('http_malformed_head');
    expect(parse('G\u00e9T / HTTP/1.1')).toBe('http_malformed_head');
    expect(parse('GET\t/ HTTP/1.1')).toBe('http_malformed_head');
  });

  it('rejects a request line without a request target as malformed', () => {
    expect(parse('GET HTTP/1.1')).toBe('http_malformed_head');
  });

  it('rejects a request line without an HTTP version as malformed', () => {
    expect(parse('GET / FTP/1.1')).toBe('http_malformed_head');
  });

  it('rejects an unknown HTTP/1.x minor version as malformed', () => {
    expect(parse('HTTP/1.2 200 OK')).toBe('http_malformed_head');
  });

  it('rejects a status code that is not three digits as malformed', () => {
    expect(parse('HTTP/1.1 20 OK')).toBe('http_malformed_head');
    expect(parse('HTTP/1.1 abc OK')).toBe('http_malformed_head');
    expect(parse('HTTP/1.1 099 OK')).toBe('http_malformed_head');
    expect(parse('HTTP/1.1 1e2 OK')).toBe('http_malformed_head');
    expect(parse('HTTP/1.1 2000 OK')).toBe('http_malformed_head');
  });

  it('rejects a head with no line end at all as malformed', () => {
    const buf = Buffer.from('GET / HTTP/1.1');
    expect(parseHead(buf, 0, buf.length)).toBe('http_malformed_head');
  });
});

describe('parseHead: header fields', () => {
  it('matches field names case-insensitively', () => {
    const h = head('HTTP/1.1 200 OK', 'CONTENT-LENGTH: 12', 'connection: Close');
    expect(h.contentLength).toBe(12);
    expect(h.close).toBe(true);
  });

  it('trims optional whitespace around field values', () => {
    expect(head('HTTP/1.1 200 OK', 'Content-Length:    42   ').contentLength).toBe(42);
    expect(head('HTTP/1.1 200 OK', 'Content-Length:\t42').contentLength).toBe(42);
  });

  it('flags whitespace between a field name and the colon, keeping the message but not its framing', () => {
    const h = head('HTTP/1.1 200 OK', 'Content-Length : 5');
    expect(h.fieldError).toBe('http_malformed_head');
    expect(h.status).toBe(200);
    expect(h.contentLength).toBe(-1);
    expect(head('GET / HTTP/1.1', 'X-Thing\t: 1').fieldError).toBe('http_malformed_head');
  });

  it('flags a field line without a colon, keeping the request line', () => {
    const h = head('GET / HTTP/1.1', 'Host a');
    expect(h.fieldError).toBe('http_malformed_head');
    expect(h.isRequest).toBe(true);
    expect(h.method).toBe('GET');
    expect(h.minor).toBe(1);
  });

  it('reports a well-formed head with no field error', () => {
    expect(head('GET / HTTP/1.1', 'Host: a').fieldError).toBe('');
  });

  it('keeps the persistence fields read before a bad line, and reads none after it', () => {
    const h = head('GET / HTTP/1.0', 'Connection: keep-alive', 'Keep-Alive: timeout=5', 'broken', 'Connection: close', 'Content-Length: 3');
    expect(h.fieldError).toBe('http_malformed_head');
    expect(h.keepAlive).toBe(true);
    expect(h.kaTimeout).toBe(5);
    expect(h.close).toBe(false);
    expect(h.contentLength).toBe(-1);
  });

  it('drops framing read before a bad line (the body cannot be delimited)', () => {
    const h = head('POST / HTTP/1.1', 'Content-Length: 3', 'Transfer-Encoding: chunked', 'bad line');
    expect(h.fieldError).toBe('http_malformed_head');
    expect(h.contentLength).toBe(-1);
    expect(h.transferEncoding).toBe(false);
    expect(h.chunked).toBe(false);
  });

  it('finds the end of a head with a bad line in one scan, as for a good head', () => {
    const buf = Buffer.from('GET / HTTP/1.1\r\nbad\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n\r\n', 'latin1');
    const h = scanHead(buf, 0, buf.length);
    expect(typeof h === 'object' && h.fieldError).toBe('http_malformed_head');
    expect(headScan.end).toBe(buf.indexOf('GET /next'));
    expect(scanHead(buf, 0, buf.indexOf('Host'))).toBe('incomplete');
  });

  it('still rejects a start line that is not HTTP/1.x, whatever the fields', () => {
    expect(parse('GARBAGE', 'bad line')).toBe('http_malformed_head');
    expect(parse('GET / HTTP/2.0', 'bad line')).toBe('not_http1');
  });

  it('collects Connection tokens from every Connection field', () => {
    const h = head('GET / HTTP/1.1', 'Connection: keep-alive', 'Connection: Upgrade');
    expect(h.keepAlive).toBe(true);
    expect(h.upgrade).toBe(true);
    expect(h.close).toBe(false);
  });

  it('splits a Connection token list such as "Keep-Alive, Upgrade"', () => {
    const h = head('GET /ws HTTP/1.1', 'Connection: Keep-Alive, Upgrade');
    expect(h.keepAlive).toBe(true);
    expect(h.upgrade).toBe(true);
  });

  it('finds close in a Connection list with other tokens and odd spacing', () => {
    const h = head('HTTP/1.1 200 OK', 'Connection:TE ,  CLOSE ,x-foo');
    expect(h.close).toBe(true);
    expect(h.keepAlive).toBe(false);
  });

  it('ignores Connection tokens that merely contain a known token', () => {
    const h = head('HTTP/1.1 200 OK', 'Connection: closed, keep-alive-ish');
    expect(h.close).toBe(false);
    expect(h.keepAlive).toBe(false);
  });

  it('treats Proxy-Connection like Connection', () => {
    expect(head('GET / HTTP/1.0', 'Proxy-Connection: Keep-Alive').keepAlive).toBe(true);
  });

  it('continues an obs-fold line as part of the previous field value', () => {
    const h = head('GET / HTTP/1.1', 'Connection: keep-alive,', ' close');
    expect(h.keepAlive).toBe(true);
    expect(h.close).toBe(true);
  });

  it('continues an obs-fold line that starts with a tab', () => {
    const h = head('HTTP/1.1 200 OK', 'Transfer-Encoding: gzip,', '\tchunked');
    expect(h.chunked).toBe(true);
  });

  it('consumes a whitespace-preceded line right after the start line without processing it (RFC 9112 2.2)', () => {
    const h = parse('GET / HTTP/1.1', ' Connection: close', 'Host: a');
    if (typeof h !== 'string') expect(h.close).toBe(false);
    else expect(h).toBe('http_malformed_head'); // rejecting the message is the other conforming choice
  });

  it('does not apply an obs-fold line to an unrelated field before it', () => {
    expect(head('GET / HTTP/1.1', 'X-Note: a,', ' close').close).toBe(false);
  });

  it('reports absent Content-Length, Keep-Alive and Transfer-Encoding as -1 / false', () => {
    const h = head('HTTP/1.1 200 OK', 'Server: x');
    expect(h.contentLength).toBe(-1);
    expect(h.kaTimeout).toBe(-1);
    expect(h.kaMax).toBe(-1);
    expect(h.transferEncoding).toBe(false);
    expect(h.chunked).toBe(false);
    expect(h.close).toBe(false);
    expect(h.keepAlive).toBe(false);
    expect(h.upgrade).toBe(false);
  });
});

describe('parseHead: Keep-Alive parameters', () => {
  it('reads timeout and max from "timeout=5, max=100"', () => {
    const h = head('HTTP/1.1 200 OK', 'Keep-Alive: timeout=5, max=100');
    expect(h.kaTimeout).toBe(5);
    expect(h.kaMax).toBe(100);
  });

  it('reads parameters with any case and spaces around "="', () => {
    const h = head('HTTP/1.1 200 OK', 'keep-alive:  Timeout = 2 ,MAX= 3 ');
    expect(h.kaTimeout).toBe(2);
    expect(h.kaMax).toBe(3);
  });

  it('reads timeout alone, as nginx sends it', () => {
    const h = head('HTTP/1.1 200 OK', 'Keep-Alive: timeout=2');
    expect(h.kaTimeout).toBe(2);
    expect(h.kaMax).toBe(-1);
  });

  it('ignores unknown and valueless parameters', () => {
    const h = head('HTTP/1.1 200 OK', 'Keep-Alive: foo=1, bar, max=7');
    expect(h.kaTimeout).toBe(-1);
    expect(h.kaMax).toBe(7);
  });

  it('ignores non-numeric and negative values', () => {
    const h = head('HTTP/1.1 200 OK', 'Keep-Alive: timeout=soon, max=-1');
    expect(h.kaTimeout).toBe(-1);
    expect(h.kaMax).toBe(-1);
  });

  it('reads quoted parameter values', () => {
    const h = head('HTTP/1.1 200 OK', 'Keep-Alive: timeout="15", max="4"');
    expect(h.kaTimeout).toBe(15);
    expect(h.kaMax).toBe(4);
  });

  it('ignores an empty value rather than reading it as zero', () => {
    const h = head('HTTP/1.1 200 OK', 'Keep-Alive: timeout=, max=');
    expect(h.kaTimeout).toBe(-1);
    expect(h.kaMax).toBe(-1);
  });
});

describe('parseHead: Content-Length', () => {
  it('reads a single Content-Length', () => {
    expect(head('HTTP/1.1 200 OK', 'Content-Length: 0').contentLength).toBe(0);
    expect(head('HTTP/1.1 200 OK', 'Content-Length: 123456').contentLength).toBe(123456);
  });

  it('accepts repeated identical Content-Length fields', () => {
    expect(head('HTTP/1.1 200 OK', 'Content-Length: 5', 'Content-Length: 5').contentLength).toBe(5);
  });

  it('accepts an identical Content-Length list in one field', () => {
    expect(head('HTTP/1.1 200 OK', 'Content-Length: 5, 5').contentLength).toBe(5);
  });

  /** The field error of a head that must still be reported as a message. */
  const clError = (...fields: string[]): string => {
    const h = head('HTTP/1.1 400 Bad Request', ...fields);
    expect(h.status).toBe(400);
    expect(h.contentLength).toBe(-1);
    return h.fieldError;
  };

  it('flags differing repeated Content-Length fields', () => {
    expect(clError('Content-Length: 5', 'Content-Length: 6')).toBe('http_bad_content_length');
  });

  it('flags a differing Content-Length list in one field', () => {
    expect(clError('Content-Length: 5, 6')).toBe('http_bad_content_length');
  });

  it('flags non-digit, signed and empty Content-Length values', () => {
    expect(clError('Content-Length: 5a')).toBe('http_bad_content_length');
    expect(clError('Content-Length: -1')).toBe('http_bad_content_length');
    expect(clError('Content-Length: +1')).toBe('http_bad_content_length');
    expect(clError('Content-Length:')).toBe('http_bad_content_length');
    expect(clError('Content-Length: 0x10')).toBe('http_bad_content_length');
  });

  it('accepts any number of leading zeros (RFC 9110 8.6: 1*DIGIT)', () => {
    expect(head('HTTP/1.1 200 OK', 'Content-Length: 00000000000000000000000000000050').contentLength).toBe(50);
    expect(head('HTTP/1.1 200 OK', 'Content-Length: 007').contentLength).toBe(7);
    expect(head('HTTP/1.1 200 OK', `Content-Length: ${'0'.repeat(200)}`).contentLength).toBe(0);
    expect(head('HTTP/1.1 200 OK', 'Content-Length: 05, 5').contentLength).toBe(5);
    expect(head('HTTP/1.1 200 OK', 'Content-Length: 0005', 'Content-Length: 5').contentLength).toBe(5);
  });

  it('accepts every exact (safe) integer, the largest included', () => {
    expect(head('HTTP/1.1 200 OK', 'Content-Length: 1234567890123456').contentLength).toBe(1234567890123456);
    expect(head('HTTP/1.1 200 OK', `Content-Length: 000${Number.MAX_SAFE_INTEGER}`).contentLength).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('flags a Content-Length too large to be counted exactly', () => {
    expect(clError(`Content-Length: ${Number.MAX_SAFE_INTEGER + 1}`)).toBe('http_bad_content_length');
    expect(clError('Content-Length: 99999999999999999999')).toBe('http_bad_content_length');
    expect(clError(`Content-Length: 0000${'9'.repeat(40)}`)).toBe('http_bad_content_length');
  });

  it('keeps Connection: close read before a bad Content-Length (nginx answers such a 400 with close)', () => {
    const h = head('HTTP/1.1 400 Bad Request', 'Connection: close', 'Content-Length: -1');
    expect(h.fieldError).toBe('http_bad_content_length');
    expect(h.close).toBe(true);
  });
});

describe('parseHead: Transfer-Encoding', () => {
  it('marks "chunked" as chunked', () => {
    const h = head('HTTP/1.1 200 OK', 'Transfer-Encoding: chunked');
    expect(h.transferEncoding).toBe(true);
    expect(h.chunked).toBe(true);
  });

  it('marks "gzip, chunked" as chunked: chunked is the final coding', () => {
    expect(head('HTTP/1.1 200 OK', 'Transfer-Encoding: gzip, chunked').chunked).toBe(true);
  });

  it('marks "chunked, gzip" as not chunked: chunked is not the final coding', () => {
    const h = head('HTTP/1.1 200 OK', 'Transfer-Encoding: chunked, gzip');
    expect(h.transferEncoding).toBe(true);
    expect(h.chunked).toBe(false);
  });

  it('matches the chunked coding case-insensitively', () => {
    expect(head('HTTP/1.1 200 OK', 'Transfer-Encoding: Chunked').chunked).toBe(true);
  });

  it('takes the final coding across repeated Transfer-Encoding fields', () => {
    expect(head('HTTP/1.1 200 OK', 'Transfer-Encoding: gzip', 'Transfer-Encoding: chunked').chunked).toBe(true);
    expect(head('HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', 'Transfer-Encoding: gzip').chunked).toBe(false);
  });

  it('ignores empty list elements after the final coding', () => {
    expect(head('HTTP/1.1 200 OK', 'Transfer-Encoding: gzip, chunked,').chunked).toBe(true);
  });

  it('reports Transfer-Encoding and Content-Length together, for the framer to prefer chunked', () => {
    const h = head('HTTP/1.1 200 OK', 'Content-Length: 10', 'Transfer-Encoding: chunked');
    expect(h.chunked).toBe(true);
    expect(h.contentLength).toBe(10);
  });
});

describe('parseTruncatedHead', () => {
  it('reports a head cut by the capture after a bad complete line, flagged', () => {
    const buf = Buffer.from('GET / HTTP/1.1\r\nno colon here\r\nHost: exa', 'latin1');
    const h = parseTruncatedHead(buf, 0, buf.length);
    expect(h?.method).toBe('GET');
    expect(h?.fieldError).toBe('http_malformed_head');
  });

  it('does not flag a head merely cut mid-line (truncated is not malformed)', () => {
    const buf = Buffer.from('GET / HTTP/1.1\r\nHost: example.test\r\nContent-Len', 'latin1');
    expect(parseTruncatedHead(buf, 0, buf.length)?.fieldError).toBe('');
  });
});

describe('wantsPersistence', () => {
  it('is true for HTTP/1.1 without Connection', () => {
    expect(wantsPersistence(head('GET / HTTP/1.1'))).toBe(true);
  });

  it('is false for HTTP/1.1 with Connection: close', () => {
    expect(wantsPersistence(head('GET / HTTP/1.1', 'Connection: close'))).toBe(false);
  });

  it('is true for HTTP/1.1 with Connection: keep-alive', () => {
    expect(wantsPersistence(head('HTTP/1.1 200 OK', 'Connection: keep-alive'))).toBe(true);
  });

  it('is false for HTTP/1.0 without Connection', () => {
    expect(wantsPersistence(head('GET / HTTP/1.0'))).toBe(false);
  });

  it('is true for HTTP/1.0 with Connection: keep-alive', () => {
    expect(wantsPersistence(head('GET / HTTP/1.0', 'Connection: Keep-Alive'))).toBe(true);
  });

  it('is false for HTTP/1.0 with Connection: close', () => {
    expect(wantsPersistence(head('HTTP/1.0 200 OK', 'Connection: close'))).toBe(false);
  });

  it('lets close win over keep-alive in the same head', () => {
    expect(wantsPersistence(head('GET / HTTP/1.0', 'Connection: keep-alive', 'Connection: close'))).toBe(false);
  });
});
