/**
 * The connection layer: turns TCP flows and HTTP messages into connection facts and emits them.
 *
 * Each flow gets an `HttpConnection` (the stream sink of both directions and the event sink of
 * both HTTP parsers). It pairs responses with requests in order (pipelining), follows keep-alive
 * negotiation, and at the end decides the close reason with `classifyClose`.
 */
import type { EngineLimits } from '../config/limits.js';
import { A, type Anomaly } from '../config/anomalies.js';
import { formatEndpoint } from '../decode/packet.js';
import type { FinishReason, FlowEvents, TcpFlow } from '../tcp/flows.js';
import type { StreamSink } from '../tcp/stream.js';
import { HttpStreamParser, Mode, State, type HttpEvents, type NotHttpKind } from '../http/parser.js';
import { wantsPersistence, type MessageHead } from '../http/head.js';
import { classifyClose, endedPersistence, type Verdict } from './close-reason.js';
import type { ConnectionRecord, EngineConsumer, RequestRecord, Side } from './records.js';
import { ServerState } from './servers.js';

export interface TrackerOptions {
  limits: EngineLimits;
  /** Only these server ports are analysed; null: any port where HTTP is seen. */
  ports: Set<number> | null;
}

export interface TrackerCounters {
  anomalies: Float64Array;
  nonHttp: { tls: number; http2: number; other: number };
  connectionsOpened: number;
  connectionsClosed: number;
  openConnections: number;
}

interface PendingInference {
  conn: HttpConnection;
  server: ServerState;
  count: number;
  deadline: number;
}

export class ConnectionTracker implements FlowEvents {
  private readonly consumers: EngineConsumer[] = [];
  private readonly servers = new Map<string, ServerState>();
  /** Ports on which an HTTP request was seen: unused connections to them count as HTTP connections. */
  readonly httpPorts = new Uint8Array(65536);
  private nextId = 1;
  private pendingInferences: PendingInference[] = [];
  readonly limits: EngineLimits;

  constructor(
    private readonly opts: TrackerOptions,
    readonly counters: TrackerCounters,
  ) {
    this.limits = opts.limits;
  }

  subscribe(c: EngineConsumer): void {
    this.consumers.push(c);
  }

  flowOpened(flow: TcpFlow, _ts: number): boolean {
    const ports = this.opts.ports;
    if (!ports) return true;
    return flow.clientDir === 0 ? ports.has(flow.bPort) : flow.clientDir === 1 ? ports.has(flow.aPort) : ports.has(flow.aPort) || ports.has(flow.bPort);
  }

  /** The connection object, made when the flow's first byte or close arrives (not for a bare SYN). */
  attach(flow: TcpFlow, _ts: number): StreamSink {
    return new HttpConnection(this, flow);
  }

  closing(flow: TcpFlow, dir: number, rst: boolean, ts: number): void {
    (flow.owner as HttpConnection | null)?.closing(dir, rst, ts);
  }

  flowFinished(flow: TcpFlow, why: FinishReason, ts: number): void {
    (flow.owner as HttpConnection | null)?.finished(why, ts);
  }

  anomaly(name: Anomaly): void {
    this.counters.anomalies[A[name]]++;
  }

  /** False when --ports was given and does not list this server port. */
  acceptsServerPort(port: number): boolean {
    return !this.opts.ports || this.opts.ports.has(port);
  }

  /** With --ports, the listed ports; otherwise any port on which an HTTP request was seen. */
  portCarriesHttp(port: number): boolean {
    return this.opts.ports ? this.opts.ports.has(port) : this.httpPorts[port] === 1;
  }

  serverState(server: string): ServerState | null {
    let s = this.servers.get(server);
    if (!s) {
      if (this.servers.size >= this.limits.maxServers) return null;
      s = new ServerState(this.limits.rttSamplesPerServer, server);
      this.servers.set(server, s);
    }
    return s;
  }

  get serverStates(): ReadonlyMap<string, ServerState> {
    return this.servers;
  }

  newId(): number {
    return this.nextId++;
  }

  emitOpened(c: ConnectionRecord): void {
    this.counters.connectionsOpened++;
    this.counters.openConnections++;
    for (const k of this.consumers) k.opened?.(c);
  }

  emitRequest(c: ConnectionRecord, r: RequestRecord): void {
    for (const k of this.consumers) k.request?.(c, r);
  }

  emitResponse(c: ConnectionRecord, r: RequestRecord): void {
    for (const k of this.consumers) k.response?.(c, r);
  }

  emitClosed(c: ConnectionRecord): void {
    this.counters.openConnections--;
    if (c.closeReason !== 'open') this.counters.connectionsClosed++;
    for (const k of this.consumers) k.closed?.(c);
  }

  /**
   * A server ended persistence on a success response with nothing announced. nginx does exactly
   * this at `keepalive_requests` (docs/keepalive-semantics.md, "Inferring a limit nobody announced"): the same count again on the same
   * server confirms a limit; a lone one is an ordinary `server_close`.
   */
  inferMax(conn: HttpConnection, server: ServerState | null, count: number, ts: number): void {
    if (!server) return conn.emitVerdict('server_close');
    if (server.inferredMax === count) return conn.emitVerdict('max_requests');
    // Apache announces max=N (MaxKeepAliveRequests) on connections that ask for keep-alive and
    // serves N+1 requests; on those that do not ask it announces nothing but stops at the same count.
    if (server.advertisedMax !== null && count === server.advertisedMax + 1) return conn.emitVerdict('max_requests');
    if (this.limits.knownMaxRequestsDefaults.includes(count)) {
      server.inferredMax = count;
      return conn.emitVerdict('max_requests');
    }
    const seen = (server.candidateCounts.get(count) ?? 0) + 1;
    if (server.candidateCounts.size < 64 || server.candidateCounts.has(count)) server.candidateCounts.set(count, seen);
    if (seen >= this.limits.inferMaxRequestsAfter) {
      server.inferredMax = count;
      const keep: PendingInference[] = [];
      for (const p of this.pendingInferences) {
        if (p.server === server && p.count === count) p.conn.emitVerdict('max_requests');
        else keep.push(p);
      }
      this.pendingInferences = keep;
      return conn.emitVerdict('max_requests');
    }
    if (this.pendingInferences.length >= this.limits.maxPendingInferences) {
      this.anomaly('inference_overflow');
      this.pendingInferences.shift()!.conn.emitVerdict('server_close');
    }
    this.pendingInferences.push({ conn, server, count, deadline: ts + this.limits.inferMaxRequestsWaitSeconds });
  }

  /** Releases inference candidates whose wait expired (capture time), or all of them at the end. */
  expireInferences(ts: number, all: boolean): void {
    if (this.pendingInferences.length === 0) return;
    const keep: PendingInference[] = [];
    for (const p of this.pendingInferences) {
      if (all || p.deadline <= ts) p.conn.emitVerdict('server_close');
      else keep.push(p);
    }
    this.pendingInferences = keep;
  }

  get pendingInferenceCount(): number {
    return this.pendingInferences.length;
  }
}

/** The empty request queue every connection starts with (never written: `enqueue` replaces it). */
const NO_REQUESTS: RequestRecord[] = [];

const enum Confirmed {
  Unknown = 0,
  Http = 1,
  NotHttp = 2,
}

class HttpConnection implements StreamSink, HttpEvents {
  // Memory: one of these per HTTP connection tracked, so nothing is allocated before it is used
  // (the request queue starts as a one-slot array; the two parsers are fields, not an array).
  private p0: HttpStreamParser | null = null;
  private p1: HttpStreamParser | null = null;
  private record: ConnectionRecord | null = null;
  private confirmed = Confirmed.Unknown;
  /** Requests awaiting their response, oldest first (pipelining). */
  private pending: RequestRecord[] = NO_REQUESTS;
  /** Request whose head was seen and whose body may still be in progress. */
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
  private lastHttpTime = -1;
  private first: { dir: number; rst: boolean; time: number; pending: number } | null = null;
  private server: ServerState | null = null;
  /** Capture time of a gap that made the response parser resynchronise; -1 if none pending. */
  private respResyncTime = -1;

  constructor(
    private readonly t: ConnectionTracker,
    private readonly flow: TcpFlow,
  ) {}

  // --- stream sink (from tcp/) ---

  data(dir: number, buf: Buffer, off: number, len: number, ts: number): void {
    if (this.confirmed === Confirmed.NotHttp) return;
    const p = this.parser(dir) ?? this.createParser(dir);
    if (p.state === State.Dead) return;
    // Tunnel bytes are activity too: idle-before-close counts from the last byte either way.
    this.lastHttpTime = ts;
    if (p.state !== State.Tunnel) p.data(buf, off, len, ts);
  }

  gap(dir: number, len: number, ts: number): void {
    if (this.confirmed === Confirmed.NotHttp) return;
    let p = this.parser(dir);
    if (p) p.gap(len, ts);
    else p = this.createParser(dir, false);
    // Framing of the responses was lost: the next response found may not answer the oldest request.
    if (p.state === State.Resync && dir !== this.flow.clientDir && this.respResyncTime < 0) this.respResyncTime = ts;
  }

  end(dir: number, ts: number): void {
    this.parser(dir)?.end(ts);
  }

  // --- HTTP events (from http/) ---

  head(dir: number, h: MessageHead, ts: number): void {
    if (this.confirmed === Confirmed.NotHttp) return;
    const flow = this.flow;
    if (flow.clientDir < 0) {
      flow.clientDir = h.isRequest ? dir : 1 - dir;
      // A flow seen mid-stream was let in by --ports on either of its ports: now that the roles
      // are known, keep it only if its server port is one of them.
      if (!this.t.acceptsServerPort(flow.clientDir === 0 ? flow.bPort : flow.aPort)) {
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
    if (dir === this.flow.clientDir) return; // request bodies end: nothing to report
    const r = this.pending.shift();
    if (!r) return;
    r.responseEnd = ts;
    this.lastExchange = r;
    if (!this.ender && endedPersistence(r)) {
      this.ender = r;
      this.enderPreviousMax = this.previousMax;
      this.enderFixedMax = this.fixedMax >= 0 ? this.fixedMax : -1;
    }
    this.lastHttpTime = ts;
    if (this.record && r.index > 0) {
      this.record.responses++;
      this.t.emitResponse(this.record, r);
    }
  }

  requestMethod(_dir: number): string {
    return this.pending.length > 0 ? this.pending[0].method : '';
  }

  notHttp(dir: number, kind: NotHttpKind): void {
    if (this.confirmed === Confirmed.Http) {
      this.t.anomaly('http_malformed_head');
      return;
    }
    if (this.confirmed === Confirmed.NotHttp) return;
    this.confirmed = Confirmed.NotHttp;
    this.t.counters.nonHttp[kind]++;
    const other = this.parser(1 - dir);
    if (other) other.state = State.Dead;
  }

  anomaly(name: Anomaly): void {
    this.t.anomaly(name);
  }

  // --- flow events (from tcp/) ---

  closing(dir: number, rst: boolean, ts: number): void {
    if (this.first) return;
    this.first = { dir, rst, time: ts, pending: this.pending.length };
  }

  finished(_why: FinishReason, ts: number): void {
    const flow = this.flow;
    // End of both streams: close-delimited bodies end with the connection.
    this.p0?.end(ts);
    this.p1?.end(ts);
    this.p0?.release();
    this.p1?.release();
    if (this.confirmed === Confirmed.Unknown) {
      // No HTTP message: an unused connection, if it went to a port that carries HTTP.
      if (!this.first || flow.clientDir < 0 || !flow.fromStart) return;
      const serverPort = flow.clientDir === 0 ? flow.bPort : flow.aPort;
      if (!this.t.portCarriesHttp(serverPort)) return;
      this.confirm(this.first.time);
    }
    if (this.confirmed !== Confirmed.Http || !this.record) return;
    const rec = this.record;
    const unanswered = this.pending.filter((r) => !r.responseStarted);
    if (!this.first) {
      // Tracking ended (capture end, idle expiry, eviction) before any FIN or RST.
      rec.closeReason = 'open';
      this.t.emitClosed(rec);
      return;
    }
    const first = this.first;
    const by: Side = first.dir === flow.clientDir ? 'client' : 'server';
    rec.closedAt = first.time;
    rec.closedBy = by;
    rec.closedWith = first.rst ? 'rst' : 'fin';
    const idle = this.lastHttpTime >= 0 ? Math.max(0, first.time - this.lastHttpTime) : first.time - rec.openedAt;
    rec.idleBeforeClose = idle;
    const limits = this.t.limits;
    const rtt = rec.handshakeRtt ?? this.server?.medianRtt() ?? limits.promptCloseAssumedRttSeconds;
    const verdict = classifyClose({
      requests: this.requests,
      by,
      rst: first.rst,
      time: first.time,
      pendingAtClose: first.pending,
      unanswered,
      lastExchange: this.lastExchange,
      ender: this.ender,
      previousMax: this.ender ? this.enderPreviousMax : this.previousMax,
      fixedMax: this.ender ? this.enderFixedMax : this.fixedMax >= 0 ? this.fixedMax : -1,
      idleBeforeClose: idle,
      promptWindowSeconds: limits.promptCloseReactionSeconds + limits.promptCloseRoundTrips * rtt,
      raceWindowSeconds: limits.raceWindowSeconds,
    });
    // The served count is the exchange that ended persistence, not requests pipelined past it.
    if (verdict === 'max_requests_candidate') this.t.inferMax(this, this.server, this.ender!.index, ts);
    else this.emitVerdict(verdict);
  }

  emitVerdict(v: Verdict): void {
    const rec = this.record!;
    rec.closeReason = v === 'max_requests_candidate' ? 'server_close' : v;
    this.t.emitClosed(rec);
  }

  // --- internals ---

  private parser(dir: number): HttpStreamParser | null {
    return dir === 0 ? this.p0 : this.p1;
  }

  /** Queues a request; the queue is a one-slot array until pipelining needs more. */
  private enqueue(r: RequestRecord): void {
    if (this.pending.length === 0) this.pending = [r];
    else this.pending.push(r);
  }

  /** Not a flow to analyse after all (outside --ports): drop it quietly, as flowOpened would have. */
  private ignore(): void {
    this.confirmed = Confirmed.NotHttp;
    if (this.p0) this.p0.state = State.Dead;
    if (this.p1) this.p1.state = State.Dead;
    this.flow.ignored = true;
  }

  private createParser(dir: number, withData = true): HttpStreamParser {
    const flow = this.flow;
    const mode = flow.clientDir < 0 ? Mode.Detect : dir === flow.clientDir ? Mode.Request : Mode.Response;
    const fromStart = withData && flow.fromStart && (flow.peek(dir)?.bytes ?? 0) === 0;
    const p = new HttpStreamParser(dir, mode, this, this.t.limits.maxHeaderBytes, this.t.limits.maxResyncBytes, fromStart, flow.budget);
    p.established = this.confirmed === Confirmed.Http;
    if (dir === 0) this.p0 = p;
    else this.p1 = p;
    return p;
  }

  private confirm(ts: number): void {
    const flow = this.flow;
    this.confirmed = Confirmed.Http;
    if (this.p0) this.p0.established = true;
    if (this.p1) this.p1.established = true;
    const cd = flow.clientDir;
    const client = cd === 1
      ? formatEndpoint(flow.version, flow.b0, flow.b1, flow.b2, flow.b3, flow.bPort)
      : formatEndpoint(flow.version, flow.a0, flow.a1, flow.a2, flow.a3, flow.aPort);
    const address = cd === 1
      ? formatEndpoint(flow.version, flow.a0, flow.a1, flow.a2, flow.a3, flow.aPort)
      : formatEndpoint(flow.version, flow.b0, flow.b1, flow.b2, flow.b3, flow.bPort);
    this.t.httpPorts[cd === 1 ? flow.aPort : flow.bPort] = 1;
    this.server = this.t.serverState(address);
    // Every record of a server shares its one string.
    const server = this.server?.name ?? address;
    const rtt = flow.handshakeRtt >= 0 ? flow.handshakeRtt : null;
    if (rtt !== null) this.server?.addRtt(rtt);
    this.record = {
      id: this.t.newId(),
      client,
      server,
      ipVersion: flow.version,
      openedAt: flow.synTime >= 0 ? flow.synTime : Math.min(flow.firstSeen, ts),
      closedAt: null,
      handshakeRtt: rtt,
      requests: 0,
      reusedRequests: 0,
      responses: 0,
      handshakeTimeSaved: 0,
      advertisedTimeout: null,
      advertisedMax: null,
      closeReason: 'open',
      closedBy: null,
      closedWith: null,
      idleBeforeClose: null,
      tunneled: false,
      midstream: !flow.fromStart,
    };
    this.t.emitOpened(this.record);
  }

  private onRequest(h: MessageHead, ts: number): void {
    if (this.confirmed !== Confirmed.Http) this.confirm(ts);
    const rec = this.record!;
    const index = ++this.requests;
    // On a connection seen from its handshake every request after the first reused it. Mid-stream,
    // the first request seen may or may not have been the first: it is not counted as reused.
    const reused = index > 1;
    let saved = 0;
    let savedFrom: RequestRecord['savedFrom'] = 'unknown';
    if (reused) {
      if (rec.handshakeRtt !== null) {
        saved = rec.handshakeRtt;
        savedFrom = 'handshake';
      } else {
        const median = this.server?.medianRtt() ?? null;
        if (median !== null) {
          saved = median;
          savedFrom = 'server_median';
        }
      }
    }
    const r: RequestRecord = {
      index,
      time: ts,
      method: h.method,
      version: h.minor === 0 ? '1.0' : '1.1',
      wantsKeepAlive: wantsPersistence(h),
      connectionClose: h.close,
      reused,
      savedSeconds: saved,
      savedFrom,
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
    rec.requests = index;
    if (reused) {
      rec.reusedRequests++;
      rec.handshakeTimeSaved += saved;
    }
    if (this.pending.length >= this.t.limits.maxPendingRequests) {
      this.t.anomaly('pipeline_overflow');
      this.pending.shift();
    }
    this.enqueue(r);
    this.t.emitRequest(rec, r);
  }

  private onResponse(h: MessageHead, ts: number): void {
    if (h.status >= 100 && h.status < 200 && h.status !== 101) return; // interim (100 Continue, 103)
    if (this.respResyncTime >= 0) this.dropLostResponses(ts);
    const r = this.pending[0];
    if (!r) {
      this.t.anomaly('http_unexpected_response');
      // Answering a request sent before the capture started: consume it as a phantom exchange.
      const phantom = this.phantomRequest(ts);
      this.enqueue(phantom);
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
    const rec = this.record;
    if (rec) {
      if (h.kaTimeout >= 0) {
        rec.advertisedTimeout = h.kaTimeout;
        if (this.server) this.server.advertisedTimeout = h.kaTimeout;
      }
      if (h.kaMax >= 0) {
        if (rec.advertisedMax === null && this.server) this.server.advertisedMax = h.kaMax;
        rec.advertisedMax = h.kaMax;
      }
    }
    const reqParser = this.parser(this.flow.clientDir);
    if (h.status === 101 || (r.method === 'CONNECT' && h.status >= 200 && h.status < 300)) {
      if (rec) rec.tunneled = true;
      reqParser?.enterTunnel();
      this.parser(1 - this.flow.clientDir)?.enterTunnel();
      this.complete(1 - this.flow.clientDir, ts);
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
      this.t.anomaly('http_response_lost');
    }
  }

  private phantomRequest(ts: number): RequestRecord {
    return {
      index: 0, time: ts, method: '', version: '1.1', wantsKeepAlive: true, connectionClose: false,
      reused: false, savedSeconds: 0, savedFrom: 'unknown', outstandingAtStart: 0, status: 0, responseVersion: '',
      responseKeepAlive: false, responseConnectionClose: false, responseCloseDelimited: false, kaTimeout: -1, kaMax: -1,
      responseEnd: -1, responseStarted: false,
    };
  }
}
