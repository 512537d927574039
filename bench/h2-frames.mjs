#!/usr/bin/env node
// Throughput of the HTTP/2 frame splitter alone (src/h2/frame-stream.ts, from dist/): no TCP,
// no HPACK, a sink that only counts. The mix is one response's worth of frames repeated: a
// HEADERS (a 40-byte block), a 16 KiB DATA (the default max frame size) and a WINDOW_UPDATE,
// fed in pieces of a given size (1448: an Ethernet MSS, what a capture of a real link holds;
// 65483: a loopback segment), so most frames span pieces the way they do on the wire.
//
//   npx tsc -p tsconfig.build.json && node bench/h2-frames.mjs [piece bytes...]
//
// Prints one line per piece size: frames, seconds, frames/s, ns per frame, ns per piece (a
// `data` call), MB/s. Each figure is the best of 5 timed runs of 100 passes (a shared machine).
import { performance } from 'node:perf_hooks';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const url = new URL('../dist/h2/frame-stream.js', import.meta.url);
if (!existsSync(fileURLToPath(url))) {
  console.log('skipped: dist/h2/frame-stream.js not built (npx tsc -p tsconfig.build.json)');
  process.exit(0);
}
const { H2FrameStream } = await import(url.href);

function frame(type, flags, sid, payload) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(sid, 5);
  return Buffer.concat([h, payload]);
}

const ROUNDS = 4000; // responses in the stream: 12,000 frames, 66 MB
const parts = [frame(4, 0, 0, Buffer.alloc(12))];
for (let i = 0; i < ROUNDS; i++) {
  const sid = 1 + 2 * i;
  parts.push(frame(1, 4, sid, Buffer.alloc(40, 0x88)));
  parts.push(frame(0, 1, sid, Buffer.alloc(16384, 0x61)));
  const wu = Buffer.alloc(4);
  wu.writeUInt32BE(16384);
  parts.push(frame(8, 0, 0, wu));
}
const bytes = Buffer.concat(parts);
const framesPerPass = 1 + 3 * ROUNDS;

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
for (const piece of sizes.length ? sizes : [1448, 65483]) {
  const pieces = [];
  for (let p = 0; p < bytes.length; p += piece) pieces.push([p, Math.min(piece, bytes.length - p)]);
  let frames = 0;
  const sink = { frame() { frames++; }, anomaly(_d, name) { throw new Error(name); } };
  const pass = () => {
    const s = new H2FrameStream(1, sink, { role: 'server' });
    for (const [p, n] of pieces) s.data(bytes, p, n, 0);
    s.end(0);
  };
  for (let i = 0; i < 20; i++) pass(); // warm up (JIT)
  const passes = 100;
  let s = Infinity;
  for (let run = 0; run < 5; run++) {
    frames = 0;
    const t0 = performance.now();
    for (let i = 0; i < passes; i++) pass();
    s = Math.min(s, (performance.now() - t0) / 1000);
    if (frames !== framesPerPass * passes) throw new Error(`frames ${frames} != ${framesPerPass * passes}`);
  }
  console.log(
    `piece=${piece} frames=${frames} seconds=${s.toFixed(3)} frames_per_s=${Math.round(frames / s)} ` +
      `ns_per_frame=${((s * 1e9) / frames).toFixed(1)} ns_per_piece=${((s * 1e9) / (pieces.length * passes)).toFixed(1)} ` +
      `MB_per_s=${((bytes.length * passes) / s / 1e6).toFixed(0)}`,
  );
}
