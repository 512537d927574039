/**
 * A small builder for the Grafana dashboard JSON (schema 39, Grafana 10 and later). It knows only
 * what our two dashboards use: rows, time series, stats, a heatmap, a bar gauge and a table, all
 * on one Prometheus data source chosen by the `${datasource}` variable.
 *
 * Layout is computed, never written by hand: panels flow left to right in rows of 24 columns,
 * and ids are handed out in order, so they are unique by construction.
 */

export const DATASOURCE = { type: 'prometheus', uid: '${datasource}' } as const;

export interface Target {
  expr: string;
  legendFormat?: string;
  /** Table panels: one row per series at the end of the range. */
  instant?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
}

export interface Threshold {
  color: string;
  value: number | null;
}

export interface PanelSpec {
  type: 'timeseries' | 'stat' | 'heatmap' | 'bargauge' | 'table';
  title: string;
  /** What the panel shows, in the domain's words: Grafana shows it as the panel's (i) tooltip. */
  description: string;
  unit: string;
  targets: Target[];
  /** Width in grid columns (of 24) and height in rows. */
  w: number;
  h: number;
  decimals?: number;
  min?: number;
  max?: number;
  thresholds?: Threshold[];
  /** Stacked areas (close reasons). */
  stack?: boolean;
  /** Fixed colours per series name: tell similar series apart at a glance. */
  colors?: Record<string, string>;
  /** Series drawn as dashed reference lines (the advertised timeout). */
  dashed?: string[];
  /** Tables: the unit of each column, by its displayed name. */
  columnUnits?: Record<string, string>;
  /** Extra Grafana options merged into the panel (tables: transformations, sort). */
  extra?: Record<string, unknown>;
}

export interface RowSpec {
  title: string;
  panels: PanelSpec[];
}

export interface VariableSpec {
  name: string;
  label: string;
  /** A `label_values(...)` query. */
  query: string;
  description: string;
}

export interface DashboardSpec {
  uid: string;
  title: string;
  description: string;
  tags: string[];
  variables: VariableSpec[];
  rows: RowSpec[];
  links: Array<{ title: string; uid: string }>;
}

const GREEN_ONLY: Threshold[] = [{ color: 'green', value: null }];

function fieldConfig(p: PanelSpec): Record<string, unknown> {
  const overrides: unknown[] = [];
  for (const [name, color] of Object.entries(p.colors ?? {})) {
    overrides.push({
      matcher: { id: 'byName', options: name },
      properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: color } }],
    });
  }
  for (const [name, unit] of Object.entries(p.columnUnits ?? {})) {
    overrides.push({ matcher: { id: 'byName', options: name }, properties: [{ id: 'unit', value: unit }] });
  }
  for (const name of p.dashed ?? []) {
    overrides.push({
      matcher: { id: 'byName', options: name },
      properties: [
        { id: 'custom.lineStyle', value: { fill: 'dash', dash: [10, 10] } },
        { id: 'custom.fillOpacity', value: 0 },
        { id: 'custom.stacking', value: { mode: 'none', group: 'A' } },
        { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
      ],
    });
  }
  const defaults: Record<string, unknown> = {
    unit: p.unit,
    color: { mode: p.thresholds && p.type !== 'timeseries' ? 'thresholds' : 'palette-classic' },
    thresholds: { mode: 'absolute', steps: p.thresholds ?? GREEN_ONLY },
  };
  if (p.decimals !== undefined) defaults.decimals = p.decimals;
  if (p.min !== undefined) defaults.min = p.min;
  if (p.max !== undefined) defaults.max = p.max;
  if (p.type === 'timeseries') {
    defaults.custom = {
      drawStyle: 'line',
      lineWidth: 1,
      fillOpacity: p.stack ? 70 : 10,
      showPoints: 'never',
      spanNulls: false,
      stacking: { mode: p.stack ? 'normal' : 'none', group: 'A' },
      thresholdsStyle: { mode: p.thresholds ? 'dashed' : 'off' },
    };
  }
  return { defaults, overrides };
}

function options(p: PanelSpec): Record<string, unknown> {
  switch (p.type) {
    case 'timeseries':
      return {
        legend: { displayMode: 'table', placement: 'bottom', showLegend: true, calcs: ['mean', 'lastNotNull', 'max'] },
        tooltip: { mode: 'multi', sort: 'desc' },
      };
    case 'stat':
      return {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: 'value',
        graphMode: 'area',
        justifyMode: 'auto',
        textMode: 'auto',
        orientation: 'auto',
      };
    case 'bargauge':
      return {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        orientation: 'horizontal',
        displayMode: 'gradient',
        showUnfilled: true,
      };
    case 'heatmap':
      return {
        calculate: false,
        cellGap: 1,
        color: { mode: 'scheme', scheme: 'Oranges', scale: 'exponential', exponent: 0.5, steps: 64 },
        yAxis: { axisPlacement: 'left', unit: p.unit },
        rowsFrame: { layout: 'le' },
        tooltip: { mode: 'single', yHistogram: true, showColorScale: true },
        legend: { show: true },
        exemplars: { color: 'rgba(255,0,255,0.7)' },
      };
    case 'table':
      return { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], fields: '' } };
  }
}

/** The dashboard JSON, ready for Grafana's file provisioning or its import dialog. */
export function buildDashboard(spec: DashboardSpec): Record<string, unknown> {
  const panels: unknown[] = [];
  let id = 1;
  let y = 0;
  for (const row of spec.rows) {
    panels.push({ type: 'row', id: id++, title: row.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
    y += 1;
    let x = 0;
    let rowHeight = 0;
    for (const p of row.panels) {
      if (x + p.w > 24) {
        y += rowHeight;
        x = 0;
        rowHeight = 0;
      }
      panels.push({
        type: p.type,
        id: id++,
        title: p.title,
        description: p.description,
        datasource: DATASOURCE,
        gridPos: { h: p.h, w: p.w, x, y },
        fieldConfig: fieldConfig(p),
        options: options(p),
        targets: p.targets.map((t, i) => ({
          datasource: DATASOURCE,
          refId: String.fromCharCode(65 + i),
          expr: t.expr,
          legendFormat: t.legendFormat ?? '__auto',
          range: !t.instant,
          instant: t.instant ?? false,
          format: t.format ?? 'time_series',
          ...(t.format === 'heatmap' ? { interval: '' } : {}),
        })),
        ...p.extra,
      });
      x += p.w;
      rowHeight = Math.max(rowHeight, p.h);
    }
    y += rowHeight;
  }
  return {
    uid: spec.uid,
    title: spec.title,
    description: spec.description,
    tags: spec.tags,
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-3h', to: 'now' },
    timepicker: {},
    timezone: '',
    fiscalYearStartMonth: 0,
    liveNow: false,
    weekStart: '',
    annotations: {
      list: [{
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      }],
    },
    links: spec.links.map((l) => ({
      title: l.title,
      type: 'link',
      url: `/d/${l.uid}?\${__url_time_range}&\${__all_variables}`,
      icon: 'dashboard',
      keepTime: true,
      includeVars: true,
      targetBlank: false,
      tooltip: '',
      asDropdown: false,
      tags: [],
    })),
    templating: {
      list: [
        {
          name: 'datasource',
          label: 'Data source',
          description: 'The Prometheus that scrapes keepalive-exporter.',
          type: 'datasource',
          query: 'prometheus',
          current: {},
          hide: 0,
          refresh: 1,
          regex: '',
          options: [],
        },
        ...spec.variables.map((v) => ({
          name: v.name,
          label: v.label,
          description: v.description,
          type: 'query',
          datasource: DATASOURCE,
          query: { query: v.query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
          definition: v.query,
          current: { selected: true, text: ['All'], value: ['$__all'] },
          includeAll: true,
          allValue: '.+',
          multi: true,
          refresh: 2,
          sort: 1,
          hide: 0,
          regex: '',
          options: [],
        })),
      ],
    },
    panels,
  };
}
