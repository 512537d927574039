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
 * waited for. Errors other than ENOENT are reported once through `onProblem`.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import type { SecretSource } from '../session/session.js';
import { KeylogStore, type KeylogStats } from './keylog.js';

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

/** `analyze`: the whole file read once. Throws with a one-line message when it cannot be read. */
export function readKeylogFile(path: string, opts: { maxEntries?: number } = {}): { source: SecretSource; stats: KeylogStats; store: KeylogStore } {
  const store = new KeylogStore(opts);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new Error(`cannot read the TLS key log ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
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

/** The daemon: the file followed as it grows. `start()` reads what is there; `stop()` clears every secret. */
export class KeylogFollower {
  readonly store: KeylogStore;
  readonly source: SecretSource;
  private timer: NodeJS.Timeout | null = null;
  private ino = -1;
  private pos = 0;
  private reported = false;
  private readonly buf = Buffer.allocUnsafe(READ_CHUNK);

  constructor(
    readonly path: string,
    private readonly onProblem: (message: string) => void,
    opts: { maxEntries?: number; pollMs?: number; keyWaitSeconds?: number } = {},
  ) {
    this.store = new KeylogStore(opts);
    this.source = asSource(this.store, false, opts.keyWaitSeconds ?? DEFAULT_KEY_WAIT_SECONDS);
    this.pollMs = opts.pollMs ?? 200;
  }

  private readonly pollMs: number;

  start(): void {
    this.poll();
    this.timer = setInterval(() => this.poll(), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.store.clear();
    this.buf.fill(0);
  }

  /** Reads what was appended since the last poll (exposed for tests). */
  poll(): void {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') this.problem(`cannot read the TLS key log ${this.path}: ${code ?? (err as Error).message}`);
      return;
    }
    try {
      const st = fstatSync(fd);
      if (st.ino !== this.ino || st.size < this.pos) {
        // Replaced or truncated: read it again (a line cut by the old file ends there).
        if (this.ino !== -1) this.store.end();
        this.ino = st.ino;
        this.pos = 0;
      }
      while (this.pos < st.size) {
        const n = readSync(fd, this.buf, 0, this.buf.length, this.pos);
        if (n <= 0) break;
        this.store.push(this.buf.subarray(0, n));
        this.pos += n;
      }
      this.reported = false;
    } catch (err) {
      this.problem(`cannot read the TLS key log ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    } finally {
      closeSync(fd);
    }
  }

  private problem(message: string): void {
    if (this.reported) return;
    this.reported = true;
    this.onProblem(message);
  }
}
