/**
 * The names file (`--names FILE`): one JSON or YAML object whose keys are "ip:port", "ip" or a
 * CIDR and whose values are names, for example
 *
 *     { "127.0.0.1:18080": "apache-test", "10.3.0.0/16": "orders", "[::1]:8080": "local-v6" }
 *
 * A server ("ip:port") takes the most specific match: its ip:port, then its ip, then the
 * longest CIDR holding it. A client takes the same match on its address (its ephemeral port is
 * never a key: an ip:port key names a server). No match: the caller keeps the address (servers)
 * or says `other` (client groups: a label never carries a client address).
 *
 * Names become label values: at most `MAX_NAME_LENGTH` printable characters, and not `other`
 * (the label of what is not named, or past the --max-servers cap). A bad file is one error line
 * naming the key and what would be right; `NameMap.load` never returns a half-read map.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { endpointHost } from '../decode/packet.js';

/** The yaml package, loaded only for a YAML file: importing it cost every start of the CLI 40 ms (measured in paired runs). */
function parseYaml(text: string, opts: { uniqueKeys: boolean; maxAliasCount: number }): unknown {
  const yaml = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yaml.parse(text, opts);
}

/** The label value of clients no entry names, and of servers past the cap. */
export const OTHER = 'other';
export const MAX_NAME_LENGTH = 128;
/** Entries in one file: far more than a fleet's services, few enough that a lookup stays cheap. */
export const MAX_NAME_ENTRIES = 100_000;

export class NamesError extends Error {}

interface Prefixes {
  /** Prefix lengths present, longest first. */
  lengths: number[];
  /** By prefix length: the masked address (a bigint) to its name. */
  byLength: Map<number, Map<bigint, string>>;
}

export class NameMap {
  /** "ip:port" (canonical: IPv6 in brackets, compressed) to name. */
  private readonly endpoints = new Map<string, string>();
  /** Canonical ip to name. */
  private readonly hosts = new Map<string, string>();
  private readonly v4: Prefixes = { lengths: [], byLength: new Map() };
  private readonly v6: Prefixes = { lengths: [], byLength: new Map() };
  /** Distinct names, sorted: the client groups there can be (plus `other`). */
  readonly names: readonly string[];
  readonly size: number;

  private constructor(entries: Array<[string, string]>, source: string) {
    const names = new Set<string>();
    for (const [key, value] of entries) {
      const name = checkName(value, key, source);
      names.add(name);
      const k = key.trim();
      const slash = k.indexOf('/');
      if (slash >= 0) {
        const ip = parseIp(k.slice(0, slash));
        const lenText = k.slice(slash + 1);
        const max = ip?.v6 ? 128 : 32;
        const len = /^\d{1,3}$/.test(lenText) ? Number(lenText) : -1;
        if (!ip || len < 0 || len > max) throw new NamesError(`${source}: "${key}" is not a CIDR (examples: 10.3.0.0/16, fd00::/8)`);
        const p = ip.v6 ? this.v6 : this.v4;
        let m = p.byLength.get(len);
        if (!m) {
          p.byLength.set(len, (m = new Map()));
          p.lengths.push(len);
        }
        m.set(mask(ip.value, len, max), name);
        continue;
      }
      const ep = parseEndpoint(k);
      if (ep) {
        this.endpoints.set(ep, name);
        continue;
      }
      const ip = parseIp(k);
      if (!ip) throw new NamesError(`${source}: "${key}" is not an ip, ip:port or CIDR (examples: 10.0.0.12, 10.0.0.12:8080, [::1]:8080, 10.3.0.0/16)`);
      this.hosts.set(ip.text, name);
    }
    this.v4.lengths.sort((a, b) => b - a);
    this.v6.lengths.sort((a, b) => b - a);
    this.names = [...names].sort();
    this.size = entries.length;
  }

  /** The map in `text` (JSON when it starts with `{`, else YAML); `source` names it in errors. */
  static parse(text: string, source: string): NameMap {
    let doc: unknown;
    const t = text.replace(/^\uFEFF/, '');
    try {
      doc = t.trimStart().startsWith('{') ? JSON.parse(t) : parseYaml(t, { uniqueKeys: true, maxAliasCount: 0 });
    } catch (e) {
      const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0];
      throw new NamesError(`${source}: not valid JSON or YAML: ${msg}`);
    }
    if (doc === null || doc === undefined) doc = {};
    if (typeof doc !== 'object' || Array.isArray(doc)) {
      throw new NamesError(`${source}: must be one object of "ip", "ip:port" or CIDR keys to names, e.g. {"10.3.0.0/16": "orders"}`);
    }
    const entries = Object.entries(doc as Record<string, unknown>);
    if (entries.length > MAX_NAME_ENTRIES) throw new NamesError(`${source}: ${entries.length} entries; at most ${MAX_NAME_ENTRIES} (use CIDRs for ranges)`);
    return new NameMap(entries.map(([k, v]) => [k, v as string]), source);
  }

  /** Reads and parses FILE; a missing or unreadable file is a NamesError too. */
  static load(path: string): NameMap {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new NamesError(`names file ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (e as Error).message}`);
    }
    return NameMap.parse(text, `names file ${path}`);
  }

  /** The name of server "ip:port" (as ConnectionRecord.server spells it), or null. */
  server(endpoint: string): string | null {
    const exact = this.endpoints.get(endpoint);
    if (exact !== undefined) return exact;
    const split = splitEndpoint(endpoint);
    if (split === null) return null;
    return this.ip(split);
  }

  /** The group of client "ip:port" (its address decides; its port does not), or null. */
  client(endpoint: string): string | null {
    const split = splitEndpoint(endpoint);
    if (split === null) return null;
    return this.ip(split);
  }

  private ip(addr: string): string | null {
    const host = this.hosts.get(addr);
    if (host !== undefined) return host;
    const v6 = addr.includes(':');
    const p = v6 ? this.v6 : this.v4;
    if (p.lengths.length === 0 && !v6) return null;
    const ip = parseIp(addr);
    if (!ip) return null;
    if (v6 && ip.text !== addr) {
      const h = this.hosts.get(ip.text); // another spelling of the same address
      if (h !== undefined) return h;
    }
    const max = ip.v6 ? 128 : 32;
    for (const len of p.lengths) {
      const name = p.byLength.get(len)!.get(mask(ip.value, len, max));
      if (name !== undefined) return name;
    }
    return null;
  }
}

function checkName(value: unknown, key: string, source: string): string {
  if (typeof value !== 'string' && typeof value !== 'number') throw new NamesError(`${source}: the name of "${key}" must be a string`);
  const name = String(value).trim();
  if (name === '') throw new NamesError(`${source}: the name of "${key}" is empty`);
  if (name.length > MAX_NAME_LENGTH) throw new NamesError(`${source}: the name of "${key}" is longer than ${MAX_NAME_LENGTH} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new NamesError(`${source}: the name of "${key}" has a control character`);
  if (name === OTHER) throw new NamesError(`${source}: "${key}" is named "${OTHER}", the label of what is not named; choose another name`);
  return name;
}

interface Ip {
  v6: boolean;
  value: bigint;
  /** Canonical text: dotted IPv4, compressed lower-case IPv6 (no brackets). */
  text: string;
}

/** An IPv4 or IPv6 address (IPv6 with or without brackets), or null. */
export function parseIp(s: string): Ip | null {
  let t = s.trim();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(t);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    if (parts.some((x) => x > 255)) return null;
    return { v6: false, value: BigInt(((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0), text: parts.join('.') };
  }
  if (!t.includes(':') || !/^[0-9a-fA-F:.]+$/.test(t)) return null;
  let canonical: string;
  try {
    canonical = new URL(`http://[${t}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
  return { v6: true, value: v6Value(canonical), text: canonical };
}

/** The 128-bit value of a canonical IPv6 address (URL's form: compressed, embedded IPv4 as hex). */
function v6Value(canonical: string): bigint {
  const [head, tail] = canonical.includes('::') ? canonical.split('::') : [canonical, null];
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...new Array<string>(8 - h.length - tl.length).fill('0'), ...tl];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g || '0', 16));
  return v;
}

function mask(value: bigint, len: number, max: number): bigint {
  if (len === 0) return 0n;
  const bits = BigInt(max - len);
  return (value >> bits) << bits;
}

/** "ip:port" in canonical form, or null when `s` is not one. */
function parseEndpoint(s: string): string | null {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:]+):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  const ip = parseIp(m[1]);
  if (!ip) return null;
  // A bracketed address must be IPv6, a bare one IPv4 (the spelling of ConnectionRecord.server).
  if (ip.v6 !== s.startsWith('[')) return null;
  return ip.v6 ? `[${ip.text}]:${port}` : `${ip.text}:${port}`;
}

/** The address of "ip:port" / "[v6]:port" without brackets (as the engine spells it), or null when it is no endpoint. */
function splitEndpoint(endpoint: string): string | null {
  const host = endpointHost(endpoint);
  if (host === endpoint || host === '[]') return null;
  return host.startsWith('[') ? host.slice(1, -1) : host;
}
