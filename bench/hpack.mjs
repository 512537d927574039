#!/usr/bin/env node
// HPACK decoding cost per header block, from the built decoder (dist/h2/hpack.js: build it first
// with `npx tsc -p tsconfig.build.json`), on real blocks of the committed h2c capture
// test/fixtures/h2/hpack/capture.pcap (nginx and Node.js encoders):
//
//   node bench/hpack.mjs [--ms N]
//
// Cases: a steady-state request (h2load -> nginx: every field a table reference) and response
// (nginx: static :status, three Huffman literals inserted each time) decoded over and over by one
// warm decoder; a whole Node.js connection replayed block by block (random-length headers that
// insert and evict on every block); a cold first request (a new decoder per block). Prints ns per
// block (median of 5 timed rounds of about --ms each, default 300) and blocks per second.
import { performance } from 'node:perf_hooks';
import { HpackDecoder } from '../dist/h2/hpack.js';
import { headerEvents } from '../test/fixtures/h2/hpack/blocks.mjs';

const msArg = process.argv.indexOf('--ms');
const ROUND_MS = msArg > 0 ? Number(process.argv[msArg + 1]) : 300;
const conns = headerEvents(new URL('../test/fixtures/h2/hpack/capture.pcap', import.meta.url).pathname);
const find = (server, n) => conns.find((c) => c.server === server && c.c2s.length === n);
const blocks = (evs) => evs.filter((e) => e.block).map((e) => e.block);

const h2load = find('127.0.0.1:18471', 20); // h2load -n 40 -c 2 -> nginx
const nodeConn = find('127.0.0.1:18472', 80); // the Node.js client's 80-request session -> Node.js
const curl = conns.find((c) => c.server === '127.0.0.1:18471' && c.c2s.length === 1);

let sink = 0;
function time(name, bytes, setup, run) {
  const rounds = [];
  let perRound = 1000;
  for (let r = 0; r < 6; r++) {
    const state = setup();
    let n = 0;
    const t0 = performance.now();
    let t;
    do {
      for (let i = 0; i < perRound; i++) sink += run(state);
      n += perRound;
      t = performance.now() - t0;
    } while (t < ROUND_MS);
    if (r > 0) rounds.push((t * 1e6) / n); // round 0 is warm-up
  }
  rounds.sort((a, b) => a - b);
  const ns = rounds[2];
  console.log(`${name.padEnd(58)} ${bytes.toFixed(0).padStart(5)} B  ${ns.toFixed(0).padStart(6)} ns/block  ${(1e9 / ns / 1e6).toFixed(2)} M blocks/s`);
}

console.log(`node ${process.version}, ${ROUND_MS} ms rounds, median of 5`);
{
  const [first, steady] = blocks(h2load.c2s);
  time('request, warm table (h2load -> nginx, all references)', steady.length, () => {
    const d = new HpackDecoder();
    d.decode(first, 0, first.length);
    return d;
  }, (d) => d.decode(steady, 0, steady.length).fields);
}
{
  const b = blocks(h2load.s2c)[1];
  time('response, warm table (nginx: 3 Huffman literals inserted)', b.length, () => new HpackDecoder(), (d) => d.decode(b, 0, b.length).status);
}
for (const [dir, label] of [['c2s', 'requests'], ['s2c', 'responses']]) {
  const bs = blocks(nodeConn[dir]);
  const avg = bs.reduce((a, b) => a + b.length, 0) / bs.length;
  time(`Node.js ${label}, whole connection replayed (insert + evict)`, avg, () => ({ d: new HpackDecoder(), i: 0 }), (s) => {
    if (s.i === bs.length) {
      s.d = new HpackDecoder();
      s.i = 0;
    }
    const b = bs[s.i++];
    return s.d.decode(b, 0, b.length).fields;
  });
}
{
  const b = blocks(curl.c2s)[0];
  time('first request, cold table (curl; new decoder per block)', b.length, () => null, () => new HpackDecoder().decode(b, 0, b.length).fields);
}
if (sink === 0.5) console.log(sink);
