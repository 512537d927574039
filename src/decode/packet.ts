/**
 * Link, network and transport decoding over (buffer, offset), in place.
 *
 * `decodePacket` fills a caller-owned `PacketView` (reused for every packet: no per-packet
 * objects) and returns a `Decoded` code. It never throws on wire data: a short buffer is
 * `*_truncated`, impossible field values are `*_malformed`; they are different things.
 */
import { A } from '../config/anomalies.js';

/** Link types (https://www.tcpdump.org/linktypes.html). */
export const LINKTYPE = {
  NULL: 0, // BSD loopback: 4-byte address family in the writer's byte order
  ETHERNET: 1,
  RAW: 101, // raw IPv4 or IPv6, version from the first nibble
  RAW_OPENBSD: 12, // DLT_RAW on some BSDs; same content as RAW
  RAW_14: 14, // DLT_RAW as written by older OpenBSD libpcap
  LOOP: 108, // OpenBSD loopback: address family in network byte order
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;

/*
 * Field reads by hand: Buffer#readUInt16BE and friends validate their arguments on every call,
 * which costs more than the read. Callers check lengths before reading.
 */
function u16(b: Buffer, p: number): number {
  return (b[p] << 8) | b[p + 1];
}
function u32(b: Buffer, p: number): number {
  return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
}
function u32le(b: Buffer, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}

/** Result of decoding one packet: 0 is a TCP segment, anything else is an anomaly index + 1. */
export const DECODED_TCP = 0;

export interface PacketView {
  ipVersion: number;
  /** Addresses as 32-bit words: IPv4 uses word 0 only (the rest are 0), IPv6 all four. */
  src0: number; src1: number; src2: number; src3: number;
  dst0: number; dst1: number; dst2: number; dst3: number;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  /** Captured payload bytes start here in the record's buffer. */
  payloadOffset: number;
  /** Payload bytes present in the capture. */
  payloadCaptured: number;
  /** Payload bytes on the wire (from the IP length); more than captured when snaplen cut it. */
  payloadLength: number;
}

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export function newPacketView(): PacketView {
  return {
    ipVersion: 0,
    src0: 0, src1: 0, src2: 0, src3: 0,
    dst0: 0, dst1: 0, dst2: 0, dst3: 0,
    srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0,
    payloadOffset: 0, payloadCaptured: 0, payloadLength: 0,
  };
}

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;
const ETHERTYPE_QINQ_OLD = 0x9100;

/** Returns DECODED_TCP, or 1 + the index of the anomaly that explains why this is not a TCP segment we can use. */
export function decodePacket(linkType: number, buf: Buffer, off: number, capLen: number, v: PacketView): number {
  const end = off + capLen;
  let ip: number; // offset of the IP header
  let ethertype = -1; // -1: take the version from the IP header itself
  switch (linkType) {
    case LINKTYPE.ETHERNET: {
      if (capLen < 14) return 1 + A.link_truncated;
      let p = off + 12;
      let t = u16(buf, p);
      // 802.1Q and QinQ tags, any depth
      while (t === ETHERTYPE_VLAN || t === ETHERTYPE_QINQ || t === ETHERTYPE_QINQ_OLD) {
        p += 4;
        if (p + 2 > end) return 1 + A.link_truncated;
        t = u16(buf, p);
      }
      ethertype = t;
      ip = p + 2;
      break;
    }
    case LINKTYPE.LINUX_SLL:
      if (capLen < 16) return 1 + A.link_truncated;
      ethertype = u16(buf, off + 14);
      ip = off + 16;
      break;
    case LINKTYPE.LINUX_SLL2:
      if (capLen < 20) return 1 + A.link_truncated;
      ethertype = u16(buf, off);
      ip = off + 20;
      break;
    case LINKTYPE.RAW:
    case LINKTYPE.RAW_OPENBSD:
    case LINKTYPE.RAW_14:
    case LINKTYPE.IPV4:
    case LINKTYPE.IPV6:
      ip = off;
      break;
    case LINKTYPE.NULL:
    case LINKTYPE.LOOP: {
      if (capLen < 4) return 1 + A.link_truncated;
      // NULL stores the family in the capturing host's byte order; accept either.
      let fam = u32le(buf, off);
      if (fam > 0xffff) fam = u32(buf, off);
      if (fam === 2) ethertype = ETHERTYPE_IPV4;
      else if (fam === 24 || fam === 28 || fam === 30 || fam === 10) ethertype = ETHERTYPE_IPV6; // BSDs, macOS, Linux
      else return 1 + A.not_tcp;
      ip = off + 4;
      break;
    }
    default:
      return 1 + A.link_type_unsupported;
  }
  if (ethertype !== -1 && ethertype !== ETHERTYPE_IPV4 && ethertype !== ETHERTYPE_IPV6) return 1 + A.not_tcp;
  if (ip >= end) return 1 + A.ip_truncated;
  const version = buf[ip] >> 4;
  let tcp: number;
  let ipEnd: number;
  if (version === 4) {
    if (ip + 20 > end) return 1 + A.ip_truncated;
    const ihl = (buf[ip] & 0x0f) * 4;
    if (ihl < 20) return 1 + A.ip_malformed;
    const total = u16(buf, ip + 2);
    const frag = u16(buf, ip + 6);
    if (frag & 0x3fff) return 1 + A.ip_fragment; // MF set or a non-zero offset
    if (buf[ip + 9] !== 6) return 1 + A.not_tcp;
    // A total length of 0 is what TSO-offloaded captures show; trust the capture then.
    if (total === 0) ipEnd = end;
    else if (total < ihl) return 1 + A.ip_malformed;
    else ipEnd = ip + total; // may be beyond `end` (snaplen) and is below it with Ethernet padding
    if (ip + ihl > end) return 1 + A.ip_truncated;
    v.ipVersion = 4;
    v.src0 = u32(buf, ip + 12);
    v.dst0 = u32(buf, ip + 16);
    v.src1 = v.src2 = v.src3 = v.dst1 = v.dst2 = v.dst3 = 0;
    tcp = ip + ihl;
  } else if (version === 6) {
    if (ip + 40 > end) return 1 + A.ip_truncated;
    const payloadLen = u16(buf, ip + 4);
    ipEnd = payloadLen === 0 ? end : ip + 40 + payloadLen; // 0: jumbogram or TSO
    let next = buf[ip + 6];
    let p = ip + 40;
    // Skip extension headers (RFC 8200 4.1) until TCP.
    for (;;) {
      if (next === 6) break;
      if (next === 0 || next === 43 || next === 60 || next === 135 || next === 139 || next === 140) {
        if (p + 8 > end) return 1 + A.ip_truncated;
        next = buf[p];
        p += (buf[p + 1] + 1) * 8;
      } else if (next === 51) {
        // Authentication Header: length in 4-octet units minus 2
        if (p + 8 > end) return 1 + A.ip_truncated;
        next = buf[p];
        p += (buf[p + 1] + 2) * 4;
      } else if (next === 44) {
        return 1 + A.ip_fragment;
      } else return 1 + A.not_tcp;
    }
    // The last extension header may run past the capture: that is the IP layer cut short.
    if (p > end) return 1 + A.ip_truncated;
    v.ipVersion = 6;
    v.src0 = u32(buf, ip + 8);
    v.src1 = u32(buf, ip + 12);
    v.src2 = u32(buf, ip + 16);
    v.src3 = u32(buf, ip + 20);
    v.dst0 = u32(buf, ip + 24);
    v.dst1 = u32(buf, ip + 28);
    v.dst2 = u32(buf, ip + 32);
    v.dst3 = u32(buf, ip + 36);
    tcp = p;
  } else return 1 + A.ip_malformed; // neither IPv4 nor IPv6

  if (tcp + 20 > end) return 1 + A.tcp_truncated;
  const dataOff = (buf[tcp + 12] >> 4) * 4;
  if (dataOff < 20 || tcp + dataOff > ipEnd) return 1 + A.tcp_malformed;
  if (tcp + dataOff > end) return 1 + A.tcp_truncated;
  v.srcPort = u16(buf, tcp);
  v.dstPort = u16(buf, tcp + 2);
  v.seq = u32(buf, tcp + 4);
  v.ack = u32(buf, tcp + 8);
  v.flags = buf[tcp + 13];
  const payload = tcp + dataOff;
  v.payloadOffset = payload;
  v.payloadLength = ipEnd - payload;
  v.payloadCaptured = Math.min(ipEnd, end) - payload;
  return DECODED_TCP;
}

/** Text form of an address held in a PacketView-like set of words: "1.2.3.4" or "2001:db8::1". */
export function formatAddress(version: number, w0: number, w1: number, w2: number, w3: number): string {
  if (version === 4) return `${w0 >>> 24}.${(w0 >>> 16) & 255}.${(w0 >>> 8) & 255}.${w0 & 255}`;
  const groups = [w0 >>> 16, w0 & 0xffff, w1 >>> 16, w1 & 0xffff, w2 >>> 16, w2 & 0xffff, w3 >>> 16, w3 & 0xffff];
  // RFC 5952: compress the longest run (length >= 2) of zero groups, lower-case hex.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * The address of an endpoint as `formatEndpoint` spells it, brackets kept: "[::1]:8080" gives
 * "[::1]", "10.0.0.1:80" gives "10.0.0.1"; a string with no port is returned as it is.
 */
export function endpointHost(endpoint: string): string {
  if (endpoint.startsWith('[')) {
    const close = endpoint.indexOf(']');
    return close > 0 ? endpoint.slice(0, close + 1) : endpoint;
  }
  const colon = endpoint.lastIndexOf(':');
  return colon > 0 ? endpoint.slice(0, colon) : endpoint;
}

/** "ip:port", with IPv6 addresses bracketed: "[::1]:8080". */
export function formatEndpoint(version: number, w0: number, w1: number, w2: number, w3: number, port: number): string {
  const a = formatAddress(version, w0, w1, w2, w3);
  return version === 6 ? `[${a}]:${port}` : `${a}:${port}`;
}
