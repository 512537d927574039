/** `keepalive-exporter analyze FILE`: a one-shot report on a capture file. */
import { parseArgs } from 'node:util';
import { statSync, writeFileSync } from 'node:fs';
import { Engine } from '../conn/engine.js';
import { readCapture, readNothing, CaptureOpenError, type CaptureSummary } from '../capture/file.js';
import { AnalyzeReport, findWarnings, summarizeConnection } from '../report/summary.js';
import type { ConnectionRecord, EngineConsumer } from '../conn/records.js';
import { HtmlCollector, renderHtml } from '../report/html.js';
import { renderText } from '../report/text.js';
import { DEFAULT_LIMITS } from '../config/limits.js';
import { capsForMemory, memoryLimit } from '../config/memory.js';
import { permissionWarning, readKeylogFile } from '../tls/keylog-file.js';
import type { KeylogStats } from '../tls/keylog.js';
import { NameMap, NamesError } from '../config/names.js';
import { UsageError, VERSION, helpEntry, parsePorts, parsePositiveInt, unknownFlag, wrap } from './common.js';

const ANALYZE_OPTIONS: Array<[string, string]> = [
  ['--json', 'print one JSON object (the stable interface described in the README); the same as --format json'],
  ['--format FORMAT', 'text (the default: the report for a person), json (--json), or ndjson: one JSON object per connection, written as each closes (the fields of --json --connections), nothing else'],
  ['--html FILE', 'also write the report as one self-contained web page (no network needed to open it): totals, close reasons over capture time, requests per connection, what would change if, the server and client tables, a timeline of the busiest connections'],
  ['--connections', 'include every connection (client, server, times, requests, close reason, who closed, handshake RTT, idle before close): a table in the text report, connections[] with --json'],
  ['--server ADDR', 'only connections to these servers: ip, ip:port or CIDR (10.3.0.0/16, [::1]:8080), comma-separated or repeated; the report, the tables and the connections cover only them'],
  ['--client ADDR', 'only connections from these clients: ip, ip:port or CIDR, comma-separated or repeated; with --server, connections matching both'],
  ['--ports LIST', 'only analyse these server ports, comma-separated (default: any port where HTTP/1.x is seen; HTTP is recognised by content, not by port)'],
  ['--tls-keylog FILE', 'decrypt TLS connections whose secrets are in this NSS key log (what SSLKEYLOGFILE makes curl, Firefox, Chrome and Python write, and Node.js --tls-keylog): their requests and close reasons are then exact, not estimated from record turns; TLS 1.2 ECDHE and TLS 1.3 with AES-GCM or ChaCha20-Poly1305. The file holds secrets: keep it private (a warning says when others can read it)'],
  ['--names FILE', 'name servers and clients: one JSON or YAML object whose keys are "ip:port", "ip" or a CIDR and whose values are names, e.g. {"10.3.7.12:8080": "orders", "10.9.0.0/16": "batch"}; the most specific match wins (ip:port, ip, the longest prefix). Servers are shown by name; clients with --client-groups'],
  ['--client-groups', 'with --names: the client table by the names of the clients\' addresses (unmatched: other) instead of by address'],
  ['--top N', 'servers and clients shown in the text report (default 10; --json lists all)'],
  ['--max-flows N', `TCP flows tracked at once; the least recently active is evicted beyond it (default ${DEFAULT_LIMITS.maxFlows}, or fewer where the memory limit, the cgroup's or V8's heap limit, would not hold them)`],
  ['--no-progress', 'no progress line on stderr (it is shown only on a terminal)'],
  ['-h, --help', 'this help'],
];

export const ANALYZE_HELP = `Options for analyze:
${ANALYZE_OPTIONS.map(([left, text]) => helpEntry(left, text)).join('\n')}

${wrap('Exit status: 0 when the whole capture was read; 1 when it was damaged (results cover what could be read and a message names the byte offset); 2 for a usage error, an unreadable file or one that is not a capture (unknown magic number, shorter than its file header).', 0).join('\n')}

${wrap('Ctrl-C (SIGINT) stops the read and prints the report on what was read, exit status 0, as tshark does: for tcpdump ... | keepalive-exporter analyze -. A second Ctrl-C exits at once (130).', 0).join('\n')}
`;
export async function runAnalyze(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        json: { type: 'boolean', default: false },
        format: { type: 'string' },
        html: { type: 'string' },
        server: { type: 'string', multiple: true },
        client: { type: 'string', multiple: true },
        connections: { type: 'boolean', default: false },
        ports: { type: 'string' },
        'tls-keylog': { type: 'string' },
        names: { type: 'string' },
        'client-groups': { type: 'boolean', default: false },
        top: { type: 'string', default: '10' },
        'max-flows': { type: 'string' },
        'no-progress': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    // node's parseArgs says "Unknown option '--bogus'. To specify a positional argument...": the one wording instead.
    const unknown = (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'([^']+)'/.exec((err as Error).message)?.[1] : undefined;
    if (unknown) throw new UsageError(unknownFlag(unknown, 'keepalive-exporter analyze --help'));
    throw new UsageError(`analyze: ${(err as Error).message.replace(/\. To specify.*$/s, '')} (see keepalive-exporter analyze --help)`);
  }
  const o = parsed.values;
  if (o.help) {
    process.stdout.write(`Usage: keepalive-exporter analyze FILE [options]\n\n${ANALYZE_HELP}`);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    throw new UsageError(parsed.positionals.length === 0
      ? 'analyze needs a capture file: keepalive-exporter analyze FILE (or - for stdin)'
      : `analyze takes one capture file, got ${parsed.positionals.length}: ${parsed.positionals.join(' ')}`);
  }
  const format = o.format ?? (o.json ? 'json' : 'text');
  if (format !== 'text' && format !== 'json' && format !== 'ndjson') throw new UsageError(`--format: "${format}" must be text, json or ndjson`);
  if (o.json && format !== 'json') throw new UsageError(`--json is --format json: give one of them (got --format ${format})`);
  const serverFilter = addressFilter(o.server, '--server');
  const clientFilter = addressFilter(o.client, '--client');
  const file = parsed.positionals[0];
  const ports = o.ports !== undefined ? parsePorts(o.ports, '--ports') : null;
  const top = parsePositiveInt(o.top!, '--top');
  const maxFlows = o['max-flows'] !== undefined ? parsePositiveInt(o['max-flows'], '--max-flows') : undefined;

  if (o['client-groups'] && o.names === undefined) throw new UsageError('--client-groups groups clients by the names file: add --names FILE');
  let names: NameMap | null = null;
  if (o.names !== undefined) {
    try {
      names = NameMap.load(o.names);
    } catch (err) {
      if (err instanceof NamesError) throw new UsageError(`--names: ${err.message}`);
      throw err;
    }
  }

  let keylog: { source: import('../session/session.js').SecretSource; stats: KeylogStats; store: { clear(): void } } | null = null;
  if (o['tls-keylog'] !== undefined) {
    const path = o['tls-keylog'];
    try {
      keylog = readKeylogFile(path);
    } catch (err) {
      throw new UsageError(`--tls-keylog: ${(err as Error).message}`);
    }
    const warning = permissionWarning(path);
    if (warning) process.stderr.write(`keepalive-exporter: warning: ${warning}\n`);
    if (keylog.stats.accepted === 0) process.stderr.write(`keepalive-exporter: warning: ${path} has no key log line (expected lines like "CLIENT_RANDOM <64 hex> <96 hex>" or "CLIENT_TRAFFIC_SECRET_0 ..."): TLS connections are estimated from record turns\n`);
  }

  // The tables at their caps must fit the memory the process may use (a flood fills them).
  const caps = capsForMemory(memoryLimit().bytes, 1);
  const engine = new Engine({ ports, limits: { ...caps, ...(maxFlows ? { maxFlows } : {}) }, tlsKeys: keylog?.source ?? null });
  const report = new AnalyzeReport(o.connections! && format !== 'ndjson', { names, clientGroups: o['client-groups'] });
  // --server/--client: the report sees only the matching connections (the engine still learns
  // each server's limits and timeouts from all of them).
  const keep = serverFilter || clientFilter
    ? (c: ConnectionRecord): boolean => (!serverFilter || serverFilter.server(c.server) !== null) && (!clientFilter || clientFilter.server(c.client) !== null)
    : null;
  engine.subscribe(keep ? filtered(report, keep) : report);
  const html = o.html !== undefined ? new HtmlCollector() : null;
  if (html) engine.subscribe(keep ? filtered(html, keep) : html);
  const ndjson = format === 'ndjson' ? new NdjsonWriter() : null;
  if (ndjson) engine.subscribe(keep ? filtered(ndjson, keep) : ndjson);

  const progress = !o['no-progress'] && process.stderr.isTTY ? new Progress(engine) : null;
  // Ctrl-C ends a read from a pipe that would never end by itself (tcpdump | analyze -): the
  // first stops the read and the report covers what was read; the second exits at once.
  // From a pipe the read goes on for INTERRUPT_GRACE_MS first, or until the input ends: the
  // same Ctrl-C reaches tcpdump, which writes its buffered packets (-w - buffers) as it exits;
  // stopping at once lost them (measured: 33 of ~57 packets of 9 requests on lo, 7 requests).
  const interrupt = new AbortController();
  let sigints = 0;
  let grace: NodeJS.Timeout | null = null;
  const onSigint = (): void => {
    if (sigints++ > 0) process.exit(130);
    if (isRegularFile(file)) interrupt.abort();
    else grace = setTimeout(() => interrupt.abort(), INTERRUPT_GRACE_MS);
  };
  process.on('SIGINT', onSigint);
  let capture: CaptureSummary;
  try {
    capture = await readCapture(file, engine, { signal: interrupt.signal, onProgress: progress ? (r, t) => progress.update(r, t) : undefined });
  } catch (err) {
    process.off('SIGINT', onSigint);
    if (err instanceof CaptureOpenError) throw new UsageError(err.message);
    throw err;
  } finally {
    if (grace) clearTimeout(grace);
    progress?.done();
  }
  const interrupted = sigints > 0;
  // Not a capture at all (text, an empty file, shorter than its header): one line and exit 2, no report.
  if (readNothing(capture) && !interrupted) {
    process.off('SIGINT', onSigint);
    throw new UsageError(`${file}: ${capture.problem!.message}`);
  }
  engine.finish();
  keylog?.store.clear();
  const stats = engine.stats();
  const totals = report.totals();
  const servers = report.serverSummaries(engine.servers);
  const warnings = findWarnings(servers, totals, stats);
  if (html) {
    const page = renderHtml({
      file, packets: capture.packets, firstPacketTime: stats.firstPacketTime, lastPacketTime: stats.lastPacketTime, totals,
      distribution: report.distribution, servers, clients: report.clients.summaries(), clientsGrouped: report.clients.grouped, warnings, collector: html, version: VERSION,
    });
    try {
      writeFileSync(o.html!, page);
    } catch (err) {
      process.off('SIGINT', onSigint);
      throw new UsageError(`--html: cannot write ${o.html}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  // ndjson wrote the connections as they closed: nothing else goes to stdout (the page, if asked for, is written above).
  if (ndjson) {
    ndjson.flush();
    process.off('SIGINT', onSigint);
    return exitStatus(file, capture, interrupted, 'the connections');
  }

  if (format === 'json') {
    const out: Record<string, unknown> = {
      file,
      capture: {
        format: capture.format,
        compressed: capture.compressed,
        packets: capture.packets,
        firstPacketTime: stats.firstPacketTime,
        lastPacketTime: stats.lastPacketTime,
        // Ctrl-C that cut the read: what was read is reported, but it is not the whole input
        // (problem stays null). A pipe whose writer ended in the grace was read whole.
        complete: capture.problem === null && !interrupt.signal.aborted,
        problem: capture.problem,
      },
      totals,
      requestsPerConnection: distributionObject(report.distribution),
      servers,
      clients: report.clients.summaries(),
      clientsGrouped: report.clients.grouped,
      warnings,
      stats: {
        tcpPackets: stats.tcpPackets,
        flowsCreated: stats.flowsCreated,
        flowsEvicted: stats.flowsEvicted,
        gaps: stats.gaps,
        gapBytes: stats.gapBytes,
        retransmissions: stats.retransmissions,
        nonHttpFlows: stats.nonHttp,
        tunneledConnections: report.tunneled,
        midstreamConnections: report.midstream,
        anomalies: stats.anomalies,
        clientsOverflowConnections: report.clients.overflowConnections,
        names: names ? { file: o.names, entries: names.size } : null,
        tlsKeylog: keylog ? { lines: keylog.stats.lines, accepted: keylog.stats.accepted, comments: keylog.stats.comments, evicted: keylog.stats.evicted, rejected: keylog.stats.rejected } : null,
      },
    };
    if (o.connections) out.connections = report.connectionList();
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    process.stdout.write(renderText({
      file, capture, stats, totals, distribution: report.distribution, servers, warnings,
      clients: report.clients.summaries(), clientsGrouped: report.clients.grouped,
      connections: o.connections ? report.connectionList() : undefined,
      savedFromMedian: report.savedFromMedian, savedUnknown: report.savedUnknown, maxServers: top, tunneled: report.tunneled, midstream: report.midstream,
    }));
  }
  process.off('SIGINT', onSigint);
  return exitStatus(file, capture, interrupted, 'the report');
}

/**
 * 1 for a damaged capture (what was read is reported), else 0: also on Ctrl-C, as tshark and
 * tcpdump do (stopping a pipe is the normal end of this use, and what was printed is complete
 * for what was read). One line on stderr says which.
 */
function exitStatus(file: string, capture: CaptureSummary, interrupted: boolean, what: string): number {
  if (capture.problem) {
    process.stderr.write(`keepalive-exporter: ${file}: ${capture.problem.message}; results cover the packets before it\n`);
    return 1;
  }
  if (interrupted) process.stderr.write(`keepalive-exporter: interrupted: ${what} cover${what === 'the report' ? 's' : ''} the ${capture.packets} packets read\n`);
  return 0;
}

/** --server/--client: ip, ip:port or CIDR entries, the names file's key syntax (config/names.ts); null when not given. */
function addressFilter(values: string[] | undefined, flag: string): NameMap | null {
  if (!values || values.length === 0) return null;
  const keys = values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  if (keys.length === 0) throw new UsageError(`${flag} needs an address: ip, ip:port or CIDR (e.g. 10.3.0.0/16 or 127.0.0.1:8080)`);
  try {
    return NameMap.parse(JSON.stringify(Object.fromEntries(keys.map((k) => [k, 'match']))), flag);
  } catch (err) {
    if (err instanceof NamesError) throw new UsageError(err.message);
    throw err;
  }
}

/** The consumer's events for the connections `keep` accepts (decided per event: the record's endpoints do not change). */
function filtered(consumer: EngineConsumer, keep: (c: ConnectionRecord) => boolean): EngineConsumer {
  return {
    opened: (c) => { if (keep(c)) consumer.opened?.(c); },
    request: (c, r) => { if (keep(c)) consumer.request?.(c, r); },
    response: (c, r) => { if (keep(c)) consumer.response?.(c, r); },
    closed: (c) => { if (keep(c)) consumer.closed?.(c); },
  };
}

/**
 * --format ndjson: one line per connection as it closes (in order of closing), written in
 * batches of about 64 KiB (stdout to a pipe or file is synchronous on Linux: a slow reader
 * slows the read, memory stays flat).
 */
class NdjsonWriter implements EngineConsumer {
  private lines: string[] = [];
  private bytes = 0;
  closed(c: ConnectionRecord): void {
    const line = JSON.stringify(summarizeConnection(c));
    this.lines.push(line);
    this.bytes += line.length + 1;
    if (this.bytes >= 65536) this.flush();
  }
  flush(): void {
    if (this.lines.length === 0) return;
    process.stdout.write(`${this.lines.join('\n')}\n`);
    this.lines = [];
    this.bytes = 0;
  }
}

/** See onSigint in runAnalyze. */
const INTERRUPT_GRACE_MS = 1000;

function isRegularFile(path: string): boolean {
  try {
    return path !== '-' && statSync(path).isFile();
  } catch {
    return false;
  }
}

function distributionObject(d: number[]): Record<string, number> {
  const labels = ['0', '1', '2', '3-4', '5-9', '10-99', '100-999', '1000+'];
  return Object.fromEntries(labels.map((l, i) => [l, d[i]]));
}

/** A one-line progress indicator on stderr, redrawn at most 5 times a second. */
class Progress {
  private last = 0;
  private readonly start = Date.now();
  private shown = false;
  constructor(private readonly engine: Engine) {}
  update(read: number, total: number): void {
    const now = Date.now();
    if (now - this.last < 200 || now - this.start < 500) return;
    this.last = now;
    this.shown = true;
    const s = this.engine.stats();
    const pct = total > 0 ? `${((read / total) * 100).toFixed(0).padStart(3)}% ` : '';
    const mb = (read / 1048576).toFixed(0);
    const rate = s.packets / ((now - this.start) / 1000) / 1e6;
    process.stderr.write(`\r\x1b[K${pct}${mb} MiB read, ${s.packets.toLocaleString('en-US')} packets (${rate.toFixed(2)} Mpps), ${s.connectionsOpened.toLocaleString('en-US')} connections`);
  }
  done(): void {
    if (this.shown) process.stderr.write('\r\x1b[K');
  }
}
