import { loadConfig } from '../config/load.js';
import { openDatabase } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { ApiKeysService } from '../modules/api-keys/api-keys.service.js';
import { isScope, type Scope } from '../modules/api-keys/api-keys.scopes.js';
import { ApiError } from '../http/errors.js';

/** `tally keys create`: the same service call the HTTP route makes, as the service principal. */
export async function keysCreateCommand(opts: { user: string; name: string; scopes: string; expiresAt?: string }): Promise<number> {
  const scopes = opts.scopes.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = scopes.filter((s) => !isScope(s));
  if (bad.length > 0) {
    process.stderr.write(`keys create: unknown scope(s) ${bad.join(', ')}\n`);
    return 2;
  }
  const { config } = loadConfig();
  const database = await openDatabase(config.database);
  try {
    const outcome = await migrate(database);
    if (!outcome.ok) {
      process.stderr.write(`keys create: ${outcome.message}\n`);
      return 1;
    }
    const keys = new ApiKeysService(() => new Date());
    const { row, key } = await database.db.transaction().execute((trx) =>
      keys.create(trx, { kind: 'service' }, opts.user, {
        name: opts.name,
        scopes: scopes as Scope[],
        expires_at: opts.expiresAt ?? null,
      }),
    );
    process.stdout.write(`${key}\n`);
    process.stderr.write(`created ${row.id} (${row.prefix}…) for ${row.user_id}; the key is shown only now\n`);
    return 0;
  } catch (err) {
    if (err instanceof ApiError) {
      process.stderr.write(`keys create: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await database.close();
  }
}
