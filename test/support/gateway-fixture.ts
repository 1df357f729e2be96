import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { client } from './client.js';
import { makeApiKey, makeUser } from './fixtures.js';
import { createTestApp, type TestApp } from './harness.js';
import { type FakeLlm, startFakeLlm } from './fake-llm.js';
import type { Config } from '../../src/config/config.js';

/** Prices used by the gateway tests, in credits per million tokens (0.25 and 1 credit a token). */
export const PRICE = { input: 250_000, output: 1_000_000 };

export interface GatewayWorld {
  app: TestApp;
  fake: FakeLlm;
  /** Tally's listening address (the official clients need a real socket). */
  base: string;
  svc: ReturnType<typeof client>;
  close(): Promise<void>;
}

export async function gatewayWorld(overrides: Partial<Config> = {}, options: { clock?: () => Date } = {}): Promise<GatewayWorld> {
  const app = await createTestApp(overrides, options);
  await app.server.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.server.address() as AddressInfo;
  const fake = await startFakeLlm();
  const svc = client(app.server, app.serviceKey);
  return {
    app,
    fake,
    base: `http://127.0.0.1:${port}`,
    svc,
    close: async () => {
      await app.close();
      await fake.close();
    },
  };
}

export async function priceModel(w: GatewayWorld, model: string, extra: Record<string, unknown> = {}): Promise<void> {
  const res = await w.svc.post('/v1/cost-models', { metric: `llm:${model}`, metadata: { gateway: { ...PRICE, ...extra } } });
  expect(res.status).toBe(201);
}

export async function addUpstream(w: GatewayWorld, type: 'openai' | 'anthropic', body: Record<string, unknown> = {}): Promise<{ id: string; credential: string }> {
  const credential = `sk-${type}-${randomBytes(8).toString('hex')}`;
  const res = await w.svc.post('/v1/gateway/upstreams', { type, base_url: type === 'openai' ? w.fake.openaiBase : w.fake.url, credentials: credential, ...body });
  expect(res.status).toBe(201);
  return { id: res.body.id as string, credential };
}

/** A user with `credits` granted (plus the sign-up bonus of 3) and a full-scope key. */
export async function fundedKey(w: GatewayWorld, credits: number): Promise<{ userId: string; key: string; keyId: string }> {
  const user = await makeUser(w.app);
  if (credits > 0) {
    const g = await w.svc.post('/v1/credits/grant', { user_id: user.id, amount: credits, reason: 'gateway test' }, { idempotencyKey: `g-${randomBytes(8).toString('hex')}` });
    expect(g.status).toBe(201);
  }
  const key = await makeApiKey(w.app, user.id);
  return { userId: user.id, key: key.key, keyId: key.id };
}

export async function balanceOf(w: GatewayWorld, userId: string): Promise<{ balance: number; held: number; available: number }> {
  return (await w.svc.get(`/v1/users/${userId}/balance`)).body;
}

/** The usage record of a request once settled (settlement runs just after the answer is sent). */
export async function settledRecord(w: GatewayWorld, requestId: string): Promise<Record<string, unknown> & { status: string; charged: number; cost_micros: number; usage_source: string; tokens: Record<string, number> }> {
  for (let i = 0; i < 200; i++) {
    const res = await w.svc.get(`/v1/gateway/usage?request_id=${requestId}`);
    const rec = res.body.data?.[0];
    if (rec && rec.status !== 'pending') return rec;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`request ${requestId} never settled`);
}

/** Micro-credits of token counts at PRICE (credits per million tokens = micro-credits per token). */
export const micros = (input: number, output: number): number => input * PRICE.input + output * PRICE.output;

/** Waits until every gateway request of a user is settled; answers their records. */
export async function allSettled(w: GatewayWorld, userId: string): Promise<{ status: string; charged: number; cost_micros: number; usage_source: string }[]> {
  for (let i = 0; i < 400; i++) {
    const res = await w.svc.get(`/v1/users/${userId}/gateway/usage?limit=200`);
    const recs = res.body.data as { status: string; charged: number; cost_micros: number; usage_source: string }[];
    if (recs.every((r) => r.status !== 'pending')) return recs;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`requests of ${userId} never settled`);
}
