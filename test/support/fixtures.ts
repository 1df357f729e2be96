import { randomBytes } from 'node:crypto';
import type { TestApp } from './harness.js';
import { client } from './client.js';

/** Creates a user through the API as the service and returns it. */
export async function makeUser(app: TestApp, fields: Record<string, unknown> = {}) {
  const svc = client(app.server, app.serviceKey);
  const res = await svc.post('/v1/users', { email: `u_${randomBytes(5).toString('hex')}@example.com`, ...fields });
  if (res.status !== 201) throw new Error(`makeUser: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as { id: string; email: string };
}

/** Signs a new user up and returns the user, its JWT and a client acting as it. */
export async function signUp(app: TestApp, email = `s_${randomBytes(5).toString('hex')}@example.com`, password = 'correct horse battery') {
  const anon = client(app.server, null);
  const res = await anon.post('/v1/auth/signup', { email, password });
  if (res.status !== 201) throw new Error(`signUp: ${res.status} ${JSON.stringify(res.body)}`);
  return {
    user: res.body.user as { id: string; email: string },
    token: res.body.access_token as string,
    password,
    api: client(app.server, res.body.access_token as string),
  };
}

/** Creates an API key for a user (as the service) and returns the key. */
export async function makeApiKey(app: TestApp, userId: string, body: Record<string, unknown> = { name: 'test' }) {
  const svc = client(app.server, app.serviceKey);
  const res = await svc.post(`/v1/users/${userId}/api-keys`, body);
  if (res.status !== 201) throw new Error(`makeApiKey: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as { id: string; key: string; prefix: string; scopes: string[] };
}
