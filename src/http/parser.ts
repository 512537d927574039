/**
 * Incremental, passive HTTP/1.x parser for one direction of a TCP connection.
 *
 * A named state machine fed with byte ranges of any size (it keeps no reference to them after
 * the call), gaps (bytes lost from the capture) and the end of the stream. It reports message
 * boundaries to an `HttpEvents` sink; bodies are counted, never copied. Only an incomplete head
 * is copied, bounded by `maxHeaderBytes`.
 *
 * Framing follows RFC 9112 section 6: Transfer-Encoding chunked (with trailers), Content-Length,
 * close-delimited responses; no body for HEAD responses, 1xx, 204 and 304; 101 and 2xx to CONNECT
 * switch to a tunnel.
 */
import { detectProtocol } from '../session/detect.js';
import { returnBudget, takeBudget, type BufferBudget } from '../session/session.js';
import { headScan, newHead, parseHead, parseTruncatedHead, scanHead, type HeadResult, type MessageHead } from './head.js';

/**
 * The head of the message being handled, reused for every head parsed in one piece (a head per
 * message was the largest allocation of a decrypting run). Nothing keeps a MessageHead past
 * `HttpEvents.head` and the framing that follows it.
 */
const SCRATCH_HEAD: MessageHead = newHead();
let scratchInUse = false;

export const enum Mode {
  /** Role not known yet (flow without a handshake): either kind of message starts it. */
  Detect = 0,
  Request = 1,
  Response = 2,
}

export const enum State {
  Start = 0,
  Head,
  BodyLength,
  ChunkSize,
  ChunkExt,
  ChunkData,
  ChunkDataEnd,
  Trailer,
  BodyClose,
  /** Waiting to learn whether an Upgrade/CONNECT request is accepted: bytes are not HTTP. */
  AwaitUpgrade,
  Tunnel,
  Resync,
  /** Not HTTP/1: bytes are ignored. */
  Dead,
}

export type NotHttpKind = 'tls' | 'http2' | 'other';

export interface HttpEvents {
  /** A head was parsed. `ts` is the time of the segment holding its first byte. Return value ignored. */
  head(dir: number, head: MessageHead, ts: number): void;
  /** The message whose head was last reported is complete (body included). */
  complete(dir: number, ts: number): void;
  /** For a response head: the method of the request it answers ("" if none is waiting). */
  requestMethod(dir: number): string;
  /** The stream turned out not to be HTTP/1.x. */
  notHttp(dir: number, kind: NotHttpKind): void;
  /** A counted anomaly by name (see config/anomalies.ts). */
  anomaly(name: 'http_malformed_head' | 'header_too_large' | 'http_bad_content_length' | 'http_bad_chunk' | 'http_resync' | 'resync_failed' | 'buffer_budget_exceeded'): void;
}

/** A start line is known to be plausible or not within this many bytes (see startsWithMethod). */
const START_PROBE_BYTES = 24;

/** Longest chunk-size line digits we accept: 16 hex digits exceed any real body. */
const MAX_CHUNK_SIZE_DIGITS = 15;

export class HttpStreamParser {
  state: State = State.Start;
  /** Messages whose head was seen. */
  messages = 0;
  /** Offset in the last piece given to `data` where a tunnel began (valid right after that call); -1 if none. */
  tunnelOffset = -1;
  /** The connection is known to carry HTTP (the other direction parsed a message): never give up on it. */
  established = false;
  private remaining = 0;
  private digits = 0;
  private lineLen = 0;
  private headBuf: Buffer | null = null;
  private headLen = 0;
  private headTs = 0;
  private scanned = 0;
  /** The message in progress is a response to HEAD etc.: set from its head. */
  private isRequestMsg = false;

  constructor(
    readonly dir: number,
    public mode: Mode,
    private readonly events: HttpEvents,
    private readonly maxHeaderBytes: number,
    private readonly maxResyncBytes: number,
    /** A stream seen from its first byte: garbage there means "not HTTP", not "lost framing". */
    private fromStart: boolean,
    /** Shared with every other parser and reassembly buffer of the source; null: no shared cap. */
    private readonly budget: BufferBudget | null = null,
  ) {
    if (!fromStart) this.state = State.Resync;
  }

  /** True once the message in progress (if any) is complete and nothing is buffered. */
  get idle(): boolean {
    return this.state === State.Start;
  }

  /** True while a message is in progress. */
  get inMessage(): boolean {
    const s = this.state;
    return s === State.Head || (s >= State.BodyLength && s <= State.BodyClose);
  }

  data(buf: Buffer, off: number, len: number, ts: number): void {
    const end = off + len;
    let p = off;
    while (p < end) {
      switch (this.state) {
        case State.Start: {
          const c = buf[p];
          if (c === 13 || c === 10) {
            // RFC 9112 2.2: ignore at least one empty line before a request-line.
            p++;
            continue;
          }
          if (!this.plausibleStart(buf, p, end)) {
            if (this.fromStart && this.messages === 0) {
              this.state = State.Dead;
              this.events.notHttp(this.dir, sniffProtocol(buf, p, end));
              return;
            }
            this.events.anomaly('http_resync');
            this.state = State.Resync;
            this.scanned = 0;
            continue;
          }
          this.state = State.Head;
          this.headLen = 0;
          this.headTs = ts;
          continue;
        }
        case State.Head:
          p = this.readHead(buf, p, end, ts);
          continue;
        case State.BodyLength: {
          const n = Math.min(this.remaining, end - p);
          this.remaining -= n;
          p += n;
          if (this.remaining === 0) this.finishMessage(ts);
          continue;
        }
        case State.ChunkSize: {
          const c = buf[p++];
          const hex = hexValue(c);
          if (hex >= 0) {
            if (++this.digits > MAX_CHUNK_SIZE_DIGITS) { this.badChunk(); continue; }
            this.remaining = this.remaining * 16 + hex;
          } else if (c === 10) {
            if (this.digits === 0) { this.badChunk(); continue; }
            this.afterChunkSize();
          } else if (c === 59 /* ; */ || c === 32 || c === 9) {
            if (this.digits === 0) { this.badChunk(); continue; }
            this.state = State.ChunkExt;
          } else if (c !== 13) this.badChunk();
          continue;
        }
        case State.ChunkExt: {
          const nl = indexOfLF(buf, p, end);
          if (nl < 0) { p = end; continue; }
          p = nl + 1;
          this.afterChunkSize();
          continue;
        }
        case State.ChunkData: {
          const n = Math.min(this.remaining, end - p);
          this.remaining -= n;
          p += n;
          if (this.remaining === 0) this.state = State.ChunkDataEnd;
          continue;
        }
        case State.ChunkDataEnd: {
          const c = buf[p++];
          if (c === 10) {
            this.state = State.ChunkSize;
            this.remaining = 0;
            this.digits = 0;
          } else if (c !== 13) this.badChunk();
          continue;
        }
        case State.Trailer: {
          const c = buf[p++];
          if (c === 10) {
            if (this.lineLen === 0) this.finishMessage(ts);
            else this.lineLen = 0;
          } else if (c !== 13) this.lineLen++;
          continue;
        }
        case State.Tunnel:
          // Where the tunnel starts in this piece: after a 101 to `Upgrade: h2c` the HTTP/2 session takes the rest.
          this.tunnelOffset = p;
          return;
        case State.BodyClose:
        case State.AwaitUpgrade:
        case State.Dead:
          return;
        case State.Resync:
          p = this.resync(buf, p, end);
          continue;
      }
    }
  }

  /** Length of the last head parsed whole (start line to the empty line), 0 before the first. */
  lastHeadBytes = 0;

  /**
   * Bytes coming next that this parser would only count, never read: the rest of a body of known
   * length or of a chunk, everything of a close-delimited body or a tunnel. A decrypting owner
   * skips them (`skip`) instead of decrypting them.
   */
  get opaqueBytes(): number {
    switch (this.state) {
      case State.BodyLength:
      case State.ChunkData:
        return this.remaining;
      case State.BodyClose:
      case State.Tunnel:
      case State.Dead:
        return Number.MAX_SAFE_INTEGER;
      default:
        return 0;
    }
  }

  /** `len` (at most `opaqueBytes`) bytes went by unread: what `data` would have done with them. */
  skip(len: number, ts: number): void {
    if (this.state === State.BodyLength) {
      this.remaining -= len;
      if (this.remaining === 0) this.finishMessage(ts);
    } else if (this.state === State.ChunkData) {
      this.remaining -= len;
      if (this.remaining === 0) this.state = State.ChunkDataEnd;
    }
  }

  /** `len` bytes were lost from the capture. */
  gap(len: number, ts: number): void {
    switch (this.state) {
      case State.BodyLength:
        // A hole inside a body of known length: framing survives (as in Zeek).
        if (len < this.remaining) { this.remaining -= len; return; }
        if (len === this.remaining) { this.remaining = 0; this.finishMessage(ts); return; }
        this.finishMessage(ts);
        break;
      case State.ChunkData:
        if (len < this.remaining) { this.remaining -= len; return; }
        if (len === this.remaining) { this.remaining = 0; this.state = State.ChunkDataEnd; return; }
        break;
      case State.BodyClose:
      case State.Tunnel:
      case State.AwaitUpgrade:
      case State.Dead:
        return;
      case State.Start:
        this.state = State.Resync;
        this.scanned = 0;
        return;
      case State.Resync:
        return;
      case State.Head:
        this.salvageHead(ts);
        break;
    }
    // Framing is lost: look for the next message start.
    this.events.anomaly('http_resync');
    this.state = State.Resync;
    this.scanned = 0;
  }

  /** The sender closed its side (FIN) or the connection ended: completes close-delimited bodies. */
  end(ts: number): void {
    if (this.state === State.BodyClose) this.finishMessage(ts);
  }

  /** The server accepted the upgrade or CONNECT: everything after is not HTTP. */
  enterTunnel(): void {
    this.state = State.Tunnel;
  }

  /** The upgrade was refused: HTTP continues, but what was sent meanwhile is lost. */
  upgradeRefused(): void {
    if (this.state === State.AwaitUpgrade) {
      this.state = State.Resync;
      this.scanned = 0;
    }
  }

  private plausibleStart(buf: Buffer, p: number, end: number): boolean {
    const mode = this.mode;
    if (mode !== Mode.Request && startsWithHttpVersion(buf, p, end)) return true;
    if (mode !== Mode.Response) return startsWithMethod(buf, p, end);
    return false;
  }

  private readHead(buf: Buffer, p: number, end: number, ts: number): number {
    // Find the empty line that ends the head: CRLF CRLF, or bare LF LF (tolerated, RFC 9112 2.2).
    let headEnd = -1;
    if (this.headLen === 0) {
      // The common case, a head within one segment: parse it while finding its end, in one pass.
      // Into the one scratch head unless a head being handled is in it (not seen: the sinks parse nothing while handling one).
      const scratch = scratchInUse ? null : SCRATCH_HEAD;
      const h = scanHead(buf, p, Math.min(end, p + this.maxHeaderBytes + 1), scratch);
      headEnd = h === 'incomplete' ? -1 : headScan.end >= 0 ? headScan.end : findHeadEnd(buf, p, end);
      if (headEnd >= 0) {
        // Too large: skip it and look for the next message in what follows it.
        if (headEnd - p > this.maxHeaderBytes) return this.headTooLarge(headEnd);
        this.lastHeadBytes = headEnd - p;
        if (h !== scratch) {
          this.onHeadParsed(h as HeadResult, ts);
          return headEnd;
        }
        scratchInUse = true;
        try {
          this.onHeadParsed(h, ts);
        } finally {
          scratchInUse = false;
        }
        return headEnd;
      }
      if (end - p > this.maxHeaderBytes) {
        // Too large: skip to its end if this segment holds it, and resume after it.
        const e = findHeadEnd(buf, p, end);
        return this.headTooLarge(e >= 0 ? e : end);
      }
      // Incomplete head: copy what we have (the only payload copy the parser makes).
      return this.appendHead(buf, p, end);
    }
    const prev = this.headLen;
    // Copy no more than the rest of the head may take: the bytes after the head (a body, the
    // next message) are neither copied nor counted against the limit.
    const take = Math.min(end - p, this.maxHeaderBytes - prev);
    this.appendHead(buf, p, p + take);
    const hb = this.headBuf!;
    // A start cut by the previous segment end was only "maybe": decide it as Start would have.
    if (prev < START_PROBE_BYTES && !this.plausibleStart(hb, 0, this.headLen)) return this.implausibleStart(p, end);
    headEnd = findHeadEnd(hb, Math.max(0, prev - 3), this.headLen);
    if (headEnd < 0) return take < end - p ? this.headTooLarge(p + take) : end;
    // Bytes of this chunk that belong to the head: give back the rest.
    const used = headEnd - prev;
    this.headLen = 0;
    this.lastHeadBytes = headEnd;
    this.onHead(hb, 0, headEnd, ts);
    this.releaseHead();
    return p + used;
  }

  /** The bytes buffered as a possible message start are not one after all. */
  private implausibleStart(p: number, end: number): number {
    const n = this.headLen;
    this.headLen = 0;
    if (this.fromStart && this.messages === 0) {
      this.state = State.Dead;
      this.events.notHttp(this.dir, sniffProtocol(this.headBuf!, 0, n));
      this.releaseHead();
      return end;
    }
    this.releaseHead();
    this.events.anomaly('http_resync');
    this.state = State.Resync;
    this.scanned = 0;
    return p;
  }

  private appendHead(buf: Buffer, p: number, end: number): number {
    const n = end - p;
    if (this.headLen + n > this.maxHeaderBytes) return this.headTooLarge(end);
    if (!this.headBuf || this.headBuf.length < this.headLen + n) {
      const size = Math.min(this.maxHeaderBytes, Math.max(1024, (this.headLen + n) * 2));
      const budget = this.budget;
      const had = this.headBuf?.length ?? 0;
      if (!takeBudget(budget, size - had)) {
        // Every connection together holds the budget: report the message from what arrived
        // (as when the capture loses the rest of a head) instead of waiting for more of it.
        this.events.anomaly('buffer_budget_exceeded');
        if (this.headLen > 0) this.salvageHead(this.headTs);
        else this.salvage(buf, p, end, this.headTs);
        this.state = State.Resync;
        this.scanned = 0;
        return end;
      }
      const grown = Buffer.allocUnsafe(size);
      if (this.headBuf) this.headBuf.copy(grown, 0, 0, this.headLen);
      this.headBuf = grown;
    }
    buf.copy(this.headBuf, this.headLen, p, end);
    this.headLen += n;
    return end;
  }

  /**
   * The capture lost the rest of a head (snaplen cut it, or a segment is missing): report the
   * message from what we have, so the request is still counted. Its framing is unknown, so a
   * response is taken as complete and the parser resynchronises on the next message.
   */
  private salvageHead(ts: number): void {
    const n = this.headLen;
    this.headLen = 0;
    if (n > 0 && this.headBuf) this.salvage(this.headBuf, 0, n, ts);
    this.releaseHead();
  }

  /** `salvageHead` for the head bytes at buf[start, end). */
  private salvage(buf: Buffer, start: number, end: number, ts: number): void {
    const h = parseTruncatedHead(buf, start, end);
    if (!h || (this.mode === Mode.Request && !h.isRequest) || (this.mode === Mode.Response && h.isRequest)) return;
    if (this.mode === Mode.Detect) this.mode = h.isRequest ? Mode.Request : Mode.Response;
    const ts0 = this.headTs || ts;
    this.headTs = 0;
    // A complete line that was bad is malformed, not merely cut by the capture.
    if (h.fieldError !== '') this.events.anomaly(h.fieldError);
    this.messages++;
    this.fromStart = true;
    this.events.head(this.dir, h, ts0);
    if (this.state !== State.Head) return;
    if (!h.isRequest && (h.status < 100 || h.status >= 200)) this.events.complete(this.dir, ts);
  }

  /** Skips an oversized head; the search for the next message starts at `resume`. */
  private headTooLarge(resume: number): number {
    this.events.anomaly('header_too_large');
    this.headLen = 0;
    this.releaseHead();
    this.state = State.Resync;
    this.scanned = 0;
    return resume;
  }

  /**
   * Lets go of the copy of a head that spanned segments (most heads fit in one and are parsed in
   * place): an idle connection holds no buffer, and the shared budget gets the bytes back.
   */
  private releaseHead(): void {
    if (!this.headBuf) return;
    returnBudget(this.budget, this.headBuf.length);
    this.headBuf = null;
  }

  /** The parser will see no more bytes (its connection ended): whatever it holds goes back. */
  release(): void {
    this.headLen = 0;
    this.releaseHead();
  }

  private onHead(buf: Buffer, start: number, end: number, ts: number): void {
    this.onHeadParsed(parseHead(buf, start, end), ts);
  }

  private onHeadParsed(h: HeadResult, ts: number): void {
    const ts0 = this.headTs || ts;
    this.headTs = 0;
    if (typeof h === 'string') {
      if (h === 'not_http1' && this.fromStart && this.messages === 0) {
        this.state = State.Dead;
        this.events.notHttp(this.dir, 'http2');
        return;
      }
      this.events.anomaly(h === 'not_http1' ? 'http_malformed_head' : h);
      this.state = State.Resync;
      this.scanned = 0;
      return;
    }
    if (this.mode === Mode.Detect) this.mode = h.isRequest ? Mode.Request : Mode.Response;
    else if (h.isRequest !== (this.mode === Mode.Request)) {
      this.events.anomaly('http_malformed_head');
      this.state = State.Resync;
      this.scanned = 0;
      return;
    }
    if (h.fieldError !== '') this.events.anomaly(h.fieldError);
    this.messages++;
    this.isRequestMsg = h.isRequest;
    this.fromStart = true;
    this.events.head(this.dir, h, ts0);
    if (this.state !== State.Head) return; // the sink changed our state (e.g. tunnel)
    if (h.fieldError !== '') return this.unframed(h, ts);
    this.frameBody(h, ts);
  }

  /**
   * After a head with a valid start line and a bad field (see MessageHead.fieldError), reported
   * so the connection and the message count and the peer's answer pairs with it. Its body cannot
   * be delimited: a response is taken as complete at its head (a client must close after an
   * unframeable response, RFC 9112 6.3 item 5, and the close then follows this exchange), and the
   * direction resynchronises at the next start line, as after any lost framing. A server usually
   * answers such a request with 400 and Connection: close, so little is lost; nginx ignores a line
   * without a colon and keeps the connection, and its next request is found again.
   */
  private unframed(h: MessageHead, ts: number): void {
    if (!h.isRequest) {
      const status = h.status;
      // Interim: the final response follows (and frames itself); 101 is handled by the sink.
      if (status >= 100 && status < 200) { this.state = State.Start; return; }
      // No body whatever the fields say (RFC 9112 6.3 items 1-2): framing is intact. (Asked
      // before complete(), which moves the sink on to the next request.)
      const bodiless = status === 204 || status === 304 || this.events.requestMethod(this.dir) === 'HEAD';
      this.events.complete(this.dir, ts);
      if (bodiless) {
        if (this.state === State.Head) this.state = State.Start;
        return;
      }
    }
    if (this.state !== State.Head) return;
    this.state = State.Resync;
    this.scanned = 0;
  }

  /** RFC 9112 6.3: how the body of this message is delimited. */
  private frameBody(h: MessageHead, ts: number): void {
    if (h.isRequest) {
      if (h.method === 'CONNECT' || h.upgrade) {
        // Wait for the response: a 2xx/101 turns the connection into a tunnel.
        this.events.complete(this.dir, ts);
        this.state = State.AwaitUpgrade;
        if (h.method !== 'CONNECT' && (h.contentLength > 0 || h.transferEncoding)) this.state = State.AwaitUpgrade;
        return;
      }
      if (h.transferEncoding) {
        if (h.chunked) return this.startChunked();
        // A request with a non-chunked final coding cannot be framed (RFC 9112 6.3 item 4).
        this.events.anomaly('http_bad_chunk');
        this.state = State.Resync;
        this.scanned = 0;
        return;
      }
      if (h.contentLength > 0) return this.startLength(h.contentLength);
      this.finishMessage(ts);
      return;
    }
    const status = h.status;
    const method = this.events.requestMethod(this.dir);
    if (status >= 100 && status < 200) {
      if (status === 101) {
        this.state = State.Tunnel;
        return;
      }
      // Interim response: the final one follows, the request stays outstanding.
      this.state = State.Start;
      return;
    }
    if (method === 'CONNECT' && status >= 200 && status < 300) {
      this.events.complete(this.dir, ts);
      if (this.state === State.Head) this.state = State.Tunnel;
      return;
    }
    if (method === 'HEAD' || status === 204 || status === 304) return this.finishMessage(ts);
    if (h.transferEncoding) {
      if (h.chunked) return this.startChunked();
      this.state = State.BodyClose;
      return;
    }
    if (h.contentLength >= 0) {
      if (h.contentLength === 0) return this.finishMessage(ts);
      return this.startLength(h.contentLength);
    }
    this.state = State.BodyClose;
  }

  private startLength(n: number): void {
    this.remaining = n;
    this.state = State.BodyLength;
  }

  private startChunked(): void {
    this.remaining = 0;
    this.digits = 0;
    this.state = State.ChunkSize;
  }

  private afterChunkSize(): void {
    if (this.remaining === 0) {
      this.lineLen = 0;
      this.state = State.Trailer;
    } else this.state = State.ChunkData;
  }

  private badChunk(): void {
    this.events.anomaly('http_bad_chunk');
    this.state = State.Resync;
    this.scanned = 0;
  }

  private finishMessage(ts: number): void {
    this.state = State.Start;
    this.events.complete(this.dir, ts);
  }

  /** Skips to the next line that starts a message this direction can carry. */
  private resync(buf: Buffer, p: number, end: number): number {
    const mode = this.mode;
    let q = p;
    while (q < end) {
      // Candidate message starts: the segment start (senders start messages on segment
      // boundaries) and every position right after a LF.
      if (this.plausibleStart(buf, q, end) && lineLooksLikeStart(buf, q, end, mode)) {
        this.state = State.Start;
        this.scanned = 0;
        return q;
      }
      const nl = indexOfLF(buf, q, end);
      if (nl < 0) break;
      q = nl + 1;
    }
    this.scanned += end - p;
    if (!this.fromStart && this.messages === 0 && !this.established && this.scanned > this.maxResyncBytes) {
      this.state = State.Dead;
      this.events.anomaly('resync_failed');
      this.events.notHttp(this.dir, 'other');
    }
    return end;
  }
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Position just after the empty line ending a head, or -1. */
/** First LF in buf[p, end), or -1. Bounded, unlike Buffer#indexOf (see findHeadEnd). */
function indexOfLF(buf: Buffer, p: number, end: number): number {
  for (let i = p; i < end; i++) if (buf[i] === 10) return i;
  return -1;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

function findHeadEnd(buf: Buffer, p: number, end: number): number {
  // Native search on a bounded view (Buffer#indexOf has no end bound of its own).
  const view = buf.subarray(p, end);
  const i = view.indexOf(CRLFCRLF);
  if (i >= 0) {
    // A bare-LF empty line earlier in the head ends it first (RFC 9112 2.2 tolerance).
    const bare = buf.subarray(p, p + i + 2).indexOf(LFLF);
    return bare >= 0 ? p + bare + 2 : p + i + 4;
  }
  const bare = view.indexOf(LFLF);
  if (bare >= 0) return p + bare + 2;
  // "\n\r\n" after a bare-LF line
  const mixed = view.indexOf(LFCRLF);
  return mixed >= 0 ? p + mixed + 3 : -1;
}
const LFLF = Buffer.from('\n\n');
const LFCRLF = Buffer.from('\n\r\n');

function startsWithHttpVersion(buf: Buffer, p: number, end: number): boolean {
  // "HTTP/" — also accept a prefix cut by the segment end; the head parser decides.
  const n = Math.min(5, end - p);
  for (let i = 0; i < n; i++) if (buf[p + i] !== HTTP_SLASH[i]) return false;
  return true;
}
const HTTP_SLASH = [72, 84, 84, 80, 47];

/** A method token (upper-case letters, as every registered method is) then a space. */
function startsWithMethod(buf: Buffer, p: number, end: number): boolean {
  let i = p;
  const lim = Math.min(end, p + START_PROBE_BYTES);
  while (i < lim) {
    const c = buf[i];
    if (c >= 65 && c <= 90) { i++; continue; }
    if (c === 45 || c === 95) { i++; continue; }
    return c === 32 && i > p;
  }
  return i === end && i > p; // cut by the segment end: maybe
}

/** Stricter check used while resynchronising: the whole line must look like a start line. */
function lineLooksLikeStart(buf: Buffer, q: number, end: number, mode: Mode): boolean {
  const nl = indexOfLF(buf, q, Math.min(end, q + 8192));
  const lineEnd = nl < 0 ? Math.min(end, q + 8192) : nl;
  const line = buf.toString('latin1', q, Math.min(lineEnd, q + 8192));
  if (mode !== Mode.Request && /^HTTP\/1\.[01] \d{3}/.test(line)) return true;
  if (mode !== Mode.Response) {
    // Resynchronising may land mid-line ("ET / HTTP/1.1"): only a registered method starts a request here.
    const m = /^([A-Z][A-Z_-]*) \S+ HTTP\/1\.[01]\r?$/.exec(line);
    if (m && RESYNC_METHODS.has(m[1])) return true;
  }
  return false;
}

/** Methods of the IANA HTTP Method Registry most seen on the wire (RFC 9110, 5789, 4918 WebDAV). */
const RESYNC_METHODS = new Set([
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH', 'PURGE',
]);

/** What a stream that is not HTTP/1 looks like from its first bytes. */
export function sniffProtocol(buf: Buffer, p: number, end: number): NotHttpKind {
  const kind = detectProtocol(buf, p, end);
  return kind === 'http1' ? 'other' : kind;
}
