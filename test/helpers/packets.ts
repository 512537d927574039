/**
 * Synthetic packet and capture-file builders shared by the tests.
 *
 * Layers are built separately and composed:
 *
 *   const ip = tcpSegment({ src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 80, flags: 'PA', payload: 'GET / HTTP/1.1\r\n\r\n' });
 *   const eth = frame(LINKTYPE.ETHERNET, ip, { vlan: [100] });
 *   const file = pcapFile([{ ts: 1700000000.25, data: eth }], { linkType: LINKTYPE.ETHERNET });
 *
 * Everything returns plain Buffers with correct lengths (IP total/payload length, header lengths,
 * block lengths); IP and TCP checksums are left at zero, which no decoder of this project checks.
 */
import type { PacketSink } from '../../src/capture/reader.js';
import { LINKTYPE } from '../../src/decode/packet.js';

export { LINKTYPE };

// ---------------------------------------------------------------------------------------------
// Addresses

/** Parses "1.2.3.4" (4 bytes) or any RFC 4291 IPv6 text form, incl. "::" and a dotted-quad tail (16 bytes). */
export function parseAddress(text: string): Buffer {
  if (!text.includes(':')) {
    const parts = text.split('.');
    if (parts.length !== 4) throw new Error(`bad IPv4 address ${text}`);
    return Buffer.from(parts.map((p) => {
      const n = Number(p);
      if (!Number.isInteger(n) || n < 0 || n > 255) throw new Error(`bad IPv4 address ${text}`);
      return n;
    }));
  }
  let head = text;
  let tail = '';
  const dbl = text.indexOf('::');
  if (dbl >= 0) {
    head = text.slice(0, dbl);
    tail = text.slice(dbl + 2);
  }
  const groups = (s: string): number[] => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (g.includes('.')) {
        const v4 = parseAddress(g);
        out.push(v4.readUInt16BE(0), v4.readUInt16BE(2));
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new Error(`bad IPv6 address ${text}`);
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const h = groups(head);
  const t = groups(tail);
  const zeros = 8 - h.length - t.length;
  if (dbl >= 0 ? zeros < 1 : zeros !== 0) throw new Error(`bad IPv6 address ${text}`);
  const all = [...h, ...new Array<number>(dbl >= 0 ? zeros : 0).fill(0), ...t];
  const buf = Buffer.alloc(16);
  all.forEach((g, i) => buf.writeUInt16BE(g, i * 2));
  return buf;
}

/**
 * The address as the four 32-bit words a `PacketView` holds (`src0..src3`): IPv4 uses word 0
 * only. Handy for `formatAddress(version, ...addressWords(a))` and for comparing views.
 */
export function addressWords(text: string): [number, number, number, number] {
  const b = parseAddress(text);
  if (b.length === 4) return [b.readUInt32BE(0), 0, 0, 0];
  return [b.readUInt32BE(0), b.readUInt32BE(4), b.readUInt32BE(8), b.readUInt32BE(12)];
}

// ---------------------------------------------------------------------------------------------
// Network and transport layers

export const IPPROTO = { HOPOPTS: 0, TCP: 6, UDP: 17, ROUTING: 43, FRAGMENT: 44, AH: 51, NONE: 59, DSTOPTS: 60 } as const;

/** TCP flag bits by letter, as tcpdump prints them. */
const FLAG_LETTERS: Record<string, number> = { F: 0x01, S: 0x02, R: 0x04, P: 0x08, A: 0x10, U: 0x20, E: 0x40, C: 0x80 };

/** Flags as a number, or letters in any order: 'S', 'SA', 'PA', 'FA', 'R', 'RA'. */
export type TcpFlags = number | string;

export function tcpFlags(flags: TcpFlags): number {
  if (typeof flags === 'number') return flags;
  let n = 0;
  for (const c of flags.toUpperCase()) {
    const bit = FLAG_LETTERS[c];
    if (bit === undefined) throw new Error(`unknown TCP flag letter ${c} in ${flags}`);
    n |= bit;
  }
  return n;
}

function bytes(data: Buffer | Uint8Array | string | undefined): Buffer {
  if (data === undefined) return Buffer.alloc(0);
  return typeof data === 'string' ? Buffer.from(data, 'latin1') : Buffer.from(data);
}

function pad4(b: Buffer, fill = 0): Buffer {
  const rem = b.length % 4;
  return rem === 0 ? b : Buffer.concat([b, Buffer.alloc(4 - rem, fill)]);
}

export interface Ipv4Options {
  src: string;
  dst: string;
  protocol: number;
  payload: Buffer;
  /** Raw IPv4 options; padded with End-of-Options (0) to a multiple of 4 bytes. */
  options?: Buffer;
  ttl?: number;
  id?: number;
  /** Don't Fragment bit (default true, as most TCP stacks send). */
  dontFragment?: boolean;
  moreFragments?: boolean;
  /** Fragment offset in BYTES (must be a multiple of 8). */
  fragmentOffset?: number;
  /** Overrides the computed IHL field (in 32-bit words) to build malformed headers. */
  ihl?: number;
  /** Overrides the computed total length field. */
  totalLength?: number;
}

/** An IPv4 packet: 20-byte header (+ options) and the payload; checksum zero. */
export function ipv4Packet(o: Ipv4Options): Buffer {
  const opts = pad4(o.options ?? Buffer.alloc(0));
  const hl = 20 + opts.length;
  const h = Buffer.alloc(hl);
  h[0] = 0x40 | ((o.ihl ?? hl / 4) & 0x0f);
  h.writeUInt16BE(o.totalLength ?? hl + o.payload.length, 2);
  h.writeUInt16BE(o.id ?? 0x1234, 4);
  const offset = o.fragmentOffset ?? 0;
  if (offset % 8 !== 0) throw new Error('fragment offset must be a multiple of 8 bytes');
  h.writeUInt16BE(((o.dontFragment ?? true) ? 0x4000 : 0) | (o.moreFragments ? 0x2000 : 0) | (offset / 8), 6);
  h[8] = o.ttl ?? 64;
  h[9] = o.protocol;
  const src = parseAddress(o.src);
  const dst = parseAddress(o.dst);
  if (src.length !== 4 || dst.length !== 4) throw new Error('ipv4Packet needs IPv4 addresses');
  src.copy(h, 12);
  dst.copy(h, 16);
  opts.copy(h, 20);
  return Buffer.concat([h, o.payload]);
}

/**
 * An IPv6 extension header. `type` is its own protocol number (0 hop-by-hop, 43 routing,
 * 44 fragment, 60 destination options, 51 AH); `data` is the content after the 2-byte
 * next-header/length prefix, padded with zeros to the header's unit (8 bytes; 4 for AH).
 * For a fragment header, `data` is the 6 bytes offset/flags/identification (default: offset 0, M=1).
 */
export interface Ipv6ExtensionHeader {
  type: number;
  data?: Buffer;
}

export interface Ipv6Options {
  src: string;
  dst: string;
  /** Protocol of the upper-layer payload (after any extension headers). */
  nextHeader: number;
  payload: Buffer;
  extensionHeaders?: Ipv6ExtensionHeader[];
  hopLimit?: number;
  flowLabel?: number;
  /** Overrides the computed payload length field. */
  payloadLength?: number;
}

function ipv6Extension(h: Ipv6ExtensionHeader, next: number): Buffer {
  if (h.type === IPPROTO.FRAGMENT) {
    const b = Buffer.alloc(8);
    b[0] = next;
    (h.data ?? Buffer.from([0, 1, 0, 0, 0x12, 0x34])).copy(b, 2, 0, 6);
    return b;
  }
  const unit = h.type === IPPROTO.AH ? 4 : 8;
  const raw = Buffer.concat([Buffer.alloc(2), h.data ?? Buffer.alloc(6)]);
  let len = raw.length;
  if (len < 8) len = 8;
  if (len % unit !== 0) len += unit - (len % unit);
  const b = Buffer.alloc(len);
  raw.copy(b);
  b[0] = next;
  b[1] = h.type === IPPROTO.AH ? len / 4 - 2 : len / 8 - 1;
  return b;
}

/** An IPv6 packet with optional extension headers chained in order before the payload. */
export function ipv6Packet(o: Ipv6Options): Buffer {
  const exts = o.extensionHeaders ?? [];
  const parts: Buffer[] = [];
  for (let i = 0; i < exts.length; i++) {
    parts.push(ipv6Extension(exts[i], i + 1 < exts.length ? exts[i + 1].type : o.nextHeader));
  }
  const body = Buffer.concat([...parts, o.payload]);
  const h = Buffer.alloc(40);
  h.writeUInt32BE((6 << 28) | ((o.flowLabel ?? 0) & 0xfffff), 0);
  h.writeUInt16BE(o.payloadLength ?? body.length, 4);
  h[6] = exts.length > 0 ? exts[0].type : o.nextHeader;
  h[7] = o.hopLimit ?? 64;
  const src = parseAddress(o.src);
  const dst = parseAddress(o.dst);
  if (src.length !== 16 || dst.length !== 16) throw new Error('ipv6Packet needs IPv6 addresses');
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, body]);
}

export interface TcpSegmentOptions {
  /** Addresses in text form; IPv6 when they contain ':' unless `ipVersion` says otherwise. */
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  /** Number or letters ('S', 'SA', 'PA', 'FA', 'R'); default 'A'. */
  flags?: TcpFlags;
  payload?: Buffer | Uint8Array | string;
  ipVersion?: 4 | 6;
  /** IPv4 header options (padded to 4 bytes). Not allowed with IPv6: use `ipv6ExtensionHeaders`. */
  ipOptions?: Buffer;
  /** IPv6 extension headers placed between the fixed header and TCP. */
  ipv6ExtensionHeaders?: Ipv6ExtensionHeader[];
  /** Raw TCP options, padded with End-of-Options zeros to a multiple of 4 bytes. */
  tcpOptions?: Buffer;
  window?: number;
  /** Overrides the TCP data offset field (32-bit words) to build malformed headers. */
  dataOffset?: number;
  /** Extra fields for the IPv4 header (fragments, a bad IHL, a wrong total length...). */
  ipv4?: Partial<Omit<Ipv4Options, 'src' | 'dst' | 'protocol' | 'payload' | 'options'>>;
  /** Extra fields for the IPv6 header. */
  ipv6?: Partial<Pick<Ipv6Options, 'hopLimit' | 'flowLabel' | 'payloadLength'>>;
}

/** The TCP header + payload alone (no IP header); checksum zero. */
export function tcpHeader(o: Pick<TcpSegmentOptions, 'sport' | 'dport' | 'seq' | 'ack' | 'flags' | 'payload' | 'tcpOptions' | 'window' | 'dataOffset'>): Buffer {
  const opts = pad4(o.tcpOptions ?? Buffer.alloc(0));
  const hl = 20 + opts.length;
  const h = Buffer.alloc(hl);
  h.writeUInt16BE(o.sport, 0);
  h.writeUInt16BE(o.dport, 2);
  h.writeUInt32BE((o.seq ?? 0) >>> 0, 4);
  h.writeUInt32BE((o.ack ?? 0) >>> 0, 8);
  h[12] = ((o.dataOffset ?? hl / 4) & 0x0f) << 4;
  h[13] = tcpFlags(o.flags ?? 'A');
  h.writeUInt16BE(o.window ?? 65535, 14);
  opts.copy(h, 20);
  return Buffer.concat([h, bytes(o.payload)]);
}

/** A complete IPv4 or IPv6 packet carrying one TCP segment. */
export function tcpSegment(o: TcpSegmentOptions): Buffer {
  const version = o.ipVersion ?? (o.src.includes(':') ? 6 : 4);
  const tcp = tcpHeader(o);
  if (version === 4) {
    return ipv4Packet({ ...o.ipv4, src: o.src, dst: o.dst, protocol: IPPROTO.TCP, payload: tcp, options: o.ipOptions });
  }
  if (o.ipOptions) throw new Error('ipOptions is IPv4 only; use ipv6ExtensionHeaders');
  return ipv6Packet({ ...o.ipv6, src: o.src, dst: o.dst, nextHeader: IPPROTO.TCP, payload: tcp, extensionHeaders: o.ipv6ExtensionHeaders });
}

/** A UDP datagram in IPv4 or IPv6 (for "not TCP" cases). */
export function udpDatagram(o: { src: string; dst: string; sport: number; dport: number; payload?: Buffer | string }): Buffer {
  const data = bytes(o.payload);
  const u = Buffer.alloc(8);
  u.writeUInt16BE(o.sport, 0);
  u.writeUInt16BE(o.dport, 2);
  u.writeUInt16BE(8 + data.length, 4);
  const payload = Buffer.concat([u, data]);
  return o.src.includes(':')
    ? ipv6Packet({ src: o.src, dst: o.dst, nextHeader: IPPROTO.UDP, payload })
    : ipv4Packet({ src: o.src, dst: o.dst, protocol: IPPROTO.UDP, payload });
}

// ---------------------------------------------------------------------------------------------
// Link layer

export const ETHERTYPE = { IPV4: 0x0800, ARP: 0x0806, VLAN: 0x8100, IPV6: 0x86dd, QINQ: 0x88a8, QINQ_OLD: 0x9100 } as const;

/** BSD loopback address families for IPv6 by OS (IPv4 is 2 everywhere). */
export const AF = { INET: 2, INET6_LINUX: 10, INET6_BSD: 24, INET6_FREEBSD: 28, INET6_DARWIN: 30 } as const;

/** A VLAN tag: a VLAN id (TPID 0x8100) or an explicit TPID (0x88a8 / 0x9100 for QinQ outer tags). */
export type VlanTag = number | { id: number; tpid?: number; pcp?: number };

export interface FrameOptions {
  /** Ethernet only: tags outermost first. */
  vlan?: VlanTag[];
  /** Ethernet only: bytes appended after the packet (padding to 60 bytes, an FCS...). */
  trailer?: Buffer;
  /** Ethernet only: pad the frame to the 60-byte minimum with zeros, as NICs do. */
  padToMinimum?: boolean;
  /** Ethernet/SLL/SLL2: the ethertype (default from the IP version nibble). */
  ethertype?: number;
  srcMac?: string;
  dstMac?: string;
  /** NULL only: write the family big-endian (as captured on a big-endian host). Default little-endian. */
  bigEndian?: boolean;
  /** NULL/LOOP: the address family (default 2 for IPv4, 24 for IPv6). */
  family?: number;
  /** SLL/SLL2 packet type: 0 to us, 4 sent by us (default 0). */
  packetType?: number;
}

function mac(text: string | undefined, dflt: number[]): Buffer {
  if (text === undefined) return Buffer.from(dflt);
  const b = Buffer.from(text.split(':').map((x) => parseInt(x, 16)));
  if (b.length !== 6) throw new Error(`bad MAC ${text}`);
  return b;
}

function ipEthertype(ip: Buffer, o: FrameOptions): number {
  if (o.ethertype !== undefined) return o.ethertype;
  return ip.length > 0 && ip[0] >> 4 === 6 ? ETHERTYPE.IPV6 : ETHERTYPE.IPV4;
}

/**
 * Wraps an IP packet (or any payload, with `ethertype`/`family`) in the link-layer header of
 * `linkType`: ETHERNET (with `vlan` tags), LINUX_SLL, LINUX_SLL2, NULL (family in either byte
 * order), LOOP (network byte order), and the header-less RAW/IPV4/IPV6 types (returned as is).
 */
export function frame(linkType: number, ipPacket: Buffer, opts: FrameOptions = {}): Buffer {
  const et = ipEthertype(ipPacket, opts);
  switch (linkType) {
    case LINKTYPE.ETHERNET: {
      const parts: Buffer[] = [mac(opts.dstMac, [0x02, 0, 0, 0, 0, 0x02]), mac(opts.srcMac, [0x02, 0, 0, 0, 0, 0x01])];
      for (const tag of opts.vlan ?? []) {
        const t = typeof tag === 'number' ? { id: tag } : tag;
        const b = Buffer.alloc(4);
        b.writeUInt16BE(t.tpid ?? ETHERTYPE.VLAN, 0);
        b.writeUInt16BE((((t.pcp ?? 0) & 7) << 13) | (t.id & 0x0fff), 2);
        parts.push(b);
      }
      const type = Buffer.alloc(2);
      type.writeUInt16BE(et, 0);
      parts.push(type, ipPacket);
      let f = Buffer.concat(parts);
      if (opts.padToMinimum && f.length < 60) f = Buffer.concat([f, Buffer.alloc(60 - f.length)]);
      if (opts.trailer) f = Buffer.concat([f, opts.trailer]);
      return f;
    }
    case LINKTYPE.LINUX_SLL: {
      const h = Buffer.alloc(16);
      h.writeUInt16BE(opts.packetType ?? 0, 0);
      h.writeUInt16BE(1, 2); // ARPHRD_ETHER
      h.writeUInt16BE(6, 4);
      mac(opts.srcMac, [0x02, 0, 0, 0, 0, 0x01]).copy(h, 6);
      h.writeUInt16BE(et, 14);
      return Buffer.concat([h, ipPacket]);
    }
    case LINKTYPE.LINUX_SLL2: {
      const h = Buffer.alloc(20);
      h.writeUInt16BE(et, 0);
      h.writeUInt32BE(2, 4); // interface index
      h.writeUInt16BE(1, 8); // ARPHRD_ETHER
      h[10] = opts.packetType ?? 0;
      h[11] = 6;
      mac(opts.srcMac, [0x02, 0, 0, 0, 0, 0x01]).copy(h, 12);
      return Buffer.concat([h, ipPacket]);
    }
    case LINKTYPE.NULL:
    case LINKTYPE.LOOP: {
      const fam = opts.family ?? (et === ETHERTYPE.IPV6 ? AF.INET6_BSD : AF.INET);
      const h = Buffer.alloc(4);
      if (linkType === LINKTYPE.LOOP || opts.bigEndian) h.writeUInt32BE(fam, 0);
      else h.writeUInt32LE(fam, 0);
      return Buffer.concat([h, ipPacket]);
    }
    case LINKTYPE.RAW:
    case LINKTYPE.RAW_OPENBSD:
    case LINKTYPE.RAW_14:
    case LINKTYPE.IPV4:
    case LINKTYPE.IPV6:
      return Buffer.from(ipPacket);
    default:
      throw new Error(`frame: no builder for link type ${linkType}`);
  }
}

/** Length of the link-layer header `frame` writes for these options. */
export function linkHeaderLength(linkType: number, opts: FrameOptions = {}): number {
  switch (linkType) {
    case LINKTYPE.ETHERNET: return 14 + 4 * (opts.vlan?.length ?? 0);
    case LINKTYPE.LINUX_SLL: return 16;
    case LINKTYPE.LINUX_SLL2: return 20;
    case LINKTYPE.NULL: case LINKTYPE.LOOP: return 4;
    default: return 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Capture files

/**
 * A timestamp: seconds as a number (rounded to the file's resolution), or exact parts:
 * `{ sec, frac }` for pcap (frac in µs, or ns for a nanosecond file), `{ units }` for pcapng
 * (the raw 64-bit count of if_tsresol units).
 */
export type Timestamp = number | { sec: number; frac: number } | { units: bigint };

export interface PcapRecord {
  ts: Timestamp;
  /** Captured bytes (cut to `snaplen` if the file has one and they are longer). */
  data: Buffer;
  /** Length on the wire; default the length of `data` before any snaplen cut. */
  origLen?: number;
}

export interface PcapFileOptions {
  linkType: number;
  bigEndian?: boolean;
  /** Nanosecond-resolution file (magic 0xa1b23c4d). */
  nanos?: boolean;
  /** Header snaplen (default 262144); records longer than it are cut to it. */
  snaplen?: number;
  /** Raw bits OR-ed into the link-type field (e.g. FCS information in its top bits). */
  linkTypeFlags?: number;
}

function splitTs(ts: Timestamp, perSecond: number): { sec: number; frac: number } {
  if (typeof ts === 'number') {
    let sec = Math.floor(ts);
    let frac = Math.round((ts - sec) * perSecond);
    if (frac >= perSecond) { sec++; frac -= perSecond; }
    return { sec, frac };
  }
  if ('units' in ts) throw new Error('pcap timestamps are {sec, frac} or seconds');
  return ts;
}

/** A classic pcap file: 24-byte header and one 16-byte record header per packet. */
export function pcapFile(packets: PcapRecord[], o: PcapFileOptions): Buffer {
  const be = o.bigEndian ?? false;
  const snaplen = o.snaplen ?? 262144;
  const w32 = (b: Buffer, v: number, at: number) => (be ? b.writeUInt32BE(v >>> 0, at) : b.writeUInt32LE(v >>> 0, at));
  const w16 = (b: Buffer, v: number, at: number) => (be ? b.writeUInt16BE(v, at) : b.writeUInt16LE(v, at));
  const h = Buffer.alloc(24);
  w32(h, o.nanos ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  w16(h, 2, 4);
  w16(h, 4, 6);
  w32(h, snaplen, 16);
  w32(h, (o.linkType | (o.linkTypeFlags ?? 0)) >>> 0, 20);
  const parts: Buffer[] = [h];
  for (const p of packets) {
    const { sec, frac } = splitTs(p.ts, o.nanos ? 1e9 : 1e6);
    const data = p.data.length > snaplen ? p.data.subarray(0, snaplen) : p.data;
    const r = Buffer.alloc(16);
    w32(r, sec, 0);
    w32(r, frac, 4);
    w32(r, data.length, 8);
    w32(r, p.origLen ?? p.data.length, 12);
    parts.push(r, data);
  }
  return Buffer.concat(parts);
}

export interface PcapngInterface {
  linkType: number;
  /** 0 (default) means no limit. */
  snaplen?: number;
  /**
   * The if_tsresol option byte: 6 = µs (also the default when absent), 9 = ns, 0x80|n = 2^-n.
   * Leave undefined to write no option.
   */
  tsresol?: number;
  /** if_tsoffset in seconds (signed 64-bit), added to every timestamp. */
  tsoffset?: number | bigint;
}

/** Blocks of a section, after its interfaces. */
export type PcapngBlock =
  /** Enhanced Packet Block. */
  | { type: 'epb'; interface: number; ts: Timestamp; data: Buffer; origLen?: number; options?: Buffer }
  /** Simple Packet Block: interface 0, no timestamp; `data` is cut to the interface snaplen. */
  | { type: 'spb'; data: Buffer; origLen?: number }
  /** Obsolete Packet Block (type 2). */
  | { type: 'opb'; interface: number; ts: Timestamp; data: Buffer; origLen?: number }
  /** An Interface Description Block in the middle of the section. */
  | ({ type: 'idb' } & PcapngInterface)
  /** Any block with a raw body (padded to 4 bytes): unknown types, NRB (4), ISB (5), custom... */
  | { type: 'raw'; blockType: number; body?: Buffer };

export interface PcapngSection {
  bigEndian?: boolean;
  /** Interface Description Blocks written right after the SHB, numbered from 0. */
  interfaces: PcapngInterface[];
  blocks: PcapngBlock[];
}

/** Units per second of an if_tsresol byte. */
export function tsresolUnits(tsresol: number | undefined): number {
  if (tsresol === undefined) return 1e6;
  return tsresol & 0x80 ? 2 ** (tsresol & 0x7f) : 10 ** tsresol;
}

class Writer {
  constructor(readonly be: boolean) {}
  u16(v: number): Buffer {
    const b = Buffer.alloc(2);
    if (this.be) b.writeUInt16BE(v);
    else b.writeUInt16LE(v);
    return b;
  }
  u32(v: number): Buffer {
    const b = Buffer.alloc(4);
    if (this.be) b.writeUInt32BE(v >>> 0);
    else b.writeUInt32LE(v >>> 0);
    return b;
  }
  i64(v: bigint): Buffer {
    const b = Buffer.alloc(8);
    if (this.be) b.writeBigInt64BE(v);
    else b.writeBigInt64LE(v);
    return b;
  }
  option(code: number, value: Buffer): Buffer {
    return Buffer.concat([this.u16(code), this.u16(value.length), pad4(value)]);
  }
  block(type: number, body: Buffer): Buffer {
    const b = pad4(body);
    const len = 12 + b.length;
    return Buffer.concat([this.u32(type), this.u32(len), b, this.u32(len)]);
  }
}

function pcapngUnits(ts: Timestamp, ifc: PcapngInterface): bigint {
  if (typeof ts === 'number') {
    const offset = Number(ifc.tsoffset ?? 0);
    return BigInt(Math.round((ts - offset) * tsresolUnits(ifc.tsresol)));
  }
  if ('units' in ts) return ts.units;
  throw new Error('pcapng timestamps are seconds or {units}');
}

function idbBlock(w: Writer, ifc: PcapngInterface): Buffer {
  const opts: Buffer[] = [];
  if (ifc.tsresol !== undefined) opts.push(w.option(9, Buffer.from([ifc.tsresol])));
  if (ifc.tsoffset !== undefined) opts.push(w.option(14, w.i64(BigInt(ifc.tsoffset))));
  if (opts.length) opts.push(w.u32(0)); // opt_endofopt
  return w.block(1, Buffer.concat([w.u16(ifc.linkType), w.u16(0), w.u32(ifc.snaplen ?? 0), ...opts]));
}

/**
 * A pcapng file of one or more sections, each in its own byte order with its own interfaces
 * (interface ids restart at 0 in every section). Number timestamps are converted with the
 * interface's if_tsresol and if_tsoffset, so the reader should give them back.
 */
export function pcapngFile(sections: PcapngSection[]): Buffer {
  const out: Buffer[] = [];
  for (const s of sections) {
    const w = new Writer(s.bigEndian ?? false);
    // SHB: byte-order magic, version 1.0, section length -1 (unknown).
    const shbBody = Buffer.concat([w.u32(0x1a2b3c4d), w.u16(1), w.u16(0), Buffer.alloc(8, 0xff)]);
    out.push(w.block(0x0a0d0d0a, shbBody));
    const ifaces = [...s.interfaces];
    for (const ifc of s.interfaces) out.push(idbBlock(w, ifc));
    for (const b of s.blocks) {
      switch (b.type) {
        case 'idb':
          ifaces.push(b);
          out.push(idbBlock(w, b));
          break;
        case 'epb': {
          const ifc = ifaces[b.interface];
          const units = ifc ? pcapngUnits(b.ts, ifc) : 0n;
          const body = Buffer.concat([
            w.u32(b.interface), w.u32(Number(units >> 32n)), w.u32(Number(units & 0xffffffffn)),
            w.u32(b.data.length), w.u32(b.origLen ?? b.data.length), pad4(b.data), b.options ?? Buffer.alloc(0),
          ]);
          out.push(w.block(6, body));
          break;
        }
        case 'opb': {
          const ifc = ifaces[b.interface];
          const units = ifc ? pcapngUnits(b.ts, ifc) : 0n;
          const body = Buffer.concat([
            w.u16(b.interface), w.u16(0), w.u32(Number(units >> 32n)), w.u32(Number(units & 0xffffffffn)),
            w.u32(b.data.length), w.u32(b.origLen ?? b.data.length), pad4(b.data),
          ]);
          out.push(w.block(2, body));
          break;
        }
        case 'spb': {
          const snap = ifaces[0]?.snaplen ?? 0;
          const data = snap > 0 && b.data.length > snap ? b.data.subarray(0, snap) : b.data;
          out.push(w.block(3, Buffer.concat([w.u32(b.origLen ?? b.data.length), pad4(data)])));
          break;
        }
        case 'raw':
          out.push(w.block(b.blockType, b.body ?? Buffer.alloc(0)));
          break;
      }
    }
  }
  return Buffer.concat(out);
}

// ---------------------------------------------------------------------------------------------
// Sinks

export interface CollectedPacket {
  linkType: number;
  /** Seconds since the epoch, as the reader computed it. */
  ts: number;
  capLen: number;
  origLen: number;
  /** A copy of the captured bytes (the reader's view is only valid during the call). */
  bytes: Buffer;
}

/** A `PacketSink` that keeps a copy of every packet in `packets`. */
export class PacketCollector implements PacketSink {
  readonly packets: CollectedPacket[] = [];
  packet(linkType: number, data: Buffer, offset: number, capLen: number, origLen: number, ts: number): void {
    this.packets.push({ linkType, ts, capLen, origLen, bytes: Buffer.from(data.subarray(offset, offset + capLen)) });
  }
}

/** A new collecting sink: pass it to `CaptureDecoder`/`readCapture`, then read `.packets`. */
export function collect(): PacketCollector {
  return new PacketCollector();
}
