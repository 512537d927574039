#!/usr/bin/env node
// Fast packet counter for classic pcap files (any byte order, us or ns
// timestamps). Walks the 16-byte record headers only and tolerates a
// truncated last record, so it can be pointed at a file that tcpdump is still
// writing. Used by generate-capture.sh to decide whether more traffic is
// needed. Prints the packet count on stdout.
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: node bench/count-packets.mjs FILE.pcap');
  process.exit(2);
}

const fd = openSync(file, 'r');
const size = fstatSync(fd).size;
const hdr = Buffer.alloc(24);
if (readSync(fd, hdr, 0, 24, 0) < 24) {
  console.log(0);
  process.exit(0);
}
const magic = hdr.readUInt32LE(0);
let le;
if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) le = true;
else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) le = false;
else {
  console.error(`count-packets: not a classic pcap file (magic 0x${magic.toString(16)})`);
  process.exit(1);
}

const CHUNK = 8 << 20;
const buf = Buffer.allocUnsafe(CHUNK);
let pos = 24; // file offset of the next record header
let n = 0;
while (pos + 16 <= size) {
  // Read a window that starts at the next record header.
  const got = readSync(fd, buf, 0, Math.min(CHUNK, size - pos), pos);
  let off = 0;
  while (off + 16 <= got) {
    const capLen = le ? buf.readUInt32LE(off + 8) : buf.readUInt32BE(off + 8);
    const end = pos + off + 16 + capLen;
    if (end > size) break; // truncated tail record
    n++;
    off += 16 + capLen;
  }
  if (off === 0) break; // a record larger than the window or a cut-off tail
  pos += off;
}
closeSync(fd);
console.log(n);
