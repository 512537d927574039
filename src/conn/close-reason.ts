/**
 * The close-reason rules of shared/reference/keepalive-semantics.md section 4, as a pure function
 * of what was seen at the connection's first FIN or RST (and the requests that crossed it).
 */
import type { CloseReason, RequestRecord, Side } from './records.js';

export interface CloseFacts {
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
  /** `max=` on the response before the last one (Apache's countdown reaches 1 before the close). */
  previousMax: number;
  /** From the last HTTP byte to the first FIN/RST. */
  idleBeforeClose: number;
  clientPromptCloseSeconds: number;
  /** A request sent this long before the server's FIN/RST still crossed it; earlier ones were simply unanswered. */
  raceWindowSeconds: number;
}

/**
 * `max_requests_candidate`: the server ended persistence on an ordinary success response with
 * nothing announced; the caller decides between `max_requests` (same count seen again on this
 * server, as nginx does) and `server_close`.
 */
export type Verdict = CloseReason | 'max_requests_candidate';

export function classifyClose(f: CloseFacts): Verdict {
  // race: a request on an idle connection the server was closing, never answered: it arrived
  // after the server's FIN/RST, or so shortly before it that the two crossed on the wire.
  if (f.by === 'server') {
    for (const r of f.unanswered) {
      if (r.outstandingAtStart === 0 && !r.responseStarted && r.time >= f.time - f.raceWindowSeconds) return 'race';
    }
  }
  if (f.pendingAtClose > 0) return 'aborted';
  if (f.requests === 0) return 'unused';
  if (f.rst) return 'reset';
  const last = f.lastExchange;
  if (!last) return f.by === 'server' ? 'idle_timeout' : 'client_close';
  // HTTP/1.0 without keep-alive, on either side: persistence was never on the table. A server
  // that answers in HTTP/1.0 without keep-alive (Python's http.server) does not do persistence.
  if (!last.wantsKeepAlive && last.version === '1.0') return 'not_persistent';
  if (last.responseVersion === '1.0' && !last.responseKeepAlive && !last.responseConnectionClose) return 'not_persistent';
  if (last.connectionClose) return 'client_close';
  if (!last.responseKeepAlive) {
    // The server ended persistence. Announced limit: the previous response said max=1.
    if (f.previousMax === 1 || last.kaMax === 0) return 'max_requests';
    if (last.status >= 200 && last.status < 400) return 'max_requests_candidate';
    return 'server_close';
  }
  if (f.by === 'server') return 'idle_timeout';
  return f.idleBeforeClose < f.clientPromptCloseSeconds ? 'client_close' : 'client_idle';
}
