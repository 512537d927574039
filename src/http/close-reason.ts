/**
 * The HTTP/1 close-reason rules (docs/keepalive-semantics.md, "Why connections close"), as a pure
 * function of what was seen at the connection's first FIN or RST, in sequence order, and of the
 * requests that crossed it.
 *
 * The order of the rules is the point: what ended persistence is decided by the HTTP exchange
 * that ended it, before anything about how TCP was then torn down. HAProxy resets a backend
 * connection tens of microseconds after nginx's `Connection: close` at its limit, and a client
 * pipelining past the limit leaves requests unanswered: both are still `max_requests`.
 */
import type { RequestRecord, Side, Verdict } from '../session/facts.js';

export interface CloseFacts {
  /** Requests the client sent, answered or not. */
  requests: number;
  /** Side and kind of the first FIN or RST. */
  by: Side;
  rst: boolean;
  /** Time of the first FIN/RST. */
  time: number;
  /** Requests without a complete response at the first FIN/RST. */
  pendingAtClose: number;
  /** Requests never answered (no response byte at all) by the time the connection ended. */
  unanswered: RequestRecord[];
  /** The last request whose response completed, if any. */
  lastExchange: RequestRecord | null;
  /**
   * The first complete exchange that ended persistence (`endedPersistence`), if any. Usually the
   * last exchange; not when the server answered requests pipelined past it (Node.js: 503s).
   */
  ender: RequestRecord | null;
  /** `max=` on the response before `ender` (or before the last one when there is no ender): Apache's countdown reaches 1 before the close. */
  previousMax: number;
  /**
   * `max=N` when every response of the connection that carried `max=` carried the same N (Node.js
   * `maxRequestsPerSocket` announces its limit without counting down); -1 when none did or the
   * value changed (Apache's countdown).
   */
  fixedMax: number;
  /** From the last HTTP byte to the first FIN/RST. */
  idleBeforeClose: number;
  /**
   * A close this soon after the last response reacted to it (see `EngineLimits.promptClose*`):
   * reaction time plus a few round trips of this connection.
   */
  promptWindowSeconds: number;
  /** A request sent this long before the server's FIN/RST still crossed it; earlier ones were simply unanswered. */
  raceWindowSeconds: number;
}

/**
 * `max_requests_candidate` (see `Verdict`): the server ended persistence on an ordinary success
 * response with nothing announced; the connection layer decides between `max_requests` (the same
 * served count seen again on this server, as nginx does) and `server_close`. The served count is
 * `ender.index`.
 */
export type { Verdict };

/** The exchange said this was the last one: the request or the response ended persistence. */
export function endedPersistence(r: RequestRecord): boolean {
  return r.connectionClose || !r.responseKeepAlive;
}

export function classifyClose(f: CloseFacts): Verdict {
  // No request at all, whatever else was on the wire (HAProxy answers a connection the client
  // half-closed without a request with a 400).
  if (f.requests === 0) return 'unused';
  // 1. Persistence ended by a complete exchange: that exchange decides, however TCP is then torn
  // down (FIN or RST, either side) and whatever was pipelined after it.
  if (f.ender) return persistenceEndedBy(f.ender, f);
  const last = f.lastExchange;
  // 2. race: a request on an idle connection the server was closing, never answered: it arrived
  // after the server's FIN/RST, or so shortly before it that the two crossed on the wire.
  if (f.by === 'server') {
    for (const r of f.unanswered) {
      if (r.outstandingAtStart === 0 && !r.responseStarted && r.time >= f.time - f.raceWindowSeconds) return 'race';
    }
  }
  if (f.pendingAtClose > 0) return 'aborted';
  if (f.rst) return 'reset';
  if (!last) return f.by === 'server' ? 'idle_timeout' : 'client_close';
  // The last response kept the connection alive; who closed it, and how soon after?
  const prompt = f.idleBeforeClose < f.promptWindowSeconds;
  // A server closing right after its response ended persistence without saying so (or the
  // header was not captured: a snaplen cut it): no idle timer runs out in a round trip.
  if (f.by === 'server') return prompt ? 'server_close' : 'idle_timeout';
  return prompt ? 'client_close' : 'client_idle';
}

function persistenceEndedBy(ender: RequestRecord, f: CloseFacts): Verdict {
  // HTTP/1.0 without keep-alive, on either side: persistence was never on the table. A server
  // that answers in HTTP/1.0 without keep-alive (Python's http.server) does not do persistence.
  if (!ender.wantsKeepAlive && ender.version === '1.0') return 'not_persistent';
  if (ender.responseVersion === '1.0' && !ender.responseConnectionClose) return 'not_persistent';
  if (ender.connectionClose) return 'client_close';
  // A body that only the FIN can end required the close: Node.js answers an HTTP/1.0 keep-alive
  // request so. It says nothing about a request limit.
  if (ender.responseCloseDelimited) return 'server_close';
  // An announced limit reached: Apache counts down to max=1 and closes on the next request;
  // Node.js announces max=N on every response and closes on the Nth.
  if (f.previousMax === 1 || ender.kaMax === 0 || (f.fixedMax > 0 && ender.index === f.fixedMax)) return 'max_requests';
  if (ender.status >= 200 && ender.status < 400) return 'max_requests_candidate';
  // An error response with Connection: close: a limit only if its count is the server's known one
  // (seen on the TLS benchmark: nginx's 100th response a 404, 38 of 5,921 connections).
  if (ender.status >= 400) return 'max_requests_if_known';
  return 'server_close';
}
