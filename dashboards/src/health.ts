/**
 * The daemon's own health: is it capturing everything, is it keeping up, and what does it cost.
 * A reuse figure is only as good as the capture behind it: drops, gaps and evictions here explain
 * `aborted` closes and missing requests on the main dashboard.
 */
import { jobAndInstance, type DashboardSpec, type PanelSpec } from './grafana.js';

const SEL = 'job=~"$job", instance=~"$instance"';
const rate = (metric: string, extra = ''): string =>
  `rate(${metric}{${SEL}${extra ? `, ${extra}` : ''}}[$__rate_interval])`;

/** Anomalies that mean bytes were never seen: the HTTP in them is lost, not misparsed. */
export const GAP_KINDS = 'tcp_gap|reassembly_overflow|http_response_lost|packet_snaplen_cut';

const status: PanelSpec[] = [
  {
    type: 'stat', title: 'Daemons up', unit: 'short', w: 4, h: 4,
    thresholds: [{ color: 'red', value: null }, { color: 'green', value: 1 }],
    description: 'Daemons Prometheus scraped successfully at the last scrape (the `up` series of the job). Each node runs one.',
    targets: [{ expr: `sum(up{${SEL}})` }],
  },
  {
    type: 'stat', title: 'Sources running', unit: 'short', w: 4, h: 4,
    thresholds: [{ color: 'red', value: null }, { color: 'green', value: 1 }],
    description: 'Packet sources running now: live captures (tcpdump), proxy taps, and capture files still being read (a finished file reads 0).',
    targets: [{ expr: `sum(keepalive_source_up{${SEL}})` }],
  },
  {
    type: 'stat', title: 'Capture drop ratio', unit: 'percentunit', w: 4, h: 4, decimals: 3,
    thresholds: [{ color: 'green', value: null }, { color: 'orange', value: 0.0001 }, { color: 'red', value: 0.001 }],
    description: 'Packets the kernel or interface dropped, as a share of packets seen. Any drop can cut an HTTP message or a FIN: above 0.1% close reasons and request counts are no longer exact. Raise --capture.buffer-kib or narrow --ports.',
    targets: [{ expr: `sum(${rate('keepalive_capture_dropped_packets_total')}) / (sum(${rate('keepalive_packets_total')}) + sum(${rate('keepalive_capture_dropped_packets_total')}))` }],
  },
  {
    type: 'stat', title: 'Servers tracked', unit: 'short', w: 4, h: 4,
    description: 'Distinct server label values in use per daemon (max over the daemons). At --max-servers (default 500) further servers are reported as server="other".',
    targets: [{ expr: `max(keepalive_servers_tracked{${SEL}})` }],
  },
  {
    type: 'stat', title: 'Open connections', unit: 'short', w: 4, h: 4,
    description: 'HTTP connections (HTTP/1.x and h2c) open now as the daemons track them, idle keep-alive connections included.',
    targets: [{ expr: `sum(keepalive_open_connections{${SEL}})` }],
  },
  {
    type: 'stat', title: 'Resident memory', unit: 'bytes', w: 4, h: 4,
    thresholds: [{ color: 'green', value: null }, { color: 'orange', value: 400e6 }, { color: 'red', value: 800e6 }],
    description: 'Largest resident memory among the daemons. The flow table, reassembly buffers and server labels are all capped, so this should stay flat under any traffic.',
    targets: [{ expr: `max(process_resident_memory_bytes{${SEL}})` }],
  },
];

const capture: PanelSpec[] = [
  {
    type: 'timeseries', title: 'Packets by source', unit: 'pps', w: 8, h: 8,
    description: 'Packets read per second from each source (live:INTERFACE, file:PATH). Proxy taps read streams, not packets.',
    targets: [{ expr: `sum by (instance, source) (${rate('keepalive_packets_total')})`, legendFormat: '{{instance}} {{source}}' }],
  },
  {
    type: 'timeseries', title: 'Bytes by source', unit: 'Bps', w: 8, h: 8,
    description: 'Wire bytes per second of the packets read (original lengths, before snaplen).',
    targets: [{ expr: `sum by (instance, source) (${rate('keepalive_bytes_total')})`, legendFormat: '{{instance}} {{source}}' }],
  },
  {
    type: 'timeseries', title: 'Capture drops', unit: 'pps', w: 8, h: 8,
    thresholds: [{ color: 'green', value: null }, { color: 'red', value: 1 }],
    description: 'Packets lost per second as tcpdump reports them: where="kernel" (the capture buffer overflowed: the daemon or the machine did not keep up) or "interface" (the NIC or driver dropped them).',
    targets: [{ expr: `sum by (instance, source, where) (${rate('keepalive_capture_dropped_packets_total')})`, legendFormat: '{{instance}} {{source}} {{where}}' }],
  },
];

const engine: PanelSpec[] = [
  {
    type: 'timeseries', title: 'Flows tracked', unit: 'short', w: 8, h: 8,
    description: 'TCP flows in each source\'s flow table (open and lingering). The table is capped by --max-flows; at the cap the least recently active flow is evicted.',
    targets: [{ expr: `sum by (instance, source) (keepalive_flows_tracked{${SEL}})`, legendFormat: '{{instance}} {{source}}' }],
  },
  {
    type: 'timeseries', title: 'Flows evicted', unit: 'cps', w: 8, h: 8,
    thresholds: [{ color: 'green', value: null }, { color: 'red', value: 1 }],
    description: 'Flows dropped per second because the flow table was full: their connections are no longer followed. Raise --max-flows if this is not zero.',
    targets: [{ expr: `sum by (instance, source) (${rate('keepalive_flows_evicted_total')})`, legendFormat: '{{instance}} {{source}}' }],
  },
  {
    type: 'timeseries', title: 'Gaps (bytes never seen)', unit: 'cps', w: 8, h: 8,
    description: 'Per second: TCP data never captured was skipped (tcp_gap), an out-of-order buffer cap was hit (reassembly_overflow), a response fell in a gap, or snaplen cut a packet. Each can turn a close into `aborted`.',
    targets: [{ expr: `sum by (kind) (${rate('keepalive_anomalies_total', `kind=~"${GAP_KINDS}"`)})`, legendFormat: '{{kind}}' }],
  },
  {
    type: 'timeseries', title: 'Parse errors and other anomalies', unit: 'cps', w: 12, h: 8, stack: true,
    description: 'Every other anomaly per second, by its stable name (src/config/anomalies.ts): malformed HTTP heads, bad Content-Length or chunking, truncated or malformed packets, retransmissions, pipeline and header caps. Bad input is counted and skipped, never fatal.',
    targets: [{ expr: `sum by (kind) (${rate('keepalive_anomalies_total', `kind!~"${GAP_KINDS}"`)})`, legendFormat: '{{kind}}' }],
  },
  {
    type: 'timeseries', title: 'Flows that were not measured as HTTP', unit: 'cps', w: 12, h: 8, stack: true,
    description: 'TCP flows on the watched ports that turned out to be TLS, HTTP/2 the daemon could not follow (a preface where no h2c session could start) or something else, per second. h2c connections are measured like HTTP/1 and are not here. TLS here means HTTPS on a port we watch: its reuse cannot be measured from packets (use the proxy tap behind TLS termination).',
    targets: [{ expr: `sum by (protocol) (${rate('keepalive_non_http_flows_total')})`, legendFormat: '{{protocol}}' }],
  },
];

const sources: PanelSpec[] = [
  {
    type: 'timeseries', title: 'Source up', unit: 'short', w: 8, h: 8, min: 0, max: 1,
    description: '1 while a source runs: a live capture whose tcpdump is running, a proxy tap listening, a file being read.',
    targets: [{ expr: `max by (instance, source, kind) (keepalive_source_up{${SEL}})`, legendFormat: '{{instance}} {{source}}' }],
  },
  {
    type: 'timeseries', title: 'Source restarts', unit: 'short', w: 8, h: 8,
    thresholds: [{ color: 'green', value: null }, { color: 'red', value: 1 }],
    description: 'tcpdump restarts in the time window (it is restarted with backoff when it exits), and the stalls among them: tcpdumps killed because they neither wrote packets nor answered SIGUSR1 for 15 s (stopped, hung). Steady restarts mean the interface is going away or tcpdump lacks permission: see the daemon log.',
    targets: [
      { expr: `sum by (instance, source) (increase(keepalive_source_restarts_total{${SEL}}[$__rate_interval]))`, legendFormat: '{{instance}} {{source}}' },
      { expr: `sum by (instance, source) (increase(keepalive_source_stalls_total{${SEL}}[$__rate_interval]))`, legendFormat: '{{instance}} {{source}} stalled' },
    ],
  },
  {
    type: 'timeseries', title: 'Proxy tap connections', unit: 'short', w: 8, h: 8,
    description: 'Proxy taps: client connections being relayed now, upstream failures per second (refused, unreachable or timed out upstream), and client connections the tap reset without relaying them (at --proxy.max-connections, or near the file descriptor limit).',
    targets: [
      { expr: `sum by (instance, source) (keepalive_proxy_connections_active{${SEL}})`, legendFormat: '{{instance}} {{source}} active' },
      { expr: `sum by (instance, source) (${rate('keepalive_proxy_upstream_failures_total')})`, legendFormat: '{{instance}} {{source}} upstream failures/s' },
      { expr: `sum by (instance, source, reason) (${rate('keepalive_proxy_connections_refused_total')})`, legendFormat: '{{instance}} {{source}} refused ({{reason}})/s' },
    ],
  },
];

const process: PanelSpec[] = [
  {
    type: 'timeseries', title: 'Memory', unit: 'bytes', w: 8, h: 8,
    description: 'Resident memory and V8 heap used, per daemon. Every table and buffer is capped, so both should level off.',
    targets: [
      { expr: `process_resident_memory_bytes{${SEL}}`, legendFormat: '{{instance}} resident' },
      { expr: `sum by (instance) (nodejs_heap_size_used_bytes{${SEL}})`, legendFormat: '{{instance}} heap used' },
    ],
  },
  {
    type: 'timeseries', title: 'CPU', unit: 'percentunit', w: 8, h: 8,
    description: 'CPU time per second of wall time, per daemon (1 = one core). The daemon is single-threaded apart from tcpdump, which is not counted here.',
    targets: [{ expr: `sum by (instance) (${rate('process_cpu_seconds_total')})`, legendFormat: '{{instance}}' }],
  },
  {
    type: 'timeseries', title: 'Event loop lag', unit: 's', w: 8, h: 8,
    thresholds: [{ color: 'green', value: null }, { color: 'red', value: 0.1 }],
    description: '99th percentile event loop delay per daemon. Sustained lag means packets wait in the pipe from tcpdump and the kernel buffer may overflow (drops).',
    targets: [{ expr: `max by (instance) (nodejs_eventloop_lag_p99_seconds{${SEL}})`, legendFormat: '{{instance}}' }],
  },
];

export const healthDashboard: DashboardSpec = {
  uid: 'keepalive-exporter-health',
  title: 'keepalive-exporter health',
  description: 'The keepalive-exporter daemons themselves: capture drops, flows, gaps and parse errors, sources, memory and CPU.',
  tags: ['keepalive-exporter', 'exporter-health'],
  variables: jobAndInstance('keepalive_source_up'),
  rows: [
    { title: 'Status', panels: status },
    { title: 'Capture', panels: capture },
    { title: 'Flows and parsing', panels: engine },
    { title: 'Sources', panels: sources },
    { title: 'Process', panels: process },
  ],
  links: [{ title: 'HTTP keep-alive reuse', uid: 'keepalive-reuse' }],
};
