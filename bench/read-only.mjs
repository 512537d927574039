#!/usr/bin/env node
// Raw read throughput of keepalive-exporter's capture reader alone: no
// decoding, no TCP/HTTP work, just a callback per packet.
//
//   node bench/read-only.mjs FILE
//
// Prints "packets=N seconds=S mpps=M" (or "skipped: reader not built" when
// dist/capture/file.js or its readCapture export does not exist yet).
import { performance } from 'node:perf_hooks';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const file = process.argv[2];
if (!file) {
  console.error('usage: node bench/read-only.mjs FILE');
  process.exit(2);
}

const readerUrl = new URL('../dist/capture/file.js', import.meta.url);
if (!existsSync(fileURLToPath(readerUrl))) {
  console.log('skipped: reader not built');
  process.exit(0);
}
const mod = await import(readerUrl.href);
if (typeof mod.readCapture !== 'function') {
  console.log('skipped: reader not built (dist/capture/file.js has no readCapture export)');
  process.exit(0);
}

let n = 0;
let bytes = 0;
const t0 = performance.now();
await mod.readCapture(file, {
  packet(linkType, data, offset, capLen, origLen, ts) {
    n++;
    bytes += capLen;
  },
});
const seconds = (performance.now() - t0) / 1000;
console.log(
  `packets=${n} seconds=${seconds.toFixed(3)} mpps=${(n / seconds / 1e6).toFixed(3)} ` +
    `captured_MB=${(bytes / 1e6).toFixed(1)}`,
);
