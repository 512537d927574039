/**
 * The daemon: sources (live tcpdump capture, capture files) feed one engine each; every engine
 * feeds the one exporter; fastify serves it. SIGTERM/SIGINT stop the sources (tcpdump flushes
 * what it has, file reads are destroyed), close the server and exit 0; a second signal exits at
 * once (status 1), and whatever has not stopped after 5 s is logged and left behind.
 */
import { Engine } from '../conn/engine.js';
import { LiveCapture, CaptureStartError } from '../capture/live.js';
import { replayFile } from '../capture/replay.js';
import { CaptureOpenError, checkCapture, readNothing } from '../capture/file.js';
import { fstatSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Exporter, type SourceStatus } from '../metrics/exporter.js';
import { buildApp, LISTEN_BACKLOG } from '../server/app.js';
import { loadWebConfig, WebConfigError, type WebConfig } from '../server/web-config.js';
import { ProxyRelay } from '../proxy/relay.js';
import { loadConfig, ConfigError, daemonHelp, type DaemonConfig } from '../config/daemon.js';
import { UsageError, VERSION, boundUrl, hostPort } from './common.js';
import { capsForMemory, memoryLimit } from '../config/memory.js';
import { DEFAULT_LIMITS } from '../config/limits.js';
import { KeylogFollower, permissionWarning } from '../tls/keylog-file.js';
import { DEFAULT_MAX_KEYLOG_ENTRIES } from '../tls/keylog.js';
import { Counter, Gauge } from 'prom-client';
import { dirname } from 'node:path';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { NameMap, NamesError } from '../config/names.js';

export const DAEMON_HELP = `Options of the daemon (flags, or environment variables, or a --config JSON file):
${daemonHelp()}`;

/** Live sources advance their engine's clock with the wall clock, so quiet flows still expire. */
const TICK_MS = 1000;
/** SIGTERM ends the daemon within this, whatever its sources are doing. */
const STOP_GRACE_MS = 5000;
/** Scrapes in flight when the stop begins get this long before their connections are closed. */
const SCRAPE_GRACE_MS = 1000;

export async function runDaemon(argv: string[]): Promise<number> {
  let cfg: DaemonConfig;
  try {
    cfg = loadConfig(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  // Before anything listens: a mistake in the web config (or its certificate files) is one line and exit 2.
  let webConfig: WebConfig | null = null;
  if (cfg.webConfigFile !== null) {
    try {
      webConfig = loadWebConfig(cfg.webConfigFile);
    } catch (err) {
      if (err instanceof WebConfigError) throw new UsageError(err.message);
      throw err;
    }
  }
  // Before anything listens: a key log path that can never work (a directory, no such directory,
  // unreadable) is one line and exit 2; a file not there yet is waited for (see checkKeylog).
  const keylogWait = cfg.tlsKeylog !== null ? checkKeylog(cfg.tlsKeylog) : false;
  // The names file: a bad one at start is one line and exit 2; on SIGHUP it is read again, and a
  // bad one then keeps the names in use (logged, keepalive_names_last_reload_successful 0).
  let names: NameMap | null = null;
  const namesStatus = { entries: 0, lastReloadOk: true, reloads: { success: 0, failure: 0 } };
  if (cfg.names !== null) {
    try {
      names = NameMap.load(cfg.names);
    } catch (err) {
      if (err instanceof NamesError) throw new UsageError(`--names: ${err.message}`);
      throw err;
    }
    namesStatus.entries = names.size;
  }
  const sources: SourceStatus[] = [];
  const exporter = new Exporter({
    maxServers: cfg.maxServers, sources: () => sources, disableDefaultMetrics: cfg.webDisableExporterMetrics,
    names: () => names, clientGroups: cfg.clientGroups, namesStatus: cfg.names !== null ? () => namesStatus : undefined,
  });
  const app = buildApp({
    exporter,
    sources: () => sources,
    version: VERSION,
    // JSON lines on stderr, as --help says: stdout stays free for a pipe.
    logger: { level: cfg.logLevel, stream: process.stderr },
    webMaxRequests: cfg.webMaxRequests, telemetryPath: cfg.webTelemetryPath,
    webConfig,
  });
  const log = app.log;
  // Every source's tables at their caps must fit the memory the process may use (a flood fills
  // them): the caps are derived from it unless --max-flows is given.
  const memory = memoryLimit();
  const caps = capsForMemory(memory.bytes, (cfg.interface !== null ? 1 : 0) + cfg.proxy.length + cfg.pcap.length);
  if (cfg.maxFlows === null && caps.maxFlows < DEFAULT_LIMITS.maxFlows) {
    log.info(`tracking at most ${caps.maxFlows} flows per source (--max-flows auto): ${memory.from} is ${Math.round(memory.bytes / 2 ** 20)} MiB`);
  }
  const limits = { maxFlows: cfg.maxFlows ?? caps.maxFlows, maxBufferedBytes: caps.maxBufferedBytes };
  // One follower for every source: a client's key log lines are the same whichever source sees
  // its connection. Started before the sources so a replayed file finds the lines already there.
  const keylog = cfg.tlsKeylog !== null ? startKeylog(cfg.tlsKeylog, keylogWait, exporter, log) : null;
  const newEngine = (ports: number[] | null, source: string): Engine => {
    const e = new Engine({ ports, limits, tlsKeys: keylog?.source ?? null });
    e.subscribe(exporter.forSource(source));
    return e;
  };

  // Every --pcap is checked before the daemon says it listens: a wrong file is a start that
  // fails in one line (exit 2), not a daemon that listened and then exits (see checkFiles).
  const badFile = await checkFiles(cfg.pcap);
  if (badFile) {
    keylog?.stop();
    await app.close();
    throw new UsageError(badFile);
  }

  let address: string;
  try {
    // fastify logs one line per reachable address (127.0.0.1 first for 0.0.0.0): "reachable at"; the "listening" line below names what was bound.
    address = await app.listen({ host: cfg.listenHost, port: cfg.listenPort, backlog: LISTEN_BACKLOG, listenTextResolver: (a) => `reachable at ${a}` });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EADDRINUSE' ? 'the address is in use (another exporter?): choose another with --web.listen-address'
      : e.code === 'EACCES' ? 'permission denied (ports below 1024 need root): choose another with --web.listen-address'
      : e.message;
    throw new UsageError(`cannot listen on ${hostPort(cfg.listenHost, cfg.listenPort)}: ${why}`);
  }

  let live: LiveCapture | null = null;
  let ticker: NodeJS.Timeout | null = null;
  if (cfg.interface !== null) {
    const engine = newEngine(cfg.ports, `live:${cfg.interface}`);
    const status: SourceStatus = { name: `live:${cfg.interface}`, kind: 'live', up: false, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine };
    live = new LiveCapture(
      { interface: cfg.interface, ports: cfg.ports, tcpdump: cfg.tcpdump, bufferKiB: cfg.captureBufferKiB },
      engine,
      { info: (m) => log.info(m), warn: (m) => log.warn(m) },
    );
    const capture = live;
    Object.defineProperties(status, {
      up: { get: () => capture.up, enumerable: true },
      restarts: { get: () => capture.restarts, enumerable: true },
      stalls: { get: () => capture.stalls, enumerable: true },
      kernelDrops: { get: () => capture.kernelDrops, enumerable: true },
      interfaceDrops: { get: () => capture.interfaceDrops, enumerable: true },
    });
    sources.push(status);
    try {
      await capture.start();
    } catch (err) {
      await app.close();
      if (err instanceof CaptureStartError) throw new UsageError(err.message);
      throw err;
    }
    ticker = setInterval(() => engine.tick(Date.now() / 1000), TICK_MS);
    ticker.unref();
  }

  // Proxy taps: one engine each, fed as byte streams; the source label tells them apart.
  const relays: ProxyRelay[] = [];
  for (const route of cfg.proxy) {
    const engine = newEngine(null, route.name);
    const relay = new ProxyRelay(route, engine, {
      idleTimeoutMs: cfg.proxyIdleTimeoutSeconds * 1000,
      connectTimeoutMs: 10_000,
      proxyProtocol: cfg.proxyProtocol,
      maxConnections: cfg.proxyMaxConnections,
    }, { warn: (m) => log.warn(m) });
    const status: SourceStatus = { name: relay.name, kind: 'proxy', up: false, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine };
    Object.defineProperties(status, {
      up: { get: () => relay.up, enumerable: true },
      proxy: { get: () => relay, enumerable: true },
    });
    sources.push(status);
    try {
      await relay.start();
    } catch (err) {
      for (const r of relays) await r.stop();
      await live?.stop();
      await app.close();
      const e = err as NodeJS.ErrnoException;
      throw new UsageError(`cannot listen for --proxy on ${route.listenHost}:${route.listenPort}: ${e.code === 'EADDRINUSE' ? 'the address is in use' : e.message}`);
    }
    relays.push(relay);
    log.info(`proxy tap: ${route.listenHost}:${route.listenPort} -> ${route.upstreamHost}:${route.upstreamPort}`);
    const t = setInterval(() => engine.tick(Date.now() / 1000), TICK_MS);
    t.unref();
  }

  // Stops file replays on SIGTERM: a realtime replay must not keep the process up until it ends.
  const stopReplays = new AbortController();
  const files = cfg.pcap.map(async (path) => {
    // Like analyze: HTTP is found by content on any port, unless --ports narrows it.
    const engine = newEngine(cfg.portsExplicit ? cfg.ports : null, `file:${path}`);
    const status: SourceStatus = { name: `file:${path}`, kind: 'file', up: true, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine };
    sources.push(status);
    try {
      const summary = await replayFile(path, engine, cfg.replay, { signal: stopReplays.signal });
      // Not a capture at all (text, an empty file, shorter than its header): an unreadable input,
      // like a missing file and like analyze. Only stdin and FIFOs get here: files were peeked.
      if (readNothing(summary)) throw new UsageError(`${path}: ${summary.problem!.message}`);
      engine.finish();
      if (summary.problem) log.warn(`${path}: ${summary.problem.message}; metrics cover the packets before it`);
      log.info(`${path}: read ${summary.packets} packets; its metrics stay served`);
    } catch (err) {
      if (err instanceof CaptureOpenError) throw new UsageError(err.message);
      throw err;
    } finally {
      status.up = false;
      status.done = true;
    }
  });
  // A file that cannot be opened is a user mistake: one line and exit 2, like analyze.
  const fileFailure = Promise.all(files).then(() => null, (err: unknown) => err);

  // The address bound, not the one asked for: with port 0 the OS picks it.
  log.info(`keepalive-exporter ${VERSION} listening on ${boundUrl(app.server, address.split('://')[0])}${cfg.webTelemetryPath}`);

  // SIGHUP (systemctl reload, kill -HUP): read the names file again. Series already exported
  // keep the label they were counted under; new connections and the per-server gauges take the new names.
  const onHup = (): void => {
    if (cfg.names === null) {
      log.info('SIGHUP: nothing to reload (no --names)');
      return;
    }
    try {
      const next = NameMap.load(cfg.names);
      names = next;
      namesStatus.entries = next.size;
      namesStatus.lastReloadOk = true;
      namesStatus.reloads.success++;
      log.info(`SIGHUP: read ${next.size} names from ${cfg.names}`);
    } catch (err) {
      namesStatus.lastReloadOk = false;
      namesStatus.reloads.failure++;
      log.warn(`SIGHUP: ${(err as Error).message}; keeping the ${namesStatus.entries} names in use`);
    }
  };
  process.on('SIGHUP', onHup);

  let onSignal: (sig: NodeJS.Signals) => void = () => {};
  const stop = await new Promise<unknown>((resolve) => {
    onSignal = (sig) => resolve(sig);
    void fileFailure.then((err) => { if (err) resolve(err); });
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // Stopping: a second SIGTERM or SIGINT exits at once; whatever has not stopped after
  // STOP_GRACE_MS is named and left behind (a hung step: a tcpdump that ignores SIGINT and
  // SIGKILL in uninterruptible sleep, a server that does not close). The timer is unref'd: a stop that completes exits without waiting for it.
  const pending = new Set<string>();
  let stopped = false;
  const notStopped = (): string => [...pending, ...sources.filter((s) => s.kind === 'file' && !s.done).map((s) => s.name)].join(', ') || 'open handles';
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onHup);
  process.off('SIGINT', onSignal);
  const now = (sig: NodeJS.Signals): void => {
    log.warn(`${sig} while stopping: exiting now, without waiting for ${notStopped()}`);
    process.exit(1);
  };
  process.once('SIGTERM', now);
  process.once('SIGINT', now);
  log.info(`stopping on ${stop instanceof Error ? 'an error' : String(stop)}`);
  const lastResort = setTimeout(() => {
    log.warn(`not stopped ${STOP_GRACE_MS / 1000} s after ${stop instanceof Error ? 'the error' : String(stop)}: ${notStopped()}; exiting anyway`);
    // A stop whose steps all completed is still clean (exit 0, or the error's exit status).
    process.exit(stopped ? (process.exitCode ?? 0) : 1);
  }, STOP_GRACE_MS);
  lastResort.unref();
  const step = async (name: string, fn: () => Promise<void>): Promise<void> => {
    pending.add(name);
    await fn();
    pending.delete(name);
  };
  if (ticker) clearInterval(ticker);
  stopReplays.abort();
  if (live) await step(`tcpdump (live:${cfg.interface})`, () => live!.stop());
  for (const r of relays) await step(r.name, () => r.stop());
  await step('the web server', async () => {
    const closing = app.close();
    // A keep-alive connection busy when the close began is not closed as idle later: it stays
    // until the client drops it (fetch/undici: 4 s), measured racing the 5 s bound. Scrapes get
    // a short grace, then every connection is closed.
    const cut = setTimeout(() => app.server.closeAllConnections(), SCRAPE_GRACE_MS);
    await closing;
    clearTimeout(cut);
  });
  // After the sources: no engine asks for a secret any more. stop() zeroes them.
  keylog?.stop();
  stopped = true;
  if (stop instanceof Error) throw stop;
  log.info(`stopped on ${String(stop)}`);
  return 0;
}

/**
 * Before listening: each --pcap can be read and starts like a capture (checkCapture peeks a
 * regular file's first 64 KiB; stdin `-` and FIFOs are only checked to exist and be readable,
 * since a peek would consume what the replay must read: their content is checked as they are
 * read, and a wrong one still ends the daemon with one line and exit 2). The same file under
 * two names (a link, /dev/stdin beside -) is refused by device and inode: it would be counted
 * twice. Returns one line for the user, or null.
 */
async function checkFiles(paths: string[]): Promise<string | null> {
  const seen = new Map<string, string>();
  for (const path of paths) {
    const problem = await checkCapture(path);
    if (problem) return problem;
    let st: { dev: number; ino: number } | null;
    try {
      st = path === '-' ? fstatSync(0) : await stat(path);
    } catch {
      st = null; // stdin closed: nothing to compare
    }
    if (!st) continue;
    const key = `${st.dev}:${st.ino}`;
    const first = seen.get(key);
    if (first !== undefined) return `--pcap: "${path}" is the same file as "${first}": each capture file is read once, give it once`;
    seen.set(key, path);
  }
  return null;
}

/**
 * --tls-keylog at start. A path that cannot become a key log is a mistake said in one line (exit
 * 2): a directory or other non-file, a file the daemon may not read, a directory that does not
 * exist (clients create the file, never its directory). A file that does not exist yet is waited
 * for, as node_exporter's textfile collector waits for its files: clients create it when they
 * first connect (SSLKEYLOGFILE set before curl or the browser starts). Returns true when waiting.
 */
function checkKeylog(path: string): boolean {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new UsageError(`--tls-keylog: cannot read ${path}: ${code ?? (err as Error).message}`);
    const dir = dirname(path);
    let dirOk = false;
    try {
      dirOk = statSync(dir).isDirectory();
    } catch {
      dirOk = false;
    }
    if (!dirOk) throw new UsageError(`--tls-keylog: ${path}: the directory ${dir} does not exist (clients create the key log file, not its directory)`);
    return true;
  }
  if (st.isDirectory()) throw new UsageError(`--tls-keylog: ${path} is a directory; give the file SSLKEYLOGFILE names`);
  if (!st.isFile()) throw new UsageError(`--tls-keylog: ${path} is not a regular file (a FIFO, socket or device); give the file SSLKEYLOGFILE names`);
  try {
    accessSync(path, fsConstants.R_OK);
  } catch (err) {
    throw new UsageError(`--tls-keylog: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (run the daemon as a user that may read it)`);
  }
  return false;
}

/**
 * The follower, its warnings and its metrics (registered on the exporter's registry, read at
 * scrape time; only when --tls-keylog is set). The permission warning is said once: at start, or
 * when a file waited for appears.
 */
function startKeylog(path: string, waiting: boolean, exporter: Exporter, log: { info(m: string): void; warn(m: string): void }): KeylogFollower {
  let warned = false;
  const warnPermissions = (): void => {
    if (warned) return;
    const w = permissionWarning(path);
    if (w !== null) {
      warned = true;
      log.warn(w);
    }
  };
  const follower = new KeylogFollower(path, (m) => log.warn(m), {
    onInfo: (m) => {
      log.info(m);
      warnPermissions();
    },
  });
  if (waiting) log.warn(`the TLS key log ${path} does not exist yet: waiting for a client to create it (TLS connections are estimated from record turns until then)`);
  const registers = [exporter.registry];
  new Gauge({ name: 'keepalive_tls_keylog_entries', help: `TLS connections (client randoms) whose key log secrets are held now (--tls-keylog), waiting for their connection; at most ${DEFAULT_MAX_KEYLOG_ENTRIES}, the oldest evicted beyond.`, registers, collect(this: Gauge) { this.set(follower.stats.entries); } });
  new Gauge({ name: 'keepalive_tls_keylog_up', help: '1 if the last poll of the --tls-keylog file read it, 0 if it does not exist yet or could not be read.', registers, collect(this: Gauge) { this.set(follower.state === 'following' ? 1 : 0); } });
  new Counter({ name: 'keepalive_tls_keylog_lines_total', help: 'Key log lines read from --tls-keylog (comments and blank lines aside): result="accepted" stored, "rejected" skipped (not a key log line, or a wrong length).', labelNames: ['result'], registers, collect(this: Counter<'result'>) {
    const st = follower.stats;
    this.reset();
    this.inc({ result: 'accepted' }, st.accepted);
    this.inc({ result: 'rejected' }, Object.values(st.rejected).reduce((a, b) => a + b, 0));
  } });
  new Counter({ name: 'keepalive_tls_keylog_evicted_total', help: `Key log entries dropped, oldest first, when more connections were logged than the store holds (${DEFAULT_MAX_KEYLOG_ENTRIES}) before their connection used them.`, registers, collect(this: Counter) {
    this.reset();
    this.inc(follower.stats.evicted);
  } });
  follower.start();
  // start() read a file that was there: the "reading" notice warned already when it is open to others.
  warnPermissions();
  return follower;
}
