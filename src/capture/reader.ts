/**
 * One incremental reader per capture format: classic pcap (both byte orders, micro- and
 * nanosecond timestamps) and pcapng (sections with either byte order, several interfaces with
 * their own link types and timestamp resolutions).
 *
 * `CaptureDecoder` is a push parser: feed it chunks of any size, it calls the sink once per
 * packet with a view (buffer, offset, length) that is valid only during the call. It never
 * throws on file content: a truncated last record or a corrupt length stops it with a
 * `CaptureProblem` naming the byte offset, after every packet before it was delivered.
 * The carry-over between chunks is at most one record, so a corrupt length never makes it
 * re-buffer the rest of the file (pcap-parser's quadratic failure, see README).
 */
export interface PacketSink {
  /** `ts` is capture time in seconds since the epoch; `capLen` bytes of the packet start at `offset`. */
  packet(linkType: number, data: Buffer, offset: number, capLen: number, origLen: number, ts: number): void;
  /**
   * Optional: an anomaly of the capture itself, told when it is found so that the sink counts it
   * beside its own (the engine: `stats().anomalies`, `keepalive_anomalies_total`). The decoder
   * tells each skipped pcapng block; the file reader (file.ts) tells a truncated or corrupt
   * capture once, when the read ends, unless the read was aborted (a cut made by us is no damage).
   */
  captureAnomaly?(kind: CaptureAnomaly): void;
}

/** The capture-level names of src/config/anomalies.ts (capture may not import conn; the names are the interface). */
export type CaptureAnomaly = 'capture_truncated' | 'capture_corrupt' | 'capture_unknown_block';

export type CaptureFormat = 'pcap' | 'pcapng';

export interface CaptureProblem {
  kind: 'not_a_capture' | 'truncated' | 'corrupt';
  /** Byte offset in the (decompressed) capture where the problem starts. */
  offset: number;
  message: string;
}

/** A record longer than this cannot be a real packet (pcap's own MAXIMUM_SNAPLEN is 262144). */
const MAX_PCAP_RECORD = 262_144;
/** pcapng blocks may carry more than one packet's worth of options; still bounded. */
const MAX_PCAPNG_BLOCK = 16 * 1024 * 1024;

function u32le(b: Buffer, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}
function u32be(b: Buffer, p: number): number {
  return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
}

const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BOM = 0x1a2b3c4d;
/** The first four bytes of every format we read, as they appear in a file. */
const MAGIC_BYTES = ['a1b2c3d4', 'd4c3b2a1', 'a1b23c4d', '4d3cb2a1', '0a0d0d0a'].map((h) => Buffer.from(h, 'hex'));

interface PcapngInterface {
  linkType: number;
  snapLen: number;
  /** Timestamp units per second (if_tsresol), and the if_tsoffset in seconds. */
  unitsPerSecond: number;
  tsOffset: number;
}

export class CaptureDecoder {
  format: CaptureFormat | null = null;
  packets = 0;
  /** Records whose captured length is shorter than the packet on the wire (snaplen). */
  snaplenCut = 0;
  unknownBlocks = 0;
  problem: CaptureProblem | null = null;
  /** pcap link type, or the first pcapng interface's. */
  linkType = -1;

  private pending: Buffer | null = null;
  /** Our own buffer holding `pending` while a record larger than one chunk is being completed. */
  private pendingStore: Buffer | null = null;
  /** Absolute offset of the next byte not yet consumed. */
  private base = 0;
  /** Absolute offset of byte 0 of the buffer being parsed. */
  private bufBase = 0;
  private headerDone = false;
  private littleEndian = true;
  private nanos = false;
  private snapLen = 0;
  private interfaces: PcapngInterface[] = [];
  private lastTs = 0;

  constructor(private readonly sink: PacketSink) {}

  /** Total bytes consumed so far (the offset reported in problems). */
  get offset(): number {
    return this.base;
  }

  /** Feed the next chunk. Returns false once a problem stopped the reader. */
  push(chunk: Buffer): boolean {
    if (this.problem) return false;
    let buf = chunk;
    let pos = 0;
    let bufBase = this.base;
    if (!this.headerDone) {
      // Only at the start of the input: the file header may straddle chunks.
      if (this.pending) {
        buf = Buffer.concat([this.pending, chunk]);
        this.pending = null;
      }
      pos = this.readFileHeader(buf);
      if (pos < 0) {
        if (this.problem) return false;
        this.pending = Buffer.from(buf);
        return true;
      }
    } else if (this.pending) {
      // Complete the record carried over from the last chunk with as few bytes as it needs,
      // so a chunk is never copied whole.
      const used = this.completePending(chunk);
      if (used < 0) return !this.problem;
      pos = used;
      bufBase = this.base - used;
    }
    this.bufBase = bufBase;
    pos = this.format === 'pcap' ? this.readPcapRecords(buf, pos) : this.readPcapngBlocks(buf, pos);
    if (this.problem) {
      this.base = this.bufBase + pos; // `offset` is then the problem's offset: the bytes actually read
      return false;
    }
    this.base = this.bufBase + pos;
    if (pos < buf.length) this.pending = Buffer.from(buf.subarray(pos));
    return true;
  }

  /**
   * Appends bytes of `chunk` to the carried-over partial record and parses it once complete.
   * Returns how many bytes of `chunk` it used, or -1 when the chunk ran out (or a problem stopped us).
   */
  private completePending(chunk: Buffer): number {
    let p = this.pending!;
    let used = 0;
    let need = this.firstRecordLength(p);
    if (need < 0) {
      const header = this.format === 'pcap' ? 16 : 12;
      const take = Math.min(header - p.length, chunk.length);
      p = Buffer.concat([p, chunk.subarray(0, take)]);
      used = take;
      need = this.firstRecordLength(p);
      if (need < 0) {
        this.pending = p;
        return -1;
      }
    }
    // A corrupt length is detected by the record parser below, with nothing more appended.
    const limit = this.format === 'pcap' ? 16 + this.maxPcapRecord() : MAX_PCAPNG_BLOCK;
    if (need <= limit && need > p.length) {
      // Grow the carry-over to the record's size once, then fill it in place: a large block
      // arriving in small chunks is copied once, not once per chunk.
      let store = this.pendingStore;
      if (!store || store.length !== need || p.buffer !== store.buffer) {
        store = Buffer.allocUnsafeSlow(need);
        p.copy(store, 0);
        this.pendingStore = store;
      }
      const have = p.length;
      const take = Math.min(need - have, chunk.length - used);
      chunk.copy(store, have, used, used + take);
      used += take;
      p = store.subarray(0, have + take);
      if (p.length < need) {
        this.pending = p;
        return -1;
      }
    }
    this.pending = null;
    this.pendingStore = null;
    this.bufBase = this.base;
    const consumed = this.format === 'pcap' ? this.readPcapRecords(p, 0) : this.readPcapngBlocks(p, 0);
    if (this.problem) return -1;
    this.base += consumed;
    return used;
  }

  /** Longest believable record: the file's snaplen, at least pcap's 262144, at most 16 MiB (a bogus snaplen must not disable the check). */
  private maxPcapRecord(): number {
    return Math.min(Math.max(MAX_PCAP_RECORD, this.snapLen), MAX_PCAPNG_BLOCK);
  }

  /** Length of the record at the start of `p`, or -1 if its header is not complete yet. */
  private firstRecordLength(p: Buffer): number {
    if (this.format === 'pcap') {
      if (p.length < 16) return -1;
      return 16 + (this.littleEndian ? p.readUInt32LE(8) : p.readUInt32BE(8));
    }
    if (p.length < 12) return -1;
    let le = this.littleEndian;
    if (p.readUInt32LE(0) === PCAPNG_SHB) le = p.readUInt32LE(8) === PCAPNG_BOM;
    return le ? p.readUInt32LE(4) : p.readUInt32BE(4);
  }

  /** The input ended: anything left over is a truncated record. */
  end(): CaptureProblem | null {
    if (this.problem) return this.problem;
    const left = this.pending ? this.pending.length : 0;
    if (!this.headerDone) {
      // Fewer than 4 bytes: truncated only if they start one of the magic numbers.
      const prefix = this.pending ? this.pending.subarray(0, 4) : Buffer.alloc(0);
      const notCapture = left === 0 || (left < 4 && !MAGIC_BYTES.some((m) => m.subarray(0, left).equals(prefix)));
      // A header prefix is kept `truncated` (a download cut short), but its message says what
      // was seen: with no packet read the CLI treats any problem at offset 0 as "not a capture".
      this.problem = {
        kind: notCapture ? 'not_a_capture' : 'truncated',
        offset: 0,
        message: left === 0 ? 'not a pcap or pcapng file: the input is empty'
          : notCapture ? `not a pcap or pcapng file (only ${left} bytes: 0x${prefix.toString('hex')})`
          : `not a pcap or pcapng file: only ${left} bytes (0x${this.pending!.subarray(0, 32).toString('hex')}), shorter than the ${this.pending![0] === 0x0a ? 'pcapng section header block (28 bytes at least)' : 'pcap file header (24 bytes)'}`,
      };
    } else if (this.format === 'pcapng' && this.base === 0 && left > 0) {
      // The pcapng magic was seen but the section header block never completed.
      this.problem = {
        kind: 'truncated',
        offset: 0,
        message: `not a pcap or pcapng file: only ${left} bytes (0x${this.pending!.subarray(0, 32).toString('hex')}), shorter than the pcapng section header block it starts`,
      };
    } else if (left > 0) {
      this.problem = {
        kind: 'truncated',
        offset: this.base,
        message: `the last record is truncated: ${left} bytes at byte offset ${this.base} are not a complete record`,
      };
    }
    this.pending = null;
    return this.problem;
  }

  private stop(kind: CaptureProblem['kind'], at: number, message: string): void {
    this.problem = { kind, offset: this.bufBase + at, message };
  }

  /** Returns the position after the header, or -1 if more bytes are needed (or a problem was set). */
  private readFileHeader(buf: Buffer): number {
    if (buf.length < 4) return -1;
    const magic = buf.readUInt32LE(0);
    if (magic === PCAPNG_SHB) {
      this.format = 'pcapng';
      this.headerDone = true;
      return 0; // the SHB is parsed as an ordinary block
    }
    let le: boolean;
    let nanos: boolean;
    switch (magic) {
      case 0xa1b2c3d4: le = true; nanos = false; break;
      case 0xd4c3b2a1: le = false; nanos = false; break;
      case 0xa1b23c4d: le = true; nanos = true; break;
      case 0x4d3cb2a1: le = false; nanos = true; break;
      default:
        this.stop('not_a_capture', 0, `not a pcap or pcapng file (magic number 0x${buf.readUInt32BE(0).toString(16).padStart(8, '0')})`);
        return -1;
    }
    if (buf.length < 24) return -1;
    this.format = 'pcap';
    this.littleEndian = le;
    this.nanos = nanos;
    this.snapLen = le ? buf.readUInt32LE(16) : buf.readUInt32BE(16);
    // Only the low 16 bits are the link type; the upper bits carry FCS information
    // (pcap-savefile(5); libpcap's LT_LINKTYPE: FCS length in bits 28-31, its presence bit 0x04000000).
    this.linkType = (le ? buf.readUInt32LE(20) : buf.readUInt32BE(20)) & 0xffff;
    this.headerDone = true;
    return 24;
  }

  private readPcapRecords(buf: Buffer, pos: number): number {
    const le = this.littleEndian;
    const fracScale = this.nanos ? 1e-9 : 1e-6;
    const maxRecord = this.maxPcapRecord();
    const linkType = this.linkType;
    const sink = this.sink;
    const end = buf.length;
    while (pos + 16 <= end) {
      // By hand: Buffer#readUInt32LE validates its arguments on every call.
      const sec = le ? u32le(buf, pos) : u32be(buf, pos);
      const frac = le ? u32le(buf, pos + 4) : u32be(buf, pos + 4);
      const capLen = le ? u32le(buf, pos + 8) : u32be(buf, pos + 8);
      const origLen = le ? u32le(buf, pos + 12) : u32be(buf, pos + 12);
      if (capLen > maxRecord) {
        this.stop('corrupt', pos, `corrupt record at byte offset ${this.bufBase + pos}: captured length ${capLen} exceeds the snapshot length ${this.snapLen}`);
        return pos;
      }
      if (pos + 16 + capLen > end) break;
      if (capLen < origLen) this.snaplenCut++;
      this.packets++;
      sink.packet(linkType, buf, pos + 16, capLen, origLen, sec + frac * fracScale);
      pos += 16 + capLen;
    }
    return pos;
  }

  private readPcapngBlocks(buf: Buffer, pos: number): number {
    const end = buf.length;
    while (pos + 12 <= end) {
      let le = this.littleEndian;
      const rawType = buf.readUInt32LE(pos);
      if (rawType === PCAPNG_SHB) {
        // A new section may change byte order; the byte-order magic follows the length.
        const bom = buf.readUInt32LE(pos + 8);
        if (bom === PCAPNG_BOM) le = true;
        else if (bom === 0x4d3c2b1a) le = false;
        else {
          this.stop('corrupt', pos, `corrupt pcapng section header at byte offset ${this.bufBase + pos}: bad byte-order magic`);
          return pos;
        }
        this.littleEndian = le;
      }
      const type = le ? rawType : buf.readUInt32BE(pos);
      const len = le ? buf.readUInt32LE(pos + 4) : buf.readUInt32BE(pos + 4);
      if (len < 12 || len % 4 !== 0 || len > MAX_PCAPNG_BLOCK) {
        this.stop('corrupt', pos, `corrupt pcapng block at byte offset ${this.bufBase + pos}: block length ${len}`);
        return pos;
      }
      if (pos + len > end) break;
      const body = pos + 8;
      const bodyLen = len - 12;
      switch (type) {
        case 6: // Enhanced Packet Block
          if (bodyLen >= 20) {
            const ifc = this.interfaces[this.u32(buf, body)];
            const capLen = this.u32(buf, body + 12);
            const origLen = this.u32(buf, body + 16);
            if (!ifc || capLen > bodyLen - 20) {
              this.stop('corrupt', pos, `corrupt pcapng packet block at byte offset ${this.bufBase + pos}: ${ifc ? `captured length ${capLen} exceeds the block` : 'unknown interface'}`);
              return pos;
            }
            const ts = this.timestamp(ifc, this.u32(buf, body + 4), this.u32(buf, body + 8));
            if (capLen < origLen) this.snaplenCut++;
            this.packets++;
            this.sink.packet(ifc.linkType, buf, body + 20, capLen, origLen, ts);
          }
          break;
        case 3: {
          // Simple Packet Block: interface 0, no timestamp (we reuse the last one seen).
          const ifc = this.interfaces[0];
          if (ifc && bodyLen >= 4) {
            const origLen = this.u32(buf, body);
            let capLen = Math.min(origLen, bodyLen - 4);
            if (ifc.snapLen > 0) capLen = Math.min(capLen, ifc.snapLen);
            if (capLen < origLen) this.snaplenCut++;
            this.packets++;
            this.sink.packet(ifc.linkType, buf, body + 4, capLen, origLen, this.lastTs);
          }
          break;
        }
        case 2: {
          // Obsolete Packet Block (pcapng drafts before EPB); still written by old tools.
          if (bodyLen >= 20) {
            const ifc = this.interfaces[le ? buf.readUInt16LE(body) : buf.readUInt16BE(body)];
            const capLen = this.u32(buf, body + 12);
            const origLen = this.u32(buf, body + 16);
            if (ifc && capLen <= bodyLen - 20) {
              const ts = this.timestamp(ifc, this.u32(buf, body + 4), this.u32(buf, body + 8));
              if (capLen < origLen) this.snaplenCut++;
              this.packets++;
              this.sink.packet(ifc.linkType, buf, body + 20, capLen, origLen, ts);
            }
          }
          break;
        }
        case 1: // Interface Description Block
          this.interfaces.push(this.readInterface(buf, body, bodyLen));
          if (this.linkType < 0) this.linkType = this.interfaces[0].linkType;
          break;
        case PCAPNG_SHB:
          this.interfaces = []; // interface ids are per section
          break;
        case 4: case 5: case 9: case 10: case 0x0bad: case 0x40000bad:
          break; // name resolution, statistics, journal, secrets, custom: not needed
        default:
          this.unknownBlocks++;
          this.sink.captureAnomaly?.('capture_unknown_block');
      }
      pos += len;
    }
    return pos;
  }

  private u32(buf: Buffer, at: number): number {
    return this.littleEndian ? buf.readUInt32LE(at) : buf.readUInt32BE(at);
  }

  private timestamp(ifc: PcapngInterface, high: number, low: number): number {
    const ts = (high * 4294967296) / ifc.unitsPerSecond + low / ifc.unitsPerSecond + ifc.tsOffset;
    this.lastTs = ts;
    return ts;
  }

  private readInterface(buf: Buffer, body: number, bodyLen: number): PcapngInterface {
    const le = this.littleEndian;
    const ifc: PcapngInterface = {
      linkType: bodyLen >= 2 ? (le ? buf.readUInt16LE(body) : buf.readUInt16BE(body)) : -1,
      snapLen: bodyLen >= 8 ? this.u32(buf, body + 4) : 0,
      unitsPerSecond: 1e6, // pcapng default resolution: microseconds
      tsOffset: 0,
    };
    let opt = body + 8;
    const end = body + bodyLen;
    while (opt + 4 <= end) {
      const code = le ? buf.readUInt16LE(opt) : buf.readUInt16BE(opt);
      const olen = le ? buf.readUInt16LE(opt + 2) : buf.readUInt16BE(opt + 2);
      if (code === 0 || opt + 4 + olen > end) break;
      if (code === 9 && olen >= 1) {
        const v = buf[opt + 4];
        // High bit set: negative power of two; else negative power of ten.
        ifc.unitsPerSecond = v & 0x80 ? 2 ** (v & 0x7f) : 10 ** v;
      } else if (code === 14 && olen >= 8) {
        ifc.tsOffset = Number(le ? buf.readBigInt64LE(opt + 4) : buf.readBigInt64BE(opt + 4));
      }
      opt += 4 + ((olen + 3) & ~3);
    }
    return ifc;
  }
}
