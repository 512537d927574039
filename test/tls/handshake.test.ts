import { describe, expect, it } from 'vitest';
import {
  cipherSuiteName, parseClientHello, parseServerHello, resumed, versionName,
  type ClientHelloView, type ServerHelloView,
} from '../../src/tls/handshake.js';
import { EXT, alpnExt, clientHello, ext, serverHello, sniExt, vec16 } from '../helpers/tls.js';

const SID = Buffer.alloc(32, 0x5a);

function ch(b: Buffer): ClientHelloView {
  const v = parseClientHello(b, 0, b.length);
  if (typeof v === 'string') throw new Error(v);
  return v;
}
function sh(b: Buffer): ServerHelloView {
  const v = parseServerHello(b, 0, b.length);
  if (typeof v === 'string') throw new Error(v);
  return v;
}

describe('parseClientHello', () => {
  const full = clientHello({
    sessionId: SID, sni: 'WWW.Example.test', alpn: ['h2', 'http/1.1'], versions: [0x0a0a, 0x0304, 0x0303],
    ticket: Buffer.alloc(0), keyShare: [0x001d, 0x0017], psk: true, ciphers: [0x1301, 0x1302, 0x1303, 0xc02f],
  });

  it('reads every field it promises', () => {
    const v = ch(full);
    expect(v).toMatchObject({
      legacyVersion: 0x0303, random: 'ab'.repeat(32), sessionId: '5a'.repeat(32), cipherSuiteCount: 4,
      sni: 'www.example.test', sniRejected: null, alpnOffered: ['h2', 'http/1.1'], alpnOfferedCount: 2,
      supportedVersions: [0x0a0a, 0x0304, 0x0303], sessionTicket: 'empty', psk: true, keyShareGroups: [0x1d, 0x17], extensionCount: 6,
    });
    expect(ch(clientHello({ ticket: Buffer.alloc(100, 1) })).sessionTicket).toBe('ticket');
    expect(ch(clientHello()).sessionTicket).toBe('absent');
  });

  it('reads in place at an offset, and a hello without an extensions block (TLS 1.2)', () => {
    const padded = Buffer.concat([Buffer.alloc(7, 0xff), full, Buffer.alloc(3, 0xff)]);
    expect(parseClientHello(padded, 7, full.length)).toEqual(ch(full));
    expect(ch(clientHello({ noExtensions: true })).extensionCount).toBe(0);
    expect(parseClientHello(full, 10, full.length)).toBe('tls_hello_truncated'); // past the buffer
  });

  it('at every truncation length: a rejection, never a throw (or a legal hello with no extensions)', () => {
    const extStart = 2 + 32 + 1 + 32 + 2 + 4 * 2 + 1 + 1; // version, random, session id, 4 suites, 1 compression method
    for (let n = 0; n < full.length; n++) {
      const v = parseClientHello(full, 0, n);
      if (n === extStart) expect(typeof v === 'object' && v.extensionCount === 0, `cut at ${n}`).toBe(true);
      else expect(typeof v, `cut at ${n}`).toBe('string');
    }
  });

  it('rejects hostile lengths and zero-length fields by name', () => {
    const base = clientHello({ sni: 'a.test' });
    const withExts = (...e: Buffer[]) => clientHello({ extra: e });
    // session id of 33 bytes
    const badSid = Buffer.from(base);
    badSid[34] = 33;
    expect(parseClientHello(badSid, 0, badSid.length)).toBe('tls_bad_session_id');
    expect(parseClientHello(clientHello({ ciphers: [] }), 0, clientHello({ ciphers: [] }).length)).toBe('tls_bad_cipher_suites');
    const odd = Buffer.from(clientHello({ ciphers: [0x1301] }));
    odd.writeUInt16BE(1, 35);
    expect(parseClientHello(odd, 0, odd.length)).toBe('tls_bad_cipher_suites');
    const noComp = Buffer.concat([base.subarray(0, 35), vec16(Buffer.from([0x13, 0x01])), Buffer.from([0])]);
    expect(parseClientHello(noComp, 0, noComp.length)).toBe('tls_hello_malformed');
    // an extension whose length runs past the block
    const past = withExts(ext(0x1234, Buffer.alloc(4), 400));
    expect(parseClientHello(past, 0, past.length)).toBe('tls_bad_extension_length');
    // extensions block length 0xffff with a few bytes there
    const huge = Buffer.concat([clientHello({ noExtensions: true }), Buffer.from([0xff, 0xff, 0, 0])]);
    expect(parseClientHello(huge, 0, huge.length)).toBe('tls_hello_truncated');
    const trailing = Buffer.concat([base, Buffer.from([0])]);
    expect(parseClientHello(trailing, 0, trailing.length)).toBe('tls_hello_malformed');
    expect(parseClientHello(withExts(sniExt('x.test'), sniExt('y.test')), 0, withExts(sniExt('x.test'), sniExt('y.test')).length)).toBe('tls_duplicate_extension');
    const emptyAlpn = withExts(ext(EXT.ALPN, vec16(Buffer.alloc(0))));
    expect(parseClientHello(emptyAlpn, 0, emptyAlpn.length)).toBe('tls_bad_alpn');
    const emptyName = withExts(alpnExt(['']));
    expect(parseClientHello(emptyName, 0, emptyName.length)).toBe('tls_bad_alpn');
    const zeroAlpnExt = withExts(ext(EXT.ALPN, Buffer.alloc(0)));
    expect(parseClientHello(zeroAlpnExt, 0, zeroAlpnExt.length)).toBe('tls_bad_alpn');
    const zeroSv = withExts(ext(EXT.SUPPORTED_VERSIONS, Buffer.from([0])));
    expect(parseClientHello(zeroSv, 0, zeroSv.length)).toBe('tls_bad_supported_versions');
    const oddSv = withExts(ext(EXT.SUPPORTED_VERSIONS, Buffer.from([3, 3, 4, 3])));
    expect(parseClientHello(oddSv, 0, oddSv.length)).toBe('tls_bad_supported_versions');
    const badKs = withExts(ext(EXT.KEY_SHARE, Buffer.from([0, 6, 0, 0x1d, 0x01, 0x00, 0, 0])));
    expect(parseClientHello(badKs, 0, badKs.length)).toBe('tls_bad_extension_length');
    const many = withExts(...Array.from({ length: 129 }, (_, i) => ext(0x4000 + i, Buffer.alloc(0))));
    expect(parseClientHello(many, 0, many.length)).toBe('tls_too_many_extensions');
  });

  it('keeps the hello but not a bad server_name: too long, bad characters, malformed', () => {
    const long = ch(clientHello({ sni: 'a'.repeat(254) }));
    expect([long.sni, long.sniRejected]).toEqual([null, 'tls_sni_too_long']);
    expect(ch(clientHello({ sni: 'a'.repeat(253) })).sni).toBe('a'.repeat(253));
    const huge = ch(clientHello({ sni: 'b'.repeat(60000) }));
    expect([huge.sni, huge.sniRejected]).toEqual([null, 'tls_sni_too_long']);
    for (const bad of ['a b.test', 'a\nb', 'x{}="', 'a..b', '.a', 'é.test', '']) {
      const v = ch(clientHello({ sni: bad }));
      expect([v.sni, v.sniRejected], JSON.stringify(bad)).toEqual([null, 'tls_sni_bad_chars']);
    }
    expect(ch(clientHello({ sni: 'under_score-1.Test' })).sni).toBe('under_score-1.test');
    const lying = ch(clientHello({ extra: [ext(EXT.SERVER_NAME, Buffer.from([0, 5, 0, 0, 9, 0x61, 0x62]))] }));
    expect([lying.sni, lying.sniRejected]).toEqual([null, 'tls_sni_malformed']);
    expect(ch(clientHello({ extra: [ext(EXT.SERVER_NAME, Buffer.alloc(0))] })).sni).toBeNull();
    expect(ch(clientHello({ alpn: Array.from({ length: 20 }, (_, i) => `p${i}`) }))).toMatchObject({ alpnOfferedCount: 20 });
    expect(ch(clientHello({ alpn: Array.from({ length: 20 }, (_, i) => `p${i}`) })).alpnOffered.length).toBe(8);
  });
});

describe('parseServerHello', () => {
  it('reads version from supported_versions, cipher, session id, ALPN, psk, HRR', () => {
    const v13 = sh(serverHello({ sessionId: SID, version: 0x0304, cipher: 0x1302, keyShare: 0x1d, psk: true }));
    expect(v13).toMatchObject({ legacyVersion: 0x0303, version: 0x0304, cipherSuite: 0x1302, sessionId: '5a'.repeat(32), psk: true, helloRetryRequest: false, keyShareGroup: 0x1d, alpn: null });
    const v12 = sh(serverHello({ cipher: 0xc02f, alpn: 'http/1.1', ticket: true }));
    expect(v12).toMatchObject({ version: 0x0303, cipherSuite: 0xc02f, alpn: 'http/1.1', sessionTicket: true, psk: false });
    expect(sh(serverHello({ noExtensions: true, cipher: 0x009c })).version).toBe(0x0303);
    const hrr = sh(serverHello({ hrr: true, version: 0x0304, keyShare: 0x17 }));
    expect(hrr).toMatchObject({ helloRetryRequest: true, keyShareGroup: 0x17 });
  });

  it('at every truncation length: a rejection or a legal extension-less hello, never a throw', () => {
    const full = serverHello({ sessionId: SID, version: 0x0304, keyShare: 0x1d, psk: true });
    const extStart = 2 + 32 + 1 + 32 + 3;
    for (let n = 0; n < full.length; n++) {
      const v = parseServerHello(full, 0, n);
      if (n === extStart) expect(typeof v).toBe('object');
      else expect(typeof v, `cut at ${n}`).toBe('string');
    }
  });

  it('rejects a supported_versions that is not one version, and an ALPN with two names', () => {
    const sv = serverHello({ extra: [ext(EXT.SUPPORTED_VERSIONS, Buffer.from([2, 3, 4]))] });
    expect(parseServerHello(sv, 0, sv.length)).toBe('tls_bad_supported_versions');
    const two = serverHello({ extra: [alpnExt(['h2', 'http/1.1'])] });
    expect(parseServerHello(two, 0, two.length)).toBe('tls_bad_alpn');
    const ks = serverHello({ extra: [ext(EXT.KEY_SHARE, Buffer.from([0]))] });
    expect(parseServerHello(ks, 0, ks.length)).toBe('tls_bad_extension_length');
  });
});

describe('resumed (keepalive-semantics section 9)', () => {
  const other = Buffer.alloc(32, 0x77);
  it('TLS 1.3: pre_shared_key in the ServerHello, whatever the session id', () => {
    const c = ch(clientHello({ sessionId: SID, versions: [0x0304], psk: true }));
    expect(resumed(c, sh(serverHello({ sessionId: SID, version: 0x0304, psk: true })))).toBe(true);
    expect(resumed(c, sh(serverHello({ sessionId: SID, version: 0x0304 })))).toBe(false); // echoed id means nothing in 1.3
    expect(resumed(c, sh(serverHello({ hrr: true, version: 0x0304, keyShare: 0x17 })))).toBeNull();
  });
  it('TLS 1.2: the client\'s non-empty id echoed, not merely a non-empty id', () => {
    const c = ch(clientHello({ sessionId: SID }));
    expect(resumed(c, sh(serverHello({ sessionId: SID, cipher: 0xc02f })))).toBe(true);
    expect(resumed(c, sh(serverHello({ sessionId: other, cipher: 0xc02f })))).toBe(false);
    expect(resumed(ch(clientHello()), sh(serverHello({ cipher: 0xc02f })))).toBe(false); // both empty: not an echo
  });
  it('TLS 1.2 ticket: abbreviated flight resumes, a Certificate is full, else not known yet', () => {
    const c = ch(clientHello({ ticket: Buffer.alloc(100, 1) }));
    const s = sh(serverHello({ sessionId: other, cipher: 0xc02f, ticket: true }));
    expect(resumed(c, s)).toBeNull();
    expect(resumed(c, s, 'abbreviated')).toBe(true);
    expect(resumed(c, s, 'certificate')).toBe(false);
  });
  it('names versions and suites, bounded', () => {
    expect([versionName(0x0303), versionName(0x0304), versionName(0x0a0a)]).toEqual(['1.2', '1.3', '0x0a0a']);
    expect([cipherSuiteName(0x1301), cipherSuiteName(0xc030), cipherSuiteName(0xbeef)]).toEqual(['TLS_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', '0xbeef']);
  });
});
