import { loadConfig } from '../config/load.js';
import { openMigrated } from './open.js';
import { ApiKeysService } from '../modules/api-keys/api-keys.service.js';
import { isScope, type Scope } from '../modules/api-keys/api-keys.scopes.js';
import { DomainError } from '../core/errors.js';

/** `tally keys create`: the same service call the HTTP route makes, as the service principal. */
export async function keysCreateCommand(opts: { user: string; name: string; scopes: string; expiresAt?: string }): Promise<number> {
  const scopes = opts.scopes.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = scopes.filter((s) => !isScope(s));
  if (bad.length > 0) {
    process.stderr.write(`keys create: unknown scope(s) ${bad.join(', ')}\n`);
    return 2;
  }
  const { config } = loadConfig();
  const database = await openMigrated('keys create', config);
  if (!database) return 1;
  try {
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
    if (err instanceof DomainError) {
      process.stderr.write(`keys create: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await database.close();
  }
}
