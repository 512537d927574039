/**
 * Protocol detection: the first bytes of a stream seen from its start choose the session, by
 * content and never by port.
 */
import { describe, expect, it } from 'vitest';
import { H2_PREFACE, detectProtocol } from '../../src/session/detect.js';

const d = (s: string | Buffer) => {
  const b = typeof s === 'string' ? Buffer.from(s, 'latin1') : s;
  return detectProtocol(b, 0, b.length);
};

describe('detectProtocol', () => {
  it('an HTTP/1 request or status line, or anything unknown, goes to the HTTP/1 session (it tells "other" itself)', () => {
    expect(d('GET / HTTP/1.1\r\n')).toBe('http1');
    expect(d('HTTP/1.1 200 OK\r\n')).toBe('http1');
    expect(d('SSH-2.0-OpenSSH_9.2\r\n')).toBe('http1');
    expect(d('')).toBe('http1');
  });

  it('a TLS handshake or alert record (version 3.x), even as its lone first byte', () => {
    expect(d(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x30]))).toBe('tls');
    expect(d(Buffer.from([0x15, 0x03, 0x03]))).toBe('tls');
    expect(d(Buffer.from([0x16]))).toBe('tls');
    expect(d(Buffer.from([0x16, 0x02]))).toBe('http1');
  });

  it('the h2c preface once "PRI * HTTP/2" is there; fewer bytes stay HTTP/1\'s to decide (PRI is a valid method)', () => {
    expect(d(H2_PREFACE)).toBe('http2');
    expect(d(H2_PREFACE.subarray(0, 12))).toBe('http2');
    expect(d(H2_PREFACE.subarray(0, 11))).toBe('http1');
    expect(d('PRI /x HTTP/1.1\r\n')).toBe('http1');
  });

  it('reads only [offset, end) and never throws', () => {
    const b = Buffer.concat([Buffer.from('xx'), H2_PREFACE]);
    expect(detectProtocol(b, 2, b.length)).toBe('http2');
    expect(detectProtocol(b, 0, b.length)).toBe('http1');
    for (let n = 0; n < 40; n++) expect(() => detectProtocol(Buffer.alloc(n, 0x16), 0, n)).not.toThrow();
  });
});
