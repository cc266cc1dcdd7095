// The Subscriptions view (CONTRACT section 11): the list, a subscription's
// detail with its deliveries (the failing ones and their last answer, or every
// attempt), pause, resume, replay and delete, and the form that makes a
// webhook subscription and shows its signing secret once. Every rule is the
// API's: the actions offered are a subscription's `allowed_actions` (and the
// key's `subscriptions.manage`), refusals show its message.

import { listAndDetail, listView } from './list.js';

const LIST_EVERY_MS = 2000;
const SUBSCRIPTION_EVERY_MS = 1500;
const DELIVERIES_LIMIT = 200;

/** The types the form sends: empty, `*` or `all` is every type; else the comma-separated list, each trimmed, as typed. */
export function typesOf(text) {
  const list = String(text || '').split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0 || (list.length === 1 && (list[0] === '*' || list[0].toLowerCase() === 'all'))) return ['*'];
  return list;
}

/** A from-seq as typed: an integer goes as a JSON number, anything else as typed (the API answers 400). */
function seqValue(text) {
  return /^-?\d+$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : text;
}

/**
 * The failing deliveries: each event whose newest answered attempt failed,
 * with that attempt (its answer) and how many of its attempts failed. An
 * attempt still `sending` has no answer yet and is left out. `attempts` is
 * newest first, as the API lists them.
 */
export function failingDeliveries(attempts) {
  const bySeq = new Map();
  for (const a of attempts) {
    if (a.result === 'sending') continue;
    let f = bySeq.get(a.seq);
    if (!f) { f = { last: a, failures: 0 }; bySeq.set(a.seq, f); }
    if (a.result === 'failed') f.failures += 1;
  }
  return [...bySeq.values()].filter((f) => f.last.result === 'failed').map((f) => ({ ...f.last, failures: f.failures }));
}

/** The view module; `kit` is the console's shared toolkit (kit.js) and the shell's context (shell.js), as app.js hands it. */
export function subscriptionsModule(kit) {
  const { $, h, api, quiet, request, poller, flash, formBoxes, setText, setAttr, show, reconcile, stateBadge, kv, fmtClock, fmtNum, dash } = kit;

  const list = listView({
    name: 'subscriptions',
    path: '/api/subscriptions',
    items: 'subscriptions',
    next: 'next_after',
    cursor: 'after',
    every: LIST_EVERY_MS,
    key: (s) => s.id,
    create: createRow,
    update: updateRow,
    empty: (L) => (L.stack.length > 1 ? 'No subscriptions on this page.' : 'No subscriptions yet.'),
    range: (range) => range && `${range} subscriptions`,
  });
  const L = list.state;
  const D = { id: null, sub: null, filter: 'failing', deliveries: new Map(), gen: 0 };

  const destination = (s) => (s.stream ? `${s.url} · stream ${s.stream}` : s.url);
  const typesText = (s) => (Array.isArray(s.types) ? (s.types.length === 1 && s.types[0] === '*' ? 'all' : s.types.join(', ')) : '—');
  const allowed = (s) => new Set((s && s.allowed_actions) || []);

  /**
   * The action controls of one subscription: Pause, Resume, a from-seq box
   * with Replay, Delete. `idOf()` names the subscription they act on (a row's,
   * or the open detail's); `msg()` is where answers and errors show.
   */
  function actionControls(id, idOf, prefix, msg) {
    const c = {};
    const attrs = (testId) => ({ 'data-testid': `${prefix}-${testId}`, 'data-subscription-id': id || null });
    c.pause = h('button', { type: 'button', class: 'btn btn-xs', ...attrs('pause'), text: 'Pause' });
    c.resume = h('button', { type: 'button', class: 'btn btn-xs', ...attrs('resume'), text: 'Resume' });
    c.from = h('input', {
      type: 'text', inputmode: 'numeric', class: 'seq-input', placeholder: 'from seq', spellcheck: 'false', autocomplete: 'off',
      'aria-label': 'Replay from this seq', ...attrs('replay-from'),
    });
    c.replay = h('button', { type: 'submit', class: 'btn btn-xs', ...attrs('replay'), text: 'Replay' });
    c.replayForm = h('form', { class: 'replay-form', novalidate: true, autocomplete: 'off' }, c.from, c.replay);
    c.del = h('button', { type: 'button', class: 'btn btn-xs btn-danger-outline', ...attrs('delete'), text: 'Delete' });
    c.pause.addEventListener('click', () => { if (idOf()) setStatus(idOf(), 'paused', msg()); });
    c.resume.addEventListener('click', () => { if (idOf()) setStatus(idOf(), 'active', msg()); });
    c.replayForm.addEventListener('submit', (ev) => { ev.preventDefault(); if (idOf()) replay(idOf(), c.from, msg()); });
    c.del.addEventListener('click', () => { if (idOf()) remove(idOf(), msg()); });
    c.el = h('span', { class: 'sub-actions', 'data-needs': 'subscriptions.manage' },
      h('span', { class: 'btn-group' }, c.pause, c.resume, c.del), c.replayForm);
    return c;
  }

  /** Offers exactly the actions the API allows this subscription (the others are not shown); busy disables them. */
  function renderControls(c, s, busy) {
    const a = allowed(s);
    show(c.pause, a.has('pause'));
    show(c.resume, a.has('resume'));
    show(c.replayForm, a.has('replay'));
    show(c.del, a.has('delete'));
    for (const b of [c.pause, c.resume, c.replay, c.del]) b.disabled = Boolean(busy);
  }

  // A row holds two lines in its first cells (the id over its kind and description,
  // the destination over its types) and its actions (Pause, Resume, Delete over
  // the replay box), so the ten facts fit beside the side panel.
  function createRow(s, id) {
    const r = {};
    r.link = h('a', { href: `#/subscriptions/${encodeURIComponent(id)}`, class: 'cell-id', 'data-testid': 'subscription-link', text: id });
    r.kind = h('span', { 'data-testid': 'subscription-kind' });
    r.description = h('span', { class: 'ellip', 'data-testid': 'subscription-description' });
    r.destination = h('span', { class: 'mono ellip', 'data-testid': 'subscription-destination' });
    r.types = h('span', { class: 'ellip', 'data-testid': 'subscription-types' });
    r.status = h('span', { class: 'badge', 'data-testid': 'subscription-status' });
    r.deliveredSeq = h('td', { class: 'num', 'data-testid': 'subscription-delivered-seq' });
    r.lag = h('td', { class: 'num', 'data-testid': 'subscription-lag' });
    r.lastSuccess = h('td', { 'data-testid': 'subscription-last-success' });
    r.lastError = h('td', { class: 'ellip', 'data-testid': 'subscription-last-error' });
    r.controls = actionControls(id, () => id, 'subscription', () => $('subscriptions-message'));
    r.el = h('tr', { 'data-testid': 'subscription-row', 'data-subscription-id': id },
      h('td', { class: 'two-lines' }, r.link, h('span', { class: 'sub-line muted small' }, r.kind, r.description)),
      h('td', { class: 'two-lines' }, r.destination, h('span', { class: 'sub-line muted small' }, 'types ', r.types)),
      h('td', null, r.status),
      r.deliveredSeq, r.lag, r.lastSuccess, r.lastError,
      h('td', { class: 'col-actions' }, r.controls.el));
    return r;
  }

  function lastErrorText(e) {
    return e ? e.message : '—';
  }

  function lastErrorTitle(s) {
    const e = s.last_error;
    if (!e) return null;
    return [`seq ${e.seq}`, `at ${e.at}`, s.failing_since && `failing since ${s.failing_since}`].filter(Boolean).join(' · ');
  }

  function updateRow(r, s) {
    setAttr(r.el, 'data-status', s.status);
    setAttr(r.el, 'data-kind', s.kind);
    setText(r.kind, s.kind);
    setText(r.description, s.description ? ` · ${s.description}` : '');
    setAttr(r.description, 'title', s.description || null);
    setText(r.destination, destination(s));
    setAttr(r.destination, 'title', destination(s));
    setText(r.types, typesText(s));
    setAttr(r.types, 'title', typesText(s));
    stateBadge(r.status, s.status);
    setText(r.deliveredSeq, fmtNum(s.delivered_seq));
    setText(r.lag, fmtNum(s.lag));
    setAttr(r.lag, 'title', s.pending ? `delivering seq ${s.pending.seq}, attempt ${s.pending.attempt}` : null);
    setText(r.lastSuccess, fmtClock(s.last_success_at));
    setAttr(r.lastSuccess, 'title', s.last_success_at || null);
    setText(r.lastError, lastErrorText(s.last_error));
    setAttr(r.lastError, 'title', lastErrorTitle(s));
    // Red while failing; once an event went through since, it is history.
    r.lastError.classList.toggle('reason', Boolean(s.failing_since));
    r.lastError.classList.toggle('dim', Boolean(s.last_error && !s.failing_since));
    renderControls(r.controls, s, r.el.dataset.busy === '1');
    r.sub = s;
  }

  // ---------------------------------------------------------------- actions

  function setBusy(id, busy) {
    const r = L.rows.get(id);
    if (r) {
      if (busy) r.el.dataset.busy = '1'; else delete r.el.dataset.busy;
      renderControls(r.controls, r.sub, busy);
    }
    if (D.id === id) renderControls(D.controls, D.sub, busy);
  }

  /** Shows an answer (the subscription) at once, in its row and its detail. */
  function showAnswer(s) {
    if (!s || !s.id) return;
    const r = L.rows.get(s.id);
    if (r) r.sub = s;
    if (D.id === s.id) renderSubscription(s);
  }

  function refresh() {
    if (pollers.subscriptions.active) pollers.subscriptions.kick();
    if (pollers.subscription.active) pollers.subscription.kick();
  }

  /** Runs one action: busy while it runs, its answer shown, the API's error in `msg`. */
  async function act(id, msg, label, call, done) {
    setBusy(id, true);
    try {
      const s = await call();
      showAnswer(s);
      flash(msg, done(s), 'ok');
      delete msg.dataset.errorCode;
      return s;
    } catch (e) {
      if (!quiet(e)) {
        flash(msg, `${label} ${id}: ${e.message}`, 'error');
        msg.dataset.errorCode = e.code || '';
      }
      return null;
    } finally {
      setBusy(id, false);
      refresh();
    }
  }

  /** `PATCH /api/subscriptions/{id}` `{"status": "paused"|"active"}`. */
  function setStatus(id, status, msg) {
    const pause = status === 'paused';
    return act(id, msg, pause ? 'Pause' : 'Resume',
      () => api('PATCH', `/api/subscriptions/${encodeURIComponent(id)}`, { status }),
      (s) => `${pause ? 'Paused' : 'Resumed'} ${id}${s && s.status ? ` (now ${s.status})` : ''}.`);
  }

  /** `POST /api/subscriptions/{id}/replay` `{"from_seq"}`; an empty box is refused here, the rest is the API's. */
  async function replay(id, input, msg) {
    const from = input.value.trim();
    if (!from) {
      flash(msg, `Replay ${id}: enter the seq to replay from.`, 'error');
      delete msg.dataset.errorCode;
      input.focus();
      return;
    }
    const s = await act(id, msg, 'Replay',
      () => api('POST', `/api/subscriptions/${encodeURIComponent(id)}/replay`, { from_seq: seqValue(from) }),
      (x) => `Replay of ${id} from seq ${from} requested${x && x.status ? ` (now ${x.status})` : ''}.`);
    if (s) input.value = '';
  }

  /** `DELETE /api/subscriptions/{id}`, confirmed first. */
  async function remove(id, msg) {
    if (!window.confirm(`Delete subscription ${id}? It stops at once and cannot be brought back.`)) return;
    setBusy(id, true);
    try {
      await api('DELETE', `/api/subscriptions/${encodeURIComponent(id)}`);
      const r = L.rows.get(id);
      if (r) { r.el.remove(); L.rows.delete(id); L.order = L.order.filter((x) => x !== id); }
      show($('subscriptions-empty'), L.rows.size === 0);
      const list = $('subscriptions-message');
      flash(list, `Deleted ${id}.`, 'ok');
      delete list.dataset.errorCode;
      if (D.id === id) location.hash = '#/subscriptions';
    } catch (e) {
      if (!quiet(e)) {
        flash(msg, `Delete ${id}: ${e.message}`, 'error');
        msg.dataset.errorCode = e.code || '';
      }
      setBusy(id, false);
    } finally {
      refresh();
    }
  }

  // -------------------------------------------------------- one subscription

  async function loadSubscription() {
    const id = D.id;
    if (!id) return;
    const gen = D.gen;
    const path = `/api/subscriptions/${encodeURIComponent(id)}`;
    let s;
    let list;
    try {
      [s, list] = await Promise.all([api('GET', path), api('GET', `${path}/deliveries?limit=${DELIVERIES_LIMIT}`)]);
    } catch (e) {
      if (D.id !== id || D.gen !== gen) return;
      if (e.status === 404 || e.status === 400) {
        flash($('subscription-detail-error'), e.message || `No subscription ${id}.`, 'error');
        $('subscription-detail-error').dataset.errorCode = e.code || '';
        show($('subscription-detail-body'), false);
        show($('subscription-deliveries-panel'), false);
        stateBadge($('subscription-detail-status'), '');
        D.sub = null;
        renderControls(D.controls, null, false);
        return;
      }
      throw e;
    }
    if (D.id !== id || D.gen !== gen) return;
    show($('subscription-detail-error'), false);
    show($('subscription-detail-body'), true);
    show($('subscription-deliveries-panel'), true);
    renderSubscription(s);
    renderDeliveries(Array.isArray(list && list.deliveries) ? list.deliveries : []);
  }

  function renderSubscription(s) {
    D.sub = s;
    setText($('subscription-detail-id'), s.id);
    stateBadge($('subscription-detail-status'), s.status);
    renderControls(D.controls, s, false);
    const p = s.pending;
    const e = s.last_error;
    kv($('subscription-detail-fields'), [
      ['kind', s.kind, { field: 'kind' }],
      ['url', s.url, { field: 'url', mono: true }],
      ...(s.stream ? [['stream', s.stream, { field: 'stream', mono: true }]] : []),
      ['types', typesText(s), { field: 'types' }],
      ['description', s.description, { field: 'description' }],
      ['status', s.status, { field: 'status' }],
      ['delivered_seq', fmtNum(s.delivered_seq), { field: 'delivered_seq' }],
      ['lag', fmtNum(s.lag), { field: 'lag' }],
      ['delivered', fmtNum(s.delivered), { field: 'delivered' }],
      ['pending', p ? `seq ${p.seq}, attempt ${p.attempt}, ${fmtClock(p.at)}` : null, { field: 'pending', title: p && p.at }],
      ['last_success_at', fmtClock(s.last_success_at), { field: 'last_success_at', title: s.last_success_at }],
      ['failing_since', fmtClock(s.failing_since), { field: 'failing_since', title: s.failing_since }],
      ['last_error', e ? `${e.message} (seq ${e.seq}, ${fmtClock(e.at)})` : null, { field: 'last_error', title: e && e.at }],
      ...(s.disabled_at ? [['disabled_at', fmtClock(s.disabled_at), { field: 'disabled_at', title: s.disabled_at }]] : []),
      ['created_at', fmtClock(s.created_at), { field: 'created_at', title: s.created_at }],
    ]);
    setText($('subscription-detail-json'), JSON.stringify(s, null, 2));
  }

  function createDeliveryRow(d, key) {
    const r = {};
    r.seq = h('td', { class: 'num mono', 'data-testid': 'delivery-seq' });
    r.attempt = h('td', { class: 'num', 'data-testid': 'delivery-attempt' });
    r.result = h('span', { class: 'badge', 'data-testid': 'delivery-result' });
    r.status = h('td', { class: 'num mono', 'data-testid': 'delivery-status-code' });
    r.error = h('td', { class: 'reason', 'data-testid': 'delivery-error' });
    r.latency = h('td', { class: 'num', 'data-testid': 'delivery-latency' });
    r.response = h('td', { class: 'mono data-cell', 'data-testid': 'delivery-response' });
    r.at = h('td', { 'data-testid': 'delivery-at' });
    r.el = h('tr', { 'data-testid': 'delivery-row', 'data-key': key }, r.seq, r.attempt, h('td', null, r.result), r.status, r.error, r.latency, r.response, r.at);
    return r;
  }

  function updateDeliveryRow(r, d) {
    setAttr(r.el, 'data-seq', d.seq);
    setAttr(r.el, 'data-request-id', d.request_id);
    setAttr(r.el, 'data-result', d.result);
    setText(r.seq, d.seq);
    setText(r.attempt, d.failures !== undefined ? `${fmtNum(d.attempt)} (${fmtNum(d.failures)} failed)` : fmtNum(d.attempt));
    stateBadge(r.result, d.result);
    setText(r.status, dash(d.status_code));
    setText(r.error, dash(d.error));
    setText(r.latency, d.latency_ms === null || d.latency_ms === undefined ? '—' : `${fmtNum(d.latency_ms)} ms`);
    setText(r.response, d.response === null || d.response === undefined || d.response === '' ? '—' : d.response);
    setAttr(r.response, 'title', d.response || null);
    setText(r.at, fmtClock(d.at));
    setAttr(r.at, 'title', d.at || null);
  }

  function renderDeliveries(attempts) {
    const failing = D.filter === 'failing';
    const list = failing ? failingDeliveries(attempts) : attempts;
    const keyOf = failing ? (d) => `seq-${d.seq}` : (d) => `rq-${d.request_id}`;
    reconcile($('subscription-deliveries-tbody'), list, keyOf, D.deliveries, createDeliveryRow, updateDeliveryRow);
    show($('subscription-deliveries-empty'), list.length === 0);
    setText($('subscription-deliveries-empty'), failing ? 'No failing deliveries.' : 'No delivery attempts yet.');
    setText($('subscription-deliveries-count'), fmtNum(list.length));
  }

  function setDeliveriesFilter(value) {
    if (value === D.filter) return;
    D.filter = value;
    D.deliveries.clear();
    $('subscription-deliveries-tbody').replaceChildren();
    setText($('subscription-deliveries-count'), '0');
    pollers.subscription.kick();
  }

  function openSubscriptions() {
    D.id = null;
    kit.showView('subscriptions', 'Subscriptions');
  }

  function openSubscription(id) {
    if (D.id !== id) {
      D.id = id;
      D.gen += 1;
      D.sub = null;
      D.deliveries.clear();
      $('subscription-deliveries-tbody').replaceChildren();
      $('subscription-detail-fields').replaceChildren();
      setText($('subscription-detail-json'), '');
      setText($('subscription-detail-id'), id);
      setText($('subscription-deliveries-count'), '0');
      stateBadge($('subscription-detail-status'), '');
      D.controls.from.value = '';
      for (const el of [D.controls.pause, D.controls.resume, D.controls.from, D.controls.replay, D.controls.del]) el.dataset.subscriptionId = id;
      renderControls(D.controls, null, false);
      flash($('subscription-detail-message'), '', '');
      show($('subscription-detail-error'), false);
      show($('subscription-deliveries-empty'), false);
    }
    kit.showView('subscription', id);
    window.scrollTo(0, 0);
  }

  // ----------------------------------------------------------- create form

  async function submitCreate(ev) {
    ev.preventDefault();
    const boxes = formBoxes('subscription-form-error', 'subscription-form-result');
    const { err, ok } = boxes;
    boxes.clear();
    hideSecret();
    const url = $('subscription-form-url').value.trim();
    if (!url) {
      flash(err, 'Enter the webhook URL.', 'error');
      $('subscription-form-url').focus();
      return;
    }
    const body = { kind: 'webhook', url, types: typesOf($('subscription-form-types').value) };
    const description = $('subscription-form-description').value.trim();
    if (description) body.description = description;
    const btn = $('subscription-form-submit');
    btn.disabled = true;
    try {
      const { data } = await request('POST', '/api/subscriptions', body);
      const id = (data && data.id) || '';
      ok.dataset.subscriptionId = id;
      // Not an `ok` flash, which fades: it stays beside the secret.
      flash(ok, `Created subscription ${id} (${data && data.kind} to ${data && data.url}).`, '');
      if (data && data.secret) showSecret(id, data.secret);
      $('subscription-form-url').value = '';
      $('subscription-form-types').value = '';
      $('subscription-form-description').value = '';
    } catch (e) {
      boxes.fail(e);
    } finally {
      btn.disabled = false;
      if (pollers.subscriptions.active) pollers.subscriptions.kick();
    }
  }

  /** The secret exists only in this box, until it is dismissed, another is made, or the key signs out. */
  function showSecret(id, secret) {
    setText($('subscription-secret-id'), id);
    setText($('subscription-secret-value'), secret);
    show($('subscription-form-secret'), true);
  }

  function hideSecret() {
    setText($('subscription-secret-value'), '');
    setText($('subscription-secret-id'), '');
    show($('subscription-form-secret'), false);
  }

  // ------------------------------------------------------------------ wiring

  const nav = listAndDetail({
    name: 'subscriptions', list, listEl: 'subscriptions-view', openList: openSubscriptions,
    detail: 'subscription', detailEl: 'subscription-detail-view', openDetail: openSubscription,
    detailPoller: poller(loadSubscription, SUBSCRIPTION_EVERY_MS),
  });
  const { pollers } = nav;

  return {
    ...nav,
    reset() {
      list.reset();
      D.id = null;
      D.gen += 1;
      D.sub = null;
      D.deliveries.clear();
      $('subscription-deliveries-tbody').replaceChildren();
      D.filter = 'failing';
      $('subscription-deliveries-filter').value = 'failing';
      hideSecret();
      for (const id of ['subscriptions-message', 'subscription-detail-message', 'subscription-form-error', 'subscription-form-result']) flash($(id), '', '');
    },
    wire() {
      list.wire();
      kit.gotoForm('subscriptions', '#/subscriptions/');
      // The detail's controls act on the open subscription.
      D.controls = actionControls(null, () => D.id, 'subscription-detail', () => $('subscription-detail-message'));
      $('subscription-detail-actions').append(D.controls.el);
      $('subscription-deliveries-filter').addEventListener('change', (ev) => setDeliveriesFilter(ev.target.value));
      $('subscription-form').addEventListener('submit', submitCreate);
      $('subscription-secret-dismiss').addEventListener('click', hideSecret);
    },
  };
}
