/**
 * The key log file behind `--tls-keylog FILE`: read whole for `analyze`, followed as it grows for
 * the daemon (clients append to it while the capture runs), both as a `SecretSource` for the
 * engine. The parsing and the bounded store are keylog.ts.
 *
 * The file holds every secret of every logged connection: one readable by group or others is
 * worth a warning (`permissionWarning`), as ssh does for its keys. Its contents are never logged.
 *
 * Following (`KeylogFollower`): a poll every `pollMs` (fs.watch misses appends on some file
 * systems and across container mounts) reads what was appended; a file that shrank or was
 * replaced (another inode: a rotation, or a client that truncates it on start, as curl does not
 * but some test harnesses do) is read again from the start. A file that does not exist yet is
 * waited for. Errors other than ENOENT (EACCES, a directory or FIFO at the path) are reported once
 * through `onProblem`, again only after a poll has read the file since.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { SecretSource } from '../session/session.js';
import { KeylogStore, type KeylogSecrets, type KeylogStats } from './keylog.js';

/** Capture seconds a connection waits for its lines in the daemon: clients write them during the handshake, the follower polls every 200 ms. */
export const DEFAULT_KEY_WAIT_SECONDS = 3;
const READ_CHUNK = 1 << 16;

/** A warning line for a key log readable by others, or null. */
export function permissionWarning(path: string): string | null {
  try {
    const st = statSync(path);
    if ((st.mode & 0o044) === 0) return null;
    return `${path} is readable by ${(st.mode & 0o004) !== 0 ? 'everyone' : 'its group'}: it holds the keys of every logged TLS connection; chmod 600 ${path}`;
  } catch {
    return null;
  }
}

/** The one line for a key log that cannot be read: what is wrong and what to do, not only the errno. */
function cannotRead(path: string, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return `cannot read the TLS key log ${path}: no such file (check the path: the file the client's SSLKEYLOGFILE names)`;
    case 'EACCES':
    case 'EPERM':
      return `cannot read the TLS key log ${path}: permission denied (run as a user who can read it)`;
    default:
      return `cannot read the TLS key log ${path}: ${e.code ?? e.message}`;
  }
}

/** `analyze`: the whole file read once. Throws with a one-line message when it cannot be read. */
export function readKeylogFile(path: string, opts: { maxEntries?: number } = {}): { source: SecretSource; stats: KeylogStats; store: KeylogStore } {
  const store = new KeylogStore(opts);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new Error(cannotRead(path, err));
  }
  try {
    if (fstatSync(fd).isDirectory()) throw new Error(`the TLS key log ${path} is a directory; give the file SSLKEYLOGFILE names`);
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      store.push(buf.subarray(0, n));
    }
    store.end();
    buf.fill(0);
  } finally {
    closeSync(fd);
  }
  return { source: asSource(store, true, 0), stats: store.stats, store };
}

function asSource(store: KeylogStore, complete: boolean, keyWaitSeconds: number): SecretSource {
  return {
    get: (r) => store.get(r),
    delete: (r) => store.delete(r),
    complete,
    keyWaitSeconds,
  };
}

/** What the follower sees of the file now. */
export type KeylogFileState = 'waiting' | 'following' | 'error';

/** The follower's counts, for the daemon's metrics and logs (never a secret). */
export interface KeylogFollowerStats extends KeylogStats {
  /** `waiting`: no file yet (ENOENT); `following`: read at the last poll; `error`: the last poll could not read it. */
  state: KeylogFileState;
  /** Client randoms held now (at most the store's maxEntries). */
  entries: number;
  /** Times the file was read again from its start: truncated, replaced (another inode), or removed and created again. */
  reopens: number;
  /** Bytes read from the file(s) since start. */
  bytesRead: number;
}

/**
 * Bytes read in one poll at most: the poll is synchronous, so a huge file (an old log of 100k
 * connections is about 80 MB) is caught up over several polls instead of stalling the event loop
 * (16 MiB reads in tens of milliseconds).
 */
export const MAX_READ_PER_POLL = 16 << 20;
/** Bytes before the read position fingerprinted to notice a file truncated and regrown past it between two polls. */
const TAIL_BYTES = 64;
/** What `start()` reads before returning, at most (an older, bigger rest is read by the polls). */
const START_READ_MAX = 1 << 30;
/** An entry that can open application data: TLS 1.2's master secret, or both TLS 1.3 traffic secrets. */
function usable(e: KeylogSecrets): boolean {
  return e.CLIENT_RANDOM !== undefined || (e.CLIENT_TRAFFIC_SECRET_0 !== undefined && e.SERVER_TRAFFIC_SECRET_0 !== undefined);
}

/** Milliseconds between two checks of the file on a lookup that missed (see `missed`). */
const MISS_CHECK_MS = 1;

/**
 * The daemon: the file followed as it grows. Call order: `start()` (reads what is there, then
 * polls every `pollMs`), `stop()` (clears every secret; no poll after it). `poll()` may be called
 * directly (tests). Nothing here throws: a problem is reported once through `onProblem` until a
 * poll reads the file again.
 */
export class KeylogFollower {
  readonly store: KeylogStore;
  readonly source: SecretSource;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private dev = -1;
  private ino = -1;
  private pos = 0;
  /** sha256 of the TAIL_BYTES before `pos` (a hash: no key material is kept for it). */
  private tail: string | null = null;
  private reported = false;
  private lastMissCheck = -Infinity;
  private badLinesReported = false;
  private fileState: KeylogFileState = 'waiting';
  private reopenCount = 0;
  private bytes = 0;
  private readonly buf = Buffer.allocUnsafe(READ_CHUNK);
  private readonly pollMs: number;
  private readonly onInfo: (message: string) => void;

  constructor(
    readonly path: string,
    private readonly onProblem: (message: string) => void,
    opts: { maxEntries?: number; pollMs?: number; keyWaitSeconds?: number; onInfo?: (message: string) => void } = {},
  ) {
    this.store = new KeylogStore(opts);
    const store = this.store;
    this.source = {
      get: (r) => {
        const e = store.get(r);
        return e !== undefined && usable(e) ? e : this.missed(r) ?? e;
      },
      delete: (r) => store.delete(r),
      complete: false,
      keyWaitSeconds: opts.keyWaitSeconds ?? DEFAULT_KEY_WAIT_SECONDS,
    };
    this.pollMs = opts.pollMs ?? 200;
    this.onInfo = opts.onInfo ?? (() => {});
  }

  get state(): KeylogFileState {
    return this.fileState;
  }

  get stats(): KeylogFollowerStats {
    return { ...this.store.stats, rejected: { ...this.store.stats.rejected }, state: this.fileState, entries: this.store.size, reopens: this.reopenCount, bytesRead: this.bytes };
  }

  /**
   * Reads what the file holds now, whole (before the sources start, blocking is what we want: a
   * capture file replayed fast finds every logged key; at most START_READ_MAX), then polls.
   */
  start(): void {
    if (this.stopped || this.timer) return;
    for (let i = 0; i < START_READ_MAX / MAX_READ_PER_POLL && this.pollRead() === MAX_READ_PER_POLL; i++);
    this.timer = setInterval(() => this.poll(), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.store.clear();
    this.buf.fill(0);
  }

  /** Reads what was appended since the last poll (exposed for tests). Never throws. */
  poll(): void {
    this.pollRead();
  }

  /** One poll; returns the bytes read. */
  private pollRead(): number {
    if (this.stopped) return 0;
    const before = this.bytes;
    let fd: number;
    try {
      // O_NONBLOCK: a FIFO given by mistake must not block the event loop until a writer opens it.
      fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        // Removed (a rotation, a client that recreates it): the next file is read from its
        // start, even if it gets the old inode number back (file systems reuse them).
        if (this.ino !== -1) this.restart();
        this.ino = -1;
        this.fileState = 'waiting';
        return 0;
      }
      this.fail(cannotRead(this.path, err));
      return 0;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) {
        this.fail(`the TLS key log ${this.path} is not a regular file (${st.isDirectory() ? 'a directory' : 'a FIFO, socket or device'}); give the file SSLKEYLOGFILE names`);
        return 0;
      }
      const appeared = this.ino === -1;
      if (st.ino !== this.ino || st.dev !== this.dev || st.size < this.pos || !this.tailMatches(fd)) {
        // Replaced, truncated, or rewritten: read it again from the start.
        if (!appeared) this.restart();
        this.dev = st.dev;
        this.ino = st.ino;
        this.pos = 0;
        this.tail = null;
      }
      const limit = Math.min(st.size, this.pos + MAX_READ_PER_POLL);
      while (this.pos < limit) {
        const n = readSync(fd, this.buf, 0, Math.min(this.buf.length, limit - this.pos), this.pos);
        if (n <= 0) break;
        this.store.push(this.buf.subarray(0, n));
        this.pos += n;
        this.bytes += n;
      }
      this.tail = this.fingerprint(fd);
      if (appeared) this.onInfo(`reading the TLS key log ${this.path}`);
      this.fileState = 'following';
      this.reported = false;
      this.reportBadLines();
    } catch (err) {
      this.fail(cannotRead(this.path, err));
    } finally {
      try {
        closeSync(fd);
      } catch {
        // EBADF cannot happen here; nothing to do if it did.
      }
    }
    return this.bytes - before;
  }

  /** The first skipped lines are said once (counts by reason, never the line: it may hold a secret); later ones are only counted. */
  private reportBadLines(): void {
    if (this.badLinesReported) return;
    const r = this.store.stats.rejected;
    const bad = Object.entries(r).filter(([, n]) => n > 0);
    if (bad.length === 0) return;
    this.badLinesReported = true;
    this.onProblem(`the TLS key log ${this.path} has lines that are not key log lines, skipped (${bad.map(([k, n]) => `${k}: ${n}`).join(', ')}); later ones are only counted`);
  }

  /**
   * A lookup that missed, or found a TLS 1.3 entry without its traffic secrets yet (clients write
   * the five lines as the handshake goes): if the file changed since the last read, read it now
   * rather than at the next poll. The TLS session gives up at a connection's end (tls/session.ts, `last`), and a
   * proxied or live connection on loopback lasts a few milliseconds: without this, one shorter
   * than the poll interval lost its keys (curl through --proxy: tls_keys_missing, its lines
   * written during the handshake but read 200 ms later). At most one stat per MISS_CHECK_MS, so
   * a flood of connections never logged costs at most 1000 stats a second.
   */
  private missed(clientRandom: string): KeylogSecrets | undefined {
    if (this.stopped) return undefined;
    const t = performance.now();
    if (t - this.lastMissCheck < MISS_CHECK_MS) return undefined;
    this.lastMissCheck = t;
    let st;
    try {
      st = statSync(this.path, { throwIfNoEntry: false });
    } catch {
      return undefined;
    }
    if (!st || (st.ino === this.ino && st.dev === this.dev && st.size === this.pos)) return undefined;
    this.pollRead();
    return this.store.get(clientRandom);
  }

  /** The file is read again from its start: a line cut by the old one ends there. */
  private restart(): void {
    this.store.end();
    this.reopenCount++;
    this.pos = 0;
    this.tail = null;
  }

  /** The bytes before `pos` are still the ones read (a truncate-and-regrow keeps size >= pos). */
  private tailMatches(fd: number): boolean {
    return this.tail === null || this.fingerprint(fd) === this.tail;
  }

  private fingerprint(fd: number): string | null {
    const len = Math.min(TAIL_BYTES, this.pos);
    if (len === 0) return null;
    const b = Buffer.alloc(len);
    const n = readSync(fd, b, 0, len, this.pos - len);
    const h = createHash('sha256').update(b.subarray(0, n)).digest('hex');
    b.fill(0);
    return h;
  }

  private fail(message: string): void {
    this.fileState = 'error';
    if (this.reported) return;
    this.reported = true;
    this.onProblem(message);
  }
}
