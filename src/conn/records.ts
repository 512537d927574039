/**
 * The facts the engine emits. Every consumer (the analyze report, the Prometheus exporter, the
 * tests) reads these and nothing else.
 */

/** Why a connection closed (docs/keepalive-semantics.md, "Why connections close"). */
export const CLOSE_REASONS = [
  'idle_timeout',
  'max_requests',
  'server_close',
  'client_close',
  'client_idle',
  'not_persistent',
  'race',
  'aborted',
  'reset',
  'unused',
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];
/** `open`: the connection had not closed when tracking ended (capture end, idle expiry, eviction). */
export type ConnectionOutcome = CloseReason | 'open';

export type Side = 'client' | 'server';

export interface RequestRecord {
  /** 1-based position on its connection. */
  index: number;
  /** Capture time of the request's first byte. */
  time: number;
  method: string;
  /** "1.0" or "1.1" */
  version: string;
  /** The request asked for persistence (HTTP/1.1 without close, or HTTP/1.0 with keep-alive). */
  wantsKeepAlive: boolean;
  /** The request carried `Connection: close`. */
  connectionClose: boolean;
  /** Not the first request on its connection: it saved a handshake. */
  reused: boolean;
  /** Handshake time this request saved (its connection's RTT, or the server's median). */
  savedSeconds: number;
  /** Where `savedSeconds` came from: the connection's own handshake, the server's median RTT, or nothing known. */
  savedFrom: 'handshake' | 'server_median' | 'unknown';
  /** Requests outstanding when this one started (pipelining depth). */
  outstandingAtStart: number;
  /** Final status, 0 until the response head is seen. */
  status: number;
  responseVersion: string;
  /** The response allowed the connection to stay open. */
  responseKeepAlive: boolean;
  responseConnectionClose: boolean;
  /**
   * The response had no length (no Content-Length, no chunked coding): its body ends only with
   * the connection (RFC 9112 6.3 item 8), so the close was required by the framing.
   */
  responseCloseDelimited: boolean;
  /** `Keep-Alive: timeout=`/`max=` on the response; -1 when absent. */
  kaTimeout: number;
  kaMax: number;
  /** Time the response completed; -1 while outstanding. */
  responseEnd: number;
  responseStarted: boolean;
}

export interface ConnectionRecord {
  id: number;
  /** "ip:port", IPv6 as "[addr]:port". */
  client: string;
  server: string;
  ipVersion: number;
  openedAt: number;
  closedAt: number | null;
  /** Client SYN to client ACK of the SYN-ACK; null when the handshake was not captured. */
  handshakeRtt: number | null;
  /** Requests seen on the connection. */
  requests: number;
  reusedRequests: number;
  responses: number;
  /** Sum of `savedSeconds` of its reused requests. */
  handshakeTimeSaved: number;
  /** Last `Keep-Alive: timeout=` and `max=` advertised by the server on this connection. */
  advertisedTimeout: number | null;
  advertisedMax: number | null;
  closeReason: ConnectionOutcome;
  closedBy: Side | null;
  /** How the first close happened. */
  closedWith: 'fin' | 'rst' | null;
  /** From the last HTTP byte to the first FIN/RST. */
  idleBeforeClose: number | null;
  /** Upgrade (101) or CONNECT: HTTP parsing stopped. */
  tunneled: boolean;
  /** The capture started after the connection opened: roles were inferred from the HTTP itself. */
  midstream: boolean;
}

export interface EngineConsumer {
  opened?(c: ConnectionRecord): void;
  request?(c: ConnectionRecord, r: RequestRecord): void;
  response?(c: ConnectionRecord, r: RequestRecord): void;
  /** Exactly once per connection: with a close reason, or `open` when tracking ended first. */
  closed?(c: ConnectionRecord): void;
}
