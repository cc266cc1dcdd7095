// Stepwise operator console. Plain JavaScript, no dependencies, no build step.
//
// Every value from the API reaches the DOM through textContent or
// setAttribute, never innerHTML. Lists are updated in place, keyed by id, so
// focus, typing and checkbox state survive the periodic refreshes.
//
// The entry module: it makes the shell's context (shell.js), hands it with
// the shared toolkit (kit.js) to each view module and starts the shell. The
// view modules: overview.js, workers.js, sagas.js, events.js, accounts.js,
// transfers.js and subscriptions.js; their lists are list.js's.

import * as kit from './kit.js';
import { shellContext, startShell } from './shell.js';
import { overviewModule } from './overview.js';
import { workersModule } from './workers.js';
import { sagasModule } from './sagas.js';
import { eventsModule } from './events.js';
import { accountsModule } from './accounts.js';
import { transfersModule } from './transfers.js';
import { subscriptionsModule } from './subscriptions.js';

function start() {
  const ctx = Object.assign(shellContext(), kit);
  const workers = workersModule(ctx);
  const events = eventsModule(ctx);
  const sagas = sagasModule(ctx, { addEventType: events.addEventType });
  ctx.ensureDefinitions = sagas.ensureDefinitions;
  ctx.forgetSaga = sagas.leave;
  const modules = [overviewModule(ctx), workers, sagas, events, accountsModule(ctx), transfersModule(ctx), subscriptionsModule(ctx)];
  startShell(ctx, modules, workers.fallback);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
