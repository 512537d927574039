/**
 * The `analyze` report's consumer of engine facts: totals, close reasons, requests per
 * connection, per-server figures and warnings. Its `toJSON` is the stable `--json` interface
 * documented in the README.
 */
import { CLOSE_REASONS, CONNECTION_PROTOCOLS, type ConnectionOutcome, type ConnectionProtocol, type H2Facts, type TlsFacts, type ConnectionRecord, type EngineConsumer, type ReconnectFact, type RequestRecord } from '../conn/records.js';
import type { EngineStats } from '../conn/engine.js';
import type { ServerState } from '../conn/servers.js';
import type { NameMap } from '../config/names.js';
import { count, duration, percent } from './format.js';
import { ClientTable } from '../conn/clients.js';
import { median, ratioDown } from '../conn/stats.js';
export { ClientTable, MAX_CLIENTS, type ClientSummary } from '../conn/clients.js';

export interface Totals {
  connections: number;
  requests: number;
  reusedRequests: number;
  reuseRatio: number;
  handshakesSaved: number;
  handshakeTimeSavedSeconds: number;
  closeReasons: Record<string, number>;
  /**
   * Connections by the protocol they spoke at their close (CONNECTION_PROTOCOLS order, only
   * those seen): an `Upgrade: h2c` connection counts as h2c.
   */
  protocols: Record<string, number>;
  /** TLS connections (null when there were none): handshakes full and resumed, how many were decrypted, the requests that are estimates. */
  tls: TlsTotals | null;
}

export interface TlsTotals {
  connections: number;
  /** Handshakes seen full / resumed (a connection whose handshake was not seen is neither). */
  fullHandshakes: number;
  resumedHandshakes: number;
  /** resumed / (full + resumed); 0 without handshakes. */
  resumptionRatio: number;
  /** Median ClientHello to the client's first application data, of full handshakes; null if none. */
  medianFullHandshakeSeconds: number | null;
  medianResumedHandshakeSeconds: number | null;
  helloRetryRequests: number;
  decrypted: number;
  /** Requests estimated from record turns (connections not decrypted), included in `requests`. */
  requestsEstimated: number;
  /** Connections not decrypted whose ALPN says h2: their requests are unknown (not in `requests`). */
  requestsUnknown: number;
}

export interface ServerSummary extends Totals {
  server: string;
  /** Its name from the names file (`--names`), or null. */
  name: string | null;
  advertisedTimeoutSeconds: number | null;
  advertisedMaxRequests: number | null;
  inferredMaxRequests: number | null;
  medianHandshakeRttSeconds: number | null;
  /** Median idle time before the server's `idle_timeout` closes: its real keep-alive timeout. */
  observedIdleTimeoutSeconds: number | null;
  /** Median idle time before `client_idle` closes: the clients' pool idle timeout. */
  observedClientIdleSeconds: number | null;
  /** How many `idle_timeout` closes (with a measured idle time) `observedIdleTimeoutSeconds` is the median of. */
  observedIdleTimeoutSamples: number;
  /**
   * Observed idle close minus the advertised `timeout=` (seconds): positive when the server closes
   * later than it announces (Node.js 20 and lighttpd, about +1 s), negative when earlier (clients
   * trusting the header race it). `null` when either is unknown or the observed close is under
   * `MIN_ADVISED_IDLE_SECONDS` (no idle timeout at all). A warning is given beyond
   * `IDLE_CLOSE_TOLERANCE_SECONDS`.
   */
  idleCloseVsAdvertisedSeconds: number | null;
  /**
   * What the data supports for the clients' pool idle timeout: keep it below this. The smaller of
   * the advertised timeout and the observed idle close, each only when at least
   * `MIN_ADVISED_IDLE_SECONDS`; `null` when neither is known.
   */
  clientIdleTimeoutBelowSeconds: number | null;
  /** What other settings would have saved, estimated from this server's own traffic (see WhatIf). */
  whatIf: WhatIf;
}

/**
 * What would change if: estimates from the traffic itself.
 * - `timeout`: after the server closed an idle connection, its client came back (a new
 *   connection to the same server) `gap` seconds after the old one's last byte; a keep-alive
 *   timeout of T >= gap would have kept the old connection for it, and saved that handshake.
 *   `options`: the new connections such timeouts would have saved, of all new connections to the
 *   server. `currentSeconds`: the idle close observed (else the advertised timeout).
 * - `maxRequests`: connections ended at the request limit whose client reconnected within
 *   `RECONNECT_AT_ONCE_SECONDS`; with ten times the limit a client that keeps sending needs a new
 *   connection ten times less often: nine in ten of those handshakes saved.
 * - `races`: requests that crossed an idle close, and the client pool idle timeout that avoids
 *   them (below the smaller of the observed idle close and the advertised timeout).
 * Each is null where the traffic shows nothing of it.
 */
export interface WhatIf {
  timeout: {
    currentSeconds: number | null;
    newConnections: number;
    reconnectsAfterIdleClose: number;
    options: Array<{ timeoutSeconds: number; savedConnections: number; savedShare: number }>;
  } | null;
  maxRequests: {
    limit: number | null;
    closes: number;
    reconnectsAtOnce: number;
    tenTimesLimit: number | null;
    savedConnections: number;
  } | null;
  races: { requests: number; clientIdleTimeoutBelowSeconds: number | null } | null;
}

/** The timeout options a report shows: up to the first that saves every reconnect (the longer ones would say the same). */
export function shownTimeoutOptions(t: NonNullable<WhatIf['timeout']>): NonNullable<WhatIf['timeout']>['options'] {
  const all = t.options.findIndex((o) => o.savedConnections === t.reconnectsAfterIdleClose);
  return all >= 0 ? t.options.slice(0, all + 1) : t.options;
}

/** Timeouts the what-if table is computed for (those above the server's own). */
export const WHAT_IF_TIMEOUTS = [5, 10, 15, 30, 60, 120, 300];
/** A reconnect within this of a request-limit close is the client going on at once. */
export const RECONNECT_AT_ONCE_SECONDS = 1;

/**
 * An observed idle close further than this from the advertised `timeout=` is reported. The header
 * carries whole seconds and servers' timers have slack (Apache 2.4 closed at 1.9 s for
 * `timeout=2`), while the differences worth knowing are a second or more: Node.js 20 and lighttpd
 * close about 1 s after the announced or configured timeout, and a server closing earlier than it
 * announces makes every client that trusts the header race it. See docs/keepalive-semantics.md,
 * "Advertised and observed idle timeouts".
 */
export const IDLE_CLOSE_TOLERANCE_SECONDS = 0.5;
/**
 * An idle close shorter than this is no timeout to advise about (no client pool runs a
 * sub-second idle timer against a server that means it): it is the server ending persistence
 * right after a response, or a close whose cause was not captured. Advice never quotes less.
 */
export const MIN_ADVISED_IDLE_SECONDS = 0.5;

export interface ConnectionSummary {
  client: string;
  server: string;
  openedAt: number;
  closedAt: number | null;
  requests: number;
  reusedRequests: number;
  closeReason: ConnectionOutcome;
  closedBy: 'client' | 'server' | null;
  handshakeRttSeconds: number | null;
  idleBeforeCloseSeconds: number | null;
  /** `http/1.0`, `http/1.1`, `h2c` (at the close: an upgraded connection is h2c), `h2` (decrypted TLS) or `tls` (not decrypted). */
  protocol: ConnectionProtocol;
  /** `protocol: tls`: the requests estimated from record turns (also in `requests`); null when exact or unknown (h2). */
  requestsEstimated: number | null;
  /** TLS only: version, cipher, resumed, alpnOffered, alpn, sni, handshakeSeconds, decrypted, turns, closeNotifyBy. */
  tls: TlsFacts | null;
  /**
   * HTTP/2 only (null otherwise): the peak of concurrent streams, the streams the server refused
   * or did not process, its SETTINGS_MAX_CONCURRENT_STREAMS, and each side's first GOAWAY (its
   * time, the last-stream-id of that side's last GOAWAY, the error name, the debug data).
   */
  h2: H2Facts | null;
}

/** Buckets of the requests-per-connection distribution (upper bounds, inclusive). */
export const REQUESTS_PER_CONNECTION_BUCKETS: Array<[string, number]> = [
  ['0', 0], ['1', 1], ['2', 2], ['3-4', 4], ['5-9', 9], ['10-99', 99], ['100-999', 999], ['1000+', Infinity],
];

class Acc {
  connections = 0;
  requests = 0;
  reusedRequests = 0;
  timeSaved = 0;
  savedFromMedian = 0;
  savedUnknown = 0;
  readonly reasons = new Map<string, number>();
  readonly protocols = new Map<string, number>();
  readonly idleServer: number[] = [];
  readonly idleClient: number[] = [];
  readonly rtts: number[] = [];
  tlsConnections = 0;
  tlsFull = 0;
  tlsResumed = 0;
  tlsHrr = 0;
  tlsDecrypted = 0;
  tlsEstimated = 0;
  tlsUnknown = 0;
  readonly tlsFullSeconds: number[] = [];
  readonly tlsResumedSeconds: number[] = [];
  /** Reconnect gaps after the server's idle closes, and after its request-limit closes (reconnects.ts). */
  readonly gapsAfterIdle: number[] = [];
  readonly gapsAfterMax: number[] = [];

  closedTls(t: TlsFacts, c: ConnectionRecord): void {
    this.tlsConnections++;
    if (t.resumed === true) this.tlsResumed++;
    else if (t.resumed === false) this.tlsFull++;
    if (t.helloRetryRequest) this.tlsHrr++;
    if (t.decrypted) this.tlsDecrypted++;
    if (c.requestsEstimated !== null) this.tlsEstimated += c.requestsEstimated;
    else if (!t.decrypted) this.tlsUnknown++;
    const list = t.resumed === true ? this.tlsResumedSeconds : t.resumed === false ? this.tlsFullSeconds : null;
    if (list && t.handshakeSeconds !== null && list.length < MAX_IDLE_SAMPLES) list.push(t.handshakeSeconds);
    this.timeSaved += t.resumptionSavedSeconds;
  }

  totals(): Totals {
    const closeReasons: Record<string, number> = {};
    for (const r of [...CLOSE_REASONS, 'open']) {
      const n = this.reasons.get(r);
      if (n) closeReasons[r] = n;
    }
    return {
      connections: this.connections,
      requests: this.requests,
      reusedRequests: this.reusedRequests,
      reuseRatio: this.requests > 0 ? ratioDown(this.reusedRequests / this.requests) : 0,
      handshakesSaved: this.reusedRequests,
      handshakeTimeSavedSeconds: round(this.timeSaved, 6),
      closeReasons,
      protocols: Object.fromEntries(CONNECTION_PROTOCOLS.filter((p) => this.protocols.has(p)).map((p) => [p, this.protocols.get(p)!])),
      tls: this.tlsConnections === 0 ? null : {
        connections: this.tlsConnections,
        fullHandshakes: this.tlsFull,
        resumedHandshakes: this.tlsResumed,
        resumptionRatio: this.tlsFull + this.tlsResumed > 0 ? ratioDown(this.tlsResumed / (this.tlsFull + this.tlsResumed)) : 0,
        medianFullHandshakeSeconds: median(this.tlsFullSeconds, 6),
        medianResumedHandshakeSeconds: median(this.tlsResumedSeconds, 6),
        helloRetryRequests: this.tlsHrr,
        decrypted: this.tlsDecrypted,
        requestsEstimated: this.tlsEstimated,
        requestsUnknown: this.tlsUnknown,
      },
    };
  }
}

/** Idle and RTT samples kept per server (and overall) for medians. */
const MAX_IDLE_SAMPLES = 10_000;

function countRequest(a: Acc, r: RequestRecord): void {
  a.requests++;
  if (r.reused) {
    a.reusedRequests++;
    a.timeSaved += r.savedSeconds;
    if (r.savedFrom === 'server_median') a.savedFromMedian++;
    else if (r.savedFrom === 'unknown') a.savedUnknown++;
  }
}

export class AnalyzeReport implements EngineConsumer {
  private readonly all = new Acc();
  private readonly servers = new Map<string, Acc>();
  readonly distribution = new Array<number>(REQUESTS_PER_CONNECTION_BUCKETS.length).fill(0);
  readonly connections: ConnectionSummary[] = [];
  /** Connections that became tunnels (101 Switching Protocols, CONNECT): HTTP parsing stopped there. */
  tunneled = 0;
  /** Connections already open when the capture started (roles inferred from the HTTP). */
  midstream = 0;

  /** Per client (or client group): what analyze prints as the client table. */
  readonly clients: ClientTable;

  constructor(
    private readonly keepConnections: boolean,
    opts: { names?: NameMap | null; clientGroups?: boolean } = {},
  ) {
    this.names = opts.names ?? null;
    this.clients = new ClientTable(this.names, opts.clientGroups === true && this.names !== null);
  }

  private readonly names: NameMap | null;

  private acc(server: string): Acc {
    let a = this.servers.get(server);
    if (!a) this.servers.set(server, (a = new Acc()));
    return a;
  }

  opened(c: ConnectionRecord): void {
    this.all.connections++;
    this.acc(c.server).connections++;
  }

  request(c: ConnectionRecord, r: RequestRecord): void {
    countRequest(this.all, r);
    countRequest(this.acc(c.server), r);
  }

  reconnect(f: ReconnectFact): void {
    const a = this.servers.get(f.server);
    if (!a) return;
    const list = f.after === 'idle_timeout' ? a.gapsAfterIdle : a.gapsAfterMax;
    if (list.length < MAX_IDLE_SAMPLES) list.push(f.gapSeconds);
  }

  closed(c: ConnectionRecord): void {
    this.clients.closed(c);
    if (c.tunneled) this.tunneled++;
    if (c.midstream) this.midstream++;
    for (const a of [this.all, this.acc(c.server)]) {
      a.reasons.set(c.closeReason, (a.reasons.get(c.closeReason) ?? 0) + 1);
      // At the close, the protocol the connection ended speaking (exactly one close per connection).
      a.protocols.set(c.protocol, (a.protocols.get(c.protocol) ?? 0) + 1);
      if (c.idleBeforeClose !== null) {
        const list = c.closeReason === 'idle_timeout' ? a.idleServer : c.closeReason === 'client_idle' ? a.idleClient : null;
        if (list && list.length < MAX_IDLE_SAMPLES) list.push(c.idleBeforeClose);
      }
      if (c.handshakeRtt !== null && a.rtts.length < MAX_IDLE_SAMPLES) a.rtts.push(c.handshakeRtt);
      if (c.tls) a.closedTls(c.tls, c);
    }
    const i = REQUESTS_PER_CONNECTION_BUCKETS.findIndex(([, hi]) => c.requests <= hi);
    this.distribution[i]++;
    if (this.keepConnections) this.connections.push(summarizeConnection(c));
  }

  totals(): Totals {
    return this.all.totals();
  }

  /** Requests of the whole report whose saved time used a server's median RTT. */
  get savedFromMedian(): number {
    return this.all.savedFromMedian;
  }

  /** Reused requests whose saved time is unknown: no handshake of their server was captured. */
  get savedUnknown(): number {
    return this.all.savedUnknown;
  }

  serverSummaries(states: ReadonlyMap<string, ServerState>): ServerSummary[] {
    const out: ServerSummary[] = [];
    for (const [server, a] of this.servers) {
      const st = states.get(server);
      const advertised = st?.advertisedTimeout ?? null;
      const observed = median(a.idleServer, 3);
      const observedOk = advisable(observed);
      const candidates = [advisable(advertised), observedOk].filter((x): x is number => x !== null);
      out.push({
        server,
        name: this.names?.server(server) ?? null,
        ...a.totals(),
        advertisedTimeoutSeconds: advertised,
        advertisedMaxRequests: st?.advertisedMax ?? null,
        inferredMaxRequests: st?.inferredMax ?? null,
        medianHandshakeRttSeconds: median(a.rtts, 6),
        observedIdleTimeoutSeconds: observed,
        observedClientIdleSeconds: median(a.idleClient, 3),
        observedIdleTimeoutSamples: a.idleServer.length,
        idleCloseVsAdvertisedSeconds: observedOk !== null && advertised !== null ? round(observedOk - advertised, 3) : null,
        clientIdleTimeoutBelowSeconds: candidates.length > 0 ? Math.min(...candidates) : null,
        whatIf: whatIf(a, observed ?? advertised, st?.advertisedMax ?? st?.inferredMax ?? null, candidates.length > 0 ? Math.min(...candidates) : null),
      });
    }
    out.sort((x, y) => y.requests - x.requests || y.connections - x.connections || (x.server < y.server ? -1 : 1));
    return out;
  }

  connectionList(): ConnectionSummary[] {
    return [...this.connections].sort((a, b) => a.openedAt - b.openedAt || (a.client < b.client ? -1 : 1));
  }
}

/** A connection as `--connections` and `--format ndjson` give it (capture times to the microsecond). */
export function summarizeConnection(c: ConnectionRecord): ConnectionSummary {
  return {
    client: c.client,
    server: c.server,
    openedAt: round(c.openedAt, 6),
    closedAt: c.closedAt === null ? null : round(c.closedAt, 6),
    requests: c.requests,
    reusedRequests: c.reusedRequests,
    closeReason: c.closeReason,
    closedBy: c.closedBy,
    handshakeRttSeconds: c.handshakeRtt === null ? null : round(c.handshakeRtt, 6),
    idleBeforeCloseSeconds: c.idleBeforeClose === null ? null : round(c.idleBeforeClose, 6),
    protocol: c.protocol,
    requestsEstimated: c.requestsEstimated,
    tls: c.tls === null ? null : { ...c.tls, handshakeSeconds: c.tls.handshakeSeconds === null ? null : round(c.tls.handshakeSeconds, 6), resumptionSavedSeconds: round(c.tls.resumptionSavedSeconds, 6) },
    h2: c.h2 === null ? null : {
      peakConcurrentStreams: c.h2.peakConcurrentStreams,
      streamsRefused: c.h2.streamsRefused,
      serverMaxConcurrentStreams: c.h2.serverMaxConcurrentStreams,
      goaways: c.h2.goaways.map((g) => ({ side: g.side, time: round(g.time, 6), lastStreamId: g.lastStreamId, error: g.error, debug: g.debug })),
    },
  };
}

export interface Warning {
  code: string;
  server: string | null;
  message: string;
}

/** Findings worth acting on, most useful first. */
export function findWarnings(servers: ServerSummary[], totals: Totals, stats: EngineStats): Warning[] {
  const w: Warning[] = [];
  for (const s of servers) {
    const r = s.closeReasons;
    const who = serverDisplay(s);
    const closed = s.connections - (r.open ?? 0);
    // Which settings to name: the HTTP/1 servers', HTTP/2's, or both for a server that speaks both.
    const h2 = (s.protocols.h2c ?? 0) > 0;
    const h1 = (s.protocols['http/1.0'] ?? 0) + (s.protocols['http/1.1'] ?? 0) > 0 || !h2;
    const advertised = s.advertisedTimeoutSeconds;
    const observed = advisable(s.observedIdleTimeoutSeconds);
    const diff = s.idleCloseVsAdvertisedSeconds;
    if (diff !== null && advertised !== null && observed !== null && diff < -IDLE_CLOSE_TOLERANCE_SECONDS) {
      // The dangerous way round: clients that trust the header keep connections the server has closed.
      w.push({
        code: 'idle_close_earlier_than_advertised',
        server: s.server,
        message: `${who} advertises timeout=${advertised} but closed idle connections after ${fmtObserved(observed)} (median of ${count(s.observedIdleTimeoutSamples)}): ${fmtObserved(-diff)} earlier than it announces. Clients that size their pool idle timeout from the header send requests into connections the server has closed (keep-alive races, ECONNRESET): set it below ${fmtObserved(observed)}, or make the server's timeout match what it announces.`,
      });
    }
    if (r.race) {
      // Below min(advertised, observed): the header is what clients trust, the observed close is
      // what the server really does; the smaller one is the one a pool must stay under.
      const below = s.clientIdleTimeoutBelowSeconds;
      let why = '';
      if (below !== null) {
        why = ` (below ${fmtObserved(below)}`;
        if (advertised !== null && observed !== null && diff !== null && Math.abs(diff) > IDLE_CLOSE_TOLERANCE_SECONDS) {
          why += `: it announces timeout=${advertised} and closed idle connections after ${fmtObserved(observed)}`;
        }
        why += ')';
      }
      w.push({
        code: 'keepalive_race',
        server: s.server,
        message: `${count(r.race)} keep-alive race(s) on ${who}: requests were sent into connections the server was closing (clients see ECONNRESET). Make the clients' idle timeout shorter than the server's keep-alive timeout${why}.${h2 ? ' Over HTTP/2 a race is a stream the server refused (REFUSED_STREAM) or that was sent above its GOAWAY\'s last-stream-id: not processed, so clients may retry it (RFC 9113 section 8.7), at the cost of a round trip and a new connection.' : ''}`,
      });
    }
    if (r.idle_timeout && closed > 0 && r.idle_timeout / closed >= 0.25) {
      // Quote what clients must stay below: the idle close the server really made, else its header.
      // An idle close under the floor is no timeout: the server closed right after its responses.
      const share = `${pct(r.idle_timeout / closed)} of ${who}'s connections were closed by its idle timeout`;
      if (s.observedIdleTimeoutSeconds !== null && observed === null) {
        w.push({
          code: 'clients_outlive_server_timeout',
          server: s.server,
          message: `${share}, but right after their responses (median idle ${fmtShort(s.observedIdleTimeoutSeconds)}): that is the server ending persistence without saying so (or its headers were not captured), not a timeout a client pool could stay below.`,
        });
      } else {
        const t = observed !== null
          ? `~${fmtObserved(observed)}${advertised !== null && diff !== null && Math.abs(diff) > IDLE_CLOSE_TOLERANCE_SECONDS ? `, though it announces ${fmtObserved(advertised)}` : ''}`
          : advertised !== null && advisable(advertised) !== null ? `~${fmtObserved(advertised)}` : null;
        w.push({
          code: 'clients_outlive_server_timeout',
          server: s.server,
          message: `${share}${t !== null ? ` (${t})` : ''}: clients keep idle connections longer than the server does. Lower the clients' pool idle timeout below it, or raise the server's timeout${h2 ? ` (HTTP/2: nginx keepalive_timeout, http2_idle_timeout before 1.19.7; Node.js http2 server.setTimeout; caddy idle_timeout; the server sends GOAWAY, then closes)` : ''}.`,
        });
      }
    }
    if (diff !== null && advertised !== null && observed !== null && diff > IDLE_CLOSE_TOLERANCE_SECONDS) {
      w.push({
        code: 'idle_close_later_than_advertised',
        server: s.server,
        message: `${who} advertises timeout=${advertised} but closed idle connections after ${fmtObserved(observed)} (median of ${count(s.observedIdleTimeoutSamples)}): ${fmtObserved(diff)} later than announced (Node.js 20 and lighttpd close about 1 s late; a proxy that passes its backend's Keep-Alive header on, as HAProxy does, closes at its own timeout). Harmless for clients that trust the header; size client pools from the header, not from this.`,
      });
    }
    if (r.max_requests && closed > 0 && r.max_requests / closed >= 0.25) {
      const m = s.advertisedMaxRequests ?? s.inferredMaxRequests;
      w.push({
        code: 'max_requests_dominates',
        server: s.server,
        message: `${pct(r.max_requests / closed)} of ${who}'s connections ended at its max-requests limit${m !== null ? ` (${count(m)})` : ''}${h2 && !h1 ? ', sending GOAWAY after that many streams' : ''}: raise ${[
          h1 ? 'keepalive_requests (nginx), MaxKeepAliveRequests (Apache), server.maxRequestsPerSocket (Node.js) or server.max-keep-alive-requests (lighttpd)' : '',
          h2 ? `${h1 ? 'for HTTP/2, ' : ''}nginx keepalive_requests (http2_max_requests before nginx 1.19.7) or Envoy max_requests_per_connection` : '',
        ].filter(Boolean).join('; ')}.`,
      });
    }
    if (r.max_age && closed > 0 && r.max_age / closed >= 0.25) {
      // An age limit rebalances long-lived clients across servers; too short, it costs a handshake per lifetime.
      w.push({
        code: 'max_age_dominates',
        server: s.server,
        message: `${pct(r.max_age / closed)} of ${who}'s connections were ended by the server at its connection age limit: each costs clients a new handshake (and, over HTTP/2, a GOAWAY their in-flight streams must finish under). If that is more often than the rebalancing it buys, raise it: nginx keepalive_time (default 1h), gRPC MAX_CONNECTION_AGE (with MAX_CONNECTION_AGE_GRACE), Envoy max_connection_duration.`,
      });
    }
    if (r.not_persistent && closed > 0 && r.not_persistent / closed >= 0.5) {
      w.push({
        code: 'not_persistent',
        server: s.server,
        message: `${pct(r.not_persistent / closed)} of ${who}'s connections carried one HTTP/1.0 request without keep-alive: those clients pay a handshake per request.`,
      });
    }
  }
  const unused = totals.closeReasons.unused ?? 0;
  if (totals.connections > 0 && unused / totals.connections >= 0.2) {
    w.push({ code: 'unused_connections', server: null, message: `${pct(unused / totals.connections)} of connections carried no request (preconnects or health checks): each is a wasted handshake.` });
  }
  if (stats.gaps > 0) {
    w.push({ code: 'capture_gaps', server: null, message: `${count(stats.gaps)} gap(s) in TCP streams (${count(stats.gapBytes)} bytes not captured): counts near them may be incomplete; capture with a larger buffer (-B) or snaplen (-s 0).` });
  }
  return w;
}

function whatIf(a: Acc, current: number | null, limit: number | null, clientBelow: number | null): WhatIf {
  const idle = a.gapsAfterIdle;
  const timeout = idle.length === 0 ? null : {
    currentSeconds: current,
    newConnections: a.connections,
    reconnectsAfterIdleClose: idle.length,
    options: WHAT_IF_TIMEOUTS.filter((t) => current === null || t > current).map((t) => {
      const saved = idle.filter((g) => g <= t).length;
      return { timeoutSeconds: t, savedConnections: saved, savedShare: a.connections > 0 ? round(saved / a.connections, 4) : 0 };
    }),
  };
  const closes = a.reasons.get('max_requests') ?? 0;
  const atOnce = a.gapsAfterMax.filter((g) => g <= RECONNECT_AT_ONCE_SECONDS).length;
  const maxRequests = closes === 0 ? null : {
    limit,
    closes,
    reconnectsAtOnce: atOnce,
    tenTimesLimit: limit !== null ? limit * 10 : null,
    savedConnections: Math.round(atOnce * 0.9),
  };
  const races = a.reasons.get('race') ?? 0;
  return { timeout, maxRequests, races: races === 0 ? null : { requests: races, clientIdleTimeoutBelowSeconds: clientBelow } };
}

/** A server as a person reads it: "orders (10.3.7.12:8080)" when the names file names it. */
export function serverDisplay(s: { server: string; name: string | null }): string {
  return s.name !== null ? `${s.name} (${s.server})` : s.server;
}

/** A timeout worth advising about, or null (unknown, or an idle close too short to be a timeout). */
function advisable(x: number | null): number | null {
  return x !== null && x >= MIN_ADVISED_IDLE_SECONDS ? x : null;
}

/** A measured duration for advice: the report's one duration format (a median of 2.003 s reads "2.0 s"). */
function fmtObserved(x: number): string {
  return duration(x);
}

/** A duration too short for a timeout (the medians are rounded to the millisecond). */
function fmtShort(x: number): string {
  return x < 1e-3 ? 'under 1 ms' : duration(x);
}

/** A share in a warning: whole percent, never rounded up to 100% (format.ts). */
function pct(x: number): string {
  return percent(x, 0);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
