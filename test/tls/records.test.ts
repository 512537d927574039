import { describe, expect, it } from 'vitest';
import { MAX_RECORD_LENGTH, plausibleRecordHeader, readRecordHeader } from '../../src/tls/records.js';
import { recordHeader } from '../helpers/tls.js';

describe('readRecordHeader', () => {
  it('reads type, version and length in place', () => {
    const b = Buffer.concat([Buffer.from([0xee]), recordHeader(22, 512, 0x0301)]);
    expect(readRecordHeader(b, 1, 5)).toEqual({ type: 22, version: 0x0301, length: 512 });
  });

  it('says truncated at every length under 5, and past the buffer end', () => {
    const h = recordHeader(23, 100);
    for (let n = 0; n < 5; n++) expect(readRecordHeader(h.subarray(0, n), 0, n)).toBe('truncated');
    expect(readRecordHeader(h, 1, 5)).toBe('truncated');
  });

  it('rejects what no peer sends, by name', () => {
    expect(readRecordHeader(recordHeader(19, 10), 0, 5)).toBe('tls_bad_content_type');
    expect(readRecordHeader(recordHeader(25, 10), 0, 5)).toBe('tls_bad_content_type');
    expect(readRecordHeader(recordHeader(22, 10, 0x0300), 0, 5)).toBe('tls_bad_record_version');
    expect(readRecordHeader(recordHeader(22, 10, 0x0305), 0, 5)).toBe('tls_bad_record_version');
    expect(readRecordHeader(recordHeader(23, MAX_RECORD_LENGTH + 1), 0, 5)).toBe('tls_record_too_long');
    expect(readRecordHeader(recordHeader(23, 0xffff), 0, 5)).toBe('tls_record_too_long');
    expect(readRecordHeader(recordHeader(22, 0), 0, 5)).toBe('tls_empty_record');
    expect(readRecordHeader(recordHeader(21, 0), 0, 5)).toBe('tls_empty_record');
    expect(readRecordHeader(recordHeader(23, 0), 0, 5)).toEqual({ type: 23, version: 0x0303, length: 0 });
    expect(readRecordHeader(recordHeader(23, MAX_RECORD_LENGTH), 0, 5)).toEqual({ type: 23, version: 0x0303, length: MAX_RECORD_LENGTH });
    for (let t = 20; t <= 24; t++) for (let v = 0x0301; v <= 0x0304; v++) expect(typeof readRecordHeader(recordHeader(t, 1, v), 0, 5)).toBe('object');
  });
});

describe('plausibleRecordHeader', () => {
  it('takes only what follows a handshake: alert, handshake, application data, 0x0301-0x0303, 1..2^14+2048', () => {
    expect(plausibleRecordHeader(recordHeader(23, 100), 0)).toBe(true);
    expect(plausibleRecordHeader(recordHeader(21, 26), 0)).toBe(true);
    expect(plausibleRecordHeader(recordHeader(22, 40, 0x0301), 0)).toBe(true);
    expect(plausibleRecordHeader(recordHeader(20, 1), 0)).toBe(false);
    expect(plausibleRecordHeader(recordHeader(24, 1), 0)).toBe(false);
    expect(plausibleRecordHeader(recordHeader(23, 100, 0x0304), 0)).toBe(false);
    expect(plausibleRecordHeader(recordHeader(23, 100, 0x0203), 0)).toBe(false);
    expect(plausibleRecordHeader(recordHeader(23, 0), 0)).toBe(false);
    expect(plausibleRecordHeader(recordHeader(23, MAX_RECORD_LENGTH + 1), 0)).toBe(false);
    expect(plausibleRecordHeader(recordHeader(23, MAX_RECORD_LENGTH), 0)).toBe(true);
  });
});
