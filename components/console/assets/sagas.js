// The Sagas view: the list (status and definition filters), a saga's detail
// (its fields, input and output, its steps and history), rollback and retry.
// Every rule is the engine's: rollback applies when the saga's
// `can_roll_back` says so, refusals show the API's message.

import {
  $, h, api, quiet, poller, flash, setText, setAttr, show, reconcile, stateBadge, toneBadge, eventTone, kv, relSpan,
  prettyJson, compactJson, setOptions, parseTime, serverNow, fmtDuration, fmtMs, fmtClock, fmtNum, dash, gotoForm,
} from './kit.js';
import { listAndDetail, listView } from './list.js';
import { drawTimeline, timelineLegend } from './timeline.js';

const SAGAS_EVERY_MS = 2000;
const SAGA_EVERY_MS = 1500;
/** The statuses a saga ends in. */
const FINISHED = new Set(['completed', 'compensated', 'expired', 'failed']);

/**
 * The view module; `ctx` is the shell's (`pollers`, `showView`);
 * `addEventType(type)` tells the event stream's filter of a type the
 * definitions emit.
 */
export function sagasModule(ctx, { addEventType }) {
  // The list: one page, keyed by saga id.
  const S = {
    status: '',
    definition: '',
    definitions: null, // the stored definitions, once loaded
  };

  /** "waiting checkout " for the filters in force ("" for none). */
  const sagasWhat = () => [S.status, S.definition].filter(Boolean).map((x) => `${x} `).join('');

  const list = listView({
    name: 'sagas',
    path: '/api/sagas',
    items: 'sagas',
    every: SAGAS_EVERY_MS,
    key: (s) => s.id,
    create: createSagaRow,
    update: updateSagaRow,
    filters: () => ({ status: S.status, definition: S.definition }),
    alongside: () => ensureDefinitions(),
    empty: (L) => `No ${sagasWhat()}sagas${L.stack.length > 1 ? ' on this page' : ''}.`,
    range: (range) => range && `${range} ${sagasWhat()}sagas`,
  });
  const L = list.state;

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

  function setSagaFilter(field, value) {
    if (S[field] === value && L.stack.length === 1) return;
    S[field] = value;
    list.refilter();
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

  // One saga: its fields, steps and history.
  const G = {
    id: null,
    saga: null,
    stepRows: new Map(), // step name -> row refs
    eventRows: new Map(), // seq -> row refs
    busy: false, // an operator's action is under way
    events: [], // its history, oldest first
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
    drawTimeline($('saga-timeline'), $('saga-timeline-empty'), G.saga, G.events, serverNow());
    if (ev.status === 'rejected') throw ev.reason;
  }

  function showSagaPanels(on) {
    for (const id of ['saga-detail-body', 'saga-timeline-panel', 'saga-steps-panel', 'saga-history-panel']) show($(id), on);
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
      deadlineField(s),
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

  /**
   * The deadline of a saga still under way, with the time left ("in 59m");
   * a finished saga has no deadline any more: it shows when it ended (its
   * `updated_at`), and nothing that counts.
   */
  function deadlineField(s) {
    if (FINISHED.has(s.status)) {
      return ['deadline_at', s.updated_at ? h('span', { 'data-ended-at': s.updated_at }, `ended ${fmtClock(s.updated_at)}`) : null,
        { title: [s.deadline_at && `deadline was ${s.deadline_at}`, s.updated_at && `ended ${s.updated_at}`].filter(Boolean).join('; ') || null, field: 'deadline_at' }];
    }
    return ['deadline_at', s.deadline_at ? h('span', null, `${fmtClock(s.deadline_at)} (`, relSpan(s.deadline_at), ')') : null, { title: s.deadline_at, field: 'deadline_at' }];
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

  /** Retrying applies when the engine says so (the step's `can_retry`); the console never decides it. */
  function holdsSaga(s, st) {
    return Boolean(s && st && st.can_retry);
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
    G.events = events;
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


  function openSagas() {
    G.id = null;
    S.definitions = null; // new definitions may have been posted meanwhile
    ctx.showView('sagas', 'Sagas');
  }

  function openSaga(id) {
    if (G.id !== id) {
      G.id = id;
      G.saga = null;
      G.busy = false;
      G.events = [];
      for (const m of [G.stepRows, G.eventRows]) m.clear();
      for (const el of ['saga-steps-tbody', 'saga-history-tbody', 'saga-detail-fields', 'saga-timeline']) $(el).replaceChildren();
      for (const el of ['saga-detail-input', 'saga-detail-output', 'saga-detail-json', 'saga-history-count']) setText($(el), '');
      setText($('saga-detail-id'), id);
      stateBadge($('saga-detail-status'), '');
      $('saga-rollback-reason').value = '';
      renderRollback(null);
      flash($('saga-detail-message'), '', '');
      show($('saga-detail-error'), false);
      show($('saga-history-empty'), false);
    }
    ctx.showView('saga', id);
    window.scrollTo(0, 0);
  }

  // ------------------------------------------------------------------ wiring

  const nav = listAndDetail({
    name: 'sagas', list, listEl: 'sagas-view', openList: openSagas,
    detail: 'saga', detailEl: 'saga-detail-view', openDetail: openSaga,
    detailPoller: poller(loadSaga, SAGA_EVERY_MS),
  });
  const { pollers } = nav;

  return {
    ...nav,
    ensureDefinitions,
    /** Another view opens: no saga is open, and the definitions are read again next time. */
    leave() {
      G.id = null;
      S.definitions = null;
    },
    reset() {
      list.reset();
      S.status = '';
      S.definition = '';
      S.definitions = null;
      $('sagas-status-filter').value = '';
      $('sagas-definition-filter').value = '';
      G.id = null;
      G.saga = null;
      G.busy = false;
      G.stepRows.clear();
      G.eventRows.clear();
      G.events = [];
      $('saga-timeline').replaceChildren();
      $('saga-steps-tbody').replaceChildren();
      $('saga-history-tbody').replaceChildren();
      flash($('saga-detail-message'), '', '');
    },
    wire() {
      gotoForm('sagas', '#/sagas/');
      $('sagas-status-filter').addEventListener('change', (ev) => setSagaFilter('status', ev.target.value));
      $('sagas-definition-filter').addEventListener('change', (ev) => setSagaFilter('definition', ev.target.value));
      list.wire();
      $('saga-rollback-form').addEventListener('submit', submitRollback);
      $('saga-timeline-legend').replaceChildren(...timelineLegend());
    },
  };
}
