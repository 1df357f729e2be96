import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { fundedKey, type GatewayWorld, gatewayWorld } from './support/gateway-fixture.js';
import { keySpent } from '../src/modules/gateway/gateway.key-limits.repository.js';

/**
 * A settlement batch updates its keys' rows in id order (keySpent, one per key, in one transaction);
 * the key-use flush (api-keys.uses.ts) updates many keys' rows in ONE statement in the order the keys
 * were first used that second. Two lock orders on api_keys: a deadlock.
 */
describe.runIf(TARGET === 'postgres')(`api keys: the use-count flush and a settlement batch lock keys in one order (attacker review 3, F7) (${TARGET})`, () => {
  let w: GatewayWorld;
  beforeAll(async () => {
    w = await gatewayWorld();
  });
  afterAll(async () => {
    await w.close();
  });

  it('F7: a batch\'s key spend and the use-count flush do not deadlock', async () => {
    const [a, b] = (await Promise.all([fundedKey(w, 10), fundedKey(w, 10)])).sort((x, y) => (x.keyId < y.keyId ? -1 : 1)) as [{ keyId: string }, { keyId: string }];
    const uses = w.app.services.keyUses;
    await uses.flush();
    // Rows move as they are updated (every settlement and every flush updates its key's row): after
    // one update A's live row sits after B's, so a scan of api_keys meets B first.
    await keySpent(w.app.database.db, a.keyId, 1);
    const errors: unknown[] = [];
    let locked = () => {};
    const firstLocked = new Promise<void>((r) => (locked = r));
    // settleBatch: keySpent(A) … keySpent(B), in id order, one transaction.
    const batch = w.app.database.db.transaction().execute(async (trx) => {
      await keySpent(trx, a.keyId, 1);
      locked();
      await new Promise((r) => setTimeout(r, 300));
      await keySpent(trx, b.keyId, 1);
    }).catch((e: unknown) => errors.push(['batch', (e as Error).message]));
    await firstLocked;
    // This second, B was used before A (any client decides the order it uses its keys in).
    uses.record(b.keyId);
    uses.record(a.keyId);
    const flush = uses.flush().catch((e: unknown) => errors.push(['flush', (e as Error).message]));
    await Promise.all([batch, flush]);
    expect(errors).toEqual([]);
  });
});
