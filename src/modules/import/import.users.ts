import type { Insertable } from 'kysely';
import type { DB } from '../../db/database.types.js';
import type { TableStep } from './import.js';
import { openingBalances } from './import.opening.js';
import { importMapInsert } from './import.repository.js';
import { freshRows, str, Tally } from './import.rows.js';

/**
 * The users step of a design whose users carry no balance (foundation, cloud-ide, llm-relay): each
 * source user becomes a Tally user with an empty account — an opening of 0, no sign-up bonus — and
 * an `import_map` row; a user Tally already has (same id, e-mail or username) is a `target_conflict`
 * anomaly and is skipped with everything that hangs off it. `toUser` maps one source row.
 */
export function usersWithEmptyAccounts(shape: string, columns: string, toUser: (r: Record<string, unknown>, now: Date) => Insertable<DB['users']>): TableStep {
  return {
    table: 'users',
    key: 'id',
    columns: () => columns,
    async write(ctx, rows) {
      const tally = new Tally();
      const fresh = await freshRows(ctx, 'users', rows, 'id', tally);
      if (fresh.length === 0) return tally.outcome;
      const inserted = new Set(
        (
          await ctx.trx
            .insertInto('users')
            .values(fresh.map((r) => toUser(r, ctx.now)))
            .onConflict((oc) => oc.doNothing())
            .returning('id')
            .execute()
        ).map((u) => u.id),
      );
      const maps = [];
      const opened: string[] = [];
      for (const r of fresh) {
        const id = String(r.id);
        if (!inserted.has(id)) {
          tally.skip('conflict');
          ctx.anomaly({
            kind: 'target_conflict',
            table: 'users',
            source_id: id,
            rule: 'Tally already has a user with this id, e-mail or username: the user and their rows are not imported (resolve, then import again)',
            details: { email: str(r.email) },
          });
          continue;
        }
        opened.push(id);
        maps.push({ table: 'users', sourceId: id, targetTable: 'users', targetId: id, facts: { balance: 0, opening_entry: null } });
        tally.imported++;
      }
      // No balance in this design: the accounts open empty (no entry, no sign-up bonus), in one statement.
      await openingBalances(ctx, shape, opened.map((userId) => ({ userId, balance: 0, facts: {} })));
      await importMapInsert(ctx.trx, ctx.source, ctx.runId, maps);
      return tally.outcome;
    },
  };
}
