/**
 * Protocol detection, the stage before a session is chosen (Zeek's dynamic protocol detection,
 * by content, never by port): the first bytes of a stream seen from its start say which session
 * parses the connection. A pure function of (buffer, offset, end); it never throws.
 */

/** The h2c connection preface a client sends first (RFC 9113 section 3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type DetectedProtocol =
  /** a TLS record (handshake or alert, version 3.x) */
  | 'tls'
  /** the HTTP/2 prior-knowledge preface, or as much of it as there is */
  | 'http2'
  /** anything else: the HTTP/1 session takes it, and says "not HTTP" itself if it is not */
  | 'http1';

export function detectProtocol(buf: Buffer, p: number, end: number): DetectedProtocol {
  if (end <= p) return 'http1';
  // TLS record: handshake (22) or alert (21), version 3.x. (A lone first byte cannot show the
  // version: take it as TLS too, as the full record would be.)
  const c = buf[p];
  if ((c === 22 || c === 21) && (end - p === 1 || buf[p + 1] === 3)) return 'tls';
  // "PRI * HTTP/2" is enough: the rest of the preface adds nothing an HTTP/1 request could share.
  // Fewer bytes than that stay HTTP/1's to decide ("PRI" is a valid method token).
  if (end - p >= 12 && buf.toString('latin1', p, p + 12) === 'PRI * HTTP/2') return 'http2';
  return 'http1';
}

/**
 * A server that speaks first with an HTTP/2 SETTINGS frame on stream 0 (Node.js's http2 server
 * sends its SETTINGS the moment it accepts, before the client's preface is captured). Nine bytes
 * decide: type 4, no flags, stream 0, a length that is a multiple of 6 and at most 16 settings.
 */
export function isH2ServerGreeting(buf: Buffer, p: number, end: number): boolean {
  if (end - p < 9) return false;
  const len = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2];
  return buf[p + 3] === 4 && buf[p + 4] === 0 && buf.readUInt32BE(p + 5) === 0 && len % 6 === 0 && len <= 96;
}
