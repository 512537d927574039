/**
 * Raw IPv4 TCP packets (link type 101) for the memory and flood benchmarks, and a pcap writer.
 * Client i is 10.x.y.z (from i), port 40000 + i % 20000; the server is 198.18.0.2:80.
 */
export const LINKTYPE_RAW = 101;
export const SYN = 0x02, ACK = 0x10, PSH = 0x08;

export function packet(i, toServer, seq, ack, flags, payload = Buffer.alloc(0)) {
  const b = Buffer.alloc(40 + payload.length);
  b[0] = 0x45;
  b.writeUInt16BE(b.length, 2);
  b[8] = 64;
  b[9] = 6;
  const client = [10, (i >>> 16) & 255, (i >>> 8) & 255, i & 255];
  const server = [198, 18, 0, 2];
  const cport = 40000 + (i % 20000);
  const [src, dst, sport, dport] = toServer ? [client, server, cport, 80] : [server, client, 80, cport];
  b.set(src, 12);
  b.set(dst, 16);
  b.writeUInt16BE(sport, 20);
  b.writeUInt16BE(dport, 22);
  b.writeUInt32BE(seq >>> 0, 24);
  b.writeUInt32BE(ack >>> 0, 28);
  b[32] = 5 << 4;
  b[33] = flags;
  b.writeUInt16BE(65535, 34);
  payload.copy(b, 40);
  return b;
}

export const REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\n\r\n');
export const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok');

/** A SYN that is never answered (a SYN flood). */
export const synOnly = (i) => [packet(i, true, 1000, 0, SYN)];

/** A keep-alive connection that served one request and stays open. */
export const idleConnection = (i) => [
  packet(i, true, 1000, 0, SYN),
  packet(i, false, 5000, 1001, SYN | ACK),
  packet(i, true, 1001, 5001, ACK),
  packet(i, true, 1001, 5001, ACK | PSH, REQUEST),
  packet(i, false, 5001, 1001 + REQUEST.length, ACK | PSH, RESPONSE),
  packet(i, true, 1001 + REQUEST.length, 5001 + RESPONSE.length, ACK),
];

// h2c: the client preface + SETTINGS, the server's SETTINGS, one stream (HEADERS :method GET
// :scheme http :path /, END_STREAM) answered with HEADERS :status 200 + DATA "ok" END_STREAM.
const h2frame = (type, flags, stream, payload) => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type; h[4] = flags; h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
};
export const H2_CLIENT = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
  h2frame(4, 0, 0, Buffer.alloc(0)),
  h2frame(1, 0x05, 1, Buffer.from([0x82, 0x86, 0x84])),
]);
export const H2_SERVER = Buffer.concat([
  h2frame(4, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100])),
  h2frame(4, 0x01, 0, Buffer.alloc(0)),
  h2frame(1, 0x04, 1, Buffer.from([0x88])),
  h2frame(0, 0x01, 1, Buffer.from('ok')),
]);

/** An HTTP/2 (h2c) connection that served one stream and stays open. */
export const idleH2cConnection = (i) => [
  packet(i, true, 1000, 0, SYN),
  packet(i, false, 5000, 1001, SYN | ACK),
  packet(i, true, 1001, 5001, ACK),
  packet(i, true, 1001, 5001, ACK | PSH, H2_CLIENT),
  packet(i, false, 5001, 1001 + H2_CLIENT.length, ACK | PSH, H2_SERVER),
  packet(i, true, 1001 + H2_CLIENT.length, 5001 + H2_SERVER.length, ACK),
];

// TLS 1.2 without keys: ClientHello (ALPN http/1.1), ServerHello (ECDHE-RSA-AES128-GCM), both
// sides' ChangeCipherSpec and encrypted Finished, one request and one response record.
const tlsRecord = (type, body) => {
  const h = Buffer.from([type, 3, 3, 0, 0]);
  h.writeUInt16BE(body.length, 3);
  return Buffer.concat([h, body]);
};
const handshakeMsg = (type, body) => {
  const h = Buffer.alloc(4);
  h[0] = type;
  h.writeUIntBE(body.length, 1, 3);
  return Buffer.concat([h, body]);
};
const alpn = Buffer.from([0, 16, 0, 11, 0, 9, 8, ...Buffer.from('http/1.1')]);
const CLIENT_HELLO = tlsRecord(22, handshakeMsg(1, Buffer.concat([
  Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([0]), Buffer.from([0, 2, 0xc0, 0x2f]), Buffer.from([1, 0]),
  Buffer.from([0, alpn.length]), alpn,
])));
const SERVER_HELLO = tlsRecord(22, handshakeMsg(2, Buffer.concat([
  Buffer.from([3, 3]), Buffer.alloc(32, 9), Buffer.from([0]), Buffer.from([0xc0, 0x2f]), Buffer.from([0]), Buffer.from([0, 0]),
])));
const CCS = tlsRecord(20, Buffer.from([1]));
export const TLS_CLIENT = Buffer.concat([CLIENT_HELLO]);
export const TLS_CLIENT_2 = Buffer.concat([CCS, tlsRecord(22, Buffer.alloc(40, 1)), tlsRecord(23, Buffer.alloc(100, 2))]);
export const TLS_SERVER = Buffer.concat([SERVER_HELLO, CCS, tlsRecord(22, Buffer.alloc(40, 3))]);
export const TLS_SERVER_2 = tlsRecord(23, Buffer.alloc(300, 4));

/** A TLS 1.2 connection (not decrypted) that carried one request run and its answer and stays open. */
export const idleTlsConnection = (i) => {
  const c1 = 1001 + TLS_CLIENT.length;
  const s1 = 5001 + TLS_SERVER.length;
  return [
    packet(i, true, 1000, 0, SYN),
    packet(i, false, 5000, 1001, SYN | ACK),
    packet(i, true, 1001, 5001, ACK),
    packet(i, true, 1001, 5001, ACK | PSH, TLS_CLIENT),
    packet(i, false, 5001, c1, ACK | PSH, TLS_SERVER),
    packet(i, true, c1, s1, ACK | PSH, TLS_CLIENT_2),
    packet(i, false, s1, c1 + TLS_CLIENT_2.length, ACK | PSH, TLS_SERVER_2),
    packet(i, true, c1 + TLS_CLIENT_2.length, s1 + TLS_SERVER_2.length, ACK),
  ];
};

/** A connection holding 1 KiB out of order: the 100 bytes before it were never captured. */
export const heldOutOfOrder = (i) => [
  packet(i, true, 1000, 0, SYN),
  packet(i, false, 5000, 1001, SYN | ACK),
  packet(i, true, 1001, 5001, ACK),
  packet(i, true, 1101, 5001, ACK | PSH, Buffer.alloc(1024, 0x41)),
];

export function pcapHeader() {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(262144, 16);
  h.writeUInt32LE(LINKTYPE_RAW, 20);
  return h;
}

export function pcapRecord(pkt, ts) {
  const r = Buffer.alloc(16);
  const sec = Math.floor(ts);
  r.writeUInt32LE(sec, 0);
  r.writeUInt32LE(Math.round((ts - sec) * 1e6), 4);
  r.writeUInt32LE(pkt.length, 8);
  r.writeUInt32LE(pkt.length, 12);
  return [r, pkt];
}
