/**
 * PROXY protocol headers (HAProxy's spec, versions 1 and 2) sent first to the upstream, so it
 * still sees the real client address behind the tap.
 */
import { isIPv4 } from 'node:net';
import { addressWords, type Endpoint } from '../conn/stream-tap.js';

export type ProxyProtocol = 'v1' | 'v2';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function plain(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1] : address;
}

export function proxyProtocolHeader(version: ProxyProtocol, source: Endpoint, destination: Endpoint): Buffer {
  const src = plain(source.address);
  const dst = plain(destination.address);
  const v4 = isIPv4(src) && isIPv4(dst);
  if (version === 'v1') {
    return Buffer.from(`PROXY ${v4 ? 'TCP4' : 'TCP6'} ${src} ${dst} ${source.port} ${destination.port}\r\n`, 'latin1');
  }
  const addrLen = v4 ? 12 : 36;
  const b = Buffer.alloc(16 + addrLen);
  V2_SIGNATURE.copy(b, 0);
  b[12] = 0x21; // version 2, PROXY command
  b[13] = v4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  b.writeUInt16BE(addrLen, 14);
  let p = 16;
  const write = (address: string): void => {
    const { words } = addressWords(address);
    if (v4) { b.writeUInt32BE(words[0], p); p += 4; return; }
    let w = words;
    // an IPv4 address in an IPv6 header is written IPv4-mapped
    if (isIPv4(address)) w = [0, 0, 0xffff, words[0]];
    for (const x of w) { b.writeUInt32BE(x >>> 0, p); p += 4; }
  };
  write(src);
  write(dst);
  b.writeUInt16BE(source.port, p);
  b.writeUInt16BE(destination.port, p + 2);
  return b;
}
