/**
 * The Prometheus exporter: the second consumer of the engine's facts (the `analyze` report is
 * the first). Every metric is defined here, on the project's own registry: one registry, which
 * src/metrics/exposition.ts renders as Prometheus text or OpenMetrics per scrape (content
 * negotiation in src/server/app.ts). Not two registries sharing the metrics: prom-client's own
 * OpenMetrics rendering renames shared counters in place (see exposition.ts).
 *
 * Cardinality: the only unbounded value, the server, is capped at `maxServers` distinct label
 * values; later servers are reported as server="other". No label carries a path, query,
 * cookie, Host header or client address.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CLOSE_REASONS, type ConnectionRecord, type EngineConsumer, type RequestRecord } from '../conn/records.js';
import type { Engine } from '../conn/engine.js';
import type { ServerState } from '../conn/servers.js';
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
export const IDLE_BUCKETS = [0.1, 0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 10, 15, 20, 30, 45, 60, 65, 75, 90, 120, 300, 600];
const RTT_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3];
const REQUESTS_BUCKETS = [0, 1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500, 1000, 10000];
const DURATION_BUCKETS = [0.01, 0.1, 0.5, 1, 2, 5, 10, 15, 30, 60, 75, 120, 300, 600, 1800, 3600, 14400];

const CLOSED_BY = ['client', 'server', 'unknown'] as const;

/**
 * The counts of one (source, server) pair, kept as plain numbers and handed to prom-client only
 * at scrape time (the counters' `collect`). prom-client hashes a label object on every `inc`:
 * per request that was 3.7 of the proxy tap's 24.5 µs (bench/README.md) and a stream of garbage
 * strings, which let the heap grow by a fifth under a connection flood (bench/flood.mjs).
 */
class SeriesTally {
  opened = 0;
  open = 0;
  untracked = 0;
  requestsFresh = 0;
  requestsReused = 0;
  savedTime = 0;
  /** By close reason x closed_by (CLOSE_REASONS order, then CLOSED_BY order). */
  readonly closed = new Float64Array(CLOSE_REASONS.length * CLOSED_BY.length);
  readonly labels: { server: string; source?: string };

  constructor(readonly server: string, source: string) {
    this.labels = source ? { server, source } : { server };
  }
}

const REASON_INDEX = new Map<string, number>(CLOSE_REASONS.map((r, i) => [r, i]));
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
  readonly openByConnection = new Map<ConnectionRecord, SeriesTally>();
  /** Per (source, server) counts, in order of first appearance. */
  private readonly tallies = new Map<string, SeriesTally>();

  private readonly rtt: Histogram;
  private readonly perConnection: Histogram<'server'>;
  private readonly duration: Histogram;
  private readonly idle: Histogram<'server' | 'closed_by'>;
  readonly advTimeout: Gauge<'server'>;
  readonly advMax: Gauge<'server'>;
  readonly inferredMax: Gauge<'server'>;

  constructor(private readonly opts: ExporterOptions) {
    const registers = [this.registry];
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
    new Counter({ name: 'keepalive_connections_opened_total', help: 'HTTP/1.x connections seen opening (or first seen, for connections open before the capture).', labelNames: ['server', 'source'], registers, collect: fromTallies((m, t) => m.inc(t.labels, t.opened)) });
    new Counter({ name: 'keepalive_connections_closed_total', help: 'Connections closed, by close reason and the side that closed first.', labelNames: ['server', 'source', 'reason', 'closed_by'], registers, collect: fromTallies((m, t) => {
      t.closed.forEach((n, i) => {
        if (n > 0) m.inc({ ...t.labels, reason: CLOSE_REASONS[Math.floor(i / CLOSED_BY.length)], closed_by: CLOSED_BY[i % CLOSED_BY.length] }, n);
      });
    }) });
    new Counter({ name: 'keepalive_connections_untracked_total', help: 'Connections still open when tracking ended: their source ended, or they were idle past the flow timeout or evicted.', labelNames: ['server', 'source'], registers, collect: fromTallies((m, t) => { if (t.untracked > 0) m.inc(t.labels, t.untracked); }) });
    new Counter({ name: 'keepalive_requests_total', help: 'HTTP requests; reused="true" for every request after the first on its connection.', labelNames: ['server', 'source', 'reused'], registers, collect: fromTallies((m, t) => {
      if (t.requestsFresh > 0) m.inc({ ...t.labels, reused: 'false' }, t.requestsFresh);
      if (t.requestsReused > 0) m.inc({ ...t.labels, reused: 'true' }, t.requestsReused);
    }) });
    new Counter({ name: 'keepalive_handshakes_saved_total', help: 'TCP handshakes saved by connection reuse (one per reused request).', labelNames: ['server', 'source'], registers, collect: fromTallies((m, t) => { if (t.requestsReused > 0) m.inc(t.labels, t.requestsReused); }) });
    new Counter({ name: 'keepalive_handshake_time_saved_seconds_total', help: 'Estimated handshake time saved by reuse: the connection handshake RTT, or the server median RTT.', labelNames: ['server', 'source'], registers, collect: fromTallies((m, t) => { if (t.savedTime > 0) m.inc(t.labels, t.savedTime); }) });
    new Gauge({ name: 'keepalive_open_connections', help: 'HTTP/1.x connections open now.', labelNames: ['server', 'source'], registers, collect() {
      this.reset();
      for (const t of tallies.values()) this.set(t.labels, t.open);
    } });
    this.rtt = new Histogram({ name: 'keepalive_handshake_rtt_seconds', help: 'TCP handshake round trip: client SYN to the client ACK of the SYN-ACK.', buckets: RTT_BUCKETS, registers });
    this.perConnection = new Histogram({ name: 'keepalive_requests_per_connection', help: 'Requests carried by each connection, observed when it closes.', labelNames: ['server'], buckets: REQUESTS_BUCKETS, registers });
    this.duration = new Histogram({ name: 'keepalive_connection_duration_seconds', help: 'From the connection opening to its first FIN or RST.', buckets: DURATION_BUCKETS, registers });
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
    new Counter({ name: 'keepalive_non_http_flows_total', help: 'TCP flows that turned out not to be HTTP/1.x, by what they were.', labelNames: ['protocol'], registers, collect() {
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

  /** The server label for a connection: its "ip:port", or "other" past the cap. */
  label(server: string): string {
    if (this.servers.has(server)) return server;
    if (this.servers.size < this.opts.maxServers) {
      this.servers.add(server);
      return server;
    }
    return OTHER_SERVER;
  }

  /** The tally of a (source, server label) pair, made on first use. */
  private tally(server: string, source: string): SeriesTally {
    const key = `${source}\u0000${server}`;
    let t = this.tallies.get(key);
    if (!t) {
      t = new SeriesTally(server, source);
      this.tallies.set(key, t);
    }
    return t;
  }

  private tallyOf(c: ConnectionRecord, source: string): SeriesTally {
    return this.openByConnection.get(c) ?? this.tally(this.label(c.server), source);
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

  private onOpened(c: ConnectionRecord, source: string): void {
    const t = this.tally(this.label(c.server), source);
    this.openByConnection.set(c, t);
    t.opened++;
    t.open++;
    if (c.handshakeRtt !== null) this.rtt.observe(c.handshakeRtt);
  }

  private onRequest(c: ConnectionRecord, r: RequestRecord, source: string): void {
    const t = this.tallyOf(c, source);
    if (!r.reused) t.requestsFresh++;
    else {
      t.requestsReused++;
      if (r.savedSeconds > 0) t.savedTime += r.savedSeconds;
    }
  }

  private onClosed(c: ConnectionRecord, source: string): void {
    const t = this.tallyOf(c, source);
    this.openByConnection.delete(c);
    t.open--;
    if (c.closeReason === 'open') {
      t.untracked++;
      return;
    }
    const by = c.closedBy ?? 'unknown';
    t.closed[REASON_INDEX.get(c.closeReason)! * CLOSED_BY.length + CLOSED_BY_INDEX.get(by)!]++;
    this.perConnection.observe({ server: t.server }, c.requests);
    if (c.closedAt !== null) this.duration.observe(Math.max(0, c.closedAt - c.openedAt));
    if (c.idleBeforeClose !== null) this.idle.observe({ server: t.server, closed_by: by }, c.idleBeforeClose);
  }

  /** Open connections, busiest first, at most `limit`. */
  openConnections(limit: number): Array<Record<string, unknown>> {
    const all = [...this.openByConnection.keys()];
    all.sort((a, b) => b.requests - a.requests || a.openedAt - b.openedAt);
    return all.slice(0, limit).map((c) => ({
      client: c.client,
      server: c.server,
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
