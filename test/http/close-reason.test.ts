import { describe, expect, it } from 'vitest';
import { classifyClose, endedPersistence, type CloseFacts, type Verdict } from '../../src/http/close-reason.js';
import type { RequestRecord } from '../../src/session/facts.js';

/** A keep-alive exchange that completed normally: HTTP/1.1 both ways, 200, persistent. */
function exchange(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    index: 1,
    time: 10,
    method: 'GET',
    version: '1.1',
    wantsKeepAlive: true,
    connectionClose: false,
    reused: false,
    savedSeconds: 0,
    savedFrom: 'unknown',
    outstandingAtStart: 0,
    status: 200,
    responseVersion: '1.1',
    responseKeepAlive: true,
    responseConnectionClose: false,
    responseCloseDelimited: false,
    kaTimeout: -1,
    kaMax: -1,
    responseEnd: 10.01,
    responseStarted: true,
    ...over,
  };
}

/** A request with no response byte at all. */
function unanswered(over: Partial<RequestRecord> = {}): RequestRecord {
  return exchange({
    index: 2, time: 15, status: 0, responseVersion: '', responseKeepAlive: false, responseEnd: -1, responseStarted: false, ...over,
  });
}

/** What the tracker knows at the first FIN/RST of a connection that served one exchange and went idle. */
function facts(over: Partial<CloseFacts> = {}): CloseFacts {
  const f: CloseFacts = {
    requests: 1,
    by: 'server',
    rst: false,
    time: 15,
    pendingAtClose: 0,
    unanswered: [],
    lastExchange: exchange(),
    ender: null,
    previousMax: -1,
    fixedMax: -1,
    idleBeforeClose: 4.99,
    // 100 ms + 4 x a 0.1 ms loopback RTT
    promptWindowSeconds: 0.1004,
    raceWindowSeconds: 1,
    ...over,
  };
  // As the tracker does: the exchange that ended persistence is the last one unless told otherwise.
  if (!('ender' in over)) f.ender = f.lastExchange && endedPersistence(f.lastExchange) ? f.lastExchange : null;
  return f;
}

interface Row {
  spec: string;
  facts: CloseFacts;
  verdict: Verdict;
}

/** One row per rule of docs/keepalive-semantics.md, "Why connections close" (and its edges). */
const ROWS: Row[] = [
  // race: a request crossing the server's close, never answered
  {
    spec: 'race: a request sent on an idle connection crosses the server FIN and gets no response',
    facts: facts({ requests: 2, by: 'server', pendingAtClose: 0, unanswered: [unanswered({ time: 15.0005 })] }),
    verdict: 'race',
  },
  {
    spec: 'race: a request on an idle connection is answered by the server RST',
    facts: facts({ requests: 2, by: 'server', rst: true, pendingAtClose: 1, unanswered: [unanswered({ time: 14.999 })] }),
    verdict: 'race',
  },
  {
    spec: 'race: even as the first request of the connection (a pooled preconnect closed by the server)',
    facts: facts({ requests: 1, by: 'server', pendingAtClose: 1, lastExchange: null, unanswered: [unanswered({ index: 1 })] }),
    verdict: 'race',
  },
  // aborted: in flight, for another reason
  {
    spec: 'aborted: the server closes 10 s after a request it never answered (left unanswered, not a crossing)',
    facts: facts({ requests: 2, by: 'server', pendingAtClose: 1, unanswered: [unanswered({ time: 5 })] }),
    verdict: 'aborted',
  },
  {
    spec: 'aborted: the client closes while its request waits for a response',
    facts: facts({ requests: 2, by: 'client', pendingAtClose: 1, unanswered: [unanswered()] }),
    verdict: 'aborted',
  },
  {
    spec: 'aborted: the client resets while its request waits for a response (not a race: the client closed)',
    facts: facts({ requests: 2, by: 'client', rst: true, pendingAtClose: 1, unanswered: [unanswered()] }),
    verdict: 'aborted',
  },
  {
    spec: 'aborted: the server closes in the middle of a response it started',
    facts: facts({ requests: 1, by: 'server', pendingAtClose: 1, lastExchange: null, unanswered: [] }),
    verdict: 'aborted',
  },
  {
    spec: 'aborted: the server closes with a pipelined request unanswered behind another (not sent on an idle connection)',
    facts: facts({ requests: 3, by: 'server', pendingAtClose: 2, unanswered: [unanswered({ index: 3, outstandingAtStart: 1 })] }),
    verdict: 'aborted',
  },
  // unused
  {
    spec: 'unused: the client closes a connection that carried no request',
    facts: facts({ requests: 0, by: 'client', lastExchange: null, idleBeforeClose: 30 }),
    verdict: 'unused',
  },
  {
    spec: 'unused: the server times out a connection that carried no request',
    facts: facts({ requests: 0, by: 'server', lastExchange: null }),
    verdict: 'unused',
  },
  {
    spec: 'unused: a reset connection that carried no request is still unused',
    facts: facts({ requests: 0, by: 'client', rst: true, lastExchange: null }),
    verdict: 'unused',
  },
  // reset
  {
    spec: 'reset: the client resets an idle connection',
    facts: facts({ by: 'client', rst: true }),
    verdict: 'reset',
  },
  {
    spec: 'reset: the server resets an idle connection with nothing unanswered',
    facts: facts({ by: 'server', rst: true }),
    verdict: 'reset',
  },
  // not_persistent
  {
    spec: 'not_persistent: an HTTP/1.0 request without keep-alive, answered and closed by the server',
    facts: facts({
      by: 'server', idleBeforeClose: 0,
      lastExchange: exchange({ version: '1.0', wantsKeepAlive: false, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'not_persistent',
  },
  {
    spec: 'not_persistent: an HTTP/1.0 request without keep-alive, closed by the client after the response',
    facts: facts({
      by: 'client', idleBeforeClose: 0,
      lastExchange: exchange({ version: '1.0', wantsKeepAlive: false, responseKeepAlive: false, responseVersion: '1.0' }),
    }),
    verdict: 'not_persistent',
  },
  {
    spec: 'not_persistent: an HTTP/1.0 server response without keep-alive to an HTTP/1.1 request',
    facts: facts({
      by: 'server', idleBeforeClose: 0,
      lastExchange: exchange({ responseVersion: '1.0', responseKeepAlive: false, responseConnectionClose: false }),
    }),
    verdict: 'not_persistent',
  },
  // client_close
  {
    spec: 'client_close: the last request said Connection: close and the server closed after answering it',
    facts: facts({
      by: 'server', idleBeforeClose: 0,
      lastExchange: exchange({ wantsKeepAlive: false, connectionClose: true, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'client_close',
  },
  {
    spec: 'client_close: the last request said Connection: close and the client closed after the response',
    facts: facts({
      by: 'client', idleBeforeClose: 0.001,
      lastExchange: exchange({ wantsKeepAlive: false, connectionClose: true, responseKeepAlive: false }),
    }),
    verdict: 'client_close',
  },
  {
    spec: 'client_close: the client closes a keep-alive connection right after the response, asking nothing (curl exiting after its last URL)',
    facts: facts({ by: 'client', idleBeforeClose: 0.0003 }),
    verdict: 'client_close',
  },
  {
    spec: 'client_close: on a distant path (RTT 80 ms: window 420 ms) a close 300 ms after the response is still a reaction to it',
    facts: facts({ by: 'client', idleBeforeClose: 0.3, promptWindowSeconds: 0.1 + 4 * 0.08 }),
    verdict: 'client_close',
  },
  // client_idle
  {
    spec: 'client_idle: the client closes a keep-alive connection it left idle past the prompt window',
    facts: facts({ by: 'client', idleBeforeClose: 30 }),
    verdict: 'client_idle',
  },
  {
    spec: 'client_idle: a pool timeout just under the server\'s timeout=1 closes 250 ms after the response on loopback (undici-like)',
    facts: facts({ by: 'client', idleBeforeClose: 0.25 }),
    verdict: 'client_idle',
  },
  {
    spec: 'client_idle: with no RTT known anywhere (window 180 ms), 200 ms after the response is the pool timeout',
    facts: facts({ by: 'client', idleBeforeClose: 0.2, promptWindowSeconds: 0.1 + 4 * 0.02 }),
    verdict: 'client_idle',
  },
  {
    spec: 'client_idle: an idle time exactly at the prompt window is already idle',
    facts: facts({ by: 'client', idleBeforeClose: 0.1004 }),
    verdict: 'client_idle',
  },
  // max_requests
  {
    spec: 'max_requests: the server ends persistence after announcing max=1 on the previous response (Apache)',
    facts: facts({
      requests: 4, by: 'server', idleBeforeClose: 0, previousMax: 1,
      lastExchange: exchange({ index: 4, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests',
  },
  {
    spec: 'max_requests: the last response itself announces max=0 and closes',
    facts: facts({
      requests: 3, by: 'server', idleBeforeClose: 0,
      lastExchange: exchange({ index: 3, responseKeepAlive: false, responseConnectionClose: true, kaMax: 0 }),
    }),
    verdict: 'max_requests',
  },
  {
    spec: 'max_requests: Node.js maxRequestsPerSocket=3 announces max=3 on every response and closes on the 3rd: reached exactly, on the first connection',
    facts: facts({
      requests: 3, by: 'server', idleBeforeClose: 0, previousMax: 3, fixedMax: 3,
      lastExchange: exchange({ index: 3, responseKeepAlive: false, responseConnectionClose: true, kaMax: 3 }),
    }),
    verdict: 'max_requests',
  },
  {
    spec: 'max_requests_candidate: a fixed max=3 announced but the server ended persistence on the 2nd response (not the limit)',
    facts: facts({
      requests: 2, by: 'server', idleBeforeClose: 0, previousMax: 3, fixedMax: 3,
      lastExchange: exchange({ index: 2, responseKeepAlive: false, responseConnectionClose: true, kaMax: 3 }),
    }),
    verdict: 'max_requests_candidate',
  },
  {
    spec: 'max_requests: HAProxy resets nginx\'s backend connection 38 us after nginx\'s Connection: close at its limit (the response decides, not the RST)',
    facts: facts({
      requests: 3, by: 'client', rst: true, idleBeforeClose: 0.000038, previousMax: 1,
      lastExchange: exchange({ index: 3, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests',
  },
  {
    spec: 'max_requests_candidate: the same RST after nginx\'s unannounced limit still feeds the inference',
    facts: facts({
      requests: 3, by: 'client', rst: true, idleBeforeClose: 0.000038,
      lastExchange: exchange({ index: 3, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests_candidate',
  },
  {
    spec: 'max_requests_candidate: a client pipelining 5 requests past nginx\'s limit of 3: the 3rd response ends persistence, 4 and 5 are never answered (not aborted)',
    facts: facts({
      requests: 5, by: 'server', idleBeforeClose: 0, pendingAtClose: 2,
      unanswered: [unanswered({ index: 4, outstandingAtStart: 3, time: 9.99 }), unanswered({ index: 5, outstandingAtStart: 4, time: 9.99 })],
      lastExchange: exchange({ index: 3, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests_candidate',
  },
  {
    spec: 'max_requests: Node.js answers requests pipelined past its limit with 503s after the 3rd response\'s Connection: close; the 3rd decides, not the last 503',
    facts: facts({
      requests: 5, by: 'server', idleBeforeClose: 3, previousMax: 3, fixedMax: 3,
      lastExchange: exchange({ index: 5, status: 503, responseKeepAlive: false, responseConnectionClose: true }),
      ender: exchange({ index: 3, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests',
  },
  {
    spec: 'unused: HAProxy answers a connection the client half-closed without a request with a 400 (a response, no request)',
    facts: facts({
      requests: 0, by: 'client', idleBeforeClose: 0,
      lastExchange: exchange({ index: 0, status: 400, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'unused',
  },
  {
    spec: 'a request sent after a Connection: close 503 crosses the server FIN: the response ended persistence, not a race (server_close unless its count is a known limit)',
    facts: facts({
      requests: 2, by: 'server', idleBeforeClose: 0.0001,
      unanswered: [unanswered({ time: 15.0001 })],
      lastExchange: exchange({ status: 503, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests_if_known',
  },
  {
    spec: 'server_close: Node.js answers an HTTP/1.0 keep-alive request with Connection: close and no length (close-delimited): not a limit',
    facts: facts({
      by: 'server', idleBeforeClose: 0,
      lastExchange: exchange({ version: '1.0', responseKeepAlive: false, responseConnectionClose: true, responseCloseDelimited: true }),
    }),
    verdict: 'server_close',
  },
  {
    spec: 'max_requests_candidate: the server closes on an ordinary success response with nothing announced (nginx)',
    facts: facts({
      requests: 3, by: 'server', idleBeforeClose: 0,
      lastExchange: exchange({ index: 3, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests_candidate',
  },
  {
    spec: 'max_requests_candidate: a 304 that ends persistence counts as an ordinary response too',
    facts: facts({
      requests: 3, by: 'server', idleBeforeClose: 0,
      lastExchange: exchange({ index: 3, status: 304, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests_candidate',
  },
  // server_close
  {
    spec: 'an error response ends persistence: a limit only if its count is the server\'s known one (the connection layer decides; nginx\'s Nth response may be a 404)',
    facts: facts({
      requests: 2, by: 'server', idleBeforeClose: 0,
      lastExchange: exchange({ index: 2, status: 500, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests_if_known',
  },
  {
    spec: 'the same on a 400',
    facts: facts({
      requests: 1, by: 'server', idleBeforeClose: 0,
      lastExchange: exchange({ status: 400, responseKeepAlive: false, responseConnectionClose: true }),
    }),
    verdict: 'max_requests_if_known',
  },
  {
    spec: 'server_close: a server FIN 76 us after a keep-alive response (its Connection: close cut by snaplen) ends persistence; no idle timer runs out in a round trip',
    facts: facts({ by: 'server', idleBeforeClose: 0.000076 }),
    verdict: 'server_close',
  },
  // idle_timeout
  {
    spec: 'idle_timeout: the server closes an idle connection whose last response kept it alive',
    facts: facts({ by: 'server', idleBeforeClose: 4.99 }),
    verdict: 'idle_timeout',
  },
  {
    spec: 'idle_timeout: a persistent HTTP/1.0 keep-alive exchange idled out by the server',
    facts: facts({
      by: 'server', idleBeforeClose: 2,
      lastExchange: exchange({ version: '1.0', responseVersion: '1.0', wantsKeepAlive: true, responseKeepAlive: true, kaTimeout: 2, kaMax: 3 }),
    }),
    verdict: 'idle_timeout',
  },
  {
    spec: 'idle_timeout: the server closes after its previous response announced max=1 but the last one still kept the connection alive',
    facts: facts({ requests: 2, by: 'server', idleBeforeClose: 5, previousMax: 1, lastExchange: exchange({ index: 2 }) }),
    verdict: 'idle_timeout',
  },
];

describe('classifyClose: the close reasons of docs/keepalive-semantics.md', () => {
  it.each(ROWS)('$spec', ({ facts: f, verdict }) => {
    expect(classifyClose(f)).toBe(verdict);
  });

  it('covers every close reason with at least one row', () => {
    const covered = new Set(ROWS.map((r) => r.verdict));
    for (const reason of [
      'idle_timeout', 'max_requests', 'server_close', 'client_close', 'client_idle',
      'not_persistent', 'race', 'aborted', 'reset', 'unused', 'max_requests_candidate',
    ]) expect(covered, reason).toContain(reason);
  });

  it('does not change the facts it is given', () => {
    const f = facts({ requests: 2, by: 'server', pendingAtClose: 0, unanswered: [unanswered()] });
    const copy = structuredClone(f);
    classifyClose(f);
    expect(f).toEqual(copy);
  });
});
