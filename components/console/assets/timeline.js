// A saga's timeline: its steps and their compensations as bars on one time
// axis, drawn as SVG through the DOM (no library). A step that ran is a bar
// from its `started_at` to its `ended_at` (to now while it runs or waits); a
// step that waits (for a payment) is a hatched span; a compensation is a bar
// from its first `compensation_started` in the history to its last
// `compensation_completed` / `compensation_failed` (or the compensation's own
// `started_at` / `ended_at` when the API gives them). Failed and compensated
// steps and compensations have colours of their own.

import { h, parseTime, fmtMs } from './kit.js';

const NS = 'http://www.w3.org/2000/svg';
const LABEL_W = 170; // the step names' column
const TAIL_W = 130; // room for the duration after the longest bar
const ROW_H = 18;
const ROW_GAP = 6;
const AXIS_H = 22;
const MIN_BAR_W = 3; // a step of a few ms is still seen
const FINAL_COMPENSATION = new Set(['completed', 'failed']);

/**
 * The bars of saga `s` with its history `events` (oldest first) at `now`
 * (ms), ordered by start: `{kind: 'action'|'compensation', step, status,
 * start, end, open, wait}`. Only steps that ran have a bar.
 */
export function timelineBars(s, events, now) {
  const steps = Array.isArray(s && s.steps) ? s.steps : [];
  const history = Array.isArray(events) ? events : [];
  const bars = [];
  for (const st of steps) {
    const start = parseTime(st.started_at);
    if (start === null) continue;
    const ended = parseTime(st.ended_at);
    const waitEvent = history.find((ev) => ev.type === 'step_started' && ev.step === st.name && ev.data && ev.data.wait);
    bars.push({
      kind: 'action',
      step: st.name,
      status: st.status,
      start,
      end: ended === null ? Math.max(start, now) : ended,
      open: ended === null,
      wait: waitEvent ? String(waitEvent.data.wait) : st.status === 'waiting' ? 'wait' : null,
    });
    const c = st.compensation;
    if (!c) continue;
    let cStart = parseTime(c.started_at);
    let cEnd = parseTime(c.ended_at);
    if (cStart === null) {
      for (const ev of history) {
        if (ev.step !== st.name || !/^compensation_(started|completed|failed)$/.test(ev.type)) continue;
        const t = parseTime(ev.at);
        if (t === null) continue;
        if (ev.type === 'compensation_started') { if (cStart === null) cStart = t; } else cEnd = t;
      }
    }
    if (cStart === null) continue; // not run yet
    const final = FINAL_COMPENSATION.has(c.status);
    const open = !final || cEnd === null || cEnd < cStart;
    bars.push({
      kind: 'compensation',
      step: st.name,
      status: c.status,
      start: cStart,
      end: open ? Math.max(cStart, now) : cEnd,
      open,
      wait: null,
    });
  }
  return bars.sort((a, b) => a.start - b.start);
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/** "+350 ms", "+1.2s", "+2m 05s" from the timeline's start. */
const offset = (ms) => `+${ms >= 1000 && ms < 60000 ? `${(ms / 1000).toFixed(1)}s` : fmtMs(Math.round(ms))}`;

/**
 * Draws the timeline of saga `s` (history `events`, at `now`) into `box`,
 * replacing what was there; `emptyEl` shows when no step ran yet.
 */
export function drawTimeline(box, emptyEl, s, events, now) {
  const bars = timelineBars(s, events, now);
  emptyEl.hidden = bars.length > 0;
  if (!bars.length) { box.replaceChildren(); return; }
  const width = Math.max(480, box.clientWidth || 0);
  const t0 = bars[0].start;
  const t1 = Math.max(...bars.map((b) => b.end), t0 + 1);
  const plotW = width - LABEL_W - TAIL_W;
  const x = (t) => LABEL_W + ((t - t0) / (t1 - t0)) * plotW;
  const height = AXIS_H + bars.length * (ROW_H + ROW_GAP);
  const root = svg('svg', {
    class: 'timeline', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `Timeline of ${s.id}: ${bars.length} bars over ${fmtMs(t1 - t0)}`,
    'data-testid': 'saga-timeline-svg', 'data-start': t0, 'data-end': t1,
  });
  root.append(svg('defs', null, svg('pattern', { id: 'tl-hatch', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
    svg('rect', { width: 6, height: 6, class: 'tl-hatch-bg' }), svg('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'tl-hatch-line' }))));
  // The axis: five ticks from the first start to the last end.
  const axis = svg('g', { class: 'tl-axis' });
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const tx = x(t);
    axis.append(svg('line', { x1: tx, x2: tx, y1: AXIS_H - 4, y2: height, class: 'tl-grid' }));
    const label = svg('text', { x: tx, y: AXIS_H - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' });
    label.textContent = offset(t - t0);
    axis.append(label);
  }
  root.append(axis);
  bars.forEach((b, i) => {
    const y = AXIS_H + i * (ROW_H + ROW_GAP);
    const bx = x(b.start);
    const bw = Math.max(MIN_BAR_W, x(b.end) - bx);
    const cls = ['tl-bar', `tl-${b.kind}`, `s-${b.status || 'unknown'}`, b.wait ? 'tl-wait' : null, b.open ? 'tl-open' : null].filter(Boolean).join(' ');
    const name = svg('text', { x: LABEL_W - 8, y: y + ROW_H - 5, 'text-anchor': 'end', class: 'tl-name' });
    name.textContent = b.kind === 'compensation' ? `↩ ${b.step}` : b.step;
    const took = svg('text', { x: bx + bw + 6, y: y + ROW_H - 5, class: 'tl-took' });
    took.textContent = `${fmtMs(b.end - b.start)}${b.open ? '…' : ''}${b.wait ? ` · ${b.wait}` : ''}`;
    const title = svg('title');
    title.textContent = `${b.kind === 'compensation' ? 'compensation of ' : ''}${b.step}: ${b.status}, ${new Date(b.start).toISOString()} → ${b.open ? 'now' : new Date(b.end).toISOString()}`;
    root.append(svg('g', {
      class: cls, 'data-testid': 'timeline-bar', 'data-step': b.step, 'data-kind': b.kind, 'data-status': b.status,
      'data-start': b.start, 'data-end': b.end, 'data-wait': b.wait, 'data-open': b.open ? '1' : null,
    }, title, name, svg('rect', { x: bx, y, width: bw, height: ROW_H, rx: 3, class: 'tl-rect' }), took));
  });
  box.replaceChildren(root);
}

/** The legend under the timeline. */
export function timelineLegend() {
  const item = (cls, text) => h('span', { class: 'tl-key' }, h('span', { class: `tl-swatch ${cls}` }), text);
  return [item('s-completed', 'completed'), item('tl-wait', 'waiting (a span)'), item('s-failed', 'failed'),
    item('s-compensated', 'compensated'), item('tl-compensation', 'compensation')];
}
