/**
 * The seam between a connection and the protocol it carries (Zeek's analyzers on a connection,
 * gopacket's stream factory): a connection (src/conn/connection.ts) knows only TCP facts and
 * hosts one `ProtocolSession` at a time; the session parses both directions and says what ended
 * persistence. HTTP/1 is `src/http/session.ts`; HTTP/2 and TLS sessions plug in the same way.
 *
 * Call order from the connection to its session: `data`/`gap`/`end` per direction in sequence
 * order (as `tcp/stream.ts` delivers them), `closing` once at the connection's first FIN or RST,
 * then `finish` once, then `verdict` at most once (only for a connection the session confirmed),
 * then nothing. The session calls its `SessionHost` from inside those calls only; bytes passed to
 * `data` are valid only during the call.
 */
import type { Anomaly } from '../config/anomalies.js';
import type { EngineLimits } from '../config/limits.js';
import type { RequestRecord, SessionProtocol, Side, Verdict } from './facts.js';

/** What the session may know of its flow: read-only, whatever carries the bytes (capture or proxy). */
export interface FlowInfo {
  /** Direction (0 or 1) of client-to-server bytes; -1 until known. */
  readonly clientDir: number;
  /** Both streams are seen from their first byte (the handshake was captured, or the proxy). */
  readonly fromStart: boolean;
  /** Payload bytes already delivered in direction `dir` (0 before its first byte). */
  bytesIn(dir: number): number;
}

/**
 * Bytes that all parsers (and the reassembly) of one source may hold together: a head cut
 * across segments is copied, up to `maxHeaderBytes` per direction, and 100,000 connections
 * each holding 64 KiB of head would be 6 GiB. The flow table's `ReassemblyContext` is one.
 */
export interface BufferBudget {
  heldBytes: number;
  readonly maxBufferedBytes: number;
}

/** Takes `size` bytes from `budget` (null: no shared cap); false, taking nothing, when that would pass its cap. */
export function takeBudget(budget: BufferBudget | null, size: number): boolean {
  if (!budget) return true;
  if (budget.heldBytes + size > budget.maxBufferedBytes) return false;
  budget.heldBytes += size;
  return true;
}

/** Gives `size` bytes back to `budget`. */
export function returnBudget(budget: BufferBudget | null, size: number): void {
  if (budget) budget.heldBytes -= size;
}

/** What a protocol session calls on its connection. */
export interface SessionHost {
  readonly flow: FlowInfo;
  readonly limits: EngineLimits;
  readonly budget: BufferBudget | null;
  /**
   * The content showed the roles (a request seen in direction `clientDir`) on a flow whose
   * handshake was not seen. False: the connection is not analysed after all (outside --ports),
   * and the session must drop everything quietly.
   */
  rolesFromContent(clientDir: number): boolean;
  /** A new request (its `index` set by the session); the host fills in `reused`, `savedSeconds`, `savedFrom`. */
  request(r: RequestRecord, ts: number): void;
  /** The response to `r` completed. */
  response(r: RequestRecord, ts: number): void;
  /** The server announced these keep-alive settings (-1: not announced). */
  advertised(timeoutSeconds: number, maxRequests: number): void;
  /** Bytes of the protocol moved at `ts`: idle-before-close counts from the last of them. */
  activity(ts: number): void;
  /** The connection became a tunnel (101, CONNECT): nothing after it is parsed. */
  tunneled(): void;
  /**
   * `Upgrade: h2c` was granted (a 101): HTTP/2 takes over the connection, `upgradeRequest` being
   * its stream 1. `buf[off, off + len)` is what followed the 101 in direction `dir`.
   */
  upgradeToH2c(upgradeRequest: RequestRecord, dir: number, buf: Buffer, off: number, len: number, ts: number): void;
  /** The first bytes were not this protocol. */
  notProtocol(kind: 'tls' | 'http2' | 'other'): void;
  /** The protocol is certain and the connection counts from now, before any request (TLS whose ALPN says h2, not decrypted). */
  established(ts: number): void;
  /** A TLS session decrypts the connection: what the plaintext speaks. */
  decrypted(protocol: 'http/1.1' | 'h2'): void;
  /** Key log secrets by client random (`--tls-keylog`); null without a key log. */
  readonly keys: SecretSource | null;
  /** What is known across connections of this server: it chose h2 on some TLS connection (its TLS 1.3 choice is encrypted). */
  serverSpeaksH2(): boolean;
  /** This connection showed the server chose h2. */
  serverChoseH2(): void;
  anomaly(name: Anomaly): void;
}

/** Where TLS secrets come from (tls/keylog.ts `KeylogStore`, wrapped by the engine's options). */
export interface SecretSource {
  /** The secrets logged for a ClientHello random (64 hex digits), by key log label. */
  get(clientRandom: string): Partial<Record<string, Buffer>> | undefined;
  /** Zero and forget them (the keys are derived: key material is not kept after use). */
  delete(clientRandom: string): boolean;
  /** The whole key log was read: a random not in it never will be, so nothing waits for it. */
  readonly complete: boolean;
  /** Capture seconds a connection waits for its lines when the log is still being written. */
  readonly keyWaitSeconds: number;
}

/** TCP's side of the close, which the session combines with what ended persistence. */
export interface TcpCloseFacts {
  /** Side and kind of the first FIN or RST. */
  by: Side;
  rst: boolean;
  /** Time of the first FIN/RST. */
  time: number;
  /** From the last protocol byte to the first FIN/RST. */
  idleBeforeClose: number;
  /** A close this soon after the last response reacted to it (`EngineLimits.promptClose*`). */
  promptWindowSeconds: number;
  /** A request sent this long before the server's FIN/RST still crossed it. */
  raceWindowSeconds: number;
}

export interface SessionVerdict {
  verdict: Verdict;
  /** For `max_requests_candidate`: the requests served up to the exchange that ended persistence. */
  servedCount: number;
  /** When persistence was ended (for the age of a connection closed at an age limit). */
  signalTime: number;
  /** The session saw the close first in its own protocol (a TLS close_notify before the FIN): that side and time. */
  by?: Side;
  time?: number;
}

export interface ProtocolSession {
  /** What the session speaks when it is not simply its kind (TLS: `tls` until decrypted, then the plaintext's). */
  readonly protocol?: SessionProtocol;
  /** The protocol is certain even without a request (an HTTP/2 preface and SETTINGS): the connection counts as `unused` rather than vanishing. */
  readonly spoke: boolean;
  /** Bytes of direction `dir` in sequence order. */
  data(dir: number, buf: Buffer, off: number, len: number, ts: number): void;
  /** `len` bytes of direction `dir` were lost from the capture. */
  gap(dir: number, len: number, ts: number): void;
  /**
   * Optional, for a decrypting owner (TLS): how many bytes of direction `dir` coming next the
   * session would only count (a body of known length), and `skip` to pass them over unread: the
   * same as `data` with those bytes, without them. Sessions without it get every byte.
   */
  opaqueBytes?(dir: number): number;
  skip?(dir: number, len: number, ts: number): void;
  /**
   * Optional, for the same owner: the length of direction `dir`'s last message head (0 before the
   * first), so that the next record's first read can be about that long (HTTP/1: responses of one
   * server differ by a few bytes in their heads).
   */
  lastHeadBytes?(dir: number): number;
  /** Direction `dir` ended (its FIN). */
  end(dir: number, ts: number): void;
  /** The connection's first FIN or RST: the session notes what was in flight. */
  closing(dir: number, rst: boolean, ts: number): void;
  /** Both streams are over: close-delimited messages end, buffers are given back. */
  finish(ts: number): void;
  /** Why the connection closed, given TCP's facts. */
  verdict(tcp: TcpCloseFacts): SessionVerdict;
}
