/**
 * The facts a protocol session reports, the same for every protocol: the close-reason
 * vocabulary and what is known of one request and its response. The connection layer
 * (src/conn/) builds its `ConnectionRecord` on them; every consumer reads them from there.
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
  // the server ended the connection at its age limit (nginx keepalive_time, gRPC MAX_CONNECTION_AGE)
  'max_age',
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

/**
 * What a session says at the end, decided with the TCP facts: a reason, or a candidate the
 * connection layer decides across connections of the server (the inference of a limit nobody
 * announced, `servedCount` being the exchange that ended persistence).
 */
export type Verdict = CloseReason | 'max_requests_candidate' | 'max_requests_if_known';
/*
 * `max_requests_if_known`: persistence ended on a response that was not a success (nginx's
 * `Connection: close` at its limit does not care whether the Nth response is a 404): a limit
 * only when the served count is the one already known for the server (inferred, announced, a
 * default), else `server_close`; never evidence for inferring one (an error closes anywhere).
 */

/**
 * What a connection spoke: `http/1.0` or `http/1.1` (its first request's version), `h2c` (HTTP/2
 * in cleartext), `h2` (HTTP/2 in TLS, decrypted), `tls` (TLS not decrypted: requests estimated).
 */
export const SESSION_PROTOCOLS = ['http/1.0', 'http/1.1', 'h2c', 'h2', 'tls'] as const;
export type SessionProtocol = (typeof SESSION_PROTOCOLS)[number];

/** What a TLS connection showed of itself (docs/keepalive-semantics.md, "HTTPS"). */
export interface TlsFacts {
  /** "1.2" or "1.3" (from supported_versions in 1.3); null when no ServerHello was seen. */
  version: string | null;
  /** IANA name of the suite, or `0x....`; null without a ServerHello. */
  cipher: string | null;
  /** Full (false) or resumed (true) handshake; null when it cannot be told (not seen, lost). */
  resumed: boolean | null;
  /** The client's ALPN offer, in its order. */
  alpnOffered: string[];
  /** The server's choice where visible (TLS 1.2 ServerHello, or decrypted), else null. */
  alpn: string | null;
  /** server_name, lower-cased, or null. Never a label: it is a Host value. */
  sni: string | null;
  /** ClientHello to the client's first application data (TLS 1.3: its Finished); null if not seen. */
  handshakeSeconds: number | null;
  /** The server asked for another ClientHello (HelloRetryRequest). */
  helloRetryRequest: boolean;
  /** Decrypted with a key log: every HTTP fact is exact. */
  decrypted: boolean;
  /** Client-to-server runs of application data answered by a server-to-client run. */
  turns: number;
  /** Side of the first close_notify (an encrypted alert in TLS 1.2, a 19-byte record in 1.3, exact when decrypted); null if none. */
  closeNotifyBy: Side | null;
  /** A resumed handshake's saving: the server's median full handshake minus this one (0 when unknown or not resumed). */
  resumptionSavedSeconds: number;
}

/** What an HTTP/2 connection said of itself. */
export interface H2Facts {
  peakConcurrentStreams: number;
  /** Streams the server refused (RST_STREAM REFUSED_STREAM) or did not process (above its GOAWAY's last-stream-id). */
  streamsRefused: number;
  /** The server's SETTINGS_MAX_CONCURRENT_STREAMS; null when it set none. */
  serverMaxConcurrentStreams: number | null;
  /** The first GOAWAY of each side that sent one, in time order. */
  goaways: H2Goaway[];
}

export interface H2Goaway {
  side: Side;
  time: number;
  /** The last GOAWAY of that side's (gRPC sends 2^31-1 first, then the real one). */
  lastStreamId: number;
  /** RFC 9113 section 7 name (`NO_ERROR`, `PROTOCOL_ERROR`...), `UNKNOWN` for others. */
  error: string;
  /** The opaque debug data as printable ASCII, at most 64 characters (nginx and Go put a reason there). */
  debug: string;
}
