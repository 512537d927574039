import { describe, expect, it } from 'vitest';
import {
  DECODED_TCP, LINKTYPE, TCP_ACK, TCP_PSH, TCP_SYN, decodePacket, formatAddress, formatEndpoint, newPacketView, type PacketView,
} from '../../src/decode/packet.js';
import { ANOMALIES, type Anomaly } from '../../src/config/anomalies.js';
import {
  AF, ETHERTYPE, IPPROTO, addressWords, frame, ipv4Packet, ipv6Packet, linkHeaderLength, tcpSegment, udpDatagram,
  type FrameOptions, type Ipv6ExtensionHeader, type TcpSegmentOptions,
} from '../helpers/packets.js';

/** 'tcp' or the anomaly name a decode result stands for. */
function codeName(code: number): 'tcp' | Anomaly {
  return code === DECODED_TCP ? 'tcp' : ANOMALIES[code - 1];
}

/** Garbage before the frame: decoders must work at any offset of the record's buffer. */
const LEAD = 7;

/**
 * Decodes `frameBytes` (cut to `capLen`) placed at offset LEAD of a larger buffer. The buffer
 * ends exactly at the captured length, so any read past it throws instead of going unnoticed.
 */
function decode(linkType: number, frameBytes: Buffer, capLen = frameBytes.length): { code: 'tcp' | Anomaly; v: PacketView } {
  const buf = Buffer.concat([Buffer.alloc(LEAD, 0xee), frameBytes.subarray(0, capLen)]);
  const v = newPacketView();
  const code = codeName(decodePacket(linkType, buf, LEAD, capLen, v));
  return { code, v };
}

const V4: TcpSegmentOptions = {
  src: '192.0.2.10', dst: '198.51.100.20', sport: 51000, dport: 80, seq: 0xfedcba98, ack: 0x01234567, flags: 'PA',
  payload: 'GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n',
};
const V6: TcpSegmentOptions = { ...V4, src: '2001:db8::10', dst: '2001:db8:0:1::20', sport: 443, dport: 52000, flags: 'SA', payload: 'x'.repeat(33) };
const PAYLOAD_LEN = (V4.payload as string).length;

function expectSegment(v: PacketView, seg: TcpSegmentOptions, payloadOffset: number, payloadLength: number): void {
  const version = seg.src.includes(':') ? 6 : 4;
  const [s0, s1, s2, s3] = addressWords(seg.src);
  const [d0, d1, d2, d3] = addressWords(seg.dst);
  expect(v).toEqual({
    ipVersion: version,
    src0: s0, src1: s1, src2: s2, src3: s3,
    dst0: d0, dst1: d1, dst2: d2, dst3: d3,
    srcPort: seg.sport, dstPort: seg.dport, seq: seg.seq, ack: seg.ack,
    flags: seg.flags === 'PA' ? TCP_PSH | TCP_ACK : TCP_SYN | TCP_ACK,
    payloadOffset, payloadCaptured: payloadLength, payloadLength,
  });
}

interface LinkCase {
  name: string;
  linkType: number;
  opts?: FrameOptions;
  versions: (4 | 6)[];
}

const LINKS: LinkCase[] = [
  { name: 'Ethernet', linkType: LINKTYPE.ETHERNET, versions: [4, 6] },
  { name: 'Ethernet + 802.1Q', linkType: LINKTYPE.ETHERNET, opts: { vlan: [100] }, versions: [4, 6] },
  { name: 'Ethernet + QinQ (0x88a8, 0x8100)', linkType: LINKTYPE.ETHERNET, opts: { vlan: [{ id: 10, tpid: ETHERTYPE.QINQ }, 20] }, versions: [4, 6] },
  { name: 'Ethernet + QinQ (0x9100)', linkType: LINKTYPE.ETHERNET, opts: { vlan: [{ id: 10, tpid: ETHERTYPE.QINQ_OLD }, 20] }, versions: [4] },
  { name: 'Ethernet + three tags', linkType: LINKTYPE.ETHERNET, opts: { vlan: [{ id: 1, tpid: ETHERTYPE.QINQ }, 2, 3] }, versions: [4] },
  { name: 'Linux SLL', linkType: LINKTYPE.LINUX_SLL, versions: [4, 6] },
  { name: 'Linux SLL2', linkType: LINKTYPE.LINUX_SLL2, versions: [4, 6] },
  { name: 'RAW (101)', linkType: LINKTYPE.RAW, versions: [4, 6] },
  { name: 'RAW (12)', linkType: LINKTYPE.RAW_OPENBSD, versions: [4] },
  { name: 'RAW (14)', linkType: LINKTYPE.RAW_14, versions: [6] },
  { name: 'IPV4 (228)', linkType: LINKTYPE.IPV4, versions: [4] },
  { name: 'IPV6 (229)', linkType: LINKTYPE.IPV6, versions: [6] },
  { name: 'NULL little-endian', linkType: LINKTYPE.NULL, versions: [4, 6] },
  { name: 'NULL big-endian', linkType: LINKTYPE.NULL, opts: { bigEndian: true }, versions: [4, 6] },
  { name: 'NULL, Linux AF_INET6 (10)', linkType: LINKTYPE.NULL, opts: { family: AF.INET6_LINUX }, versions: [6] },
  { name: 'NULL, FreeBSD AF_INET6 (28)', linkType: LINKTYPE.NULL, opts: { family: AF.INET6_FREEBSD }, versions: [6] },
  { name: 'NULL, macOS AF_INET6 (30), big-endian', linkType: LINKTYPE.NULL, opts: { family: AF.INET6_DARWIN, bigEndian: true }, versions: [6] },
  { name: 'LOOP', linkType: LINKTYPE.LOOP, versions: [4, 6] },
];

describe('decodePacket: link types', () => {
  for (const l of LINKS) {
    for (const version of l.versions) {
      it(`${l.name}, IPv${version}: ports, sequence numbers, flags, payload offset and length`, () => {
        const seg = version === 4 ? V4 : V6;
        const ip = tcpSegment(seg);
        const { code, v } = decode(l.linkType, frame(l.linkType, ip, l.opts));
        expect(code).toBe('tcp');
        const payloadLen = Buffer.byteLength(seg.payload as string, 'latin1');
        expectSegment(v, seg, LEAD + linkHeaderLength(l.linkType, l.opts) + (version === 4 ? 20 : 40) + 20, payloadLen);
      });
    }
  }

  it('refuses an unsupported link type (802.11)', () => {
    expect(decode(105, frame(LINKTYPE.RAW, tcpSegment(V4))).code).toBe('link_type_unsupported');
  });

  it('reuses the view: an IPv4 packet after an IPv6 one clears the upper address words', () => {
    const v = newPacketView();
    const six = tcpSegment(V6);
    const four = tcpSegment(V4);
    expect(decodePacket(LINKTYPE.RAW, six, 0, six.length, v)).toBe(DECODED_TCP);
    expect(decodePacket(LINKTYPE.RAW, four, 0, four.length, v)).toBe(DECODED_TCP);
    expect([v.ipVersion, v.src1, v.src2, v.src3, v.dst1, v.dst2, v.dst3]).toEqual([4, 0, 0, 0, 0, 0, 0]);
  });
});

describe('decodePacket: network and transport layers', () => {
  it('skips IPv4 options', () => {
    // NOP, NOP, then a 6-byte Timestamp-ish option padded by the builder: 8 option bytes.
    const ipOptions = Buffer.from([1, 1, 0x44, 6, 5, 0, 0, 0]);
    const { code, v } = decode(LINKTYPE.ETHERNET, frame(LINKTYPE.ETHERNET, tcpSegment({ ...V4, ipOptions })));
    expect(code).toBe('tcp');
    expectSegment(v, V4, LEAD + 14 + 28 + 20, PAYLOAD_LEN);
  });

  it('skips TCP options', () => {
    const tcpOptions = Buffer.from([2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0]); // MSS, NOP, wscale, SACK-permitted
    const { code, v } = decode(LINKTYPE.RAW, tcpSegment({ ...V4, tcpOptions }));
    expect(code).toBe('tcp');
    expect(v.payloadOffset).toBe(LEAD + 20 + 32);
    expect(v.payloadLength).toBe(PAYLOAD_LEN);
  });

  it('counts a first IPv4 fragment (MF set, offset 0) as ip_fragment', () => {
    const ip = tcpSegment({ ...V4, ipv4: { dontFragment: false, moreFragments: true } });
    expect(decode(LINKTYPE.ETHERNET, frame(LINKTYPE.ETHERNET, ip)).code).toBe('ip_fragment');
  });

  it('counts a later IPv4 fragment (offset > 0, MF clear) as ip_fragment', () => {
    const ip = ipv4Packet({ src: '10.0.0.1', dst: '10.0.0.2', protocol: IPPROTO.TCP, payload: Buffer.alloc(100), dontFragment: false, fragmentOffset: 1480 });
    expect(decode(LINKTYPE.RAW, ip).code).toBe('ip_fragment');
  });

  it('accepts the Don\'t Fragment bit alone', () => {
    expect(decode(LINKTYPE.RAW, tcpSegment({ ...V4, ipv4: { dontFragment: true } })).code).toBe('tcp');
  });

  it('skips UDP as not_tcp, over IPv4 and IPv6', () => {
    expect(decode(LINKTYPE.ETHERNET, frame(LINKTYPE.ETHERNET, udpDatagram({ src: '10.0.0.1', dst: '10.0.0.2', sport: 53, dport: 53, payload: 'q' }))).code).toBe('not_tcp');
    expect(decode(LINKTYPE.LINUX_SLL2, frame(LINKTYPE.LINUX_SLL2, udpDatagram({ src: '::1', dst: '::2', sport: 53, dport: 53 }))).code).toBe('not_tcp');
  });

  it('skips ARP (by ethertype) as not_tcp on Ethernet, SLL and SLL2', () => {
    const arp = Buffer.alloc(28, 1);
    for (const lt of [LINKTYPE.ETHERNET, LINKTYPE.LINUX_SLL, LINKTYPE.LINUX_SLL2]) {
      expect(decode(lt, frame(lt, arp, { ethertype: ETHERTYPE.ARP })).code).toBe('not_tcp');
    }
    expect(decode(LINKTYPE.ETHERNET, frame(LINKTYPE.ETHERNET, arp, { ethertype: ETHERTYPE.ARP, vlan: [5] })).code).toBe('not_tcp');
  });

  it('skips a NULL/LOOP frame of another address family as not_tcp', () => {
    const ip = tcpSegment(V4);
    expect(decode(LINKTYPE.NULL, frame(LINKTYPE.NULL, ip, { family: 7 })).code).toBe('not_tcp');
    expect(decode(LINKTYPE.LOOP, frame(LINKTYPE.LOOP, ip, { family: 7 })).code).toBe('not_tcp');
  });

  it('finds TCP behind IPv6 hop-by-hop and destination options headers', () => {
    const ext: Ipv6ExtensionHeader[] = [
      { type: IPPROTO.HOPOPTS, data: Buffer.from([5, 2, 0, 0, 1, 0]) }, // router alert, PadN: 8 bytes
      { type: IPPROTO.DSTOPTS, data: Buffer.alloc(14) }, // 16 bytes
    ];
    const { code, v } = decode(LINKTYPE.ETHERNET, frame(LINKTYPE.ETHERNET, tcpSegment({ ...V6, ipv6ExtensionHeaders: ext })));
    expect(code).toBe('tcp');
    expectSegment(v, V6, LEAD + 14 + 40 + 8 + 16 + 20, 33);
  });

  it('finds TCP behind IPv6 routing and authentication headers', () => {
    const ext: Ipv6ExtensionHeader[] = [
      { type: IPPROTO.ROUTING, data: Buffer.alloc(6) }, // 8 bytes
      { type: IPPROTO.AH, data: Buffer.alloc(22) }, // 24 bytes: length field in 4-byte units minus 2
    ];
    const { code, v } = decode(LINKTYPE.RAW, tcpSegment({ ...V6, ipv6ExtensionHeaders: ext }));
    expect(code).toBe('tcp');
    expect(v.payloadOffset).toBe(LEAD + 40 + 8 + 24 + 20);
    expect(v.payloadLength).toBe(33);
  });

  it('counts an IPv6 fragment header as ip_fragment', () => {
    const ip = tcpSegment({ ...V6, ipv6ExtensionHeaders: [{ type: IPPROTO.HOPOPTS }, { type: IPPROTO.FRAGMENT }] });
    expect(decode(LINKTYPE.RAW, ip).code).toBe('ip_fragment');
  });

  it('skips IPv6 ESP and "no next header" as not_tcp', () => {
    for (const nextHeader of [50, IPPROTO.NONE]) {
      const ip = ipv6Packet({ src: '::1', dst: '::2', nextHeader, payload: Buffer.alloc(40) });
      expect(decode(LINKTYPE.RAW, ip).code).toBe('not_tcp');
    }
  });

  it('does not count Ethernet padding as payload: the IP total length bounds it', () => {
    const syn = tcpSegment({ ...V4, flags: 'S', payload: '' });
    const f = frame(LINKTYPE.ETHERNET, syn, { padToMinimum: true });
    expect(f.length).toBe(60);
    const { code, v } = decode(LINKTYPE.ETHERNET, f);
    expect(code).toBe('tcp');
    expect([v.payloadLength, v.payloadCaptured]).toEqual([0, 0]);

    const one = frame(LINKTYPE.ETHERNET, tcpSegment({ ...V4, payload: 'Z' }), { padToMinimum: true, trailer: Buffer.from([0xde, 0xad, 0xbe, 0xef]) }); // + FCS
    const r = decode(LINKTYPE.ETHERNET, one);
    expect([r.code, r.v.payloadLength, r.v.payloadCaptured]).toEqual(['tcp', 1, 1]);
  });

  it('does not count bytes after the IPv6 payload length as payload', () => {
    const f = frame(LINKTYPE.ETHERNET, tcpSegment({ ...V6, payload: 'ab' }), { trailer: Buffer.alloc(10, 0x55) });
    const { v } = decode(LINKTYPE.ETHERNET, f);
    expect([v.payloadLength, v.payloadCaptured]).toEqual([2, 2]);
  });

  it('reports a snaplen-cut packet with fewer payload bytes captured than on the wire', () => {
    const f = frame(LINKTYPE.ETHERNET, tcpSegment(V4));
    const { code, v } = decode(LINKTYPE.ETHERNET, f, 14 + 20 + 20 + 10);
    expect(code).toBe('tcp');
    expect(v.payloadLength).toBe(PAYLOAD_LEN);
    expect(v.payloadCaptured).toBe(10);
    expect(v.payloadCaptured).toBeLessThan(v.payloadLength);
  });

  it('trusts the capture when the IPv4 total length is 0 (TSO)', () => {
    const ip = tcpSegment({ ...V4, ipv4: { totalLength: 0 } });
    const { code, v } = decode(LINKTYPE.RAW, ip);
    expect(code).toBe('tcp');
    expect(v.payloadLength).toBe(PAYLOAD_LEN);
  });

  it('reports an IPv4 header length below 5 words as ip_malformed', () => {
    for (const ihl of [0, 1, 4]) {
      expect(decode(LINKTYPE.RAW, tcpSegment({ ...V4, ipv4: { ihl } })).code, `IHL ${ihl}`).toBe('ip_malformed');
    }
  });

  it('reports an IPv4 total length shorter than its header as ip_malformed', () => {
    expect(decode(LINKTYPE.RAW, tcpSegment({ ...V4, ipv4: { totalLength: 19 } })).code).toBe('ip_malformed');
  });

  it('reports an IP version other than 4 or 6 as ip_malformed', () => {
    const ip = tcpSegment(V4);
    ip[0] = 0x55;
    expect(decode(LINKTYPE.RAW, ip).code).toBe('ip_malformed');
    expect(decode(LINKTYPE.ETHERNET, frame(LINKTYPE.ETHERNET, ip, { ethertype: ETHERTYPE.IPV4 })).code).toBe('ip_malformed');
  });

  it('reports a TCP data offset below 5 words as tcp_malformed', () => {
    for (const dataOffset of [0, 4]) {
      expect(decode(LINKTYPE.RAW, tcpSegment({ ...V4, dataOffset })).code, `data offset ${dataOffset}`).toBe('tcp_malformed');
      expect(decode(LINKTYPE.RAW, tcpSegment({ ...V6, dataOffset })).code, `data offset ${dataOffset}`).toBe('tcp_malformed');
    }
  });

  it('reports a TCP header longer than the IP packet as tcp_malformed', () => {
    expect(decode(LINKTYPE.RAW, tcpSegment({ ...V4, payload: '', dataOffset: 15 })).code).toBe('tcp_malformed');
  });
});

// ---------------------------------------------------------------------------------------------

interface TruncCase {
  name: string;
  linkType: number;
  opts?: FrameOptions;
  seg: TcpSegmentOptions;
  /** Bytes of IP header, including options or extension headers. */
  ipHeader: number;
  tcpHeader: number;
}

const EXT: Ipv6ExtensionHeader[] = [{ type: IPPROTO.HOPOPTS, data: Buffer.alloc(14) }, { type: IPPROTO.DSTOPTS, data: Buffer.alloc(22) }];
const TCP_OPTS = Buffer.from([2, 4, 5, 0xb4, 1, 1, 4, 2]);

const TRUNC: TruncCase[] = [
  ...LINKS.flatMap((l) => l.versions.map((version) => ({
    name: `${l.name}, IPv${version}`, linkType: l.linkType, opts: l.opts, seg: version === 4 ? V4 : V6,
    ipHeader: version === 4 ? 20 : 40, tcpHeader: 20,
  }))),
  { name: 'Ethernet, IPv4 and TCP options', linkType: LINKTYPE.ETHERNET, seg: { ...V4, ipOptions: Buffer.from([1, 1, 1, 0]), tcpOptions: TCP_OPTS }, ipHeader: 24, tcpHeader: 28 },
  { name: 'SLL, IPv6 extension headers', linkType: LINKTYPE.LINUX_SLL, seg: { ...V6, ipv6ExtensionHeaders: EXT, tcpOptions: TCP_OPTS }, ipHeader: 40 + 16 + 24, tcpHeader: 28 },
];

describe('decodePacket: every truncation', () => {
  for (const t of TRUNC) {
    it(`${t.name}: never throws, a truncated code below the TCP header, a snaplen cut after it`, () => {
      const f = frame(t.linkType, tcpSegment(t.seg), t.opts);
      const link = linkHeaderLength(t.linkType, t.opts);
      const payloadAt = link + t.ipHeader + t.tcpHeader;
      const payloadLen = f.length - payloadAt;
      for (let n = 0; n <= f.length; n++) {
        let got: { code: string; v: PacketView } | undefined;
        expect(() => { got = decode(t.linkType, f, n); }, `length ${n}`).not.toThrow();
        const { code, v } = got!;
        const expected = n < link ? 'link_truncated' : n < link + t.ipHeader ? 'ip_truncated' : n < payloadAt ? 'tcp_truncated' : 'tcp';
        expect(code, `length ${n}`).toBe(expected);
        if (code === 'tcp') {
          expect(v.payloadOffset).toBe(LEAD + payloadAt);
          expect(v.payloadLength).toBe(payloadLen);
          expect(v.payloadCaptured, `length ${n}`).toBe(n - payloadAt);
        }
        // Bytes past the captured length are never looked at.
        const padded = Buffer.concat([Buffer.alloc(LEAD, 0xee), f.subarray(0, n), Buffer.alloc(64, 0x45)]);
        expect(codeName(decodePacket(t.linkType, padded, LEAD, n, newPacketView())), `length ${n} with bytes after it`).toBe(code);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('formatAddress / formatEndpoint', () => {
  const six = (text: string) => formatAddress(6, ...addressWords(text));

  it('prints IPv4 dotted quads, including high first octets', () => {
    expect(formatAddress(4, ...addressWords('192.168.1.200'))).toBe('192.168.1.200');
    expect(formatAddress(4, ...addressWords('0.0.0.0'))).toBe('0.0.0.0');
    expect(formatAddress(4, ...addressWords('255.255.255.255'))).toBe('255.255.255.255');
  });

  it('compresses IPv6 per RFC 5952', () => {
    expect(six('0:0:0:0:0:0:0:1')).toBe('::1');
    expect(six('0:0:0:0:0:0:0:0')).toBe('::');
    expect(six('2001:0db8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(six('1:0:0:0:0:0:0:0')).toBe('1::');
    expect(six('fe80:0:0:0:abcd:0:0:1')).toBe('fe80::abcd:0:0:1'); // longest run wins
  });

  it('does not compress when there is no run of two zero groups', () => {
    expect(six('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2:3:4:5:6');
    expect(six('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1'); // a single 0 group stays
  });

  it('compresses the first of two equally long runs of zeros', () => {
    expect(six('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1');
    expect(six('1:0:0:2:3:0:0:4')).toBe('1::2:3:0:0:4');
  });

  it('prints lower-case hex without leading zeros', () => {
    expect(six('2001:0DB8:00AB:000C:0:0:0:0FFF')).toBe('2001:db8:ab:c::fff');
  });

  it('brackets IPv6 endpoints and leaves IPv4 ones bare', () => {
    expect(formatEndpoint(6, ...addressWords('::1'), 8080)).toBe('[::1]:8080');
    expect(formatEndpoint(6, ...addressWords('2001:db8::1'), 443)).toBe('[2001:db8::1]:443');
    expect(formatEndpoint(4, ...addressWords('10.1.2.3'), 80)).toBe('10.1.2.3:80');
  });
});
