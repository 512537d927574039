/**
 * The TLS session of a connection (HTTPS), passive, both directions: the record layer
 * (record-stream.ts), the cleartext handshake (handshake.ts: version, cipher, SNI, ALPN, full or
 * resumed), and then one of two things:
 *
 * - Without keys (always): requests **estimated from turns**. A client-to-server run of
 *   application-data records answered by a server-to-client run is one exchange (sequential
 *   HTTP/1.1: one request, one response). Records that are not requests or responses are left
 *   out: the TLS 1.3 client Finished (the client's first application-data record after the
 *   server's encrypted flight), the server's NewSessionTicket records (a server run with no
 *   request before it), any TLS 1.3 record of at most 22 bytes (close_notify is 19: 2 bytes of
 *   alert, the type byte, the 16-byte tag; a KeyUpdate 22), TLS 1.2 alerts (their own content
 *   type). When the server chose h2 (visible in TLS 1.2), turns are counted but no request: SETTINGS
 *   and PINGs make turns of their own (docs/keepalive-semantics.md, "HTTPS").
 * - With a key log line for the connection (`SessionHost.keys`): every record is decrypted
 *   (decrypt.ts) and the plaintext goes to an HTTP/1 or HTTP/2 session (by ALPN, else by the
 *   client's first bytes), whose facts and close reason are exact.
 *
 * The close signal is the first close_notify when it came before the first FIN/RST (nginx sends
 * close_notify and then its FIN 20-70 us later; a fast client's FIN can be captured in between):
 * its side closed the connection.
 *
 * Keys can arrive after the records they open (the daemon follows a key log file its clients
 * write while the capture runs): a connection whose secrets are not there yet holds its encrypted
 * records, at most `MAX_KEY_WAIT_RECORDS` / `MAX_KEY_WAIT_BYTES` (copies from the shared budget),
 * for `keyWaitSeconds` of capture time, looking again at each record; then it decrypts them in
 * order, or gives up (`tls_keys_missing`, `tls_key_wait_overflow`) and estimates from them.
 *
 * Call order: the `ProtocolSession` one (src/session/session.ts).
 */
import type { Anomaly } from '../config/anomalies.js';
import { detectProtocol } from '../session/detect.js';
import type { RequestRecord, SessionProtocol, Side, TlsFacts } from '../session/facts.js';
import { returnBudget, takeBudget, type BufferBudget, type FlowInfo, type ProtocolSession, type SessionHost, type SessionVerdict, type TcpCloseFacts } from '../session/session.js';
export type { SecretSource } from '../session/session.js';
import { Http1Session } from '../http/session.js';
import { H2Session } from '../h2/session.js';
import { TlsDecryptor, type LazyRecord } from './decrypt.js';
import {
  cipherSuiteName,
  HandshakeType,
  parseClientHello,
  parseServerHello,
  resumed,
  TLS13,
  versionName,
  type ClientHelloView,
  type ServerFlight,
  type ServerHelloView,
} from './handshake.js';
import { tls12Suite, tls13Suite } from './keys.js';
import { TlsRecordStream, type RecordSink, type RecordStreamAnomaly } from './record-stream.js';
import { ContentType, type RecordHeader } from './records.js';

/**
 * Plaintext decrypted at a time for the HTTP session when a record is opened lazily: a request or
 * response head usually fits, and what follows a head with a known body length is skipped.
 */
const LAZY_CHUNK = 384;
/**
 * A record's first read is the direction's last head plus this, in whole AES blocks, when the
 * session knows its last head (nginx's heads for one page differ by a few bytes: Content-Length,
 * ETag): 250-264-byte response heads cost 288 bytes of keystream, not 384. A longer head is read on
 * in LAZY_CHUNK steps (the parser keeps the part it has).
 */
const HEAD_SLACK = 24;
const MIN_FIRST_READ = 64;
/** Encrypted records held per connection while its key log line is awaited. */
export const MAX_KEY_WAIT_RECORDS = 64;
/** Bytes of those records (copies, from the shared budget). */
export const MAX_KEY_WAIT_BYTES = 64 * 1024;
/** TLS 1.3 records this short are not HTTP: close_notify (19), KeyUpdate (22). */
const MAX_CONTROL_RECORD_13 = 22;
/** A TLS 1.3 close_notify: alert (2) + content type (1) + tag (16). */
const CLOSE_NOTIFY_13 = 19;
/**
 * TLS 1.3 hides the server's ALPN choice. These records show h2 without keys: a 9-byte plaintext
 * (26 on the wire: a lone SETTINGS ACK, which no HTTP/1.1 message is), and a short server record
 * before any client data (the server's SETTINGS, which an h2 server sends unprompted at the
 * start; an HTTP/1.1 server sends nothing before a request but NewSessionTickets, 180-300 bytes
 * from OpenSSL, Go and BoringSSL). Seen on nginx 1.22 with curl --http2 (test/fixtures/tls).
 */
const H2_SETTINGS_ACK_13 = 26;
const MAX_EARLY_SERVER_H2_13 = 80;
/** ALPN names that say the connection carries HTTP; an offer with none of them is another protocol. */
const HTTP_ALPN = /^(http\/|h2|h3|spdy\/)/;

interface HeldRecord {
  dir: number;
  type: number;
  version: number;
  length: number;
  ts: number;
  startTs: number;
  payload: Buffer | null;
}

const enum Keys {
  /** No key log given. */
  None = 0,
  /** Looked up at the ServerHello, not there yet: records are held. */
  Waiting,
  /** Decrypting. */
  Found,
  /** Given up, or the suite is not decryptable: estimating. */
  Missing,
}

export class TlsSession implements ProtocolSession, RecordSink {
  private readonly rs: [TlsRecordStream | null, TlsRecordStream | null] = [null, null];
  private clientDir: number;
  private dead = false;
  private ch: ClientHelloView | null = null;
  private chTime = -1;
  private sh: ServerHelloView | null = null;
  private hrr = false;
  private flight: ServerFlight = 'unknown';
  private readonly ccs = [false, false];
  private tls13 = false;
  /** TLS 1.3: the server's encrypted flight began; the client's Finished was seen. */
  private serverFlight13 = false;
  private clientFinished13 = false;
  private handshakeEnd = -1;
  /**
   * TLS 1.2: each side's Finished (its first encrypted handshake record). The later of the two is
   * when the handshake completed: the end used when the client sent no application data.
   */
  private serverFinished12 = -1;
  private clientFinished12 = -1;
  private h2Alpn = false;

  // Turns
  private lastDataDir = -1;
  private turnCount = 0;
  private requests = 0;
  /** The current client run's request, until a server run answers it. */
  private awaiting: RequestRecord | null = null;
  private lastAnswered: RequestRecord | null = null;
  /** The turn record of a decrypted connection, reused for every exchange (see `turn`). */
  private turnRecord: RequestRecord | null = null;
  private lastData = -1;
  /** The client sent application data (a request run began). */
  private clientData = false;
  private closeNotify: { dir: number; ts: number } | null = null;
  private established = false;

  // Keys
  private keyState = Keys.None;
  private decryptor: TlsDecryptor | null = null;
  private held: HeldRecord[] | null = null;
  private heldBytes = 0;
  private waitSince = -1;
  private inner: ProtocolSession | null = null;
  private innerDead = false;
  private innerHost: InnerHost | null = null;

  constructor(private readonly host: SessionHost) {
    this.clientDir = host.flow.clientDir;
  }

  // --- what the connection reads at the end ---

  /** `tls` until decrypted, then what the plaintext spoke. */
  get protocol(): SessionProtocol {
    if (this.keyState !== Keys.Found || !this.inner || this.innerDead) return 'tls';
    return this.inner instanceof H2Session ? 'h2' : 'http/1.1';
  }

  /** The handshake's duration once known (a reused request saves it too); -1 before. */
  get handshakeSeconds(): number {
    if (this.chTime < 0) return -1;
    let end = this.handshakeEnd;
    if (end < 0 && this.serverFinished12 >= 0 && this.clientFinished12 >= 0) end = Math.max(this.serverFinished12, this.clientFinished12);
    return end >= 0 ? Math.max(0, end - this.chTime) : -1;
  }

  /** A full handshake, for the server's median (false when resumed or not known). */
  get fullHandshake(): boolean {
    return this.resumedNow() === false;
  }

  /** A resumed handshake (false when full or not known). */
  get resumedHandshake(): boolean {
    return this.resumedNow() === true;
  }

  /** Requests estimated from turns, or null (exact: decrypted; unknown: h2). */
  get requestsEstimated(): number | null {
    if (this.protocol !== 'tls' || this.h2Alpn) return null;
    // Learned while this connection was open (another connection showed the server chooses h2): this one, offering h2, was h2 too.
    if (this.tls13 && this.offersH2() && this.host.serverSpeaksH2()) return null;
    return this.requests;
  }

  facts(resumptionSavedSeconds: number): TlsFacts {
    const sh = this.sh;
    const hs = this.handshakeSeconds;
    return {
      version: sh ? versionName(sh.version) : null,
      cipher: sh ? cipherSuiteName(sh.cipherSuite) : null,
      resumed: this.resumedNow(),
      alpnOffered: this.ch ? this.ch.alpnOffered : [],
      alpn: sh?.alpn ?? this.decryptor?.alpn ?? null,
      sni: this.ch?.sni ?? null,
      handshakeSeconds: hs >= 0 ? hs : null,
      helloRetryRequest: this.hrr,
      decrypted: this.protocol !== 'tls',
      turns: this.turnCount,
      closeNotifyBy: this.closeNotify ? this.side(this.closeNotify.dir) : null,
      resumptionSavedSeconds,
    };
  }

  // --- ProtocolSession ---

  get spoke(): boolean {
    return this.sh !== null && !this.dead;
  }

  data(dir: number, buf: Buffer, off: number, len: number, ts: number): void {
    if (this.dead) return;
    this.stream(dir).data(buf, off, len, ts);
  }

  gap(dir: number, len: number, ts: number): void {
    if (this.dead) return;
    this.stream(dir).gap(len, ts);
  }

  end(dir: number, ts: number): void {
    if (this.dead) return;
    this.rs[dir]?.end(ts);
    if (this.keyState !== Keys.Waiting) this.inner?.end(dir, ts);
  }

  closing(dir: number, rst: boolean, ts: number): void {
    this.inner?.closing(dir, rst, ts);
  }

  finish(ts: number): void {
    for (const d of [0, 1]) {
      this.rs[d]?.end(ts);
      this.rs[d]?.release();
    }
    if (this.keyState === Keys.Waiting) this.lookupKeys(ts, true);
    this.inner?.finish(ts);
    // No ServerHello: the handshake never completed (or was not TLS after all): counted apart, not an HTTP connection.
    if (!this.sh && !this.dead) this.host.notProtocol('tls');
    this.decryptor?.wipe();
    this.releaseHeld();
  }

  verdict(tcp: TcpCloseFacts): SessionVerdict {
    // The close signal: a close_notify before the first FIN/RST says who closed.
    const cn = this.closeNotify;
    let signal = tcp;
    if (cn && cn.ts <= tcp.time) {
      const last = this.exact() ? this.innerHost!.lastActivity : this.lastData;
      signal = { ...tcp, by: this.side(cn.dir), rst: false, time: cn.ts, idleBeforeClose: last >= 0 ? Math.max(0, cn.ts - last) : tcp.idleBeforeClose };
    }
    const at = { by: signal.by, time: signal.time };
    if (this.exact()) return { ...this.inner!.verdict(signal), ...at };
    const none = { servedCount: 0, signalTime: signal.time, ...at };
    if (this.requests === 0 && this.turnCount === 0 && !this.awaiting) return { verdict: 'unused', ...none };
    // An unanswered client run is a request in HTTP/1.1; in h2 it may be a SETTINGS ACK, a
    // WINDOW_UPDATE or the client's GOAWAY (curl and h2load end with them): no race or abort is told.
    const open = this.h2Alpn ? null : this.awaiting;
    if (signal.by === 'server') {
      // A request run the server's close crossed (sent after it, or just before), never answered.
      if (open && open.time >= signal.time - signal.raceWindowSeconds) return { verdict: 'race', ...none };
      if (open) return { verdict: 'aborted', ...none };
      if (signal.rst) return { verdict: 'reset', ...none };
      const prompt = signal.idleBeforeClose < signal.promptWindowSeconds;
      if (!prompt) return { verdict: 'idle_timeout', ...none };
      // A server closing right after an answer ended persistence: a request limit when the same
      // count recurs on the server (the connection layer decides), else server_close.
      if (this.h2Alpn || this.requests === 0) return { verdict: 'server_close', ...none };
      return { verdict: 'max_requests_candidate', servedCount: this.requests, signalTime: signal.time, ...at };
    }
    if (open) return { verdict: 'aborted', ...none };
    if (signal.rst) return { verdict: 'reset', ...none };
    return { verdict: signal.idleBeforeClose < signal.promptWindowSeconds ? 'client_close' : 'client_idle', ...none };
  }

  // --- RecordSink (from the record streams) ---

  handshake(dir: number, msgType: number, body: Buffer | null, off: number, len: number, ts: number): void {
    if (this.dead) return;
    const fromClient = dir === this.clientDir;
    switch (msgType) {
      case HandshakeType.CLIENT_HELLO: {
        if (this.clientDir < 0) {
          if (!this.host.rolesFromContent(dir)) return this.stop();
          this.clientDir = dir;
        } else if (!fromClient) return;
        if (!body) return;
        const v = parseClientHello(body, off, len);
        if (typeof v === 'string') return this.host.anomaly(v);
        if (v.sniRejected) this.host.anomaly(v.sniRejected);
        // An ALPN offer without any HTTP protocol: another protocol over TLS (DoT, IMAP...).
        if (v.alpnOffered.length > 0 && !v.alpnOffered.some((a) => HTTP_ALPN.test(a))) {
          this.host.notProtocol('tls');
          return this.stop();
        }
        if (this.chTime < 0) this.chTime = this.rs[dir]!.recordStartTs;
        this.ch = v;
        return;
      }
      case HandshakeType.SERVER_HELLO: {
        if (fromClient || !body || this.clientDir < 0) return;
        const v = parseServerHello(body, off, len);
        if (typeof v === 'string') return this.host.anomaly(v);
        if (v.helloRetryRequest) {
          this.hrr = true;
          return;
        }
        this.sh = v;
        this.tls13 = v.version === TLS13;
        if (v.alpn === 'h2') {
          this.h2Alpn = true;
          this.host.serverChoseH2();
        }
        // TLS 1.3 hides the choice: a server that chose h2 before likely does again for a client offering it.
        if (this.tls13 && this.offersH2() && this.host.serverSpeaksH2()) this.h2Alpn = true;
        if (this.host.keys && this.ch) this.lookupKeys(ts, false);
        return;
      }
      case HandshakeType.CERTIFICATE:
        if (!fromClient && this.flight === 'unknown') this.flight = 'certificate';
        return;
      case HandshakeType.NEW_SESSION_TICKET:
        // TLS 1.2 (RFC 5077 3.1): right after the ServerHello in an abbreviated handshake, after the Certificate in a full one.
        if (!fromClient && this.flight === 'unknown') this.flight = 'abbreviated';
        return;
      default:
        return;
    }
  }

  record(dir: number, h: Readonly<RecordHeader>, payload: Buffer | null, off: number, ts: number): void {
    if (this.dead || this.clientDir < 0) return;
    const type = h.type;
    if (type === ContentType.CHANGE_CIPHER_SPEC) {
      if (this.tls13) return; // middlebox compatibility (RFC 8446 D.4): nothing changes
      this.ccs[dir] = true;
      if (dir !== this.clientDir && this.flight === 'unknown') this.flight = 'abbreviated';
      if (this.keyState === Keys.Waiting) this.hold(dir, h, null, 0, ts, true);
      else this.decryptor?.changeCipherSpec(dir);
      return;
    }
    if (!this.encrypted(dir, type)) return;
    const startTs = this.rs[dir]!.recordStartTs;
    if (this.keyState === Keys.Waiting) {
      this.lookupKeys(ts, false);
      if (this.keyState === Keys.Waiting) {
        this.hold(dir, h, payload, off, ts, false, startTs);
        return;
      }
    }
    this.encryptedRecord(dir, type, h.version, h.length, payload, off, ts, startTs);
  }

  anomaly(dir: number, name: RecordStreamAnomaly): void {
    if (name === 'tls_resync') this.decryptor?.resync(dir);
    this.host.anomaly(name as Anomaly);
  }

  // --- internals ---

  private stream(dir: number): TlsRecordStream {
    let s = this.rs[dir];
    if (!s) {
      const fromStart = this.host.flow.fromStart && this.host.flow.bytesIn(dir) === 0;
      s = new TlsRecordStream(dir, this, { start: fromStart ? 'start' : 'lost', budget: this.host.budget });
      if (this.keyState === Keys.Found || this.keyState === Keys.Waiting) s.readApplicationData = true;
      this.rs[dir] = s;
    }
    return s;
  }

  private offersH2(): boolean {
    return this.ch !== null && this.ch.alpnOffered.includes('h2');
  }

  private stop(): void {
    this.dead = true;
    for (const d of [0, 1]) this.rs[d]?.release();
  }

  private side(dir: number): Side {
    return dir === this.clientDir ? 'client' : 'server';
  }

  private exact(): boolean {
    return this.keyState === Keys.Found && this.inner !== null && !this.innerDead;
  }

  private resumedNow(): boolean | null {
    if (!this.ch || !this.sh) return null;
    return resumed(this.ch, this.sh, this.flight);
  }

  /** After the ServerHello: a record the keys would open (TLS 1.3: application data; 1.2: anything after the sender's CCS). */
  private encrypted(dir: number, type: number): boolean {
    if (!this.sh) return type === ContentType.APPLICATION_DATA && !this.host.flow.fromStart; // joined mid-stream: estimate from what comes
    if (this.tls13) return type === ContentType.APPLICATION_DATA;
    return this.ccs[dir] && (type === ContentType.APPLICATION_DATA || type === ContentType.ALERT || type === ContentType.HANDSHAKE);
  }

  private lookupKeys(ts: number, last: boolean): void {
    const src = this.host.keys!;
    const ch = this.ch!;
    const sh = this.sh!;
    const secrets = src.get(ch.random);
    if (!secrets) {
      if (src.complete || last || (this.waitSince >= 0 && ts - this.waitSince > src.keyWaitSeconds)) return this.giveUp('tls_keys_missing');
      if (this.keyState !== Keys.Waiting) {
        this.keyState = Keys.Waiting;
        this.waitSince = ts;
        for (const s of this.rs) if (s) s.readApplicationData = true;
      }
      return;
    }
    const suite = this.tls13 ? tls13Suite(sh.cipherSuite) : tls12Suite(sh.cipherSuite);
    if (!suite) return this.giveUp('tls_cipher_unsupported');
    const d = TlsDecryptor.create(this.tls13 ? '1.3' : '1.2', suite, secrets, Buffer.from(ch.random, 'hex'), Buffer.from(sh.random, 'hex'), this.clientDir);
    if (!d) {
      // TLS 1.3 lines come one by one as the handshake goes: the traffic secrets may be next.
      if (!src.complete && !last && (this.waitSince < 0 || ts - this.waitSince <= src.keyWaitSeconds)) {
        if (this.keyState !== Keys.Waiting) {
          this.keyState = Keys.Waiting;
          this.waitSince = ts;
          for (const s of this.rs) if (s) s.readApplicationData = true;
        }
        return;
      }
      return this.giveUp('tls_keys_missing');
    }
    // Key material is not kept after use: the derived keys live in the decryptor until the end.
    src.delete(ch.random);
    this.decryptor = d;
    this.keyState = Keys.Found;
    for (const s of this.rs) if (s) s.readApplicationData = true;
    this.drainHeld();
  }

  private abandonKeys(): void {
    this.decryptor?.wipe();
    this.decryptor = null;
    this.keyState = Keys.Missing;
    for (const s of this.rs) if (s) s.readApplicationData = false;
  }

  private giveUp(name: Anomaly): void {
    this.host.anomaly(name);
    this.keyState = Keys.Missing;
    for (const s of this.rs) if (s) s.readApplicationData = false;
    this.drainHeld();
  }

  private hold(dir: number, h: Readonly<RecordHeader>, payload: Buffer | null, off: number, ts: number, ccs: boolean, startTs = ts): void {
    const held = (this.held ??= []);
    let copy: Buffer | null = null;
    if (payload) {
      const b = this.host.budget;
      const n = h.length;
      if (held.length >= MAX_KEY_WAIT_RECORDS || this.heldBytes + n > MAX_KEY_WAIT_BYTES || !takeBudget(b, n)) {
        this.host.anomaly('tls_key_wait_overflow');
        this.keyState = Keys.Missing;
        for (const s of this.rs) if (s) s.readApplicationData = false;
        this.drainHeld();
        this.encryptedRecord(dir, h.type, h.version, h.length, null, 0, ts, startTs);
        return;
      }
      copy = Buffer.from(payload.subarray(off, off + n));
      this.heldBytes += n;
    }
    held.push({ dir, type: ccs ? ContentType.CHANGE_CIPHER_SPEC : h.type, version: h.version, length: h.length, ts, startTs, payload: copy });
  }

  private releaseHeld(): void {
    returnBudget(this.host.budget, this.heldBytes);
    this.heldBytes = 0;
    this.held = null;
  }

  private drainHeld(): void {
    const held = this.held;
    if (!held) return;
    this.releaseHeld();
    for (const r of held) {
      if (r.type === ContentType.CHANGE_CIPHER_SPEC) this.decryptor?.changeCipherSpec(r.dir);
      else this.encryptedRecord(r.dir, r.type, r.version, r.length, r.payload, 0, r.ts, r.startTs);
    }
  }

  /** One encrypted record, in wire order of its direction: what it is, then decrypted or counted as a turn. */
  private encryptedRecord(dir: number, type: number, version: number, length: number, payload: Buffer | null, off: number, ts: number, startTs: number): void {
    const fromClient = dir === this.clientDir;
    // What the record is, from type, size and position alone.
    let data = false;
    if (this.tls13) {
      if (fromClient) {
        if (!this.clientFinished13) {
          if (this.serverFlight13) {
            this.clientFinished13 = true; // RFC 8446 4.4.4: the client's first record after the server's flight
            if (this.handshakeEnd < 0) this.handshakeEnd = ts;
          }
        } else data = length > MAX_CONTROL_RECORD_13;
      } else if (!this.clientFinished13) this.serverFlight13 = true;
      else data = length > MAX_CONTROL_RECORD_13;
      if (!data && length === CLOSE_NOTIFY_13 && !this.closeNotify && this.keyState !== Keys.Found && this.clientFinished13) {
        this.closeNotify = { dir, ts };
      }
    } else if (type === ContentType.APPLICATION_DATA) {
      data = true;
      if (fromClient && this.handshakeEnd < 0) this.handshakeEnd = ts;
    } else if (type === ContentType.ALERT) {
      if (!this.closeNotify && this.keyState !== Keys.Found) this.closeNotify = { dir, ts };
    } else if (type === ContentType.HANDSHAKE) {
      if (fromClient && this.clientFinished12 < 0) this.clientFinished12 = ts;
      else if (!fromClient && this.serverFinished12 < 0) this.serverFinished12 = ts;
    }
    if (!this.sh) data = type === ContentType.APPLICATION_DATA; // joined mid-stream

    if (data && this.tls13 && !this.h2Alpn && this.keyState !== Keys.Found && this.offersH2()) {
      if (length === H2_SETTINGS_ACK_13 || (!fromClient && !this.clientData && length < MAX_EARLY_SERVER_H2_13)) {
        this.h2Alpn = true;
        this.host.serverChoseH2();
      }
    }
    // Decrypted first: keys that open nothing are abandoned there, and the record then counts as a turn of the estimate.
    if (this.keyState === Keys.Found) this.decrypt(dir, type, version, length, payload, off, ts);
    if (data) this.turn(dir, ts, startTs);
  }

  private turn(dir: number, ts: number, startTs: number): void {
    const fromClient = dir === this.clientDir;
    this.lastData = ts;
    if (this.keyState !== Keys.Found) this.host.activity(ts);
    if (fromClient) {
      this.clientData = true;
      if (this.lastDataDir === dir) return;
      this.lastDataDir = dir;
      // Runs alternate, so the previous client run was answered (or there was none): nothing is outstanding.
      if (this.keyState === Keys.Found) {
        // The decrypted session counts the requests; this counts turns, in one record reused
        // (nothing keeps it: a record per exchange was a tenth of the run's allocation).
        if (!this.awaiting) this.awaiting = this.turnRecord ? resetEstimated(this.turnRecord, startTs) : (this.turnRecord = estimated(0, startTs, 0));
        return;
      }
      if (this.h2Alpn) {
        if (!this.established) {
          this.established = true;
          this.host.established(startTs);
        }
        this.awaiting ??= estimated(0, startTs, 0);
        return;
      }
      const r = estimated(++this.requests, startTs, 0);
      this.host.request(r, startTs);
      this.awaiting = r;
      return;
    }
    if (this.lastDataDir === dir) {
      if (this.lastAnswered && this.lastAnswered.responseEnd >= 0) this.lastAnswered.responseEnd = ts;
      return;
    }
    this.lastDataDir = dir;
    const r = this.awaiting;
    if (!r) return; // NewSessionTicket, an h2 server's SETTINGS: no request before it
    this.awaiting = null;
    this.turnCount++;
    r.responseStarted = true;
    r.responseKeepAlive = true;
    r.responseEnd = ts;
    this.lastAnswered = r;
    if (this.keyState !== Keys.Found && !this.h2Alpn) this.host.response(r, ts);
  }

  private decrypt(dir: number, type: number, version: number, length: number, payload: Buffer | null, off: number, ts: number): void {
    const d = this.decryptor!;
    if (!payload) {
      d.lost(dir);
      this.innerGap(dir, Math.max(0, length - 24), ts);
      return;
    }
    // A record wholly inside a body of known length: nothing in it is read, so nothing is decrypted.
    const s = this.inner;
    if (s?.opaqueBytes) {
      const opaque = s.opaqueBytes(dir);
      if (opaque > 0) {
        const plain = d.skippableLength(dir, type, length);
        if (plain >= 0 && plain <= opaque) {
          d.skipRecord(dir);
          s.skip!(dir, plain, ts);
          this.innerHost!.plainIn[dir] += plain;
          return;
        }
      }
    }
    const o = d.recordLazy(dir, type, version, payload, off, length);
    switch (o.kind) {
      case 'lazy':
        if (o.type === ContentType.APPLICATION_DATA) this.lazyData(dir, o, ts);
        else if (o.type === ContentType.ALERT) {
          if (!this.closeNotify) this.closeNotify = { dir, ts };
        } else if (o.type === ContentType.HANDSHAKE) d.postHandshake(dir, o.read(0, o.plainLength));
        return;
      case 'data': {
        if (o.plaintext.length === 0) return;
        const s = this.innerSession(dir, o.plaintext);
        if (!s) return;
        s.data(dir, o.plaintext, 0, o.plaintext.length, ts);
        this.innerHost!.plainIn[dir] += o.plaintext.length;
        return;
      }
      case 'alert':
        // close_notify (RFC 8446 6.1); a fatal alert closes too.
        if (!this.closeNotify) this.closeNotify = { dir, ts };
        return;
      case 'failed':
        this.host.anomaly(o.reason);
        // Nothing decrypted yet: the keys are wrong (another connection's line, a corrupt file). Estimate instead.
        if (!this.inner && !this.innerDead && d.opened === 0) return this.abandonKeys();
        this.innerGap(dir, Math.max(0, length - 24), ts);
        return;
      default:
        return;
    }
  }

  /**
   * Application data opened lazily: what the HTTP session reads is decrypted (`LAZY_CHUNK` bytes at
   * a time), what it would only count (a body of known length) is skipped undecrypted.
   */
  private lazyData(dir: number, r: LazyRecord, ts: number): void {
    const total = r.plainLength;
    if (total === 0) return;
    let s = this.inner;
    let pos = 0;
    if (!s) {
      if (this.innerDead) return;
      const n = Math.min(total, LAZY_CHUNK);
      const first = r.readScratch(0, n);
      s = this.innerSession(dir, first, n);
      if (!s) return;
      s.data(dir, first, 0, n, ts);
      pos = n;
    }
    const host = this.innerHost!;
    while (pos < total) {
      const opaque = s.opaqueBytes ? s.opaqueBytes(dir) : 0;
      if (opaque > 0) {
        const n = Math.min(opaque, total - pos);
        s.skip!(dir, n, ts);
        pos += n;
        continue;
      }
      let chunk = LAZY_CHUNK;
      if (pos === 0 && s.lastHeadBytes) {
        const last = s.lastHeadBytes(dir);
        if (last > 0) chunk = Math.min(LAZY_CHUNK, Math.max(MIN_FIRST_READ, (last + HEAD_SLACK + 15) & ~15));
      }
      const n = s.opaqueBytes ? Math.min(total - pos, chunk) : total - pos;
      s.data(dir, r.readScratch(pos, n), 0, n, ts);
      pos += n;
    }
    host.plainIn[dir] += total;
  }

  private innerGap(dir: number, len: number, ts: number): void {
    const s = this.innerSession(dir, null);
    if (!s) return;
    s.gap(dir, len, ts);
    this.innerHost!.plainIn[dir] += len;
  }

  /** The HTTP session of the plaintext, made at the first application data (by ALPN, else by its first bytes). */
  private innerSession(dir: number, first: Buffer | null, firstLength = first ? first.length : 0): ProtocolSession | null {
    if (this.inner || this.innerDead) return this.innerDead ? null : this.inner;
    if (!first) return null;
    const host = (this.innerHost = new InnerHost(this.host, this.clientDir, this));
    const alpn = this.sh?.alpn ?? this.decryptor?.alpn ?? null;
    const h2 = alpn === 'h2' || (alpn === null && dir === this.clientDir && detectProtocol(first, 0, firstLength) === 'http2');
    this.inner = h2 ? new H2Session(host, this.clientDir) : new Http1Session(host);
    this.host.decrypted(h2 ? 'h2' : 'http/1.1');
    if (h2) this.host.serverChoseH2();
    return this.inner;
  }

  /** The plaintext was not HTTP after all: estimate from turns. */
  innerNotHttp(): void {
    this.innerDead = true;
  }
}

function resetEstimated(r: RequestRecord, time: number): RequestRecord {
  r.time = time;
  r.responseStarted = false;
  r.responseKeepAlive = false;
  r.responseEnd = -1;
  return r;
}

function estimated(index: number, time: number, outstanding: number): RequestRecord {
  return {
    index, time, method: '', version: '', wantsKeepAlive: true, connectionClose: false, reused: index > 1,
    savedSeconds: 0, savedFrom: 'unknown', outstandingAtStart: outstanding, status: 0, responseVersion: '',
    responseKeepAlive: false, responseConnectionClose: false, responseCloseDelimited: false, kaTimeout: -1, kaMax: -1,
    responseEnd: -1, responseStarted: false,
  };
}

/** The host of the decrypted HTTP session: the connection's, with the plaintext's own byte counts. */
class InnerHost implements SessionHost, FlowInfo {
  readonly plainIn = [0, 0];
  lastActivity = -1;
  readonly keys = null;

  constructor(
    private readonly outer: SessionHost,
    readonly clientDir: number,
    private readonly tls: TlsSession,
  ) {}

  get flow(): FlowInfo {
    return this;
  }
  get fromStart(): boolean {
    return true;
  }
  bytesIn(dir: number): number {
    return this.plainIn[dir];
  }
  get limits() {
    return this.outer.limits;
  }
  get budget(): BufferBudget | null {
    return this.outer.budget;
  }
  rolesFromContent(_clientDir: number): boolean {
    return true;
  }
  request(r: RequestRecord, ts: number): void {
    this.outer.request(r, ts);
  }
  response(r: RequestRecord, ts: number): void {
    this.outer.response(r, ts);
  }
  advertised(timeoutSeconds: number, maxRequests: number): void {
    this.outer.advertised(timeoutSeconds, maxRequests);
  }
  activity(ts: number): void {
    this.lastActivity = ts;
    this.outer.activity(ts);
  }
  tunneled(): void {
    this.outer.tunneled();
  }
  upgradeToH2c(): void {
    // Not over TLS (RFC 9113 3.2: h2c upgrade is for cleartext only): the bytes after a 101 are a tunnel.
    this.outer.tunneled();
  }
  notProtocol(_kind: 'tls' | 'http2' | 'other'): void {
    this.tls.innerNotHttp();
  }
  established(ts: number): void {
    this.outer.established(ts);
  }
  serverSpeaksH2(): boolean {
    return this.outer.serverSpeaksH2();
  }
  serverChoseH2(): void {
    this.outer.serverChoseH2();
  }
  decrypted(_p: 'http/1.1' | 'h2'): void {}
  anomaly(name: Anomaly): void {
    this.outer.anomaly(name);
  }
}
