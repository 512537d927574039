#!/usr/bin/env node
/**
 * Memory under a flood, with the default settings: a capture of SYNS never-answered SYNs (a SYN
 * flood) followed by CONNS keep-alive connections that never close, read by `analyze` and by the
 * daemon (`--pcap`), each as its own process. Prints peak RSS (the kernel's VmHWM), the flows
 * tracked and evicted, and whether a V8 heap capped at HEAP_CAP_MIB survives the same input.
 *
 *   node bench/flood.mjs [SYNS] [CONNS]        (defaults 1000000 and 200000; needs dist/)
 *
 * Goal (issue 9): peak RSS under 400 MB with defaults; a flood evicts and counts, never crashes.
 */
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { idleConnection, pcapHeader, pcapRecord, synOnly } from './flood-packets.mjs';

const SYNS = Number(process.argv[2] ?? 1_000_000);
const CONNS = Number(process.argv[3] ?? 200_000);
const HEAP_CAP_MIB = Number(process.env.HEAP_CAP_MIB ?? 192);
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

async function writeCapture(path) {
  const out = createWriteStream(path);
  const write = async (bufs) => {
    for (const b of bufs) if (!out.write(b)) await once(out, 'drain');
  };
  await write([pcapHeader()]);
  let t = 1_700_000_000;
  // SYNs and connections use disjoint client numbers so no SYN lands on a connection's 4-tuple.
  for (let i = 0; i < SYNS; i++, t += 0.000002) await write(pcapRecord(synOnly(i)[0], t));
  for (let i = 0; i < CONNS; i++, t += 0.00001) {
    for (const p of idleConnection(SYNS + i)) await write(pcapRecord(p, t));
  }
  out.end();
  await once(out, 'finish');
}

/** Runs a command, sampling its VmHWM; resolves with its exit, peak RSS (MB) and output. */
function measure(args, opts = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let hwm = 0;
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const sample = setInterval(async () => {
      try {
        const { readFileSync } = await import('node:fs');
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) hwm = Math.max(hwm, Number(m[1]));
        if (opts.onSample) opts.onSample(child);
      } catch { /* exited */ }
    }, 50);
    child.on('exit', (code, signal) => {
      clearInterval(sample);
      resolve({ code, signal, rssMB: hwm / 1024, out, err });
    });
    if (opts.child) opts.child(child);
  });
}

const dir = mkdtempSync(join(tmpdir(), 'kae-flood-'));
try {
  const file = join(dir, 'flood.pcap');
  process.stderr.write(`writing ${SYNS} SYNs and ${CONNS} open connections...\n`);
  await writeCapture(file);
  console.log(`flood capture: ${SYNS.toLocaleString('en-US')} SYNs, then ${CONNS.toLocaleString('en-US')} keep-alive connections never closed (${(statSync(file).size / 2 ** 20).toFixed(0)} MiB), node ${process.version}`);
  console.log('');
  console.log('| run | exit | peak RSS MB | flows evicted | connections opened | note |');
  console.log('| --- | ---: | ---: | ---: | ---: | --- |');

  const a = await measure([CLI, 'analyze', '--json', file]);
  const row = (name, r, stats, note = '') => console.log(`| ${name} | ${r.code ?? r.signal} | ${r.rssMB.toFixed(0)} | ${stats?.flowsEvicted ?? '-'} | ${stats?.connectionsOpened ?? '-'} | ${note} |`);
  const stats = (r) => { try { const j = JSON.parse(r.out); return { flowsEvicted: j.stats.flowsEvicted, connectionsOpened: j.totals.connections }; } catch { return null; } };
  row('analyze --json (defaults)', a, stats(a));

  const capped = await measure([`--max-old-space-size=${HEAP_CAP_MIB}`, CLI, 'analyze', '--json', file]);
  row(`analyze, V8 heap capped at ${HEAP_CAP_MIB} MiB`, capped, stats(capped), capped.code === 0 ? 'survived' : `failed: ${capped.err.split('\n').find((l) => /heap|memory/i.test(l)) ?? capped.err.slice(0, 120)}`);

  // The daemon replays the file and keeps serving; it is stopped once the file is read.
  const port = 20000 + Math.floor(Math.random() * 20000);
  const d = await measure([CLI, '--pcap', file, '--web.listen-address', `127.0.0.1:${port}`, '--log.level', 'info'], {
    child: (child) => {
      let log = '';
      child.stderr.on('data', (t) => {
        log += t;
        if (/read \d+ packets/.test(log)) { log = ''; setTimeout(() => child.kill('SIGTERM'), 500); }
      });
    },
  });
  row('daemon --pcap (defaults)', d, null, d.code === 0 ? 'read to the end, stopped by SIGTERM' : d.err.slice(-200));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
