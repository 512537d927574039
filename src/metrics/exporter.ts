/**
 * The Prometheus exporter: the second consumer of the engine's facts (the `analyze` report is
 * the first). Every metric is defined here, on the project's own registry: one registry, which
 * src/metrics/exposition.ts renders as Prometheus text or OpenMetrics per scrape (content
 * negotiation in src/server/app.ts). Not two registries sharing the metrics: prom-client's own
 * OpenMetrics rendering renames shared counters in place (see exposition.ts).
 *
 * Cardinality: the only unbounded value, the server, is capped at `maxServers` distinct label
 * values; later servers are reported as server="other". No label carries a path, query,
 * cookie, Host header or client address (nor SNI: a Host value). `protocol` takes the values of
 * CONNECTION_PROTOCOLS (http/1.0, http/1.1, h2c, h2, tls) and nothing else: it multiplies the
 * connection and request families by at most 5 per server, and only for protocols a server really spoke (a series appears when
 * its protocol is first seen). The families it is on: connections opened, open, closed,
 * untracked and upgraded, requests, requests per connection. Not on the handshakes-saved pair
 * (one per reused request: requests_total{reused="true"} already splits it by protocol) nor on
 * idle before close (a TCP fact, and the widest per-server histogram: tripling it would triple
 * the series of every server for nothing the close reasons by protocol do not already say).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CLOSE_REASONS, CONNECTION_PROTOCOLS, type ConnectionRecord, type EngineConsumer, type ReconnectFact, type RequestRecord } from '../conn/records.js';
import type { Engine } from '../conn/engine.js';
import type { ServerState } from '../conn/servers.js';
import type { NameMap } from '../config/names.js';
import { ClientTable, MAX_CLIENTS } from '../conn/clients.js';
import { median } from '../conn/stats.js';
import { ANOMALIES } from '../config/anomalies.js';
import { render, type ExpositionFormat } from './exposition.js';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { buildInfo, type BuildInfo } from '../cli/build-info.js';

const gzipAsync = promisify(gzip);
/**
 * zlib level of the gzipped scrape. Measured on bench/scrape.mjs's 25,000-series text scrape
 * (2.32 MB, rendered in 57 ms): level 1 gave 111 KB (21x) in 2.4 ms, level 6 (zlib's and Go
 * promhttp's default) 86 KB (27x) in 11.8 ms, level 9 77 KB in 70 ms. Level 1 already takes
 * the body to a twentieth for a twentieth of the render's time; 6 would buy 25 KB for 4x the CPU.
 */
export const GZIP_LEVEL = 1;
/**
 * prom-client's default gauges that promtool rejects (a gauge named `_total`): each is the sum of
 * its by-type gauge (nodejs_active_handles{type}, ...), which stays, so nothing is lost.
 */
const DEFAULT_METRICS_DROPPED = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export const OTHER_SERVER = 'other';

/** Buckets that resolve the common keep-alive timeouts: nginx 75 s, Apache 5 s, Node 5 s, ALB 60 s... */
/**
 * Reconnect gaps (conn/reconnects.ts): the keep-alive timeouts worth asking about are bounds, so
 * `_bucket{le="T"}` counts the new connections a timeout of T would have saved.
 */
export const RECONNECT_GAP_BUCKETS = [1, 2, 3, 5, 10, 15, 30, 60, 75, 120, 300, 600, 1800, 3600];
export const IDLE_BUCKETS = [0.1, 0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 10, 15, 20, 30, 45, 60, 65, 75, 90, 120, 300, 600];
const RTT_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3];
const REQUESTS_BUCKETS = [0, 1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500, 1000, 10000];
/** Peak concurrent streams of an HTTP/2 connection: powers of two up to 256 (nginx's default http2_max_concurrent_streams is 128, Node.js and Go allow 100 or 250, h2load -m picks any). */
export const H2_STREAMS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/** A TLS handshake: one or two round trips plus the server's key exchange (about 1 ms of CPU for ECDHE + RSA-2048 signing). */
export const TLS_HANDSHAKE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const DURATION_BUCKETS = [0.01, 0.1, 0.5, 1, 2, 5, 10, 15, 30, 60, 75, 120, 300, 600, 1800, 3600, 14400];

const CLOSED_BY = ['client', 'server', 'unknown'] as const;
const PROTOCOLS = CONNECTION_PROTOCOLS.length;
const CLOSED_PER_PROTOCOL = CLOSE_REASONS.length * CLOSED_BY.length;

/**
 * The counts of one (source, server) pair, kept as plain numbers and handed to prom-client only
 * at scrape time (the counters' `collect`). prom-client hashes a label object on every `inc`:
 * per request that was 3.7 of the proxy tap's 24.5 µs (bench/README.md) and a stream of garbage
 * strings, which let the heap grow by a fifth under a connection flood (bench/flood.mjs).
 */
class SeriesTally {
  /** By protocol (CONNECTION_PROTOCOLS order), the protocol a connection opened with (its first request's). */
  readonly opened = new Float64Array(PROTOCOLS);
  /** By the protocol the connection speaks now. */
  readonly open = new Float64Array(PROTOCOLS);
  readonly untracked = new Float64Array(PROTOCOLS);
  /** Connections that switched to this protocol after opening (HTTP/1.1 `Upgrade: h2c`). */
  readonly upgraded = new Float64Array(PROTOCOLS);
  readonly requestsFresh = new Float64Array(PROTOCOLS);
  readonly requestsReused = new Float64Array(PROTOCOLS);
  handshakesSaved = 0;
  savedTime = 0;
  /** HTTP/2 connections closed, and the streams their servers refused or did not process. */
  h2Closed = 0;
  streamsRefused = 0;
  /** TLS connections closed by handshake kind, HelloRetryRequests, and the requests TLS connections carried (exact or estimated). */
  tlsFull = 0;
  tlsResumed = 0;
  tlsHrr = 0;
  tlsClosed = 0;
  tlsRequestsFresh = 0;
  tlsRequestsReused = 0;
  /** Bit i: protocol i has series (set when first seen, never cleared: a series does not vanish). */
  protocols = 0;
  /** By protocol x close reason x closed_by (CONNECTION_PROTOCOLS, CLOSE_REASONS, CLOSED_BY order). */
  readonly closed = new Float64Array(PROTOCOLS * CLOSE_REASONS.length * CLOSED_BY.length);
  readonly labels: { server: string; source?: string };
  /** Position in Exporter.tallyList. */
  index = 0;
  /** `labels` with each protocol, made once (the scrape reuses them). */
  readonly byProtocol: Array<{ server: string; source?: string; protocol: string }>;

  constructor(readonly server: string, source: string) {
    this.labels = source ? { server, source } : { server };
    this.byProtocol = CONNECTION_PROTOCOLS.map((protocol) => ({ ...this.labels, protocol }));
  }
}

/**
 * An open connection as the exporter counts it: its tally, the protocol its series carry now, and
 * whether its first request was seen. Kept in `openByConnection` packed in one small integer
 * (tally index << 4 | protocol << 1 | requested): a small integer as a Map value costs no heap,
 * where an object per open connection took an idle flow to 1,922 bytes, over the 1,900 of
 * test/conn/memory.test.ts. The engine emits `opened` and the first request in one synchronous call (conn/connection.ts: the record is made when the first request confirms HTTP,
 * and only then does that request set `http/1.0`), so until the first request the opening may be
 * re-filed under the first request's protocol: no scrape can run in between, and no counter is
 * seen going down. A change after the first request is a protocol switch (the 101 of
 * `Upgrade: h2c`): the opening stays where it was and the switch is counted in `upgraded`.
 */
type OpenEntry = number;

const REASON_INDEX = new Map<string, number>(CLOSE_REASONS.map((r, i) => [r, i]));
const PROTOCOL_INDEX = new Map<string, number>(CONNECTION_PROTOCOLS.map((p, i) => [p, i]));
const CLOSED_BY_INDEX = new Map<string, number>(CLOSED_BY.map((b, i) => [b, i]));

/** A source of packets (live capture, a file): its state as the exporter shows it. */
export interface SourceStatus {
  name: string;
  kind: 'live' | 'file' | 'proxy';
  up: boolean;
  /** A file source that reached its end (it stays "ready"). */
  done: boolean;
  restarts: number;
  /** tcpdumps killed because they stopped answering (live only; each is also a restart). */
  stalls?: number;
  /** Packets the kernel dropped, as tcpdump reports them (live only). */
  kernelDrops: number;
  /** Packets the interface or filter dropped (tcpdump's "dropped by interface"). */
  interfaceDrops: number;
  engine: Engine;
  /** Proxy tap counts (proxy sources only). */
  proxy?: { accepted: number; active: number; upstreamFailures: number; idleClosed: number; refused?: { limit: number; fd_limit: number } };
}

export interface ExporterOptions {
  maxServers: number;
  /** Sources whose engines feed this exporter; read at scrape time for health metrics. */
  sources: () => SourceStatus[];
  /** --web.disable-exporter-metrics: leave out prom-client's process_* and nodejs_* metrics. */
  disableDefaultMetrics?: boolean;
  /** keepalive_exporter_build_info's labels; the running build's (cli/build-info.ts) by default. */
  build?: BuildInfo;
  /** The names file's current map (--names; read at each use: SIGHUP replaces it), or none. */
  names?: () => NameMap | null;
  /** --client-groups: the keepalive_client_group_* families, by the names of clients' addresses. */
  clientGroups?: boolean;
  /** --names: the file's state for keepalive_names_*; null without --names. */
  namesStatus?: () => { entries: number; lastReloadOk: boolean; reloads: { success: number; failure: number } } | null;
}

/** What the landing page shows (Exporter.liveSummary). */
export interface LiveSummary {
  requests: number;
  reused: number;
  requestsPerSecond: number | null;
  open: number;
  closed: Record<string, number>;
  servers: Array<{ server: string; requests: number; reused: number; advertisedTimeoutSeconds: number | null; observedIdleTimeoutSeconds: number | null }>;
  kernelDrops: number;
  interfaceDrops: number;
  gaps: number;
}

/** One render shared by the scrapes that arrive while it runs, and its gzip, made once when asked. */
interface SharedRender {
  body: Promise<Buffer>;
  gzipped: Promise<Buffer> | null;
}

export class Exporter implements EngineConsumer {
  /**
   * The one registry. Scrapes go through `scrape()`; never call `setContentType(OPENMETRICS)` and
   * `metrics()` on it (prom-client would strip `_total` from the counters for every later scrape).
   */
  readonly registry = new Registry();
  /** Renders started by `scrape()`: concurrent scrapes of one format share a render. */
  renders = 0;
  /** Gzips made by `scrape()`: one per render at most, whatever the number of gzip scrapers. */
  compressions = 0;
  private readonly rendering = new Map<ExpositionFormat, SharedRender>();
  private readonly scrapes: Counter<'format'>;
  private readonly scrapesRejected: Counter;
  private readonly servers = new Set<string>();
  /** Open connections and the tally they count in. */
  readonly openByConnection = new Map<ConnectionRecord, OpenEntry>();
  /** Per client address (or group, with --client-groups), for /api/clients; capped at MAX_CLIENTS. */
  readonly clients: ClientTable;
  /** The tallies by index (the packed entries of openByConnection name them so). */
  private readonly tallyList: SeriesTally[] = [];
  /** Per (source, server) counts, in order of first appearance. */
  private readonly tallies = new Map<string, SeriesTally>();

  private readonly rtt: Histogram;
  private readonly perConnection: Histogram<'server' | 'protocol'>;
  private readonly h2Streams: Histogram<'server'>;
  /** SETTINGS_MAX_CONCURRENT_STREAMS of each labelled server's latest closed HTTP/2 connection that announced one. */
  private readonly h2MaxStreams = new Map<string, number>();
  private readonly duration: Histogram;
  private readonly tlsHandshake: Histogram<'server' | 'kind'>;
  private readonly idle: Histogram<'server' | 'closed_by'>;
  private readonly reconnectGap: Histogram<'server' | 'after'>;
  readonly advTimeout: Gauge<'server'>;
  readonly advMax: Gauge<'server'>;
  readonly inferredMax: Gauge<'server'>;

  constructor(private readonly opts: ExporterOptions) {
    const registers = [this.registry];
    const names = opts.names ?? (() => null);
    // The daemon runs for weeks: 64 idle samples per client (the latest) are its median.
    this.clients = new ClientTable(names, opts.clientGroups === true, MAX_CLIENTS, 64);
    if (!opts.disableDefaultMetrics) {
      collectDefaultMetrics({ register: this.registry });
      for (const name of DEFAULT_METRICS_DROPPED) this.registry.removeSingleMetric(name);
    }
    // node_exporter's node_exporter_build_info, Go exporters' <name>_build_info: 1, the build in labels.
    const build = opts.build ?? buildInfo();
    new Gauge({ name: 'keepalive_exporter_build_info', help: 'A metric with a constant 1 value labeled by version, revision and nodeversion from which keepalive-exporter was built.', labelNames: ['version', 'revision', 'nodeversion'], registers })
      .set({ version: build.version, revision: build.revision, nodeversion: build.nodeVersion }, 1);

    // The connection counters, written from the tallies at scrape time (see SeriesTally). A series
    // appears once it has counted something, as it would with inc().
    const tallies = this.tallies;
    const fromTallies = (each: (m: { inc(l: Record<string, string>, v: number): void }, t: SeriesTally) => void) => function collect(this: Counter<string>) {
      this.reset();
      for (const t of tallies.values()) each(this, t);
    };
    // Per protocol: only the protocols the tally has seen (bit set), each with its own label object.
    const each = (t: SeriesTally, f: (labels: Record<string, string>, p: number) => void): void => {
      for (let p = 0; p < PROTOCOLS; p++) if (t.protocols & (1 << p)) f(t.byProtocol[p], p);
    };
    new Counter({ name: 'keepalive_connections_opened_total', help: 'HTTP connections seen opening (or first seen, for connections open before the capture), by the protocol of their first request (an Upgrade: h2c connection opens as http/1.1: see keepalive_connections_upgraded_total).', labelNames: ['server', 'source', 'protocol'], registers, collect: fromTallies((m, t) => each(t, (l, p) => m.inc(l, t.opened[p]))) });
    new Counter({ name: 'keepalive_connections_closed_total', help: 'Connections closed, by close reason, the side that closed first and the protocol spoken at the close.', labelNames: ['server', 'source', 'protocol', 'reason', 'closed_by'], registers, collect: fromTallies((m, t) => {
      t.closed.forEach((n, i) => {
        if (n > 0) {
          const p = Math.floor(i / CLOSED_PER_PROTOCOL);
          const j = i % CLOSED_PER_PROTOCOL;
          m.inc({ ...t.byProtocol[p], reason: CLOSE_REASONS[Math.floor(j / CLOSED_BY.length)], closed_by: CLOSED_BY[j % CLOSED_BY.length] }, n);
        }
      });
    }) });
    new Counter({ name: 'keepalive_connections_untracked_total', help: 'Connections still open when tracking ended: their source ended, or they were idle past the flow timeout or evicted.', labelNames: ['server', 'source', 'protocol'], registers, collect: fromTallies((m, t) => each(t, (l, p) => { if (t.untracked[p] > 0) m.inc(l, t.untracked[p]); })) });
    new Counter({ name: 'keepalive_connections_upgraded_total', help: 'Connections that switched protocol after their first request (HTTP/1.1 Upgrade: h2c), by the protocol they switched to: their opening counts under http/1.1, their close under this protocol.', labelNames: ['server', 'source', 'protocol'], registers, collect: fromTallies((m, t) => each(t, (l, p) => { if (t.upgraded[p] > 0) m.inc(l, t.upgraded[p]); })) });
    new Counter({ name: 'keepalive_requests_total', help: 'HTTP requests (HTTP/2: client streams), by the protocol that carried them; reused="true" for every request after the first on its connection.', labelNames: ['server', 'source', 'protocol', 'reused'], registers, collect: fromTallies((m, t) => each(t, (l, p) => {
      if (t.requestsFresh[p] > 0) m.inc({ ...l, reused: 'false' }, t.requestsFresh[p]);
      if (t.requestsReused[p] > 0) m.inc({ ...l, reused: 'true' }, t.requestsReused[p]);
    })) });
    new Counter({ name: 'keepalive_handshakes_saved_total', help: 'Connection handshakes (TCP, and TLS on TLS connections) saved by connection reuse (one per reused request).', labelNames: ['server', 'source'], registers, collect: fromTallies((m, t) => { if (t.handshakesSaved > 0) m.inc(t.labels, t.handshakesSaved); }) });
    new Counter({ name: 'keepalive_handshake_time_saved_seconds_total', help: 'Estimated handshake time saved by reuse: the connection handshake RTT, or the server median RTT; on TLS connections plus the TLS handshake, and what a resumed TLS handshake saved against the server\'s median full one.', labelNames: ['server', 'source'], registers, collect: fromTallies((m, t) => { if (t.savedTime > 0) m.inc(t.labels, t.savedTime); }) });
    new Counter({ name: 'keepalive_h2_streams_refused_total', help: 'HTTP/2 streams the server refused (RST_STREAM REFUSED_STREAM) or did not process (above its GOAWAY last-stream-id), counted when their connection closes.', labelNames: ['server', 'source'], registers, collect: fromTallies((m, t) => { if (t.h2Closed > 0) m.inc(t.labels, t.streamsRefused); }) });
    new Counter({ name: 'keepalive_tls_handshakes_total', help: 'TLS handshakes of closed connections, kind="full" or "resumed" (TLS 1.2 session id or ticket, TLS 1.3 pre_shared_key); one whose handshake was not seen is neither.', labelNames: ['server', 'source', 'kind'], registers, collect: fromTallies((m, t) => {
      if (t.tlsFull > 0) m.inc({ ...t.labels, kind: 'full' }, t.tlsFull);
      if (t.tlsResumed > 0) m.inc({ ...t.labels, kind: 'resumed' }, t.tlsResumed);
    }) });
    new Counter({ name: 'keepalive_tls_hello_retry_requests_total', help: 'TLS 1.3 HelloRetryRequests (the server asked for another key share: one more round trip), counted when their connection closes.', labelNames: ['server', 'source'], registers, collect: fromTallies((m, t) => { if (t.tlsClosed > 0) m.inc(t.labels, t.tlsHrr); }) });
    new Counter({ name: 'keepalive_tls_requests_total', help: 'Requests on TLS connections, whatever the protocol label says (protocol="tls": estimated from record turns; decrypted: exact); with keepalive_requests_total it tells reuse on TLS from reuse in cleartext.', labelNames: ['server', 'source', 'reused'], registers, collect: fromTallies((m, t) => {
      if (t.tlsRequestsFresh > 0) m.inc({ ...t.labels, reused: 'false' }, t.tlsRequestsFresh);
      if (t.tlsRequestsReused > 0) m.inc({ ...t.labels, reused: 'true' }, t.tlsRequestsReused);
    }) });
    new Gauge({ name: 'keepalive_open_connections', help: 'HTTP connections open now, by the protocol they speak.', labelNames: ['server', 'source', 'protocol'], registers, collect() {
      this.reset();
      for (const t of tallies.values()) each(t, (l, p) => this.set(l, t.open[p]));
    } });
    this.rtt = new Histogram({ name: 'keepalive_handshake_rtt_seconds', help: 'TCP handshake round trip: client SYN to the client ACK of the SYN-ACK.', buckets: RTT_BUCKETS, registers });
    this.perConnection = new Histogram({ name: 'keepalive_requests_per_connection', help: 'Requests carried by each connection, observed when it closes, by the protocol spoken at the close.', labelNames: ['server', 'protocol'], buckets: REQUESTS_BUCKETS, registers });
    this.h2Streams = new Histogram({ name: 'keepalive_h2_concurrent_streams', help: 'Peak concurrent streams of each HTTP/2 connection, observed when it closes.', labelNames: ['server'], buckets: H2_STREAMS_BUCKETS, registers });
    const h2MaxStreams = this.h2MaxStreams;
    new Gauge({ name: 'keepalive_h2_advertised_max_concurrent_streams', help: 'SETTINGS_MAX_CONCURRENT_STREAMS the server announced on its latest closed HTTP/2 connection that announced one.', labelNames: ['server'], registers, collect() {
      this.reset();
      for (const [server, v] of h2MaxStreams) this.set({ server }, v);
    } });
    this.duration = new Histogram({ name: 'keepalive_connection_duration_seconds', help: 'From the connection opening to its first FIN or RST.', buckets: DURATION_BUCKETS, registers });
    this.tlsHandshake = new Histogram({ name: 'keepalive_tls_handshake_duration_seconds', help: 'TLS handshake duration of closed connections: the ClientHello to the client\'s first application data (TLS 1.3: its Finished), by kind (full or resumed).', labelNames: ['server', 'kind'], buckets: TLS_HANDSHAKE_BUCKETS, registers });
    this.reconnectGap = new Histogram({ name: 'keepalive_reconnect_gap_seconds', help: 'After the server ended a connection (after="idle_timeout" or "max_requests"), the time from its last HTTP byte to the same client address opening a new connection to the server: a keep-alive timeout longer than the gap would have saved that handshake (rate of _bucket{le="T"} over the rate of new connections: the share a timeout of T would have saved).', labelNames: ['server', 'after'], buckets: RECONNECT_GAP_BUCKETS, registers });
    this.idle = new Histogram({ name: 'keepalive_idle_before_close_seconds', help: 'Idle time from the last HTTP byte to the first FIN or RST, by the side that closed.', labelNames: ['server', 'closed_by'], buckets: IDLE_BUCKETS, registers });
    // What the engines learned about each server, read at scrape time (the same knowledge analyze reports).
    const serverGauge = (name: string, help: string, pick: (s: ServerState) => number | null): Gauge<'server'> =>
      new Gauge({ name, help, labelNames: ['server'], registers, collect() {
        this.reset();
        for (const src of opts.sources()) {
          for (const [server, st] of src.engine.servers) {
            const v = pick(st);
            const label = self.label(server);
            if (v !== null && label !== OTHER_SERVER) this.set({ server: label }, v);
          }
        }
      } });
    const self = this;
    this.advTimeout = serverGauge('keepalive_advertised_timeout_seconds', 'Last Keep-Alive: timeout= the server advertised.', (s) => s.advertisedTimeout);
    this.advMax = serverGauge('keepalive_advertised_max_requests', 'Keep-Alive: max= on the first response of the latest connection that announced one (the configured limit).', (s) => s.advertisedMax);
    this.inferredMax = serverGauge('keepalive_inferred_max_requests', 'Requests per connection after which the server ends persistence without announcing it, inferred from repeated closes.', (s) => s.inferredMax);

    const sources = opts.sources;
    // Health of the daemon itself, read from the engines at scrape time.
    new Counter({ name: 'keepalive_packets_total', help: 'Packets read from capture sources.', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) this.inc({ source: s.name }, s.engine.stats().packets); } });
    new Counter({ name: 'keepalive_bytes_total', help: 'Bytes on the wire of the packets read (original lengths).', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) this.inc({ source: s.name }, s.engine.stats().bytes); } });
    new Counter({ name: 'keepalive_capture_dropped_packets_total', help: 'Packets the capture lost, as tcpdump reports them (where="kernel" or "interface").', labelNames: ['source', 'where'], registers, collect() { this.reset(); for (const s of sources()) if (s.kind === 'live') { this.inc({ source: s.name, where: 'kernel' }, s.kernelDrops); this.inc({ source: s.name, where: 'interface' }, s.interfaceDrops); } } });
    new Gauge({ name: 'keepalive_flows_tracked', help: 'TCP flows in the flow table now (open and lingering).', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) this.set({ source: s.name }, s.engine.stats().flowsTracked); } });
    new Counter({ name: 'keepalive_flows_evicted_total', help: 'Flows dropped because the flow table was full (--max-flows).', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) this.inc({ source: s.name }, s.engine.stats().flowsEvicted); } });
    new Counter({ name: 'keepalive_anomalies_total', help: 'Parse errors, gaps and capped resources by kind (names in src/config/anomalies.ts).', labelNames: ['kind'], registers, collect() {
      this.reset();
      const sum = new Map<string, number>();
      for (const s of sources()) for (const [k, v] of Object.entries(s.engine.stats().anomalies)) sum.set(k, (sum.get(k) ?? 0) + v);
      for (const k of ANOMALIES) if (k !== 'not_tcp') this.inc({ kind: k }, sum.get(k) ?? 0);
    } });
    new Counter({ name: 'keepalive_non_http_flows_total', help: 'TCP flows not measured as HTTP (HTTP/1.x, h2c or HTTPS), by what they were: tls (a handshake that got no ServerHello, or an ALPN offer with no HTTP protocol), http2 (a preface where no h2c session could start) or other.', labelNames: ['protocol'], registers, collect() {
      this.reset();
      const t = { tls: 0, http2: 0, other: 0 };
      for (const s of sources()) { const n = s.engine.stats().nonHttp; t.tls += n.tls; t.http2 += n.http2; t.other += n.other; }
      for (const [k, v] of Object.entries(t)) this.inc({ protocol: k }, v);
    } });
    new Counter({ name: 'keepalive_source_restarts_total', help: 'Times a capture source (tcpdump) was restarted after it stopped.', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) this.inc({ source: s.name }, s.restarts); } });
    new Counter({ name: 'keepalive_source_stalls_total', help: 'Times a live capture (tcpdump) was killed because it neither wrote packets nor answered SIGUSR1 (each is also a restart).', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) if (s.kind === 'live') this.inc({ source: s.name }, s.stalls ?? 0); } });
    new Gauge({ name: 'keepalive_source_up', help: '1 while the source is running (a file source that finished reads 0 and is done).', labelNames: ['source', 'kind'], registers, collect() { this.reset(); for (const s of sources()) this.set({ source: s.name, kind: s.kind }, s.up ? 1 : 0); } });
    new Counter({ name: 'keepalive_proxy_connections_total', help: 'Client connections the proxy tap accepted.', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) if (s.proxy) this.inc({ source: s.name }, s.proxy.accepted); } });
    new Gauge({ name: 'keepalive_proxy_connections_active', help: 'Client connections the proxy tap is relaying now.', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) if (s.proxy) this.set({ source: s.name }, s.proxy.active); } });
    new Counter({ name: 'keepalive_proxy_upstream_failures_total', help: 'Client connections closed because the upstream refused, was unreachable or timed out.', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) if (s.proxy) this.inc({ source: s.name }, s.proxy.upstreamFailures); } });
    new Counter({ name: 'keepalive_proxy_connections_refused_total', help: 'Client connections the proxy tap reset at once without relaying them: reason="limit" (--proxy.max-connections reached) or "fd_limit" (near the file descriptor limit).', labelNames: ['source', 'reason'], registers, collect() { this.reset(); for (const s of sources()) if (s.proxy) for (const reason of ['limit', 'fd_limit'] as const) this.inc({ source: s.name, reason }, s.proxy.refused?.[reason] ?? 0); } });
    new Counter({ name: 'keepalive_proxy_idle_closed_total', help: 'Relayed connections closed by the proxy idle timeout.', labelNames: ['source'], registers, collect() { this.reset(); for (const s of sources()) if (s.proxy) this.inc({ source: s.name }, s.proxy.idleClosed); } });
    if (opts.clientGroups) {
      // Groups, never addresses: the names file's names plus "other" (ClientTable keys, grouped).
      const clients = this.clients;
      new Counter({ name: 'keepalive_client_group_connections_closed_total', help: 'Connections by client group (--names, --client-groups: the name of the client address\'s most specific entry; other when none names it) and close reason, counted when they close.', labelNames: ['client_group', 'reason'], registers, collect() {
        this.reset();
        clients.each((g, _n, _r, _u, reasons) => { for (const [reason, n] of reasons) if (reason !== 'open') this.inc({ client_group: g, reason }, n); });
      } });
      new Counter({ name: 'keepalive_client_group_requests_total', help: 'Requests by client group, counted when their connection closes; reused="true" for every request after the first on its connection.', labelNames: ['client_group', 'reused'], registers, collect() {
        this.reset();
        clients.each((g, _n, requests, reused) => {
          this.inc({ client_group: g, reused: 'false' }, requests - reused);
          this.inc({ client_group: g, reused: 'true' }, reused);
        });
      } });
    }
    if (opts.namesStatus) {
      const status = opts.namesStatus;
      new Gauge({ name: 'keepalive_names_entries', help: 'Entries in the names file (--names) in use.', registers, collect() { this.set(status()?.entries ?? 0); } });
      new Gauge({ name: 'keepalive_names_last_reload_successful', help: 'Whether the last read of the names file (at start or on SIGHUP) succeeded: 1, or 0 (the previous names stay in use).', registers, collect() { this.set(status()?.lastReloadOk ? 1 : 0); } });
      new Counter({ name: 'keepalive_names_reloads_total', help: 'Reads of the names file on SIGHUP, by result (success or failure).', labelNames: ['result'], registers, collect() {
        this.reset();
        const st = status();
        this.inc({ result: 'success' }, st?.reloads.success ?? 0);
        this.inc({ result: 'failure' }, st?.reloads.failure ?? 0);
      } });
    }
    new Gauge({ name: 'keepalive_servers_tracked', help: 'Distinct server label values in use (at most --max-servers; the rest are server="other").', registers, collect() { this.set(self.servers.size); } });
    // The scrapes themselves (promhttp's promhttp_metric_handler_requests_total, split in two).
    this.scrapes = new Counter({ name: 'keepalive_scrapes_total', help: 'Scrapes of /metrics answered with the metrics, by format (text or openmetrics).', labelNames: ['format'], registers });
    this.scrapesRejected = new Counter({ name: 'keepalive_scrapes_rejected_total', help: 'Scrapes of /metrics answered 503 at once because --web.max-requests scrapes were in flight.', registers });
    for (const format of ['text', 'openmetrics'] as const) this.scrapes.inc({ format }, 0);
  }

  /** The registry as Prometheus text: what `scrape('text')` serves (for tests and tools). */
  get text(): Registry {
    return this.registry;
  }

  /**
   * The body of a scrape in `format`. Single flight: a caller arriving while a render of that
   * format is in progress gets that render's result (at most one render old, like a scrape that
   * started a moment earlier), so N concurrent scrapes cost one render and one buffer, not N.
   */
  scrape(format: ExpositionFormat, encoding: 'identity' | 'gzip' = 'identity'): Promise<Buffer> {
    let shared = this.rendering.get(format);
    if (shared === undefined) {
      this.renders++;
      const entry: SharedRender = { body: Promise.resolve(Buffer.alloc(0)), gzipped: null };
      // Shared until the render, and its gzip if one was asked for, is done.
      const done = (): void => {
        if (this.rendering.get(format) === entry) this.rendering.delete(format);
      };
      entry.body = render(this.registry, format)
        .then((text) => Buffer.from(text, 'utf8'))
        .finally(() => { if (entry.gzipped === null) done(); });
      this.rendering.set(format, entry);
      shared = entry;
    }
    if (encoding === 'identity') return shared.body;
    let gzipped = shared.gzipped;
    if (gzipped === null) {
      const entry = shared;
      // Async zlib: on the threadpool, so probes and the capture run while it compresses.
      gzipped = entry.gzipped = entry.body
        .then((body) => {
          this.compressions++;
          return gzipAsync(body, { level: GZIP_LEVEL });
        })
        .finally(() => {
          if (this.rendering.get(format) === entry) this.rendering.delete(format);
        });
    }
    return gzipped;
  }

  /** Counts a scrape: answered with the metrics (in `format`), or rejected at the concurrency cap. */
  countScrape(outcome: ExpositionFormat | 'rejected'): void {
    if (outcome === 'rejected') this.scrapesRejected.inc();
    else this.scrapes.inc({ format: outcome });
  }

  /**
   * The server label for a connection: its name from the names file, else its "ip:port"; "other"
   * past the cap (names count against it as addresses do; servers sharing a name share a label).
   */
  label(server: string): string {
    const value = this.opts.names?.()?.server(server) ?? server;
    if (this.servers.has(value)) return value;
    if (this.servers.size < this.opts.maxServers) {
      this.servers.add(value);
      return value;
    }
    return OTHER_SERVER;
  }

  /** The tally of a (source, server label) pair, made on first use. */
  private tally(server: string, source: string): SeriesTally {
    const key = `${source}\u0000${server}`;
    let t = this.tallies.get(key);
    if (!t) {
      t = new SeriesTally(server, source);
      t.index = this.tallyList.length;
      this.tallyList.push(t);
      this.tallies.set(key, t);
    }
    return t;
  }

  /** The packed entry of an open connection (see OpenEntry); for one opened before this consumer subscribed, a loose one, not stored (as before: its open count goes below zero). */
  private entryOf(c: ConnectionRecord, source: string): number {
    const packed = this.openByConnection.get(c);
    if (packed !== undefined) return packed;
    const t = this.tally(this.label(c.server), source);
    const p = PROTOCOL_INDEX.get(c.protocol) ?? 0;
    t.protocols |= 1 << p;
    return (t.index << 4) | (p << 1) | 1;
  }

  /** The connection's protocol changed since its last event: move its open count, and re-file its opening or count the switch (see OpenEntry). Returns the new entry. */
  private follow(e: number, c: ConnectionRecord): number {
    const p = PROTOCOL_INDEX.get(c.protocol);
    const was = (e >> 1) & 7;
    if (p === undefined || p === was) return e;
    const t = this.tallyList[e >> 4];
    t.protocols |= 1 << p;
    t.open[was]--;
    t.open[p]++;
    if (e & 1) t.upgraded[p]++;
    else {
      t.opened[was]--;
      t.opened[p]++;
    }
    return (e & ~14) | (p << 1);
  }

  /**
   * The consumer for one source's engine: its connection metrics carry `source` (the listener or
   * interface: a handful of values), so capture and proxy data can be told apart. Subscribing
   * the exporter itself gives the same metrics without the label.
   */
  forSource(source: string): EngineConsumer {
    return {
      opened: (c) => this.onOpened(c, source),
      request: (c, r) => this.onRequest(c, r, source),
      closed: (c) => this.onClosed(c, source),
      reconnect: (f) => this.reconnect(f),
    };
  }

  opened(c: ConnectionRecord): void {
    this.onOpened(c, '');
  }

  request(c: ConnectionRecord, r: RequestRecord): void {
    this.onRequest(c, r, '');
  }

  closed(c: ConnectionRecord): void {
    this.onClosed(c, '');
  }

  reconnect(f: ReconnectFact): void {
    this.reconnectGap.observe({ server: this.label(f.server), after: f.after }, f.gapSeconds);
  }

  private onOpened(c: ConnectionRecord, source: string): void {
    const t = this.tally(this.label(c.server), source);
    const p = PROTOCOL_INDEX.get(c.protocol) ?? 0;
    this.openByConnection.set(c, (t.index << 4) | (p << 1));
    t.protocols |= 1 << p;
    t.opened[p]++;
    t.open[p]++;
    if (c.handshakeRtt !== null) this.rtt.observe(c.handshakeRtt);
  }

  private onRequest(c: ConnectionRecord, r: RequestRecord, source: string): void {
    const was = this.entryOf(c, source);
    let e = was;
    if (c.protocol !== CONNECTION_PROTOCOLS[(e >> 1) & 7]) e = this.follow(e, c);
    e |= 1;
    // Only the first request and a switch change the entry: one Map write per connection, not per request.
    if (e !== was && this.openByConnection.has(c)) this.openByConnection.set(c, e);
    const t = this.tallyList[e >> 4];
    const p = (e >> 1) & 7;
    if (!r.reused) t.requestsFresh[p]++;
    else {
      t.requestsReused[p]++;
      t.handshakesSaved++;
      if (r.savedSeconds > 0) t.savedTime += r.savedSeconds;
    }
    if (c.tls !== null) {
      if (r.reused) t.tlsRequestsReused++;
      else t.tlsRequestsFresh++;
    }
  }

  private onClosed(c: ConnectionRecord, source: string): void {
    this.clients.closed(c);
    let e = this.entryOf(c, source);
    if (c.protocol !== CONNECTION_PROTOCOLS[(e >> 1) & 7]) e = this.follow(e, c);
    const t = this.tallyList[e >> 4];
    const p = (e >> 1) & 7;
    this.openByConnection.delete(c);
    t.open[p]--;
    if (c.closeReason === 'open') {
      t.untracked[p]++;
      return;
    }
    const by = c.closedBy ?? 'unknown';
    t.closed[p * CLOSED_PER_PROTOCOL + REASON_INDEX.get(c.closeReason)! * CLOSED_BY.length + CLOSED_BY_INDEX.get(by)!]++;
    this.perConnection.observe({ server: t.server, protocol: CONNECTION_PROTOCOLS[p] }, c.requests);
    if (c.h2 !== null) {
      t.h2Closed++;
      t.streamsRefused += c.h2.streamsRefused;
      this.h2Streams.observe({ server: t.server }, c.h2.peakConcurrentStreams);
      // Per labelled server only, as the other advertised gauges: "other" mixes servers.
      if (c.h2.serverMaxConcurrentStreams !== null && t.server !== OTHER_SERVER) this.h2MaxStreams.set(t.server, c.h2.serverMaxConcurrentStreams);
    }
    if (c.tls !== null) {
      t.tlsClosed++;
      if (c.tls.helloRetryRequest) t.tlsHrr++;
      if (c.tls.resumptionSavedSeconds > 0) t.savedTime += c.tls.resumptionSavedSeconds;
      const kind = c.tls.resumed === true ? 'resumed' : c.tls.resumed === false ? 'full' : null;
      if (kind === 'full') t.tlsFull++;
      else if (kind === 'resumed') t.tlsResumed++;
      if (kind && c.tls.handshakeSeconds !== null) this.tlsHandshake.observe({ server: t.server, kind }, c.tls.handshakeSeconds);
    }
    if (c.closedAt !== null) this.duration.observe(Math.max(0, c.closedAt - c.openedAt));
    if (c.idleBeforeClose !== null) this.idle.observe({ server: t.server, closed_by: by }, c.idleBeforeClose);
    if (c.closeReason === 'idle_timeout' && c.idleBeforeClose !== null) {
      let ring = this.idleCloses.get(t.server);
      if (!ring) this.idleCloses.set(t.server, (ring = []));
      if (ring.length >= 64) ring.shift();
      ring.push(c.idleBeforeClose);
    }
  }

  /**
   * The numbers of the landing page, summed over sources from the same tallies the metrics are
   * written from: requests (and reused), connections closed by reason, open connections, per
   * server label its requests, the advertised and the observed idle timeout, and what the
   * capture lost. `requestsPerSecond` is over the last two calls at least a second apart (the
   * page's refreshes; `now` is the caller's clock, seconds): null until two such calls.
   */
  liveSummary(now: number): LiveSummary {
    let requests = 0;
    let reused = 0;
    let open = 0;
    const closed = new Map<string, number>();
    const perServer = new Map<string, { requests: number; reused: number }>();
    for (const t of this.tallyList) {
      let tr = 0;
      let tu = 0;
      for (let p = 0; p < PROTOCOLS; p++) {
        tr += t.requestsFresh[p] + t.requestsReused[p];
        tu += t.requestsReused[p];
        open += t.open[p];
        for (let k = 0; k < CLOSE_REASONS.length; k++) {
          let n = 0;
          for (let b = 0; b < CLOSED_BY.length; b++) n += t.closed[p * CLOSED_PER_PROTOCOL + k * CLOSED_BY.length + b];
          if (n > 0) closed.set(CLOSE_REASONS[k], (closed.get(CLOSE_REASONS[k]) ?? 0) + n);
        }
      }
      requests += tr;
      reused += tu;
      const ps = perServer.get(t.server) ?? { requests: 0, reused: 0 };
      ps.requests += tr;
      ps.reused += tu;
      perServer.set(t.server, ps);
    }
    const advertised = new Map<string, number>();
    let kernelDrops = 0;
    let interfaceDrops = 0;
    let gaps = 0;
    for (const src of this.opts.sources()) {
      kernelDrops += src.kernelDrops;
      interfaceDrops += src.interfaceDrops;
      gaps += src.engine.stats().gaps;
      for (const [server, st] of src.engine.servers) if (st.advertisedTimeout !== null) advertised.set(this.label(server), st.advertisedTimeout);
    }
    const r = this.rateSample;
    let rps: number | null = null;
    if (r && now - r.at >= 1) {
      rps = (requests - r.requests) / (now - r.at);
      this.lastRate = rps;
      this.rateSample = { at: now, requests };
    } else if (!r) this.rateSample = { at: now, requests };
    else rps = this.lastRate;
    const servers = [...perServer].map(([server, v]) => ({
      server, requests: v.requests, reused: v.reused,
      advertisedTimeoutSeconds: advertised.get(server) ?? null,
      observedIdleTimeoutSeconds: median(this.idleCloses.get(server) ?? []),
    })).sort((a, b) => b.requests - a.requests);
    return { requests, reused, requestsPerSecond: rps, open, closed: Object.fromEntries(closed), servers, kernelDrops, interfaceDrops, gaps };
  }

  private rateSample: { at: number; requests: number } | null = null;
  private lastRate: number | null = null;
  /** Per server label, the idle times of its latest idle closes (64): its observed idle timeout on the landing page. */
  private readonly idleCloses = new Map<string, number[]>();

  /** Open connections, busiest first, at most `limit`. */
  openConnections(limit: number): Array<Record<string, unknown>> {
    const all = [...this.openByConnection.keys()];
    all.sort((a, b) => b.requests - a.requests || a.openedAt - b.openedAt);
    return all.slice(0, limit).map((c) => ({
      client: c.client,
      server: c.server,
      protocol: c.protocol,
      openedAt: c.openedAt,
      requests: c.requests,
      reusedRequests: c.reusedRequests,
      handshakeRttSeconds: c.handshakeRtt,
      advertisedTimeoutSeconds: c.advertisedTimeout,
      advertisedMaxRequests: c.advertisedMax,
      midstream: c.midstream,
    }));
  }
}
