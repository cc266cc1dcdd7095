// The console's shared toolkit: DOM helpers, formatting, the server's clock,
// the API's fetch wrapper (the signed-in key, errors, a 401 signs out), the
// connection indicator, pollers that never overlap, keyed in-place lists and
// cursor paging. Every view module imports what it uses from here.
//
// Every value from the API reaches the DOM through textContent or
// setAttribute, never innerHTML.

export const TOKEN_KEY = 'stepwise.api_token';
export const PAGE_SIZE = 50;
const REQUEST_TIMEOUT_MS = 15000;

// ---------------------------------------------------------------- helpers

export const $ = (id) => document.getElementById(id);

/** Creates an element. Children and the `text` prop become text nodes. */
export function h(tag, props, ...children) {
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
export function setText(el, value) {
  const s = value === null || value === undefined ? '' : String(value);
  if (el.textContent !== s) el.textContent = s;
}

export function setAttr(el, name, value) {
  if (value === null || value === undefined) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== String(value)) {
    el.setAttribute(name, String(value));
  }
}

export function show(el, visible) {
  if (el.hidden === visible) el.hidden = !visible;
}

/** Shows a message; kind: 'ok' | 'error' | ''. Ok messages fade after a while. */
export function flash(el, text, kind) {
  clearTimeout(el._flashTimer);
  setText(el, text);
  el.dataset.kind = kind || '';
  show(el, Boolean(text));
  if (text && kind === 'ok') el._flashTimer = setTimeout(() => show(el, false), 8000);
}

// Server clock offset, from /api/status, so countdowns follow the server's clock.
let skewMs = 0;
/** Sets the offset of the server's clock from this one (ms). */
export function setSkew(ms) { skewMs = ms; }
export const serverNow = () => Date.now() + skewMs;

export const parseTime = (s) => {
  if (!s) return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : t;
};

export function fmtDuration(ms) {
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
export function fmtRelative(at, due) {
  if (at === null || at === undefined) return '—';
  const d = at - serverNow();
  if (Math.abs(d) < 1000) return 'now';
  return d > 0 ? `in ${fmtDuration(d)}` : `${due ? 'due ' : ''}${fmtDuration(-d)} ago`;
}

/** mm:ss left (or h:mm:ss). */
export function fmtCountdown(ms) {
  if (ms <= 0) return 'expired';
  const s = Math.ceil(ms / 1000);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss} left` : `${mm}:${ss} left`;
}

export function fmtClock(s) {
  const t = parseTime(s);
  if (t === null) return '—';
  const d = new Date(t);
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour12: false });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

export const fmtNum = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString());
export const dash = (v) => (v === null || v === undefined || v === '' ? '—' : String(v));

export function parseIds(text) {
  return text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
}

// -------------------------------------------------------------------- API

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Errors nobody needs to read: the 401 already shows the sign-in form. */
export const quiet = (e) => e instanceof ApiError && (e.status === 401 || e.code === 'signed_out');

/**
 * The signed-in key (`auth.token`, '' when signed out) and what a 401 does
 * (`auth.onUnauthorized(message)`: the shell signs out).
 */
export const auth = { token: '', onUnauthorized: null };
try { auth.token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { auth.token = ''; }

/**
 * Calls the API; answers `{status, data, text}` (data: the body as JSON, or
 * null; text: the body as it came); throws ApiError (status 0 =
 * network). A 401 signs out. `opts.headers`: more request headers;
 * `opts.json`: the body as JSON text, sent as it is (instead of `body`).
 */
export async function request(method, path, body, opts = {}) {
  if (!auth.token) throw new ApiError(401, 'unauthorized', 'not signed in');
  const sentWith = auth.token;
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
  let res;
  let text;
  try {
    const headers = { ...(opts.headers || {}), Authorization: `Bearer ${auth.token}`, Accept: 'application/json' };
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
  if (auth.token !== sentWith) throw new ApiError(0, 'signed_out', 'signed out meanwhile');
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = null; }
  }
  const err = data && typeof data === 'object' && data.error && typeof data.error === 'object' ? data.error : null;
  if (res.status === 401) {
    if (auth.token === sentWith && auth.onUnauthorized) auth.onUnauthorized('The API refused the token (401). Sign in again.');
    throw new ApiError(401, (err && err.code) || 'unauthorized', (err && err.message) || 'unauthorized');
  }
  if (!res.ok) {
    throw new ApiError(res.status, (err && err.code) || `http_${res.status}`,
      (err && err.message) || `HTTP ${res.status} ${res.statusText || ''}`.trim());
  }
  return { status: res.status, data, text };
}

/** Calls the API; answers the body (see `request`). */
export async function api(method, path, body, opts) {
  return (await request(method, path, body, opts)).data;
}

// ------------------------------------------------------------ connection

const conn = { lastOk: 0, error: null };
export function connOk() {
  conn.lastOk = Date.now();
  conn.error = null;
  renderConn();
}
export function connError(e) {
  if (quiet(e)) return;
  conn.error = e instanceof ApiError ? e.message : String(e);
  renderConn();
}
/** Forgets the connection's state (on sign-out). */
export function resetConn() {
  conn.lastOk = 0;
  conn.error = null;
}

export function renderConn() {
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
export function poller(fn, ms) {
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

/** Keyed, in-place update of a container's children. */
export function reconcile(container, items, keyOf, map, create, update) {
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

export function stateBadge(el, state) {
  setText(el, state || '');
  const cls = `badge s-${state || 'unknown'}`;
  if (el.className !== cls) el.className = cls;
}

/** A span the ticker keeps as "in 59m" / "3s ago" ("due 3s ago" when `due`). */
export function relSpan(at, due) {
  const t = parseTime(at);
  return h('span', { 'data-rel-at': t === null ? '' : String(t), 'data-due': due ? '1' : null, class: 'rel' }, fmtRelative(t, due));
}

export function kv(dl, pairs) {
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

export function took(a, b) {
  const ta = parseTime(a);
  const tb = parseTime(b);
  if (ta === null || tb === null) return '—';
  const ms = tb - ta;
  return ms < 1000 ? `${ms} ms` : fmtDuration(ms);
}

export function prettyJson(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') {
    try { return JSON.stringify(JSON.parse(v), null, 2); } catch (_) { return v; }
  }
  return JSON.stringify(v, null, 2);
}


/** Cursor paging (`{stack, next, loaded}`): Next pushes `next`, Prev pops. False when it cannot move. */
export function turnPage(p, delta) {
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
export function renderPagerOf(prefix, p) {
  $(`${prefix}-prev`).disabled = p.stack.length <= 1;
  $(`${prefix}-next`).disabled = !p.next;
  setText($(`${prefix}-page`), `Page ${p.stack.length}`);
}

export const currentCursor = (p) => p.stack[p.stack.length - 1];

/** "51–100" for the page of list state `p` (its `order`, `stack`, `loaded`); "" before it loads or when empty. */
export function pageRange(p) {
  const n = p.order.length;
  const first = (p.stack.length - 1) * PAGE_SIZE;
  return p.loaded && n ? `${fmtNum(first + 1)}–${fmtNum(first + n)}` : '';
}

/** A filter's `<select>`: "all" (value "") and `values` sorted, keeping `current` chosen (and listed). */
export function setOptions(sel, values, current) {
  const list = [...new Set(values)].sort();
  if (current && !list.includes(current)) list.push(current);
  if ([...sel.options].map((o) => o.value).join('\n') !== ['', ...list].join('\n')) {
    sel.replaceChildren(h('option', { value: '', text: 'all' }), ...list.map((v) => h('option', { value: v, text: v })));
  }
  if (sel.value !== current) sel.value = current;
}

/** "850 ms" under a second, else "1m 05s". */
export const fmtMs = (ms) => (ms === null || ms === undefined ? '—' : ms < 1000 ? `${ms} ms` : fmtDuration(ms));

/** An object for a cell: `key: value · key: value` (values as JSON unless strings); "—" for nothing. */
export function compactJson(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v !== 'object' || Array.isArray(v)) return typeof v === 'string' ? v : JSON.stringify(v);
  const parts = Object.entries(v).map(([k, x]) => `${k}: ${typeof x === 'string' ? x : JSON.stringify(x)}`);
  return parts.length ? parts.join(' · ') : '—';
}

/** A badge's colour for an event type (saga history and outbox). */
export function eventTone(type) {
  const t = String(type || '');
  if (/fail|deny/.test(t)) return 'err';
  if (/retry/.test(t)) return 'warn';
  if (/cancel|expire|compensat|rollback/.test(t)) return 'orange';
  if (/complete|settle|commit/.test(t)) return 'ok';
  return 'none';
}

export function toneBadge(el, text, tone) {
  setText(el, text || '');
  const cls = `badge tone-${tone}`;
  if (el.className !== cls) el.className = cls;
}


export function decodeHashPart(s) {
  try { return decodeURIComponent(s); } catch (_) { return s; }
}

/** `<prefix>-goto-form`: Enter opens `<hash><typed id>`. */
export function gotoForm(prefix, hash) {
  $(`${prefix}-goto-form`).addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $(`${prefix}-goto`).value.trim();
    if (id) location.hash = `${hash}${encodeURIComponent(id)}`;
  });
}

/**
 * A form's error and result boxes (by id): `clear()` empties both and the
 * error's code, `fail(e)` shows an API error with its code kept in
 * `data-error-code` (a test hook), unless signing out explains it.
 */
export function formBoxes(errId, okId) {
  const err = $(errId);
  const ok = $(okId);
  return {
    err,
    ok,
    clear() {
      flash(err, '', '');
      flash(ok, '', '');
      delete err.dataset.errorCode;
    },
    fail(e) {
      if (quiet(e)) return;
      flash(err, e.message, 'error');
      err.dataset.errorCode = e.code || '';
    },
  };
}
