/**
 * The daemon's settings: defaults, precedence (flag > environment > --config file > default),
 * the forms a value can take, and a message naming where every bad value came from.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEFAULT_LISTEN, DEFAULT_PORTS, OPTIONS, envName, loadConfig, type DaemonConfig } from '../../src/config/daemon.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ka-config-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let files = 0;
function configFile(content: unknown): string {
  const p = join(dir, `config-${files++}.json`);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

/** The message of the ConfigError that loading throws (fails the test if it does not throw one). */
function error(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg.includes('\n'), 'one line').toBe(false);
    return msg;
  }
  throw new Error(`no error for ${JSON.stringify(argv)} ${JSON.stringify(env)}`);
}

describe('defaults', () => {
  it('with no flag, environment or file', () => {
    const c = loadConfig([], {});
    expect(c).toEqual<DaemonConfig>({
      interface: 'any',
      ports: DEFAULT_PORTS,
      portsExplicit: false,
      pcap: [],
      proxy: [],
      proxyProtocol: null,
      proxyIdleTimeoutSeconds: 900,
      proxyMaxConnections: 10000,
      replay: 'fast',
      listenHost: '0.0.0.0',
      listenPort: 10842,
      webMaxRequests: 40,
      webTelemetryPath: '/metrics',
      webConfigFile: null,
      webDisableExporterMetrics: false,
      maxServers: 500,
      maxFlows: null,
      logLevel: 'info',
      tcpdump: 'tcpdump',
      captureBufferKiB: 131072,
      tlsKeylog: null,
      names: null,
      clientGroups: false,
      config: null,
    });
    expect(DEFAULT_LISTEN).toBe('0.0.0.0:10842');
    expect(DEFAULT_PORTS).toEqual(expect.arrayContaining([80, 8080, 8000, 3000]));
  });

  it('ignores environment variables of other programs and empty ones', () => {
    expect(loadConfig([], { PATH: '/bin', KEEPALIVE_EXPORTER_PORTS: '', HOME: '/root' }).ports).toEqual(DEFAULT_PORTS);
  });
});

describe('environment names', () => {
  it('are KEEPALIVE_EXPORTER_ and the flag in capitals, "." and "-" as "_"', () => {
    expect(envName('web.listen-address')).toBe('KEEPALIVE_EXPORTER_WEB_LISTEN_ADDRESS');
    expect(envName('capture.buffer-kib')).toBe('KEEPALIVE_EXPORTER_CAPTURE_BUFFER_KIB');
    expect(envName('max-servers')).toBe('KEEPALIVE_EXPORTER_MAX_SERVERS');
  });

  it('every option can be set by its environment variable', () => {
    const env: NodeJS.ProcessEnv = {
      [envName('interface')]: 'eth1',
      [envName('ports')]: '81,82',
      [envName('pcap')]: 'a.pcap',
      [envName('replay')]: 'realtime',
      [envName('web.listen-address')]: '127.0.0.1:9999',
      [envName('max-servers')]: '7',
      [envName('max-flows')]: '77',
      [envName('log.level')]: 'debug',
      [envName('tcpdump')]: '/opt/tcpdump',
      [envName('capture.buffer-kib')]: '1024',
      [envName('proxy')]: ':8080=127.0.0.1:80,[::1]:8443=backend:443',
      [envName('proxy.protocol')]: 'v2',
      [envName('proxy.idle-timeout')]: '60',
      [envName('proxy.max-connections')]: '50',
      [envName('web.max-requests')]: '3',
      [envName('web.telemetry-path')]: '/m',
      [envName('web.config.file')]: 'web.yml',
      [envName('web.disable-exporter-metrics')]: 'true',
      [envName('tls-keylog')]: '/run/keys/sslkeylog.txt',
      [envName('names')]: '/etc/keepalive-exporter/names.yaml',
      [envName('client-groups')]: 'true',
    };
    expect(Object.keys(env).length + 1).toBe(OPTIONS.length); // all but --config, tested below
    expect(loadConfig([], env)).toEqual<DaemonConfig>({
      interface: 'eth1', ports: [81, 82], portsExplicit: true, pcap: ['a.pcap'], replay: 'realtime', listenHost: '127.0.0.1', listenPort: 9999,
      proxy: [
        { listenHost: '0.0.0.0', listenPort: 8080, upstreamHost: '127.0.0.1', upstreamPort: 80, name: 'proxy:8080' },
        { listenHost: '::1', listenPort: 8443, upstreamHost: 'backend', upstreamPort: 443, name: 'proxy:8443' },
      ],
      proxyProtocol: 'v2',
      proxyIdleTimeoutSeconds: 60,
      proxyMaxConnections: 50,
      webMaxRequests: 3,
      webTelemetryPath: '/m',
      webConfigFile: 'web.yml',
      webDisableExporterMetrics: true,
      maxServers: 7, maxFlows: 77, logLevel: 'debug', tcpdump: '/opt/tcpdump', captureBufferKiB: 1024, tlsKeylog: '/run/keys/sslkeylog.txt',
      names: '/etc/keepalive-exporter/names.yaml', clientGroups: true, config: null,
    });
  });
});

describe('--proxy', () => {
  it('turns live capture off unless --interface is given', () => {
    expect(loadConfig(['--proxy', ':8080=127.0.0.1:80'], {}).interface).toBeNull();
    expect(loadConfig(['--proxy', ':8080=127.0.0.1:80', '--interface', 'lo'], {}).interface).toBe('lo');
  });

  it('is repeatable', () => {
    expect(loadConfig(['--proxy', ':1=a:2', '--proxy', '127.0.0.1:3=b:4'], {}).proxy.map((r) => `${r.listenHost}:${r.listenPort}=${r.upstreamHost}:${r.upstreamPort}`))
      .toEqual(['0.0.0.0:1=a:2', '127.0.0.1:3=b:4']);
  });

  it.each([':8080', ':8080=80', 'x=127.0.0.1:80', ':0=a:80', ':8080=:80', ':8080=a:70000'])('rejects "%s", naming --proxy', (route) => {
    expect(() => loadConfig(['--proxy', route], {})).toThrow(/--proxy: .*LISTEN=UPSTREAM/);
  });

  it('rejects an unknown PROXY protocol version', () => {
    expect(() => loadConfig(['--proxy.protocol', 'v3'], {})).toThrow(/--proxy.protocol: "v3" must be none, v1 or v2/);
  });
});

describe('precedence: flag, then environment, then the config file, then the default', () => {
  it('for every layer', () => {
    const file = configFile({ 'max-servers': 30, ports: '83', replay: 'realtime', 'log.level': 'warn' });
    const env = { [envName('max-servers')]: '20', [envName('ports')]: '82', [envName('config')]: file };
    const c = loadConfig(['--max-servers', '10'], env);
    expect(c.maxServers).toBe(10); // flag over environment and file
    expect(c.ports).toEqual([82]); // environment over file
    expect(c.replay).toBe('realtime'); // file over default
    expect(c.logLevel).toBe('warn');
    expect(c.maxFlows).toBe(null); // default: derived from the memory limit
    expect(c.config).toBe(file);
  });

  it('--config names the file; the flag wins over KEEPALIVE_EXPORTER_CONFIG', () => {
    const a = configFile({ 'max-flows': 11 });
    const b = configFile({ 'max-flows': 22 });
    expect(loadConfig(['--config', a], { [envName('config')]: b }).maxFlows).toBe(11);
    expect(loadConfig([], { [envName('config')]: b }).maxFlows).toBe(22);
  });

  it('a repeated single-valued flag: the last one wins', () => {
    expect(loadConfig(['--max-servers', '5', '--max-servers', '6'], {}).maxServers).toBe(6);
  });
});

describe('forms of values', () => {
  it('--flag=value and --flag value are the same', () => {
    const a = loadConfig(['--ports=80,8080', '--web.listen-address=127.0.0.1:1234', '--log.level=error'], {});
    const b = loadConfig(['--ports', '80,8080', '--web.listen-address', '127.0.0.1:1234', '--log.level', 'error'], {});
    expect(a).toEqual(b);
    expect(a.ports).toEqual([80, 8080]);
    expect(a.listenPort).toBe(1234);
  });

  it('a value may contain "=" and start with "-" in the --flag=value form', () => {
    expect(loadConfig(['--tcpdump=/opt/a=b/tcpdump'], {}).tcpdump).toBe('/opt/a=b/tcpdump');
  });

  it('ports take spaces around commas and set portsExplicit', () => {
    const c = loadConfig(['--ports', ' 80 , 8080,'], {});
    expect(c.ports).toEqual([80, 8080]);
    expect(c.portsExplicit).toBe(true);
    expect(loadConfig([], { [envName('ports')]: '80' }).portsExplicit).toBe(true);
    expect(loadConfig(['--config', configFile({ ports: '80' })], {}).portsExplicit).toBe(true);
  });

  it('--pcap is repeatable; the environment takes a comma-separated list; the file an array', () => {
    expect(loadConfig(['--pcap', 'a.pcap', '--pcap=b.pcap.gz', '--pcap', '-'], {}).pcap).toEqual(['a.pcap', 'b.pcap.gz', '-']);
    expect(loadConfig([], { [envName('pcap')]: 'a.pcap,b.pcap' }).pcap).toEqual(['a.pcap', 'b.pcap']);
    expect(loadConfig(['--config', configFile({ pcap: ['x.pcap', 'y.pcapng'] })], {}).pcap).toEqual(['x.pcap', 'y.pcapng']);
    expect(loadConfig(['--config', configFile({ pcap: 'z.pcap' })], {}).pcap).toEqual(['z.pcap']);
    // Flags replace the environment's list, not add to it.
    expect(loadConfig(['--pcap', 'a.pcap'], { [envName('pcap')]: 'b.pcap' }).pcap).toEqual(['a.pcap']);
  });

  it('listen addresses: IPv4, a name, [IPv6] and an empty host (all addresses)', () => {
    const at = (v: string) => {
      const c = loadConfig(['--web.listen-address', v], {});
      return [c.listenHost, c.listenPort];
    };
    expect(at('127.0.0.1:10842')).toEqual(['127.0.0.1', 10842]);
    expect(at('localhost:80')).toEqual(['localhost', 80]);
    expect(at('[::]:10842')).toEqual(['::', 10842]);
    expect(at('[::1]:9')).toEqual(['::1', 9]);
    expect(at(':10842')).toEqual(['0.0.0.0', 10842]);
    expect(at('127.0.0.1:0')).toEqual(['127.0.0.1', 0]); // a port the OS picks
  });

  it('config file values may be JSON numbers', () => {
    const c = loadConfig(['--config', configFile({ 'max-servers': 12, 'capture.buffer-kib': 2048, ports: 8080 })], {});
    expect(c.maxServers).toBe(12);
    expect(c.captureBufferKiB).toBe(2048);
    expect(c.ports).toEqual([8080]);
  });

  it('config file: a list of ports as a JSON array means every one of them', () => {
    expect(loadConfig(['--config', configFile({ ports: [80, 8080] })], {}).ports).toEqual([80, 8080]);
  });

  it('config file: an array for a single-valued setting is rejected, not cut to its last element', () => {
    expect(error(['--config', configFile({ replay: ['fast', 'realtime'] })])).toContain('"replay"');
    expect(error(['--config', configFile({ interface: ['eth0', 'eth1'] })])).toContain('"interface"');
  });
});

describe('live capture or files', () => {
  it('live capture on "any" when no --pcap is given', () => {
    expect(loadConfig([], {}).interface).toBe('any');
  });
  it('no live capture when --pcap is given without --interface', () => {
    expect(loadConfig(['--pcap', 'a.pcap'], {}).interface).toBeNull();
    expect(loadConfig([], { [envName('pcap')]: 'a.pcap' }).interface).toBeNull();
  });
  it('both when --interface is given too, by flag, environment or file', () => {
    expect(loadConfig(['--pcap', 'a.pcap', '--interface', 'eth0'], {}).interface).toBe('eth0');
    expect(loadConfig(['--pcap', 'a.pcap'], { [envName('interface')]: 'eth1' }).interface).toBe('eth1');
    expect(loadConfig(['--pcap', 'a.pcap', '--config', configFile({ interface: 'any' })], {}).interface).toBe('any');
  });
});

describe('bad values: one line naming the flag, variable or file key', () => {
  const cases: Array<[string, string, string]> = [
    // flag, bad value, what the message must also say
    ['ports', '0', 'not a TCP port'],
    ['ports', '65536', 'not a TCP port'],
    ['ports', 'http', 'not a TCP port'],
    ['ports', '80,x', '"x"'],
    ['ports', '-80', 'not a TCP port'],
    ['ports', '8.5', 'not a TCP port'],
    ['ports', ',', 'at least one port'],
    ['replay', 'slow', 'fast or realtime'],
    ['replay', 'FAST', 'fast or realtime'],
    ['web.listen-address', '10842', 'HOST:PORT'],
    ['web.listen-address', 'localhost', 'HOST:PORT'],
    ['web.listen-address', '127.0.0.1:65536', 'HOST:PORT'],
    ['web.listen-address', '127.0.0.1:99999', 'HOST:PORT'],
    ['web.listen-address', '127.0.0.1:port', 'HOST:PORT'],
    ['web.listen-address', '[::]:', 'HOST:PORT'],
    ['max-servers', '0', 'whole number'],
    ['max-servers', '-5', 'whole number'],
    ['max-servers', '1.5', 'whole number'],
    ['max-servers', 'many', 'whole number'],
    ['max-servers', '1e3', 'whole number'],
    ['max-flows', '0', 'whole number'],
    ['capture.buffer-kib', '1', 'whole number'],
    ['log.level', 'trace', 'debug, info, warn or error'],
    ['log.level', 'INFO', 'debug, info, warn or error'],
    ['interface', 'eth0; rm -rf /', 'not an interface name'],
    ['interface', 'eth 0', 'not an interface name'],
    ['interface', '-w/tmp/x', 'not an interface name'],
    ['interface', 'x'.repeat(65), 'not an interface name'],
  ];

  it.each(cases)('--%s %j', (flag, value, says) => {
    const fromFlag = error([`--${flag}`, value]);
    expect(fromFlag).toContain(`--${flag}`);
    expect(fromFlag).toContain(says);
    expect(fromFlag).toContain(value.split(',').pop()!.trim() || says);

    const fromEquals = error([`--${flag}=${value}`]);
    expect(fromEquals).toBe(fromFlag);

    if (value !== '') {
      const fromEnv = error([], { [envName(flag)]: value });
      expect(fromEnv).toContain(envName(flag));
      expect(fromEnv).toContain(says);
    }

    const file = configFile({ [flag]: value });
    const fromFile = error(['--config', file]);
    expect(fromFile).toContain(`"${flag}"`);
    expect(fromFile).toContain(file);
    expect(fromFile).toContain(says);
  });

  it('an invalid interface is rejected even with --pcap (it would run live)', () => {
    expect(error(['--pcap', 'a.pcap', '--interface', 'a b'])).toContain('--interface');
  });

  it('the source named is the one that won: a bad file value is not reported when a flag overrides it', () => {
    const file = configFile({ 'max-servers': 'lots' });
    expect(loadConfig(['--config', file, '--max-servers', '3'], {}).maxServers).toBe(3);
  });
});

describe('bad command lines', () => {
  it('an unknown flag', () => {
    const m = error(['--nope', '1']);
    expect(m).toContain('unknown flag --nope');
    expect(m).toContain('--help');
  });
  it('an unknown flag in the --flag=value form', () => {
    expect(error(['--porst=80'])).toContain('unknown flag --porst');
  });
  it('a flag without its value', () => {
    expect(error(['--ports'])).toBe('--ports needs a value');
  });
  it('a positional argument', () => {
    expect(error(['eth0'])).toContain('unexpected argument "eth0"');
  });
  it('a single-dash flag', () => {
    expect(error(['-i', 'eth0'])).toContain('"-i"');
  });
});

describe('the config file', () => {
  it('missing', () => {
    const p = join(dir, 'does-not-exist.json');
    const m = error(['--config', p]);
    expect(m).toContain(p);
    expect(m).toContain('no such file');
  });
  it('missing, named by the environment', () => {
    const p = join(dir, 'nope.json');
    expect(error([], { [envName('config')]: p })).toContain(p);
  });
  it('a directory', () => {
    expect(error(['--config', dir])).toContain(dir);
  });
  it('not JSON', () => {
    const p = configFile('ports: 80\n');
    const m = error(['--config', p]);
    expect(m).toContain(p);
    expect(m).toContain('not valid JSON');
  });
  it.each([['an array', '[1,2]'], ['a string', '"ports"'], ['null', 'null'], ['a number', '42']])('not an object: %s', (_what, text) => {
    const p = configFile(text);
    expect(error(['--config', p])).toContain('must hold a JSON object');
  });
  it('an unknown key', () => {
    const p = configFile({ ports: '80', listen: ':80' });
    const m = error(['--config', p]);
    expect(m).toContain(p);
    expect(m).toContain('unknown setting "listen"');
  });
  it('"config" inside a config file is unknown (no chains of files)', () => {
    const p = configFile({ config: 'other.json' });
    expect(error(['--config', p])).toContain('unknown setting "config"');
  });
  it('an empty object is all defaults', () => {
    const p = configFile({});
    expect({ ...loadConfig(['--config', p], {}), config: null }).toEqual(loadConfig([], {}));
  });
});
