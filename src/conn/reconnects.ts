/**
 * Reconnect gaps: what a longer server timeout (or a higher request limit) would have had to
 * cover. When a server ends a connection (an idle timeout, or its request limit) and the same
 * client address opens a new connection to the same server later, the time from the old
 * connection's last HTTP byte to the new connection's opening is its reconnect gap: a keep-alive
 * timeout longer than the gap would have kept the old connection for the new requests, and saved
 * the new handshake (a client pool reuses an idle connection before it opens one).
 *
 * Pairing: per (client address, server) pair the last byte times of the server's latest closes
 * (`MAX_PENDING_PER_PAIR`, the most recent paired first: with a pool, the connection idle the
 * least would have been the one reused) and the opening time of a connection opened after them.
 * The facts arrive in either order: a close is reported once both FINs are seen, or later (an
 * inferred limit waits for a confirming connection), so the new connection's opening may come
 * first; each close pairs with at most one opening and each opening with one close. A connection
 * opened before the old one's close (another connection of the pool) is no reconnect.
 *
 * Bounded: `limit` pairs, the least recently used evicted (`reconnect_pair_evicted`). Capture
 * time only (no clock): replays give the same gaps.
 */
import type { ConnectionRecord } from './records.js';
import { endpointHost } from '../decode/packet.js';

/** The server's closes whose reconnects are measured. */
export type ReconnectAfter = 'idle_timeout' | 'max_requests';

export interface ReconnectFact {
  client: string;
  server: string;
  after: ReconnectAfter;
  /** Last HTTP byte of the old connection to the opening (SYN) of the new one, seconds. */
  gapSeconds: number;
  /** The new connection's opening (capture time). */
  time: number;
}

/** Closes remembered per pair: more connections than this closed at once are a pool larger than any pairing here needs. */
export const MAX_PENDING_PER_PAIR = 8;

interface Pending {
  lastByte: number;
  /** The first FIN/RST: an opening before it is another connection of the pool. */
  closedAt: number;
  after: ReconnectAfter;
}

/**
 * One client address / server pair: about 150 bytes with its key (test/conn/memory.test.ts). The
 * lists are made only when needed: most pairs hold one opening and nothing else.
 */
interface PairState {
  /** Server closes waiting for the client's next opening, oldest last byte first; null: none. */
  pending: Pending[] | null;
  /** Openings not paired yet, after the latest close (their close may be reported later): capture times, oldest first. */
  opens: number[] | null;
  /** The latest such opening when it is the only one (opens null), else -1. */
  open: number;
}

export class ReconnectPairs {
  private readonly pairs = new Map<string, PairState>();
  /** Pairs dropped to stay within `limit` (the least recently used). */
  evicted = 0;

  constructor(
    private readonly limit: number,
    private readonly emit: (f: ReconnectFact) => void,
    private readonly onEvict: () => void = () => {},
  ) {}

  get size(): number {
    return this.pairs.size;
  }

  /** A connection opened (seen from its handshake: a connection joined mid-stream has no opening time). */
  opened(c: ConnectionRecord): void {
    if (c.midstream) return;
    const key = pairKey(c.client, c.server);
    const st = this.pairs.get(key);
    if (!st) {
      this.put(key, { pending: null, opens: null, open: c.openedAt });
      return;
    }
    const pending = st.pending;
    if (pending) {
      // Most recent close first; only closes before this opening count.
      for (let i = pending.length - 1; i >= 0; i--) {
        const p = pending[i];
        if (p.closedAt <= c.openedAt) {
          pending.splice(i, 1);
          if (pending.length === 0) st.pending = null;
          this.touch(key, st);
          this.emit({ client: c.client, server: c.server, after: p.after, gapSeconds: Math.max(0, c.openedAt - p.lastByte), time: c.openedAt });
          return;
        }
      }
    }
    if (st.opens) {
      st.opens.push(c.openedAt);
      if (st.opens.length > MAX_PENDING_PER_PAIR) st.opens.shift();
    } else if (st.open >= 0) {
      st.opens = [st.open, c.openedAt];
      st.open = -1;
    } else st.open = c.openedAt;
    this.touch(key, st);
  }

  /** A connection closed: a server-ended one (idle timeout, request limit) waits for its client's next opening. */
  closed(c: ConnectionRecord): void {
    const after = c.closeReason === 'idle_timeout' || c.closeReason === 'max_requests' ? c.closeReason : null;
    if (after === null || c.closedAt === null || c.idleBeforeClose === null) return;
    const closedAt = c.closedAt;
    const lastByte = closedAt - c.idleBeforeClose;
    const key = pairKey(c.client, c.server);
    const st = this.pairs.get(key) ?? { pending: null, opens: null, open: -1 };
    // An opening already reported that came after this close (its fact arrived first): the earliest such one.
    let t = -1;
    if (st.opens) {
      const i = st.opens.findIndex((x) => x >= closedAt);
      if (i >= 0) {
        t = st.opens[i];
        st.opens.splice(i, 1);
        if (st.opens.length === 0) st.opens = null;
      }
    } else if (st.open >= 0 && st.open >= closedAt) {
      t = st.open;
      st.open = -1;
    }
    if (t >= 0) {
      this.touch(key, st);
      this.emit({ client: c.client, server: c.server, after, gapSeconds: Math.max(0, t - lastByte), time: t });
      return;
    }
    const pending = (st.pending ??= []);
    pending.push({ lastByte, closedAt, after });
    pending.sort((a, b) => a.lastByte - b.lastByte);
    if (pending.length > MAX_PENDING_PER_PAIR) pending.shift();
    this.touch(key, st);
  }

  /** Re-inserted: the Map's order is then least recently used first. */
  private touch(key: string, st: PairState): void {
    this.pairs.delete(key);
    if (st.pending === null && st.opens === null && st.open < 0) return;
    this.put(key, st);
  }

  private put(key: string, st: PairState): void {
    this.pairs.set(key, st);
    while (this.pairs.size > this.limit) {
      const oldest = this.pairs.keys().next().value as string;
      this.pairs.delete(oldest);
      this.evicted++;
      this.onEvict();
    }
  }
}

/** The client's address (not its port: the next connection has another) and the server. */
function pairKey(client: string, server: string): string {
  return `${endpointHost(client)} ${server}`;
}
