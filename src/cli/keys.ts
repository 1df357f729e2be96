import { loadConfig } from '../config/load.js';
import { openMigrated } from './open.js';
import { ApiKeysService } from '../modules/api-keys/api-keys.service.js';
import { isScope, type Scope } from '../modules/api-keys/api-keys.scopes.js';
import { DomainError } from '../core/errors.js';
import { callServer, directOrElse, errorMessage } from './running-server.js';
import type { CliIo } from './io.js';

/**
 * `tally keys create`: the same service call the HTTP route makes, as the service principal. While
 * a server holds the embedded database, through that route (POST /v1/users/:id/api-keys).
 */
export async function keysCreateCommand(opts: { user: string; name: string; scopes: string; expiresAt?: string }, io: CliIo): Promise<number> {
  const scopes = opts.scopes.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = scopes.filter((s) => !isScope(s));
  if (bad.length > 0) {
    io.err(`keys create: unknown scope(s) ${bad.join(', ')}\n`);
    return 2;
  }
  const input = { name: opts.name, scopes: scopes as Scope[], expires_at: opts.expiresAt ?? null };
  const { config } = loadConfig(io.env);
  return directOrElse(
    async () => {
      const database = await openMigrated(io, 'keys create', config);
      if (!database) return 1;
      try {
        const keys = new ApiKeysService(() => new Date());
        const { row, key } = await database.db.transaction().execute((trx) => keys.create(trx, { kind: 'service' }, opts.user, input));
        return printed(io, key, row.id, row.prefix, row.user_id);
      } catch (err) {
        if (err instanceof DomainError) {
          io.err(`keys create: ${err.message}\n`);
          return 1;
        }
        throw err;
      } finally {
        await database.close();
      }
    },
    async (locked) => {
      const answer = await callServer(io, 'keys create', locked, config, 'POST', `/v1/users/${encodeURIComponent(opts.user)}/api-keys`, {
        name: input.name,
        ...(input.scopes.length > 0 ? { scopes: input.scopes } : {}),
        expires_at: input.expires_at,
      });
      if (typeof answer === 'number') return answer;
      if (answer.status !== 201) {
        io.err(`keys create: ${errorMessage(answer)}\n`);
        return 1;
      }
      const b = answer.body as { id: string; key: string; prefix: string };
      return printed(io, b.key, b.id, b.prefix, opts.user);
    },
  );
}

function printed(io: CliIo, key: string, id: string, prefix: string, user: string): number {
  io.out(`${key}\n`);
  io.err(`created ${id} (${prefix}…) for ${user}; the key is shown only now\n`);
  return 0;
}
