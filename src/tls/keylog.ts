/**
 * An incremental parser and bounded store for NSS key log files (the format SSLKEYLOGFILE makes
 * curl, Firefox, Chrome and Python write, and Node.js `--tls-keylog` / the `keylog` event):
 *
 *   LABEL <client_random: 64 hex digits> <secret: hex>
 *
 * TLS 1.2 writes one `CLIENT_RANDOM <random> <48-byte master secret>` line per connection; TLS 1.3
 * writes five (CLIENT/SERVER_HANDSHAKE_TRAFFIC_SECRET, CLIENT/SERVER_TRAFFIC_SECRET_0,
 * EXPORTER_SECRET; 32 bytes for SHA-256 suites, 48 for SHA-384), plus CLIENT_EARLY_TRAFFIC_SECRET
 * and EARLY_EXPORTER_SECRET with 0-RTT. OpenSSL-based writers add `#` comment lines; files from
 * several clients are often concatenated, and Windows tools write CRLF.
 *
 * Call order: `push(chunk)` with any split of the file (a line may span chunks), then `end()` to
 * parse a last line with no newline; `get(clientRandom)` at any time. A connection's ClientHello
 * can be seen before its key log line is written, so callers look up again later rather than
 * once.
 *
 * Bounds: at most `maxEntries` client randoms (default DEFAULT_MAX_KEYLOG_ENTRIES); a new one
 * beyond that evicts the oldest (its secrets are zeroed), counted in `stats.evicted`. A line
 * longer than MAX_KEYLOG_LINE is skipped whole, counted once. Bad lines are skipped and counted by
 * a stable reason (`KeylogReject`); nothing here logs, and a secret never appears in a count,
 * a reason or an error. `delete(clientRandom)` zeroes and forgets a connection's secrets once the
 * caller has derived its keys, so key material is not kept after use.
 */

/** Labels we store; others (future or vendor ones) are counted as `keylog_unknown_label`. */
export const KEYLOG_LABELS = [
  'CLIENT_RANDOM',
  'CLIENT_EARLY_TRAFFIC_SECRET',
  'EARLY_EXPORTER_SECRET',
  'CLIENT_HANDSHAKE_TRAFFIC_SECRET',
  'SERVER_HANDSHAKE_TRAFFIC_SECRET',
  'CLIENT_TRAFFIC_SECRET_0',
  'SERVER_TRAFFIC_SECRET_0',
  'EXPORTER_SECRET',
  // OpenSSL 3.0 writes these, with a literal "_N", after a TLS 1.3 KeyUpdate (seen in
  // test/fixtures/tls: s_client's `K`). Valid lines, stored and not needed: decrypt.ts derives
  // each next secret from the one before (RFC 8446 7.2).
  'CLIENT_TRAFFIC_SECRET_N',
  'SERVER_TRAFFIC_SECRET_N',
] as const;
export type KeylogLabel = (typeof KEYLOG_LABELS)[number];

/**
 * Why a line was skipped:
 * - keylog_bad_field_count: not exactly three space-separated fields
 * - keylog_unknown_label: a label not in KEYLOG_LABELS (e.g. the legacy `RSA` form)
 * - keylog_bad_client_random: not 64 hex digits
 * - keylog_bad_secret: not hex, or the wrong length for the label (48 bytes for CLIENT_RANDOM,
 *   32 or 48 for the TLS 1.3 secrets)
 * - keylog_line_too_long: over MAX_KEYLOG_LINE characters (a binary file or garbage)
 */
export const KEYLOG_REJECTS = [
  'keylog_bad_field_count',
  'keylog_unknown_label',
  'keylog_bad_client_random',
  'keylog_bad_secret',
  'keylog_line_too_long',
] as const;
export type KeylogReject = (typeof KEYLOG_REJECTS)[number];

/** Longest line kept: the longest valid one is 31 + 1 + 64 + 1 + 96 = 193 characters. */
export const MAX_KEYLOG_LINE = 1024;
/** Client randoms kept: 100k TLS 1.3 entries (5 secrets each) measured at about 55 MB RSS. */
export const DEFAULT_MAX_KEYLOG_ENTRIES = 100_000;

/** One connection's secrets, by label. Buffers are the store's: copy what you keep. */
export type KeylogSecrets = Partial<Record<KeylogLabel, Buffer>>;

export interface KeylogStats {
  /** Non-blank, non-comment lines seen. */
  lines: number;
  /** Lines stored (including ones that replaced an earlier value for the same label). */
  accepted: number;
  comments: number;
  /** Entries dropped at the cap, oldest first. */
  evicted: number;
  rejected: Record<KeylogReject, number>;
}

const HEX = /^[0-9a-fA-F]*$/;
const LABEL_SET: ReadonlySet<string> = new Set(KEYLOG_LABELS);

function wipe(secrets: KeylogSecrets): void {
  for (const b of Object.values(secrets)) b?.fill(0);
}

export class KeylogStore {
  private readonly entries = new Map<string, KeylogSecrets>();
  private partial = '';
  /** Inside an over-long line: drop everything up to the next newline. */
  private skipping = false;
  readonly maxEntries: number;
  readonly stats: KeylogStats = {
    lines: 0,
    accepted: 0,
    comments: 0,
    evicted: 0,
    rejected: Object.fromEntries(KEYLOG_REJECTS.map((r) => [r, 0])) as Record<KeylogReject, number>,
  };

  constructor(opts: { maxEntries?: number } = {}) {
    this.maxEntries = Math.max(1, opts.maxEntries ?? DEFAULT_MAX_KEYLOG_ENTRIES);
  }

  /** Client randoms held now. */
  get size(): number {
    return this.entries.size;
  }

  /** Feed the next bytes of the file (any split). Latin-1 decoding: valid lines are ASCII. */
  push(chunk: Buffer | string): void {
    const text = typeof chunk === 'string' ? chunk : chunk.toString('latin1');
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      const piece = text.slice(start, nl);
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        this.partial = '';
        continue;
      }
      const line = this.partial + piece;
      this.partial = '';
      if (line.length > MAX_KEYLOG_LINE) this.stats.rejected.keylog_line_too_long++;
      else this.parseLine(line);
    }
    if (this.skipping) return;
    this.partial += text.slice(start);
    if (this.partial.length > MAX_KEYLOG_LINE) {
      this.stats.rejected.keylog_line_too_long++;
      this.partial = '';
      this.skipping = true;
    }
  }

  /** The file ended (or was truncated by its writer): parse a last line without a newline. */
  end(): void {
    if (!this.skipping && this.partial.length > 0) this.parseLine(this.partial);
    this.partial = '';
    this.skipping = false;
  }

  /** Secrets for a client random (32 bytes, or 64 hex digits in either case). */
  get(clientRandom: Buffer | string): KeylogSecrets | undefined {
    return this.entries.get(key(clientRandom));
  }

  /** Zero and forget a connection's secrets (after its keys are derived). True if it was held. */
  delete(clientRandom: Buffer | string): boolean {
    const k = key(clientRandom);
    const e = this.entries.get(k);
    if (e === undefined) return false;
    wipe(e);
    return this.entries.delete(k);
  }

  /** Zero and forget everything (shutdown). */
  clear(): void {
    for (const e of this.entries.values()) wipe(e);
    this.entries.clear();
  }

  private reject(reason: KeylogReject): void {
    this.stats.rejected[reason]++;
  }

  private parseLine(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const trimmed = line.trim();
    if (trimmed.length === 0) return;
    if (trimmed.startsWith('#')) {
      this.stats.comments++;
      return;
    }
    this.stats.lines++;
    const fields = trimmed.split(/[ \t]+/);
    if (fields.length !== 3) return this.reject('keylog_bad_field_count');
    const [label, random, secretHex] = fields;
    if (!LABEL_SET.has(label)) return this.reject('keylog_unknown_label');
    if (random.length !== 64 || !HEX.test(random)) return this.reject('keylog_bad_client_random');
    const bytes = secretHex.length / 2;
    const lengthOk = label === 'CLIENT_RANDOM' ? bytes === 48 : bytes === 32 || bytes === 48;
    if (!lengthOk || !HEX.test(secretHex)) return this.reject('keylog_bad_secret');

    const k = random.toLowerCase();
    let entry = this.entries.get(k);
    if (entry === undefined) {
      if (this.entries.size >= this.maxEntries) this.evictOldest();
      entry = {};
      this.entries.set(k, entry);
    }
    const l = label as KeylogLabel;
    // A repeated line (the same file appended twice) replaces the value: zero the old one first.
    entry[l]?.fill(0);
    entry[l] = Buffer.from(secretHex, 'hex');
    this.stats.accepted++;
  }

  private evictOldest(): void {
    const oldest = this.entries.keys().next();
    if (oldest.done) return;
    const e = this.entries.get(oldest.value);
    if (e !== undefined) wipe(e);
    this.entries.delete(oldest.value);
    this.stats.evicted++;
  }
}

function key(clientRandom: Buffer | string): string {
  return typeof clientRandom === 'string' ? clientRandom.toLowerCase() : clientRandom.toString('hex');
}
