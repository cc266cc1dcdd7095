// One list view: a table of one page of an API list, keyed rows updated in
// place, a cursor pager (Next pushes the page's cursor, Prev pops it) and a
// poller that refreshes the page while the view is open. The workers, sagas,
// accounts, transfers and subscriptions lists are each one of these.
//
// The elements are the list's contract (components/console/README.md), named
// from its `name`: `<name>-table`, `<name>-tbody`, `<name>-empty`,
// `<name>-prev`, `<name>-next`, `<name>-page` and `<name>-range`.

import { $, PAGE_SIZE, api, currentCursor, decodeHashPart, pageRange, poller, reconcile, renderPagerOf, setText, show, turnPage } from './kit.js';

/**
 * A list view. `o`:
 * - `name`: the test-id prefix of its elements;
 * - `path`: the API list (`/api/workers`), answered `{[items]: [...], [next]: cursor}`;
 * - `items`, `next` (default `next_cursor`), `cursor` (the query parameter, default `cursor`);
 * - `every`: the polling period (ms);
 * - `key(item)`, `create(item, key)`, `update(refs, item)`: the rows;
 * - `filters()`: the query's filters (`{state: 'paused'}`; empty values are left out);
 * - `empty(L)`, `range(text, L)`: the empty message and the pager's range ("1–50" → what it shows);
 * - optional `alongside()`: a promise fetched with each page (the sagas' definitions);
 * - optional `refused(e)`: true when an error answers the page with no rows (a filter the API refuses);
 * - optional `accepted()`: a page came;
 * - optional `rendered(list)`: after each render.
 */
export function listView(o) {
  const L = {
    stack: [null], // cursors of the pages seen; the last is the current page
    next: null,
    rows: new Map(), // key -> row refs
    order: [],
    loaded: false,
  };
  const filters = () => (o.filters ? o.filters() : {});
  const pageKey = () => `${JSON.stringify(filters())}|${currentCursor(L) || ''}`;

  async function load() {
    const key = pageKey();
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const [k, v] of Object.entries(filters())) if (v) q.set(k, v);
    const cursor = currentCursor(L);
    if (cursor) q.set(o.cursor || 'cursor', cursor);
    let data;
    try {
      [data] = await Promise.all([api('GET', `${o.path}?${q}`), o.alongside ? o.alongside() : null]);
    } catch (e) {
      if (key !== pageKey()) return;
      if (o.refused && o.refused(e)) {
        L.next = null;
        L.loaded = true;
        render([]);
        return;
      }
      throw e;
    }
    if (key !== pageKey()) return; // the page or a filter changed meanwhile
    if (o.accepted) o.accepted();
    L.next = (data && data[o.next || 'next_cursor']) || null;
    L.loaded = true;
    render(Array.isArray(data && data[o.items]) ? data[o.items] : []);
  }

  function render(list) {
    L.order = list.map(o.key);
    reconcile($(`${o.name}-tbody`), list, o.key, L.rows, o.create, o.update);
    $(`${o.name}-table`).classList.remove('loading');
    show($(`${o.name}-empty`), list.length === 0);
    setText($(`${o.name}-empty`), o.empty(L));
    renderPager();
    if (o.rendered) o.rendered(list);
  }

  function renderPager() {
    renderPagerOf(o.name, L);
    setText($(`${o.name}-range`), o.range(pageRange(L), L));
  }

  /** A new filter or page: back to a loading state and fetch it now. */
  function reload() {
    L.loaded = false;
    $(`${o.name}-table`).classList.add('loading');
    renderPager();
    p.kick();
  }

  const p = poller(load, o.every);

  const self = {
    state: L,
    poller: p,
    renderPager,
    reload,
    /** Next (1) or Prev (-1). */
    turn(delta) {
      if (turnPage(L, delta)) reload();
    },
    /** A filter changed: back to page 1. */
    refilter() {
      L.stack = [null];
      L.next = null;
      reload();
    },
    /** Forgets everything (sign-out). */
    reset() {
      L.rows.clear();
      L.order = [];
      L.stack = [null];
      L.next = null;
      L.loaded = false;
      $(`${o.name}-tbody`).replaceChildren();
    },
    /** The pager's buttons. */
    wire() {
      $(`${o.name}-prev`).addEventListener('click', () => self.turn(-1));
      $(`${o.name}-next`).addEventListener('click', () => self.turn(1));
    },
  };
  return self;
}

/**
 * The navigation of a list and the detail view of one of its items: the
 * views (both under the list's tab), their pollers (the list's own, the
 * detail's, and any `more`), and the routes `#/<name>` (with an optional
 * `?query`, passed to `openList`) and `#/<name>/<id>` (the id decoded).
 * `o`: `name`, `list` (a `listView`), `detail` (the detail view's name),
 * `listEl`, `detailEl`, `detailPoller`, optional `more`, `openList(query)`,
 * `openDetail(id)`, optional `listRoute` (false: the list has no route of
 * its own, it opens as the fallback).
 */
export function listAndDetail(o) {
  const detailRe = new RegExp(`^#/${o.name}/(.+)$`);
  const listRe = new RegExp(`^#/${o.name}/?(?:\\?(.*))?$`);
  return {
    views: {
      [o.name]: { el: o.listEl, poller: o.name, tab: o.name },
      [o.detail]: { el: o.detailEl, poller: o.detail, tab: o.name },
    },
    pollers: { [o.name]: o.list.poller, [o.detail]: o.detailPoller, ...(o.more || {}) },
    route(hash) {
      let m;
      if ((m = detailRe.exec(hash))) o.openDetail(decodeHashPart(m[1]));
      else if (o.listRoute !== false && (m = listRe.exec(hash))) o.openList(m[1]);
      else return false;
      return true;
    },
  };
}
