/**
 * Writes the dashboards' JSON next to this directory: `npm run dashboards`. The JSON is committed
 * (Grafana provisioning and the import dialog read it as is); a test fails when it differs from
 * what this generator produces, so edit the TypeScript and regenerate.
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDashboard, type DashboardSpec } from './grafana.js';
import { healthDashboard } from './health.js';
import { reuseDashboard } from './reuse.js';

export const DASHBOARDS: Array<{ file: string; spec: DashboardSpec }> = [
  { file: 'keepalive-reuse.json', spec: reuseDashboard },
  { file: 'keepalive-exporter-health.json', spec: healthDashboard },
];

export function render(spec: DashboardSpec): string {
  return `${JSON.stringify(buildDashboard(spec), null, 2)}\n`;
}

const here = dirname(fileURLToPath(import.meta.url));
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // Compiled to dashboards/.build/: the JSON goes to dashboards/.
  const out = join(here, '..');
  for (const d of DASHBOARDS) {
    writeFileSync(join(out, d.file), render(d.spec));
    console.log(`wrote dashboards/${d.file}`);
  }
}
