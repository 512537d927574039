/**
 * Per-client figures, from the engine's facts: what each client (its address) or client group
 * (the names file's name of its address, `--client-groups`) does with its connections. Read by
 * analyze's client table and the daemon's /api/clients and keepalive_client_group_* metrics.
 * Bounded: at most `MAX_CLIENTS` addresses (at the cap the tenth with the fewest connections is
 * merged into `other`, so the busiest keep their rows) or `MAX_CLIENT_GROUPS` groups (later groups
 * count as `other`), and a few hundred idle samples per key.
 */
import { CLOSE_REASONS, type ConnectionOutcome, type ConnectionRecord, type EngineConsumer } from './records.js';
import { OTHER, type NameMap } from '../config/names.js';
import { endpointHost } from '../decode/packet.js';
import { median, ratioDown } from './stats.js';

/**
 * One client, or one client group (`--client-groups`): what it does with its connections. The
 * client is its address (its ports are the connections), or its group from the names file
 * (`other` when no entry names it).
 */
export interface ClientSummary {
  client: string;
  connections: number;
  requests: number;
  reusedRequests: number;
  /** reusedRequests / requests; 0 without requests. */
  reuseRatio: number;
  /** The most frequent close reason of its connections and how many; null before any closed. */
  topCloseReason: ConnectionOutcome | null;
  topCloseReasonConnections: number;
  closeReasons: Record<string, number>;
  /** Median idle before the closes this client made itself (client_close, client_idle): its pool's idle timeout when client_idle. */
  medianIdleBeforeOwnCloseSeconds: number | null;
}

/** Distinct clients the report keeps apart; later ones are counted together as `other` (analyze --json says how many). */
export const MAX_CLIENTS = 10_000;
/** Client groups kept apart (the client_group label values): a names file of more names puts the rest in `other`. */
export const MAX_CLIENT_GROUPS = 1000;
/** Idle samples per client for its median: the latest 256 (10,000 clients: 20 MB at most). */
export const MAX_CLIENT_IDLE_SAMPLES = 256;

/**
 * Per-client figures for `analyze` and the daemon's /api/clients: bounded by MAX_CLIENTS (or the
 * names, when grouped). Everything is counted when a connection closes (the engine closes every
 * connection once, `open` when tracking ended): an open connection holds nothing here.
 */
export class ClientTable implements EngineConsumer {
  private readonly byKey = new Map<string, ClientAcc>();
  /** Connections counted under `other` because of the cap (merged quiet addresses, groups past the cap). */
  overflowConnections = 0;
  private readonly names: () => NameMap | null;

  constructor(
    /** The names file's map, or a getter of the current one (the daemon reloads it on SIGHUP). */
    names: NameMap | null | (() => NameMap | null),
    /** Group clients by the names file (unmatched: `other`), never by address. */
    readonly grouped: boolean,
    private readonly cap = MAX_CLIENTS,
    /** Idle samples kept per client for its median (the latest ones). */
    private readonly idleSamples = MAX_CLIENT_IDLE_SAMPLES,
  ) {
    this.names = typeof names === 'function' ? names : () => names;
  }

  /** The key of a client "ip:port": its group, or its address. */
  keyOf(client: string): string {
    if (this.grouped) return this.names()?.client(client) ?? OTHER;
    return endpointHost(client);
  }

  closed(c: ConnectionRecord): void {
    const key = this.keyOf(c.client);
    let a = this.byKey.get(key);
    if (!a) {
      if (this.grouped && this.byKey.size >= MAX_CLIENT_GROUPS) {
        // Groups are label values (counters must not go down): past the cap a new group is other.
        this.overflowConnections++;
        a = this.byKey.get(OTHER);
        if (!a) this.byKey.set(OTHER, (a = new ClientAcc()));
      } else {
        if (!this.grouped && this.byKey.size >= this.cap) this.mergeQuietest();
        this.byKey.set(key, (a = new ClientAcc()));
      }
    }
    a.connections++;
    a.requests += c.requests;
    a.reusedRequests += c.reusedRequests;
    a.reasons[OUTCOME_INDEX.get(c.closeReason)!]++;
    if (c.closedBy === 'client' && c.idleBeforeClose !== null) {
      const idle = (a.ownIdle ??= []);
      if (idle.length < this.idleSamples) idle.push(c.idleBeforeClose);
      else idle[a.idleNext++ % this.idleSamples] = c.idleBeforeClose;
    }
  }

  /**
   * Addresses at the cap: the tenth with the fewest connections is merged into `other`, so a busy
   * client that comes late still gets its own row (the first 10,000 addresses of a busy frontend
   * are mostly one-connection clients). Amortised: one sort per cap/10 new addresses.
   */
  private mergeQuietest(): void {
    const entries = [...this.byKey].filter(([k]) => k !== OTHER);
    entries.sort((x, y) => x[1].connections - y[1].connections || x[1].requests - y[1].requests);
    let other = this.byKey.get(OTHER);
    if (!other) this.byKey.set(OTHER, (other = new ClientAcc()));
    for (const [k, q] of entries.slice(0, Math.max(1, Math.floor(this.cap / 10)))) {
      other.connections += q.connections;
      other.requests += q.requests;
      other.reusedRequests += q.reusedRequests;
      for (let i = 0; i < q.reasons.length; i++) other.reasons[i] += q.reasons[i];
      this.overflowConnections += q.connections;
      this.byKey.delete(k);
    }
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Each client's counts, in order of first appearance (for the client group metrics). */
  each(f: (client: string, connections: number, requests: number, reusedRequests: number, reasons: ReadonlyMap<string, number>) => void): void {
    for (const [k, a] of this.byKey) f(k, a.connections, a.requests, a.reusedRequests, reasonMap(a));
  }

  /** Busiest first (connections, then requests), at most `limit`. */
  summaries(limit = Infinity): ClientSummary[] {
    const out: ClientSummary[] = [];
    for (const [client, a] of this.byKey) {
      let top = -1;
      for (let i = 0; i < OUTCOMES.length; i++) if (a.reasons[i] > 0 && (top < 0 || a.reasons[i] > a.reasons[top])) top = i;
      out.push({
        client,
        connections: a.connections,
        requests: a.requests,
        reusedRequests: a.reusedRequests,
        reuseRatio: a.requests > 0 ? ratioDown(a.reusedRequests / a.requests) : 0,
        topCloseReason: top >= 0 ? OUTCOMES[top] : null,
        topCloseReasonConnections: top >= 0 ? a.reasons[top] : 0,
        closeReasons: Object.fromEntries(reasonMap(a)),
        medianIdleBeforeOwnCloseSeconds: a.ownIdle ? median(a.ownIdle, 3) : null,
      });
    }
    out.sort((x, y) => y.connections - x.connections || y.requests - x.requests || (x.client < y.client ? -1 : 1));
    return out.length > limit ? out.slice(0, limit) : out;
  }
}

/** Close reasons and `open`, in the order reports list them. */
const OUTCOMES: readonly ConnectionOutcome[] = [...CLOSE_REASONS, 'open'];
const OUTCOME_INDEX = new Map<string, number>(OUTCOMES.map((r, i) => [r, i]));

function reasonMap(a: ClientAcc): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < OUTCOMES.length; i++) if (a.reasons[i] > 0) m.set(OUTCOMES[i], a.reasons[i]);
  return m;
}

/** One client's counts: about 300 bytes with its key and map entry (test/conn/memory.test.ts), and its idle samples once it closed a connection itself. */
class ClientAcc {
  connections = 0;
  requests = 0;
  reusedRequests = 0;
  /** By OUTCOMES index (a plain array of small integers: a typed array costs twice as much). */
  readonly reasons: number[] = new Array<number>(OUTCOMES.length).fill(0);
  ownIdle: number[] | null = null;
  /** Where the next sample goes once ownIdle is full (the oldest). */
  idleNext = 0;
}
