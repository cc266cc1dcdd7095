// The operator console in headless Chromium against the real runner, the real
// components and the sandbox upstream: sign in, start workers, watch them
// move, pause and resume one, answer an OTP (a wrong format first), stop all.
// The data-testid hooks are the console's contract (components/console/README.md).
//
// The tests of this file run in order on one runner and one page: each goes on
// from where the previous one left the console.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, Runner, screenshot, until } from './harness.js';

const IDS = ['br-1', 'br-2', 'br-otp'];
const OTP_BINDING = 'br-otp';
const RIGHT_OTP = '123456'; // the sandbox's default
const WRONG_FORMAT_OTP = '12';

let runner;
let browser;
let page;
const pageErrors = [];
const foreignRequests = [];
const consoleErrors = [];

const row = (id) => page.locator(`[data-testid=worker-row][data-binding-id="${id}"]`);
const cell = (id, testId) => row(id).getByTestId(testId);
/** A cell's number ("1,234" → 1234); NaN for "—". */
const num = async (locator) => {
  const digits = ((await locator.textContent({ timeout: 2000 })) || '').replace(/\D/g, '');
  return digits === '' ? NaN : Number(digits);
};
const text = async (locator) => ((await locator.textContent({ timeout: 2000 })) || '').trim();
const visible = (locator) => locator.isVisible();

/** Waits until the locator's text, trimmed, equals `want` (or matches it, for a RegExp). */
function waitText(locator, want, what, timeout) {
  return until(what, async () => {
    const t = await text(locator);
    return want instanceof RegExp ? want.test(t) : t === want;
  }, timeout);
}

/** Waits until the cell's number is greater than `than`; answers it. */
function waitMore(locator, than, what, timeout) {
  return until(what, async () => {
    const n = await num(locator);
    return n > than ? n : null;
  }, timeout);
}

// A cold start compiles every component (target/e2e-cache is shared with the
// Rust end-to-end tests, so it is usually warm); each test is bounded on its own.
const TEST = { timeout: 30000 };

describe('operator console', () => {
  before(async () => {
    runner = await Runner.start();
    browser = await launchBrowser();
    const context = await browser.newContext({
      viewport: { width: 1360, height: 720 },
      deviceScaleFactor: 1,
      locale: 'en-US',
      colorScheme: 'light',
      reducedMotion: 'reduce',
    });
    page = await context.newPage();
    page.setDefaultTimeout(10000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('request', (r) => {
      const url = r.url();
      if (url.startsWith('data:')) return; // inline (the favicon): no request leaves the page
      let origin;
      try { origin = new URL(url).origin; } catch { origin = url; }
      if (origin !== runner.origin) foreignRequests.push(`${r.method()} ${url}`);
    });
  }, { timeout: 180000 });

  after(async () => {
    // Always, even when a test failed: close the browser and stop the runner.
    try {
      if (browser) await browser.close();
    } finally {
      if (runner) await runner.stop();
    }
  }, { timeout: 30000 });

  test('sign in: a wrong token is refused, the right one opens the console', TEST, async () => {
    await page.goto(runner.url('/'));
    const signin = page.getByTestId('signin');
    await signin.waitFor({ state: 'visible' });
    assert.equal(await visible(page.getByTestId('app')), false, 'the console is hidden before sign-in');

    await page.getByTestId('signin-token').fill('not-the-token');
    await page.getByTestId('signin-submit').click();
    const message = page.getByTestId('signin-message');
    await waitText(message, 'That token was refused (401).', 'the wrong-token message');
    assert.equal(await visible(message), true);
    assert.equal(await visible(page.getByTestId('app')), false, 'a wrong token does not open the console');
    assert.equal(await visible(signin), true);

    await page.getByTestId('signin-token').fill(runner.token);
    await page.getByTestId('signin-submit').click();
    await page.getByTestId('app').waitFor({ state: 'visible' });
    await signin.waitFor({ state: 'hidden' });
    await until('the connection indicator to be ok', async () =>
      (await page.getByTestId('conn-status').getAttribute('data-conn')) === 'ok');
    await waitText(page.getByTestId('status-total'), '0', 'the status bar to show no workers');
    await page.getByTestId('workers-empty').waitFor({ state: 'visible' });
    await page.getByTestId('otp-empty').waitFor({ state: 'visible' });
    assert.equal(
      await page.evaluate(() => sessionStorage.getItem('stepwise.api_token')),
      runner.token,
      'the token is kept in session storage',
    );
  });

  test('the start form starts three workers and they move', TEST, async () => {
    // br-otp's first transaction asks for an OTP, then it succeeds forever.
    await runner.script(OTP_BINDING, { outcomes: ['otp'], then: 'success' });

    await page.getByTestId('start-binding-ids').fill(IDS.join('\n'));
    await page.getByTestId('start-policy-interval_ms').fill('200');
    await page.getByTestId('start-submit').click();
    await waitText(page.getByTestId('start-result'), `Started 3 workers: ${IDS.join(', ')}`, 'the start result');
    assert.equal(await page.getByTestId('start-binding-ids').inputValue(), '', 'the id box is cleared');
    assert.equal(await page.getByTestId('start-policy-interval_ms').inputValue(), '200', 'the policy is kept');

    for (const id of IDS) await row(id).waitFor({ state: 'visible' });
    assert.equal(await page.getByTestId('worker-row').count(), 3);
    await waitText(page.getByTestId('status-total'), '3', 'the status bar to count three workers');

    // They move: the iteration counts of br-1 and br-2 go up from one refresh to the next.
    for (const id of ['br-1', 'br-2']) {
      const first = await waitMore(cell(id, 'worker-iterations'), 0, `${id} to have iterations`);
      await waitMore(cell(id, 'worker-iterations'), first, `${id}'s iterations to increase past ${first}`);
      assert.ok((await num(cell(id, 'worker-successes'))) > 0, `${id} has successes`);
      assert.equal(await text(cell(id, 'worker-state')), 'running');
    }
    await screenshot(page, 'console-workers');
  });

  test('pause one worker from its row, then resume it', TEST, async () => {
    const id = 'br-1';
    await cell(id, 'worker-pause').click();
    await until(`${id} to be paused`, async () =>
      (await row(id).getAttribute('data-state')) === 'paused' && (await text(cell(id, 'worker-state'))) === 'paused');
    await waitText(page.getByTestId('workers-message'), /^Paused br-1 \(now (pausing|paused)\)\.$/, 'the pause message');
    assert.equal(await text(cell(id, 'worker-next-step')), 'paused');
    assert.equal(await cell(id, 'worker-pause').isDisabled(), true, 'Pause is disabled when paused');
    assert.equal(await cell(id, 'worker-resume').isEnabled(), true, 'Resume is enabled when paused');

    // While paused it does not move, though the others do (the table is refreshed).
    const frozen = await num(cell(id, 'worker-iterations'));
    const other = await num(cell('br-2', 'worker-iterations'));
    await waitMore(cell('br-2', 'worker-iterations'), other, 'br-2 to move on while br-1 is paused');
    assert.equal(await num(cell(id, 'worker-iterations')), frozen, 'a paused worker does not iterate');

    await cell(id, 'worker-resume').click();
    await until(`${id} to run again`, async () =>
      (await row(id).getAttribute('data-state')) === 'running' && (await text(cell(id, 'worker-state'))) === 'running');
    await waitMore(cell(id, 'worker-iterations'), frozen, `${id} to iterate again after resume`);
  });

  test('OTP inbox: a wrong format shows the API error, the right OTP clears the row and the worker goes on', TEST, async () => {
    const inbox = page.getByTestId('otp-inbox');
    const otpRow = inbox.locator(`[data-testid=otp-row][data-binding-id="${OTP_BINDING}"]`);
    await otpRow.waitFor({ state: 'visible' });
    assert.equal(await inbox.getByTestId('otp-row').count(), 1, 'one transaction waits');
    const tx = await otpRow.getAttribute('data-transaction-id');
    assert.ok(tx, 'the row names its transaction');

    // It is br-otp's current transaction, waiting for its OTP.
    const w = await runner.api('GET', `/api/workers/${OTP_BINDING}`);
    assert.equal(w.status, 200);
    assert.equal(w.body.current_transaction && w.body.current_transaction.id, tx);
    assert.equal(w.body.current_transaction.otp_required, true);

    assert.equal(await text(otpRow.getByTestId('otp-transaction-id')), tx);
    assert.equal(await text(otpRow.getByTestId('otp-binding-id')), OTP_BINDING);
    assert.match(await text(otpRow.getByTestId('otp-time-left')), /^\d+:\d\d left$/);
    assert.equal(await text(page.getByTestId('otp-count')), '1');
    assert.equal(await visible(page.getByTestId('otp-empty')), false);
    await waitText(page.getByTestId('status-otp-length'), '1', 'the status bar to count one waiting OTP');
    assert.equal(await text(cell(OTP_BINDING, 'worker-successes')), '0', 'br-otp has not succeeded yet');
    await screenshot(inbox, 'console-otp');

    // A wrong format: the API answers invalid_otp, its message shows next to the row, which stays.
    const expected = await runner.api('POST', `/api/otp/${encodeURIComponent(tx)}`, { otp: WRONG_FORMAT_OTP });
    assert.equal(expected.status, 400);
    assert.equal(expected.body.error.code, 'invalid_otp');
    await otpRow.getByTestId('otp-input').fill(WRONG_FORMAT_OTP);
    await otpRow.getByTestId('otp-submit').click();
    const error = otpRow.getByTestId('otp-error');
    await error.waitFor({ state: 'visible' });
    await waitText(error, expected.body.error.message, 'the invalid_otp message next to the row');
    assert.equal(await error.getAttribute('data-error-code'), 'invalid_otp');
    assert.equal(await otpRow.count(), 1, 'the row stays after a wrong format');
    assert.equal(await otpRow.getByTestId('otp-input').isEnabled(), true);

    // The right one (typed with the keyboard, Enter submits): the row leaves and br-otp goes on.
    await otpRow.getByTestId('otp-input').fill('');
    await error.waitFor({ state: 'hidden' });
    await otpRow.getByTestId('otp-input').pressSequentially(RIGHT_OTP);
    await otpRow.getByTestId('otp-submit').click();
    await until('the OTP row to leave the inbox', async () => (await otpRow.count()) === 0);
    await waitText(page.getByTestId('otp-message'), `OTP submitted for ${tx}.`, 'the OTP message');
    await page.getByTestId('otp-empty').waitFor({ state: 'visible' });
    const successes = await waitMore(cell(OTP_BINDING, 'worker-successes'), 0, 'br-otp to succeed after its OTP');
    await waitMore(cell(OTP_BINDING, 'worker-successes'), successes, 'br-otp to go on succeeding');
    assert.equal(await text(cell(OTP_BINDING, 'worker-state')), 'running');
    // The OTP stayed out of the page: it never reappears.
    assert.equal(await inbox.getByTestId('otp-row').count(), 0);
  });

  test('Stop all (confirmed) stops every worker', TEST, async () => {
    let dialog = null;
    page.once('dialog', (d) => { dialog = d.message(); d.accept(); });
    await page.getByTestId('stop-all').click();
    await waitText(page.getByTestId('workers-message'), 'Stop all: 3 workers affected.', 'the Stop all message');
    assert.match(dialog || '', /Stop ALL workers\?/, 'a confirm dialog was shown');
    for (const id of IDS) {
      await until(`${id} to be stopped`, async () =>
        (await row(id).getAttribute('data-state')) === 'stopped' && (await text(cell(id, 'worker-state'))) === 'stopped');
      assert.equal(await cell(id, 'worker-stop').isDisabled(), true, `${id}: Stop is disabled once stopped`);
      assert.equal(await text(cell(id, 'worker-stop-reason')), 'user', `${id}: stop_reason user`);
    }
    await waitText(page.getByTestId('status-stopped'), '3', 'the status bar to count three stopped workers');
  });

  test('the page stayed offline and raised no errors', TEST, () => {
    assert.deepEqual(foreignRequests, [], "the page requested only the runner's own origin");
    assert.deepEqual(pageErrors, [], 'no uncaught page errors');
    // Console errors are expected for the 401 and 400 answers above; anything else is not.
    const unexpected = consoleErrors.filter((m) => !/status of (401|400)\b/.test(m));
    assert.deepEqual(unexpected, [], 'no unexpected console errors');
  });
});
