#!/usr/bin/env node
/**
 * keepalive-exporter command line. A user mistake gets one line saying what is wrong and how to
 * fix it, and a non-zero exit; never a stack trace.
 */
import { runAnalyze, ANALYZE_HELP } from './analyze.js';
import { daemonHelp } from '../config/daemon.js';
import { UsageError, VERSION, unknownFlag } from './common.js';
import { versionText } from './build-info.js';

const HELP = `keepalive-exporter ${VERSION}: measures HTTP keep-alive (persistent connection) reuse
and explains why connections close.

Usage:
  keepalive-exporter [run] [options]
      the daemon: capture, serve Prometheus metrics
  keepalive-exporter analyze FILE [options]
      report on a capture file (pcap, pcapng, .gz, - for stdin)
  keepalive-exporter --help | --version

Options of the daemon (flags, environment variables, or a --config JSON file):
${daemonHelp()}

Endpoints: /metrics (Prometheus text or OpenMetrics; see --web.telemetry-path),
/healthz, /readyz, /api/connections, /

${ANALYZE_HELP}`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help' || (cmd !== 'analyze' && (argv.includes('--help') || argv.includes('-h')))) {
    process.stdout.write(HELP);
    return 0;
  }
  if (cmd === '--version' || cmd === '-V') {
    process.stdout.write(versionText());
    return 0;
  }
  if (cmd === 'analyze') return runAnalyze(rest);
  // The daemon's modules (fastify, prom-client) load only when the daemon runs: analyze starts faster.
  if (cmd === undefined || cmd === 'run') return (await import('./daemon.js')).runDaemon(rest);
  // A single-dash word is a flag the CLI does not have (-v, -p), not a command name.
  if (/^-[^-]/.test(cmd)) throw new UsageError(unknownFlag(cmd));
  if (cmd.startsWith('--')) return (await import('./daemon.js')).runDaemon(argv);
  throw new UsageError(`unknown command "${cmd}" (try: keepalive-exporter analyze FILE, or --help)`);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`keepalive-exporter: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      // A bug, not a user mistake: still one line, with where to report it.
      const e = err as Error;
      process.stderr.write(`keepalive-exporter: internal error: ${e?.message ?? String(err)} (please report this with the capture if you can)\n`);
      if (process.env.KEEPALIVE_EXPORTER_DEBUG) process.stderr.write(`${e?.stack}\n`);
      process.exitCode = 1;
    }
  },
);
