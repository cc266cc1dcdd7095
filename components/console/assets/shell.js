// The console's shell: sign-in and sign-out (the key and what it may do),
// the top bar (the status counters, the connection, the view tabs), the
// navigation between views (each view module's route; only the open view
// polls), the OTP inbox beside every view and the one-second ticker.

import {
  $, h, api, quiet, poller, flash, setText, setAttr, show, auth, setSkew, serverNow, parseTime, fmtDuration,
  fmtRelative, fmtCountdown, fmtNum, resetConn, TOKEN_KEY,
} from './kit.js';

const STATUS_EVERY_MS = 2000;
const OTP_EVERY_MS = 1500;
const STATES = ['running', 'pausing', 'paused', 'stopping', 'stopped'];

/**
 * The context the view modules get: `pollers` (every module's, by name,
 * filled once they are made), `showView(name, title)`, `currentView()` and
 * `status` (the top bar's worker counts).
 */
export function shellContext() {
  const ctx = {
    pollers: {},
    status: { counts: null, oldestAt: null },
    view: null,
    currentView: () => ctx.view,
    showView(name, title) {
      const views = ctx.views;
      const v = views[name];
      for (const [k, o] of Object.entries(views)) {
        if (k === name) continue;
        ctx.pollers[o.poller].stop();
        show($(o.el), false);
      }
      show($(v.el), true);
      for (const t of document.querySelectorAll('[data-view-tab]')) setAttr(t, 'aria-current', t.dataset.viewTab === v.tab ? 'page' : null);
      // Side panels belong to tabs (`data-side-tabs`); the OTP inbox stays in every view.
      for (const p of document.querySelectorAll('[data-side-tabs]')) show(p, p.dataset.sideTabs.split(' ').includes(v.tab));
      $('status').classList.toggle('off-view', v.tab !== 'workers');
      document.title = title ? `${title} · Stepwise console` : 'Stepwise console';
      ctx.view = name;
      ctx.pollers[v.poller].start();
    },
    views: {},
  };
  return ctx;
}

/**
 * Starts the console with `modules` (each: `views`, `pollers`,
 * `route(hash)` → whether it opened a view, `reset()`, `wire()`, and maybe
 * `enter()`, `tick()`, `statusChanged()`); `fallback()` opens the view of
 * a hash no module claims.
 */
export function startShell(ctx, modules, fallback) {
  auth.onUnauthorized = (message) => signOut(message);
  const status = ctx.status;

  async function loadStatus() {
    const t0 = Date.now();
    const s = await api('GET', '/api/status');
    const t1 = Date.now();
    const serverTime = parseTime(s && s.time);
    if (serverTime !== null) setSkew(serverTime - (t0 + t1) / 2);
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
    for (const mod of modules) if (mod.statusChanged) mod.statusChanged();
  }

  function renderOldest() {
    setText($('status-otp-oldest-age'), status.oldestAt === null ? '—' : fmtDuration(Math.max(0, serverNow() - status.oldestAt)));
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



  // ----------------------------------------------------------------- views

  // Each view: its element, its poller and its tab (the modules'). Only the open view polls.
  Object.assign(ctx.views, ...modules.map((mod) => mod.views));
  const pollers = ctx.pollers;
  Object.assign(pollers, ...modules.map((mod) => mod.pollers), {
    status: poller(loadStatus, STATUS_EVERY_MS),
    otp: poller(loadOtp, OTP_EVERY_MS),
  });

  function route() {
    if (!auth.token) return;
    const hash = location.hash;
    if (!modules.some((mod) => mod.route(hash))) fallback();
  }

  // ----------------------------------------------------------- the ticker

  /** Every second: relative times and countdowns, without fetching. */
  function tick() {
    if (!auth.token) return;
    for (const mod of modules) if (mod.tick) mod.tick();
    for (const r of O.rows.values()) renderOtpLeft(r);
    renderOldest();
    for (const el of document.querySelectorAll('dl.kv [data-rel-at]')) {
      const v = el.dataset.relAt;
      setText(el, fmtRelative(v === '' ? null : Number(v), el.dataset.due === '1'));
    }
  }

  // -------------------------------------------------------------- session

  let ticker = null;

  function resetState() {
    O.rows.clear();
    O.submitted.clear();
    $('otp-list').replaceChildren();
    for (const mod of modules) mod.reset();
    ctx.view = null;
    status.counts = null;
    status.oldestAt = null;
    resetConn();
    flash($('otp-message'), '', '');
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
    auth.token = '';
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
    for (const mod of modules) if (mod.enter) mod.enter();
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
    auth.token = t;
    try {
      await loadSession();
    } catch (e) {
      if (e.status === 401) {
        flash($('signin-message'), 'That key was refused (401).', 'error');
      } else {
        auth.token = '';
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

  $('signin-form').addEventListener('submit', submitSignIn);
  $('signout').addEventListener('click', () => signOut(''));
  for (const mod of modules) mod.wire();
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && auth.token) {
      for (const p of Object.values(pollers)) if (p.active) p.kick();
    }
  });

  if (auth.token) {
    loadSession().then(() => { applySession(); enterApp(); }, (e) => { if (!quiet(e)) signOut(`Cannot sign in: ${e.message}.`); });
  } else {
    show($('signin'), true);
    $('signin-token').focus();
  }
}
