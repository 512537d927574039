/**
 * Every default, cap and timeout of the engine, in one place.
 *
 * Each cap has an overflow counter (see `anomalies.ts`): when a cap is hit the engine counts it
 * and keeps going, it never grows without bound and never throws.
 */
export interface EngineLimits {
  /** Flows tracked at once. When full, the least recently active flow is evicted (anomaly `flow_evicted`). */
  maxFlows: number;
  /** Out-of-order bytes buffered per direction of a flow before the hole is skipped as a gap (`reassembly_overflow`). */
  maxOutOfOrderBytes: number;
  /** Out-of-order segments buffered per direction (`reassembly_overflow`). */
  maxOutOfOrderSegments: number;
  /**
   * Out-of-order bytes buffered by all flows of a source together (`buffer_budget_exceeded`).
   * The per-direction cap alone would allow maxFlows x 256 KiB; this keeps a flood of holes
   * within a memory budget: past it, holes are skipped at once as gaps.
   */
  maxBufferedBytes: number;
  /** Largest HTTP head (request/status line plus headers) accepted (`header_too_large`). llhttp's default is 80 KiB; nginx's large_client_header_buffers is 4x8 KiB. */
  maxHeaderBytes: number;
  /** Requests awaiting a response on one connection (`pipeline_overflow`); Zeek caps pending requests the same way. */
  maxPendingRequests: number;
  /** Bytes scanned on a flow without a handshake before giving up on finding an HTTP message (`resync_failed`). */
  maxResyncBytes: number;
  /** A flow with no packet for this long (capture time, seconds) is expired and its connection reported as still open. */
  flowIdleTimeoutSeconds: number;
  /** After one side's FIN with the other side silent this long, the connection is finalized half-closed. */
  halfClosedTimeoutSeconds: number;
  /** A finished flow is kept this long (TIME_WAIT-like) to absorb late ACKs and retransmissions without inventing a new connection. */
  closedLingerSeconds: number;
  /**
   * The prompt window: a close this soon after the last response is a reaction to that response,
   * not an idle timer. Window = reaction + roundTrips x RTT (the connection's handshake RTT, else
   * the server's median, else the assumed RTT below). A client closing inside it closed right
   * after the response (`client_close`), later it is its pool's idle timeout (`client_idle`); a
   * server closing inside it ended persistence (`server_close`), never an idle timeout.
   * See docs/keepalive-semantics.md, "The prompt window".
   *
   * Why these numbers: the last response byte is seen at the capture point, reaches the client
   * half an RTT later (or at once when the capture is at the client), and the client's FIN needs
   * the other half to come back: one RTT is the least a reaction takes; 4 leave room for a
   * delayed ACK. 100 ms covers a busy event loop or scheduler on the closing side (a loaded
   * 2-core test machine delays Node.js clients by tens of milliseconds); a pool's idle timer is
   * hundreds of milliseconds at the least (the 200-300 ms closes of issue 10 came from a pool
   * timeout just under `timeout=1`).
   */
  promptCloseReactionSeconds: number;
  promptCloseRoundTrips: number;
  /** RTT assumed when neither the connection's handshake nor any of its server's was captured: a 180 ms window. */
  promptCloseAssumedRttSeconds: number;
  /**
   * An unanswered request sent at most this long before the server's FIN or RST crossed it (a
   * keep-alive race); one sent earlier was left unanswered for another reason (`aborted`).
   * One second is many round trips on any path a keep-alive race happens on.
   */
  raceWindowSeconds: number;
  /** A server-ended connection at the same request count must be seen this many times before `max_requests` is inferred (nginx announces nothing). */
  inferMaxRequestsAfter: number;
  /**
   * Request counts at which a lone unannounced close is taken as max_requests at once: nginx's
   * keepalive_requests default (1000 since 1.19.10, 100 before) and Apache's
   * MaxKeepAliveRequests 100 default (it serves 101 when the header was not asked for).
   */
  knownMaxRequestsDefaults: number[];
  /** An age limit is inferred only from connections at least this old (seconds): shorter ones ending at similar ages are a coincidence, not nginx's keepalive_time. */
  inferMaxAgeMinSeconds: number;
  /**
   * Two connections ended at one age limit when their ages differ by at most this fraction of the
   * smaller (or `inferMaxAgeToleranceSeconds`, whichever is larger): nginx checks keepalive_time
   * when a request arrives, so the ages differ by up to the gap between requests (1.20, 1.35 and
   * 1.40 s for keepalive_time 1s with requests every 300, 450 and 700 ms).
   */
  inferMaxAgeTolerance: number;
  inferMaxAgeToleranceSeconds: number;
  /** How long (capture time) a candidate for an inferred max waits for a confirming connection before it is reported as `server_close`. */
  inferMaxRequestsWaitSeconds: number;
  /** Candidates for an inferred max held at once across all servers. */
  maxPendingInferences: number;
  /** Handshake RTT samples kept per server for the median used when a connection's own handshake was not captured. */
  rttSamplesPerServer: number;
  /** Servers tracked for per-server state (median RTT, advertised settings, inference). */
  maxServers: number;
  /** Client address / server pairs remembered to pair a server's close with the client's next connection (reconnects.ts): about 200 bytes each. */
  maxReconnectPairs: number;
}

export const DEFAULT_LIMITS: EngineLimits = {
  maxFlows: 100_000,
  maxOutOfOrderBytes: 256 * 1024,
  maxOutOfOrderSegments: 64,
  maxBufferedBytes: 32 * 1024 * 1024,
  maxHeaderBytes: 64 * 1024,
  maxPendingRequests: 100,
  maxResyncBytes: 64 * 1024,
  flowIdleTimeoutSeconds: 600,
  halfClosedTimeoutSeconds: 30,
  closedLingerSeconds: 4,
  promptCloseReactionSeconds: 0.1,
  promptCloseRoundTrips: 4,
  promptCloseAssumedRttSeconds: 0.02,
  raceWindowSeconds: 1,
  inferMaxRequestsAfter: 2,
  knownMaxRequestsDefaults: [100, 101, 1000],
  inferMaxAgeMinSeconds: 1,
  inferMaxAgeTolerance: 0.1,
  inferMaxAgeToleranceSeconds: 0.5,
  inferMaxRequestsWaitSeconds: 120,
  maxPendingInferences: 10_000,
  rttSamplesPerServer: 63,
  maxServers: 10_000,
  maxReconnectPairs: 50_000,
};

/** How often (capture seconds) the flow table is swept for expired flows. */
export const SWEEP_INTERVAL_SECONDS = 1;
