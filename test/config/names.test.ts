/**
 * The names file: JSON or YAML, keys ip:port / ip / CIDR, the most specific match wins, and a bad
 * file is one line that names the key.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NameMap, NamesError } from '../../src/config/names.js';

const FLEET = {
  '127.0.0.1:18080': 'apache-test',
  '127.0.0.1': 'loopback-host',
  '127.0.0.0/8': 'loopback-net',
  '10.3.0.0/16': 'orders',
  '10.3.7.0/24': 'orders-canary',
  '10.0.0.0/8': 'datacenter',
  '[::1]:8080': 'local-v6',
  'fd00::/8': 'ula',
  'fd00:1::/32': 'ula-team',
  '0.0.0.0/0': 'internet-v4',
};

describe('NameMap', () => {
  const m = NameMap.parse(JSON.stringify(FLEET), 'test');

  it('servers: ip:port, then ip, then the longest CIDR', () => {
    expect(m.server('127.0.0.1:18080')).toBe('apache-test');
    expect(m.server('127.0.0.1:18081')).toBe('loopback-host');
    expect(m.server('127.0.0.2:18080')).toBe('loopback-net');
    expect(m.server('10.3.7.12:8080')).toBe('orders-canary');
    expect(m.server('10.3.8.12:8080')).toBe('orders');
    expect(m.server('10.4.0.1:80')).toBe('datacenter');
    expect(m.server('192.0.2.1:443')).toBe('internet-v4');
  });

  it('IPv6: bracketed endpoints, prefixes of any length, another spelling of the same address', () => {
    expect(m.server('[::1]:8080')).toBe('local-v6');
    expect(m.server('[::1]:8081')).toBeNull();
    expect(m.server('[fd00:1:2::3]:443')).toBe('ula-team');
    expect(m.server('[fd12::3]:443')).toBe('ula');
    expect(m.server('[2001:db8::1]:443')).toBeNull(); // 0.0.0.0/0 is IPv4 only
    const v6host = NameMap.parse('{"2001:db8:0:0::1": "doc"}', 'test');
    expect(v6host.server('[2001:db8::1]:443')).toBe('doc');
  });

  it('clients: the address decides, never the port (an ip:port key names a server only)', () => {
    expect(m.client('127.0.0.1:18080')).toBe('loopback-host');
    expect(m.client('10.3.7.99:51234')).toBe('orders-canary');
    const onlyEndpoint = NameMap.parse('{"10.0.0.1:8080": "svc"}', 'test');
    expect(onlyEndpoint.client('10.0.0.1:8080')).toBeNull();
    expect(m.names).toContain('orders');
    expect(m.size).toBe(Object.keys(FLEET).length);
  });

  it('YAML: the same map, comments and quoted IPv6 keys', () => {
    const y = NameMap.parse(['# the fleet', '127.0.0.1:18080: apache-test', '10.3.0.0/16: orders', '"[::1]:8080": local-v6', ''].join('\n'), 'test');
    expect(y.server('127.0.0.1:18080')).toBe('apache-test');
    expect(y.server('10.3.1.1:80')).toBe('orders');
    expect(y.server('[::1]:8080')).toBe('local-v6');
  });

  it('an unbracketed IPv6 key is an address, not an endpoint: "::1:8080" is the host ::1:8080', () => {
    expect(NameMap.parse('{"::1:8080": "x"}', 'test').server('[::1:8080]:80')).toBe('x');
  });

  it('an empty file names nothing', () => {
    expect(NameMap.parse('', 'test').size).toBe(0);
    expect(NameMap.parse('{}', 'test').server('10.0.0.1:80')).toBeNull();
  });

  const bad: Array<[string, RegExp]> = [
    ['{"10.0.0.300": "x"}', /"10\.0\.0\.300" is not an ip, ip:port or CIDR/],
    ['{"10.0.0.0/33": "x"}', /"10\.0\.0\.0\/33" is not a CIDR/],
    ['{"10.0.0.1:70000": "x"}', /is not an ip, ip:port or CIDR/],
    ['{"10.0.0.1": ""}', /the name of "10\.0\.0\.1" is empty/],
    ['{"10.0.0.1": "other"}', /"other", the label of what is not named/],
    ['{"10.0.0.1": {"a": 1}}', /must be a string/],
    ['["10.0.0.1"]', /must be one object/],
    ['{"10.0.0.1": "a", ', /not valid JSON or YAML/],
    ['10.0.0.1: a\n10.0.0.1: b\n', /not valid JSON or YAML/],
  ];
  for (const [text, want] of bad) {
    it(`rejects ${JSON.stringify(text)} with one line`, () => {
      let err: unknown;
      try {
        NameMap.parse(text, 'names file f.json');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NamesError);
      const msg = (err as Error).message;
      expect(msg).toMatch(want);
      expect(msg).toMatch(/^names file f\.json: /);
      expect(msg).not.toContain('\n');
    });
  }

  it('load: a missing file says so', () => {
    const dir = mkdtempSync(join(tmpdir(), 'names-'));
    expect(() => NameMap.load(join(dir, 'nope.yaml'))).toThrow(/names file .*nope\.yaml: no such file/);
    const f = join(dir, 'n.yaml');
    writeFileSync(f, '127.0.0.1: here\n');
    expect(NameMap.load(f).server('127.0.0.1:80')).toBe('here');
  });
});
