// Delivery latency of the live capture, for bench/live-capture.sh.
//
//   node bench/live-latency.mjs METRICS_URL TARGET TIMEOUT_MS -- CMD [ARGS...]
//
// Reads the sum of keepalive_requests_total from METRICS_URL, runs CMD (which
// sends TARGET requests on an otherwise idle link), and polls every 20 ms until
// the sum has grown by TARGET or TIMEOUT_MS has passed since CMD ended. Prints
// one JSON line: {"cmdMs", "delayMs" (from CMD's end to the count, null when
// not reached), "seen" (requests counted by then)}.
import { spawn } from 'node:child_process';

const [url, targetArg, timeoutArg, sep, ...cmd] = process.argv.slice(2);
if (!url || sep !== '--' || cmd.length === 0) {
  console.error('usage: node bench/live-latency.mjs METRICS_URL TARGET TIMEOUT_MS -- CMD [ARGS...]');
  process.exit(2);
}
const target = Number(targetArg);
const timeoutMs = Number(timeoutArg);

async function requests() {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('keepalive_requests_total{') || line.startsWith('keepalive_requests_total ')) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

const base = await requests();
const t0 = performance.now();
await new Promise((resolve, reject) => {
  const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  child.on('error', reject);
  child.on('close', resolve);
});
const tCmd = performance.now();
let seen = 0;
let delayMs = null;
while (performance.now() - tCmd < timeoutMs) {
  seen = (await requests()) - base;
  if (seen >= target) {
    delayMs = performance.now() - tCmd;
    break;
  }
  await new Promise((r) => setTimeout(r, 20));
}
console.log(JSON.stringify({ cmdMs: Math.round(tCmd - t0), delayMs: delayMs === null ? null : Math.round(delayMs), seen }));
