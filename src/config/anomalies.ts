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
  'reconnect_pair_evicted', // the reconnect pairing table (limits.ts maxReconnectPairs) was full: its least recently used client/server pair dropped
  'http_response_lost', // a response fell in a capture gap: its request is closed without a status
  // resource caps against floods (limits.ts)
  'flow_chain_full', // a new flow's hash chain was at MAX_CHAIN (crafted addresses): not tracked
  'buffer_budget_exceeded', // all flows together held maxBufferedBytes out of order: the hole was skipped
  // HTTP/2 frames (src/h2/frame-stream.ts, frames.ts)
  'h2_bad_preface', // the client's first 24 bytes are not the preface, or a direction does not start with SETTINGS: the direction stops
  'h2_frame_too_large', // a non-DATA frame over the read cap: delivered unread
  'h2_header_block_too_large', // a header block over the cap: its fields unread, the HPACK table of that direction lost
  'h2_continuation_flood', // a header block over the frame cap (CVE-2024-27316)
  'h2_bad_continuation', // a CONTINUATION with no block open, or another frame inside an open block
  'h2_settings_flood', // SETTINGS frames past the cap on a direction (CVE-2019-9515)
  'h2_bad_padding', // pad length not less than the frame length
  'h2_gap_in_data', // a capture gap inside a DATA payload: skipped, framing kept
  'h2_frame_lost', // a capture gap inside another frame: delivered unread, framing kept
  'h2_resync', // a gap covered a frame header: framing lost, resynchronising
  'h2_resync_failed', // no trustworthy frame header found: the direction is no longer parsed
  'h2_truncated_frame', // the stream ended inside a frame
  'h2_bad_frame_size', // a fixed-size frame (PING, RST_STREAM, SETTINGS, WINDOW_UPDATE, PRIORITY, GOAWAY) of the wrong size
  'h2_bad_stream_id', // a frame on a stream its type does not allow
  'h2_zero_window_increment',
  'h2_bad_setting_value',
  'h2_self_dependency', // a stream depending on itself (PRIORITY)
  'h2_stream_overflow', // more open streams than MAX_OPEN_STREAMS on one connection: the oldest is dropped
  // HPACK (src/h2/hpack.ts)
  'hpack_index_unknown', // a dynamic-table index not held (joined mid-stream, a lost block): the field is unknown, never wrong
  'hpack_truncated',
  'hpack_integer_overflow',
  'hpack_string_too_long',
  'hpack_huffman_invalid',
  'hpack_malformed',
  'hpack_table_size_invalid',
  // TLS records and handshakes (src/tls/record-stream.ts, handshake.ts)
  'tls_bad_record', // where framing held, a header no TLS peer sends: the direction stops
  'tls_record_lost', // a capture gap inside a handshake or alert record (or one being decrypted): delivered unread, framing kept
  'tls_handshake_lost', // handshake bytes were lost: no more cleartext handshake messages from that direction
  'tls_handshake_too_large', // a handshake message over 64 KiB: delivered unread
  'tls_resync', // a gap covered a record header: framing lost, resynchronising
  'tls_resync_failed', // no chain of plausible record headers found: the direction is no longer parsed
  'tls_truncated_record', // the stream ended inside a record or a handshake message
  // ClientHello / ServerHello rejections (handshake.ts HelloRejection): the hello's facts are unknown
  'tls_hello_truncated',
  'tls_bad_session_id',
  'tls_bad_cipher_suites',
  'tls_hello_malformed',
  'tls_bad_extension_length',
  'tls_duplicate_extension',
  'tls_too_many_extensions',
  'tls_bad_alpn',
  'tls_bad_supported_versions',
  // a server_name that is not kept (handshake.ts SniRejection): sni is null
  'tls_sni_too_long',
  'tls_sni_bad_chars',
  'tls_sni_malformed',
  // TLS decryption with a key log (src/tls/decrypt.ts)
  'tls_keys_missing', // a key log is given but has no usable line for a connection (in time): its requests are estimated from turns
  'tls_cipher_unsupported', // keys found but the suite is not one we decrypt (CBC, RSA key exchange, CCM): estimated
  'tls_decrypt_failed', // a record that should decrypt did not (wrong key, corrupt bytes): skipped, counted
  'tls_decrypt_lost', // after a loss of framing no sequence number opened the next record: that direction is no longer decrypted
  'tls_key_wait_overflow', // records held while waiting for a connection's key log line passed the cap: estimated instead
] as const;

export type Anomaly = (typeof ANOMALIES)[number];

/** Index of each anomaly in a counts array, so the hot path increments a typed array slot. */
export const A: { [K in Anomaly]: number } = Object.fromEntries(ANOMALIES.map((n, i) => [n, i])) as never;

export function newAnomalyCounts(): Float64Array {
  return new Float64Array(ANOMALIES.length);
}
