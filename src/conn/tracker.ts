/**
 * The connection layer across connections: it gives each TCP flow a `Connection` (connection.ts,
 * which hosts the flow's protocol session), keeps what is learnt per server (RTT median,
 * advertised settings, the inference of a limit nobody announced), and emits the facts to the
 * consumers.
 */
import type { EngineLimits } from '../config/limits.js';
import { A, type Anomaly } from '../config/anomalies.js';
import type { FinishReason, FlowEvents, TcpFlow } from '../tcp/flows.js';
import type { StreamSink } from '../tcp/stream.js';
import { Connection } from './connection.js';
import type { ConnectionRecord, EngineConsumer, RequestRecord } from './records.js';
import { ServerState } from './servers.js';
import { ReconnectPairs } from './reconnects.js';
import type { SecretSource } from '../session/session.js';

export interface TrackerOptions {
  limits: EngineLimits;
  /** Only these server ports are analysed; null: any port where HTTP is seen. */
  ports: Set<number> | null;
  /** TLS secrets by client random; null without a key log. */
  keys: SecretSource | null;
}

export interface TrackerCounters {
  anomalies: Float64Array;
  nonHttp: { tls: number; http2: number; other: number };
  connectionsOpened: number;
  connectionsClosed: number;
  openConnections: number;
}

interface PendingInference {
  conn: Connection;
  server: ServerState;
  count: number;
  /** Age of the connection when persistence ended. */
  age: number;
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
  /** A server's close and the same client's next connection to it: the reconnect gaps (reconnects.ts). */
  private readonly reconnects: ReconnectPairs;

  constructor(
    private readonly opts: TrackerOptions,
    readonly counters: TrackerCounters,
  ) {
    this.limits = opts.limits;
    this.reconnects = new ReconnectPairs(
      opts.limits.maxReconnectPairs,
      (f) => { for (const k of this.consumers) k.reconnect?.(f); },
      () => this.anomaly('reconnect_pair_evicted'),
    );
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
    return new Connection(this, flow);
  }

  closing(flow: TcpFlow, dir: number, rst: boolean, ts: number): void {
    (flow.owner as Connection | null)?.closing(dir, rst, ts);
  }

  flowFinished(flow: TcpFlow, _why: FinishReason, ts: number): void {
    (flow.owner as Connection | null)?.finished(ts);
  }

  anomaly(name: Anomaly): void {
    this.counters.anomalies[A[name]]++;
  }

  /** False when --ports was given and does not list this server port. */
  get keys(): SecretSource | null {
    return this.opts.keys;
  }

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
    this.reconnects.opened(c);
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
    this.reconnects.closed(c);
  }

  /**
   * A server ended persistence with nothing announced, at a limit it keeps to itself. nginx does
   * exactly this at `keepalive_requests` (docs/keepalive-semantics.md, "Inferring a limit nobody
   * announced"): the same served count again on the same server confirms a request limit. Its
   * `keepalive_time` (and gRPC's MAX_CONNECTION_AGE) ends connections at a constant age instead,
   * with varying counts: the same age again (within `inferMaxAgeTolerance`) on a connection with
   * another count confirms an age limit. A lone one is an ordinary `server_close`.
   */
  /** The served count is the server's limit as known now: inferred, announced (Apache serves max + 1), or a common default. */
  isKnownLimit(server: ServerState | null, count: number): boolean {
    if (!server) return false;
    if (server.inferredMax === count) return true;
    if (server.advertisedMax !== null && count === server.advertisedMax + 1) return true;
    return this.limits.knownMaxRequestsDefaults.includes(count);
  }

  inferLimit(conn: Connection, server: ServerState | null, count: number, age: number, ts: number): void {
    if (!server) return conn.emitVerdict('server_close');
    const lim = this.limits;
    if (server.inferredMax === count) return conn.emitVerdict('max_requests');
    const aged = age >= lim.inferMaxAgeMinSeconds;
    if (aged && server.inferredMaxAge !== null && this.sameAge(age, server.inferredMaxAge)) return conn.emitVerdict('max_age');
    // Apache announces max=N (MaxKeepAliveRequests) on connections that ask for keep-alive and
    // serves N+1 requests; on those that do not ask it announces nothing but stops at the same count.
    if (server.advertisedMax !== null && count === server.advertisedMax + 1) return conn.emitVerdict('max_requests');
    if (lim.knownMaxRequestsDefaults.includes(count)) {
      server.inferredMax = count;
      return conn.emitVerdict('max_requests');
    }
    const seen = (server.candidateCounts.get(count) ?? 0) + 1;
    if (server.candidateCounts.size < 64 || server.candidateCounts.has(count)) server.candidateCounts.set(count, seen);
    if (seen >= lim.inferMaxRequestsAfter) {
      server.inferredMax = count;
      this.releasePending((p) => p.server === server && p.count === count, 'max_requests');
      return conn.emitVerdict('max_requests');
    }
    if (aged) {
      const sameAge = (p: PendingInference) => p.server === server && p.count !== count && p.age >= lim.inferMaxAgeMinSeconds && this.sameAge(p.age, age);
      if (this.pendingInferences.filter(sameAge).length + 1 >= lim.inferMaxRequestsAfter) {
        server.inferredMaxAge = age;
        this.releasePending(sameAge, 'max_age');
        return conn.emitVerdict('max_age');
      }
    }
    if (this.pendingInferences.length >= lim.maxPendingInferences) {
      this.anomaly('inference_overflow');
      this.pendingInferences.shift()!.conn.emitVerdict('server_close');
    }
    this.pendingInferences.push({ conn, server, count, age, deadline: ts + lim.inferMaxRequestsWaitSeconds });
  }

  /** Ages of two connections ended at one age limit: the limit is checked when a request arrives, so they differ by up to the gap between requests. */
  private sameAge(a: number, b: number): boolean {
    return Math.abs(a - b) <= Math.max(this.limits.inferMaxAgeToleranceSeconds, this.limits.inferMaxAgeTolerance * Math.min(a, b));
  }

  private releasePending(match: (p: PendingInference) => boolean, verdict: 'max_requests' | 'max_age'): void {
    const keep: PendingInference[] = [];
    for (const p of this.pendingInferences) {
      if (match(p)) p.conn.emitVerdict(verdict);
      else keep.push(p);
    }
    this.pendingInferences = keep;
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
