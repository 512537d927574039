/**
 * Parsing one HTTP/1.x message head (start line and header fields), already delimited, straight
 * from the bytes: no string is made for a head unless its method is unusual. Only the fields that
 * decide framing and persistence are read (Connection, Proxy-Connection, Keep-Alive,
 * Content-Length, Transfer-Encoding); every other field is skipped after a one-byte filter.
 */

export interface MessageHead {
  isRequest: boolean;
  /** Request method, e.g. "GET"; "" for responses. */
  method: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** Response status code; 0 for requests. */
  status: number;
  /** `Connection` tokens (RFC 9110 7.6.1), from every Connection field. */
  close: boolean;
  keepAlive: boolean;
  upgrade: boolean;
  /** `Upgrade: h2c` (RFC 7540 3.2): on a request, asked; on a 101, granted. */
  upgradeH2c: boolean;
  /** `Keep-Alive: timeout=, max=` parameters (RFC 2068 19.7.1); -1 when absent. */
  kaTimeout: number;
  kaMax: number;
  /** -1 when absent. */
  contentLength: number;
  /** Transfer-Encoding present; `chunked` when its last coding is chunked (RFC 9112 6.3). */
  transferEncoding: boolean;
  chunked: boolean;
  /**
   * '' for a well-formed head. Otherwise the start line was a valid HTTP/1.x request or status
   * line but a field line was not (no colon, whitespace before the colon: RFC 9112 5.1) or
   * Content-Length was invalid (RFC 9110 8.6). The message is real (a server answers it, nginx
   * with a 400 and Connection: close), so it is reported; but its body cannot be delimited
   * (contentLength -1, transferEncoding false), and the persistence fields hold only what the
   * lines before the bad one said. The name is the anomaly to count.
   */
  fieldError: FieldError;
}

export type FieldError = '' | 'http_malformed_head' | 'http_bad_content_length';
export type HeadResult = MessageHead | HeadError;
/** A start line that is not HTTP/1.x at all: there is no message to report. */
export type HeadError = 'http_malformed_head' | 'not_http1';

const SP = 32;
const HT = 9;
const CR = 13;
const LF = 10;
const COLON = 58;
const COMMA = 44;

/** RFC 9110 5.6.2 token characters, for the method. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

/** Registered methods as interned strings, so the common case makes no string. */
const METHODS = ['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'].map((m) => ({ m, b: Buffer.from(m, 'latin1') }));

const NAME_CONNECTION = Buffer.from('connection');
const NAME_PROXY_CONNECTION = Buffer.from('proxy-connection');
const NAME_KEEP_ALIVE = Buffer.from('keep-alive');
const NAME_CONTENT_LENGTH = Buffer.from('content-length');
const NAME_TRANSFER_ENCODING = Buffer.from('transfer-encoding');
const TOK_CLOSE = Buffer.from('close');
const TOK_KEEP_ALIVE = NAME_KEEP_ALIVE;
const TOK_UPGRADE = Buffer.from('upgrade');
const NAME_UPGRADE = TOK_UPGRADE;
const TOK_H2C = Buffer.from('h2c');
const TOK_CHUNKED = Buffer.from('chunked');
const TOK_TIMEOUT = Buffer.from('timeout');
const TOK_MAX = Buffer.from('max');

/** Case-insensitive compare of buf[p, p + lower.length) with a lower-case ASCII name. */
function eqLower(buf: Buffer, p: number, end: number, lower: Buffer): boolean {
  const n = lower.length;
  if (end - p !== n) return false;
  for (let i = 0; i < n; i++) {
    const c = buf[p + i];
    if ((c >= 65 && c <= 90 ? c | 0x20 : c) !== lower[i]) return false;
  }
  return true;
}

export function newHead(): MessageHead {
  return {
    isRequest: false, method: '', minor: 1, status: 0,
    close: false, keepAlive: false, upgrade: false, upgradeH2c: false,
    kaTimeout: -1, kaMax: -1, contentLength: -1, transferEncoding: false, chunked: false, fieldError: '',
  };
}

const enum Field { None, Connection, KeepAlive, ContentLength, TransferEncoding, Upgrade }

/** Where the last successful `scanHead` found the end of its head (just after the empty line). */
export const headScan = { end: -1 };

/** Parses a head already delimited by the caller: the range ends with (or at) the head's end. */
export function parseHead(buf: Buffer, start: number, end: number): HeadResult {
  const h = parseHeadAt(buf, start, end, false);
  return h === 'incomplete' ? 'http_malformed_head' : h;
}

/**
 * Parses the head that starts at `start` while looking for its end, in one pass: 'incomplete'
 * when the range ends first. On success (a head, `fieldError` set or not) `headScan.end` is set.
 * Start-line errors may be found before the end of the head is known (then `headScan.end` is -1).
 */
export function scanHead(buf: Buffer, start: number, end: number, into: MessageHead | null = null): HeadResult | 'incomplete' {
  return parseHeadAt(buf, start, end, true, into);
}

/** Every field of `h` as `newHead` makes them. */
function resetHead(h: MessageHead): MessageHead {
  h.isRequest = false; h.method = ''; h.minor = 1; h.status = 0;
  h.close = false; h.keepAlive = false; h.upgrade = false; h.upgradeH2c = false;
  h.kaTimeout = -1; h.kaMax = -1; h.contentLength = -1; h.transferEncoding = false; h.chunked = false; h.fieldError = '';
  return h;
}

/** `into`: a head to fill instead of a new one (the caller's scratch; see HttpStreamParser.readHead). */
function parseHeadAt(buf: Buffer, start: number, end: number, needEnd: boolean, into: MessageHead | null = null): HeadResult | 'incomplete' {
  headScan.end = -1;
  let lineEnd = start;
  while (lineEnd < end && buf[lineEnd] !== LF) lineEnd++;
  if (lineEnd >= end) return needEnd ? 'incomplete' : 'http_malformed_head';
  let lineStop = lineEnd > start && buf[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
  const head = into ? resetHead(into) : newHead();
  if (buf[start] === 72 && buf[start + 1] === 84 && buf[start + 2] === 84 && buf[start + 3] === 80 && buf[start + 4] === 47) {
    // status-line = HTTP-version SP status-code SP [ reason-phrase ]
    if (lineStop - start < 12 || buf[start + 8] !== SP) return 'http_malformed_head';
    if (buf[start + 5] !== 49 || buf[start + 6] !== 46) return 'not_http1'; // "1."
    const minor = buf[start + 7] - 48;
    if (minor !== 0 && minor !== 1) return 'http_malformed_head';
    const d0 = buf[start + 9] - 48, d1 = buf[start + 10] - 48, d2 = buf[start + 11] - 48;
    if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return 'http_malformed_head';
    if (lineStop - start > 12 && buf[start + 12] !== SP) return 'http_malformed_head';
    head.minor = minor;
    head.status = d0 * 100 + d1 * 10 + d2;
  } else {
    // request-line = method SP request-target SP HTTP-version
    let p = start;
    while (p < lineStop && TCHAR[buf[p]]) p++;
    if (p === start || p >= lineStop || buf[p] !== SP) return 'http_malformed_head';
    const methodEnd = p;
    // "HTTP/1.x" ends the line, after a space
    const v = lineStop - 8;
    if (v <= methodEnd + 1 || buf[v - 1] !== SP) return 'http_malformed_head';
    if (buf[v] !== 72 || buf[v + 1] !== 84 || buf[v + 2] !== 84 || buf[v + 3] !== 80 || buf[v + 4] !== 47) return 'http_malformed_head';
    if (buf[v + 5] !== 49 || buf[v + 6] !== 46) return 'not_http1';
    const minor = buf[v + 7] - 48;
    if (minor !== 0 && minor !== 1) return 'http_malformed_head';
    head.isRequest = true;
    head.minor = minor;
    head.method = methodName(buf, start, methodEnd);
  }

  // Header fields: one pass over the bytes finds each line's end and its first colon.
  let field = Field.None;
  let p = lineEnd + 1;
  while (p < end) {
    const lineStart = p;
    // The first colon, then the line's end: the value's bytes get one comparison each, not two.
    let colon = -1;
    while (p < end) {
      const c = buf[p];
      if (c === COLON) {
        colon = p;
        p++;
        while (p < end && buf[p] !== LF) p++;
        break;
      }
      if (c === LF) break;
      p++;
    }
    lineEnd = p;
    p++;
    if (lineEnd >= end && needEnd) return 'incomplete';
    lineStop = lineEnd > lineStart && buf[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
    if (lineStop <= lineStart) {
      headScan.end = p; // just after the empty line ending the head
      return head;
    }
    // After a bad field line the rest of the head is only delimited, not read (see fieldError).
    if (head.fieldError !== '') continue;
    const first = buf[lineStart];
    let vStart: number;
    if (first === SP || first === HT) {
      // obs-fold (RFC 9112 5.2): continues the previous field's value
      vStart = lineStart;
    } else {
      if (colon <= lineStart || colon >= lineStop) {
        badField(head, 'http_malformed_head');
        continue;
      }
      const last = buf[colon - 1];
      if (last === SP || last === HT) {
        badField(head, 'http_malformed_head'); // RFC 9112 5.1: no whitespace before the colon
        continue;
      }
      const c = first | 0x20;
      const nameLen = colon - lineStart;
      field = Field.None;
      // One-byte and length filter before comparing names.
      if (c === 99) {
        if (nameLen === 10 && eqLower(buf, lineStart, colon, NAME_CONNECTION)) field = Field.Connection;
        else if (nameLen === 14 && eqLower(buf, lineStart, colon, NAME_CONTENT_LENGTH)) field = Field.ContentLength;
      } else if (c === 107) {
        if (nameLen === 10 && eqLower(buf, lineStart, colon, NAME_KEEP_ALIVE)) field = Field.KeepAlive;
      } else if (c === 116) {
        if (nameLen === 17 && eqLower(buf, lineStart, colon, NAME_TRANSFER_ENCODING)) field = Field.TransferEncoding;
      } else if (c === 117) {
        if (nameLen === 7 && eqLower(buf, lineStart, colon, NAME_UPGRADE)) field = Field.Upgrade;
      } else if (c === 112) {
        // Proxy-Connection: sent by old clients in place of Connection
        if (nameLen === 16 && eqLower(buf, lineStart, colon, NAME_PROXY_CONNECTION)) field = Field.Connection;
      }
      vStart = colon + 1;
    }
    if (field !== Field.None && !fieldValue(field, buf, vStart, lineStop, head)) badField(head, 'http_bad_content_length');
  }
  if (needEnd) return 'incomplete';
  headScan.end = end;
  return head;
}

/**
 * The head's first bad field line: framing is unknown from here on. What earlier lines said about
 * persistence stays (nginx reads them too before it answers 400); framing fields are dropped.
 */
function badField(head: MessageHead, error: FieldError): void {
  head.fieldError = error;
  head.contentLength = -1;
  head.transferEncoding = false;
  head.chunked = false;
}

/**
 * Reads one field value's comma-separated elements (RFC 9110 5.6.1) into the head.
 * Returns false for an invalid Content-Length.
 */
function fieldValue(field: Field, buf: Buffer, p: number, end: number, head: MessageHead): boolean {
  let ok = true;
  let elements = 0;
  while (p <= end) {
    let comma = p;
    while (comma < end && buf[comma] !== COMMA) comma++;
    let s = p;
    let e = comma;
    p = comma + 1;
    while (s < e && (buf[s] === SP || buf[s] === HT)) s++;
    while (e > s && (buf[e - 1] === SP || buf[e - 1] === HT)) e--;
    if (e === s) continue;
    elements++;
    switch (field) {
      case Field.Connection:
        if (eqLower(buf, s, e, TOK_CLOSE)) head.close = true;
        else if (eqLower(buf, s, e, TOK_KEEP_ALIVE)) head.keepAlive = true;
        else if (eqLower(buf, s, e, TOK_UPGRADE)) head.upgrade = true;
        break;
      case Field.KeepAlive:
        keepAliveParam(buf, s, e, head);
        break;
      case Field.Upgrade:
        if (eqLower(buf, s, e, TOK_H2C)) head.upgradeH2c = true;
        break;
      case Field.ContentLength: {
        // A list of identical values is allowed (RFC 9110 8.6); differing values are an error.
        const n = decimal(buf, s, e);
        if (n < 0 || (head.contentLength >= 0 && head.contentLength !== n)) ok = false;
        else head.contentLength = n;
        break;
      }
      case Field.TransferEncoding: {
        // The last coding decides (RFC 9112 6.3); a coding may carry parameters after ';'.
        let semi = s;
        while (semi < e && buf[semi] !== 59) semi++;
        while (semi > s && (buf[semi - 1] === SP || buf[semi - 1] === HT)) semi--;
        head.transferEncoding = true;
        head.chunked = eqLower(buf, s, semi, TOK_CHUNKED);
        break;
      }
    }
  }
  if (field === Field.ContentLength && elements === 0) return false;
  if (field === Field.TransferEncoding) head.transferEncoding = true;
  return ok;
}

function keepAliveParam(buf: Buffer, s: number, e: number, head: MessageHead): void {
  let eq = s;
  while (eq < e && buf[eq] !== 61 /* = */) eq++;
  if (eq >= e) return;
  let ke = eq;
  while (ke > s && (buf[ke - 1] === SP || buf[ke - 1] === HT)) ke--;
  let vs = eq + 1;
  while (vs < e && (buf[vs] === SP || buf[vs] === HT)) vs++;
  if (buf[vs] === 34 && e - vs >= 2 && buf[e - 1] === 34) { vs++; e--; } // quoted-string
  const n = decimal(buf, vs, e);
  if (n < 0) return;
  if (eqLower(buf, s, ke, TOK_TIMEOUT)) head.kaTimeout = n;
  else if (eqLower(buf, s, ke, TOK_MAX)) head.kaMax = n;
}

function methodName(buf: Buffer, start: number, end: number): string {
  const n = end - start;
  for (let k = 0; k < METHODS.length; k++) {
    const { m, b } = METHODS[k];
    if (b.length !== n) continue;
    let i = 0;
    while (i < n && buf[start + i] === b[i]) i++;
    if (i === n) return m;
  }
  return buf.toString('latin1', start, end);
}

/**
 * Non-negative decimal integer in buf[s, e) (1*DIGIT, RFC 9110 8.6: any number of leading zeros),
 * or -1 when it is not one or exceeds Number.MAX_SAFE_INTEGER (it could not be counted exactly).
 */
function decimal(buf: Buffer, s: number, e: number): number {
  if (e <= s) return -1;
  let n = 0;
  for (let i = s; i < e; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
    // Rounding is monotonic: a true value above the limit never rounds back below it.
    if (n > Number.MAX_SAFE_INTEGER) return -1;
  }
  return n;
}

/**
 * A head cut short by the capture (snaplen, or a lost segment): what its complete lines say, or
 * at least its method or status from a start line cut mid-way. Framing is unknown; null when not
 * even that much is there. tshark counts such requests too.
 */
export function parseTruncatedHead(buf: Buffer, start: number, end: number): MessageHead | null {
  const lastNl = buf.lastIndexOf(LF, end - 1);
  if (lastNl >= start) {
    const complete = Buffer.concat([buf.subarray(start, lastNl + 1), Buffer.from('\r\n')]);
    const h = parseHead(complete, 0, complete.length);
    return typeof h === 'string' ? null : h;
  }
  const text = buf.toString('latin1', start, Math.min(end, start + 64));
  const req = /^([A-Z][A-Z_-]*) \S/.exec(text);
  const res = /^HTTP\/1\.([01]) (\d{3})/.exec(text);
  if (!req && !res) return null;
  const h = newHead();
  h.isRequest = !!req;
  h.method = req ? req[1] : '';
  h.minor = res ? Number(res[1]) : 1;
  h.status = res ? Number(res[2]) : 0;
  return h;
}

/** True when the sender of this head wants the connection to stay open (RFC 9112 9.3). */
export function wantsPersistence(h: MessageHead): boolean {
  if (h.close) return false;
  return h.minor >= 1 || h.keepAlive;
}
