/**
 * The HTTP/1 session of a connection: the two directions' parsers, requests paired with
 * responses in order (pipelining), keep-alive negotiation, and what ended persistence.
 *
 * It is a `ProtocolSession` (src/session/session.ts): the connection feeds it bytes and TCP's
 * close facts, and it reports requests, responses and its verdict through `SessionHost`. It owns
 * its parsers and steers them through their methods and mode; it writes nothing of its host's.
 */
import type { Anomaly } from '../config/anomalies.js';
import type { RequestRecord } from '../session/facts.js';
import type { ProtocolSession, SessionHost, SessionVerdict, TcpCloseFacts } from '../session/session.js';
import { classifyClose, endedPersistence } from './close-reason.js';
import { wantsPersistence, type MessageHead } from './head.js';
import { HttpStreamParser, Mode, State, type HttpEvents, type NotHttpKind } from './parser.js';

/** The empty request queue every session starts with (never written: `enqueue` replaces it). */
const NO_REQUESTS: RequestRecord[] = [];

export class Http1Session implements ProtocolSession, HttpEvents {
  // Memory: one of these per HTTP connection tracked, so nothing is allocated before it is used
  // (the request queue starts as a one-slot array; the two parsers are fields, not an array).
  private p0: HttpStreamParser | null = null;
  private p1: HttpStreamParser | null = null;
  /** A message was seen: the connection carries HTTP/1 (the host confirmed it). */
  private http = false;
  /** Not HTTP/1 after all, or not analysed (outside --ports): every byte is ignored. */
  private dead = false;
  /** Requests awaiting their response, oldest first (pipelining). */
  private pending: RequestRecord[] = NO_REQUESTS;
  /** The last request whose response completed. */
  private lastExchange: RequestRecord | null = null;
  /**
   * The first complete exchange that ended persistence, and the announcements before it: what a
   * server answers after it (Node.js sends 503s to requests pipelined past its limit) is not why
   * the connection closed.
   */
  private ender: RequestRecord | null = null;
  private enderPreviousMax = -1;
  private enderFixedMax = -1;
  private previousMax = -1;
  private lastMax = -1;
  /** The `max=` every response so far announced (-1: none yet, -2: it changed, a countdown). */
  private fixedMax = -1;
  private requests = 0;
  /** Requests without a complete response at the connection's first FIN/RST. */
  private pendingAtClose = 0;
  /** Capture time of a gap that made the response parser resynchronise; -1 if none pending. */
  private respResyncTime = -1;
  /** The request that asked `Upgrade: h2c`, while it waits for its answer. */
  private h2cAsked: RequestRecord | null = null;
  /** A 101 granted it: HTTP/2 takes over after the current piece's 101. */
  private h2cGranted: RequestRecord | null = null;

  constructor(private readonly host: SessionHost) {}

  /** HTTP/1 is certain only with a request: a lone connection to a port that never carried one stays unknown. */
  get spoke(): boolean {
    return this.http;
  }

  // --- ProtocolSession (from conn/) ---

  data(dir: number, buf: Buffer, off: number, len: number, ts: number): void {
    if (this.dead) return;
    const p = this.parser(dir) ?? this.createParser(dir);
    if (p.state === State.Dead) return;
    // Tunnel bytes are activity too: idle-before-close counts from the last byte either way.
    this.host.activity(ts);
    if (p.state !== State.Tunnel) p.data(buf, off, len, ts);
    const granted = this.h2cGranted;
    if (granted) {
      this.h2cGranted = null;
      this.dead = true;
      const at = p.tunnelOffset >= 0 ? p.tunnelOffset : off + len;
      this.host.upgradeToH2c(granted, dir, buf, at, off + len - at, ts);
    }
  }

  opaqueBytes(dir: number): number {
    if (this.dead) return Number.MAX_SAFE_INTEGER;
    const p = this.parser(dir);
    return p ? p.opaqueBytes : 0;
  }

  lastHeadBytes(dir: number): number {
    return this.parser(dir)?.lastHeadBytes ?? 0;
  }

  skip(dir: number, len: number, ts: number): void {
    if (this.dead) return;
    this.host.activity(ts);
    this.parser(dir)?.skip(len, ts);
  }

  gap(dir: number, len: number, ts: number): void {
    if (this.dead) return;
    let p = this.parser(dir);
    if (p) p.gap(len, ts);
    else p = this.createParser(dir, false);
    // Framing of the responses was lost: the next response found may not answer the oldest request.
    if (p.state === State.Resync && dir !== this.host.flow.clientDir && this.respResyncTime < 0) this.respResyncTime = ts;
  }

  end(dir: number, ts: number): void {
    this.parser(dir)?.end(ts);
  }

  closing(_dir: number, _rst: boolean, _ts: number): void {
    this.pendingAtClose = this.pending.length;
  }

  finish(ts: number): void {
    // End of both streams: close-delimited bodies end with the connection.
    this.p0?.end(ts);
    this.p1?.end(ts);
    this.p0?.release();
    this.p1?.release();
  }

  verdict(tcp: TcpCloseFacts): SessionVerdict {
    const ender = this.ender;
    const verdict = classifyClose({
      requests: this.requests,
      by: tcp.by,
      rst: tcp.rst,
      time: tcp.time,
      pendingAtClose: this.pendingAtClose,
      unanswered: this.pending.filter((r) => !r.responseStarted),
      lastExchange: this.lastExchange,
      ender,
      previousMax: ender ? this.enderPreviousMax : this.previousMax,
      fixedMax: ender ? this.enderFixedMax : this.fixedMax >= 0 ? this.fixedMax : -1,
      idleBeforeClose: tcp.idleBeforeClose,
      promptWindowSeconds: tcp.promptWindowSeconds,
      raceWindowSeconds: tcp.raceWindowSeconds,
    });
    // The served count is the exchange that ended persistence, not requests pipelined past it.
    return { verdict, servedCount: ender ? ender.index : this.requests, signalTime: ender ? ender.responseEnd : tcp.time };
  }

  // --- HttpEvents (from the parsers) ---

  head(dir: number, h: MessageHead, ts: number): void {
    if (this.dead) return;
    const flow = this.host.flow;
    if (flow.clientDir < 0) {
      const clientDir = h.isRequest ? dir : 1 - dir;
      // A flow seen mid-stream was let in by --ports on either of its ports: now that the roles
      // are known, the host keeps it only if its server port is one of them.
      if (!this.host.rolesFromContent(clientDir)) {
        this.ignore();
        return;
      }
      const other = this.parser(1 - dir);
      if (other) other.mode = h.isRequest ? Mode.Response : Mode.Request;
    }
    if (h.isRequest) this.onRequest(h, ts);
    else this.onResponse(h, ts);
  }

  complete(dir: number, ts: number): void {
    if (dir === this.host.flow.clientDir) return; // request bodies end: nothing to report
    const r = this.pending.shift();
    if (!r) return;
    r.responseEnd = ts;
    this.lastExchange = r;
    if (!this.ender && endedPersistence(r)) {
      this.ender = r;
      this.enderPreviousMax = this.previousMax;
      this.enderFixedMax = this.fixedMax >= 0 ? this.fixedMax : -1;
    }
    this.host.activity(ts);
    if (this.http && r.index > 0) this.host.response(r, ts);
  }

  requestMethod(_dir: number): string {
    return this.pending.length > 0 ? this.pending[0].method : '';
  }

  notHttp(dir: number, kind: NotHttpKind): void {
    if (this.http) {
      this.host.anomaly('http_malformed_head');
      return;
    }
    if (this.dead) return;
    this.dead = true;
    this.host.notProtocol(kind);
    const other = this.parser(1 - dir);
    if (other) other.state = State.Dead;
  }

  anomaly(name: Anomaly): void {
    this.host.anomaly(name);
  }

  // --- internals ---

  private parser(dir: number): HttpStreamParser | null {
    return dir === 0 ? this.p0 : this.p1;
  }

  /** Queues a request: one array per connection, made at its first request (an idle flow has none). */
  private enqueue(r: RequestRecord): void {
    if (this.pending === NO_REQUESTS) this.pending = [r];
    else this.pending.push(r);
  }

  /** Not a flow to analyse after all (outside --ports): drop it quietly. */
  private ignore(): void {
    this.dead = true;
    if (this.p0) this.p0.state = State.Dead;
    if (this.p1) this.p1.state = State.Dead;
  }

  private createParser(dir: number, withData = true): HttpStreamParser {
    const host = this.host;
    const flow = host.flow;
    const mode = flow.clientDir < 0 ? Mode.Detect : dir === flow.clientDir ? Mode.Request : Mode.Response;
    const fromStart = withData && flow.fromStart && flow.bytesIn(dir) === 0;
    const p = new HttpStreamParser(dir, mode, this, host.limits.maxHeaderBytes, host.limits.maxResyncBytes, fromStart, host.budget);
    p.established = this.http;
    if (dir === 0) this.p0 = p;
    else this.p1 = p;
    return p;
  }

  private onRequest(h: MessageHead, ts: number): void {
    if (!this.http) {
      this.http = true;
      if (this.p0) this.p0.established = true;
      if (this.p1) this.p1.established = true;
    }
    const index = ++this.requests;
    const r: RequestRecord = {
      index,
      time: ts,
      method: h.method,
      version: h.minor === 0 ? '1.0' : '1.1',
      wantsKeepAlive: wantsPersistence(h),
      connectionClose: h.close,
      // On a connection seen from its handshake every request after the first reused it. Mid-stream,
      // the first request seen may or may not have been the first: it is not counted as reused.
      reused: index > 1,
      savedSeconds: 0,
      savedFrom: 'unknown',
      outstandingAtStart: this.pending.length,
      status: 0,
      responseVersion: '',
      responseKeepAlive: false,
      responseConnectionClose: false,
      responseCloseDelimited: false,
      kaTimeout: -1,
      kaMax: -1,
      responseEnd: -1,
      responseStarted: false,
    };
    this.h2cAsked = h.upgradeH2c ? r : null;
    if (this.pending.length >= this.host.limits.maxPendingRequests) {
      this.host.anomaly('pipeline_overflow');
      this.pending.shift();
    }
    this.enqueue(r);
    this.host.request(r, ts);
  }

  private onResponse(h: MessageHead, ts: number): void {
    if (h.status >= 100 && h.status < 200 && h.status !== 101) return; // interim (100 Continue, 103)
    if (this.respResyncTime >= 0) this.dropLostResponses(ts);
    const r = this.pending[0];
    if (!r) {
      this.host.anomaly('http_unexpected_response');
      // Answering a request sent before the capture started: consume it as a phantom exchange.
      this.enqueue(phantomRequest(ts));
      return this.onResponse(h, ts);
    }
    r.responseStarted = true;
    r.status = h.status;
    r.responseVersion = h.minor === 0 ? '1.0' : '1.1';
    r.responseConnectionClose = h.close;
    r.responseKeepAlive = r.wantsKeepAlive && wantsPersistence(h);
    // RFC 9112 6.3: no Content-Length and no final chunked coding means the body runs to the close
    // (the parser frames it so: State.BodyClose). Bodiless responses and tunnels need no length.
    // A response whose fields could not be read (a bad header line) has unknown framing: like a
    // close-delimited one it says nothing about a request limit.
    r.responseCloseDelimited = h.fieldError !== '' || (r.method !== 'HEAD' && r.method !== 'CONNECT' && h.status !== 204 &&
      h.status !== 304 && h.status !== 101 && (h.transferEncoding ? !h.chunked : h.contentLength < 0));
    r.kaTimeout = h.kaTimeout;
    r.kaMax = h.kaMax;
    this.previousMax = this.lastMax;
    this.lastMax = h.kaMax;
    if (h.kaMax >= 0) this.fixedMax = this.fixedMax === -1 || this.fixedMax === h.kaMax ? h.kaMax : -2;
    if (this.http && (h.kaTimeout >= 0 || h.kaMax >= 0)) this.host.advertised(h.kaTimeout, h.kaMax);
    const clientDir = this.host.flow.clientDir;
    const reqParser = this.parser(clientDir);
    if (h.status === 101 && h.upgradeH2c && this.h2cAsked === r && this.http) {
      // h2c (RFC 7540 3.2): the upgrade request becomes stream 1 of an HTTP/2 connection, and its
      // response comes there; the 101 is not its answer.
      this.pending.shift();
      r.responseStarted = false;
      r.status = 0;
      this.h2cGranted = r;
      reqParser?.enterTunnel();
      this.parser(1 - clientDir)?.enterTunnel();
      return;
    }
    if (h.status === 101 || (r.method === 'CONNECT' && h.status >= 200 && h.status < 300)) {
      if (this.http) this.host.tunneled();
      reqParser?.enterTunnel();
      this.parser(1 - clientDir)?.enterTunnel();
      this.complete(1 - clientDir, ts);
      return;
    }
    if (reqParser && reqParser.state === State.AwaitUpgrade) reqParser.upgradeRefused();
  }

  /**
   * After a gap in the responses, the first response found again answers the latest request sent
   * before it: older requests sent before the gap had their responses in the lost bytes.
   */
  private dropLostResponses(ts: number): void {
    const gapTime = this.respResyncTime;
    this.respResyncTime = -1;
    const q = this.pending;
    while (q.length > 1 && q[0].time <= gapTime && q[1].time <= ts) {
      const lost = q.shift()!;
      lost.responseStarted = true;
      lost.responseKeepAlive = lost.wantsKeepAlive;
      lost.responseEnd = gapTime;
      this.lastExchange = lost;
      this.host.anomaly('http_response_lost');
    }
  }
}

function phantomRequest(ts: number): RequestRecord {
  return {
    index: 0, time: ts, method: '', version: '1.1', wantsKeepAlive: true, connectionClose: false,
    reused: false, savedSeconds: 0, savedFrom: 'unknown', outstandingAtStart: 0, status: 0, responseVersion: '',
    responseKeepAlive: false, responseConnectionClose: false, responseCloseDelimited: false, kaTimeout: -1, kaMax: -1,
    responseEnd: -1, responseStarted: false,
  };
}
