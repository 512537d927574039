/**
 * Every anomaly the engine counts, with a stable snake_case name. These names are an interface:
 * they are exported as the bounded `kind` label of the anomaly counters and printed by `analyze`.
 * Add new ones at the end; never rename.
 */
export const ANOMALIES = [
  // capture file
  'capture_truncated', // the file ended inside a record
  'capture_corrupt', // a record or block length that cannot be right
  'capture_unknown_block', // pcapng block type we skip
  'packet_snaplen_cut', // captured length < original length
  // link and network layers
  'link_type_unsupported',
  'link_truncated',
  'ip_truncated',
  'ip_malformed',
  'ip_fragment', // counted and skipped, never reassembled
  'not_tcp', // cheap skip: UDP, ICMP, ARP...
  'tcp_truncated',
  'tcp_malformed',
  // TCP reassembly
  'tcp_gap', // bytes never seen were skipped
  'tcp_retransmission', // data already delivered, not delivered twice
  'reassembly_overflow', // out-of-order buffer cap hit: the hole was skipped
  'flow_evicted', // flow table full: least recently active flow dropped
  'syn_on_open_flow', // a SYN with a new sequence number on a live 4-tuple
  // HTTP
  'http_malformed_head',
  'header_too_large',
  'http_bad_content_length',
  'http_bad_chunk',
  'http_unexpected_response', // a response with no request waiting for it
  'pipeline_overflow',
  'http_resync', // parser lost framing and skipped ahead to the next message
  'resync_failed',
  'inference_overflow',
  'http_response_lost', // a response fell in a capture gap: its request is closed without a status
  // resource caps against floods (limits.ts)
  'flow_chain_full', // a new flow's hash chain was at MAX_CHAIN (crafted addresses): not tracked
  'buffer_budget_exceeded', // all flows together held maxBufferedBytes out of order: the hole was skipped
] as const;

export type Anomaly = (typeof ANOMALIES)[number];

/** Index of each anomaly in a counts array, so the hot path increments a typed array slot. */
export const A: { [K in Anomaly]: number } = Object.fromEntries(ANOMALIES.map((n, i) => [n, i])) as never;

export function newAnomalyCounts(): Float64Array {
  return new Float64Array(ANOMALIES.length);
}
