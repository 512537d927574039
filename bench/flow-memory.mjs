#!/usr/bin/env node
/**
 * Heap per tracked flow, measured: feeds an Engine (from dist/, with the Exporter subscribed as
 * in the daemon) N flows of one kind and prints the retained heap per flow after a full GC.
 *
 *   node --expose-gc bench/flow-memory.mjs [N]
 *
 * Kinds: a SYN alone (a SYN flood), an idle keep-alive HTTP connection (handshake, request,
 * response, no close), the same over HTTP/2 in cleartext (preface, SETTINGS, one stream), over
 * TLS 1.2 without keys (hellos, Finished, one request and one response record), and a connection
 * holding 1 KiB of out-of-order data (a hole before it).
 * The packets are raw IPv4 (link type 101) built here, one client address per flow.
 */
import { Engine } from '../dist/conn/engine.js';
import { Exporter } from '../dist/metrics/exporter.js';
import { LINKTYPE_RAW, heldOutOfOrder, idleConnection, idleH2cConnection, idleTlsConnection, synOnly } from './flood-packets.mjs';

const N = Number(process.argv[2] ?? 100_000);
if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc bench/flow-memory.mjs');
  process.exit(2);
}

const kinds = {
  'SYN only': synOnly,
  'idle HTTP connection': idleConnection,
  'idle h2c connection': idleH2cConnection,
  'idle TLS connection': idleTlsConnection,
  'out-of-order 1 KiB held': heldOutOfOrder,
};

/** Heap and the buffers outside it (held segments are Buffers), after a full collection. */
function heap() {
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

console.log(`heap retained per flow, ${N.toLocaleString('en-US')} flows each, node ${process.version}`);
console.log('kind                        bytes/flow  (engine alone)');
for (const [name, make] of Object.entries(kinds)) {
  const row = [];
  for (const withExporter of [true, false]) {
    const engine = new Engine({ limits: { maxFlows: N + 10 } });
    let exporter = null;
    if (withExporter) {
      exporter = new Exporter({ maxServers: 500, sources: () => [] });
      engine.subscribe(exporter.forSource('bench'));
    }
    const before = heap();
    let t = 1_700_000_000;
    for (let i = 0; i < N; i++) {
      // Packets are garbage once fed: only the engine's state stays on the heap.
      for (const p of make(i)) engine.packet(LINKTYPE_RAW, p, 0, p.length, p.length, t);
      t += 0.000001;
    }
    const after = heap();
    if (engine.stats().flowsTracked !== N) throw new Error(`tracked ${engine.stats().flowsTracked} of ${N}`);
    row.push(Math.round((after - before) / N));
    // keep both alive until measured
    if (exporter && engine.stats().packets === 0) console.log('');
  }
  console.log(`${name.padEnd(28)}${String(row[0]).padStart(10)}  (${row[1]})`);
}
