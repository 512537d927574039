/**
 * The daemon's settings: every option once, with its flag, its environment variable
 * (KEEPALIVE_EXPORTER_ + the flag name upper-cased, '.' and '-' as '_'), its default and its
 * help line. Precedence: flag, then environment, then the --config file, then the default.
 * A bad value is rejected at start with a message naming where it came from.
 */
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { DEFAULT_LIMITS } from './limits.js';
import { helpEntry, unknownFlag } from '../cli/common.js';

/** Ports captured by default: the usual HTTP and HTTPS ports of servers, proxies and app servers. */
export const DEFAULT_PORTS = [80, 443, 8000, 8008, 8080, 8081, 8088, 8443, 8888, 3000, 5000, 9000];
/** Outside the 9100-9999 range that Prometheus' port allocation list has filled, clashing with no well-known exporter. */
export const DEFAULT_LISTEN = '0.0.0.0:10842';

export interface DaemonConfig {
  interface: string | null;
  ports: number[];
  /** --ports was set (flag, environment or file): files are then filtered by it too. */
  portsExplicit: boolean;
  pcap: string[];
  /**
   * --proxy LISTEN=UPSTREAM routes. `name` is the route's `source` label, unique among them:
   * proxy:PORT when no other route listens on that port, else proxy:HOST:PORT (proxy:[::1]:PORT).
   */
  proxy: Array<{ listenHost: string; listenPort: number; upstreamHost: string; upstreamPort: number; name: string }>;
  proxyProtocol: 'v1' | 'v2' | null;
  proxyIdleTimeoutSeconds: number;
  /** Client connections relayed at once per --proxy listener; more are refused and counted. */
  proxyMaxConnections: number;
  replay: 'fast' | 'realtime';
  listenHost: string;
  listenPort: number;
  /** Scrapes of /metrics served at once; more get 503 (promhttp's and node_exporter's --web.max-requests). */
  webMaxRequests: number;
  /** The metrics path (node_exporter's --web.telemetry-path). */
  webTelemetryPath: string;
  /** exporter-toolkit web config (TLS, basic auth); null: plain HTTP, no auth. */
  webConfigFile: string | null;
  /** Leave out prom-client's process_* and nodejs_* metrics (node_exporter's --web.disable-exporter-metrics). */
  webDisableExporterMetrics: boolean;
  maxServers: number;
  /** null: derived from the memory limit (`config/memory.ts`). */
  maxFlows: number | null;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  tcpdump: string;
  captureBufferKiB: number;
  /** --tls-keylog: an NSS key log followed as it grows (tls/keylog-file.ts `KeylogFollower`); null: TLS stays encrypted. */
  tlsKeylog: string | null;
  /** --names: servers' label values (and client groups) from this file, reloaded on SIGHUP; null: addresses. */
  names: string | null;
  /** --client-groups: per-group client metrics from the names file (unmatched clients: other). */
  clientGroups: boolean;
  config: string | null;
}

/** Thrown for a bad setting: one line, exit 2. */
export class ConfigError extends Error {}

interface OptionDef {
  flag: string;
  help: string;
  def: string;
  /** The value's name in --help. */
  value: string;
  repeatable?: boolean;
}

export const OPTIONS: OptionDef[] = [
  { flag: 'interface', value: 'IFACE', def: 'any', help: 'capture live on this interface with tcpdump; live capture runs when no --pcap or --proxy is given, or when --interface is' },
  { flag: 'ports', value: 'LIST', def: DEFAULT_PORTS.join(','), help: 'server ports to capture and analyse, comma-separated (files: any port where HTTP is seen unless set)' },
  { flag: 'pcap', value: 'FILE', def: '', repeatable: true, help: 'read a capture file (pcap, pcapng, .gz; - for stdin); repeatable. Its metrics stay served after it ends' },
  { flag: 'proxy', value: 'LISTEN=UPSTREAM', def: '', repeatable: true, help: 'relay TCP from LISTEN ([HOST]:PORT) to UPSTREAM (HOST:PORT) and measure it, with no capture privileges; repeatable. Example: --proxy :8080=127.0.0.1:80' },
  { flag: 'proxy.protocol', value: 'VERSION', def: 'none', help: 'send a PROXY protocol header (v1 or v2) to the upstream so it sees the client address; none to send nothing' },
  { flag: 'proxy.idle-timeout', value: 'SECONDS', def: '900', help: 'close a relayed connection after this long without a byte either way' },
  { flag: 'proxy.max-connections', value: 'N', def: '10000', help: 'client connections relayed at once per --proxy listener (each holds two file descriptors); more are refused at once and counted' },
  { flag: 'replay', value: 'MODE', def: 'fast', help: 'how to replay --pcap files: fast (as fast as they read) or realtime (at capture pace)' },
  { flag: 'web.listen-address', value: 'HOST:PORT', def: DEFAULT_LISTEN, help: 'HOST:PORT to serve /metrics and the API on' },
  { flag: 'web.max-requests', value: 'N', def: '40', help: 'scrapes of /metrics served at once; more are answered 503 at once (0 for no limit). Concurrent scrapes share one rendering' },
  { flag: 'web.telemetry-path', value: 'PATH', def: '/metrics', help: 'the path that serves the metrics' },
  { flag: 'web.config.file', value: 'FILE', def: '', help: 'a web config file in the exporter-toolkit format (tls_server_config, basic_auth_users); every endpoint but /healthz and /readyz then needs it' },
  { flag: 'web.disable-exporter-metrics', value: 'BOOL', def: 'false', help: "leave out the process_* and nodejs_* metrics about the daemon itself (true or false)" },
  { flag: 'max-servers', value: 'N', def: '500', help: 'distinct server label values; more servers are reported as server="other"' },
  { flag: 'max-flows', value: 'N', def: 'auto', help: `TCP flows tracked per source; the least recently active is evicted beyond it. auto: ${DEFAULT_LIMITS.maxFlows}, or fewer where the memory limit (the cgroup's, or V8's heap limit) would not hold them` },
  { flag: 'log.level', value: 'LEVEL', def: 'info', help: 'debug, info, warn or error (logs are JSON lines on stderr)' },
  { flag: 'tcpdump', value: 'PATH', def: 'tcpdump', help: 'the tcpdump binary to run for live capture' },
  { flag: 'capture.buffer-kib', value: 'KIB', def: '131072', help: 'kernel capture buffer for tcpdump (-B), KiB; 128 MiB is what kept the daemon lossless at 345,000 packets/s (smaller loses packets from about 200,000/s)' },
  { flag: 'tls-keylog', value: 'FILE', def: '', help: 'decrypt TLS connections whose secrets are in this NSS key log (SSLKEYLOGFILE of curl, Firefox, Chrome, Python; Node.js --tls-keylog), followed as it grows; keep it private' },
  { flag: 'names', value: 'FILE', def: '', help: 'name servers (and client groups): one JSON or YAML object whose keys are "ip:port", "ip" or a CIDR and whose values are names, e.g. {"10.3.7.12:8080": "orders", "10.9.0.0/16": "batch"}; the most specific match wins. The server label then carries the name (unnamed servers keep "ip:port"); the file is read again on SIGHUP' },
  { flag: 'client-groups', value: 'BOOL', def: 'false', help: 'with --names: count connections and requests per client group (keepalive_client_group_*; a client no entry names is client_group="other", never an address) and list groups, not addresses, in /api/clients' },
  { flag: 'config', value: 'FILE', def: '', help: 'a JSON file of settings, keys named as the flags ({"ports": "80,8080"})' },
];

export function envName(flag: string): string {
  return `KEEPALIVE_EXPORTER_${flag.toUpperCase().replace(/[.-]/g, '_')}`;
}

/** Every option: `--flag VALUE`, its help wrapped at 80 columns with `[default: ...]`, then `env NAME`. */
export function daemonHelp(): string {
  return OPTIONS.map((o) => helpEntry(`--${o.flag} ${o.value}`, `${o.help}${o.def ? ` [default: ${o.def}]` : ''}`, [`env ${envName(o.flag)}`])).join('\n');
}

/** Parses argv (after the command) and the environment into settings. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): DaemonConfig {
  const fromFlags = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new ConfigError(`unexpected argument "${a}" (see --help)`);
    let name = a.slice(2);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const def = OPTIONS.find((o) => o.flag === name);
    if (!def) throw new ConfigError(unknownFlag(`--${name}`));
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new ConfigError(`--${name} needs a value`);
    }
    fromFlags.set(name, [...(fromFlags.get(name) ?? []), value]);
  }
  const configPath = fromFlags.get('config')?.[0] ?? env[envName('config')] ?? null;
  const fromFile = configPath ? readConfigFile(configPath) : new Map<string, string[]>();

  /** Value of a setting and where it came from, for messages. */
  const get = (flag: string): { values: string[]; from: string } => {
    const f = fromFlags.get(flag);
    if (f) return { values: f, from: `--${flag}` };
    const e = env[envName(flag)];
    if (e !== undefined && e !== '') return { values: flag === 'pcap' ? e.split(',') : [e], from: envName(flag) };
    const c = fromFile.get(flag);
    if (c) return { values: c, from: `"${flag}" in ${configPath}` };
    const d = OPTIONS.find((o) => o.flag === flag)!.def;
    return { values: d === '' ? [] : [d], from: `the default of --${flag}` };
  };
  const one = (flag: string): { value: string; from: string } => {
    const g = get(flag);
    return { value: g.values[g.values.length - 1] ?? '', from: g.from };
  };
  const int = (flag: string, min: number, max: number): number => {
    const { value, from } = one(flag);
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) throw new ConfigError(`${from}: "${value}" is not a whole number from ${min} to ${max}`);
    return n;
  };

  const ports = (() => {
    const { value, from } = one('ports');
    const list = value.split(',').map((p) => p.trim()).filter(Boolean);
    if (list.length === 0) throw new ConfigError(`${from}: needs at least one port, e.g. 80,8080`);
    return list.map((p) => {
      const n = Number(p);
      if (!/^\d+$/.test(p) || n < 1 || n > 65535) throw new ConfigError(`${from}: "${p}" is not a TCP port (1-65535)`);
      return n;
    });
  })();
  const replay = one('replay');
  if (replay.value !== 'fast' && replay.value !== 'realtime') throw new ConfigError(`${replay.from}: "${replay.value}" must be fast or realtime`);
  const listen = one('web.listen-address');
  const m = /^(.*):(\d+)$/.exec(listen.value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 0 || port > 65535) throw new ConfigError(`${listen.from}: "${listen.value}" is not HOST:PORT (e.g. 0.0.0.0:10842 or [::]:10842)`);
  const host = m[1].replace(/^\[(.*)\]$/, '$1') || '0.0.0.0';
  const level = one('log.level');
  if (!['debug', 'info', 'warn', 'error'].includes(level.value)) throw new ConfigError(`${level.from}: "${level.value}" must be debug, info, warn or error`);
  const pcap = get('pcap').values.filter(Boolean);
  const proxyFrom = get('proxy').from;
  const proxy = nameRoutes(get('proxy').values.filter(Boolean).flatMap((v) => v.split(',')).filter(Boolean).map((route) => parseRoute(route, proxyFrom)), proxyFrom);
  refuseRepeatedFiles(pcap, get('pcap').from);
  const protocol = one('proxy.protocol');
  if (!['none', 'v1', 'v2'].includes(protocol.value)) throw new ConfigError(`${protocol.from}: "${protocol.value}" must be none, v1 or v2`);
  const explicitInterface = fromFlags.has('interface') || !!env[envName('interface')] || fromFile.has('interface');
  const iface = one('interface').value;
  if (!/^[\w.:@-]{1,64}$/.test(iface)) throw new ConfigError(`${one('interface').from}: "${iface}" is not an interface name`);
  return {
    interface: (pcap.length === 0 && proxy.length === 0) || explicitInterface ? iface : null,
    proxy,
    proxyProtocol: protocol.value === 'none' ? null : (protocol.value as 'v1' | 'v2'),
    proxyIdleTimeoutSeconds: int('proxy.idle-timeout', 1, 86_400),
    proxyMaxConnections: int('proxy.max-connections', 1, 1_000_000),
    ports,
    portsExplicit: fromFlags.has('ports') || !!env[envName('ports')] || fromFile.has('ports'),
    pcap,
    replay: replay.value,
    listenHost: host,
    listenPort: port,
    webMaxRequests: int('web.max-requests', 0, 100_000),
    webTelemetryPath: telemetryPath(one('web.telemetry-path')),
    webConfigFile: one('web.config.file').value || null,
    webDisableExporterMetrics: bool(one('web.disable-exporter-metrics')),
    maxServers: int('max-servers', 1, 1_000_000),
    maxFlows: one('max-flows').value === 'auto' ? null : int('max-flows', 1, 100_000_000),
    logLevel: level.value as DaemonConfig['logLevel'],
    tcpdump: one('tcpdump').value,
    captureBufferKiB: int('capture.buffer-kib', 64, 4_194_304),
    tlsKeylog: one('tls-keylog').value || null,
    names: one('names').value || null,
    clientGroups: (() => {
      const g = bool(one('client-groups'));
      if (g && !one('names').value) throw new ConfigError(`${one('client-groups').from}: client groups come from the names file: add --names FILE`);
      return g;
    })(),
    config: configPath,
  };
}

function telemetryPath({ value, from }: { value: string; from: string }): string {
  if (!/^\/[A-Za-z0-9._~\/-]*$/.test(value) || ['/healthz', '/readyz', '/'].includes(value)) {
    throw new ConfigError(`${from}: "${value}" is not a path for the metrics (e.g. /metrics; not /, /healthz or /readyz)`);
  }
  return value;
}

function bool({ value, from }: { value: string; from: string }): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new ConfigError(`${from}: "${value}" must be true or false`);
}

/**
 * Each source has its own series, so two sources must not share a `source` label (their
 * counters would be summed into one series and read as one). The short proxy:PORT is kept when
 * the port is unique (the usual case, and the name before issue 11).
 */
function nameRoutes(routes: Array<Omit<DaemonConfig['proxy'][number], 'name'>>, from: string): DaemonConfig['proxy'] {
  const seen = new Set<string>();
  const perPort = new Map<number, number>();
  for (const r of routes) {
    const at = `${r.listenHost.includes(':') ? `[${r.listenHost}]` : r.listenHost}:${r.listenPort}`;
    if (seen.has(at)) throw new ConfigError(`${from}: two routes listen on ${at}: give each --proxy its own listen address`);
    seen.add(at);
    perPort.set(r.listenPort, (perPort.get(r.listenPort) ?? 0) + 1);
  }
  return routes.map((r) => ({
    ...r,
    name: perPort.get(r.listenPort) === 1 ? `proxy:${r.listenPort}` : `proxy:${r.listenHost.includes(':') ? `[${r.listenHost}]` : r.listenHost}:${r.listenPort}`,
  }));
}

/**
 * The same capture file given twice would be read twice into two sources and counted twice.
 * Here only what needs no file system: the same path once resolved, or stdin twice; the daemon
 * also compares device and inode (a link, a second name of the file) before it listens.
 */
function refuseRepeatedFiles(files: string[], from: string): void {
  const seen = new Map<string, string>();
  for (const f of files) {
    const key = f === '-' ? '-' : resolvePath(f);
    const first = seen.get(key);
    if (first !== undefined) {
      throw new ConfigError(`${from}: ${f === '-' ? 'stdin (-)' : `"${f}"`} is given twice${first !== f ? ` (as "${first}" too)` : ''}: each capture file is read once, give it once`);
    }
    seen.set(key, f);
  }
}

/** "[HOST]:PORT=HOST:PORT"; an empty listen host means every address. */
function parseRoute(route: string, from: string): Omit<DaemonConfig['proxy'][number], 'name'> {
  const eq = route.indexOf('=');
  const bad = (why: string): ConfigError => new ConfigError(`${from}: "${route}" ${why} (write LISTEN=UPSTREAM, e.g. :8080=127.0.0.1:80)`);
  if (eq < 0) throw bad('has no "="');
  const hostPort = (text: string, needHost: boolean): { host: string; port: number } => {
    const m = /^(.*):(\d+)$/.exec(text);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) throw bad(`: "${text}" is not [HOST]:PORT`);
    const host = m[1].replace(/^\[(.*)\]$/, '$1');
    if (needHost && !host) throw bad(`: the upstream "${text}" needs a host`);
    return { host: host || '0.0.0.0', port };
  };
  const l = hostPort(route.slice(0, eq), false);
  const u = hostPort(route.slice(eq + 1), true);
  return { listenHost: l.host, listenPort: l.port, upstreamHost: u.host, upstreamPort: u.port };
}

function readConfigFile(path: string): Map<string, string[]> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the config file ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    // V8's message quotes the text, newlines included: keep the error on one line.
    throw new ConfigError(`the config file ${path} is not valid JSON: ${(err as Error).message.replace(/\s+/g, ' ')}`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError(`the config file ${path} must hold a JSON object of settings`);
  const out = new Map<string, string[]>();
  for (const [k, v] of Object.entries(obj)) {
    const def = OPTIONS.find((o) => o.flag === k);
    if (!def || k === 'config') throw new ConfigError(`the config file ${path} has an unknown setting "${k}"`);
    // An array is several values of a repeatable setting, or a list ("ports": [80, 8080]).
    const values = Array.isArray(v) ? (def.repeatable ? v.map(String) : [v.map(String).join(',')]) : [String(v)];
    out.set(k, values);
  }
  return out;
}
