/**
 * Parsing one HTTP/1.x message head (start line and header fields), already delimited.
 * Heads are the only payload bytes turned into strings (latin1, as RFC 9110 5.5 allows).
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
  /** `Keep-Alive: timeout=, max=` parameters (RFC 2068 19.7.1); -1 when absent. */
  kaTimeout: number;
  kaMax: number;
  /** -1 when absent. */
  contentLength: number;
  /** Transfer-Encoding present; `chunked` when its last coding is chunked (RFC 9112 6.3). */
  transferEncoding: boolean;
  chunked: boolean;
}

export type HeadResult = MessageHead | HeadError;
export type HeadError = 'http_malformed_head' | 'http_bad_content_length' | 'not_http1';

/** RFC 9110 5.6.2 token characters, for the method. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

/** Buffer#latin1Slice skips toString's argument validation; it is what toString('latin1') calls. */
const latin1: (buf: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as unknown as { latin1Slice?: unknown }).latin1Slice === 'function'
    ? (buf, start, end) => (buf as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(start, end)
    : (buf, start, end) => buf.toString('latin1', start, end);

export function parseHead(buf: Buffer, start: number, end: number): HeadResult {
  return parseHeadText(latin1(buf, start, end));
}

/**
 * A head cut short by the capture (snaplen, or a lost segment): what its complete lines say, or
 * at least its method or status from a start line cut mid-way. Framing is unknown; null when not
 * even that much is there. tshark counts such requests too.
 */
export function parseTruncatedHead(buf: Buffer, start: number, end: number): MessageHead | null {
  const text = latin1(buf, start, end);
  const lastNl = text.lastIndexOf('\n');
  if (lastNl >= 0) {
    const h = parseHeadText(`${text.slice(0, lastNl + 1)}\r\n`);
    return typeof h === 'string' ? null : h;
  }
  const req = /^([A-Z][A-Z_-]*) \S/.exec(text);
  const res = /^HTTP\/1\.([01]) (\d{3})/.exec(text);
  if (!req && !res) return null;
  return {
    isRequest: !!req, method: req ? req[1] : '', minor: res ? Number(res[1]) : 1, status: res ? Number(res[2]) : 0,
    close: false, keepAlive: false, upgrade: false,
    kaTimeout: -1, kaMax: -1, contentLength: -1, transferEncoding: false, chunked: false,
  };
}

function parseHeadText(text: string): HeadResult {
  let lineEnd = text.indexOf('\n');
  if (lineEnd < 0) return 'http_malformed_head';
  const startLine = text.charCodeAt(lineEnd - 1) === 13 ? text.slice(0, lineEnd - 1) : text.slice(0, lineEnd);
  const head: MessageHead = {
    isRequest: false, method: '', minor: 1, status: 0,
    close: false, keepAlive: false, upgrade: false,
    kaTimeout: -1, kaMax: -1, contentLength: -1, transferEncoding: false, chunked: false,
  };
  if (startLine.startsWith('HTTP/')) {
    // status-line = HTTP-version SP status-code SP [ reason-phrase ]
    if (startLine.length < 12 || startLine.charCodeAt(8) !== 32) return 'http_malformed_head';
    if (!startLine.startsWith('HTTP/1.')) return 'not_http1';
    const minor = startLine.charCodeAt(7) - 48;
    if (minor !== 0 && minor !== 1) return 'http_malformed_head';
    const status = Number(startLine.slice(9, 12));
    if (!Number.isInteger(status) || status < 100 || status > 999) return 'http_malformed_head';
    head.minor = minor;
    head.status = status;
  } else {
    // request-line = method SP request-target SP HTTP-version
    const sp1 = startLine.indexOf(' ');
    const sp2 = startLine.lastIndexOf(' ');
    if (sp1 <= 0 || sp2 <= sp1 + 0 || sp2 === sp1) return 'http_malformed_head';
    for (let i = 0; i < sp1; i++) {
      const c = startLine.charCodeAt(i);
      if (c > 127 || !TCHAR[c]) return 'http_malformed_head';
    }
    const version = startLine.slice(sp2 + 1);
    if (version === 'HTTP/1.1') head.minor = 1;
    else if (version === 'HTTP/1.0') head.minor = 0;
    else if (version.startsWith('HTTP/')) return 'not_http1';
    else return 'http_malformed_head';
    head.isRequest = true;
    head.method = startLine.slice(0, sp1);
  }

  // Header fields: only the few that decide framing and persistence are turned into strings.
  let lastName = '';
  let pos = lineEnd + 1;
  const len = text.length;
  while (pos < len) {
    lineEnd = text.indexOf('\n', pos);
    if (lineEnd < 0) lineEnd = len;
    const valueEnd = text.charCodeAt(lineEnd - 1) === 13 ? lineEnd - 1 : lineEnd;
    const lineStart = pos;
    pos = lineEnd + 1;
    if (valueEnd <= lineStart) break; // the empty line ending the head
    const first = text.charCodeAt(lineStart);
    let name: string;
    let value: string;
    if (first === 32 || first === 9) {
      // obs-fold (RFC 9112 5.2): a continuation of the previous field's value
      if (lastName === '') {
        if (lineStart === 0) return 'http_malformed_head';
        continue;
      }
      name = lastName;
      value = text.slice(lineStart, valueEnd).trim();
    } else {
      const colon = text.indexOf(':', lineStart);
      if (colon <= lineStart || colon >= valueEnd) return 'http_malformed_head';
      if (text.charCodeAt(colon - 1) === 32 || text.charCodeAt(colon - 1) === 9) return 'http_malformed_head'; // RFC 9112 5.1
      const nameLen = colon - lineStart;
      const c = first | 0x20;
      // Cheap filter on first letter and length before any string is made.
      if (!((c === 99 && (nameLen === 10 || nameLen === 14)) || (c === 107 && nameLen === 10) ||
        (c === 116 && nameLen === 17) || (c === 112 && nameLen === 16))) {
        lastName = '-';
        continue;
      }
      name = text.slice(lineStart, colon).toLowerCase();
      value = text.slice(colon + 1, valueEnd).trim();
      lastName = name;
    }
    switch (name) {
      case 'connection':
      case 'proxy-connection': // sent by old clients in place of Connection
        for (const tok of value.split(',')) {
          const t = tok.trim().toLowerCase();
          if (t === 'close') head.close = true;
          else if (t === 'keep-alive') head.keepAlive = true;
          else if (t === 'upgrade') head.upgrade = true;
        }
        break;
      case 'keep-alive':
        for (const param of value.split(',')) {
          const eq = param.indexOf('=');
          if (eq < 0) continue;
          const k = param.slice(0, eq).trim().toLowerCase();
          const n = Number(param.slice(eq + 1).trim());
          if (!Number.isFinite(n) || n < 0) continue;
          if (k === 'timeout') head.kaTimeout = n;
          else if (k === 'max') head.kaMax = n;
        }
        break;
      case 'content-length': {
        // A list of identical values is allowed (RFC 9110 8.6); differing values are an error.
        for (const part of value.split(',')) {
          const p = part.trim();
          if (!/^\d{1,15}$/.test(p)) return 'http_bad_content_length';
          const n = Number(p);
          if (head.contentLength >= 0 && head.contentLength !== n) return 'http_bad_content_length';
          head.contentLength = n;
        }
        break;
      }
      case 'transfer-encoding': {
        head.transferEncoding = true;
        const codings = value.toLowerCase().split(',');
        head.chunked = codings[codings.length - 1].trim() === 'chunked';
        break;
      }
    }
  }
  return head;
}

/** True when the sender of this head wants the connection to stay open (RFC 9112 9.3). */
export function wantsPersistence(h: MessageHead): boolean {
  if (h.close) return false;
  return h.minor >= 1 || h.keepAlive;
}
