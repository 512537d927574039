/**
 * The deployment files agree with the daemon and with each other: every YAML file parses
 * cleanly; the settings they give the daemon (flags and KEEPALIVE_EXPORTER_* variables) are
 * read by the daemon's own config loader; probes and scrape annotations point at paths the
 * daemon serves on the port it listens on; the Kubernetes objects select each other; the
 * compose files mount files that exist, its Prometheus config passes `promtool check config`
 * with the rules mounted where the config expects them; the systemd unit passes
 * `systemd-analyze verify`. The privilege model itself is exercised in dockerfile.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { DEFAULT_LISTEN, envName, loadConfig, OPTIONS, type DaemonConfig } from '../../src/config/daemon.js';
import { buildApp } from '../../src/server/app.js';
import { Exporter } from '../../src/metrics/exporter.js';
import { findTool, run } from '../helpers/procs.js';
import { splitWords } from './support/dockerfile.js';

const ROOT = join(import.meta.dirname, '../..');
const read = (p: string): string => readFileSync(join(ROOT, p), 'utf8');
const pkg = JSON.parse(read('package.json')) as { version: string };

// ---------------------------------------------------------------- YAML

function walk(dir: string): string[] {
  const abs = join(ROOT, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs).flatMap((name) => {
    const p = posix.join(dir, name);
    return statSync(join(ROOT, p)).isDirectory() ? walk(p) : [p];
  });
}
const YAML_FILES = [...walk('deploy'), 'docker-compose.yml', ...walk('dashboards/grafana/provisioning')].filter((p) => /\.ya?ml$/.test(p)).sort();

/** Every document of a file, parsed; errors and warnings fail. */
function docs(path: string): unknown[] {
  return parseAllDocuments(read(path)).map((d) => {
    expect({ path, errors: d.errors.map((e) => e.message), warnings: d.warnings.map((w) => w.message) }).toEqual({ path, errors: [], warnings: [] });
    return d.toJS() as unknown;
  }).filter((d) => d !== null);
}

describe('YAML files', () => {
  it('are all found (the list is not vacuous)', () => {
    expect(YAML_FILES).toEqual(expect.arrayContaining([
      'dashboards/grafana/provisioning/dashboards/keepalive.yml',
      'dashboards/grafana/provisioning/datasources/prometheus.yml',
      'deploy/compose/prometheus.yml',
      'deploy/kubernetes/daemonset.yaml',
      'deploy/kubernetes/proxy-sidecar.yaml',
      'deploy/kubernetes/service.yaml',
      'deploy/kubernetes/servicemonitor.yaml',
      'docker-compose.yml',
    ]));
  });

  it.each(YAML_FILES)('%s parses without errors or warnings (duplicate keys included)', (path) => {
    expect(docs(path).length).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------- the daemon's settings

const DEPLOY_TEXT_FILES = ['Dockerfile', 'docker-compose.yml', 'deploy/docker/healthcheck.mjs', ...walk('deploy')];

describe('settings given to the daemon', () => {
  it('every KEEPALIVE_EXPORTER_* variable named in the deployment files is one the daemon reads', () => {
    const known = new Set(OPTIONS.map((o) => envName(o.flag)));
    const used = new Set<string>();
    for (const f of DEPLOY_TEXT_FILES) for (const m of read(f).matchAll(/KEEPALIVE_EXPORTER_[A-Z0-9_]+/g)) used.add(m[0]);
    expect(used.size).toBeGreaterThanOrEqual(4);
    expect([...used].filter((v) => !known.has(v))).toEqual([]);
  });
});

/** The config the daemon would load from these arguments and this environment. */
const configOf = (args: string[], env: Record<string, string>): DaemonConfig => loadConfig(args, env);

// ---------------------------------------------------------------- Kubernetes

interface Port { name?: string; containerPort: number; hostPort?: number }
interface Probe { httpGet: { path: string; port: string | number } }
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: Array<{ name: string; value?: string }>;
  ports?: Port[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { add?: string[]; drop?: string[] } };
}
interface PodSpec { hostNetwork?: boolean; dnsPolicy?: string; tolerations?: Array<Record<string, string>>; securityContext?: { runAsNonRoot?: boolean; runAsUser?: number }; containers: Container[] }
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: {
    selector?: { matchLabels?: Record<string, string> } & Record<string, string>;
    template?: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
    clusterIP?: string;
    ports?: Array<{ name: string; port: number; targetPort: string | number }>;
    jobLabel?: string;
    endpoints?: Array<{ port: string; path?: string }>;
  };
}

const K8S_FILES = walk('deploy/kubernetes').filter((p) => /\.ya?ml$/.test(p));
const objects = K8S_FILES.flatMap((f) => docs(f).map((d) => ({ file: f, obj: d as K8sObject })));
const find = (file: string, kind: string): K8sObject => {
  const o = objects.find((x) => x.file === `deploy/kubernetes/${file}` && x.obj.kind === kind);
  if (!o) throw new Error(`no ${kind} in deploy/kubernetes/${file}`);
  return o.obj;
};
const envOf = (c: Container): Record<string, string> => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? '']));
const exporterContainer = (o: K8sObject): Container => {
  const c = o.spec.template!.spec.containers.find((x) => x.image.startsWith('keepalive-exporter:'));
  if (!c) throw new Error(`${o.kind} ${o.metadata.name} has no keepalive-exporter container`);
  return c;
};
const portNumber = (c: Container, port: string | number): number => {
  if (typeof port === 'number') return port;
  const p = c.ports?.find((x) => x.name === port);
  if (!p) throw new Error(`container ${c.name} has no port named ${port}`);
  return p.containerPort;
};
const includes = (labels: Record<string, string> | undefined, selector: Record<string, string> | undefined): boolean =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Status of GET path on the daemon's routes (fastify inject, no socket). */
async function served(path: string): Promise<number> {
  const app = buildApp({ exporter: new Exporter({ maxServers: 10, sources: () => [] }), sources: () => [], version: 'test' });
  try {
    return (await app.inject({ method: 'GET', url: path })).statusCode;
  } finally {
    await app.close();
  }
}

/** The job name the alerting rules select. */
function rulesJob(): Set<string> {
  const text = read('dashboards/prometheus/keepalive-rules.yml');
  return new Set([...text.matchAll(/job="([^"]+)"/g)].map((m) => m[1]));
}

/** Probes and scrape annotations agree with the port the daemon listens on and paths it serves. */
async function checkServing(o: K8sObject, c: Container, cfg: DaemonConfig): Promise<void> {
  const listen = portNumber(c, 'metrics');
  expect(cfg.listenPort).toBe(listen);
  const ann = o.spec.template!.metadata.annotations ?? {};
  expect(ann['prometheus.io/scrape']).toBe('true');
  expect(Number(ann['prometheus.io/port'])).toBe(listen);
  expect(await served(ann['prometheus.io/path'])).toBe(200);
  expect(c.livenessProbe!.httpGet.path).toBe('/healthz');
  expect(c.readinessProbe!.httpGet.path).toBe('/readyz');
  expect(await served('/healthz')).toBe(200);
  // No source yet: not ready, but the route exists.
  expect(await served('/readyz')).toBe(503);
  for (const p of [c.livenessProbe!, c.readinessProbe!]) expect(portNumber(c, p.httpGet.port)).toBe(listen);
}

describe('Kubernetes manifests', () => {
  it('every object has apiVersion, kind and metadata.name, and no namespace (apply with -n)', () => {
    expect(objects.map((o) => `${o.file}: ${o.obj.kind}`).sort()).toEqual([
      'deploy/kubernetes/daemonset.yaml: DaemonSet',
      'deploy/kubernetes/proxy-sidecar.yaml: Deployment',
      'deploy/kubernetes/proxy-sidecar.yaml: Service',
      'deploy/kubernetes/service.yaml: Service',
      'deploy/kubernetes/servicemonitor.yaml: ServiceMonitor',
    ]);
    for (const { obj } of objects) {
      expect(typeof obj.apiVersion).toBe('string');
      expect(obj.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      expect(obj.metadata.namespace).toBeUndefined();
      if (obj.spec.template) expect(includes(obj.spec.template.metadata.labels, obj.spec.selector?.matchLabels), `${obj.kind} selector`).toBe(true);
    }
  });

  it('images are keepalive-exporter:<package version>', () => {
    for (const { obj } of objects.filter((o) => o.obj.spec.template)) expect(exporterContainer(obj).image).toBe(`keepalive-exporter:${pkg.version}`);
  });

  describe('DaemonSet', () => {
    const ds = find('daemonset.yaml', 'DaemonSet');
    const pod = ds.spec.template!.spec;
    const c = exporterContainer(ds);

    it('host network with cluster DNS, on every node', () => {
      expect(ds.apiVersion).toBe('apps/v1');
      expect(pod.hostNetwork).toBe(true);
      expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
      expect(pod.tolerations).toContainEqual({ operator: 'Exists' });
    });

    it('non-root as the image user, read-only root, capabilities: drop ALL, add NET_RAW only', () => {
      const sc = c.securityContext!;
      expect(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot).toBe(true);
      const uid = sc.runAsUser ?? pod.securityContext?.runAsUser;
      expect(uid).toBeGreaterThan(0);
      // The Dockerfile's user: files in the image belong to it.
      expect(read('Dockerfile')).toMatch(new RegExp(`useradd [^\\n]*--uid ${uid}\\b`));
      expect(sc.readOnlyRootFilesystem).toBe(true);
      expect(sc.capabilities).toEqual({ drop: ['ALL'], add: ['NET_RAW'] });
      // Required for tcpdump's file capability (dockerfile.test.ts shows capture fails without).
      expect(sc.allowPrivilegeEscalation).toBe(true);
    });

    it('its settings load: live capture on every interface, listening on the probed and annotated port', async () => {
      const cfg = configOf(c.args ?? [], envOf(c));
      expect(cfg.interface).toBe('any');
      expect(cfg.proxy).toEqual([]);
      await checkServing(ds, c, cfg);
      const metrics = c.ports!.find((p) => p.name === 'metrics')!;
      // With hostNetwork the host port is the container port.
      expect(metrics.hostPort).toBe(metrics.containerPort);
    });

    it('requests and limits resources', () => {
      expect(c.resources?.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
      expect(c.resources?.limits).toMatchObject({ memory: expect.any(String) });
    });
  });

  describe('Service and ServiceMonitor', () => {
    const ds = find('daemonset.yaml', 'DaemonSet');
    const svc = find('service.yaml', 'Service');
    const sm = find('servicemonitor.yaml', 'ServiceMonitor');

    it('the headless Service selects the DaemonSet pods, on their metrics port', () => {
      expect(svc.spec.clusterIP).toBe('None');
      const selector = { ...svc.spec.selector } as Record<string, string>;
      expect(includes(ds.spec.template!.metadata.labels, selector)).toBe(true);
      const c = exporterContainer(ds);
      for (const p of svc.spec.ports!) expect(portNumber(c, p.targetPort)).toBe(p.port);
    });

    it('the ServiceMonitor selects the Service, scrapes /metrics on a Service port, with the job the rules expect', () => {
      expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
      expect(includes(svc.metadata.labels, sm.spec.selector?.matchLabels)).toBe(true);
      const names = svc.spec.ports!.map((p) => p.name);
      for (const e of sm.spec.endpoints!) {
        expect(names).toContain(e.port);
        expect(e.path ?? '/metrics').toBe('/metrics');
      }
      const jobs = rulesJob();
      expect([...jobs]).toEqual(['keepalive-exporter']);
      expect(svc.metadata.labels?.[sm.spec.jobLabel!]).toBe('keepalive-exporter');
    });
  });

  describe('proxy sidecar', () => {
    const dep = find('proxy-sidecar.yaml', 'Deployment');
    const svc = find('proxy-sidecar.yaml', 'Service');
    const pod = dep.spec.template!.spec;
    const c = exporterContainer(dep);

    it('no host network, no capability, no privilege escalation, read-only root, non-root', () => {
      expect(pod.hostNetwork ?? false).toBe(false);
      const sc = c.securityContext!;
      expect(sc.capabilities?.add ?? []).toEqual([]);
      expect(sc.capabilities?.drop).toEqual(['ALL']);
      expect(sc.allowPrivilegeEscalation).toBe(false);
      expect(sc.readOnlyRootFilesystem).toBe(true);
      expect(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot).toBe(true);
    });

    it("every container meets the restricted Pod Security Standard's settings", () => {
      const podSc = pod.securityContext as { runAsNonRoot?: boolean; seccompProfile?: { type: string } } | undefined;
      expect(podSc?.seccompProfile?.type).toBe('RuntimeDefault');
      for (const x of pod.containers) {
        const sc = x.securityContext ?? {};
        expect({ name: x.name, nonRoot: sc.runAsNonRoot ?? podSc?.runAsNonRoot, ape: sc.allowPrivilegeEscalation, drop: sc.capabilities?.drop, add: sc.capabilities?.add ?? [] })
          .toEqual({ name: x.name, nonRoot: true, ape: false, drop: ['ALL'], add: [] });
      }
    });

    it('its settings load: the tap only (no live capture), relaying its port to the app container', async () => {
      const cfg = configOf(c.args ?? [], envOf(c));
      expect(cfg.interface).toBeNull();
      expect(cfg.proxy).toHaveLength(1);
      const route = cfg.proxy[0];
      expect(c.ports!.map((p) => p.containerPort)).toContain(route.listenPort);
      expect(route.upstreamHost).toBe('127.0.0.1');
      const app = pod.containers.find((x) => x !== c)!;
      expect(app.ports!.map((p) => p.containerPort)).toContain(route.upstreamPort);
      await checkServing(dep, c, cfg);
    });

    it("the app's Service sends traffic to the tap, not to the app", () => {
      const selector = { ...svc.spec.selector } as Record<string, string>;
      expect(includes(dep.spec.template!.metadata.labels, selector)).toBe(true);
      const route = configOf(c.args ?? [], envOf(c)).proxy[0];
      for (const p of svc.spec.ports!) expect(portNumber(c, p.targetPort)).toBe(route.listenPort);
    });
  });
});

// ---------------------------------------------------------------- docker compose, Prometheus, Grafana

interface ComposeService {
  build?: string;
  image?: string;
  network_mode?: string;
  cap_add?: string[];
  cap_drop?: string[];
  read_only?: boolean;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  security_opt?: string[];
}
const compose = parseYaml(read('docker-compose.yml')) as { services: Record<string, ComposeService> };
const services = compose.services;
/** `${VAR:-default}` as docker compose interpolates it with VAR unset. */
const composeDefault = (s: string): string => s.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}/g, '$1');
/** host path (relative to the repository) -> container path, for a service's bind mounts. */
function mounts(s: ComposeService): Array<{ host: string; container: string }> {
  return (s.volumes ?? []).map((v) => {
    const [host, container] = v.split(':');
    return { host: posix.normalize(host), container };
  });
}
const composeDaemonConfig = (): DaemonConfig => {
  const s = services['keepalive-exporter'];
  return configOf((s.command ?? []).map(composeDefault), Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, composeDefault(String(v))])));
};
const promConfig = parseYaml(read('deploy/compose/prometheus.yml')) as { global: { scrape_interval: string }; rule_files: string[]; scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }> };

const promtool = findTool('promtool');
const systemdAnalyze = findTool('systemd-analyze');

describe('docker-compose.yml', () => {
  it('has the daemon, Prometheus and Grafana, all on the host network, images pinned', () => {
    expect(Object.keys(services).sort()).toEqual(['grafana', 'keepalive-exporter', 'prometheus']);
    for (const s of Object.values(services)) expect(s.network_mode).toBe('host');
    expect(services.prometheus.image).toMatch(/^prom\/prometheus:v\d+\.\d+\.\d+$/);
    expect(services.grafana.image).toMatch(/^grafana\/grafana:\d+\.\d+\.\d+$/);
  });

  it('the daemon: built from this repository, only NET_RAW, read-only, capturing on an interface', () => {
    const s = services['keepalive-exporter'];
    expect(s.build).toBe('.');
    expect(s.cap_drop).toEqual(['ALL']);
    expect(s.cap_add).toEqual(['NET_RAW']);
    expect(s.read_only).toBe(true);
    // no_new_privs would void tcpdump's file capability.
    expect((s.security_opt ?? []).join(' ')).not.toMatch(/no-new-privileges/);
    const cfg = composeDaemonConfig();
    expect(cfg.interface).toBe('any');
    expect(s.command).toContain('--interface');
    // Set by the variable the image's health check reads.
    expect(s.environment?.[envName('web.listen-address')]).toBeDefined();
  });

  it('every bind-mounted file or directory exists in the repository', () => {
    const all = Object.values(services).flatMap(mounts);
    expect(all.length).toBeGreaterThanOrEqual(5);
    for (const m of all) {
      expect(m.host.startsWith('./') || !m.host.startsWith('/'), m.host).toBe(true);
      expect(existsSync(join(ROOT, m.host)), m.host).toBe(true);
    }
  });

  it("Prometheus scrapes the daemon's listen address as job keepalive-exporter, with the rules file mounted where its config loads it", () => {
    const m = mounts(services.prometheus);
    expect(m).toContainEqual({ host: 'deploy/compose/prometheus.yml', container: '/etc/prometheus/prometheus.yml' });
    const rulesInContainer = promConfig.rule_files.map((r) => posix.resolve('/etc/prometheus', r));
    for (const r of rulesInContainer) expect(m.find((x) => x.container === r)?.host, r).toBe('dashboards/prometheus/keepalive-rules.yml');
    const job = promConfig.scrape_configs.find((j) => j.job_name === 'keepalive-exporter');
    expect(job).toBeDefined();
    expect([...rulesJob()]).toEqual([job!.job_name]);
    const cfg = composeDaemonConfig();
    // Host network: the daemon's address is this host's.
    expect(job!.static_configs.flatMap((s) => s.targets)).toEqual([`${cfg.listenHost === '0.0.0.0' ? '127.0.0.1' : cfg.listenHost}:${cfg.listenPort}`]);
  });

  it.runIf(promtool !== null || process.env.CI === 'true')('promtool check config passes on the config as mounted (rules included)', async () => {
    expect(promtool, 'promtool (apt-get install prometheus)').not.toBeNull();
    // The container's /etc/prometheus, rebuilt from the service's mounts.
    const dir = mkdtempSync(join(tmpdir(), 'keepalive-compose-'));
    try {
      for (const m of mounts(services.prometheus)) {
        const target = join(dir, m.container);
        mkdirSync(dirname(target), { recursive: true });
        copyFileSync(join(ROOT, m.host), target);
      }
      const r = await run(promtool!, ['check', 'config', join(dir, 'etc/prometheus/prometheus.yml')], { timeoutMs: 60_000 });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout + r.stderr).toMatch(/SUCCESS: 1 rule files found/);
      expect(r.stdout + r.stderr).toMatch(/SUCCESS: \d+ rules found/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('Grafana: anonymous viewers, the provisioning directory, both dashboards mounted where the file provider reads', () => {
    const s = services.grafana;
    expect(s.environment).toMatchObject({ GF_AUTH_ANONYMOUS_ENABLED: 'true', GF_AUTH_ANONYMOUS_ORG_ROLE: 'Viewer' });
    const m = mounts(s);
    expect(m).toContainEqual({ host: 'dashboards/grafana/provisioning', container: '/etc/grafana/provisioning' });
    const provider = (parseYaml(read('dashboards/grafana/provisioning/dashboards/keepalive.yml')) as { providers: Array<{ type: string; folder: string; options: { path: string } }> }).providers;
    expect(provider).toHaveLength(1);
    expect(provider[0]).toMatchObject({ type: 'file', folder: 'keepalive-exporter' });
    for (const d of ['keepalive-reuse.json', 'keepalive-exporter-health.json']) {
      expect(m).toContainEqual({ host: `dashboards/${d}`, container: posix.join(provider[0].options.path, d) });
    }
    const home = s.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    if (home !== undefined) expect(m.map((x) => x.container)).toContain(home);
  });

  it("Grafana's data source is the compose Prometheus, of the type the dashboards' ${datasource} variable asks for", () => {
    const ds = (parseYaml(read('dashboards/grafana/provisioning/datasources/prometheus.yml')) as { datasources: Array<{ type: string; uid: string; url: string; isDefault?: boolean; jsonData?: { timeInterval?: string } }> }).datasources;
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ type: 'prometheus', uid: 'prometheus', isDefault: true });
    // Both on the host network: Prometheus' default listen port on loopback.
    const promArgs = services.prometheus.command ?? [];
    expect(promArgs.join(' ')).not.toMatch(/web\.listen-address/);
    expect(ds[0].url).toBe('http://127.0.0.1:9090');
    expect(ds[0].jsonData?.timeInterval).toBe(promConfig.global.scrape_interval);
    for (const d of ['dashboards/keepalive-reuse.json', 'dashboards/keepalive-exporter-health.json']) {
      const dash = JSON.parse(read(d)) as { templating: { list: Array<{ name: string; type: string; query: unknown }> } };
      const v = dash.templating.list.find((x) => x.type === 'datasource');
      expect(v, d).toBeDefined();
      expect(v!.query).toBe(ds[0].type);
    }
  });
});

// ---------------------------------------------------------------- systemd

const UNIT = 'deploy/systemd/keepalive-exporter.service';

/** [section] key=value lines of a unit file (repeated keys kept in order). */
function unitKeys(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1];
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) throw new Error(`${UNIT}: not key=value: ${line}`);
    const key = `${section}.${line.slice(0, eq).trim()}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return out;
}

describe('systemd unit', () => {
  const keys = unitKeys(read(UNIT));
  const one = (k: string): string | undefined => keys.get(`Service.${k}`)?.at(-1);

  it('its own user, exactly CAP_NET_RAW (ambient, bounding), no new privileges', () => {
    expect(one('User')).toBe('keepalive-exporter');
    expect(one('DynamicUser')).toBeUndefined();
    expect(one('AmbientCapabilities')).toBe('CAP_NET_RAW');
    expect(one('CapabilityBoundingSet')).toBe('CAP_NET_RAW');
    expect(one('NoNewPrivileges')).toBe('yes');
  });

  it('restarts on failure, reads KEEPALIVE_EXPORTER_* settings from /etc/default, runs the installed build', () => {
    expect(one('Restart')).toBe('on-failure');
    expect(one('RestartSec')).toMatch(/^\d+s?$/);
    expect(one('EnvironmentFile')).toBe('-/etc/default/keepalive-exporter');
    const exec = splitWords(one('ExecStart')!);
    expect(exec).toEqual(['/usr/bin/node', '/opt/keepalive-exporter/dist/cli/main.js']);
    // The example environment file loads as the daemon's settings.
    const envFile = Object.fromEntries(read('deploy/systemd/keepalive-exporter.default').split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const cfg = configOf(exec.slice(2), envFile);
    expect(cfg.interface).toBe('any');
    expect(`${cfg.listenHost}:${cfg.listenPort}`).toBe(DEFAULT_LISTEN);
    expect(keys.get('Install.WantedBy')).toEqual(['multi-user.target']);
  });

  it('hardened, without what would break capture or V8', () => {
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('ProtectHome')).toBe('yes');
    expect(one('PrivateTmp')).toBe('yes');
    expect(one('RestrictAddressFamilies')?.split(/\s+/)).toEqual(expect.arrayContaining(['AF_PACKET', 'AF_INET', 'AF_INET6', 'AF_UNIX']));
    for (const k of ['PrivateNetwork', 'PrivateUsers', 'IPAddressDeny', 'MemoryDenyWriteExecute', 'ProcSubset']) expect(one(k), k).toBeUndefined();
  });

  it.runIf(systemdAnalyze !== null || process.env.CI === 'true')('systemd-analyze verify is silent, and the offline security exposure is low', async () => {
    expect(systemdAnalyze, 'systemd-analyze (apt-get install systemd)').not.toBeNull();
    let path = join(ROOT, UNIT);
    let tmp: string | null = null;
    // verify checks that ExecStart's program exists: where node is not /usr/bin/node, check a
    // copy naming this node instead.
    if (!existsSync('/usr/bin/node')) {
      tmp = mkdtempSync(join(tmpdir(), 'keepalive-unit-'));
      path = join(tmp, 'keepalive-exporter.service');
      writeFileSync(path, read(UNIT).replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `));
    }
    try {
      const r = await run(systemdAnalyze!, ['verify', path], { timeoutMs: 60_000 });
      // Unknown keys are only warnings (exit 0): any line about this unit fails.
      const ours = (r.stdout + r.stderr).split('\n').filter((l) => l.includes('keepalive-exporter'));
      expect({ code: r.code, ours }).toEqual({ code: 0, ours: [] });
      const s = await run(systemdAnalyze!, ['security', '--offline=yes', path], { timeoutMs: 60_000 });
      const m = /Overall exposure level for keepalive-exporter\.service: (\d+\.\d+)/.exec(s.stdout);
      expect(m, s.stdout + s.stderr).not.toBeNull();
      expect(Number(m![1])).toBeLessThanOrEqual(2.5);
    } finally {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
  });
});


