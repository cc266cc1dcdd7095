// The Workers view: the list (state filter, selection, bulk actions, Stop
// all), a worker's detail (its fields, iterations and request log) and the
// start form. Every rule is the API's: the actions offered are a worker's
// `allowed_actions`, refusals show its message.

import {
  $, h, api, quiet, poller, flash, formBoxes, setText, setAttr, show, reconcile, stateBadge, kv, relSpan, took, prettyJson,
  parseTime, fmtRelative, fmtClock, fmtNum, dash, parseIds, gotoForm, PAGE_SIZE,
} from './kit.js';
import { listAndDetail, listView } from './list.js';

const WORKERS_EVERY_MS = 2000;
const DETAIL_EVERY_MS = 2000;
const POLICY_FIELDS = [
  'max_iterations', 'interval_ms', 'cooldown_ms', 'max_cooldown_ms',
  'max_consecutive_failures', 'otp_timeout_ms', 'processing_poll_ms', 'max_processing_polls',
];

/**
 * The view module; `ctx` is the shell's: `pollers` (every module's, by
 * name), `showView`, `currentView()` and `status` (the top bar's counts).
 */
export function workersModule(ctx) {
  const W = {
    filter: '',
    selected: new Set(),
  };

  const list = listView({
    name: 'workers',
    path: '/api/workers',
    items: 'workers',
    every: WORKERS_EVERY_MS,
    key: (w) => w.binding_id,
    create: createWorkerRow,
    update: updateWorkerRow,
    filters: () => ({ state: W.filter }),
    empty: (L) => (W.filter ? `No ${W.filter} workers${L.stack.length > 1 ? ' on this page' : ''}.` : `No workers${L.stack.length > 1 ? ' on this page' : ''}.`),
    range: (range, L) => {
      const shown = (L.stack.length - 1) * PAGE_SIZE + L.order.length;
      const counts = ctx.status.counts;
      const total = counts ? (W.filter ? counts[W.filter] : counts.total) : null;
      let text = range;
      if (text && typeof total === 'number') text += ` of ${fmtNum(Math.max(total, shown))}`;
      if (text) text += W.filter ? ` ${W.filter} workers` : ' workers';
      return text;
    },
    rendered: () => renderSelection(),
  });
  const L = list.state;

  function createWorkerRow(w, id) {
    const r = {};
    r.check = h('input', { type: 'checkbox', 'data-testid': 'worker-select', 'data-binding-id': id, 'aria-label': `Select ${id}` });
    r.check.addEventListener('change', () => toggleSelected(id, r.check.checked));
    r.link = h('a', { href: `#/workers/${encodeURIComponent(id)}`, class: 'cell-id', 'data-testid': 'worker-link', text: id });
    r.state = h('span', { class: 'badge', 'data-testid': 'worker-state' });
    r.phase = h('td', { 'data-testid': 'worker-phase' });
    r.iterations = h('td', { class: 'num', 'data-testid': 'worker-iterations' });
    r.successes = h('td', { class: 'num', 'data-testid': 'worker-successes' });
    r.failures = h('td', { class: 'num', 'data-testid': 'worker-failures' });
    r.stopReason = h('td', { 'data-testid': 'worker-stop-reason' });
    r.lastOutcome = h('span', { class: 'badge' });
    r.lastDetail = h('span', { class: 'mono ellip' });
    r.last = h('td', { 'data-testid': 'worker-last-result' }, h('span', { class: 'last' }, r.lastOutcome, r.lastDetail));
    r.nextStep = h('td', { 'data-testid': 'worker-next-step' });
    r.pause = h('button', { type: 'button', class: 'btn btn-xs', 'data-testid': 'worker-pause', 'data-needs': 'workers.control', 'data-binding-id': id, text: 'Pause' });
    r.resume = h('button', { type: 'button', class: 'btn btn-xs', 'data-testid': 'worker-resume', 'data-needs': 'workers.control', 'data-binding-id': id, text: 'Resume' });
    r.stop = h('button', { type: 'button', class: 'btn btn-xs btn-danger-outline', 'data-testid': 'worker-stop', 'data-needs': 'workers.control', 'data-binding-id': id, text: 'Stop' });
    r.pause.addEventListener('click', () => workerAction(id, 'pause', r.pause));
    r.resume.addEventListener('click', () => workerAction(id, 'resume', r.resume));
    r.stop.addEventListener('click', () => workerAction(id, 'stop', r.stop));
    r.el = h('tr', { 'data-testid': 'worker-row', 'data-binding-id': id },
      h('td', { class: 'col-check' }, r.check),
      h('td', null, r.link),
      h('td', null, r.state),
      r.phase, r.iterations, r.successes, r.failures, r.stopReason, r.last, r.nextStep,
      h('td', { class: 'col-actions' }, h('span', { class: 'btn-group' }, r.pause, r.resume, r.stop)));
    r.nextAt = null;
    return r;
  }

  /** The enabled actions: the API's `allowed_actions` (the engine decides, not the console). */
  function actionsFor(w) {
    const allowed = new Set(w.allowed_actions || []);
    return { pause: allowed.has('pause'), resume: allowed.has('resume'), stop: allowed.has('stop') };
  }

  function lastResultParts(last) {
    if (!last) return { outcome: '', detail: '—', title: null };
    const detail = last.outcome === 'success' ? (last.receipt_code || last.transaction_id || '') : (last.reason || '');
    const title = [`iteration ${last.iteration}`, last.outcome, last.reason, last.receipt_code && `receipt ${last.receipt_code}`,
      last.transaction_id && `transaction ${last.transaction_id}`, last.finished_at && `finished ${last.finished_at}`]
      .filter(Boolean).join(' · ');
    return { outcome: last.outcome || '', detail, title };
  }

  function updateWorkerRow(r, w) {
    const busy = r.el.dataset.busy === '1';
    setAttr(r.el, 'data-state', w.state);
    stateBadge(r.state, w.state);
    setText(r.phase, dash(w.phase));
    setText(r.iterations, fmtNum(w.iterations));
    setText(r.successes, fmtNum(w.successes));
    setText(r.failures, fmtNum(w.failures));
    setText(r.stopReason, w.stop_reason || '');
    const last = lastResultParts(w.last_result);
    setText(r.lastOutcome, last.outcome);
    const cls = `badge o-${last.outcome || 'none'}`;
    if (r.lastOutcome.className !== cls) r.lastOutcome.className = cls;
    setText(r.lastDetail, last.detail);
    r.lastDetail.classList.toggle('reason', last.outcome === 'failure');
    setAttr(r.last, 'title', last.title);
    r.nextAt = parseTime(w.next_step_at);
    r.held = w.state === 'paused' ? 'paused' : null;
    setAttr(r.nextStep, 'title', w.next_step_at || null);
    setText(r.nextStep, r.held || fmtRelative(r.nextAt, true));
    r.nextStep.classList.toggle('dim', Boolean(r.held));
    const a = actionsFor(w);
    r.pause.disabled = busy || !a.pause;
    r.resume.disabled = busy || !a.resume;
    r.stop.disabled = busy || !a.stop;
    const sel = W.selected.has(w.binding_id);
    if (r.check.checked !== sel) r.check.checked = sel;
    r.el.classList.toggle('selected', sel);
    r.worker = w;
  }




  function toggleSelected(id, on) {
    if (on) W.selected.add(id); else W.selected.delete(id);
    const r = L.rows.get(id);
    if (r) r.el.classList.toggle('selected', on);
    renderSelection();
  }

  function renderSelection() {
    const n = W.selected.size;
    setText($('workers-selected-count'), fmtNum(n));
    $('workers-clear-selection').disabled = n === 0;
    $('bulk-pause').disabled = n === 0;
    $('bulk-resume').disabled = n === 0;
    $('bulk-stop').disabled = n === 0;
    const onPage = L.order.filter((id) => W.selected.has(id)).length;
    const all = $('workers-select-page');
    all.checked = L.order.length > 0 && onPage === L.order.length;
    all.indeterminate = onPage > 0 && onPage < L.order.length;
    const hidden = n - onPage;
    setAttr($('workers-selected-count').parentElement, 'title', hidden > 0 ? `${hidden} selected on other pages or filtered out` : null);
  }

  function setFilter(state) {
    if (state === W.filter && L.stack.length === 1) return;
    W.filter = state;
    $('workers-state-filter').value = state;
    for (const b of document.querySelectorAll('[data-filter-state]')) {
      b.classList.toggle('active', b.dataset.filterState === state);
    }
    list.refilter();
  }

  const verb = { pause: 'Pause', resume: 'Resume', stop: 'Stop' };
  const done = { pause: 'Paused', resume: 'Resumed', stop: 'Stop requested for' };

  async function workerAction(id, action, button, msgEl) {
    const msg = msgEl || $('workers-message');
    const r = L.rows.get(id);
    if (r) r.el.dataset.busy = '1';
    if (button) button.disabled = true;
    try {
      const w = await api('POST', `/api/workers/${encodeURIComponent(id)}/${action}`);
      const rr = L.rows.get(id);
      if (rr) { delete rr.el.dataset.busy; if (w && w.binding_id === id) updateWorkerRow(rr, w); }
      if (D.id === id && w && w.binding_id === id) renderDetailWorker(w);
      flash(msg, `${done[action]} ${id}${w && w.state ? ` (now ${w.state})` : ''}.`, 'ok');
    } catch (e) {
      if (!quiet(e)) flash(msg, `${verb[action]} ${id}: ${e.message}`, 'error');
    } finally {
      const rr = L.rows.get(id);
      if (rr) { delete rr.el.dataset.busy; if (rr.worker) updateWorkerRow(rr, rr.worker); }
      if (button && !L.rows.has(id)) button.disabled = false;
      ctx.pollers.workers.kick();
      ctx.pollers.status.kick();
      if (D.id) ctx.pollers.detail.kick();
    }
  }

  async function bulkAction(action, body, label) {
    const msg = $('workers-message');
    const buttons = ['bulk-pause', 'bulk-resume', 'bulk-stop', 'stop-all'].map($);
    for (const b of buttons) b.disabled = true;
    try {
      const res = await api('POST', `/api/workers/${action}`, body);
      const n = res && typeof res.affected === 'number' ? res.affected : 0;
      flash(msg, `${label}: ${fmtNum(n)} worker${n === 1 ? '' : 's'} affected.`, 'ok');
    } catch (e) {
      if (!quiet(e)) flash(msg, `${label}: ${e.message}`, 'error');
    } finally {
      $('stop-all').disabled = false;
      renderSelection();
      ctx.pollers.workers.kick();
      ctx.pollers.status.kick();
    }
  }

  // ----------------------------------------------------------- start form

  async function submitStart(ev) {
    ev.preventDefault();
    const boxes = formBoxes('start-error', 'start-result');
    const { err, ok } = boxes;
    boxes.clear();
    const ids = parseIds($('start-binding-ids').value);
    if (ids.length === 0) {
      flash(err, 'Enter at least one binding id.', 'error');
      $('start-binding-ids').focus();
      return;
    }
    const policy = {};
    for (const f of POLICY_FIELDS) {
      const input = $(`start-${f}`);
      if (input.validity && input.validity.badInput) {
        flash(err, `${f}: not a number.`, 'error');
        input.focus();
        return;
      }
      const v = input.value.trim();
      if (v === '') continue;
      policy[f] = /^-?\d+$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : v;
    }
    const body = { binding_ids: ids };
    if (Object.keys(policy).length) body.policy = policy;
    const btn = $('start-submit');
    btn.disabled = true;
    try {
      const res = await api('POST', '/api/workers', body);
      const workers = (res && res.workers) || [];
      const n = workers.length;
      const shown = workers.slice(0, 5).map((w) => w.binding_id).join(', ');
      flash(ok, `Started ${fmtNum(n)} worker${n === 1 ? '' : 's'}: ${shown}${n > 5 ? ', …' : ''}`, 'ok');
      $('start-binding-ids').value = '';
    } catch (e) {
      boxes.fail(e);
    } finally {
      btn.disabled = false;
      ctx.pollers.workers.kick();
      ctx.pollers.status.kick();
    }
  }

  // --------------------------------------------------------- worker detail

  const D = {
    id: null,
    itStack: [null],
    itNext: null,
    rqStack: [null],
    rqNext: null,
    itRows: new Map(),
    rqRows: new Map(),
    worker: null,
  };

  async function loadDetail() {
    const id = D.id;
    if (!id) return;
    const enc = encodeURIComponent(id);
    const itQ = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const itCursor = D.itStack[D.itStack.length - 1];
    if (itCursor) itQ.set('cursor', itCursor);
    const rqQ = new URLSearchParams({ binding_id: id, limit: String(PAGE_SIZE) });
    const rqCursor = D.rqStack[D.rqStack.length - 1];
    if (rqCursor) rqQ.set('cursor', rqCursor);
    const key = `${id}|${itCursor}|${rqCursor}`;
    const [w, it, rq] = await Promise.allSettled([
      api('GET', `/api/workers/${enc}`),
      api('GET', `/api/workers/${enc}/iterations?${itQ}`),
      api('GET', `/api/requests?${rqQ}`),
    ]);
    if (key !== `${D.id}|${D.itStack[D.itStack.length - 1]}|${D.rqStack[D.rqStack.length - 1]}`) return;
    const err = $('detail-error');
    if (w.status === 'rejected') {
      const e = w.reason;
      if (e && e.status === 404) {
        flash(err, e.message || `No worker ${id}.`, 'error');
        show($('detail-body'), false);
        show($('iterations-panel'), false);
        show($('requests-panel'), false);
        stateBadge($('detail-state'), '');
        for (const a of ['pause', 'resume', 'stop']) $(`detail-${a}`).disabled = true;
        return;
      }
      throw e;
    }
    show(err, false);
    show($('detail-body'), true);
    show($('iterations-panel'), true);
    show($('requests-panel'), true);
    renderDetailWorker(w.value);
    if (it.status === 'fulfilled') renderIterations(it.value);
    if (rq.status === 'fulfilled') renderRequests(rq.value);
    const failed = [it, rq].find((x) => x.status === 'rejected');
    if (failed) throw failed.reason;
  }



  function renderDetailWorker(w) {
    D.worker = w;
    setText($('detail-binding-id'), w.binding_id);
    stateBadge($('detail-state'), w.state);
    const a = actionsFor(w);
    $('detail-pause').disabled = !a.pause;
    $('detail-resume').disabled = !a.resume;
    $('detail-stop').disabled = !a.stop;
    const next = relSpan(w.next_step_at, true);
    kv($('detail-fields'), [
      ['state', w.state, { field: 'state' }],
      ['phase', w.phase, { field: 'phase' }],
      ['run_id', w.run_id, { field: 'run_id' }],
      ['stop_reason', w.stop_reason, { field: 'stop_reason' }],
      ['iterations', fmtNum(w.iterations), { field: 'iterations' }],
      ['successes', fmtNum(w.successes), { field: 'successes' }],
      ['failures', fmtNum(w.failures), { field: 'failures' }],
      ['consecutive_failures', fmtNum(w.consecutive_failures), { field: 'consecutive_failures' }],
      ['next_step_at', next, { title: w.next_step_at, field: 'next_step_at' }],
      ['created_at', fmtClock(w.created_at), { title: w.created_at }],
      ['updated_at', fmtClock(w.updated_at), { title: w.updated_at }],
    ]);
    const p = w.policy || {};
    kv($('detail-policy'), POLICY_FIELDS.map((f) => [f, f === 'max_iterations' && (p[f] === null || p[f] === undefined) ? 'unbounded' : dash(p[f]), { field: f }]));
    const c = w.current_transaction;
    kv($('detail-current'), c ? [
      ['id', c.id, { mono: true }],
      ['status', c.status],
      ['otp_required', c.otp_required ? 'yes' : 'no'],
      ['otp_submitted', c.otp_submitted ? 'yes' : 'no'],
      ['otp_expires_at', c.otp_expires_at ? `${fmtClock(c.otp_expires_at)} (${fmtRelative(parseTime(c.otp_expires_at))})` : null, { title: c.otp_expires_at }],
      ['polls', c.polls],
      ['closing_reason', c.closing_reason],
      ['amount', c.amount === null || c.amount === undefined ? null : fmtNum(c.amount)],
      ['balance', c.balance === null || c.balance === undefined ? null : fmtNum(c.balance)],
    ] : null);
    const l = w.last_result;
    kv($('detail-last'), l ? [
      ['iteration', l.iteration],
      ['outcome', l.outcome],
      ['reason', l.reason],
      ['receipt_code', l.receipt_code, { mono: true }],
      ['transaction_id', l.transaction_id, { mono: true }],
      ['amount', l.amount === null || l.amount === undefined ? null : fmtNum(l.amount)],
      ['balance', l.balance === null || l.balance === undefined ? null : fmtNum(l.balance)],
      ['started_at', fmtClock(l.started_at), { title: l.started_at }],
      ['finished_at', fmtClock(l.finished_at), { title: l.finished_at }],
    ] : null);
    setText($('detail-json'), JSON.stringify(w, null, 2));
  }



  function createIterationRow(it, key) {
    const r = {};
    r.outcome = h('span', { class: 'badge' });
    r.cells = Array.from({ length: 8 }, () => h('td'));
    r.el = h('tr', { 'data-testid': 'iteration-row', 'data-iteration-id': key },
      r.cells[0], r.cells[1], h('td', null, r.outcome), r.cells[2], r.cells[3], r.cells[4], r.cells[5], r.cells[6], r.cells[7]);
    r.cells[0].className = 'num';
    r.cells[1].className = 'num';
    r.cells[2].className = 'mono ellip';
    r.cells[3].className = 'mono';
    r.cells[4].className = 'num';
    r.cells[5].className = 'num';
    r.cells[7].className = 'num';
    return r;
  }

  function updateIterationRow(r, it) {
    setText(r.cells[0], it.iteration);
    setText(r.cells[1], it.run_id);
    setText(r.outcome, it.outcome);
    r.outcome.className = `badge o-${it.outcome}`;
    setText(r.cells[2], it.outcome === 'success' ? dash(it.receipt_code) : dash(it.reason));
    r.cells[2].classList.toggle('dim', it.outcome !== 'success' && !it.reason);
    setAttr(r.cells[2], 'title', it.reason || it.receipt_code || null);
    setText(r.cells[3], dash(it.transaction_id));
    setText(r.cells[4], fmtNum(it.amount));
    setText(r.cells[5], fmtNum(it.balance));
    setText(r.cells[6], fmtClock(it.started_at));
    setAttr(r.cells[6], 'title', it.started_at || null);
    setText(r.cells[7], took(it.started_at, it.finished_at));
  }

  function renderIterations(data) {
    const rows = Array.isArray(data && data.iterations) ? data.iterations : [];
    D.itNext = (data && data.next_cursor) || null;
    reconcile($('iterations-tbody'), rows, (it) => String(it.id), D.itRows, createIterationRow, updateIterationRow);
    show($('iterations-empty'), rows.length === 0);
    $('iterations-prev').disabled = D.itStack.length <= 1;
    $('iterations-next').disabled = !D.itNext;
    setText($('iterations-page'), `Page ${D.itStack.length}`);
  }

  function createRequestRow(rq, key) {
    const r = {};
    r.cells = Array.from({ length: 8 }, () => h('td'));
    r.reqPre = h('pre');
    r.resPre = h('pre');
    r.details = h('details', { class: 'payload' }, h('summary', { text: 'view' }),
      h('div', { class: 'muted small', text: 'request' }), r.reqPre,
      h('div', { class: 'muted small', text: 'response' }), r.resPre);
    r.el = h('tr', { 'data-testid': 'request-row', 'data-request-id': key }, ...r.cells, h('td', { class: 'wrap' }, r.details));
    r.cells[0].className = 'num mono';
    r.cells[3].className = 'mono';
    r.cells[4].className = 'num';
    r.cells[5].className = 'num';
    r.cells[6].className = 'ellip';
    r.cells[7].className = 'num';
    return r;
  }



  function updateRequestRow(r, rq) {
    setText(r.cells[0], rq.request_id);
    setText(r.cells[1], fmtClock(rq.created_at));
    setAttr(r.cells[1], 'title', rq.created_at || null);
    setText(r.cells[2], rq.operation);
    setAttr(r.cells[2], 'title', rq.url ? `${rq.method || 'POST'} ${rq.url}` : null);
    setText(r.cells[3], dash(rq.transaction_id));
    setText(r.cells[4], `${rq.attempt_number}${rq.is_latest ? '' : ' (superseded)'}`);
    setText(r.cells[5], rq.status_code === null || rq.status_code === undefined ? (rq.responded_at ? '—' : 'pending') : rq.status_code);
    const resp = [rq.response_code, rq.response_message].filter(Boolean).join(' · ');
    setText(r.cells[6], resp || (rq.is_success === null || rq.is_success === undefined ? '—' : ''));
    setAttr(r.cells[6], 'title', resp || null);
    r.cells[6].classList.toggle('reason', rq.is_success === false);
    r.el.classList.toggle('failed', rq.is_success === false);
    setText(r.cells[7], rq.duration_ms === null || rq.duration_ms === undefined ? '—' : `${rq.duration_ms} ms`);
    setText(r.reqPre, prettyJson(rq.request_payload));
    setText(r.resPre, prettyJson(rq.response_payload));
  }

  function renderRequests(data) {
    const rows = Array.isArray(data && data.requests) ? data.requests : [];
    D.rqNext = (data && data.next_cursor) || null;
    reconcile($('requests-tbody'), rows, (rq) => String(rq.request_id), D.rqRows, createRequestRow, updateRequestRow);
    show($('requests-empty'), rows.length === 0);
    $('requests-prev').disabled = D.rqStack.length <= 1;
    $('requests-next').disabled = !D.rqNext;
    setText($('requests-page'), `Page ${D.rqStack.length}`);
  }

  function openDetail(id) {
    if (D.id !== id) {
      D.id = id;
      D.itStack = [null];
      D.rqStack = [null];
      D.itNext = D.rqNext = null;
      D.worker = null;
      for (const m of [D.itRows, D.rqRows]) m.clear();
      $('iterations-tbody').replaceChildren();
      $('requests-tbody').replaceChildren();
      for (const el of ['detail-fields', 'detail-policy', 'detail-current', 'detail-last']) $(el).replaceChildren();
      setText($('detail-json'), '');
      setText($('detail-binding-id'), id);
      stateBadge($('detail-state'), '');
      for (const a of ['pause', 'resume', 'stop']) $(`detail-${a}`).disabled = true;
      flash($('detail-message'), '', '');
      show($('detail-error'), false);
    }
    ctx.showView('detail', id);
    window.scrollTo(0, 0);
  }

  function openList() {
    D.id = null;
    ctx.showView('workers');
  }

  // ------------------------------------------------------------------ wiring

  // The list has no route of its own: it is what any other hash opens.
  const nav = listAndDetail({
    name: 'workers', list, listEl: 'workers-view', openList: openList, listRoute: false,
    detail: 'detail', detailEl: 'detail-view', openDetail,
    detailPoller: poller(loadDetail, DETAIL_EVERY_MS),
  });
  const { pollers } = nav;

  return {
    ...nav,
    /** Whatever no other view claims opens the list. */
    fallback: openList,
    /** The top bar's counts changed: the range names them. */
    statusChanged() {
      list.renderPager();
    },
    /** Every second: the next steps' relative times. */
    tick() {
      for (const r of L.rows.values()) setText(r.nextStep, r.held || fmtRelative(r.nextAt, true));
    },
    /** Signed in: the filter buttons, the selection and the pager as they are. */
    enter() {
      for (const b of document.querySelectorAll('[data-filter-state]')) {
        b.classList.toggle('active', b.dataset.filterState === W.filter);
      }
      renderSelection();
      list.renderPager();
    },
    reset() {
      list.reset();
      W.selected.clear();
      W.filter = '';
      $('workers-state-filter').value = '';
      D.id = null;
      D.itRows.clear();
      D.rqRows.clear();
      for (const id of ['workers-message', 'detail-message', 'start-error', 'start-result']) flash($(id), '', '');
    },
    wire() {
      $('workers-state-filter').addEventListener('change', (ev) => setFilter(ev.target.value));
      for (const b of document.querySelectorAll('[data-filter-state]')) {
        b.addEventListener('click', () => {
          if (ctx.currentView() !== 'workers') location.hash = '#/';
          setFilter(b.dataset.filterState);
        });
      }
      list.wire();
      $('workers-select-page').addEventListener('change', (ev) => {
        const on = ev.target.checked;
        for (const id of L.order) {
          if (on) W.selected.add(id); else W.selected.delete(id);
          const r = L.rows.get(id);
          if (r) { r.check.checked = on; r.el.classList.toggle('selected', on); }
        }
        renderSelection();
      });
      $('workers-clear-selection').addEventListener('click', () => {
        W.selected.clear();
        for (const r of L.rows.values()) { r.check.checked = false; r.el.classList.remove('selected'); }
        renderSelection();
      });
      for (const action of ['pause', 'resume', 'stop']) {
        $(`bulk-${action}`).addEventListener('click', () => {
          const ids = [...W.selected];
          if (!ids.length) return;
          bulkAction(action, { binding_ids: ids }, `${verb[action]} ${fmtNum(ids.length)} selected`);
        });
        $(`detail-${action}`).addEventListener('click', (ev) => {
          if (D.id) workerAction(D.id, action, ev.currentTarget, $('detail-message'));
        });
      }
      $('stop-all').addEventListener('click', () => {
        if (!window.confirm('Stop ALL workers? Every running, pausing and paused worker will stop at its loop boundary.')) return;
        bulkAction('stop', { all: true }, 'Stop all');
      });
      $('start-form').addEventListener('submit', submitStart);
      gotoForm('workers', '#/workers/');
      $('iterations-prev').addEventListener('click', () => { if (D.itStack.length > 1) { D.itStack.pop(); pollers.detail.kick(); } });
      $('iterations-next').addEventListener('click', () => { if (D.itNext) { D.itStack.push(D.itNext); D.itNext = null; $('iterations-next').disabled = true; pollers.detail.kick(); } });
      $('requests-prev').addEventListener('click', () => { if (D.rqStack.length > 1) { D.rqStack.pop(); pollers.detail.kick(); } });
      $('requests-next').addEventListener('click', () => { if (D.rqNext) { D.rqStack.push(D.rqNext); D.rqNext = null; $('requests-next').disabled = true; pollers.detail.kick(); } });
    },
  };
}
