/**
 * The main dashboard: are HTTP connections reused, what does reuse save, and why do connections
 * close. Every query reads the raw series (so the job, instance and server variables all apply,
 * and it works before any recording rule is loaded); the recording rules in
 * `dashboards/prometheus/keepalive-rules.yml` record the same ratios fleet-wide for alerts and
 * federation.
 */
import { jobAndInstance, type DashboardSpec, type PanelSpec, type Threshold } from './grafana.js';

/** Every panel's series selector: the dashboard's three variables. */
const SEL = 'job=~"$job", instance=~"$instance", server=~"$server"';
const rate = (metric: string, extra = '', range = '$__rate_interval'): string =>
  `rate(${metric}{${SEL}${extra ? `, ${extra}` : ''}}[${range}])`;

/**
 * Closes after which the client had to pay for a new handshake that keep-alive could have saved:
 * the server or client ended a connection still in use (max requests, Connection: close, HTTP/1.0,
 * a race, the server's connection age limit) or one was opened for nothing. Idle closes (either side's idle timeout), aborts and
 * resets are left out: the next request may never have come.
 */
export const AVOIDABLE_REASONS = 'max_requests|server_close|client_close|not_persistent|race|unused|max_age';

const RATIO_THRESHOLDS: Threshold[] = [
  { color: 'red', value: null },
  { color: 'orange', value: 0.5 },
  { color: 'green', value: 0.8 },
];

/** Close reasons in fixed colours: the two server policies (idle timeout, max requests) stand apart. */
const REASON_COLORS: Record<string, string> = {
  idle_timeout: 'blue',
  max_requests: 'orange',
  server_close: 'purple',
  client_close: 'green',
  client_idle: 'light-green',
  not_persistent: 'yellow',
  race: 'red',
  aborted: 'dark-red',
  reset: 'semi-dark-red',
  unused: 'text',
  max_age: 'dark-orange',
};

const overview: PanelSpec[] = [
  {
    type: 'stat', title: 'Reuse ratio', unit: 'percentunit', w: 4, h: 4, decimals: 1, thresholds: RATIO_THRESHOLDS,
    description: 'Share of requests sent on an already open connection (every request after the first on its connection). 1 would be one handshake for all requests; 0 is one connection per request.',
    targets: [{ expr: `sum(${rate('keepalive_requests_total', 'reused="true"')}) / sum(${rate('keepalive_requests_total')})` }],
  },
  {
    type: 'stat', title: 'Requests', unit: 'reqps', w: 4, h: 4,
    description: 'HTTP requests per second to the selected servers (HTTP/2: client streams), first requests and reused ones together, every protocol.',
    targets: [{ expr: `sum(${rate('keepalive_requests_total')})` }],
  },
  {
    type: 'stat', title: 'New connections', unit: 'cps', w: 4, h: 4,
    description: 'TCP connections opened per second: each one paid a handshake (a round trip, more with TLS).',
    targets: [{ expr: `sum(${rate('keepalive_connections_opened_total')})` }],
  },
  {
    type: 'stat', title: 'Requests per connection, average', unit: 'short', w: 4, h: 4, decimals: 2,
    thresholds: [{ color: 'red', value: null }, { color: 'orange', value: 1.5 }, { color: 'green', value: 5 }],
    description: 'Requests divided by connections opened over the same time: 1 means no reuse at all.',
    targets: [{ expr: `sum(${rate('keepalive_requests_total')}) / sum(${rate('keepalive_connections_opened_total')})` }],
  },
  {
    type: 'stat', title: 'Handshakes saved', unit: 'cps', w: 4, h: 4,
    description: 'Handshakes per second that reuse avoided: one for every reused request.',
    targets: [{ expr: `sum(${rate('keepalive_handshakes_saved_total')})` }],
  },
  {
    type: 'stat', title: 'Handshake time saved', unit: 's', w: 4, h: 4,
    description: 'Seconds of handshake waiting saved per second, summed over all clients: each reused request saves its connection\'s handshake round trip (or the server\'s median RTT). An estimate: TLS handshakes would save more.',
    targets: [{ expr: `sum(${rate('keepalive_handshake_time_saved_seconds_total')})` }],
  },
];

const reuse: PanelSpec[] = [
  {
    type: 'timeseries', title: 'Requests and new connections by server', unit: 'reqps', w: 12, h: 8,
    description: 'Requests per second next to connections opened per second, per server. The closer the two lines, the less reuse: on a healthy keep-alive server connections are a small fraction of requests.',
    targets: [
      { expr: `sum by (server) (${rate('keepalive_requests_total')})`, legendFormat: '{{server}} requests' },
      { expr: `sum by (server) (${rate('keepalive_connections_opened_total')})`, legendFormat: '{{server}} new connections' },
    ],
  },
  {
    type: 'timeseries', title: 'Reuse ratio by server', unit: 'percentunit', w: 12, h: 8, min: 0, max: 1, decimals: 1, thresholds: RATIO_THRESHOLDS,
    description: 'Share of each server\'s requests sent on a reused connection. A sudden drop means clients or the server stopped keeping connections alive: look at the close reasons below.',
    targets: [{
      expr: `sum by (server) (${rate('keepalive_requests_total', 'reused="true"')}) / sum by (server) (${rate('keepalive_requests_total')})`,
      legendFormat: '{{server}}',
    }],
  },
  {
    type: 'timeseries', title: 'Handshakes saved by server', unit: 'cps', w: 12, h: 8,
    description: 'Handshakes per second that reuse avoided, per server (one per reused request).',
    targets: [{ expr: `sum by (server) (${rate('keepalive_handshakes_saved_total')})`, legendFormat: '{{server}}' }],
  },
  {
    type: 'timeseries', title: 'Estimated handshake time saved by server', unit: 's', w: 12, h: 8,
    description: 'Seconds of client waiting saved per second by not opening a connection, per server: reused requests times the handshake round trip. With TLS the real saving is two to three times larger.',
    targets: [{ expr: `sum by (server) (${rate('keepalive_handshake_time_saved_seconds_total')})`, legendFormat: '{{server}}' }],
  },
];

const closes: PanelSpec[] = [
  {
    type: 'timeseries', title: 'Why connections close', unit: 'cps', w: 12, h: 9, stack: true, colors: REASON_COLORS,
    description: 'Connections closed per second, stacked by close reason. idle_timeout (blue): the server closed an idle connection after its Keep-Alive timeout. max_requests (orange): the server reached its requests-per-connection limit. client_idle: the client pool closed an idle connection first. race: a request crossed the server closing the connection (the client saw a reset; HTTP/2: a refused stream). max_age (dark orange): the server ended the connection at its age limit (nginx keepalive_time, gRPC MAX_CONNECTION_AGE, Envoy max_connection_duration). See the README for every reason.',
    targets: [{ expr: `sum by (reason) (${rate('keepalive_connections_closed_total')})`, legendFormat: '{{reason}}' }],
  },
  {
    type: 'bargauge', title: 'Close reasons over the time range', unit: 'percentunit', w: 6, h: 9, min: 0, max: 1, decimals: 1,
    description: 'Share of each close reason among all connections closed in the selected time range. A server whose closes are mostly max_requests has a per-connection limit set too low for its clients.',
    targets: [{
      expr: `sum by (reason) (increase(keepalive_connections_closed_total{${SEL}}[$__range])) / ignoring (reason) group_left () sum(increase(keepalive_connections_closed_total{${SEL}}[$__range]))`,
      legendFormat: '{{reason}}',
      instant: true,
    }],
  },
  {
    type: 'timeseries', title: 'Who closes first', unit: 'cps', w: 6, h: 9, stack: true, colors: { client: 'green', server: 'blue', unknown: 'text' },
    description: 'Connections closed per second by the side that sent the first FIN or RST. Servers closing most connections means clients hold idle connections longer than servers keep them.',
    targets: [{ expr: `sum by (closed_by) (${rate('keepalive_connections_closed_total')})`, legendFormat: '{{closed_by}}' }],
  },
];

const distribution: PanelSpec[] = [
  {
    type: 'heatmap', title: 'Requests per connection, distribution', unit: 'short', w: 12, h: 9,
    description: 'How many requests each connection carried, counted when it closed. A band at 1 means no reuse; a band at a fixed count (100, 1000) is a server\'s max requests per connection.',
    targets: [{ expr: `sum by (le) (increase(keepalive_requests_per_connection_bucket{${SEL}}[$__rate_interval]))`, legendFormat: '{{le}}', format: 'heatmap' }],
  },
  {
    type: 'timeseries', title: 'Idle before close vs advertised timeout', unit: 's', w: 12, h: 9, dashed: ['advertised timeout'],
    description: 'How long connections sat idle (last HTTP byte to the first FIN or RST) before each side closed them: median and 90th percentile, next to the longest Keep-Alive: timeout= the selected servers advertise (dashed). Server closes at the advertised timeout are its idle timeout; client closes above it are keep-alive race candidates.',
    targets: [
      { expr: `histogram_quantile(0.5, sum by (le, closed_by) (${rate('keepalive_idle_before_close_seconds_bucket')}))`, legendFormat: 'p50 before the {{closed_by}} closed' },
      { expr: `histogram_quantile(0.9, sum by (le, closed_by) (${rate('keepalive_idle_before_close_seconds_bucket')}))`, legendFormat: 'p90 before the {{closed_by}} closed' },
      { expr: `max(keepalive_advertised_timeout_seconds{${SEL}})`, legendFormat: 'advertised timeout' },
    ],
  },
];

/**
 * What would change if (issue 14): after a server's idle close its client came back `gap` seconds
 * after the old connection's last byte (keepalive_reconnect_gap_seconds); a timeout of T saves
 * the reconnects under T, as a share of all new connections.
 */
const whatIf: PanelSpec[] = [
  {
    type: 'timeseries', title: 'New connections a longer keep-alive timeout would have saved', unit: 'percentunit', w: 24, h: 8, min: 0, decimals: 1,
    description: 'Share of new connections whose client had been using a connection the server closed idle, and came back within T of its last byte: a server keep-alive timeout of T would have kept that connection and saved the handshake. From keepalive_reconnect_gap_seconds{after="idle_timeout"} (its le bounds are the timeouts that can be asked about: 1, 2, 3, 5, 10, 15, 30, 60, 75, 120, 300, 600, 1800, 3600 s) over keepalive_connections_opened_total. analyze prints the same table per server.',
    targets: [5, 15, 60, 300].map((t) => ({
      expr: `sum(${rate('keepalive_reconnect_gap_seconds_bucket', `after="idle_timeout", le="${t}"`)}) / sum(${rate('keepalive_connections_opened_total')})`,
      legendFormat: `timeout ${t} s`,
    })),
  },
];

/**
 * Which protocol the traffic speaks (issue 12): http/1.0, http/1.1, h2c; over TLS (issue 13) h2 or
 * http/1.x when decrypted, tls when not. Every other panel sums
 * over the protocol label; these split by it.
 */
const protocols: PanelSpec[] = [
  {
    type: 'timeseries', title: 'New connections by protocol', unit: 'cps', w: 8, h: 8,
    description: 'Connections opened per second by the protocol of their first request (h2c: HTTP/2 in cleartext, with prior knowledge; h2: HTTP/2 over TLS, decrypted with --tls-keylog; tls: TLS that was not decrypted). A connection that switches with Upgrade: h2c opens as http/1.1; its switch is the "upgraded to" line.',
    targets: [
      { expr: `sum by (protocol) (${rate('keepalive_connections_opened_total')})`, legendFormat: '{{protocol}}' },
      { expr: `sum by (protocol) (${rate('keepalive_connections_upgraded_total')})`, legendFormat: 'upgraded to {{protocol}}' },
    ],
  },
  {
    type: 'timeseries', title: 'Requests by protocol', unit: 'reqps', w: 8, h: 8,
    description: 'Requests per second by the protocol that carried them (HTTP/2: each client stream is a request; tls: estimated from record turns, the connection was not decrypted). One HTTP/2 connection carries many concurrent streams: compare with the new connections beside.',
    targets: [{ expr: `sum by (protocol) (${rate('keepalive_requests_total')})`, legendFormat: '{{protocol}}' }],
  },
  {
    type: 'timeseries', title: 'Reuse ratio by protocol', unit: 'percentunit', w: 8, h: 8, min: 0, max: 1, decimals: 1,
    description: 'Share of requests sent on an already open connection, per protocol. HTTP/2 multiplexes, so its reuse is usually the highest; a low h2c ratio means its connections end early (see the close reasons by protocol).',
    targets: [{
      expr: `sum by (protocol) (${rate('keepalive_requests_total', 'reused="true"')}) / sum by (protocol) (${rate('keepalive_requests_total')})`,
      legendFormat: '{{protocol}}',
    }],
  },
  {
    type: 'timeseries', title: 'Close reasons by protocol', unit: 'cps', w: 8, h: 8, stack: true,
    description: 'Connections closed per second by protocol and close reason. On HTTP/2, max_requests is a GOAWAY after the server\'s stream limit (nginx keepalive_requests), idle_timeout an idle GOAWAY, race a refused stream, max_age the server\'s connection age limit.',
    targets: [{ expr: `sum by (protocol, reason) (${rate('keepalive_connections_closed_total')})`, legendFormat: '{{protocol}} {{reason}}' }],
  },
  {
    type: 'timeseries', title: 'HTTP/2 concurrent streams per connection', unit: 'short', w: 8, h: 8,
    description: 'Peak concurrent streams of each HTTP/2 connection (observed at its close): median and 99th percentile, against the SETTINGS_MAX_CONCURRENT_STREAMS the servers announce. Peaks at the announced limit mean clients queue streams: they open more connections or wait.',
    targets: [
      { expr: `histogram_quantile(0.5, sum by (le) (${rate('keepalive_h2_concurrent_streams_bucket')}))`, legendFormat: 'p50 peak streams' },
      { expr: `histogram_quantile(0.99, sum by (le) (${rate('keepalive_h2_concurrent_streams_bucket')}))`, legendFormat: 'p99 peak streams' },
      { expr: `max(keepalive_h2_advertised_max_concurrent_streams{${SEL}})`, legendFormat: 'announced max concurrent streams' },
    ],
  },
  {
    type: 'timeseries', title: 'HTTP/2 refused streams by server', unit: 'reqps', w: 8, h: 8,
    description: 'HTTP/2 streams per second that the server refused (RST_STREAM REFUSED_STREAM) or did not process (opened above its GOAWAY\'s last-stream-id). They were not processed, so clients may retry them, at the cost of a round trip and often a new connection.',
    targets: [{ expr: `sum by (server) (${rate('keepalive_h2_streams_refused_total')})`, legendFormat: '{{server}}' }],
  },
];

/**
 * TLS (issue 13): session resumption per server, handshake cost by kind, and reuse on TLS next to
 * cleartext. keepalive_tls_handshakes_total counts a TLS connection at its close, by the kind of
 * its handshake (full, or resumed by session id, ticket or TLS 1.3 pre_shared_key);
 * keepalive_tls_requests_total counts the requests of TLS connections whatever their protocol
 * label (h2 or http/1.x when decrypted with --tls-keylog, tls when not). The protocol label cannot
 * tell cleartext apart (decrypted HTTP/1.1 over TLS is http/1.1), so cleartext is every request
 * (connection) minus the TLS ones; `or vector(0)` keeps the cleartext line where there is no TLS.
 */
const tlsRate = (metric: string, extra = ''): string => `(sum(${rate(metric, extra)}) or vector(0))`;
const tls: PanelSpec[] = [
  {
    type: 'timeseries', title: 'TLS resumption ratio by server', unit: 'percentunit', w: 8, h: 8, min: 0, max: 1, decimals: 1,
    description: 'Share of each server\'s TLS handshakes that resumed a session (TLS 1.2 session id or ticket, TLS 1.3 pre_shared_key), counted when the connection closes. A resumed handshake skips the certificate and the key exchange: it is faster and cheaper for the server. A sudden drop means clients\' tickets or session ids stopped being accepted (ticket keys rotated or not shared across the servers behind one name, session cache cleared or too small).',
    targets: [{
      expr: `sum by (server) (${rate('keepalive_tls_handshakes_total', 'kind="resumed"')}) / sum by (server) (${rate('keepalive_tls_handshakes_total')})`,
      legendFormat: '{{server}}',
    }],
  },
  {
    type: 'timeseries', title: 'TLS handshakes by kind', unit: 'cps', w: 8, h: 8, colors: { full: 'orange', resumed: 'green', HelloRetryRequest: 'red' },
    description: 'TLS handshakes per second of the connections that closed, full or resumed (a connection whose handshake the capture missed is neither), and TLS 1.3 HelloRetryRequests (the server asked for another key share: one more round trip). Each one is a connection a reused one would have saved.',
    targets: [
      { expr: `sum by (kind) (${rate('keepalive_tls_handshakes_total')})`, legendFormat: '{{kind}}' },
      { expr: `sum(${rate('keepalive_tls_hello_retry_requests_total')})`, legendFormat: 'HelloRetryRequest' },
    ],
  },
  {
    type: 'timeseries', title: 'TLS handshake duration by kind', unit: 's', w: 8, h: 8,
    description: 'How long TLS handshakes took, from the ClientHello to the client\'s first application data (TLS 1.3: its Finished), median and 95th percentile, full and resumed apart. The gap between the two is what each resumption saves; a full handshake also costs the server a signature.',
    targets: [
      { expr: `histogram_quantile(0.5, sum by (le, kind) (${rate('keepalive_tls_handshake_duration_seconds_bucket')}))`, legendFormat: 'p50 {{kind}}' },
      { expr: `histogram_quantile(0.95, sum by (le, kind) (${rate('keepalive_tls_handshake_duration_seconds_bucket')}))`, legendFormat: 'p95 {{kind}}' },
    ],
  },
  {
    type: 'timeseries', title: 'Reuse ratio, TLS vs cleartext', unit: 'percentunit', w: 12, h: 8, min: 0, max: 1, decimals: 1, colors: { TLS: 'purple', cleartext: 'blue' },
    description: 'Share of requests sent on an already open connection, on TLS connections and on cleartext ones. TLS requests that were not decrypted (protocol="tls", no --tls-keylog) are estimated from record turns (one client flight then one server flight is one request); decrypted ones (protocol h2, or http/1.x over TLS) are exact. Cleartext is every request minus the TLS ones. Reuse matters more on TLS: each new connection pays the TLS handshake on top of TCP\'s.',
    targets: [
      { expr: `sum(${rate('keepalive_tls_requests_total', 'reused="true"')}) / sum(${rate('keepalive_tls_requests_total')})`, legendFormat: 'TLS' },
      {
        expr: `(sum(${rate('keepalive_requests_total', 'reused="true"')}) - ${tlsRate('keepalive_tls_requests_total', 'reused="true"')}) / (sum(${rate('keepalive_requests_total')}) - ${tlsRate('keepalive_tls_requests_total')})`,
        legendFormat: 'cleartext',
      },
    ],
  },
  {
    type: 'timeseries', title: 'Requests per connection, TLS vs cleartext', unit: 'short', w: 12, h: 8, decimals: 2, colors: { TLS: 'purple', cleartext: 'blue' },
    description: 'Requests per connection on TLS and on cleartext: TLS requests over TLS handshakes (full and resumed, counted at close), cleartext requests over the closed connections that had no TLS handshake. 1 is no reuse. Where protocol="tls" (not decrypted) the TLS requests are estimated from record turns; with --tls-keylog they are exact.',
    targets: [
      { expr: `sum(${rate('keepalive_tls_requests_total')}) / sum(${rate('keepalive_tls_handshakes_total')})`, legendFormat: 'TLS' },
      {
        expr: `(sum(${rate('keepalive_requests_total')}) - ${tlsRate('keepalive_tls_requests_total')}) / (sum(${rate('keepalive_connections_closed_total')}) - ${tlsRate('keepalive_tls_handshakes_total')})`,
        legendFormat: 'cleartext',
      },
    ],
  },
];

const races: PanelSpec[] = [
  {
    type: 'timeseries', title: 'Keep-alive races by server', unit: 'cps', w: 12, h: 8,
    description: 'Requests sent into a connection the server was already closing, per second: the client sees a reset or an empty reply and must retry. Fix by making the client pool idle timeout shorter than the server\'s keep-alive timeout.',
    targets: [{ expr: `sum by (server) (${rate('keepalive_connections_closed_total', 'reason="race"')})`, legendFormat: '{{server}}' }],
  },
  {
    type: 'timeseries', title: 'Races per request', unit: 'percentunit', w: 12, h: 8, decimals: 2,
    thresholds: [{ color: 'green', value: null }, { color: 'red', value: 0.001 }],
    description: 'Keep-alive races as a share of requests, per server. Above 0.1% (dashed line) clients retry often enough to notice.',
    targets: [{
      expr: `sum by (server) (${rate('keepalive_connections_closed_total', 'reason="race"')}) / sum by (server) (${rate('keepalive_requests_total')})`,
      legendFormat: '{{server}}',
    }],
  },
];

/** The server table: one instant query per column over the dashboard's time range, merged by server. */
const tableQuery = (expr: string): { expr: string; instant: true; format: 'table' } => ({ expr, instant: true, format: 'table' });
const servers: PanelSpec[] = [
  {
    type: 'table', title: 'Servers by handshakes that could still be saved', unit: 'short', w: 24, h: 10,
    description: 'Every server, ranked by avoidable new connections per second over the time range: connections ended while still useful (max_requests, Connection: close from either side, HTTP/1.0, races, the server\'s age limit) or opened for nothing (unused). Each one cost the next request a handshake. Next to it: requests, reuse, and the limits the server announces (Keep-Alive timeout= and max=) or that were inferred from its closes.',
    targets: [
      tableQuery(`sum by (server) (rate(keepalive_connections_closed_total{${SEL}, reason=~"${AVOIDABLE_REASONS}"}[$__range]))`),
      tableQuery(`sum by (server) (rate(keepalive_requests_total{${SEL}}[$__range]))`),
      tableQuery(`sum by (server) (rate(keepalive_requests_total{${SEL}, reused="true"}[$__range])) / sum by (server) (rate(keepalive_requests_total{${SEL}}[$__range]))`),
      tableQuery(`sum by (server) (rate(keepalive_connections_opened_total{${SEL}}[$__range]))`),
      tableQuery(`max by (server) (keepalive_advertised_timeout_seconds{${SEL}})`),
      tableQuery(`max by (server) (keepalive_advertised_max_requests{${SEL}})`),
      tableQuery(`max by (server) (keepalive_inferred_max_requests{${SEL}})`),
    ],
    transformations: [
        { id: 'merge', options: {} },
        {
          id: 'organize',
          options: {
            excludeByName: { Time: true },
            indexByName: { server: 0, 'Value #A': 1, 'Value #B': 2, 'Value #C': 3, 'Value #D': 4, 'Value #E': 5, 'Value #F': 6, 'Value #G': 7 },
            renameByName: {
              'Value #A': 'Avoidable handshakes/s',
              'Value #B': 'Requests/s',
              'Value #C': 'Reuse ratio',
              'Value #D': 'New connections/s',
              'Value #E': 'Advertised timeout',
              'Value #F': 'Advertised max',
              'Value #G': 'Inferred max',
            },
          },
        },
        { id: 'sortBy', options: { sort: [{ field: 'Avoidable handshakes/s', desc: true }] } },
    ],
    columnUnits: {
      'Avoidable handshakes/s': 'cps',
      'Requests/s': 'reqps',
      'Reuse ratio': 'percentunit',
      'New connections/s': 'cps',
      'Advertised timeout': 's',
      'Advertised max': 'short',
      'Inferred max': 'short',
    },
  },
];

export const reuseDashboard: DashboardSpec = {
  uid: 'keepalive-reuse',
  title: 'HTTP keep-alive reuse',
  description: 'Are HTTP connections (HTTP/1.x, h2c, and HTTP over TLS) reused, what does reuse save, and why do connections close. Data from keepalive-exporter.',
  tags: ['keepalive-exporter', 'http', 'network'],
  variables: [
    ...jobAndInstance('keepalive_requests_total'),
    { name: 'server', label: 'Server', query: 'label_values(keepalive_requests_total{job=~"$job", instance=~"$instance"}, server)', description: 'Server ip:port (at most --max-servers values; the rest are "other").' },
  ],
  rows: [
    { title: 'At a glance', panels: overview },
    { title: 'Reuse', panels: reuse },
    { title: 'Why connections close', panels: closes },
    { title: 'Requests per connection and idle time', panels: distribution },
    { title: 'What would change if', panels: whatIf },
    { title: 'Keep-alive races', panels: races },
    { title: 'Protocols', panels: protocols },
    { title: 'TLS', panels: tls },
    { title: 'Servers', panels: servers },
  ],
  links: [{ title: 'keepalive-exporter health', uid: 'keepalive-exporter-health' }],
};
