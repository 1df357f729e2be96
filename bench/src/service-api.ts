import { randomBytes } from 'node:crypto';
import type { TallySide } from './setup.js';

/**
 * A set-up call through the in-process Tally's own API with the service key (users, keys, prices,
 * upstreams, buckets): the scenarios create what they need the way an operator would. Anything but
 * the expected status is an error that stops the scenario.
 */
export async function serviceApi(
  tally: TallySide,
  method: 'GET' | 'POST' | 'PATCH',
  url: string,
  payload?: Record<string, unknown>,
  expected: number[] = [200, 201],
): Promise<Record<string, unknown>> {
  const headers: Record<string, string> = { authorization: `Bearer ${tally.secrets.serviceKey}` };
  if (method !== 'GET') headers['idempotency-key'] = `bench-setup-${randomBytes(8).toString('hex')}`;
  const res = await tally.app.server.inject({ method, url, headers, ...(payload ? { payload } : {}) });
  if (!expected.includes(res.statusCode)) throw new Error(`set-up ${method} ${url} → ${res.statusCode}: ${res.body}`);
  return res.json() as Record<string, unknown>;
}

/** A user funded with `credits` and a full-scope `tly_` key for it; answers the key. */
export async function fundedUser(tally: TallySide, userId: string, credits: number): Promise<string> {
  await serviceApi(tally, 'POST', '/v1/users', { id: userId, email: `${userId}@example.com` });
  await serviceApi(tally, 'POST', '/v1/credits/grant', { user_id: userId, amount: credits, reason: 'bench funding' });
  const key = await serviceApi(tally, 'POST', `/v1/users/${userId}/api-keys`, { name: 'bench' });
  if (typeof key['key'] !== 'string') throw new Error(`set-up: no key in ${JSON.stringify(key)}`);
  return key['key'];
}

/** A user's balance as the API answers it. */
export async function balanceOf(tally: TallySide, userId: string): Promise<{ balance: number; held: number }> {
  const b = await serviceApi(tally, 'GET', `/v1/users/${userId}/balance`);
  return { balance: Number(b['balance']), held: Number(b['held']) };
}
