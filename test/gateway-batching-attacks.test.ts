import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TARGET } from './support/harness.js';
import { addUpstream, allSettled, balanceOf, fundedKey, type GatewayWorld, gatewayWorld, priceModel } from './support/gateway-fixture.js';

/** Attacker review of the group-committed opens and settlements (docs/gateway.md, "Batched opens and settlements"). */
describe(`gateway: batched opens and settlements under attack (attacker review 3, F4–F6) (${TARGET})`, () => {
  let w: GatewayWorld;
  let evil: Server;
  let evilBase = '';
  let evilGate: Promise<void> = Promise.resolve();
  const chat = (key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    fetch(`${w.base}/gateway/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeAll(async () => {
    w = await gatewayWorld();
    // An OpenAI-compatible upstream whose 5xx error text echoes what it was sent (many proxies and
    // self-hosted servers do): here 199 ASCII characters and an emoji, so the router's
    // `text.slice(0, 200)` (gateway.upstream-call.ts:65) ends on half a surrogate pair.
    evil = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        void evilGate.then(() => {
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
          res.end(`${'E'.repeat(199)}\u{1F600} upstream exploded`);
        });
      });
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    evilBase = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/v1`;
  });
  afterAll(async () => {
    await w.close();
    await new Promise((r) => evil.close(r));
  });

  it('F6: an upstream error text cut mid-surrogate does not fail the settlement batch', async () => {
    await priceModel(w, 'hol-gpt');
    await priceModel(w, 'evil-gpt');
    const good = await addUpstream(w, 'openai', { models: ['hol-gpt'] });
    const bad = await w.svc.post('/v1/gateway/upstreams', { type: 'openai', base_url: evilBase, credentials: 'sk-evil-0000000000000000', models: ['evil-gpt'] });
    expect(bad.status).toBe(201);
    const victims = await Promise.all(Array.from({ length: 4 }, () => fundedKey(w, 1000)));
    const attacker = await fundedKey(w, 1000);
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    w.fake.behave(good.credential, { words: 3, gate });
    evilGate = gate;
    const fallbacks0 = w.app.services.gateway.relay.batching.settles.fallbacks;
    const body = { model: 'hol-gpt', messages: [{ role: 'user', content: 'one two' }], max_tokens: 3 };
    const pending = Promise.all([
      ...victims.flatMap((v) => Array.from({ length: 10 }, () => chat(v.key, body))),
      ...Array.from({ length: 4 }, () => chat(attacker.key, { ...body, model: 'evil-gpt' })),
    ]);
    for (let i = 0; i < 600 && w.fake.hits(good.credential) < 40; i++) await sleep(10);
    await sleep(50);
    release();
    const answers = await pending;
    await Promise.all(answers.map((a) => a.text()));
    w.fake.behave(good.credential, {});
    expect(answers.slice(0, 40).every((a) => a.status === 200)).toBe(true);
    expect(answers.slice(40).every((a) => a.status === 500)).toBe(true);
    for (const v of victims) expect(await allSettled(w, v.userId)).toHaveLength(10);
    await allSettled(w, attacker.userId);
    // No money is lost (each settlement ran again alone), but every batch holding one of the
    // attacker's failures was thrown away: a client can make any batch fail, at no cost to itself.
    expect((await balanceOf(w, attacker.userId)).balance).toBe(1003);
    expect(w.app.services.gateway.relay.batching.settles.fallbacks).toBe(fallbacks0);
  });

  it.runIf(TARGET === 'postgres')('F5: twins under one Idempotency-Key, sent for free, cannot make batches of opens fall back', async () => {
    await priceModel(w, 'race-gpt');
    const up = await addUpstream(w, 'openai', { models: ['race-gpt'] });
    w.fake.behave(up.credential, { latencyMs: 5, words: 3 });
    await priceModel(w, 'race-400');
    const refusing = await addUpstream(w, 'openai', { models: ['race-400'] });
    w.fake.behave(refusing.credential, { status: 400 }); // the upstream's own refusal: costs the client 0
    const victims = await Promise.all(Array.from({ length: 6 }, () => fundedKey(w, 1000)));
    const attacker = await fundedKey(w, 100);
    const stats = w.app.services.gateway.relay.batching.opens;
    const [batches0, fallbacks0] = [stats.batches, stats.fallbacks];
    const body = { model: 'race-gpt', messages: [{ role: 'user', content: 'one two' }], max_tokens: 3 };
    for (let round = 0; round < 10; round++) {
      const idem = `twin-${randomBytes(6).toString('hex')}`;
      const evilBody = { ...body, model: 'race-400' };
      const answers = await Promise.all([
        ...victims.flatMap((v) => Array.from({ length: 4 }, () => chat(v.key, body))),
        ...Array.from({ length: 4 }, () => chat(attacker.key, evilBody, { 'idempotency-key': idem })),
      ]);
      await Promise.all(answers.map((a) => a.text()));
      expect(answers.slice(0, 24).every((a) => a.status === 200)).toBe(true);
    }
    await allSettled(w, attacker.userId);
    expect((await balanceOf(w, attacker.userId)).balance).toBe(103); // the attack is free
    // Batches ran (the victims' requests shared transactions), and none was thrown away.
    expect(stats.batches - batches0).toBeGreaterThan(0);
    const fallbacks = stats.fallbacks - fallbacks0;
    expect(fallbacks).toBe(0);
  });

  it.runIf(TARGET === 'postgres')("F4: one account's locked row does not stall other users' opens (head-of-line)", async () => {
    await priceModel(w, 'hol2-gpt');
    const up = await addUpstream(w, 'openai', { models: ['hol2-gpt'] });
    w.fake.behave(up.credential, { words: 2 });
    const attacker = await fundedKey(w, 1000);
    const victim = await fundedKey(w, 1000);
    const body = { model: 'hol2-gpt', messages: [{ role: 'user', content: 'one' }], max_tokens: 2 };
    // Stands in for the attacker's account being busy: e.g. dozens of its own counted keys (each
    // opens alone, key lock then account lock) queueing on the account row at once.
    let unlock = () => {};
    const locked = new Promise<void>((r) => (unlock = r));
    let held = () => {};
    const isHeld = new Promise<void>((r) => (held = r));
    const holder = w.app.database.db.transaction().execute(async (trx) => {
      await sql`select id from ${sql.table(`${w.app.database.schema}.credit_accounts`)} where user_id = ${attacker.userId} for update`.execute(trx);
      held();
      await locked;
    });
    await isHeld;
    const attackerRes = chat(attacker.key, body);
    await sleep(100);
    const t0 = Date.now();
    const victimRes = await Promise.race([chat(victim.key, body), sleep(1500).then(() => null)]);
    const waited = Date.now() - t0;
    expect(waited).toBeLessThan(1500);
    unlock();
    await holder;
    await (await attackerRes).text();
    if (victimRes) await victimRes.text();
    expect(victimRes?.status).toBe(200);
  });
});
