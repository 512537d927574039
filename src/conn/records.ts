/**
 * The facts the engine emits. Every consumer (the analyze report, the Prometheus exporter, the
 * tests) reads these and nothing else.
 */

export { CLOSE_REASONS, type CloseReason, type ConnectionOutcome, type H2Facts, type H2Goaway, type RequestRecord, type Side, type TlsFacts } from '../session/facts.js';
export type { ReconnectFact, ReconnectAfter } from './reconnects.js';
import type { ReconnectFact } from './reconnects.js';
import { SESSION_PROTOCOLS, type ConnectionOutcome, type H2Facts, type RequestRecord, type SessionProtocol, type Side, type TlsFacts } from '../session/facts.js';

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
  /** Requests seen on the connection (for `protocol: tls`, the estimate from turns: see `requestsEstimated`). */
  requests: number;
  /**
   * TLS not decrypted: the requests estimated from turns (also in `requests`); null when the count
   * is exact, or unknown (a TLS connection whose ALPN says h2: turns are in `tls.turns`).
   */
  requestsEstimated: number | null;
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
  /** What the connection spoke: `http/1.0` or `http/1.1` (its first request's version), `h2c`, `h2` (decrypted TLS), `tls` (not decrypted). */
  protocol: ConnectionProtocol;
  /** HTTP/2 only: peak concurrent streams, streams the server refused or did not process, its SETTINGS_MAX_CONCURRENT_STREAMS. */
  h2: H2Facts | null;
  /** TLS only: version, cipher, resumption, ALPN, SNI, handshake time, whether it was decrypted. */
  tls: TlsFacts | null;
}


export const CONNECTION_PROTOCOLS = SESSION_PROTOCOLS;
export type ConnectionProtocol = SessionProtocol;

export interface EngineConsumer {
  opened?(c: ConnectionRecord): void;
  request?(c: ConnectionRecord, r: RequestRecord): void;
  response?(c: ConnectionRecord, r: RequestRecord): void;
  /** Exactly once per connection: with a close reason, or `open` when tracking ended first. */
  closed?(c: ConnectionRecord): void;
  /** A client came back to a server that had ended its connection (reconnects.ts): after the close and the opening are both reported. */
  reconnect?(f: ReconnectFact): void;
}
