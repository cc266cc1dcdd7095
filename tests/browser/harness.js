// The browser tests' harness: starts the real `stepwise` runner like the Rust
// end-to-end harness does (tests/src/lib.rs), launches headless Chromium
// through playwright-core, and waits by polling with deadlines, never by
// sleeping for a fixed time.
//
// Everything is built beforehand by scripts/test (or scripts/build); this only
// checks that the runner binary is there.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The runner binary. */
export const RUNNER = join(ROOT, 'target/release/stepwise');

/** How often the app ticks in tests (as in tests/src/app.rs). */
export const TICK_MS = 50;

/** Where screenshots always go. */
export const SHOTS_DIR = join(ROOT, 'target/browser');

/** The Chromium the tests drive (Debian's `chromium` package). */
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// The machine's network is closed: without these Chromium hangs on
// connections it tries to make by itself.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Resolves after `ms` (only used between polls, never to wait for something). */
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` until it returns a truthy value (which it returns), failing
 * after `timeout` ms with `what` and the last value or error seen.
 */
export async function until(what, fn, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last;
  let step = 10;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = `last value: ${JSON.stringify(v)}`;
    } catch (e) {
      last = `last error: ${e && e.message ? e.message.split('\n')[0] : e}`;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (${last})`);
    await pause(step);
    step = Math.min(step * 2, 100);
  }
}

// Runners still alive when the process goes away are killed with it.
const live = new Set();
function killAll() {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { killAll(); process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1)); });
}

/** A port of 127.0.0.1 that was free a moment ago. */
async function freePort() {
  const srv = createServer();
  await new Promise((r, j) => { srv.once('error', j); srv.listen(0, '127.0.0.1', r); });
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * Spawns `stepwise up` for `manifest` listening on `listen`, with `env`
 * added, logging to `logPath`; resolves to `{child, origin}` once it prints
 * `Serving http://ADDR` (up to `timeout` ms: a cold start compiles every component).
 */
async function spawnApp({ manifest, listen, stateDir, env, logPath, extra = [], timeout }) {
  const log = createWriteStream(logPath);
  const args = [
    'up',
    '--manifest', join(ROOT, manifest),
    '--listen', listen,
    '--state-dir', stateDir,
    '--cache-dir', join(ROOT, 'target/e2e-cache'),
    ...extra,
  ];
  const child = spawn(RUNNER, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.stderr.pipe(log);
  const lines = createInterface({ input: child.stdout });
  let timer;
  try {
    const origin = await new Promise((resolveAddr, reject) => {
      timer = setTimeout(() => reject(new Error(`${manifest}: the runner did not print its address within ${timeout} ms`)), timeout);
      lines.on('line', (line) => {
        const m = /^Serving (http:\/\/\S+)/.exec(line.trim());
        if (m) resolveAddr(m[1].replace(/\/+$/, ''));
      });
      child.once('error', (e) => reject(new Error(`cannot spawn the runner: ${e.message}`)));
      child.once('exit', (code, signal) => reject(new Error(`${manifest}: the runner exited (${signal || code}) before serving`)));
    });
    return { child, origin };
  } catch (e) {
    child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', r)));
    const tail = readLog(logPath).split('\n').slice(-40).join('\n');
    throw new Error(`${e.message}\n--- runner stderr (tail) ---\n${tail}`);
  } finally {
    clearTimeout(timer);
  }
}

/** The services Stepwise calls, each pointed at the sandbox app. */
const SERVICE_URLS = ['UPSTREAM', 'USERS', 'PRODUCTS', 'PAYMENT', 'PAYMENT_API', 'WALLET', 'RISK', 'BETTING'];

/**
 * A running Stepwise (`spin.toml`) on a free port with a fresh state dir,
 * beside a sandbox app (`components/sandbox/spin.toml`) of its own.
 */
export class Runner {
  constructor(child, origin, stateDir, logPath, token, sandbox) {
    this.child = child;
    /** `http://127.0.0.1:PORT` */
    this.origin = origin;
    this.stateDir = stateDir;
    this.logPath = logPath;
    this.token = token;
    /** `{child, origin}` of the sandbox app. */
    this.sandbox = sandbox;
    this.exited = new Promise((r) => {
      if (child.exitCode !== null || child.signalCode !== null) r();
      else child.once('exit', () => r());
    });
  }

  /**
   * Starts the sandbox, then Stepwise with the API token `token`, ticking
   * every TICK_MS, every service pointed at the sandbox; `vars` are more of
   * the app's variables (`{event_destinations: ...}`, as SPIN_VARIABLE_*).
   */
  static async start({ token = `browser-${randomBytes(12).toString('hex')}`, timeout = 120000, vars = {} } = {}) {
    if (!existsSync(RUNNER)) {
      throw new Error(`${RUNNER} is missing: build first with scripts/build (scripts/test does it for you)`);
    }
    const stateDir = await mkdtemp(join(tmpdir(), 'stepwise-browser-'));
    const midtransKey = `SB-Mid-server-browser-${randomBytes(8).toString('hex')}`;
    const port = await freePort();
    let sandbox;
    try {
      sandbox = await spawnApp({
        manifest: 'components/sandbox/spin.toml',
        listen: '127.0.0.1:0',
        stateDir: join(stateDir, 'sandbox'),
        logPath: join(stateDir, 'sandbox.log'),
        env: { SPIN_VARIABLE_MIDTRANS_SERVER_KEY: midtransKey, SPIN_VARIABLE_STEPWISE_URL: `http://127.0.0.1:${port}`, STEPWISE_LOG: 'warn' },
        timeout,
      });
      const env = { SPIN_VARIABLE_API_TOKEN: token, SPIN_VARIABLE_MIDTRANS_SERVER_KEY: midtransKey, STEPWISE_LOG: 'info' };
      for (const s of SERVICE_URLS) env[`SPIN_VARIABLE_${s}_URL`] = sandbox.origin;
      for (const [name, value] of Object.entries(vars)) env[`SPIN_VARIABLE_${name.toUpperCase()}`] = value;
      const logPath = join(stateDir, 'runner.log');
      const app = await spawnApp({
        manifest: 'spin.toml',
        listen: `127.0.0.1:${port}`,
        stateDir: join(stateDir, 'state'),
        logPath,
        env,
        extra: ['--tick-ms', String(TICK_MS)],
        timeout,
      });
      return new Runner(app.child, app.origin, stateDir, logPath, token, sandbox);
    } catch (e) {
      if (sandbox) sandbox.child.kill('SIGKILL');
      await rm(stateDir, { recursive: true, force: true });
      throw e;
    }
  }

  /** `origin + path`. */
  url(path) {
    return `${this.origin}${path}`;
  }

  /**
   * A request with a JSON body (or none) and more `headers`; answers
   * `{status, body}` with the body parsed when it is JSON.
   */
  async fetch(method, path, body, { auth = false, key = this.token, headers: more = {} } = {}) {
    const headers = { ...more };
    if (auth) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    // `/sandbox/...` is the sandbox app's; everything else Stepwise's.
    const origin = path.startsWith('/sandbox/') ? this.sandbox.origin : this.origin;
    const res = await fetch(`${origin}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30000),
    });
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    return { status: res.status, body: json, text };
  }

  /** An authenticated control API call. */
  api(method, path, body) {
    return this.fetch(method, path, body, { auth: true });
  }

  /** Scripts the sandbox upstream for one binding (components/sandbox/README.md). */
  async script(bindingId, script) {
    const a = await this.fetch('PUT', `/sandbox/bindings/${encodeURIComponent(bindingId)}`, script);
    if (a.status !== 200) throw new Error(`sandbox script for ${bindingId}: ${a.status} ${a.text}`);
    return a.body;
  }

  /** The runner's stderr so far. */
  logs() {
    return readLog(this.logPath);
  }

  /** Stops the runner and the sandbox (SIGTERM, then SIGKILL after `graceMs`) and removes the state dir. Safe to call twice. */
  async stop(graceMs = 5000) {
    const sb = this.sandbox.child;
    if (sb.exitCode === null && sb.signalCode === null) sb.kill('SIGKILL');
    const { child } = this;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(t);
    }
    await rm(this.stateDir, { recursive: true, force: true });
  }
}

/**
 * A webhook receiver: a plain HTTP server on a free port of 127.0.0.1, in
 * this process (a peer of the app, as a subscriber's endpoint would be). It
 * answers every POST 204, or 500 with FAILING_ANSWER while `failing` is set,
 * and keeps what it got: `{id, seq, type, status}` per request, in order.
 */
export class Receiver {
  static FAILING_ANSWER = 'receiver failing on purpose: try later';

  constructor(server) {
    this.server = server;
    this.failing = false;
    /** Every request, in the order they came. */
    this.received = [];
  }

  static async start() {
    const receiver = new Receiver(null);
    const server = createHttpServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        let event = null;
        try { event = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { event = null; }
        const status = receiver.failing ? 500 : 204;
        receiver.received.push({
          id: req.headers['webhook-id'] || null,
          seq: event && typeof event.seq === 'number' ? event.seq : null,
          type: event && event.type,
          path: req.url,
          status,
        });
        if (status === 500) {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(Receiver.FAILING_ANSWER);
        } else {
          res.writeHead(204);
          res.end();
        }
      });
    });
    await new Promise((r, j) => { server.once('error', j); server.listen(0, '127.0.0.1', r); });
    receiver.server = server;
    return receiver;
  }

  /** `http://127.0.0.1:PORT`: what event_destinations names. */
  get origin() {
    return `http://127.0.0.1:${this.server.address().port}`;
  }

  url(path) {
    return `${this.origin}${path}`;
  }

  /** The requests answered 2xx. */
  delivered() {
    return this.received.filter((r) => r.status < 300);
  }

  /** How many times `seq` was delivered with a 2xx. */
  deliveredCount(seq) {
    return this.delivered().filter((r) => r.seq === seq).length;
  }

  stop() {
    return new Promise((r) => {
      this.server.closeAllConnections?.();
      this.server.close(() => r());
    });
  }
}

function readLog(path) {
  try { return readFileSync(path, 'utf8'); } catch { return ''; }
}

/** Launches headless Chromium. */
export function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (scripts/test does it for you)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60000 });
}

/**
 * Saves a screenshot as target/browser/<name>.png, and also as
 * docs/<name>.png when UPDATE_SCREENSHOTS=1. `target` is a Page or a Locator.
 */
export async function screenshot(target, name) {
  mkdirSync(SHOTS_DIR, { recursive: true });
  const path = join(SHOTS_DIR, `${name}.png`);
  await target.screenshot({ path, animations: 'disabled' });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync(join(ROOT, 'docs'), { recursive: true });
    await copyFile(path, join(ROOT, 'docs', `${name}.png`));
  }
  return path;
}
