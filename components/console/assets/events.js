// The Events view: follows the outbox (`GET /api/events?after=`) from the
// start, reading every event once and in order, and shows the newest 500,
// newest first, with a type filter.

import { $, h, api, poller, setText, setAttr, show, reconcile, toneBadge, eventTone, compactJson, setOptions, fmtClock, fmtNum, dash } from './kit.js';

const EVENTS_EVERY_MS = 1500;
const EVENTS_KEEP = 500; // the newest events kept on the page
const EVENTS_PAGE = 500; // per request
const EVENTS_PAGES_PER_POLL = 10; // catching up a long outbox: at most this many requests per poll
const EVENT_TYPES = ['committed', 'settled', 'cancelled', 'expired', 'transfer.completed', 'transfer.failed'];

/**
 * The view module; `ctx` is the shell's (`showView`, `ensureDefinitions`:
 * the sagas' definitions, which name the event types they emit, and
 * `forgetSaga`).
 */
export function eventsModule(ctx) {
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
    await ctx.ensureDefinitions();
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

  function openEvents() {
    ctx.forgetSaga(); // no saga is open; the definitions are read again
    ctx.showView('events', 'Events');
  }

  const pollers = { events: poller(loadEvents, EVENTS_EVERY_MS) };

  return {
    views: { events: { el: 'events-view', poller: 'events', tab: 'events' } },
    pollers,
    addEventType,
    route(hash) {
      if (!/^#\/events\/?$/.test(hash)) return false;
      openEvents();
      return true;
    },
    enter() {
      renderEventTypes();
    },
    reset() {
      E.type = '';
      E.gen += 1;
      resetEvents();
      $('events-type-filter').value = '';
    },
    wire() {
      $('events-type-filter').addEventListener('change', (ev) => setEventType(ev.target.value));
    },
  };
}
