/**
 * Tally as a library: build the app around a database and use the typed SDK in-process.
 *
 *   const database = await openDatabase(config.database); await migrate(database);
 *   const { services } = await createApp({ config, database, logger });
 *   await services.sdk.credits.debit({ user_id, amount: 10, reason: 'render' }, { idempotencyKey });
 */
export { type App, createApp, type Services } from './app.js';
export { type Config } from './config/config.js';
export { loadConfig } from './config/load.js';
export { type Database, openDatabase } from './db/database.js';
export { migrate } from './db/migrate.js';
export { reconcile, type ReconcileReport } from './modules/credits/credits.reconcile.js';
export { CreditsSdk, type HoldResult, type MovementResult, TallyError } from './sdk/credits.sdk.js';
