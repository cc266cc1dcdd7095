// The Overview view: live charts of the app's own metrics. While the console
// is open (signed in), GET /metrics (the Prometheus text) is read every
// SAMPLE_EVERY_MS and the last 15 minutes of samples are kept in memory;
// nothing is stored anywhere else. From two samples in a row come the rates
// (steps, transfers and webhook notifications per second) and the p99 step
// latency of that interval (from the step-duration histogram's buckets); the
// OTP queue length is the gauge as read. The charts are uPlot (vendor/,
// bundled into the component, MIT): canvas, no request leaves the page.

import uPlot from './vendor/uPlot.esm.js';
import { $, h, request, poller, setText, setAttr, serverNow, fmtNum } from './kit.js';

const SAMPLE_EVERY_MS = 2000;
const DRAW_EVERY_MS = 2000;
const WINDOW_MS = 15 * 60 * 1000;
const CHART_HEIGHT = 200;

/** What the charts show: each series, its chart, how it reads, its colour. */
const SERIES = [
  { key: 'steps', chart: 'throughput', label: 'steps/s', unit: '/s', color: '#2f6f4f' },
  { key: 'transfers', chart: 'throughput', label: 'transfers/s', unit: '/s', color: '#2f4f8f' },
  { key: 'webhooks', chart: 'throughput', label: 'webhook notifications/s', unit: '/s', color: '#a16207' },
  { key: 'p99', chart: 'latency', label: 'p99 step latency (ms)', unit: ' ms', color: '#b91c1c' },
  { key: 'otp', chart: 'otp', label: 'OTP queue length', unit: '', color: '#7c3aed' },
];
const CHARTS = [
  { key: 'throughput', title: 'Throughput (per second)' },
  { key: 'latency', title: 'p99 step latency (ms)' },
  { key: 'otp', title: 'OTP queue length' },
];

/**
 * The samples of a Prometheus text exposition: a Map from each metric name
 * (as written, `_total` and `_bucket` included) to `[{labels, value}]`.
 */
export function parseMetrics(text) {
  const out = new Map();
  for (const line of String(text || '').split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
    if (Number.isNaN(value)) continue;
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value });
  }
  return out;
}

/** The sum of every sample of `name` (0 when it has none). */
const total = (metrics, name) => (metrics.get(name) || []).reduce((s, x) => s + x.value, 0);

/** The cumulative bucket counts of a histogram, summed over its other labels: a Map from `le` (a number) to the count. */
function buckets(metrics, name) {
  const out = new Map();
  for (const x of metrics.get(`${name}_bucket`) || []) {
    const le = x.labels.le === '+Inf' ? Infinity : Number(x.labels.le);
    if (Number.isNaN(le)) continue;
    out.set(le, (out.get(le) || 0) + x.value);
  }
  return out;
}

/**
 * The `q` quantile of the observations made between two readings of a
 * histogram's buckets (as Prometheus's histogram_quantile: linear within the
 * bucket); null when nothing was observed in between.
 */
export function quantileBetween(before, after, q) {
  const les = [...after.keys()].sort((a, b) => a - b);
  const counts = les.map((le) => after.get(le) - (before.get(le) || 0));
  const n = counts.length ? counts[counts.length - 1] : 0;
  if (!(n > 0) || counts.some((c) => c < 0)) return null;
  const rank = q * n;
  for (let i = 0; i < les.length; i++) {
    if (counts[i] >= rank) {
      const lo = i === 0 ? 0 : les[i - 1];
      const hi = les[i];
      if (hi === Infinity) return lo; // beyond the last finite bound: the bound, as Prometheus does
      const below = i === 0 ? 0 : counts[i - 1];
      const inBucket = counts[i] - below;
      return inBucket > 0 ? lo + ((hi - lo) * (rank - below)) / inBucket : hi;
    }
  }
  return null;
}

/** A reading of the counters and gauges a sample needs. */
function reading(metrics, at) {
  return {
    at,
    steps: total(metrics, 'stepwise_steps_total'),
    transfers: total(metrics, 'stepwise_transfers_executed_total'),
    webhooks: total(metrics, 'stepwise_webhook_notifications_total'),
    stepBuckets: buckets(metrics, 'stepwise_step_duration_seconds'),
    otp: metrics.has('stepwise_otp_queue_length') ? total(metrics, 'stepwise_otp_queue_length') : null,
  };
}

/** The point of the charts between two readings: rates per second, the p99 (ms), the OTP queue. A counter that went back (a restart) gives no rate. */
function point(prev, cur) {
  const secs = (cur.at - prev.at) / 1000;
  const rate = (k) => (secs > 0 && cur[k] >= prev[k] ? (cur[k] - prev[k]) / secs : null);
  const p99 = quantileBetween(prev.stepBuckets, cur.stepBuckets, 0.99);
  return { at: cur.at, steps: rate('steps'), transfers: rate('transfers'), webhooks: rate('webhooks'), p99: p99 === null ? null : p99 * 1000, otp: cur.otp };
}

/** "12.5/s", "3 ms", "0"; "—" for nothing. */
function fmtValue(v, unit) {
  if (v === null || v === undefined) return '—';
  const n = Math.abs(v) >= 100 || Number.isInteger(v) ? fmtNum(Math.round(v)) : v.toFixed(v < 10 ? 2 : 1);
  return `${n}${unit}`;
}

/** The view module; `ctx` is the shell's (`showView`, `pollers`). */
export function overviewModule(ctx) {
  const M = {
    last: null, // the last reading
    points: [], // oldest first, the last WINDOW_MS
    charts: new Map(), // chart key -> {u, el, series}
    samples: 0, // readings taken since sign-in
  };

  async function sample() {
    const { text } = await request('GET', '/metrics', undefined, { headers: { Accept: 'text/plain' } });
    const cur = reading(parseMetrics(text), serverNow());
    if (M.last) M.points.push(point(M.last, cur));
    M.last = cur;
    M.samples += 1;
    const since = cur.at - WINDOW_MS;
    while (M.points.length && M.points[0].at < since) M.points.shift();
    if (ctx.currentView() === 'overview') draw();
  }

  function chartData(chart) {
    const series = SERIES.filter((s) => s.chart === chart.key);
    return { series, data: [M.points.map((p) => p.at / 1000), ...series.map((s) => M.points.map((p) => p[s.key]))] };
  }

  /** Makes the charts the first time the view shows (uPlot needs their width). */
  function ensureCharts() {
    if (M.charts.size) return;
    for (const chart of CHARTS) {
      const el = $(`overview-chart-${chart.key}`);
      const { series, data } = chartData(chart);
      const opts = {
        width: Math.max(320, el.clientWidth),
        height: CHART_HEIGHT,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max === null ? 1 : max * 1.1)] } },
        axes: [{ stroke: '#71717a', grid: { stroke: 'rgba(113,113,122,.15)' } }, { stroke: '#71717a', grid: { stroke: 'rgba(113,113,122,.15)' }, size: 56 }],
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: false }, value: (u, v) => fmtValue(v, s.unit) }))],
        legend: { show: true },
      };
      M.charts.set(chart.key, { u: new uPlot(opts, data, el), el, series });
    }
  }

  function draw() {
    ensureCharts();
    for (const chart of CHARTS) {
      const c = M.charts.get(chart.key);
      const { data } = chartData(chart);
      const width = Math.max(320, c.el.clientWidth);
      if (Math.abs(c.u.width - width) > 1) c.u.setSize({ width, height: CHART_HEIGHT });
      c.u.setData(data);
      setAttr(c.el, 'data-points', String(data[0].length));
      setAttr(c.el, 'data-last-at', M.points.length ? String(M.points[M.points.length - 1].at) : null);
    }
    const last = M.points[M.points.length - 1] || {};
    for (const s of SERIES) {
      const el = $(`overview-value-${s.key}`);
      setText(el, fmtValue(last[s.key], s.unit));
      setAttr(el, 'data-points', String(M.points.filter((p) => p[s.key] !== null && p[s.key] !== undefined).length));
    }
    setText($('overview-window'), M.points.length
      ? `${fmtNum(M.points.length)} samples · every ${SAMPLE_EVERY_MS / 1000}s · the last ${WINDOW_MS / 60000} minutes, kept while this page is open`
      : 'Sampling…');
  }

  const pollers = {
    metrics: poller(sample, SAMPLE_EVERY_MS),
    overview: poller(async () => draw(), DRAW_EVERY_MS),
  };

  return {
    views: { overview: { el: 'overview-view', poller: 'overview', tab: 'overview' } },
    pollers,
    route(hash) {
      if (!/^#\/overview\/?$/.test(hash)) return false;
      ctx.showView('overview', 'Overview');
      return true;
    },
    /** Signed in: sampling starts, whatever the view. */
    enter() {
      pollers.metrics.start();
    },
    reset() {
      M.last = null;
      M.points = [];
      M.samples = 0;
      for (const c of M.charts.values()) c.u.destroy();
      M.charts.clear();
      for (const chart of CHARTS) $(`overview-chart-${chart.key}`).replaceChildren();
    },
    wire() {
      for (const s of SERIES) {
        const box = $(`overview-card-${s.key}`);
        box.replaceChildren(h('span', { class: 'ov-swatch', 'data-color': s.key }), h('span', { class: 'ov-label', text: s.label }),
          h('span', { class: 'ov-value', id: `overview-value-${s.key}`, 'data-testid': `overview-value-${s.key}`, text: '—' }));
      }
      window.addEventListener('resize', () => { if (ctx.currentView() === 'overview' && M.charts.size) draw(); });
    },
  };
}
