/**
 * Private Apache httpd and nginx instances for the end-to-end tests, run from a temp dir with
 * their own config, pid file, logs and docroot (never /etc/apache2, /etc/nginx or a system
 * instance). The keep-alive settings are those of test/fixtures/real/generate.sh, whose config
 * this follows (without its CGI and proxy parts):
 *   Apache: KeepAliveTimeout 2, MaxKeepAliveRequests 3 (announces max=3,2,1; serves 4 requests)
 *   nginx:  keepalive_timeout 2s 2, keepalive_requests 3 (announces timeout=2 only; serves 3)
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { start, stop, tail, waitFor, type Proc } from '../../helpers/procs.js';

export const IDLE_TIMEOUT_S = 2;
export const APACHE_MAX_KEEPALIVE = 3;
export const NGINX_KEEPALIVE_REQUESTS = 3;

/** About 1 KB of HTML: the body every GET / returns. */
export function indexHtml(): string {
  let html = '<!DOCTYPE html>\n<html>\n<head><title>keepalive-exporter e2e</title></head>\n<body>\n';
  for (let i = 0; html.length < 980; i++) html += `<p>paragraph ${i}: persistent connections save handshakes.</p>\n`;
  return `${html}</body>\n</html>\n`;
}

/** Lays out docroot, run and logs directories under `dir` (world-readable: the workers run as www-data). */
export function prepareDir(dir: string): { www: string; run: string; logs: string } {
  const www = join(dir, 'www');
  const run = join(dir, 'run');
  const logs = join(dir, 'logs');
  for (const d of [www, run, logs]) mkdirSync(d, { recursive: true });
  for (const d of [dir, www]) chmodSync(d, 0o755);
  writeFileSync(join(www, 'index.html'), indexHtml());
  chmodSync(join(www, 'index.html'), 0o644);
  return { www, run, logs };
}

function serverUser(): { user: string; group: string } {
  const user = spawnSync('id', ['www-data']).status === 0 ? 'www-data' : 'nobody';
  const group = spawnSync('id', ['-gn', user], { encoding: 'utf8' }).stdout.trim() || 'nogroup';
  return { user, group };
}

export function apacheConfig(dir: string, port: number): string {
  const { user, group } = serverUser();
  const mods = '/usr/lib/apache2/modules';
  return `# Private Apache instance for the daemon end-to-end test
ServerRoot "${dir}"
ServerName localhost
Listen 127.0.0.1:${port}
User ${user}
Group ${group}
PidFile "${dir}/run/apache.pid"
DefaultRuntimeDir "${dir}/run"
Mutex file:${dir}/run default
LoadModule mpm_event_module ${mods}/mod_mpm_event.so
LoadModule authz_core_module ${mods}/mod_authz_core.so
LoadModule mime_module ${mods}/mod_mime.so
LoadModule dir_module ${mods}/mod_dir.so
StartServers 1
ServerLimit 1
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 64
ErrorLog "${dir}/logs/apache-error.log"
LogLevel info
LogFormat "%a:%{remote}p \\"%r\\" %>s %b ka=%k" e2e
CustomLog "${dir}/logs/apache-access.log" e2e
TypesConfig /dev/null
AddType text/html .html

KeepAlive On
KeepAliveTimeout ${IDLE_TIMEOUT_S}
MaxKeepAliveRequests ${APACHE_MAX_KEEPALIVE}
Timeout 3
AcceptFilter http none

DocumentRoot "${dir}/www"
<Directory "${dir}/www">
  Require all granted
</Directory>
DirectoryIndex index.html
`;
}

export function nginxConfig(dir: string, port: number): string {
  const { user, group } = serverUser();
  return `# Private nginx instance for the daemon end-to-end test
daemon off;
master_process on;
worker_processes 1;
user ${user} ${group};
pid ${dir}/run/nginx.pid;
error_log ${dir}/logs/nginx-error.log info;
events { worker_connections 256; }
http {
  types { text/html html; }
  default_type application/octet-stream;
  log_format e2e '$remote_addr:$remote_port "$request" $status $body_bytes_sent req=$connection_requests';
  access_log ${dir}/logs/nginx-access.log e2e;
  client_body_temp_path ${dir}/run/nginx-body;
  proxy_temp_path ${dir}/run/nginx-proxy;
  fastcgi_temp_path ${dir}/run/nginx-fastcgi;
  uwsgi_temp_path ${dir}/run/nginx-uwsgi;
  scgi_temp_path ${dir}/run/nginx-scgi;

  keepalive_timeout ${IDLE_TIMEOUT_S}s ${IDLE_TIMEOUT_S};
  keepalive_requests ${NGINX_KEEPALIVE_REQUESTS};
  client_header_timeout 3s;

  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    root ${dir}/www;
  }
}
`;
}

/** Accepts a TCP connection (and closes it at once, sending nothing). */
function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(500);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('timeout', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(false));
  });
}

/**
 * Starts the server in the foreground and waits (bounded) until it accepts connections. The
 * readiness probe only connects: no request, so no keep-alive connection is left open.
 */
async function startServer(name: string, cmd: string, args: string[], log: string, port: number): Promise<Proc> {
  const p = start(name, cmd, args, log);
  try {
    await waitFor(`${name} to listen on 127.0.0.1:${port}`, 10_000, async () => {
      if (p.exit) throw new Error(`${name} exited (${JSON.stringify(p.exit)})`);
      return (await listening('127.0.0.1', port)) ? true : null;
    });
  } catch (err) {
    await stop(p, 'SIGKILL', 5000); // not handed to the caller: never leave it running
    throw new Error(`${(err as Error).message}\n${tail(p)}`);
  }
  return p;
}

export async function startApache(apache2: string, dir: string, port: number): Promise<Proc> {
  const conf = join(dir, 'apache.conf');
  writeFileSync(conf, apacheConfig(dir, port));
  const t = spawnSync(apache2, ['-f', conf, '-t'], { encoding: 'utf8' });
  if (t.status !== 0) throw new Error(`Apache config test failed: ${t.stderr}`);
  return startServer('apache2', apache2, ['-f', conf, '-DFOREGROUND'], join(dir, 'logs/apache.out'), port);
}

export async function startNginx(nginx: string, dir: string, port: number): Promise<Proc> {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, port));
  const base = ['-p', `${dir}/`, '-e', join(dir, 'logs/nginx-error.log'), '-c', conf];
  const t = spawnSync(nginx, ['-t', ...base], { encoding: 'utf8' });
  if (t.status !== 0) throw new Error(`nginx config test failed: ${t.stderr}`);
  return startServer('nginx', nginx, base, join(dir, 'logs/nginx.out'), port);
}
