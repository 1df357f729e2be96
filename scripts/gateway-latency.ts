/**
 * The gateway's added latency (issue 14): the same request sent directly to a fake provider and
 * through Tally to it, interleaved (direct, gateway, direct, gateway …), sequentially, over keep-alive
 * connections (undici) on both paths. Reports p50/p99 of each path and of the overhead, for JSON
 * completions and for a stream's time to first event. The durable hold and the settlement are on the
 * path (settlement runs just after the answer is sent).
 *
 *   npx tsx scripts/gateway-latency.ts                          # PGlite (embedded)
 *   TALLY_TEST_DB=postgres TEST_DATABASE_URL=postgres://… npx tsx scripts/gateway-latency.ts
 *   GW_ROUNDS=2000 …                                            # rounds per measurement (default 1000)
 */
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { createTestApp, TARGET } from '../test/support/harness.js';
import { startFakeLlm } from '../test/support/fake-llm.js';

const ROUNDS = Number(process.env['GW_ROUNDS'] ?? 1000);
const WARMUP = Math.min(200, Math.floor(ROUNDS / 5));

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const fmt = (x: number) => x.toFixed(2);

async function main(): Promise<void> {
  const app = await createTestApp({ credits: { balanceCap: null, signupBonus: 0 } });
  await app.server.listen({ port: 0, host: '127.0.0.1' });
  const tally = `http://127.0.0.1:${(app.server.server.address() as AddressInfo).port}`;
  const fake = await startFakeLlm();
  const svc = (method: 'POST' | 'GET', url: string, body?: unknown, key?: string) =>
    app.server.inject({ method, url, headers: { authorization: `Bearer ${app.serviceKey}`, ...(key ? { 'idempotency-key': key } : {}) }, ...(body ? { payload: body as object } : {}) });
  await svc('POST', '/v1/cost-models', { metric: 'llm:bench-gpt', metadata: { gateway: { input: '0.001', output: '0.002' } } });
  const credential = 'sk-bench-000000000000';
  await svc('POST', '/v1/gateway/upstreams', { type: 'openai', base_url: fake.openaiBase, credentials: credential, models: ['bench-gpt'] });
  const user = JSON.parse((await svc('POST', '/v1/users', { email: 'bench@example.com' })).body) as { id: string };
  await svc('POST', '/v1/credits/grant', { user_id: user.id, amount: 1_000_000_000, reason: 'bench' }, 'bench-grant');
  const key = (JSON.parse((await svc('POST', `/v1/users/${user.id}/api-keys`, { name: 'bench' })).body) as { key: string }).key;

  const direct = new Pool(fake.url, { connections: 4 });
  const viaTally = new Pool(tally, { connections: 4 });
  const body = (stream: boolean) => JSON.stringify({ model: 'bench-gpt', messages: [{ role: 'user', content: 'say five words please' }], max_tokens: 16, ...(stream ? { stream: true } : {}) });

  /** ms to the whole JSON answer, or to the first body chunk of a stream. */
  async function once(pool: Pool, path: string, auth: string, stream: boolean): Promise<number> {
    const t0 = performance.now();
    const res = await pool.request({ path, method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${auth}` }, body: body(stream) });
    if (res.statusCode !== 200) throw new Error(`${path}: ${res.statusCode} ${await res.body.text()}`);
    let first = 0;
    for await (const _ of res.body) if (first === 0) first = performance.now() - t0;
    return stream ? first : performance.now() - t0;
  }

  for (const stream of [false, true]) {
    const d: number[] = [];
    const g: number[] = [];
    for (let i = 0; i < ROUNDS + WARMUP; i++) {
      const a = await once(direct, '/v1/chat/completions', credential, stream);
      const b = await once(viaTally, '/gateway/v1/chat/completions', key, stream);
      if (i >= WARMUP) {
        d.push(a);
        g.push(b);
      }
    }
    const over = g.map((x, i) => x - (d[i] ?? 0));
    const label = stream ? 'stream, time to first event' : 'JSON completion';
    console.log(
      `${TARGET} ${label} (${ROUNDS} interleaved rounds): direct p50 ${fmt(pct(d, 50))} p99 ${fmt(pct(d, 99))} ms | via Tally p50 ${fmt(pct(g, 50))} p99 ${fmt(pct(g, 99))} ms | overhead (paired) p50 ${fmt(pct(over, 50))} p99 ${fmt(pct(over, 99))} ms`,
    );
  }
  // Settlement is exact: every request settled, none pending.
  await new Promise((r) => setTimeout(r, 500));
  const pending = await app.database.db.selectFrom('gateway_requests').select((eb) => eb.fn.countAll<number>().as('n')).where('status', '=', 'pending').executeTakeFirstOrThrow();
  console.log(`requests left pending: ${Number(pending.n)}`);
  await direct.close();
  await viaTally.close();
  await app.close();
  await fake.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
