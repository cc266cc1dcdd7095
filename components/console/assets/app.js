// Stepwise operator console. Plain JavaScript, no dependencies, no build step.
//
// Every value from the API reaches the DOM through textContent or
// setAttribute, never innerHTML. Lists are updated in place, keyed by id, so
// focus, typing and checkbox state survive the periodic refreshes.
//
// An ES module: the Accounts and Transfers views are modules of their own
// (accounts.js, transfers.js), handed the shared toolkit (`kit`) below.

import { accountsModule } from './accounts.js';
import { transfersModule } from './transfers.js';
import { subscriptionsModule } from './subscriptions.js';

(() => {
  const TOKEN_KEY = 'stepwise.api_token';
  const PAGE_SIZE = 50;
  const WORKERS_EVERY_MS = 2000;
  const STATUS_EVERY_MS = 2000;
  const OTP_EVERY_MS = 1500;
  const DETAIL_EVERY_MS = 2000;
  const SAGAS_EVERY_MS = 2000;
  const SAGA_EVERY_MS = 1500;
  const EVENTS_EVERY_MS = 1500;
  const REQUEST_TIMEOUT_MS = 15000;
  const STATES = ['running', 'pausing', 'paused', 'stopping', 'stopped'];
  const POLICY_FIELDS = [
    'max_iterations', 'interval_ms', 'cooldown_ms', 'max_cooldown_ms',
    'max_consecutive_failures', 'otp_timeout_ms', 'processing_poll_ms', 'max_processing_polls',
  ];

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);

  /** Creates an element. Children and the `text` prop become text nodes. */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = String(v);
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /** Sets text only when it changed (no needless DOM work). */
  function setText(el, value) {
    const s = value === null || value === undefined ? '' : String(value);
    if (el.textContent !== s) el.textContent = s;
  }

  function setAttr(el, name, value) {
    if (value === null || value === undefined) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== String(value)) {
      el.setAttribute(name, String(value));
    }
  }

  function show(el, visible) {
    if (el.hidden === visible) el.hidden = !visible;
  }

  /** Shows a message; kind: 'ok' | 'error' | ''. Ok messages fade after a while. */
  function flash(el, text, kind) {
    clearTimeout(el._flashTimer);
    setText(el, text);
    el.dataset.kind = kind || '';
    show(el, Boolean(text));
    if (text && kind === 'ok') el._flashTimer = setTimeout(() => show(el, false), 8000);
  }

  // Server clock offset, from /api/status, so countdowns follow the server's clock.
  let skewMs = 0;
  const serverNow = () => Date.now() + skewMs;

  const parseTime = (s) => {
    if (!s) return null;
    const t = Date.parse(s);
    return Number.isNaN(t) ? null : t;
  };

  function fmtDuration(ms) {
    const neg = ms < 0;
    let s = Math.floor(Math.abs(ms) / 1000);
    let out;
    if (s < 60) out = `${s}s`;
    else if (s < 3600) out = `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
    else if (s < 86400) out = `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
    else out = `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
    return neg ? `-${out}` : out;
  }

  /** "in 3s", "now", "12s ago" (or "due 12s ago" for a step that is due). */
  function fmtRelative(at, due) {
    if (at === null || at === undefined) return '—';
    const d = at - serverNow();
    if (Math.abs(d) < 1000) return 'now';
    return d > 0 ? `in ${fmtDuration(d)}` : `${due ? 'due ' : ''}${fmtDuration(-d)} ago`;
  }

  /** mm:ss left (or h:mm:ss). */
  function fmtCountdown(ms) {
    if (ms <= 0) return 'expired';
    const s = Math.ceil(ms / 1000);
    const hh = Math.floor(s / 3600);
    const mm = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, '0');
    return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss} left` : `${mm}:${ss} left`;
  }

  function fmtClock(s) {
    const t = parseTime(s);
    if (t === null) return '—';
    const d = new Date(t);
    const now = new Date();
    const time = d.toLocaleTimeString([], { hour12: false });
    if (d.toDateString() === now.toDateString()) return time;
    return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
  }

  const fmtNum = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString());
  const dash = (v) => (v === null || v === undefined || v === '' ? '—' : String(v));

  function parseIds(text) {
    return text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
  }

  // -------------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** Errors nobody needs to read: the 401 already shows the sign-in form. */
  const quiet = (e) => e instanceof ApiError && (e.status === 401 || e.code === 'signed_out');

  let token = '';
  try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { token = ''; }

  /**
   * Calls the API; answers `{status, data}`; throws ApiError (status 0 =
   * network). A 401 signs out. `opts.headers`: more request headers;
   * `opts.json`: the body as JSON text, sent as it is (instead of `body`).
   */
  async function request(method, path, body, opts = {}) {
    if (!token) throw new ApiError(401, 'unauthorized', 'not signed in');
    const sentWith = token;
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
    let res;
    let text;
    try {
      const headers = { ...(opts.headers || {}), Authorization: `Bearer ${token}`, Accept: 'application/json' };
      const init = { method, headers, cache: 'no-store', credentials: 'omit', signal: ctrl.signal };
      const json = opts.json !== undefined ? opts.json : body !== undefined ? JSON.stringify(body) : undefined;
      if (json !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = json;
      }
      res = await fetch(path, init);
      text = await res.text();
    } catch (e) {
      const msg = e && e.name === 'AbortError' ? 'the request timed out' : 'the API cannot be reached';
      throw new ApiError(0, 'network', msg);
    } finally {
      clearTimeout(timer);
    }
    if (token !== sentWith) throw new ApiError(0, 'signed_out', 'signed out meanwhile');
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    const err = data && typeof data === 'object' && data.error && typeof data.error === 'object' ? data.error : null;
    if (res.status === 401) {
      if (token === sentWith) signOut('The API refused the token (401). Sign in again.');
      throw new ApiError(401, (err && err.code) || 'unauthorized', (err && err.message) || 'unauthorized');
    }
    if (!res.ok) {
      throw new ApiError(res.status, (err && err.code) || `http_${res.status}`,
        (err && err.message) || `HTTP ${res.status} ${res.statusText || ''}`.trim());
    }
    return { status: res.status, data };
  }

  /** Calls the API; answers the body (see `request`). */
  async function api(method, path, body, opts) {
    return (await request(method, path, body, opts)).data;
  }

  // ------------------------------------------------------------ connection

  const conn = { lastOk: 0, error: null };
  function connOk() {
    conn.lastOk = Date.now();
    conn.error = null;
    renderConn();
  }
  function connError(e) {
    if (quiet(e)) return;
    conn.error = e instanceof ApiError ? e.message : String(e);
    renderConn();
  }
  function renderConn() {
    const el = $('conn-status');
    if (conn.error) {
      el.dataset.conn = 'error';
      setText(el, `Connection problem: ${conn.error} — retrying`);
    } else if (conn.lastOk) {
      el.dataset.conn = 'ok';
      setText(el, `Live · ${new Date(conn.lastOk).toLocaleTimeString([], { hour12: false })}`);
    }
  }

  // ---------------------------------------------------------------- pollers

  /** Runs fn now and then every `ms` after it finishes; never overlaps. */
  function poller(fn, ms) {
    let timer = null;
    let running = false;
    let again = false;
    let active = false;
    const p = {
      start() { active = true; p.kick(); },
      stop() { active = false; clearTimeout(timer); timer = null; again = false; },
      get active() { return active; },
      async kick() {
        if (!active) return;
        clearTimeout(timer);
        timer = null;
        if (running) { again = true; return; }
        running = true;
        try {
          await fn();
          connOk();
        } catch (e) {
          connError(e);
        } finally {
          running = false;
        }
        if (!active) return;
        if (again) { again = false; p.kick(); return; }
        timer = setTimeout(p.kick, ms);
      },
    };
    return p;
  }

  // ----------------------------------------------------------------- status

  const status = { counts: null, oldestAt: null };

  async function loadStatus() {
    const t0 = Date.now();
    const s = await api('GET', '/api/status');
    const t1 = Date.now();
    const serverTime = parseTime(s && s.time);
    if (serverTime !== null) skewMs = serverTime - (t0 + t1) / 2;
    renderStatus(s);
  }

  function renderStatus(s) {
    const w = (s && s.workers) || {};
    status.counts = w;
    for (const st of STATES) setText($(`status-${st}`), fmtNum(w[st] || 0));
    setText($('status-total'), fmtNum(w.total || 0));
    const q = (s && s.otp_queue) || {};
    setText($('status-otp-length'), fmtNum(q.length || 0));
    $('status-otp-length').parentElement.classList.toggle('has-items', (q.length || 0) > 0);
    status.oldestAt = parseTime(q.oldest_requested_at);
    if (status.oldestAt === null && typeof q.oldest_age_ms === 'number') status.oldestAt = serverNow() - q.oldest_age_ms;
    renderOldest();
    renderRange();
  }

  function renderOldest() {
    setText($('status-otp-oldest-age'), status.oldestAt === null ? '—' : fmtDuration(Math.max(0, serverNow() - status.oldestAt)));
  }

  // ---------------------------------------------------------------- workers

  const W = {
    filter: '',
    stack: [null], // cursors of the pages seen; the last is the current page
    next: null,
    rows: new Map(), // binding_id -> row refs
    order: [],
    selected: new Set(),
    loaded: false,
  };

  const workersKey = () => `${W.filter}|${W.stack[W.stack.length - 1] || ''}`;

  async function loadWorkers() {
    const key = workersKey();
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (W.filter) q.set('state', W.filter);
    const cursor = W.stack[W.stack.length - 1];
    if (cursor) q.set('cursor', cursor);
    const data = await api('GET', `/api/workers?${q}`);
    if (key !== workersKey()) return; // the page or filter changed meanwhile
    W.next = (data && data.next_cursor) || null;
    W.loaded = true;
    renderWorkers(Array.isArray(data && data.workers) ? data.workers : []);
  }

  /** Keyed, in-place update of a container's children. */
  function reconcile(container, items, keyOf, map, create, update) {
    const keep = new Set(items.map(keyOf));
    for (const [k, refs] of map) {
      if (!keep.has(k)) { refs.el.remove(); map.delete(k); }
    }
    let prev = null;
    for (const item of items) {
      const k = keyOf(item);
      let refs = map.get(k);
      if (!refs) { refs = create(item, k); map.set(k, refs); }
      update(refs, item);
      const want = prev ? prev.nextSibling : container.firstChild;
      if (want !== refs.el) container.insertBefore(refs.el, want);
      prev = refs.el;
    }
  }

  function stateBadge(el, state) {
    setText(el, state || '');
    const cls = `badge s-${state || 'unknown'}`;
    if (el.className !== cls) el.className = cls;
  }

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

  function renderWorkers(list) {
    W.order = list.map((w) => w.binding_id);
    reconcile($('workers-tbody'), list, (w) => w.binding_id, W.rows, createWorkerRow, updateWorkerRow);
    $('workers-table').classList.remove('loading');
    show($('workers-empty'), list.length === 0);
    setText($('workers-empty'), W.filter ? `No ${W.filter} workers${W.stack.length > 1 ? ' on this page' : ''}.` : `No workers${W.stack.length > 1 ? ' on this page' : ''}.`);
    renderPager();
    renderSelection();
  }

  function renderPager() {
    renderPagerOf('workers', W);
    renderRange();
  }

  function renderRange() {
    const shown = (W.stack.length - 1) * PAGE_SIZE + W.order.length;
    const counts = status.counts;
    const total = counts ? (W.filter ? counts[W.filter] : counts.total) : null;
    let text = pageRange(W);
    if (text && typeof total === 'number') text += ` of ${fmtNum(Math.max(total, shown))}`;
    if (text) text += W.filter ? ` ${W.filter} workers` : ' workers';
    setText($('workers-range'), text);
  }

  function toggleSelected(id, on) {
    if (on) W.selected.add(id); else W.selected.delete(id);
    const r = W.rows.get(id);
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
    const onPage = W.order.filter((id) => W.selected.has(id)).length;
    const all = $('workers-select-page');
    all.checked = W.order.length > 0 && onPage === W.order.length;
    all.indeterminate = onPage > 0 && onPage < W.order.length;
    const hidden = n - onPage;
    setAttr($('workers-selected-count').parentElement, 'title', hidden > 0 ? `${hidden} selected on other pages or filtered out` : null);
  }

  function setFilter(state) {
    if (state === W.filter && W.stack.length === 1) return;
    W.filter = state;
    $('workers-state-filter').value = state;
    for (const b of document.querySelectorAll('[data-filter-state]')) {
      b.classList.toggle('active', b.dataset.filterState === state);
    }
    W.stack = [null];
    W.next = null;
    W.loaded = false;
    $('workers-table').classList.add('loading');
    renderPager();
    pollers.workers.kick();
  }

  function gotoPage(delta) {
    if (!turnPage(W, delta)) return;
    $('workers-table').classList.add('loading');
    renderPager();
    pollers.workers.kick();
  }

  const verb = { pause: 'Pause', resume: 'Resume', stop: 'Stop' };
  const done = { pause: 'Paused', resume: 'Resumed', stop: 'Stop requested for' };

  async function workerAction(id, action, button, msgEl) {
    const msg = msgEl || $('workers-message');
    const r = W.rows.get(id);
    if (r) r.el.dataset.busy = '1';
    if (button) button.disabled = true;
    try {
      const w = await api('POST', `/api/workers/${encodeURIComponent(id)}/${action}`);
      const rr = W.rows.get(id);
      if (rr) { delete rr.el.dataset.busy; if (w && w.binding_id === id) updateWorkerRow(rr, w); }
      if (D.id === id && w && w.binding_id === id) renderDetailWorker(w);
      flash(msg, `${done[action]} ${id}${w && w.state ? ` (now ${w.state})` : ''}.`, 'ok');
    } catch (e) {
      if (!quiet(e)) flash(msg, `${verb[action]} ${id}: ${e.message}`, 'error');
    } finally {
      const rr = W.rows.get(id);
      if (rr) { delete rr.el.dataset.busy; if (rr.worker) updateWorkerRow(rr, rr.worker); }
      if (button && !W.rows.has(id)) button.disabled = false;
      pollers.workers.kick();
      pollers.status.kick();
      if (D.id) pollers.detail.kick();
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
      pollers.workers.kick();
      pollers.status.kick();
    }
  }

  // ----------------------------------------------------------- start form

  async function submitStart(ev) {
    ev.preventDefault();
    const err = $('start-error');
    const ok = $('start-result');
    flash(err, '', '');
    flash(ok, '', '');
    delete err.dataset.errorCode;
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
      if (!quiet(e)) {
        flash(err, e.message, 'error');
        err.dataset.errorCode = e.code || '';
      }
    } finally {
      btn.disabled = false;
      pollers.workers.kick();
      pollers.status.kick();
    }
  }

  // ------------------------------------------------------------ OTP inbox

  const O = {
    rows: new Map(), // transaction_id -> row refs
    submitted: new Map(), // transaction_id -> when it was accepted (hidden from later polls)
  };
  const GONE_KEEP_MS = 10000;

  async function loadOtp() {
    const data = await api('GET', '/api/otp');
    renderOtp(Array.isArray(data && data.items) ? data.items : []);
  }

  function createOtpRow(item, tx) {
    const r = { tx, goneAt: null, hasError: false };
    r.txEl = h('span', { class: 'otp-tx', 'data-testid': 'otp-transaction-id', title: tx, text: tx });
    r.bindingLink = h('a', { 'data-testid': 'otp-binding-id' });
    r.left = h('span', { class: 'otp-left', 'data-testid': 'otp-time-left' });
    r.input = h('input', {
      type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{4,8}', maxlength: '8',
      placeholder: '4-8 digits', spellcheck: 'false', 'aria-label': `OTP for ${tx}`,
      'data-testid': 'otp-input', 'data-transaction-id': tx,
    });
    r.submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'otp-submit', 'data-transaction-id': tx, text: 'Submit' });
    r.error = h('p', { class: 'msg msg-error otp-error', 'data-testid': 'otp-error', 'data-transaction-id': tx, role: 'alert', hidden: true });
    r.form = h('form', { class: 'otp-form', 'data-testid': 'otp-form', 'data-needs': 'otp.submit', novalidate: true, autocomplete: 'off' }, r.input, r.submit);
    r.form.addEventListener('submit', (ev) => { ev.preventDefault(); submitOtp(r); });
    r.input.addEventListener('input', () => {
      if (r.hasError && !r.goneAt) { r.hasError = false; show(r.error, false); }
    });
    r.el = h('li', { class: 'otp-row', 'data-testid': 'otp-row', 'data-transaction-id': tx },
      h('div', { class: 'otp-meta' }, r.txEl, h('span', { class: 'otp-binding' }, 'binding ', r.bindingLink)),
      r.left, r.form, r.error);
    return r;
  }

  function updateOtpRow(r, item) {
    setAttr(r.el, 'data-binding-id', item.binding_id);
    setText(r.bindingLink, item.binding_id);
    setAttr(r.bindingLink, 'href', `#/workers/${encodeURIComponent(item.binding_id || '')}`);
    r.expiresAt = parseTime(item.expires_at);
    setAttr(r.left, 'title', item.expires_at ? `expires at ${item.expires_at}` : null);
    renderOtpLeft(r);
  }

  function renderOtpLeft(r) {
    if (r.goneAt) { setText(r.left, 'no longer waiting'); r.left.className = 'otp-left'; return; }
    if (r.expiresAt === null || r.expiresAt === undefined) { setText(r.left, ''); return; }
    const left = r.expiresAt - serverNow();
    setText(r.left, fmtCountdown(left));
    const cls = `otp-left${left <= 15000 ? ' urgent' : left <= 60000 ? ' soon' : ''}`;
    if (r.left.className !== cls) r.left.className = cls;
  }

  function markGone(r) {
    r.goneAt = Date.now();
    r.el.classList.add('gone');
    r.input.disabled = true;
    r.submit.disabled = true;
    renderOtpLeft(r);
  }

  function renderOtp(items) {
    const now = Date.now();
    for (const [tx, t] of O.submitted) if (now - t > 120000) O.submitted.delete(tx);
    items = items.filter((i) => i && i.transaction_id && !O.submitted.has(i.transaction_id));
    const live = new Set(items.map((i) => i.transaction_id));
    const list = $('otp-list');
    // Rows that left the queue: gone at once, unless they show an error the
    // operator has to be able to read; those stay a while, greyed out.
    for (const [tx, r] of O.rows) {
      if (live.has(tx)) {
        if (r.goneAt) { r.goneAt = null; r.el.classList.remove('gone'); r.input.disabled = false; r.submit.disabled = false; }
        continue;
      }
      if (r.hasError && !r.goneAt) markGone(r);
      if (!r.hasError || (r.goneAt && now - r.goneAt > GONE_KEEP_MS)) { r.el.remove(); O.rows.delete(tx); }
    }
    let prev = null;
    for (const item of items) {
      const tx = item.transaction_id;
      let r = O.rows.get(tx);
      if (!r) { r = createOtpRow(item, tx); O.rows.set(tx, r); }
      updateOtpRow(r, item);
      let want = prev ? prev.nextSibling : list.firstChild;
      while (want && want !== r.el && O.rows.get(want.dataset.transactionId)?.goneAt) want = want.nextSibling;
      if (want !== r.el) list.insertBefore(r.el, want);
      prev = r.el;
    }
    const n = items.length;
    setText($('otp-count'), fmtNum(n));
    $('otp-count').classList.toggle('has-items', n > 0);
    show($('otp-empty'), O.rows.size === 0);
  }

  async function submitOtp(r) {
    if (r.busy || r.goneAt) return;
    const otp = r.input.value.trim();
    r.busy = true;
    r.submit.disabled = true;
    r.hasError = false;
    show(r.error, false);
    try {
      await api('POST', `/api/otp/${encodeURIComponent(r.tx)}`, { otp });
      O.submitted.set(r.tx, Date.now());
      r.el.remove();
      O.rows.delete(r.tx);
      show($('otp-empty'), O.rows.size === 0);
      const n = [...O.rows.values()].filter((x) => !x.goneAt).length;
      setText($('otp-count'), fmtNum(n));
      $('otp-count').classList.toggle('has-items', n > 0);
      flash($('otp-message'), `OTP submitted for ${r.tx}.`, 'ok');
      pollers.status.kick();
      if (D.id) pollers.detail.kick();
    } catch (e) {
      if (quiet(e)) return;
      r.hasError = true;
      setText(r.error, e.message);
      r.error.dataset.errorCode = e.code || '';
      show(r.error, true);
      r.input.focus();
      r.input.select();
      if (e.status === 404 || e.status === 409) pollers.otp.kick();
    } finally {
      r.busy = false;
      if (!r.goneAt) r.submit.disabled = false;
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

  /** A span the ticker keeps as "in 59m" / "3s ago" ("due 3s ago" when `due`). */
  function relSpan(at, due) {
    const t = parseTime(at);
    return h('span', { 'data-rel-at': t === null ? '' : String(t), 'data-due': due ? '1' : null, class: 'rel' }, fmtRelative(t, due));
  }

  function kv(dl, pairs) {
    if (!pairs) {
      dl.replaceChildren(h('dt', { class: 'none', text: 'none' }));
      return;
    }
    const nodes = [];
    for (const [label, value, opts] of pairs) {
      const dd = h('dd', { class: opts && opts.mono ? 'mono' : null, title: opts && opts.title, 'data-field': opts && opts.field });
      if (value instanceof Node) dd.append(value); else dd.textContent = dash(value);
      nodes.push(h('dt', { text: label }), dd);
    }
    dl.replaceChildren(...nodes);
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

  function took(a, b) {
    const ta = parseTime(a);
    const tb = parseTime(b);
    if (ta === null || tb === null) return '—';
    const ms = tb - ta;
    return ms < 1000 ? `${ms} ms` : fmtDuration(ms);
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

  function prettyJson(v) {
    if (v === null || v === undefined) return '—';
    if (typeof v === 'string') {
      try { return JSON.stringify(JSON.parse(v), null, 2); } catch (_) { return v; }
    }
    return JSON.stringify(v, null, 2);
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
    showView('detail', id);
    window.scrollTo(0, 0);
  }

  function openList() {
    D.id = null;
    showView('workers');
  }

  // ----------------------------------------------------------------- sagas

  /** Cursor paging (`{stack, next, loaded}`): Next pushes `next`, Prev pops. False when it cannot move. */
  function turnPage(p, delta) {
    if (delta > 0) {
      if (!p.next) return false;
      p.stack.push(p.next);
    } else {
      if (p.stack.length <= 1) return false;
      p.stack.pop();
    }
    p.next = null;
    p.loaded = false;
    return true;
  }

  /** The `<prefix>-prev`, `<prefix>-next` and `<prefix>-page` of a cursor-paged list. */
  function renderPagerOf(prefix, p) {
    $(`${prefix}-prev`).disabled = p.stack.length <= 1;
    $(`${prefix}-next`).disabled = !p.next;
    setText($(`${prefix}-page`), `Page ${p.stack.length}`);
  }

  const currentCursor = (p) => p.stack[p.stack.length - 1];

  /** "51–100" for the page of list state `p` (its `order`, `stack`, `loaded`); "" before it loads or when empty. */
  function pageRange(p) {
    const n = p.order.length;
    const first = (p.stack.length - 1) * PAGE_SIZE;
    return p.loaded && n ? `${fmtNum(first + 1)}–${fmtNum(first + n)}` : '';
  }

  /** A filter's `<select>`: "all" (value "") and `values` sorted, keeping `current` chosen (and listed). */
  function setOptions(sel, values, current) {
    const list = [...new Set(values)].sort();
    if (current && !list.includes(current)) list.push(current);
    if ([...sel.options].map((o) => o.value).join('\n') !== ['', ...list].join('\n')) {
      sel.replaceChildren(h('option', { value: '', text: 'all' }), ...list.map((v) => h('option', { value: v, text: v })));
    }
    if (sel.value !== current) sel.value = current;
  }

  /** "850 ms" under a second, else "1m 05s". */
  const fmtMs = (ms) => (ms === null || ms === undefined ? '—' : ms < 1000 ? `${ms} ms` : fmtDuration(ms));

  /** An object for a cell: `key: value · key: value` (values as JSON unless strings); "—" for nothing. */
  function compactJson(v) {
    if (v === null || v === undefined) return '—';
    if (typeof v !== 'object' || Array.isArray(v)) return typeof v === 'string' ? v : JSON.stringify(v);
    const parts = Object.entries(v).map(([k, x]) => `${k}: ${typeof x === 'string' ? x : JSON.stringify(x)}`);
    return parts.length ? parts.join(' · ') : '—';
  }

  /** A badge's colour for an event type (saga history and outbox). */
  function eventTone(type) {
    const t = String(type || '');
    if (/fail|deny/.test(t)) return 'err';
    if (/retry/.test(t)) return 'warn';
    if (/cancel|expire|compensat|rollback/.test(t)) return 'orange';
    if (/complete|settle|commit/.test(t)) return 'ok';
    return 'none';
  }

  function toneBadge(el, text, tone) {
    setText(el, text || '');
    const cls = `badge tone-${tone}`;
    if (el.className !== cls) el.className = cls;
  }

  // The list: one page, keyed by saga id.
  const S = {
    status: '',
    definition: '',
    stack: [null],
    next: null,
    rows: new Map(), // saga id -> row refs
    order: [],
    loaded: false,
    definitions: null, // the stored definitions, once loaded
  };

  const sagasKey = () => `${S.status}|${S.definition}|${currentCursor(S) || ''}`;

  /** `GET /api/saga-definitions`: the definition filter's names and the event types they emit. */
  async function loadDefinitions() {
    const data = await api('GET', '/api/saga-definitions');
    S.definitions = Array.isArray(data && data.definitions) ? data.definitions : [];
    setOptions($('sagas-definition-filter'), S.definitions.map((d) => d.name).filter(Boolean), S.definition);
    for (const d of S.definitions) {
      for (const t of Object.values((d && d.events) || {})) addEventType(t);
      for (const st of (d && d.steps) || []) if (st && st.emit) addEventType(st.emit);
    }
  }

  /** The definitions, once per opening of a view (a failure only leaves the filters as they are). */
  async function ensureDefinitions() {
    if (S.definitions) return;
    try {
      await loadDefinitions();
    } catch (e) {
      if (quiet(e)) throw e;
    }
  }

  async function loadSagas() {
    const key = sagasKey();
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (S.status) q.set('status', S.status);
    if (S.definition) q.set('definition', S.definition);
    const cursor = currentCursor(S);
    if (cursor) q.set('cursor', cursor);
    const [data] = await Promise.all([api('GET', `/api/sagas?${q}`), ensureDefinitions()]);
    if (key !== sagasKey()) return; // the page or a filter changed meanwhile
    S.next = (data && data.next_cursor) || null;
    S.loaded = true;
    renderSagas(Array.isArray(data && data.sagas) ? data.sagas : []);
  }

  function createSagaRow(s, id) {
    const r = {};
    r.link = h('a', { href: `#/sagas/${encodeURIComponent(id)}`, class: 'cell-id', 'data-testid': 'saga-link', text: id });
    r.status = h('span', { class: 'badge', 'data-testid': 'saga-status' });
    r.definition = h('td', { 'data-testid': 'saga-definition' });
    r.current = h('td', { class: 'mono', 'data-testid': 'saga-current-step' });
    r.progress = h('td', { class: 'num', 'data-testid': 'saga-progress' });
    r.reason = h('td', { class: 'ellip', 'data-testid': 'saga-reason' });
    r.created = h('td', { 'data-testid': 'saga-created' });
    r.updated = h('td', { 'data-testid': 'saga-updated' });
    r.el = h('tr', { 'data-testid': 'saga-row', 'data-saga-id': id },
      h('td', null, r.link), r.definition, h('td', null, r.status), r.current, r.progress, r.reason, r.created, r.updated);
    return r;
  }

  function updateSagaRow(r, s) {
    setAttr(r.el, 'data-status', s.status);
    setAttr(r.el, 'data-definition', s.definition);
    stateBadge(r.status, s.status);
    setText(r.definition, `${dash(s.definition)}${s.version ? ` v${s.version}` : ''}`);
    setText(r.current, dash(s.current_step));
    const steps = Array.isArray(s.steps) ? s.steps : [];
    setText(r.progress, steps.length ? `${steps.filter((x) => x.status === 'completed').length}/${steps.length}` : '—');
    setText(r.reason, dash(s.reason));
    setAttr(r.reason, 'title', s.reason || null);
    r.reason.classList.toggle('reason', s.status === 'failed');
    r.reason.classList.toggle('dim', !s.reason);
    setText(r.created, fmtClock(s.created_at));
    setAttr(r.created, 'title', s.created_at || null);
    setText(r.updated, fmtClock(s.updated_at));
    setAttr(r.updated, 'title', s.updated_at || null);
  }

  function renderSagas(list) {
    S.order = list.map((s) => s.id);
    reconcile($('sagas-tbody'), list, (s) => s.id, S.rows, createSagaRow, updateSagaRow);
    $('sagas-table').classList.remove('loading');
    show($('sagas-empty'), list.length === 0);
    setText($('sagas-empty'), `No ${sagasWhat()}sagas${S.stack.length > 1 ? ' on this page' : ''}.`);
    renderSagasPager();
  }

  /** "waiting checkout " for the filters in force ("" for none). */
  const sagasWhat = () => [S.status, S.definition].filter(Boolean).map((x) => `${x} `).join('');

  function renderSagasPager() {
    renderPagerOf('sagas', S);
    const range = pageRange(S);
    setText($('sagas-range'), range && `${range} ${sagasWhat()}sagas`);
  }

  /** A new filter or page: back to a loading state and fetch it now. */
  function reloadSagas() {
    S.loaded = false;
    $('sagas-table').classList.add('loading');
    renderSagasPager();
    pollers.sagas.kick();
  }

  function setSagaFilter(field, value) {
    if (S[field] === value && S.stack.length === 1) return;
    S[field] = value;
    S.stack = [null];
    S.next = null;
    reloadSagas();
  }

  // One saga: its fields, steps and history.
  const G = {
    id: null,
    saga: null,
    stepRows: new Map(), // step name -> row refs
    eventRows: new Map(), // seq -> row refs
    busy: false, // an operator's action is under way
  };

  async function loadSaga() {
    const id = G.id;
    if (!id) return;
    const enc = encodeURIComponent(id);
    const [s, ev] = await Promise.allSettled([api('GET', `/api/sagas/${enc}`), api('GET', `/api/sagas/${enc}/events`)]);
    if (G.id !== id) return;
    if (s.status === 'rejected') {
      const e = s.reason;
      if (e && e.status === 404) {
        flash($('saga-detail-error'), e.message || `No saga ${id}.`, 'error');
        showSagaPanels(false);
        stateBadge($('saga-detail-status'), '');
        renderRollback(null);
        return;
      }
      throw e;
    }
    show($('saga-detail-error'), false);
    showSagaPanels(true);
    renderSaga(s.value);
    if (ev.status === 'fulfilled') renderHistory(ev.value);
    else throw ev.reason;
  }

  function showSagaPanels(on) {
    for (const id of ['saga-detail-body', 'saga-steps-panel', 'saga-history-panel']) show($(id), on);
  }


  function renderSaga(s) {
    G.saga = s;
    setText($('saga-detail-id'), s.id);
    stateBadge($('saga-detail-status'), s.status);
    kv($('saga-detail-fields'), [
      ['definition', `${dash(s.definition)}${s.version ? ` v${s.version}` : ''}`, { field: 'definition' }],
      ['status', s.status, { field: 'status' }],
      ['reason', s.reason, { field: 'reason' }],
      ['current_step', s.current_step, { field: 'current_step', mono: true }],
      ['correlation_id', s.correlation_id, { field: 'correlation_id', mono: true }],
      ['can_roll_back', s.can_roll_back ? 'yes' : 'no', { field: 'can_roll_back' }],
      ['deadline_at', s.deadline_at ? h('span', null, `${fmtClock(s.deadline_at)} (`, relSpan(s.deadline_at), ')') : null, { title: s.deadline_at, field: 'deadline_at' }],
      ['created_at', fmtClock(s.created_at), { title: s.created_at, field: 'created_at' }],
      ['updated_at', fmtClock(s.updated_at), { title: s.updated_at, field: 'updated_at' }],
    ]);
    setText($('saga-detail-input'), prettyJson(s.input));
    setText($('saga-detail-output'), prettyJson(s.output));
    setText($('saga-detail-json'), JSON.stringify(s, null, 2));
    const steps = Array.isArray(s.steps) ? s.steps : [];
    reconcile($('saga-steps-tbody'), steps, (st) => st.name, G.stepRows, createStepRow, updateStepRow);
    renderRollback(s);
  }

  /** Rollback applies when the engine says so (`can_roll_back`); the console never decides it. */
  function renderRollback(s) {
    const on = Boolean(s && s.can_roll_back) && !G.busy;
    $('saga-rollback').disabled = !on;
    $('saga-rollback-reason').disabled = !on;
    setAttr($('saga-rollback-form'), 'title', s && !s.can_roll_back
      ? `Rollback does not apply now: the saga is ${s.status}${s.status === 'waiting' || s.status === 'running' ? ' past its pivot step' : ''}.`
      : null);
  }

  /**
   * Whether this step holds the saga, so that retrying it applies: the saga
   * is `failed` and the step (its action or its compensation) failed. The
   * saga's `current_step` names the holder; the API's 409 says the rest.
   */
  function holdsSaga(s, st) {
    if (!s || s.status !== 'failed') return false;
    if (s.current_step && s.current_step !== st.name) return false;
    return st.status === 'failed' || Boolean(st.compensation && st.compensation.status === 'failed');
  }

  function createStepRow(st, name) {
    const r = {};
    r.cells = {};
    for (const f of ['index', 'name', 'attempts', 'duration', 'started', 'error']) {
      r.cells[f] = h('td', { 'data-testid': `step-${f}` });
    }
    for (const f of ['index', 'attempts', 'duration']) r.cells[f].className = 'num';
    r.cells.name.className = 'mono';
    r.cells.error.className = 'ellip';
    r.status = h('span', { class: 'badge', 'data-testid': 'step-status' });
    r.compStatus = h('span', { class: 'badge', 'data-testid': 'step-compensation-status' });
    r.compAttempts = h('span', { class: 'muted', 'data-testid': 'step-compensation-attempts' });
    r.compError = h('span', { class: 'mono ellip', 'data-testid': 'step-compensation-error' });
    r.comp = h('span', { class: 'last' }, r.compStatus, r.compAttempts, r.compError);
    r.outPre = h('pre');
    r.out = h('details', { class: 'payload', 'data-testid': 'step-output' }, h('summary', { text: 'view' }), r.outPre);
    r.noOut = h('span', { class: 'dim', text: '—' });
    r.outCell = h('td', { class: 'wrap' }, r.out, r.noOut);
    r.retry = h('button', { type: 'button', class: 'btn btn-xs', 'data-testid': 'step-retry', 'data-needs': 'sagas.retry', 'data-step': name, 'aria-label': `Retry ${name}`, text: 'Retry', hidden: true });
    r.retry.addEventListener('click', () => retryStep(name, r.retry));
    r.el = h('tr', { 'data-testid': 'saga-step-row', 'data-step': name },
      r.cells.index, r.cells.name, h('td', null, r.status), r.cells.attempts, r.cells.duration, r.cells.started, r.cells.error,
      h('td', { 'data-testid': 'step-compensation' }, r.comp), r.outCell,
      h('td', { class: 'col-actions' }, r.retry));
    return r;
  }

  function updateStepRow(r, st) {
    const s = G.saga;
    const i = s && Array.isArray(s.steps) ? s.steps.indexOf(st) : -1;
    setText(r.cells.index, i >= 0 ? i + 1 : '');
    setText(r.cells.name, st.name);
    setAttr(r.el, 'data-status', st.status);
    stateBadge(r.status, st.status);
    setText(r.cells.attempts, fmtNum(st.attempts));
    const started = parseTime(st.started_at);
    const open = st.duration_ms === null || st.duration_ms === undefined;
    setText(r.cells.duration, !open ? fmtMs(st.duration_ms)
      : started !== null && (st.status === 'running' || st.status === 'waiting') ? `${fmtDuration(Math.max(0, serverNow() - started))}…` : '—');
    setAttr(r.cells.duration, 'title', st.ended_at ? `ended ${st.ended_at}` : null);
    setText(r.cells.started, fmtClock(st.started_at));
    setAttr(r.cells.started, 'title', st.started_at || null);
    setText(r.cells.error, dash(st.error));
    setAttr(r.cells.error, 'title', st.error || null);
    r.cells.error.classList.toggle('reason', Boolean(st.error));
    const c = st.compensation;
    setAttr(r.el, 'data-compensation-status', c ? c.status : null);
    stateBadge(r.compStatus, c ? c.status : '');
    setText(r.compAttempts, c ? `${fmtNum(c.attempts)} att.` : '—');
    setAttr(r.compAttempts, 'title', c ? `${c.attempts} attempt${c.attempts === 1 ? '' : 's'} of the compensation` : null);
    setText(r.compError, c ? c.error || '' : '');
    setAttr(r.compError, 'title', (c && c.error) || null);
    r.compError.classList.toggle('reason', Boolean(c && c.error));
    const hasOut = st.output !== null && st.output !== undefined;
    show(r.out, hasOut);
    show(r.noOut, !hasOut);
    setText(r.outPre, hasOut ? prettyJson(st.output) : '');
    const held = holdsSaga(s, st);
    show(r.retry, held);
    r.retry.disabled = G.busy;
    const what = st.status === 'failed' ? st.name : `${st.name}'s compensation`;
    setText(r.retry, st.status === 'failed' ? 'Retry' : 'Retry compensation');
    setAttr(r.retry, 'aria-label', `Retry ${what}`);
    setAttr(r.retry, 'title', held ? `Run ${what} again with fresh attempts` : null);
  }

  function createHistoryRow(ev, key) {
    const r = {};
    r.seq = h('td', { class: 'num', 'data-testid': 'saga-event-seq' });
    r.time = h('td', { 'data-testid': 'saga-event-time' });
    r.type = h('span', { class: 'badge', 'data-testid': 'saga-event-type' });
    r.step = h('td', { class: 'mono', 'data-testid': 'saga-event-step' });
    r.data = h('td', { class: 'mono data-cell', 'data-testid': 'saga-event-data' });
    r.el = h('tr', { 'data-testid': 'saga-event-row', 'data-seq': key }, r.seq, r.time, h('td', null, r.type), r.step, r.data);
    return r;
  }

  function updateHistoryRow(r, ev) {
    setAttr(r.el, 'data-type', ev.type);
    setAttr(r.el, 'data-step', ev.step || null);
    setText(r.seq, ev.seq);
    setText(r.time, fmtClock(ev.at));
    setAttr(r.time, 'title', ev.at || null);
    toneBadge(r.type, ev.type, eventTone(ev.type));
    setText(r.step, dash(ev.step));
    setText(r.data, compactJson(ev.data));
  }

  function renderHistory(data) {
    const events = Array.isArray(data && data.events) ? data.events : [];
    reconcile($('saga-history-tbody'), events, (ev) => String(ev.seq), G.eventRows, createHistoryRow, updateHistoryRow);
    show($('saga-history-empty'), events.length === 0);
    setText($('saga-history-count'), fmtNum(events.length));
  }

  /** Runs an operator's saga action; the answer (202: the saga) is shown at once. */
  async function sagaAction(path, body, label, button) {
    const id = G.id;
    const msg = $('saga-detail-message');
    delete msg.dataset.errorCode;
    G.busy = true;
    if (button) button.disabled = true;
    renderRollback(G.saga);
    try {
      const s = await api('POST', `/api/sagas/${encodeURIComponent(id)}/${path}`, body);
      if (G.id === id && s && s.id === id) renderSaga(s);
      flash(msg, `${label} for ${id}${s && s.status ? ` (now ${s.status})` : ''}.`, 'ok');
      return true;
    } catch (e) {
      if (!quiet(e)) {
        flash(msg, `${label}: ${e.message}`, 'error');
        msg.dataset.errorCode = e.code || '';
      }
      return false;
    } finally {
      G.busy = false;
      if (G.saga && G.id === id) renderSaga(G.saga);
      pollers.saga.kick();
    }
  }

  async function submitRollback(ev) {
    ev.preventDefault();
    const input = $('saga-rollback-reason');
    const reason = input.value.trim();
    if (!G.id || G.busy) return;
    if (!reason) {
      flash($('saga-detail-message'), 'Enter a reason for the rollback.', 'error');
      input.focus();
      return;
    }
    if (await sagaAction('rollback', { reason }, 'Rollback requested', $('saga-rollback'))) input.value = '';
  }

  function retryStep(step, button) {
    if (!G.id || G.busy) return;
    sagaAction(`steps/${encodeURIComponent(step)}/retry`, undefined, `Retry of ${step} requested`, button);
  }

  // ------------------------------------------------------- the event stream

  const EVENTS_KEEP = 500; // the newest events kept on the page
  const EVENTS_PAGE = 500; // per request
  const EVENTS_PAGES_PER_POLL = 10; // catching up a long outbox: at most this many requests per poll
  const EVENT_TYPES = ['committed', 'settled', 'cancelled', 'expired', 'transfer.completed', 'transfer.failed'];

  const E = {
    type: '',
    after: 0, // the outbox's `next_after`: everything up to it has been read
    list: [], // oldest first, the newest EVENTS_KEEP
    rows: new Map(), // seq -> row refs
    caughtUp: false,
    gen: 0, // bumped when the filter changes: answers to an older one are dropped
    types: new Set(EVENT_TYPES),
  };

  function addEventType(t) {
    if (typeof t !== 'string' || !t || E.types.has(t)) return;
    E.types.add(t);
    renderEventTypes();
  }

  function renderEventTypes() {
    setOptions($('events-type-filter'), [...E.types], E.type);
  }

  async function loadEvents() {
    const gen = E.gen;
    await ensureDefinitions();
    let got = 0;
    for (let i = 0; i < EVENTS_PAGES_PER_POLL; i++) {
      const q = new URLSearchParams({ after: String(E.after), limit: String(EVENTS_PAGE) });
      if (E.type) q.set('type', E.type);
      const data = await api('GET', `/api/events?${q}`);
      if (gen !== E.gen) return; // the filter changed meanwhile
      const events = Array.isArray(data && data.events) ? data.events : [];
      const before = E.after;
      for (const ev of events) {
        if (typeof ev.seq === 'number' && ev.seq > E.after) {
          E.list.push(ev);
          addEventType(ev.type);
        }
      }
      const next = Number(data && data.next_after);
      const last = events.length ? events[events.length - 1].seq : before;
      E.after = Math.max(before, Number.isFinite(next) ? next : 0, typeof last === 'number' ? last : 0);
      got += events.length;
      if (events.length < EVENTS_PAGE || E.after === before) { E.caughtUp = true; break; }
      E.caughtUp = false;
    }
    if (E.list.length > EVENTS_KEEP) E.list.splice(0, E.list.length - EVENTS_KEEP);
    if (got || !E.rendered) renderEvents();
    renderEventsFollow();
  }

  function createEventRow(ev, key) {
    const r = {};
    r.seq = h('td', { class: 'num', 'data-testid': 'event-seq' });
    r.time = h('td', { 'data-testid': 'event-time' });
    r.type = h('span', { class: 'badge', 'data-testid': 'event-type' });
    r.subject = h('td', { class: 'mono', 'data-testid': 'event-subject' });
    r.definition = h('td', { 'data-testid': 'event-definition' });
    r.data = h('td', { class: 'mono data-cell', 'data-testid': 'event-data' });
    r.el = h('tr', { 'data-testid': 'event-row', 'data-seq': key }, r.seq, r.time, h('td', null, r.type), r.subject, r.definition, r.data);
    return r;
  }

  function updateEventRow(r, ev) {
    setAttr(r.el, 'data-type', ev.type);
    setAttr(r.el, 'data-saga-id', ev.saga_id || null);
    setAttr(r.el, 'data-receipt-code', ev.receipt_code || null);
    setText(r.seq, ev.seq);
    setText(r.time, fmtClock(ev.at));
    setAttr(r.time, 'title', ev.at || null);
    toneBadge(r.type, ev.type, eventTone(ev.type));
    if (!r.subject.firstChild) {
      r.subject.append(ev.saga_id
        ? h('a', { href: `#/sagas/${encodeURIComponent(ev.saga_id)}`, title: `saga ${ev.saga_id}`, text: ev.saga_id })
        : ev.receipt_code
          ? h('a', { href: `#/transfers/${encodeURIComponent(ev.receipt_code)}`, title: `transfer ${ev.receipt_code}`, text: ev.receipt_code })
          : h('span', { text: '—' }));
    }
    setText(r.definition, dash(ev.definition));
    setText(r.data, compactJson(ev.data));
  }

  function renderEvents() {
    E.rendered = true;
    const newestFirst = E.list.slice().reverse();
    reconcile($('events-tbody'), newestFirst, (ev) => String(ev.seq), E.rows, createEventRow, updateEventRow);
    show($('events-empty'), newestFirst.length === 0);
    setText($('events-empty'), E.type ? `No ${E.type} events yet.` : 'No events yet.');
    setText($('events-count'), fmtNum(newestFirst.length));
    setAttr($('events-count'), 'title', E.list.length >= EVENTS_KEEP ? `the newest ${EVENTS_KEEP} are shown` : null);
  }

  function renderEventsFollow() {
    setText($('events-follow'), E.caughtUp ? `Following · after seq ${fmtNum(E.after)}` : `Catching up · seq ${fmtNum(E.after)}…`);
  }

  function setEventType(type) {
    if (type === E.type) return;
    E.type = type;
    E.gen += 1;
    resetEvents();
    pollers.events.kick();
  }

  function resetEvents() {
    E.after = 0;
    E.list = [];
    E.rows.clear();
    E.caughtUp = false;
    E.rendered = false;
    $('events-tbody').replaceChildren();
    setText($('events-count'), '0');
    setText($('events-follow'), '');
  }

  // ----------------------------------------------------------------- views

  // Each view: its element, its poller and its tab. Only the open view polls.
  const VIEWS = {
    workers: { el: 'workers-view', poller: 'workers', tab: 'workers' },
    detail: { el: 'detail-view', poller: 'detail', tab: 'workers' },
    sagas: { el: 'sagas-view', poller: 'sagas', tab: 'sagas' },
    saga: { el: 'saga-detail-view', poller: 'saga', tab: 'sagas' },
    events: { el: 'events-view', poller: 'events', tab: 'events' },
  };
  let view = null;

  function showView(name, title) {
    const v = VIEWS[name];
    for (const [k, o] of Object.entries(VIEWS)) {
      if (k === name) continue;
      pollers[o.poller].stop();
      show($(o.el), false);
    }
    show($(v.el), true);
    for (const t of document.querySelectorAll('[data-view-tab]')) setAttr(t, 'aria-current', t.dataset.viewTab === v.tab ? 'page' : null);
    // Side panels belong to tabs (`data-side-tabs`); the OTP inbox stays in every view.
    for (const p of document.querySelectorAll('[data-side-tabs]')) show(p, p.dataset.sideTabs.split(' ').includes(v.tab));
    $('status').classList.toggle('off-view', v.tab !== 'workers');
    document.title = title ? `${title} · Stepwise console` : 'Stepwise console';
    view = name;
    pollers[v.poller].start();
  }

  function openSagas() {
    G.id = null;
    S.definitions = null; // new definitions may have been posted meanwhile
    showView('sagas', 'Sagas');
  }

  function openSaga(id) {
    if (G.id !== id) {
      G.id = id;
      G.saga = null;
      G.busy = false;
      for (const m of [G.stepRows, G.eventRows]) m.clear();
      for (const el of ['saga-steps-tbody', 'saga-history-tbody', 'saga-detail-fields']) $(el).replaceChildren();
      for (const el of ['saga-detail-input', 'saga-detail-output', 'saga-detail-json', 'saga-history-count']) setText($(el), '');
      setText($('saga-detail-id'), id);
      stateBadge($('saga-detail-status'), '');
      $('saga-rollback-reason').value = '';
      renderRollback(null);
      flash($('saga-detail-message'), '', '');
      show($('saga-detail-error'), false);
      show($('saga-history-empty'), false);
    }
    showView('saga', id);
    window.scrollTo(0, 0);
  }

  function openEvents() {
    G.id = null;
    S.definitions = null;
    showView('events', 'Events');
  }

  function decodeHashPart(s) {
    try { return decodeURIComponent(s); } catch (_) { return s; }
  }

  function route() {
    if (!token) return;
    const hash = location.hash;
    let m;
    if ((m = /^#\/workers\/(.+)$/.exec(hash))) openDetail(decodeHashPart(m[1]));
    else if ((m = /^#\/sagas\/(.+)$/.exec(hash))) openSaga(decodeHashPart(m[1]));
    else if (/^#\/sagas\/?$/.test(hash)) openSagas();
    else if (/^#\/events\/?$/.test(hash)) openEvents();
    else if (!modules.some((mod) => mod.route(hash))) openList();
  }

  // ----------------------------------------------------------- the ticker

  /** Every second: relative times and countdowns, without fetching. */
  function tick() {
    if (!token) return;
    for (const r of W.rows.values()) setText(r.nextStep, r.held || fmtRelative(r.nextAt, true));
    for (const r of O.rows.values()) renderOtpLeft(r);
    renderOldest();
    for (const el of document.querySelectorAll('dl.kv [data-rel-at]')) {
      const v = el.dataset.relAt;
      setText(el, fmtRelative(v === '' ? null : Number(v), el.dataset.due === '1'));
    }
  }

  // -------------------------------------------------------------- session

  /** What the view modules (accounts.js, transfers.js, subscriptions.js) use of this file. */
  const kit = {
    PAGE_SIZE, $, h, api, request, quiet, poller, flash, setText, setAttr, show, reconcile, stateBadge, kv,
    fmtClock, fmtNum, dash, turnPage, renderPagerOf, pageRange, currentCursor, showView, gotoForm, decodeHashPart,
  };
  const modules = [accountsModule(kit), transfersModule(kit), subscriptionsModule(kit)];
  for (const mod of modules) Object.assign(VIEWS, mod.views);

  const pollers = {
    ...Object.assign({}, ...modules.map((mod) => mod.pollers)),
    status: poller(loadStatus, STATUS_EVERY_MS),
    workers: poller(loadWorkers, WORKERS_EVERY_MS),
    otp: poller(loadOtp, OTP_EVERY_MS),
    detail: poller(loadDetail, DETAIL_EVERY_MS),
    sagas: poller(loadSagas, SAGAS_EVERY_MS),
    saga: poller(loadSaga, SAGA_EVERY_MS),
    events: poller(loadEvents, EVENTS_EVERY_MS),
  };
  let ticker = null;

  function resetState() {
    W.rows.clear();
    W.order = [];
    W.selected.clear();
    W.stack = [null];
    W.next = null;
    W.loaded = false;
    W.filter = '';
    $('workers-state-filter').value = '';
    $('workers-tbody').replaceChildren();
    O.rows.clear();
    O.submitted.clear();
    $('otp-list').replaceChildren();
    D.id = null;
    D.itRows.clear();
    D.rqRows.clear();
    S.rows.clear();
    S.order = [];
    S.stack = [null];
    S.next = null;
    S.loaded = false;
    S.status = '';
    S.definition = '';
    S.definitions = null;
    $('sagas-status-filter').value = '';
    $('sagas-definition-filter').value = '';
    $('sagas-tbody').replaceChildren();
    G.id = null;
    G.saga = null;
    G.busy = false;
    G.stepRows.clear();
    G.eventRows.clear();
    $('saga-steps-tbody').replaceChildren();
    $('saga-history-tbody').replaceChildren();
    E.type = '';
    E.gen += 1;
    resetEvents();
    $('events-type-filter').value = '';
    for (const mod of modules) mod.reset();
    view = null;
    status.counts = null;
    status.oldestAt = null;
    conn.lastOk = 0;
    conn.error = null;
    for (const id of ['workers-message', 'detail-message', 'otp-message', 'start-error', 'start-result', 'saga-detail-message']) flash($(id), '', '');
  }

  /**
   * What the signed-in key may do, as the API says (`GET /api/session`):
   * every control carries `data-needs="<action>"` and is shown only when
   * the key's `actions` hold it (body classes `can-<action>`, app.css).
   */
  let session = null;

  async function loadSession() {
    session = await api('GET', '/api/session');
  }

  function applySession() {
    const allowed = new Set((session && session.actions) || []);
    for (const c of [...document.body.classList]) if (c.startsWith('can-')) document.body.classList.remove(c);
    for (const a of allowed) document.body.classList.add(`can-${a.replace('.', '-')}`);
    setText($('session-key'), session ? `${session.key_name} (${session.scope})` : '');
  }

  function signOut(message) {
    token = '';
    session = null;
    applySession();
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
    for (const p of Object.values(pollers)) p.stop();
    clearInterval(ticker);
    ticker = null;
    resetState();
    show($('app'), false);
    show($('signin'), true);
    const input = $('signin-token');
    input.value = '';
    flash($('signin-message'), message || '', message ? 'error' : '');
    $('signin-submit').disabled = false;
    input.focus();
  }

  function enterApp() {
    show($('signin'), false);
    show($('app'), true);
    const c = $('conn-status');
    c.dataset.conn = 'pending';
    setText(c, 'Connecting…');
    for (const b of document.querySelectorAll('[data-filter-state]')) {
      b.classList.toggle('active', b.dataset.filterState === W.filter);
    }
    renderSelection();
    renderPager();
    renderEventTypes();
    show($('otp-empty'), true);
    setText($('otp-count'), '0');
    pollers.status.start();
    pollers.otp.start();
    if (!ticker) ticker = setInterval(tick, 1000);
    route();
  }

  async function submitSignIn(ev) {
    ev.preventDefault();
    const input = $('signin-token');
    const t = input.value.trim();
    if (!t) {
      flash($('signin-message'), 'Enter an API key.', 'error');
      input.focus();
      return;
    }
    const btn = $('signin-submit');
    btn.disabled = true;
    flash($('signin-message'), '', '');
    token = t;
    try {
      await loadSession();
    } catch (e) {
      if (e.status === 401) {
        flash($('signin-message'), 'That key was refused (401).', 'error');
      } else {
        token = '';
        flash($('signin-message'), `Cannot sign in: ${e.message}.`, 'error');
      }
      btn.disabled = false;
      return;
    }
    try { sessionStorage.setItem(TOKEN_KEY, t); } catch (_) { /* private mode: keep it in memory */ }
    applySession();
    btn.disabled = false;
    input.value = '';
    enterApp();
  }

  // --------------------------------------------------------------- wiring

  /** `<prefix>-goto-form`: Enter opens `<hash><typed id>`. */
  function gotoForm(prefix, hash) {
    $(`${prefix}-goto-form`).addEventListener('submit', (ev) => {
      ev.preventDefault();
      const id = $(`${prefix}-goto`).value.trim();
      if (id) location.hash = `${hash}${encodeURIComponent(id)}`;
    });
  }

  function init() {
    $('signin-form').addEventListener('submit', submitSignIn);
    $('signout').addEventListener('click', () => signOut(''));
    $('workers-state-filter').addEventListener('change', (ev) => setFilter(ev.target.value));
    for (const b of document.querySelectorAll('[data-filter-state]')) {
      b.addEventListener('click', () => {
        if (view !== 'workers') location.hash = '#/';
        setFilter(b.dataset.filterState);
      });
    }
    $('workers-prev').addEventListener('click', () => gotoPage(-1));
    $('workers-next').addEventListener('click', () => gotoPage(1));
    $('workers-select-page').addEventListener('change', (ev) => {
      const on = ev.target.checked;
      for (const id of W.order) {
        if (on) W.selected.add(id); else W.selected.delete(id);
        const r = W.rows.get(id);
        if (r) { r.check.checked = on; r.el.classList.toggle('selected', on); }
      }
      renderSelection();
    });
    $('workers-clear-selection').addEventListener('click', () => {
      W.selected.clear();
      for (const r of W.rows.values()) { r.check.checked = false; r.el.classList.remove('selected'); }
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
    gotoForm('sagas', '#/sagas/');
    $('sagas-status-filter').addEventListener('change', (ev) => setSagaFilter('status', ev.target.value));
    $('sagas-definition-filter').addEventListener('change', (ev) => setSagaFilter('definition', ev.target.value));
    $('sagas-prev').addEventListener('click', () => { if (turnPage(S, -1)) reloadSagas(); });
    $('sagas-next').addEventListener('click', () => { if (turnPage(S, 1)) reloadSagas(); });
    $('saga-rollback-form').addEventListener('submit', submitRollback);
    $('events-type-filter').addEventListener('change', (ev) => setEventType(ev.target.value));
    $('iterations-prev').addEventListener('click', () => { if (D.itStack.length > 1) { D.itStack.pop(); pollers.detail.kick(); } });
    $('iterations-next').addEventListener('click', () => { if (D.itNext) { D.itStack.push(D.itNext); D.itNext = null; $('iterations-next').disabled = true; pollers.detail.kick(); } });
    $('requests-prev').addEventListener('click', () => { if (D.rqStack.length > 1) { D.rqStack.pop(); pollers.detail.kick(); } });
    $('requests-next').addEventListener('click', () => { if (D.rqNext) { D.rqStack.push(D.rqNext); D.rqNext = null; $('requests-next').disabled = true; pollers.detail.kick(); } });
    for (const mod of modules) mod.wire();
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && token) {
        for (const p of Object.values(pollers)) if (p.active) p.kick();
      }
    });

    if (token) {
      loadSession().then(() => { applySession(); enterApp(); }, (e) => { if (!quiet(e)) signOut(`Cannot sign in: ${e.message}.`); });
    } else {
      show($('signin'), true);
      $('signin-token').focus();
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
