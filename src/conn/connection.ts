/**
 * A connection, protocol-neutral: TCP facts (roles, handshake RTT, the first FIN or RST and its
 * side, idle before the close) and the one protocol session that parses its bytes. It makes the
 * `ConnectionRecord` when the session confirms the protocol, and at the end combines TCP's close
 * facts with the session's verdict.
 *
 * The bytes come from a `ConnectionFlow`: a captured TCP flow (tcp/flows.ts) or the proxy tap's
 * two byte streams (stream-tap.ts). Call order: the stream events (`data`, `gap`, `end`) per
 * direction, `closing` at each side's first FIN or RST, then `finished` once.
 */
import type { Anomaly } from '../config/anomalies.js';
import type { StreamSink } from '../tcp/stream.js';
import type { RequestRecord, Side, Verdict } from '../session/facts.js';
import { detectProtocol, isH2ServerGreeting } from '../session/detect.js';
import type { BufferBudget, FlowInfo, ProtocolSession, SecretSource, SessionHost } from '../session/session.js';
import { Http1Session } from '../http/session.js';
import { H2Session } from '../h2/session.js';
import { TlsSession } from '../tls/session.js';
import type { ConnectionRecord } from './records.js';
import type { ServerState } from './servers.js';
import type { ConnectionTracker } from './tracker.js';

/** What a connection needs of whatever carries its bytes. */
export interface ConnectionFlow extends FlowInfo {
  readonly version: number;
  /** Client SYN to the client's ACK of the SYN-ACK, seconds; -1 if not captured. */
  readonly handshakeRtt: number;
  /** Time of the client's SYN; -1 if not captured. */
  readonly synTime: number;
  readonly firstSeen: number;
  readonly budget: BufferBudget;
  /** "ip:port" of endpoint 0 (the flow's direction-0 sender) or 1. */
  endpoint(side: number): string;
  port(side: number): number;
  /** The roles, learned from the content of a flow whose handshake was not captured. */
  assignRoles(clientDir: number): void;
  /** Not analysed after all: the flow drops its bytes from now on. */
  ignore(): void;
}

const enum Confirmed {
  Unknown = 0,
  Http = 1,
  NotHttp = 2,
}

export class Connection implements StreamSink, SessionHost {
  private session: ProtocolSession | null = null;
  private record: ConnectionRecord | null = null;
  private confirmed = Confirmed.Unknown;
  private lastActivity = -1;
  private first: { dir: number; rst: boolean; time: number } | null = null;
  private server: ServerState | null = null;

  constructor(
    private readonly t: ConnectionTracker,
    readonly flow: ConnectionFlow,
  ) {}

  get limits() {
    return this.t.limits;
  }

  get budget(): BufferBudget {
    return this.flow.budget;
  }

  get keys(): SecretSource | null {
    return this.t.keys;
  }

  // --- stream sink (from tcp/ or the proxy tap) ---

  data(dir: number, buf: Buffer, off: number, len: number, ts: number): void {
    if (this.confirmed === Confirmed.NotHttp) return;
    (this.session ?? this.startSession(dir, buf, off, len))?.data(dir, buf, off, len, ts);
  }

  gap(dir: number, len: number, ts: number): void {
    if (this.confirmed === Confirmed.NotHttp) return;
    (this.session ??= new Http1Session(this)).gap(dir, len, ts);
  }

  end(dir: number, ts: number): void {
    this.session?.end(dir, ts);
  }

  // --- flow events ---

  closing(dir: number, rst: boolean, ts: number): void {
    if (this.first) return;
    this.first = { dir, rst, time: ts };
    this.session?.closing(dir, rst, ts);
  }

  finished(ts: number): void {
    const flow = this.flow;
    this.session?.finish(ts);
    if (this.confirmed === Confirmed.Unknown) {
      // No HTTP message: an unused connection, if it went to a port that carries HTTP.
      if (!this.first || flow.clientDir < 0 || !flow.fromStart) return;
      if (!this.session?.spoke && !this.t.portCarriesHttp(flow.port(1 - flow.clientDir))) return;
      this.confirm(this.first.time);
    }
    if (this.confirmed !== Confirmed.Http || !this.record) return;
    const rec = this.record;
    if (!this.first) {
      // Tracking ended (capture end, idle expiry, eviction) before any FIN or RST.
      if (this.session instanceof TlsSession) this.tlsFacts(this.session, rec);
      rec.closeReason = 'open';
      this.t.emitClosed(rec);
      return;
    }
    const first = this.first;
    const by: Side = first.dir === flow.clientDir ? 'client' : 'server';
    rec.closedAt = first.time;
    rec.closedBy = by;
    rec.closedWith = first.rst ? 'rst' : 'fin';
    const idle = this.lastActivity >= 0 ? Math.max(0, first.time - this.lastActivity) : first.time - rec.openedAt;
    rec.idleBeforeClose = idle;
    const limits = this.t.limits;
    const rtt = rec.handshakeRtt ?? this.server?.medianRtt() ?? limits.promptCloseAssumedRttSeconds;
    const tcp = {
      by, rst: first.rst, time: first.time, idleBeforeClose: idle,
      promptWindowSeconds: limits.promptCloseReactionSeconds + limits.promptCloseRoundTrips * rtt,
      raceWindowSeconds: limits.raceWindowSeconds,
    };
    // A connection that carried no message has no session verdict: nothing was asked of it.
    const v = this.session ? this.session.verdict(tcp) : { verdict: 'unused' as const, servedCount: 0, signalTime: first.time };
    if (v.by !== undefined && v.time !== undefined && (v.by !== by || v.time !== first.time)) {
      // The session saw the close first (a TLS close_notify before the FIN): its side closed.
      rec.closedBy = v.by;
      rec.closedAt = v.time;
      rec.idleBeforeClose = this.lastActivity >= 0 ? Math.max(0, v.time - this.lastActivity) : v.time - rec.openedAt;
    }
    if (this.session instanceof H2Session) {
      const h2 = this.session;
      rec.h2 = {
        peakConcurrentStreams: h2.peakConcurrentStreams,
        streamsRefused: h2.streamsRefused,
        serverMaxConcurrentStreams: h2.serverMaxConcurrentStreams >= 0 ? h2.serverMaxConcurrentStreams : null,
        goaways: h2.goaways,
      };
    }
    if (this.session instanceof TlsSession) this.tlsFacts(this.session, rec);
    if (v.verdict === 'max_requests_candidate') this.t.inferLimit(this, this.server, v.servedCount, v.signalTime - rec.openedAt, ts);
    else if (v.verdict === 'max_requests_if_known') this.emitVerdict(this.t.isKnownLimit(this.server, v.servedCount) ? 'max_requests' : 'server_close');
    else this.emitVerdict(v.verdict);
  }

  emitVerdict(v: Verdict): void {
    const rec = this.record!;
    rec.closeReason = v === 'max_requests_candidate' || v === 'max_requests_if_known' ? 'server_close' : v;
    this.t.emitClosed(rec);
  }

  // --- SessionHost (from the session) ---

  rolesFromContent(clientDir: number): boolean {
    const flow = this.flow;
    flow.assignRoles(clientDir);
    if (this.t.acceptsServerPort(flow.port(1 - clientDir))) return true;
    this.confirmed = Confirmed.NotHttp;
    flow.ignore();
    return false;
  }

  request(r: RequestRecord, ts: number): void {
    if (this.confirmed !== Confirmed.Http) this.confirm(ts);
    const rec = this.record!;
    if (r.reused) {
      if (rec.handshakeRtt !== null) {
        r.savedSeconds = rec.handshakeRtt;
        r.savedFrom = 'handshake';
      } else {
        const median = this.server?.medianRtt() ?? null;
        if (median !== null) {
          r.savedSeconds = median;
          r.savedFrom = 'server_median';
        }
      }
      // Over TLS a reused connection also saved the TLS handshake: this connection's own, else the server's full one.
      if (this.session instanceof TlsSession) {
        const own = this.session.handshakeSeconds;
        const tls = own >= 0 ? own : this.server?.medianFullTlsHandshake() ?? -1;
        if (tls >= 0) r.savedSeconds += tls;
      }
      rec.reusedRequests++;
      rec.handshakeTimeSaved += r.savedSeconds;
    }
    rec.requests = r.index;
    if (r.index === 1 && r.version === '1.0') rec.protocol = 'http/1.0';
    if (this.session instanceof TlsSession) rec.requestsEstimated = this.session.requestsEstimated;
    this.t.emitRequest(rec, r);
  }

  response(r: RequestRecord, _ts: number): void {
    const rec = this.record;
    if (!rec) return;
    rec.responses++;
    this.t.emitResponse(rec, r);
  }

  advertised(timeoutSeconds: number, maxRequests: number): void {
    const rec = this.record;
    if (!rec) return;
    if (timeoutSeconds >= 0) {
      rec.advertisedTimeout = timeoutSeconds;
      if (this.server) this.server.advertisedTimeout = timeoutSeconds;
    }
    if (maxRequests >= 0) {
      // The first `max=` of a connection is the configured limit (Apache counts down from it).
      if (rec.advertisedMax === null && this.server) this.server.advertisedMax = maxRequests;
      rec.advertisedMax = maxRequests;
    }
  }

  activity(ts: number): void {
    this.lastActivity = ts;
  }

  upgradeToH2c(upgradeRequest: RequestRecord, dir: number, buf: Buffer, off: number, len: number, ts: number): void {
    const h2 = new H2Session(this, this.flow.clientDir);
    h2.adoptUpgradeRequest(upgradeRequest);
    this.session = h2;
    if (this.record) this.record.protocol = 'h2c';
    if (len > 0) h2.data(dir, buf, off, len, ts);
  }

  tunneled(): void {
    if (this.record) this.record.tunneled = true;
  }

  serverSpeaksH2(): boolean {
    return this.serverOfFlow()?.tlsH2 === true;
  }

  serverChoseH2(): void {
    const s = this.serverOfFlow();
    if (s) s.tlsH2 = true;
  }

  /** The server's state before the connection is confirmed (the record picks it at `confirm`). */
  private serverOfFlow(): ServerState | null {
    if (this.server) return this.server;
    const cd = this.flow.clientDir;
    if (cd < 0) return null;
    return this.t.serverState(this.flow.endpoint(cd === 1 ? 0 : 1));
  }

  established(ts: number): void {
    if (this.confirmed === Confirmed.Unknown) this.confirm(ts);
  }

  decrypted(protocol: 'http/1.1' | 'h2'): void {
    if (this.record) this.record.protocol = protocol;
  }

  notProtocol(kind: 'tls' | 'http2' | 'other'): void {
    if (this.confirmed !== Confirmed.Unknown) return;
    this.confirmed = Confirmed.NotHttp;
    this.t.counters.nonHttp[kind]++;
  }

  anomaly(name: Anomaly): void {
    this.t.anomaly(name);
  }

  // --- internals ---

  /**
   * Protocol detection on the first bytes of a stream seen from its start; a stream joined
   * mid-way goes to HTTP/1, which resynchronises on its own.
   */
  private startSession(dir: number, buf: Buffer, off: number, len: number): ProtocolSession | null {
    const flow = this.flow;
    if (flow.fromStart && flow.bytesIn(dir) === 0) {
      const kind = detectProtocol(buf, off, off + len);
      // h2c with prior knowledge: the preface comes from the client (RFC 9113 3.3).
      if (kind === 'http2' && (flow.clientDir === dir || flow.clientDir < 0)) {
        if (flow.clientDir < 0 && !this.rolesFromContent(dir)) return null;
        return (this.session = new H2Session(this, dir));
      }
      // TLS: the ClientHello comes from the client (a server does not speak TLS first).
      if (kind === 'tls' && (flow.clientDir === dir || flow.clientDir < 0)) return (this.session = new TlsSession(this));
      if (kind !== 'http1') {
        this.notProtocol(kind);
        return null;
      }
      if (flow.clientDir >= 0 && dir !== flow.clientDir && isH2ServerGreeting(buf, off, off + len)) {
        return (this.session = new H2Session(this, flow.clientDir));
      }
    }
    return (this.session = new Http1Session(this));
  }

  /** The TLS facts at the end; a full handshake feeds the server's median, a resumed one is measured against it. */
  private tlsFacts(tls: TlsSession, rec: ConnectionRecord): void {
    const hs = tls.handshakeSeconds;
    let saved = 0;
    const resumed = tls.resumedHandshake && hs >= 0;
    if (hs >= 0 && tls.fullHandshake) this.server?.addFullTlsHandshake(hs);
    else if (resumed) {
      const full = this.server?.medianFullTlsHandshake() ?? null;
      if (full !== null && full > hs) saved = full - hs;
    }
    rec.tls = tls.facts(saved);
    rec.handshakeTimeSaved += saved;
    rec.requestsEstimated = tls.requestsEstimated;
    // Turned out to be h2 (the TLS 1.3 record pattern, after estimates were made): the count is unknown, not the turns.
    if (rec.requestsEstimated === null && rec.tls.decrypted === false) rec.requests = 0;
    rec.protocol = tls.protocol === 'tls' ? 'tls' : rec.protocol;
  }

  private confirm(ts: number): void {
    const flow = this.flow;
    this.confirmed = Confirmed.Http;
    const cd = flow.clientDir;
    const client = flow.endpoint(cd === 1 ? 1 : 0);
    const address = flow.endpoint(cd === 1 ? 0 : 1);
    this.t.httpPorts[flow.port(cd === 1 ? 0 : 1)] = 1;
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
      protocol: this.session?.protocol ?? (this.session instanceof H2Session ? 'h2c' : 'http/1.1'),
      requestsEstimated: null,
      h2: null,
      tls: null,
    };
    if (this.session instanceof TlsSession) {
      // Known as TLS from its opening (consumers count its requests as TLS ones); the facts are final at the close.
      this.record.requestsEstimated = this.session.requestsEstimated;
      this.record.tls = this.session.facts(0);
    }
    this.t.emitOpened(this.record);
  }
}
