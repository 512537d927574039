/**
 * The HTTP/2 session of a connection (h2c: prior knowledge, or after `Upgrade: h2c`), passive,
 * both directions: frames (frame-stream.ts), header blocks decoded only for `:method`, `:status`
 * and `content-length` (hpack.ts, one decoder per direction), streams paired by id, and what
 * ended the connection: GOAWAY (side, last-stream-id, error code), refused streams, the TCP close.
 *
 * A request is a client-initiated stream (odd id) opened by HEADERS; its response is the
 * server's final HEADERS (`:status` >= 200); the stream is complete at the server's END_STREAM,
 * when its DATA reaches the response's content-length (Node.js sends the END_STREAM in a later
 * empty DATA frame, which a client that stopped reading never waits for), or at a RST_STREAM.
 * PING, SETTINGS, WINDOW_UPDATE and GOAWAY are not activity: nginx and Node.js close idle
 * connections on time with a PING every 400 ms. The close rules: docs/keepalive-semantics.md,
 * "HTTP/2".
 */
import type { Anomaly } from '../config/anomalies.js';
import type { H2Goaway, RequestRecord, Verdict } from '../session/facts.js';
import type { ProtocolSession, SessionHost, SessionVerdict, TcpCloseFacts } from '../session/session.js';
import { H2FrameStream, type FrameSink, type FrameStreamAnomaly } from './frame-stream.js';
import {
  ErrorCode,
  errorCodeName,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FrameType,
  parseGoaway,
  parseHeaders,
  parseRstStream,
  parseSettings,
  parsePushPromise,
  type FrameHeader,
} from './frames.js';
import { HpackDecoder } from './hpack.js';

/** Streams tracked at once per connection (servers allow 100-250 concurrent): past it the oldest is dropped (`h2_stream_overflow`). */
export const MAX_OPEN_STREAMS = 256;
/** Unanswered streams kept for the race rule (the latest ones; a cancel flood keeps only these). */
const MAX_UNANSWERED = 64;
/** The empty list every session starts with (never written: `noAnswer` replaces it). */
const NO_STREAMS: H2Stream[] = [];

interface H2Stream {
  readonly id: number;
  readonly req: RequestRecord;
  /** Response DATA bytes still expected by content-length; -1 when unknown. */
  remaining: number;
  /** The request was reported to the host (once its header block was read, for its method). */
  reported: boolean;
}

interface Goaway {
  time: number;
  /** Order of arrival among the session's GOAWAYs: a reply can carry the same timestamp (the proxy tap's clock, a coarse capture). */
  order: number;
  /** The last GOAWAY's (gRPC sends 2^31-1 first, then the real one: one close). */
  lastStreamId: number;
  errorCode: number;
  /** Streams open when it came. */
  openAtGoaway: number;
  /** Its debug data, printable ASCII, at most 64 characters. */
  debug: string;
  /** The side's last activity before it. */
  activityBefore: number;
}

export class H2Session implements ProtocolSession, FrameSink {
  private readonly frames: [H2FrameStream | null, H2FrameStream | null] = [null, null];
  private readonly hpack: [HpackDecoder | null, HpackDecoder | null] = [null, null];
  /** Open streams by id, oldest first (Map keeps insertion order). */
  private readonly open = new Map<number, H2Stream>();
  /** A header block in progress per direction (HEADERS + CONTINUATION): its stream, bytes, whether it opens a request. */
  private block: [Buffer[] | null, Buffer[] | null] = [null, null];
  private blockStream = [0, 0];
  private blockLost = [false, false];
  private blockKind = [0, 0];
  private blockEndStream = [false, false];
  private requests = 0;
  private clientFrames = 0;
  private highestClientStream = 0;
  private lastActive = -1;
  private goaway: [Goaway | null, Goaway | null] = [null, null];
  private goawayOrder = 0;
  private openAtClose = 0;
  /** Client streams that got no response (refused, cancelled, never answered), the latest `MAX_UNANSWERED`. */
  private unanswered: H2Stream[] = NO_STREAMS;
  private refused = 0;
  private peakConcurrent = 0;
  serverMaxConcurrentStreams = -1;

  constructor(
    private readonly host: SessionHost,
    /** Direction of the client's bytes. */
    private readonly clientDir: number,
  ) {}

  /**
   * After a 101 to `Upgrade: h2c`: the HTTP/1.1 request that asked is stream 1, already counted
   * as the connection's first request; both directions' HTTP/2 bytes start now (the client's
   * with the preface, the server's with its SETTINGS).
   */
  adoptUpgradeRequest(r: RequestRecord): void {
    this.upgraded[0] = this.upgraded[1] = true;
    this.requests = r.index;
    this.highestClientStream = 1;
    this.open.set(1, { id: 1, req: r, remaining: -1, reported: true });
    if (this.peakConcurrent < 1) this.peakConcurrent = 1;
  }

  /** Streams the server refused or did not process (REFUSED_STREAM, or above its GOAWAY's last-stream-id). */
  get streamsRefused(): number {
    const g = this.goaway[1 - this.clientDir];
    return this.refused + (g ? this.requests - this.requestsUpTo(g.lastStreamId) : 0);
  }

  get peakConcurrentStreams(): number {
    return this.peakConcurrent;
  }

  /** The first GOAWAY of each side, in time order, for the connection's record. */
  get goaways(): H2Goaway[] {
    const out: H2Goaway[] = [];
    for (const dir of [0, 1]) {
      const g = this.goaway[dir];
      if (g) out.push({ side: dir === this.clientDir ? 'client' : 'server', time: g.time, lastStreamId: g.lastStreamId, error: errorCodeName(g.errorCode), debug: g.debug });
    }
    return out.sort((a, b) => a.time - b.time);
  }

  // --- ProtocolSession ---

  get spoke(): boolean {
    return this.clientFrames > 0;
  }

  data(dir: number, buf: Buffer, off: number, len: number, ts: number): void {
    this.stream(dir).data(buf, off, len, ts);
  }

  gap(dir: number, len: number, ts: number): void {
    this.stream(dir).gap(len, ts);
  }

  end(dir: number, ts: number): void {
    this.frames[dir]?.end(ts);
  }

  closing(_dir: number, _rst: boolean, _ts: number): void {
    this.openAtClose = this.inFlight();
  }

  finish(ts: number): void {
    for (const d of [0, 1]) {
      this.frames[d]?.end(ts);
      this.frames[d]?.release();
    }
    for (const s of this.open.values()) if (!s.req.responseStarted) this.noAnswer(s);
  }

  verdict(tcp: TcpCloseFacts): SessionVerdict {
    const none = { servedCount: 0, signalTime: tcp.time };
    if (this.requests === 0) return { verdict: 'unused', ...none };
    const server = this.goaway[1 - this.clientDir];
    const client = this.goaway[this.clientDir];
    // The first close signal decides: a GOAWAY, or the TCP close, whichever came first. A peer
    // answers a GOAWAY with its own (Node.js twice): that one is not why the connection ended.
    const tcpTime = tcp.time;
    const serverFirst = server !== null && server.time <= tcpTime && (client === null || server.time < client.time || (server.time === client.time && server.order < client.order));
    const clientFirst = !serverFirst && client !== null && client.time <= tcpTime;
    if (serverFirst) return this.serverGoawayVerdict(server!, tcp);
    if (clientFirst) {
      const g = client!;
      let v: Verdict;
      if (g.errorCode !== ErrorCode.NO_ERROR) v = 'client_close';
      else if (g.openAtGoaway > 0) v = 'aborted';
      else v = g.time - g.activityBefore < tcp.promptWindowSeconds ? 'client_close' : 'client_idle';
      return { verdict: v, ...none };
    }
    // The TCP close came first (curl ends with FIN and no GOAWAY).
    if (tcp.by === 'server') {
      for (const s of this.unanswered) {
        if (s.req.outstandingAtStart === 0 && s.req.time >= tcpTime - tcp.raceWindowSeconds) return { verdict: 'race', ...none };
      }
    }
    if (this.openAtClose > 0) return { verdict: 'aborted', ...none };
    if (tcp.rst) return { verdict: 'reset', ...none };
    const prompt = tcp.idleBeforeClose < tcp.promptWindowSeconds;
    if (tcp.by === 'server') return { verdict: prompt ? 'server_close' : 'idle_timeout', ...none };
    return { verdict: prompt ? 'client_close' : 'client_idle', ...none };
  }

  // --- FrameSink (from the frame streams) ---

  frame(dir: number, h: Readonly<FrameHeader>, payload: Buffer | null, off: number, ts: number): void {
    const fromClient = dir === this.clientDir;
    // The frame stream delivers a client frame only after the preface and a first SETTINGS.
    if (fromClient) this.clientFrames++;
    switch (h.type) {
      case FrameType.HEADERS:
      case FrameType.PUSH_PROMISE:
        this.active(ts);
        this.headerBlockStart(dir, h, payload, off, ts, fromClient);
        return;
      case FrameType.CONTINUATION:
        this.continuation(dir, h, payload, off, ts, fromClient);
        return;
      case FrameType.DATA:
        this.active(ts);
        if (!fromClient) this.responseData(h, ts);
        return;
      case FrameType.RST_STREAM: {
        this.active(ts);
        if (!payload) return;
        const v = parseRstStream(h, payload, off);
        if (typeof v === 'string') return this.host.anomaly(v);
        this.reset(h.streamId, v.errorCode, fromClient, ts);
        return;
      }
      case FrameType.GOAWAY: {
        if (!payload) return;
        const v = parseGoaway(h, payload, off);
        if (typeof v === 'string') return this.host.anomaly(v);
        const g = this.goaway[dir];
        if (g) g.lastStreamId = v.lastStreamId;
        else {
          const debug = payload.toString('latin1', v.debugOffset, v.debugOffset + Math.min(v.debugLength, 64)).replace(/[^\x20-\x7e]/g, '?');
          this.goaway[dir] = { time: ts, order: ++this.goawayOrder, lastStreamId: v.lastStreamId, errorCode: v.errorCode, openAtGoaway: this.inFlight(), activityBefore: this.lastActive, debug };
        }
        return;
      }
      case FrameType.SETTINGS: {
        if (!payload) return;
        const v = parseSettings(h, payload, off);
        if (typeof v === 'string') return this.host.anomaly(v);
        if (v.ack) return;
        // A peer's SETTINGS bound what the other direction may send.
        const other = 1 - dir;
        if (v.headerTableSize !== null) this.decoder(other).setMaxTableSize(v.headerTableSize);
        if (v.maxFrameSize !== null) this.frames[other]?.setPeerMaxFrameSize(v.maxFrameSize);
        if (!fromClient && v.maxConcurrentStreams !== null) this.serverMaxConcurrentStreams = v.maxConcurrentStreams;
        return;
      }
      default:
        // PING, PRIORITY, WINDOW_UPDATE, unknown types: not activity, nothing to learn.
        return;
    }
  }

  anomaly(_dir: number, name: FrameStreamAnomaly): void {
    this.host.anomaly(name as Anomaly);
  }

  // --- internals ---

  private stream(dir: number): H2FrameStream {
    let s = this.frames[dir];
    if (!s) {
      const role = dir === this.clientDir ? 'client' : 'server';
      const fromStart = this.host.flow.bytesIn(dir) === 0 || this.upgraded[dir];
      s = new H2FrameStream(dir, this, { role, start: fromStart ? 'start' : 'lost', budget: this.host.budget });
      this.frames[dir] = s;
    }
    return s;
  }

  /** Directions whose HTTP/2 bytes start now although HTTP/1 bytes came before (after a 101 to `Upgrade: h2c`). */
  readonly upgraded = [false, false];

  private decoder(dir: number): HpackDecoder {
    return (this.hpack[dir] ??= new HpackDecoder({ joinedMidStream: !this.host.flow.fromStart }));
  }

  private active(ts: number): void {
    this.lastActive = ts;
    this.host.activity(ts);
  }

  private inFlight(): number {
    let n = 0;
    for (const s of this.open.values()) if (s.req.responseEnd < 0) n++;
    return n;
  }

  private headerBlockStart(dir: number, h: Readonly<FrameHeader>, payload: Buffer | null, off: number, ts: number, fromClient: boolean): void {
    let fragOff = 0;
    let fragLen = 0;
    let endHeaders = (h.flags & FLAG_END_HEADERS) !== 0;
    if (payload) {
      const v = h.type === FrameType.HEADERS ? parseHeaders(h, payload, off) : parsePushPromise(h, payload, off);
      if (typeof v === 'string') {
        this.host.anomaly(v);
        payload = null;
      } else {
        fragOff = v.fragmentOffset;
        fragLen = v.fragmentLength;
        endHeaders = v.endHeaders;
      }
    }
    // The stream's fate does not wait for the fields: a HEADERS on a new client stream is a request.
    if (h.type === FrameType.HEADERS && fromClient) this.clientHeaders(h.streamId, ts);
    const kind = h.type === FrameType.HEADERS ? 1 : 2;
    const endStream = h.type === FrameType.HEADERS && (h.flags & FLAG_END_STREAM) !== 0;
    if (endHeaders) {
      this.headerBlock(dir, h.streamId, kind, endStream, payload, fragOff, fragLen, fromClient, ts);
      return;
    }
    this.block[dir] = payload ? [Buffer.from(payload.subarray(fragOff, fragOff + fragLen))] : [];
    this.blockLost[dir] = payload === null;
    this.blockStream[dir] = h.streamId;
    this.blockKind[dir] = kind;
    this.blockEndStream[dir] = endStream;
  }

  private continuation(dir: number, h: Readonly<FrameHeader>, payload: Buffer | null, off: number, ts: number, fromClient: boolean): void {
    const parts = this.block[dir];
    if (!parts || this.blockStream[dir] !== h.streamId) return; // the frame stream counted h2_bad_continuation
    if (payload && !this.blockLost[dir]) parts.push(Buffer.from(payload.subarray(off, off + h.length)));
    else this.blockLost[dir] = true;
    if ((h.flags & FLAG_END_HEADERS) === 0) return;
    this.block[dir] = null;
    const whole = this.blockLost[dir] ? null : Buffer.concat(parts);
    this.headerBlock(dir, h.streamId, this.blockKind[dir], this.blockEndStream[dir], whole, 0, whole?.length ?? 0, fromClient, ts);
  }

  /** A new client stream's HEADERS: a request, before its fields are read. */
  private clientHeaders(id: number, ts: number): void {
    if ((id & 1) === 0 || id <= this.highestClientStream) return; // trailers of an open stream, or a stray id
    this.highestClientStream = id;
    const r: RequestRecord = {
      index: ++this.requests, time: ts, method: '', version: '2', wantsKeepAlive: true, connectionClose: false,
      reused: this.requests > 1, savedSeconds: 0, savedFrom: 'unknown', outstandingAtStart: this.inFlight(), status: 0,
      responseVersion: '', responseKeepAlive: false, responseConnectionClose: false, responseCloseDelimited: false,
      kaTimeout: -1, kaMax: -1, responseEnd: -1, responseStarted: false,
    };
    if (this.open.size >= MAX_OPEN_STREAMS) {
      this.host.anomaly('h2_stream_overflow');
      const oldest = this.open.values().next().value!;
      this.report(oldest);
      this.open.delete(oldest.id);
    }
    this.open.set(id, { id, req: r, remaining: -1, reported: false });
    const concurrent = this.inFlight();
    if (concurrent > this.peakConcurrent) this.peakConcurrent = concurrent;
  }

  /**
   * A complete header block (`buf` null when it was not read: over a cap, or lost in a gap; the
   * decoder of that direction then missed its table updates). Kind 1: HEADERS, 2: PUSH_PROMISE.
   */
  private headerBlock(dir: number, streamId: number, kind: number, endStream: boolean, buf: Buffer | null, off: number, len: number, fromClient: boolean, ts: number): void {
    const dec = this.decoder(dir);
    let method: string | null = null;
    let status = -1;
    let contentLength = -1;
    if (buf) {
      const res = dec.decode(buf, off, len);
      if (res.error !== null) this.host.anomaly(res.error);
      method = res.method;
      status = res.status;
      contentLength = res.contentLength;
    } else dec.lost();
    const s = this.open.get(streamId);
    if (kind !== 1 || !s) return;
    if (fromClient) {
      if (s.reported) return; // trailers
      if (method !== null) s.req.method = method;
      s.reported = true;
      this.host.request(s.req, s.req.time);
      return;
    }
    this.report(s);
    const r = s.req;
    if (status >= 100 && status < 200) return; // interim (100 Continue, 103)
    if (!r.responseStarted) {
      r.responseStarted = true;
      r.status = status > 0 ? status : 0;
      r.responseVersion = '2';
      r.responseKeepAlive = true;
      s.remaining = contentLength >= 0 ? contentLength : -1;
    }
    if (endStream || (s.remaining === 0 && r.method !== 'HEAD')) this.completeStream(s, ts);
  }

  /** Reports the stream's request once (normally when its header block was read). */
  private report(s: H2Stream): void {
    if (s.reported) return;
    s.reported = true;
    this.host.request(s.req, s.req.time);
  }

  /** A stream that ended without a response. */
  private noAnswer(s: H2Stream): void {
    this.report(s);
    if (this.unanswered === NO_STREAMS) this.unanswered = [];
    if (this.unanswered.length >= MAX_UNANSWERED) this.unanswered.shift();
    this.unanswered.push(s);
    this.open.delete(s.id);
  }

  private responseData(h: Readonly<FrameHeader>, ts: number): void {
    const s = this.open.get(h.streamId);
    if (!s) return;
    if (s.remaining > 0) {
      // Padding is inside the length; a PADDED frame's pad length is unread (the payload is not kept): count it whole.
      const n = h.flags & FLAG_PADDED ? h.length - 1 : h.length;
      s.remaining = Math.max(0, s.remaining - n);
    }
    if (h.flags & FLAG_END_STREAM || (s.remaining === 0 && s.req.responseStarted)) this.completeStream(s, ts);
  }

  private reset(streamId: number, errorCode: number, fromClient: boolean, ts: number): void {
    const s = this.open.get(streamId);
    if (!s) return;
    if (!fromClient && errorCode === ErrorCode.REFUSED_STREAM && !s.req.responseStarted) {
      // RFC 9113 8.7: a refused stream was not processed.
      this.refused++;
      this.noAnswer(s);
      return;
    }
    // Reset after its response began: complete; before: cancelled, unanswered.
    if (s.req.responseStarted) this.completeStream(s, ts);
    else this.noAnswer(s);
  }

  private completeStream(s: H2Stream, ts: number): void {
    if (!this.open.delete(s.id)) return;
    this.report(s);
    s.req.responseEnd = ts;
    this.host.response(s.req, ts);
  }

  private serverGoawayVerdict(g: Goaway, tcp: TcpCloseFacts): SessionVerdict {
    const at = { signalTime: g.time };
    if (g.errorCode !== ErrorCode.NO_ERROR) return { verdict: 'server_close', servedCount: 0, ...at };
    // At a limit: a stream was open when it came (nginx sends the GOAWAY on the Nth stream's
    // HEADERS, before that stream's response). A GOAWAY just after streams completed is not: a
    // quick exchange followed by the server's close (Node.js ending a session) would otherwise
    // wait for a limit inference that never comes.
    const atLimit = g.openAtGoaway > 0;
    if (atLimit) return { verdict: 'max_requests_candidate', servedCount: this.requestsUpTo(g.lastStreamId), ...at };
    // An idle close crossed by a stream the server did not process.
    for (const s of this.unanswered) {
      if (s.id > g.lastStreamId || s.req.time >= g.time) return { verdict: 'race', servedCount: 0, ...at };
    }
    if (g.openAtGoaway > 0) return { verdict: 'aborted', servedCount: 0, ...at };
    const idle = g.activityBefore >= 0 ? g.time - g.activityBefore : Infinity;
    return { verdict: idle < tcp.promptWindowSeconds ? 'server_close' : 'idle_timeout', servedCount: 0, ...at };
  }

  /**
   * Requests whose stream id is at most `lastStreamId`. A stream above it was not processed
   * (RFC 9113 6.8), so it is still open or among the unanswered ones: only those are looked at.
   */
  private requestsUpTo(lastStreamId: number): number {
    let n = this.requests;
    for (const s of this.open.values()) if (s.id > lastStreamId) n--;
    for (const s of this.unanswered) if (s.id > lastStreamId) n--;
    return n;
  }

}
