/**
 * A small builder for the Grafana dashboard JSON (schema 39, Grafana 10 and later). It knows only
 * what our two dashboards use: rows, time series, stats, a heatmap, a bar gauge and a table, all
 * on one Prometheus data source chosen by the `${datasource}` variable.
 *
 * Everything it emits is typed with Grafana's own schema types (`@grafana/schema`: the dashboard,
 * panels, variables, and each panel plugin's options), so a misspelt or missing option is a
 * compile error, not a panel Grafana silently renders with defaults.
 *
 * Layout is computed, never written by hand: panels flow left to right in rows of 24 columns,
 * and ids are handed out in order, so they are unique by construction.
 */
import {
  AxisPlacement, BarGaugeDisplayMode, BarGaugeNamePlacement, BarGaugeSizing, BarGaugeValueMode, BigValueColorMode, BigValueGraphMode,
  BigValueJustifyMode, BigValueTextMode, DashboardCursorSync, FieldColorModeId, GraphDrawStyle, GraphThresholdsStyleMode,
  HeatmapCellLayout, LegendDisplayMode, PercentChangeColorMode, SortOrder, StackingMode, TableCellHeight, ThresholdsMode,
  TooltipDisplayMode, VariableHide, VariableRefresh, VariableSort, VisibilityMode, VizOrientation,
  type Dashboard, type DashboardLink, type FieldConfigSource, type Panel, type RowPanel, type VariableModel,
} from '@grafana/schema';
import type { Options as BarGaugeOptions } from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import { HeatmapColorMode, HeatmapColorScale, type Options as HeatmapOptions } from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';
import type { Options as StatOptions } from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type { Options as TableOptions } from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type { FieldConfig as TimeSeriesFieldConfig, Options as TimeSeriesOptions } from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

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
  /** Grafana transformations (tables: merge the queries by server, name and sort the columns). */
  transformations?: Panel['transformations'];
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

/** The `job` and `instance` variables every dashboard has, listed from `metric`. */
export function jobAndInstance(metric: string): VariableSpec[] {
  return [
    { name: 'job', label: 'Job', query: `label_values(${metric}, job)`, description: 'Prometheus job of the keepalive-exporter daemons.' },
    { name: 'instance', label: 'Instance', query: `label_values(${metric}{job=~"$job"}, instance)`, description: 'One daemon (one node) or all of them.' },
  ];
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

function fieldConfig(p: PanelSpec): FieldConfigSource {
  const overrides: FieldConfigSource['overrides'] = [];
  for (const [name, color] of Object.entries(p.colors ?? {})) {
    overrides.push({
      matcher: { id: 'byName', options: name },
      properties: [{ id: 'color', value: { mode: FieldColorModeId.Fixed, fixedColor: color } }],
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
        { id: 'custom.stacking', value: { mode: StackingMode.None, group: 'A' } },
        { id: 'color', value: { mode: FieldColorModeId.Fixed, fixedColor: 'red' } },
      ],
    });
  }
  const defaults: FieldConfigSource['defaults'] = {
    unit: p.unit,
    color: { mode: p.thresholds && p.type !== 'timeseries' ? FieldColorModeId.Thresholds : FieldColorModeId.PaletteClassic },
    thresholds: { mode: ThresholdsMode.Absolute, steps: p.thresholds ?? GREEN_ONLY },
  };
  if (p.decimals !== undefined) defaults.decimals = p.decimals;
  if (p.min !== undefined) defaults.min = p.min;
  if (p.max !== undefined) defaults.max = p.max;
  if (p.type === 'timeseries') {
    defaults.custom = {
      drawStyle: GraphDrawStyle.Line,
      lineWidth: 1,
      fillOpacity: p.stack ? 70 : 10,
      showPoints: VisibilityMode.Never,
      spanNulls: false,
      stacking: { mode: p.stack ? StackingMode.Normal : StackingMode.None, group: 'A' },
      thresholdsStyle: { mode: p.thresholds ? GraphThresholdsStyleMode.Dashed : GraphThresholdsStyleMode.Off },
    } satisfies TimeSeriesFieldConfig;
  }
  return { defaults, overrides };
}

const LAST_VALUE = { calcs: ['lastNotNull'], fields: '', values: false };

/** Each panel plugin's options, checked against that plugin's schema. */
function options(p: PanelSpec): TimeSeriesOptions | StatOptions | BarGaugeOptions | HeatmapOptions | TableOptions {
  switch (p.type) {
    case 'timeseries':
      return {
        legend: { displayMode: LegendDisplayMode.Table, placement: 'bottom', showLegend: true, calcs: ['mean', 'lastNotNull', 'max'] },
        tooltip: { mode: TooltipDisplayMode.Multi, sort: SortOrder.Descending },
      } satisfies TimeSeriesOptions;
    case 'stat':
      return {
        reduceOptions: LAST_VALUE,
        colorMode: BigValueColorMode.Value,
        graphMode: BigValueGraphMode.Area,
        justifyMode: BigValueJustifyMode.Auto,
        textMode: BigValueTextMode.Auto,
        orientation: VizOrientation.Auto,
        percentChangeColorMode: PercentChangeColorMode.Standard,
        showPercentChange: false,
        wideLayout: true,
      } satisfies StatOptions;
    case 'bargauge':
      return {
        reduceOptions: LAST_VALUE,
        orientation: VizOrientation.Horizontal,
        displayMode: BarGaugeDisplayMode.Gradient,
        showUnfilled: true,
        valueMode: BarGaugeValueMode.Color,
        namePlacement: BarGaugeNamePlacement.Auto,
        sizing: BarGaugeSizing.Auto,
        minVizHeight: 16,
        minVizWidth: 8,
        maxVizHeight: 300,
        legend: { displayMode: LegendDisplayMode.List, placement: 'bottom', showLegend: false, calcs: [] },
      } satisfies BarGaugeOptions;
    case 'heatmap':
      return {
        calculate: false,
        cellGap: 1,
        color: { mode: HeatmapColorMode.Scheme, scheme: 'Oranges', fill: 'dark-orange', scale: HeatmapColorScale.Exponential, exponent: 0.5, steps: 64, reverse: false },
        yAxis: { axisPlacement: AxisPlacement.Left, unit: p.unit },
        rowsFrame: { layout: HeatmapCellLayout.le },
        showValue: VisibilityMode.Never,
        tooltip: { mode: TooltipDisplayMode.Single, yHistogram: true, showColorScale: true },
        legend: { show: true },
        exemplars: { color: 'rgba(255,0,255,0.7)' },
      } satisfies HeatmapOptions;
    case 'table':
      return { showHeader: true, cellHeight: TableCellHeight.Sm, frameIndex: 0 } satisfies TableOptions;
  }
}

/** The dashboard JSON, ready for Grafana's file provisioning or its import dialog. */
export function buildDashboard(spec: DashboardSpec): Dashboard {
  const panels: Array<Panel | RowPanel> = [];
  let id = 1;
  let y = 0;
  for (const row of spec.rows) {
    panels.push({ type: 'row', id: id++, title: row.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] } satisfies RowPanel);
    y += 1;
    let x = 0;
    let rowHeight = 0;
    for (const p of row.panels) {
      if (x + p.w > 24) {
        y += rowHeight;
        x = 0;
        rowHeight = 0;
      }
      const panel: Panel = {
        type: p.type,
        id: id++,
        title: p.title,
        description: p.description,
        datasource: DATASOURCE,
        gridPos: { h: p.h, w: p.w, x, y },
        fieldConfig: fieldConfig(p),
        options: options(p) as unknown as Record<string, unknown>,
        targets: p.targets.map((t, i) => ({
          datasource: DATASOURCE,
          refId: String.fromCharCode(65 + i),
          expr: t.expr,
          legendFormat: t.legendFormat ?? '__auto',
          range: !t.instant,
          instant: t.instant ?? false,
          format: t.format ?? 'time_series',
        })),
        ...(p.transformations ? { transformations: p.transformations } : {}),
      };
      panels.push(panel);
      x += p.w;
      rowHeight = Math.max(rowHeight, p.h);
    }
    y += rowHeight;
  }
  const links: DashboardLink[] = spec.links.map((l) => ({
    title: l.title,
    type: 'link',
    url: `/d/${l.uid}`,
    icon: 'dashboard',
    keepTime: true,
    includeVars: true,
    targetBlank: false,
    tooltip: '',
    asDropdown: false,
    tags: [],
  }));
  const variables: VariableModel[] = [
    {
      name: 'datasource',
      label: 'Data source',
      description: 'The Prometheus that scrapes keepalive-exporter.',
      type: 'datasource',
      query: 'prometheus',
      // "default": Grafana's default Prometheus data source until the user picks another.
      current: { text: 'default', value: 'default' },
      hide: VariableHide.dontHide,
      refresh: VariableRefresh.onDashboardLoad,
      regex: '',
      options: [],
    },
    ...spec.variables.map((v): VariableModel => ({
      name: v.name,
      label: v.label,
      description: v.description,
      type: 'query',
      datasource: DATASOURCE,
      query: { query: v.query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
      current: { selected: true, text: ['All'], value: ['$__all'] },
      includeAll: true,
      allValue: '.+',
      multi: true,
      refresh: VariableRefresh.onTimeRangeChanged,
      sort: VariableSort.alphabeticalAsc,
      hide: VariableHide.dontHide,
      regex: '',
      options: [],
    })),
  ];
  return {
    uid: spec.uid,
    title: spec.title,
    description: spec.description,
    tags: spec.tags,
    editable: true,
    graphTooltip: DashboardCursorSync.Crosshair,
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
    links,
    templating: { list: variables },
    panels,
  };
}
