#!/usr/bin/env node
// Baseline: the `pcap-parser` npm package (devDependency) counting packets.
//
//   node bench/pcap-parser-only.mjs FILE [default|hwm]
//
//   default  pcapp.parse(FILE): the package opens the file itself
//            (fs.createReadStream with Node's default 64 KiB chunks)
//   hwm      pcapp.parse(fs.createReadStream(FILE, { highWaterMark: 1 MiB }))
//
// Counts 'packet' events (the usage from the package's README). Prints
// "packets=N seconds=S mpps=M". pcap-parser only reads classic pcap 2.4.
import { createReadStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import pcapp from 'pcap-parser';

const [file, mode = 'default'] = process.argv.slice(2);
if (!file || (mode !== 'default' && mode !== 'hwm')) {
  console.error('usage: node bench/pcap-parser-only.mjs FILE [default|hwm]');
  process.exit(2);
}

const t0 = performance.now();
const input = mode === 'hwm' ? createReadStream(file, { highWaterMark: 1 << 20 }) : file;
const parser = pcapp.parse(input);
let n = 0;
let failed = false;
parser.on('packet', () => {
  n++;
});
parser.on('error', (err) => {
  failed = true;
  console.error(`pcap-parser: ${err.message}`);
  process.exitCode = 1;
});
parser.on('end', () => {
  if (failed) return;
  const seconds = (performance.now() - t0) / 1000;
  console.log(`packets=${n} seconds=${seconds.toFixed(3)} mpps=${(n / seconds / 1e6).toFixed(3)} mode=${mode}`);
});
