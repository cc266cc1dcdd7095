// The Transfers view (CONTRACT section 7): the list, a transfer's detail with
// its journal, the receipt-code lookup, and the form that makes a transfer
// with an Idempotency-Key. Every rule is the API's: refusals show its message.

import { listAndDetail, listView } from './list.js';
import { amountJson, setMoney, sumMinor } from './money.js';

const LIST_EVERY_MS = 2000;
const TRANSFER_EVERY_MS = 1500;
const RESULT_EVERY_MS = 1000;
const FINAL = new Set(['completed', 'failed']);

/** A fresh Idempotency-Key (a UUID v4; `crypto.randomUUID` exists only in secure contexts). */
function newIdempotencyKey() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The request body's JSON text; the amount keeps exactly the digits typed (money.js). */
function transferJson(f) {
  const parts = [
    ['from', JSON.stringify(f.from)],
    ['to', JSON.stringify(f.to)],
    ['amount', amountJson(f.amount)],
    ['currency', JSON.stringify(f.currency)],
  ];
  if (f.description) parts.push(['description', JSON.stringify(f.description)]);
  return `{${parts.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;
}

/** How a failed receipt lookup reads: mistyped (the check character fails), unknown, or not a code at all. */
function lookupProblem(e) {
  if (e.status === 400 && e.code === 'invalid_receipt_code') {
    return { result: 'mistyped', text: `Mistyped receipt code: ${e.message}` };
  }
  if (e.status === 400) return { result: 'invalid', text: `Not a receipt code: ${e.message}` };
  if (e.status === 404) return { result: 'unknown', text: `Unknown receipt code: ${e.message}` };
  return null;
}

/** The view module; `kit` is the console's shared toolkit (kit.js) and the shell's context (shell.js), as app.js hands it. */
export function transfersModule(kit) {
  const { $, h, api, request, quiet, poller, flash, setText, setAttr, show, reconcile, stateBadge, kv, fmtClock, dash } = kit;

  const accountLink = (id, testId) => (id
    ? h('a', { href: `#/accounts/${encodeURIComponent(id)}`, class: 'cell-id', 'data-testid': testId, text: id })
    : h('span', { 'data-testid': testId, text: '—' }));
  const transferHref = (code) => `#/transfers/${encodeURIComponent(code)}`;

  // ------------------------------------------------------------------ list

  const T = {
    account: '',
    status: '',
  };

  const list = listView({
    name: 'transfers',
    path: '/api/transfers',
    items: 'transfers',
    every: LIST_EVERY_MS,
    key: (t) => t.receipt_code,
    create: createTransferRow,
    update: updateTransferRow,
    filters: () => ({ account: T.account, status: T.status }),
    // A filter the API refuses (say, an unknown account): its message, and no rows.
    refused(e) {
      if (e.status !== 400 && e.status !== 404) return false;
      flash($('transfers-list-error'), e.message, 'error');
      $('transfers-list-error').dataset.errorCode = e.code || '';
      return true;
    },
    accepted: () => show($('transfers-list-error'), false),
    empty: (L) => `No ${listWhat()}${L.stack.length > 1 ? ' on this page' : ''}.`,
    range: (range) => range && `${range} ${listWhat()}`,
  });
  const L = list.state;

  function createTransferRow(t, code) {
    const r = {};
    r.link = h('a', { href: transferHref(code), class: 'cell-id', 'data-testid': 'transfer-link', text: code });
    r.status = h('span', { class: 'badge', 'data-testid': 'transfer-status' });
    r.from = h('td', { 'data-testid': 'transfer-from' });
    r.to = h('td', { 'data-testid': 'transfer-to' });
    r.amount = h('td', { class: 'num', 'data-testid': 'transfer-amount' });
    r.currency = h('td', { class: 'mono', 'data-testid': 'transfer-currency' });
    r.description = h('td', { class: 'ellip', 'data-testid': 'transfer-description' });
    r.reason = h('td', { class: 'ellip', 'data-testid': 'transfer-reason' });
    r.created = h('td', { 'data-testid': 'transfer-created' });
    r.completed = h('td', { 'data-testid': 'transfer-completed' });
    r.el = h('tr', { 'data-testid': 'transfer-row', 'data-receipt-code': code },
      h('td', null, r.link), h('td', null, r.status), r.from, r.to, r.amount, r.currency, r.description, r.reason, r.created, r.completed);
    return r;
  }

  function updateTransferRow(r, t) {
    setAttr(r.el, 'data-status', t.status);
    stateBadge(r.status, t.status);
    if (r.fromId !== t.from) { r.fromId = t.from; r.from.replaceChildren(accountLink(t.from, 'transfer-from-link')); }
    if (r.toId !== t.to) { r.toId = t.to; r.to.replaceChildren(accountLink(t.to, 'transfer-to-link')); }
    setMoney(r.amount, t.amount, t.currency);
    setText(r.currency, t.currency);
    setText(r.description, dash(t.description));
    setAttr(r.description, 'title', t.description || null);
    setText(r.reason, dash(t.reason));
    setAttr(r.reason, 'title', t.reason || null);
    r.reason.classList.toggle('reason', Boolean(t.reason));
    r.reason.classList.toggle('dim', !t.reason);
    setText(r.created, fmtClock(t.created_at));
    setAttr(r.created, 'title', t.created_at || null);
    setText(r.completed, fmtClock(t.completed_at));
    setAttr(r.completed, 'title', t.completed_at || null);
  }

  /** "completed transfers of user-1 " for the filters in force ("transfers " for none). */
  const listWhat = () => `${T.status ? `${T.status} ` : ''}transfers${T.account ? ` of ${T.account}` : ''}`;

  function setFilter(field, value) {
    if (T[field] === value && L.stack.length === 1) return;
    T[field] = value;
    if (field === 'account' && $('transfers-account-filter').value.trim() !== value) $('transfers-account-filter').value = value;
    if (field === 'status' && $('transfers-status-filter').value !== value) $('transfers-status-filter').value = value;
    list.refilter();
  }

  // ---------------------------------------------------------------- lookup

  async function submitLookup(ev) {
    ev.preventDefault();
    const out = $('transfers-lookup-result');
    const code = $('transfers-lookup').value.trim();
    flash(out, '', '');
    delete out.dataset.result;
    delete out.dataset.errorCode;
    if (!code) return;
    try {
      await api('GET', `/api/transfers/${encodeURIComponent(code)}`);
    } catch (e) {
      if (quiet(e)) return;
      const p = lookupProblem(e);
      flash(out, p ? p.text : `Lookup of ${code}: ${e.message}`, 'error');
      out.dataset.result = p ? p.result : 'error';
      out.dataset.errorCode = e.code || '';
      return;
    }
    $('transfers-lookup').value = '';
    location.hash = transferHref(code);
  }

  // ---------------------------------------------------------- one transfer

  const D = { code: null, transfer: null, journal: null, lines: new Map() };

  async function loadTransfer() {
    const code = D.code;
    if (!code) return;
    let t;
    try {
      t = await api('GET', `/api/transfers/${encodeURIComponent(code)}`);
    } catch (e) {
      if (D.code !== code) return;
      const p = lookupProblem(e);
      if (!p) throw e;
      const err = $('transfer-detail-error');
      flash(err, p.text, 'error');
      err.dataset.result = p.result;
      err.dataset.errorCode = e.code || '';
      showPanels(false);
      stateBadge($('transfer-detail-status'), '');
      return;
    }
    if (D.code !== code) return;
    show($('transfer-detail-error'), false);
    showPanels(true);
    renderTransfer(t);
    if (t.journal_id !== null && t.journal_id !== undefined && !(D.journal && String(D.journal.id) === String(t.journal_id))) {
      // A journal never changes once posted: read it once.
      const j = await api('GET', `/api/journals/${encodeURIComponent(t.journal_id)}`);
      if (D.code !== code) return;
      renderJournal(j, t.currency);
    } else if (t.journal_id === null || t.journal_id === undefined) {
      renderNoJournal(t);
    }
  }

  function showPanels(on) {
    show($('transfer-detail-body'), on);
    show($('journal-panel'), on);
  }

  function moneySpan(n, currency) {
    const el = h('span');
    setMoney(el, n, currency);
    return el;
  }

  function renderTransfer(t) {
    D.transfer = t;
    setText($('transfer-detail-code'), t.receipt_code);
    stateBadge($('transfer-detail-status'), t.status);
    kv($('transfer-detail-fields'), [
      ['status', t.status, { field: 'status' }],
      ['from', accountLink(t.from), { field: 'from' }],
      ['to', accountLink(t.to), { field: 'to' }],
      ['amount', moneySpan(t.amount, t.currency), { field: 'amount' }],
      ['currency', t.currency, { field: 'currency', mono: true }],
      ['description', t.description, { field: 'description' }],
      ['reason', t.reason, { field: 'reason' }],
      ['journal_id', t.journal_id, { field: 'journal_id', mono: true }],
      ['created_at', fmtClock(t.created_at), { title: t.created_at, field: 'created_at' }],
      ['completed_at', fmtClock(t.completed_at), { title: t.completed_at, field: 'completed_at' }],
    ]);
    setText($('transfer-detail-json'), JSON.stringify(t, null, 2));
  }

  function renderNoJournal(t) {
    D.journal = null;
    D.lines.clear();
    $('journal-lines-tbody').replaceChildren();
    $('journal-fields').replaceChildren();
    for (const id of ['journal-total-debit', 'journal-total-credit']) setText($(id), '');
    show($('journal-lines-table'), false);
    setText($('journal-none'), FINAL.has(t.status) ? `No journal: the transfer is ${t.status}.` : `No journal yet: the transfer is ${t.status}.`);
    show($('journal-none'), true);
  }

  function renderJournal(j, currency) {
    D.journal = j;
    show($('journal-none'), false);
    show($('journal-lines-table'), true);
    kv($('journal-fields'), [
      ['id', j.id, { field: 'id', mono: true }],
      ['external_ref', j.external_ref, { field: 'external_ref', mono: true }],
      ['posted_at', fmtClock(j.posted_at), { title: j.posted_at, field: 'posted_at' }],
    ]);
    const lines = Array.isArray(j.lines) ? j.lines : [];
    reconcile($('journal-lines-tbody'), lines.map((line, i) => ({ line, i })), (x) => String(x.i), D.lines,
      createJournalLineRow, (r, x) => updateJournalLineRow(r, x, currency));
    setMoney($('journal-total-debit'), sumMinor(lines.map((l) => l.debit)), currency);
    setMoney($('journal-total-credit'), sumMinor(lines.map((l) => l.credit)), currency);
  }

  function createJournalLineRow() {
    const r = {};
    r.account = h('td', { 'data-testid': 'journal-line-account' });
    r.debit = h('td', { class: 'num', 'data-testid': 'journal-line-debit' });
    r.credit = h('td', { class: 'num', 'data-testid': 'journal-line-credit' });
    r.el = h('tr', { 'data-testid': 'journal-line-row' }, r.account, r.debit, r.credit);
    return r;
  }

  function updateJournalLineRow(r, x, currency) {
    setAttr(r.el, 'data-index', x.i);
    setAttr(r.el, 'data-account', x.line.account);
    if (r.accountId !== x.line.account) { r.accountId = x.line.account; r.account.replaceChildren(accountLink(x.line.account)); }
    setMoney(r.debit, x.line.debit, currency);
    setMoney(r.credit, x.line.credit, currency);
  }

  function openTransfers(query) {
    D.code = null;
    if (query) {
      const q = new URLSearchParams(query);
      if (q.has('account')) setFilter('account', q.get('account').trim());
      if (q.has('status')) setFilter('status', q.get('status'));
      history.replaceState(null, '', '#/transfers');
    }
    kit.showView('transfers', 'Transfers');
  }

  function openTransfer(code) {
    if (D.code !== code) {
      D.code = code;
      D.transfer = null;
      D.journal = null;
      D.lines.clear();
      for (const id of ['journal-lines-tbody', 'journal-fields', 'transfer-detail-fields']) $(id).replaceChildren();
      for (const id of ['transfer-detail-json', 'journal-total-debit', 'journal-total-credit', 'journal-none']) setText($(id), '');
      setText($('transfer-detail-code'), code);
      stateBadge($('transfer-detail-status'), '');
      show($('transfer-detail-error'), false);
      show($('journal-none'), false);
    }
    kit.showView('transfer', code);
    window.scrollTo(0, 0);
  }

  // ------------------------------------------------------------------ form

  // A submission whose answer never came (the network, a timeout, a 5xx) is
  // retried with its key: the API answers the first acceptance again, so a
  // retry cannot make the transfer twice. Any answer, or a changed form,
  // starts a new submission with a new key.
  const F = { key: null, json: null };
  const R = { code: null }; // the receipt the result shows (followed until final)

  function readForm() {
    return {
      from: $('transfer-form-from').value.trim(),
      to: $('transfer-form-to').value.trim(),
      amount: $('transfer-form-amount').value.trim(),
      currency: $('transfer-form-currency').value.trim(),
      description: $('transfer-form-description').value.trim(),
    };
  }

  /** The retry hint, while the form still holds the submission that has a key. */
  function renderPendingKey() {
    const el = $('transfer-form-retry');
    const pending = Boolean(F.key) && transferJson(readForm()) === F.json;
    setText(el, pending ? `Submitting this transfer again resends Idempotency-Key ${F.key}, so it cannot be made twice.` : '');
    show(el, pending);
  }

  async function submitTransfer(ev) {
    ev.preventDefault();
    const err = $('transfer-form-error');
    flash(err, '', '');
    delete err.dataset.errorCode;
    delete err.dataset.retry;
    const f = readForm();
    if (!f.from || !f.to || !f.amount || !f.currency) {
      flash(err, 'Fill in from, to, amount and currency.', 'error');
      return;
    }
    // The result of the previous submission goes: this one is another.
    R.code = null;
    pollers.transferResult.stop();
    show($('transfer-form-result'), false);
    const json = transferJson(f);
    if (!(F.key && F.json === json)) {
      F.key = newIdempotencyKey();
      F.json = json;
    }
    const key = F.key;
    const btn = $('transfer-form-submit');
    btn.disabled = true;
    try {
      const { data } = await request('POST', '/api/transfers', undefined, { headers: { 'Idempotency-Key': key }, json });
      F.key = null;
      F.json = null;
      showResult(data);
      $('transfer-form-amount').value = '';
      $('transfer-form-description').value = '';
    } catch (e) {
      if (quiet(e)) return;
      const unsure = e.status === 0 || e.status >= 500;
      if (!unsure) { F.key = null; F.json = null; }
      flash(err, unsure ? `${e.message}: the transfer may have been accepted or not.` : e.message, 'error');
      err.dataset.errorCode = e.code || '';
      if (unsure) err.dataset.retry = 'same-key';
    } finally {
      btn.disabled = false;
      renderPendingKey();
      if (pollers.transfers.active) pollers.transfers.kick();
    }
  }

  function showResult(t) {
    R.code = (t && t.receipt_code) || null;
    renderResult(t);
    if (R.code && !FINAL.has(t.status)) pollers.transferResult.start();
    else pollers.transferResult.stop();
  }

  function renderResult(t) {
    const out = $('transfer-form-result');
    if (!t || !t.receipt_code) { show(out, false); return; }
    setAttr(out, 'data-receipt-code', t.receipt_code);
    setAttr(out, 'data-status', t.status);
    const link = $('transfer-result-code');
    setText(link, t.receipt_code);
    setAttr(link, 'href', transferHref(t.receipt_code));
    stateBadge($('transfer-result-status'), t.status);
    setText($('transfer-result-reason'), t.reason || '');
    show(out, true);
  }

  /** Follows the receipt the form got until the transfer is final. */
  async function followResult() {
    const code = R.code;
    if (!code) { pollers.transferResult.stop(); return; }
    const t = await api('GET', `/api/transfers/${encodeURIComponent(code)}`);
    if (R.code !== code) return;
    renderResult(t);
    if (FINAL.has(t.status)) {
      pollers.transferResult.stop();
      for (const p of [pollers.transfers, pollers.transfer]) if (p.active) p.kick();
    }
  }

  // ---------------------------------------------------------------- wiring

  const nav = listAndDetail({
    name: 'transfers', list, listEl: 'transfers-view', openList: openTransfers,
    detail: 'transfer', detailEl: 'transfer-detail-view', openDetail: openTransfer,
    detailPoller: poller(loadTransfer, TRANSFER_EVERY_MS),
    more: { transferResult: poller(followResult, RESULT_EVERY_MS) },
  });
  const { pollers } = nav;

  return {
    ...nav,
    reset() {
      T.account = '';
      T.status = '';
      list.reset();
      $('transfers-account-filter').value = '';
      $('transfers-status-filter').value = '';
      D.code = null;
      D.transfer = null;
      D.journal = null;
      D.lines.clear();
      $('journal-lines-tbody').replaceChildren();
      F.key = null;
      F.json = null;
      R.code = null;
      renderPendingKey();
      show($('transfer-form-result'), false);
      for (const id of ['transfers-lookup-result', 'transfers-list-error', 'transfer-form-error']) flash($(id), '', '');
    },
    wire() {
      $('transfers-account-filter-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        setFilter('account', $('transfers-account-filter').value.trim());
      });
      $('transfers-account-filter').addEventListener('change', (ev) => setFilter('account', ev.target.value.trim()));
      $('transfers-status-filter').addEventListener('change', (ev) => setFilter('status', ev.target.value));
      list.wire();
      $('transfers-lookup-form').addEventListener('submit', submitLookup);
      $('transfer-form').addEventListener('submit', submitTransfer);
      $('transfer-form').addEventListener('input', renderPendingKey);
    },
  };
}
