/**
 * What the engine learns about each server across its connections: handshake RTTs (for the
 * median used when a connection's own handshake was not captured), advertised keep-alive
 * settings, and the inference of an unannounced max-requests limit.
 */
import { median } from './stats.js';

export class ServerState {
  /** Recent handshake RTTs, and durations of full TLS handshakes (what a resumption is measured against). */
  private readonly rtts: SampleRing;
  private readonly tlsFull: SampleRing;
  advertisedTimeout: number | null = null;
  /** `max=` on the first response of the latest connection that announced one: the configured limit. */
  advertisedMax: number | null = null;
  inferredMax: number | null = null;
  /** An age limit inferred from connections ended at the same age with different counts (nginx keepalive_time). */
  inferredMaxAge: number | null = null;
  /** A TLS connection to it was seen speaking h2 (ALPN visible or decrypted, or the TLS 1.3 record pattern of h2). */
  tlsH2 = false;
  /** Server-ended connections on a success response, by request count: the evidence for inference. */
  readonly candidateCounts = new Map<number, number>();

  constructor(
    maxSamples: number,
    /** The server's "ip:port": one string shared by all its connection records. */
    readonly name = '',
  ) {
    this.rtts = new SampleRing(maxSamples);
    this.tlsFull = new SampleRing(maxSamples);
  }

  addRtt(rtt: number): void {
    this.rtts.add(rtt);
  }

  /** Median of recent handshake RTTs, or null if none was captured. */
  medianRtt(): number | null {
    return this.rtts.median();
  }

  addFullTlsHandshake(seconds: number): void {
    this.tlsFull.add(seconds);
  }

  /** Median duration of recent full TLS handshakes, or null if none was seen. */
  medianFullTlsHandshake(): number | null {
    return this.tlsFull.median();
  }
}

/** The last `cap` samples of a number, and their median. */
class SampleRing {
  private readonly v: number[] = [];
  private next = 0;

  constructor(private readonly cap: number) {}

  add(x: number): void {
    if (this.v.length < this.cap) this.v.push(x);
    else {
      this.v[this.next] = x;
      this.next = (this.next + 1) % this.cap;
    }
  }

  median(): number | null {
    return median(this.v);
  }
}
