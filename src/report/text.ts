/** The `analyze` report for a person at a terminal. */
import { IDLE_CLOSE_TOLERANCE_SECONDS, RECONNECT_AT_ONCE_SECONDS, REQUESTS_PER_CONNECTION_BUCKETS, serverDisplay, shownTimeoutOptions, type ClientSummary, type ServerSummary, type Totals, type Warning } from './summary.js';
import type { EngineStats } from '../conn/engine.js';
import type { CaptureSummary } from '../capture/file.js';
import { CLOSE_REASONS, type CloseReason } from '../conn/records.js';
import { count as num, duration, percent } from './format.js';
import type { ConnectionSummary } from './summary.js';

export interface TextReportInput {
  file: string;
  capture: CaptureSummary;
  stats: EngineStats;
  totals: Totals;
  distribution: number[];
  servers: ServerSummary[];
  warnings: Warning[];
  savedFromMedian: number;
  savedUnknown: number;
  maxServers: number;
  tunneled: number;
  midstream: number;
  /** Busiest first; by address, or by group (--client-groups). */
  clients?: ClientSummary[];
  clientsGrouped?: boolean;
  /** --connections: every connection, in order of opening. */
  connections?: ConnectionSummary[];
}

const REASON_HELP: Record<CloseReason | 'open', string> = {
  idle_timeout: 'server closed an idle keep-alive connection',
  max_requests: 'server reached its max requests per connection',
  server_close: 'server ended persistence (Connection: close)',
  client_close: 'client asked to close, or closed right after a response',
  client_idle: 'client closed an idle connection (pool timeout)',
  not_persistent: 'HTTP/1.0 without keep-alive',
  race: 'request crossed the server closing the connection',
  aborted: 'closed with a request in flight',
  reset: 'RST on an idle connection',
  unused: 'no request at all (preconnect, health check)',
  max_age: 'server ended the connection at its age limit',
  open: 'still open when the capture ended',
};

export function renderText(r: TextReportInput): string {
  const out: string[] = [];
  const s = r.stats;
  const span = s.firstPacketTime !== null && s.lastPacketTime !== null ? s.lastPacketTime - s.firstPacketTime : 0;
  out.push(`${r.file}: ${r.capture.format ?? 'unknown format'}${r.capture.compressed ? ' (gzip)' : ''}, ${num(s.packets)} packets, ${fmtSeconds(span)} of traffic` +
    (s.firstPacketTime !== null ? ` from ${iso(s.firstPacketTime)}` : ''));
  out.push('');
  const t = r.totals;
  out.push('Totals');
  out.push(row('  connections', num(t.connections)));
  const tls = t.tls;
  const estimated = tls && tls.requestsEstimated > 0 ? `  (${num(tls.requestsEstimated)} estimated from TLS record turns: --tls-keylog FILE makes them exact)` : '';
  out.push(row('  requests', `${num(t.requests)}${estimated}`));
  out.push(row('  reused requests', `${num(t.reusedRequests)}  (reuse ratio ${percent(t.requests > 0 ? t.reusedRequests / t.requests : 0)})`));
  out.push(row('  handshakes saved', num(t.handshakesSaved)));
  const notes: string[] = [];
  if (r.savedFromMedian) notes.push(`${num(r.savedFromMedian)} requests used their server's median RTT`);
  if (r.savedUnknown) notes.push(`${num(r.savedUnknown)} requests not counted: no handshake of their server was captured`);
  out.push(row('  time saved (est.)', `${fmtSeconds(t.handshakeTimeSavedSeconds)}${notes.length ? `  (${notes.join('; ')})` : ''}`));
  const nonHttp = s.nonHttp.tls + s.nonHttp.http2 + s.nonHttp.other;
  if (nonHttp > 0) out.push(row('  not HTTP/1 flows', `${num(nonHttp)}  (tls ${num(s.nonHttp.tls)}, http2 ${num(s.nonHttp.http2)}, other ${num(s.nonHttp.other)})`));
  // Shown when there is a choice to see: more than one protocol, or any HTTP/2.
  const protocols = Object.entries(t.protocols);
  const showProtocols = protocols.length > 1 || (t.protocols.h2c ?? 0) > 0 || tls !== null;
  if (showProtocols) out.push(row('  protocols', `${protocols.map(([p, n]) => `${p} ${num(n)}`).join(', ')}  (connections, by what they spoke at the close: Upgrade: h2c counts as h2c, tls is TLS not decrypted)`));
  if (tls) {
    const hs = tls.fullHandshakes + tls.resumedHandshakes;
    const times = [tls.medianFullHandshakeSeconds !== null ? `full ${fmtSeconds(tls.medianFullHandshakeSeconds)}` : '', tls.medianResumedHandshakeSeconds !== null ? `resumed ${fmtSeconds(tls.medianResumedHandshakeSeconds)}` : ''].filter(Boolean).join(', ');
    out.push(row('  TLS', `${num(tls.connections)} connections, ${num(tls.decrypted)} decrypted; handshakes ${num(tls.fullHandshakes)} full, ${num(tls.resumedHandshakes)} resumed` +
      (hs > 0 ? ` (resumption ${percent(tls.resumedHandshakes / hs)})` : '') + (times ? `; median ${times}` : '') + (tls.helloRetryRequests > 0 ? `; ${num(tls.helloRetryRequests)} HelloRetryRequest` : '')));
    if (tls.requestsUnknown > 0) out.push(row('  requests unknown', `${num(tls.requestsUnknown)} TLS connections speak HTTP/2 (their streams cannot be counted without keys: --tls-keylog FILE)`));
  }
  if (r.tunneled > 0) out.push(row('  tunneled', `${num(r.tunneled)}  (101 Switching Protocols or CONNECT: not parsed further)`));
  if (r.midstream > 0) out.push(row('  already open', `${num(r.midstream)}  (opened before the capture: roles inferred from HTTP, first request not counted as reused)`));
  out.push('');
  out.push('Close reasons');
  const reasons = ([...CLOSE_REASONS, 'open'] as const).filter((k) => t.closeReasons[k]);
  if (reasons.length === 0) out.push('  (no connections)');
  for (const k of reasons) {
    const n = t.closeReasons[k];
    const share = t.connections ? n / t.connections : 0;
    out.push(`  ${k.padEnd(15)}${num(n).padStart(9)}  ${percent(share).padStart(6)}  ${bar(share)}  ${REASON_HELP[k]}`);
  }
  out.push('');
  out.push('Requests per connection');
  const closedTotal = r.distribution.reduce((a, b) => a + b, 0);
  REQUESTS_PER_CONNECTION_BUCKETS.forEach(([label], i) => {
    const n = r.distribution[i];
    if (n === 0) return;
    const share = closedTotal ? n / closedTotal : 0;
    // The bucket names of --json ("1000+"), with the report's thousands separators.
    const shown = label.replace(/\d{4,}/g, (d) => num(Number(d)));
    out.push(`  ${shown.padEnd(15)}${num(n).padStart(9)}  ${percent(share).padStart(6)}  ${bar(share)}`);
  });
  out.push('');
  const top = r.servers.slice(0, r.maxServers);
  out.push(`Busiest servers${r.servers.length > top.length ? ` (top ${num(top.length)} of ${num(r.servers.length)})` : ''}`);
  if (top.length === 0) out.push('  (no HTTP server seen)');
  else {
  // The advertised timeout and the observed idle close side by side: where they differ by more
  // than the tolerance the observed one is marked, and a warning below says which way.
  // The servers' protocols as a column only with HTTP/2 about: an HTTP/1.0 and 1.1 mix is the Totals line's.
  const protocolColumn = (t.protocols.h2c ?? 0) > 0;
  const header = ['server', ...(protocolColumn ? ['protocols'] : []), 'conns', 'reqs', 'reuse', 'ka timeout', 'seen timeout', 'ka max', 'inferred max', 'client idle', 'top close reason'];
  let marked = false;
  const rows = top.map((v) => {
    const topReason = Object.entries(v.closeReasons).sort((a, b) => b[1] - a[1])[0];
    const mark = differs(v);
    if (mark) marked = true;
    return [
      serverDisplay(v),
      ...(protocolColumn ? [Object.keys(v.protocols).join(' ') || '-'] : []),
      num(v.connections),
      num(v.requests),
      v.requests > 0 ? percent(v.reusedRequests / v.requests) : '-',
      v.advertisedTimeoutSeconds === null ? '-' : duration(v.advertisedTimeoutSeconds),
      v.observedIdleTimeoutSeconds === null ? '-' : `${fmtSeconds(v.observedIdleTimeoutSeconds)}${mark ? ' !' : ''}`,
      v.advertisedMaxRequests === null ? '-' : num(v.advertisedMaxRequests),
      v.inferredMaxRequests === null ? '-' : num(v.inferredMaxRequests),
      v.observedClientIdleSeconds === null ? '-' : fmtSeconds(v.observedClientIdleSeconds),
      topReason ? `${topReason[0]} (${num(topReason[1])})` : '-',
    ];
  });
  out.push(...table(header, rows).map((l) => `  ${l}`));
  out.push('  ka = advertised in Keep-Alive headers; inferred max = requests served before the server ended');
  out.push('  persistence, connection after connection; seen timeout = median idle before the server\'s');
  out.push('  idle closes; client idle = median idle before clients closed idle connections themselves');
  if (marked) out.push(`  ! = the server's idle close differs from its ka timeout by more than ${duration(IDLE_CLOSE_TOLERANCE_SECONDS)} (see Warnings)`);
  }
  out.push('');
  const whatIfs = top.filter((v) => v.whatIf.timeout || v.whatIf.maxRequests || v.whatIf.races);
  if (whatIfs.length > 0) {
    out.push('What would change if');
    for (const v of whatIfs) {
      out.push(`  ${serverDisplay(v)}`);
      const w = v.whatIf;
      if (w.timeout) {
        const t = w.timeout;
        const now = t.currentSeconds !== null ? ` (${duration(t.currentSeconds)} today)` : '';
        const opts = shownTimeoutOptions(t).map((o) => `${duration(o.timeoutSeconds)}: ${num(o.savedConnections)} (${percent(o.savedShare)})`).join(', ');
        out.push(`    keep-alive timeout${now}: clients came back ${num(t.reconnectsAfterIdleClose)} time(s) after an idle close.${opts ? ` A longer timeout would have saved, of ${num(t.newConnections)} new connections: ${opts}` : ''}`);
      }
      if (w.maxRequests) {
        const m = w.maxRequests;
        out.push(`    max requests${m.limit !== null ? ` (${num(m.limit)})` : ''}: ${num(m.closes)} connection(s) ended at the limit, ${num(m.reconnectsAtOnce)} of their clients reconnected within ${duration(RECONNECT_AT_ONCE_SECONDS)}` +
          (m.reconnectsAtOnce > 0 ? `; ${m.tenTimesLimit !== null ? num(m.tenTimesLimit) : 'ten times the limit'} would have saved about ${num(m.savedConnections)} of those handshakes` : ''));
      }
      if (w.races) {
        const below = w.races.clientIdleTimeoutBelowSeconds;
        out.push(`    races: ${num(w.races.requests)} request(s) crossed an idle close${below !== null ? `; a client pool idle timeout below ${duration(below)} avoids them` : ''}`);
      }
    }
    out.push('');
  }
  const clients = r.clients ?? [];
  if (clients.length > 0) {
    const shown = clients.slice(0, r.maxServers);
    out.push(`Busiest ${r.clientsGrouped ? 'client groups' : 'clients'}${clients.length > shown.length ? ` (top ${shown.length} of ${num(clients.length)})` : ''}`);
    const rows = shown.map((c) => [
      c.client,
      num(c.connections),
      num(c.requests),
      c.requests > 0 ? percent(c.reusedRequests / c.requests) : '-',
      c.topCloseReason ? `${c.topCloseReason} (${num(c.topCloseReasonConnections)})` : '-',
      c.medianIdleBeforeOwnCloseSeconds === null ? '-' : fmtSeconds(c.medianIdleBeforeOwnCloseSeconds),
    ]);
    out.push(...table([r.clientsGrouped ? 'group' : 'client', 'conns', 'reqs', 'reuse', 'top close reason', 'idle before own close'], rows).map((l) => `  ${l}`));
    out.push('  idle before own close = median idle before the closes the client made itself');
    out.push('  (client_close, client_idle): with client_idle, its pool\'s idle timeout');
    out.push('');
  }
  if (r.connections) {
    out.push(`Connections (${num(r.connections.length)}, in order of opening)`);
    if (r.connections.length === 0) out.push('  (none)');
    else out.push(...connectionTable(r.connections).map((l) => `  ${l}`));
    out.push('');
  }
  if (r.warnings.length > 0) {
    out.push('Warnings');
    for (const w of r.warnings) out.push(`  ! ${w.message}`);
    out.push('');
  }
  const anomalies = Object.entries(s.anomalies).filter(([k]) => k !== 'not_tcp');
  if (anomalies.length > 0 || r.capture.problem) {
    out.push('Capture and parsing notes');
    if (r.capture.problem) out.push(`  ${r.capture.problem.message}`);
    for (const [k, n] of anomalies) out.push(`  ${k.padEnd(26)}${num(n).padStart(9)}`);
    out.push('');
  }
  return out.join('\n');
}

/** The observed idle close differs from the advertised timeout beyond the tolerance (either way). */
function differs(v: ServerSummary): boolean {
  return v.idleCloseVsAdvertisedSeconds !== null && Math.abs(v.idleCloseVsAdvertisedSeconds) > IDLE_CLOSE_TOLERANCE_SECONDS;
}

function row(label: string, value: string): string {
  return `${label.padEnd(24)}${value}`;
}

function bar(share: number): string {
  const w = Math.round(share * 20);
  return '#'.repeat(w).padEnd(20, '.');
}

/** The one duration format of the report (format.ts). */
export const fmtSeconds = duration;

function iso(ts: number): string {
  const d = new Date(ts * 1000);
  return Number.isNaN(d.getTime()) ? String(ts) : `${d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}`;
}

/** Columns padded to their widest cell: numbers right-aligned, the `left` columns (default: the first and the last) left-aligned. */
function table(header: string[], rows: string[][], left: ReadonlySet<number> = new Set([0, header.length - 1])): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (left.has(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [fmt(header), ...rows.map(fmt)];
}

/** One row per connection: what --connections adds to the text report. */
export function connectionTable(conns: ConnectionSummary[]): string[] {
  const t0 = conns.length > 0 ? conns[0].openedAt : 0;
  const rows = conns.map((c) => [
    c.client,
    c.server,
    c.protocol,
    `+${duration(c.openedAt - t0)}`,
    c.closedAt === null ? '-' : duration(c.closedAt - c.openedAt),
    `${num(c.requests)}${c.requestsEstimated !== null ? '~' : ''}`,
    num(c.reusedRequests),
    c.handshakeRttSeconds === null ? '-' : duration(c.handshakeRttSeconds),
    c.idleBeforeCloseSeconds === null ? '-' : duration(c.idleBeforeCloseSeconds),
    c.closedBy ?? '-',
    c.closeReason,
  ]);
  const lines = table(['client', 'server', 'protocol', 'opened', 'lasted', 'reqs', 'reused', 'rtt', 'idle at close', 'closed by', 'close reason'], rows, new Set([0, 1, 2, 9, 10]));
  if (conns.some((c) => c.requestsEstimated !== null)) lines.push('~ = estimated from TLS record turns (--tls-keylog FILE makes it exact)');
  return lines;
}
