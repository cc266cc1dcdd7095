// The Accounts view (CONTRACT section 7): the list, an account's detail with
// its newest lines, freeze and unfreeze, and the form that creates accounts.
// Every rule is the API's: the page shows its answers and its messages.

import { listAndDetail, listView } from './list.js';
import { setMoney } from './money.js';

const LIST_EVERY_MS = 2000;
const ACCOUNT_EVERY_MS = 2000;

/** The view module; `kit` is the console's shared toolkit (kit.js) and the shell's context (shell.js), as app.js hands it. */
export function accountsModule(kit) {
  const { $, h, api, request, quiet, poller, flash, formBoxes, setText, setAttr, show, reconcile, stateBadge, kv, fmtClock, dash } = kit;

  const list = listView({
    name: 'accounts',
    path: '/api/accounts',
    items: 'accounts',
    every: LIST_EVERY_MS,
    key: (a) => a.id,
    create: createAccountRow,
    update: updateAccountRow,
    empty: (L) => (L.stack.length > 1 ? 'No accounts on this page.' : 'No accounts yet.'),
    range: (range) => range && `${range} accounts`,
  });
  const L = list.state;
  const A = { id: null, account: null, lines: new Map() };

  function moneyCell(testId) {
    return h('td', { class: 'num', 'data-testid': testId });
  }

  function createAccountRow(a, id) {
    const r = {};
    r.link = h('a', { href: `#/accounts/${encodeURIComponent(id)}`, class: 'cell-id', 'data-testid': 'account-link', text: id });
    r.name = h('td', { class: 'ellip', 'data-testid': 'account-name' });
    r.currency = h('td', { class: 'mono', 'data-testid': 'account-currency' });
    r.status = h('span', { class: 'badge', 'data-testid': 'account-status' });
    r.balance = moneyCell('account-balance');
    r.held = moneyCell('account-held');
    r.available = moneyCell('account-available');
    r.negative = h('td', { 'data-testid': 'account-allow-negative' });
    r.freeze = h('button', { type: 'button', class: 'btn btn-xs btn-danger-outline', 'data-testid': 'account-freeze', 'data-account-id': id, text: 'Freeze' });
    r.unfreeze = h('button', { type: 'button', class: 'btn btn-xs', 'data-testid': 'account-unfreeze', 'data-account-id': id, text: 'Unfreeze' });
    r.freeze.addEventListener('click', () => accountAction(id, 'freeze', $('accounts-message')));
    r.unfreeze.addEventListener('click', () => accountAction(id, 'unfreeze', $('accounts-message')));
    r.el = h('tr', { 'data-testid': 'account-row', 'data-account-id': id },
      h('td', null, r.link), r.name, r.currency, h('td', null, r.status),
      r.balance, r.held, r.available, r.negative,
      h('td', { class: 'col-actions' }, h('span', { class: 'btn-group', 'data-needs': 'accounts.freeze' }, r.freeze, r.unfreeze)));
    return r;
  }

  /** What applies is the API's `allowed_actions`; the console never decides it. */
  function renderActions(freeze, unfreeze, a, busy) {
    const allowed = (a && a.allowed_actions) || [];
    freeze.disabled = busy || !allowed.includes('freeze');
    unfreeze.disabled = busy || !allowed.includes('unfreeze');
  }

  function updateAccountRow(r, a) {
    setAttr(r.el, 'data-status', a.status);
    setText(r.name, dash(a.name));
    setAttr(r.name, 'title', a.name || null);
    setText(r.currency, a.currency);
    stateBadge(r.status, a.status);
    setMoney(r.balance, a.balance, a.currency);
    setMoney(r.held, a.held, a.currency);
    setMoney(r.available, a.available, a.currency);
    setText(r.negative, a.allow_negative ? 'yes' : 'no');
    renderActions(r.freeze, r.unfreeze, a, r.el.dataset.busy === '1');
    r.account = a;
  }

  /** `POST /api/accounts/{id}/freeze|unfreeze`; the answer (the account) is shown at once. */
  async function accountAction(id, action, msg) {
    const r = L.rows.get(id);
    if (r) { r.el.dataset.busy = '1'; renderActions(r.freeze, r.unfreeze, r.account, true); }
    const inDetail = A.id === id;
    if (inDetail) renderActions($('account-detail-freeze'), $('account-detail-unfreeze'), A.account, true);
    try {
      const a = await api('POST', `/api/accounts/${encodeURIComponent(id)}/${action}`);
      const rr = L.rows.get(id);
      if (rr && a && a.id === id) rr.account = a;
      if (A.id === id && a && a.id === id) renderAccount(a);
      flash(msg, `${action === 'freeze' ? 'Froze' : 'Unfroze'} ${id}${a && a.status ? ` (now ${a.status})` : ''}.`, 'ok');
      delete msg.dataset.errorCode;
    } catch (e) {
      if (!quiet(e)) {
        flash(msg, `${action === 'freeze' ? 'Freeze' : 'Unfreeze'} ${id}: ${e.message}`, 'error');
        msg.dataset.errorCode = e.code || '';
      }
    } finally {
      const rr = L.rows.get(id);
      if (rr) { delete rr.el.dataset.busy; if (rr.account) updateAccountRow(rr, rr.account); }
      if (A.id === id) renderActions($('account-detail-freeze'), $('account-detail-unfreeze'), A.account, false);
      if (pollers.accounts.active) pollers.accounts.kick();
      if (pollers.account.active) pollers.account.kick();
    }
  }

  // ------------------------------------------------------------- one account

  async function loadAccount() {
    const id = A.id;
    if (!id) return;
    let a;
    try {
      a = await api('GET', `/api/accounts/${encodeURIComponent(id)}`);
    } catch (e) {
      if (A.id !== id) return;
      if (e.status === 404 || e.status === 400) {
        flash($('account-detail-error'), e.message || `No account ${id}.`, 'error');
        $('account-detail-error').dataset.errorCode = e.code || '';
        show($('account-detail-body'), false);
        show($('account-lines-panel'), false);
        stateBadge($('account-detail-status'), '');
        A.account = null;
        renderActions($('account-detail-freeze'), $('account-detail-unfreeze'), null, false);
        return;
      }
      throw e;
    }
    if (A.id !== id) return;
    show($('account-detail-error'), false);
    show($('account-detail-body'), true);
    show($('account-lines-panel'), true);
    renderAccount(a);
  }

  function moneySpan(n, currency) {
    const el = h('span');
    setMoney(el, n, currency);
    return el;
  }

  function renderAccount(a) {
    A.account = a;
    setText($('account-detail-id'), a.id);
    stateBadge($('account-detail-status'), a.status);
    renderActions($('account-detail-freeze'), $('account-detail-unfreeze'), a, false);
    kv($('account-detail-fields'), [
      ['name', a.name, { field: 'name' }],
      ['currency', a.currency, { field: 'currency', mono: true }],
      ['status', a.status, { field: 'status' }],
      ['allow_negative', a.allow_negative ? 'yes' : 'no', { field: 'allow_negative' }],
      ['balance', moneySpan(a.balance, a.currency), { field: 'balance' }],
      ['held', moneySpan(a.held, a.currency), { field: 'held' }],
      ['available', moneySpan(a.available, a.currency), { field: 'available' }],
    ]);
    setText($('account-detail-json'), JSON.stringify(a, null, 2));
    const lines = keyedLines(Array.isArray(a.lines) ? a.lines : []);
    reconcile($('account-lines-tbody'), lines, (x) => x.key, A.lines, createLineRow, (r, x) => updateLineRow(r, x.line, a.currency));
    show($('account-lines-empty'), lines.length === 0);
    setText($('account-lines-count'), kit.fmtNum(lines.length));
  }

  /** Each line with a key: its journal id, and a count should a journal post two lines here. */
  function keyedLines(lines) {
    const seen = new Map();
    return lines.map((line) => {
      const n = (seen.get(line.journal_id) || 0) + 1;
      seen.set(line.journal_id, n);
      return { key: n === 1 ? `${line.journal_id}` : `${line.journal_id}#${n}`, line };
    });
  }

  function createLineRow(x, key) {
    const r = {};
    r.posted = h('td', { 'data-testid': 'line-posted' });
    r.journal = h('td', { class: 'mono num', 'data-testid': 'line-journal' });
    r.ref = h('td', { class: 'mono', 'data-testid': 'line-ref' });
    r.debit = h('td', { class: 'num', 'data-testid': 'line-debit' });
    r.credit = h('td', { class: 'num', 'data-testid': 'line-credit' });
    r.el = h('tr', { 'data-testid': 'account-line-row', 'data-journal-id': x.line.journal_id, 'data-key': key }, r.posted, r.journal, r.ref, r.debit, r.credit);
    return r;
  }

  function updateLineRow(r, l, currency) {
    setAttr(r.el, 'data-external-ref', l.external_ref || null);
    setText(r.posted, fmtClock(l.posted_at));
    setAttr(r.posted, 'title', l.posted_at || null);
    setText(r.journal, dash(l.journal_id));
    if (r.refValue !== l.external_ref) {
      r.refValue = l.external_ref;
      r.ref.replaceChildren(l.external_ref
        ? h('a', { href: `#/transfers/${encodeURIComponent(l.external_ref)}`, title: `transfer ${l.external_ref}`, text: l.external_ref })
        : '—');
    }
    setMoney(r.debit, l.debit, currency);
    setMoney(r.credit, l.credit, currency);
  }

  function openAccounts() {
    A.id = null;
    kit.showView('accounts', 'Accounts');
  }

  function openAccount(id) {
    if (A.id !== id) {
      A.id = id;
      A.account = null;
      A.lines.clear();
      $('account-lines-tbody').replaceChildren();
      $('account-detail-fields').replaceChildren();
      setText($('account-detail-json'), '');
      setText($('account-detail-id'), id);
      setText($('account-lines-count'), '0');
      stateBadge($('account-detail-status'), '');
      renderActions($('account-detail-freeze'), $('account-detail-unfreeze'), null, false);
      setAttr($('account-detail-transfers'), 'href', `#/transfers?account=${encodeURIComponent(id)}`);
      flash($('account-detail-message'), '', '');
      show($('account-detail-error'), false);
      show($('account-lines-empty'), false);
    }
    kit.showView('account', id);
    window.scrollTo(0, 0);
  }

  // ----------------------------------------------------------- create form

  async function submitCreate(ev) {
    ev.preventDefault();
    const boxes = formBoxes('account-form-error', 'account-form-result');
    const { err, ok } = boxes;
    boxes.clear();
    const id = $('account-form-id').value.trim();
    if (!id) {
      flash(err, 'Enter the account id.', 'error');
      $('account-form-id').focus();
      return;
    }
    const body = { id, currency: $('account-form-currency').value.trim(), allow_negative: $('account-form-allow-negative').checked };
    const name = $('account-form-name').value.trim();
    if (name) body.name = name;
    const btn = $('account-form-submit');
    btn.disabled = true;
    try {
      const { status, data } = await request('POST', '/api/accounts', body);
      const shownId = (data && data.id) || id;
      ok.dataset.status = String(status);
      flash(ok, status === 201
        ? `Created account ${shownId} (${dash(data && data.currency)}).`
        : `Account ${shownId} already exists with these details.`, 'ok');
      $('account-form-id').value = '';
      $('account-form-name').value = '';
      $('account-form-allow-negative').checked = false;
    } catch (e) {
      boxes.fail(e);
    } finally {
      btn.disabled = false;
      if (pollers.accounts.active) pollers.accounts.kick();
    }
  }

  // ------------------------------------------------------------------ wiring

  const nav = listAndDetail({
    name: 'accounts', list, listEl: 'accounts-view', openList: openAccounts,
    detail: 'account', detailEl: 'account-detail-view', openDetail: openAccount,
    detailPoller: poller(loadAccount, ACCOUNT_EVERY_MS),
  });
  const { pollers } = nav;

  return {
    ...nav,
    reset() {
      list.reset();
      A.id = null;
      A.account = null;
      A.lines.clear();
      $('account-lines-tbody').replaceChildren();
      for (const id of ['accounts-message', 'account-detail-message', 'account-form-error', 'account-form-result']) flash($(id), '', '');
    },
    wire() {
      list.wire();
      kit.gotoForm('accounts', '#/accounts/');
      for (const action of ['freeze', 'unfreeze']) {
        $(`account-detail-${action}`).addEventListener('click', () => {
          if (A.id) accountAction(A.id, action, $('account-detail-message'));
        });
      }
      $('account-form').addEventListener('submit', submitCreate);
    },
  };
}
