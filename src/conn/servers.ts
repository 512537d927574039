/**
 * What the engine learns about each server across its connections: handshake RTTs (for the
 * median used when a connection's own handshake was not captured), advertised keep-alive
 * settings, and the inference of an unannounced max-requests limit.
 */
export class ServerState {
  /** Ring of recent handshake RTTs. */
  private readonly rtts: number[] = [];
  private rttNext = 0;
  advertisedTimeout: number | null = null;
  /** `max=` on the first response of the latest connection that announced one: the configured limit. */
  advertisedMax: number | null = null;
  inferredMax: number | null = null;
  /** An age limit inferred from connections ended at the same age with different counts (nginx keepalive_time). */
  inferredMaxAge: number | null = null;
  /** Server-ended connections on a success response, by request count: the evidence for inference. */
  readonly candidateCounts = new Map<number, number>();

  constructor(
    private readonly maxSamples: number,
    /** The server's "ip:port": one string shared by all its connection records. */
    readonly name = '',
  ) {}

  addRtt(rtt: number): void {
    if (this.rtts.length < this.maxSamples) this.rtts.push(rtt);
    else {
      this.rtts[this.rttNext] = rtt;
      this.rttNext = (this.rttNext + 1) % this.maxSamples;
    }
  }

  /** Median of recent handshake RTTs, or null if none was captured. */
  medianRtt(): number | null {
    const n = this.rtts.length;
    if (n === 0) return null;
    const s = [...this.rtts].sort((a, b) => a - b);
    return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }
}
