/**
 * Invariant: bad input gets a clear 4xx from the closed list (../shared/spec/API.md) and changes
 * nothing. Every rejected request below is checked for the exact status and code, a human
 * message, a request id matching x-request-id, and a byte-for-byte unchanged database (every row
 * of every table in the app's schema, see support/db-fingerprint.ts).
 *
 * Each request is a known-good baseline with exactly one defect; the first test proves the
 * baselines succeed, so every rejection is caused by its defect and not by something else.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  dbFingerprint,
  errorProblems,
  fingerprintDiff,
  rawRequest,
} from './support/db-fingerprint.js';
import { client, type Json } from './support/client.js';
import { makeUser, signUp } from './support/fixtures.js';
import { createTestApp, type TestApp } from './support/harness.js';

const BODY_LIMIT = 65_536;

let app: TestApp;
let victim: { id: string; email: string };
let member: Awaited<ReturnType<typeof signUp>>;
let workspaceId: string;

const email = () => `bi_${randomBytes(6).toString('hex')}@example.com`;
const json = (v: unknown) => JSON.stringify(v);
const b64url = (s: string) => Buffer.from(s).toString('base64url');

type Body = Record<string, unknown>;

/** A route with a body, the caller that may use it, and a body that succeeds. */
interface Target {
  name: string;
  method: 'POST' | 'PATCH';
  url: () => string;
  token: () => string | null;
  base: () => Body;
  okStatus: number;
  /** Carries an optional Idempotency-Key (POSTs other than the runAsOwner auth routes). */
  idempotent: boolean;
}

const T: Record<'createUser' | 'updateUser' | 'updateSelf' | 'createKey' | 'createWorkspace' | 'signup', Target> = {
  createUser: {
    name: 'POST /v1/users',
    method: 'POST',
    url: () => '/v1/users',
    token: () => app.serviceKey,
    base: () => ({ email: email(), name: 'Ada Lovelace' }),
    okStatus: 201,
    idempotent: true,
  },
  updateUser: {
    name: 'PATCH /v1/users/:id (service)',
    method: 'PATCH',
    url: () => `/v1/users/${victim.id}`,
    token: () => app.serviceKey,
    base: () => ({ name: 'Renamed' }),
    okStatus: 200,
    idempotent: false,
  },
  updateSelf: {
    name: 'PATCH /v1/users/:id (self, JWT)',
    method: 'PATCH',
    url: () => `/v1/users/${member.user.id}`,
    token: () => member.token,
    base: () => ({ bio: 'Hello' }),
    okStatus: 200,
    idempotent: false,
  },
  createKey: {
    name: 'POST /v1/users/:id/api-keys',
    method: 'POST',
    url: () => `/v1/users/${victim.id}/api-keys`,
    token: () => app.serviceKey,
    base: () => ({ name: 'ci key', scopes: ['users:read'] }),
    okStatus: 201,
    idempotent: true,
  },
  createWorkspace: {
    name: 'POST /v1/workspaces',
    method: 'POST',
    url: () => '/v1/workspaces',
    token: () => member.token,
    base: () => ({ name: 'Acme' }),
    okStatus: 201,
    idempotent: true,
  },
  signup: {
    name: 'POST /v1/auth/signup',
    method: 'POST',
    url: () => '/v1/auth/signup',
    token: () => null,
    base: () => ({ email: email(), password: 'correct horse battery' }),
    okStatus: 201,
    idempotent: false,
  },
};
const TARGETS = Object.values(T);

interface Case {
  label: string;
  method: string;
  url: string;
  token: string | null;
  payload?: string | Buffer;
  headers?: Record<string, string>;
}

/** The target's baseline, with one change to the body (a key set to `undefined` is removed). */
function withBody(t: Target, change: Body | ((b: Body) => unknown), label: string): Case {
  let body: unknown;
  if (typeof change === 'function') body = change(t.base());
  else {
    const b: Body = { ...t.base(), ...change };
    for (const [k, v] of Object.entries(change)) if (v === undefined) delete b[k];
    body = b;
  }
  return {
    label: `${t.name} ${label}`,
    method: t.method,
    url: t.url(),
    token: t.token(),
    payload: json(body),
    headers: { 'content-type': 'application/json' },
  };
}

function raw(t: Target, payload: string | Buffer | undefined, headers: Record<string, string>, label: string): Case {
  return { label: `${t.name} ${label}`, method: t.method, url: t.url(), token: t.token(), ...(payload !== undefined ? { payload } : {}), headers };
}

/**
 * Sends each case and checks the answer and that the database did not change. Problems are
 * collected, so one run reports every failing case.
 */
async function expectRejected(
  cases: Case[],
  status: number,
  code: string,
  extra?: (c: Case, body: { error?: { message?: string } }) => string | null,
): Promise<void> {
  expect(await rejectionProblems(cases, status, code, extra)).toEqual([]);
}

async function rejectionProblems(
  cases: Case[],
  status: number,
  code: string,
  extra?: (c: Case, body: { error?: { message?: string } }) => string | null,
  fingerprint: { exclude?: readonly string[] } = {},
): Promise<string[]> {
  expect(cases.length).toBeGreaterThan(0);
  const problems: string[] = [];
  for (const c of cases) {
    const before = await dbFingerprint(app, fingerprint);
    const res = await rawRequest(app, c);
    const after = await dbFingerprint(app, fingerprint);
    problems.push(...errorProblems(res, status, code, c.label));
    problems.push(...fingerprintDiff(before, after, c.label));
    const more = extra?.(c, res.body as { error?: { message?: string } });
    if (more) problems.push(`${c.label}: ${more}`);
  }
  return problems;
}

async function countRows(table: 'users' | 'api_keys' | 'workspaces' | 'user_sessions' | 'idempotency_keys'): Promise<number> {
  const row = await app.database.db
    .selectFrom(table)
    .select(sql<number>`count(*)::int`.as('n'))
    .executeTakeFirstOrThrow();
  return row.n;
}

beforeAll(async () => {
  app = await createTestApp();
  victim = await makeUser(app, { name: 'Victim' });
  member = await signUp(app);
  const ws = await client(app.server, member.token).post('/v1/workspaces', { name: 'Lists' });
  if (ws.status !== 201) throw new Error(`workspace: ${ws.status} ${json(ws.body)}`);
  workspaceId = ws.body.id;
});

afterAll(async () => {
  await app?.close();
});

describe('bad input gets a clear 4xx from the closed list and changes nothing', () => {
  it('baseline: each route accepts its well-formed request (so the rejections below are caused by the one defect)', async () => {
    for (const t of TARGETS) {
      const c = withBody(t, {}, 'baseline');
      const before = await dbFingerprint(app);
      const res = await rawRequest(app, c);
      const after = await dbFingerprint(app);
      expect(res.status, `${c.label}: ${json(res.body)}`).toBe(t.okStatus);
      // The fingerprint sees a successful write, so an unchanged fingerprint below means something.
      expect(fingerprintDiff(before, after, c.label).length, c.label).toBeGreaterThan(0);
    }
    for (const url of ['/v1/users', `/v1/users/${victim.id}/api-keys`]) {
      expect((await client(app.server, app.serviceKey).get(`${url}?limit=1`)).status).toBe(200);
    }
    for (const url of ['/v1/workspaces', `/v1/workspaces/${workspaceId}/members`]) {
      expect((await client(app.server, member.token).get(`${url}?limit=200`)).status).toBe(200);
    }
  });

  it('malformed JSON is 400 invalid_request and writes nothing', async () => {
    const bad = [
      ['truncated', '{"email": '],
      ['trailing comma', '{"name": "x",}'],
      ['single quotes', "{'name': 'x'}"],
      ['trailing garbage', '{"name": "x"} trailing'],
      ['bare word', 'undefined'],
      ['empty body', ''],
    ] as const;
    const cases = TARGETS.flatMap((t) => bad.map(([label, payload]) => raw(t, payload, { 'content-type': 'application/json' }, label)));
    await expectRejected(cases, 400, 'invalid_request');
  });

  it('wrong types (number for string, "10" for integer, null for required, array for object) are 400 and write nothing', async () => {
    const cases = [
      withBody(T.createUser, { email: 42 }, 'email: number'),
      withBody(T.createUser, { name: 123 }, 'name: number'),
      withBody(T.createUser, { level: '10' }, 'level: "10"'),
      withBody(T.createUser, { email: null }, 'email: null'),
      withBody(T.createUser, { metadata: [] }, 'metadata: array'),
      withBody(T.createUser, { is_email_verified: 'true' }, 'is_email_verified: "true"'),
      withBody(T.createUser, () => [], 'body: array'),
      withBody(T.createUser, () => 'a string', 'body: string'),
      withBody(T.createUser, () => null, 'body: null'),
      withBody(T.updateUser, { name: 42 }, 'name: number'),
      withBody(T.updateUser, { level: '10' }, 'level: "10"'),
      withBody(T.updateUser, { preferences: [] }, 'preferences: array'),
      withBody(T.updateUser, { is_active: 'false' }, 'is_active: "false"'),
      withBody(T.updateUser, () => [{ name: 'x' }], 'body: array'),
      withBody(T.updateSelf, { bio: 7 }, 'bio: number'),
      withBody(T.updateSelf, { preferences: ['dark'] }, 'preferences: array'),
      withBody(T.createKey, { name: 42 }, 'name: number'),
      withBody(T.createKey, { name: null }, 'name: null'),
      withBody(T.createKey, { scopes: 'users:read' }, 'scopes: string'),
      withBody(T.createKey, { scopes: [42] }, 'scopes: [number]'),
      withBody(T.createKey, { expires_at: 1_900_000_000 }, 'expires_at: number'),
      withBody(T.createWorkspace, { name: 123 }, 'name: number'),
      withBody(T.createWorkspace, { name: null }, 'name: null'),
      withBody(T.createWorkspace, { settings: [] }, 'settings: array'),
      withBody(T.createWorkspace, { description: 5 }, 'description: number'),
      withBody(T.signup, { email: 42 }, 'email: number'),
      withBody(T.signup, { password: 12345678 }, 'password: number'),
      withBody(T.signup, { email: null }, 'email: null'),
      withBody(T.signup, { password: null }, 'password: null'),
      withBody(T.signup, () => [], 'body: array'),
    ];
    await expectRejected(cases, 400, 'invalid_request');
  });

  it('unknown fields are 400 (never silently dropped) and write nothing', async () => {
    const cases = [
      withBody(T.createUser, { admin: true }, '+admin'),
      withBody(T.createUser, { password_hash: '$argon2id$forged' }, '+password_hash'),
      withBody(T.createUser, { created_at: '2000-01-01T00:00:00Z' }, '+created_at'),
      withBody(T.createUser, { Email: 'x@example.com' }, '+Email (case typo)'),
      withBody(T.updateUser, { nmae: 'typo' }, '+nmae'),
      withBody(T.updateUser, { id: 'usr_other' }, '+id'),
      withBody(T.updateSelf, { password_hash: 'x' }, '+password_hash'),
      withBody(T.createKey, { scope: ['*'] }, '+scope (typo of scopes)'),
      withBody(T.createKey, { key: `tly_${'a'.repeat(48)}` }, '+key (caller-chosen secret)'),
      withBody(T.createKey, { user_id: member.user.id }, '+user_id'),
      withBody(T.createWorkspace, { owner: member.user.id }, '+owner'),
      withBody(T.createWorkspace, { id: 'wsp_mine' }, '+id'),
      withBody(T.signup, { role: 'admin' }, '+role'),
      withBody(T.signup, { name: 'Eve' }, '+name'),
    ];
    await expectRejected(cases, 400, 'invalid_request', (c, body) => {
      // The message names the offending field, so the caller can fix it.
      const field = /\+(\w+)/.exec(c.label)?.[1] ?? '<label without +field>';
      const m = body.error?.message ?? '';
      return m.includes(field) ? null : `message does not name the unknown field ${field}: ${m}`;
    });
    const queries: Case[] = [
      { label: 'GET /v1/users ?limt=5', method: 'GET', url: '/v1/users?limt=5', token: app.serviceKey },
      { label: 'GET /v1/workspaces ?owner=x', method: 'GET', url: '/v1/workspaces?owner=x', token: member.token },
    ];
    await expectRejected(queries, 400, 'invalid_request');
  });

  it('missing required fields are 400 and write nothing', async () => {
    const cases = [
      withBody(T.createUser, () => ({}), '{}'),
      withBody(T.createUser, { email: undefined }, 'without email'),
      withBody(T.updateUser, () => ({}), '{} (nothing to change)'),
      withBody(T.updateSelf, () => ({}), '{} (nothing to change)'),
      withBody(T.createKey, () => ({}), '{}'),
      withBody(T.createKey, { name: undefined }, 'without name'),
      withBody(T.createWorkspace, () => ({}), '{}'),
      withBody(T.createWorkspace, { name: undefined, description: 'no name' }, 'without name'),
      withBody(T.signup, { email: undefined }, 'without email'),
      withBody(T.signup, { password: undefined }, 'without password'),
      withBody(T.signup, () => ({}), '{}'),
    ];
    await expectRejected(cases, 400, 'invalid_request');
  });

  it(`a body over the ${BODY_LIMIT}-byte limit is 413 payload_too_large and writes nothing`, async () => {
    const pad = (t: Target, field: string, bytes: number): Case => {
      const base = t.base();
      const skeleton = json({ ...base, [field]: '' });
      const c = withBody(t, { [field]: 'a'.repeat(bytes - Buffer.byteLength(skeleton)) }, `${bytes}-byte body`);
      expect(Buffer.byteLength(c.payload as string)).toBe(bytes);
      return c;
    };
    const cases = [
      pad(T.createUser, 'name', BODY_LIMIT + 1),
      pad(T.createUser, 'name', 1_000_000),
      pad(T.updateUser, 'bio', BODY_LIMIT + 1),
      pad(T.updateSelf, 'bio', BODY_LIMIT + 1),
      pad(T.createKey, 'name', BODY_LIMIT + 1),
      pad(T.createWorkspace, 'description', BODY_LIMIT + 1),
      pad(T.signup, 'password', BODY_LIMIT + 1),
    ];
    await expectRejected(cases, 413, 'payload_too_large');

    // The limit is the limit: a body of exactly BODY_LIMIT bytes is read (and here accepted).
    const atLimit = withBody(T.createUser, (b) => {
      const skeleton = json({ ...b, metadata: { pad: '' } });
      return { ...b, metadata: { pad: 'a'.repeat(BODY_LIMIT - Buffer.byteLength(skeleton)) } };
    }, 'at limit');
    expect(Buffer.byteLength(atLimit.payload as string)).toBe(BODY_LIMIT);
    const res = await rawRequest(app, atLimit);
    expect(res.status, json(res.body).slice(0, 300)).toBe(201);
  });

  it('a body that is not JSON (text/plain, form-encoded, no Content-Type, …) is 415 unsupported_media_type and writes nothing', async () => {
    const cases = TARGETS.flatMap((t) => {
      const body = json(t.base());
      const form = new URLSearchParams(Object.entries(t.base()).map(([k, v]) => [k, String(v)])).toString();
      return [
        raw(t, body, { 'content-type': 'text/plain' }, 'text/plain'),
        raw(t, form, { 'content-type': 'application/x-www-form-urlencoded' }, 'form-encoded'),
        raw(t, body, {}, 'no content-type'),
        raw(t, `--x\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--x--`, { 'content-type': 'multipart/form-data; boundary=x' }, 'multipart'),
        raw(t, body, { 'content-type': 'application/xml' }, 'application/xml'),
      ];
    });
    await expectRejected(cases, 415, 'unsupported_media_type', (c, body) => {
      // A clear message names what was sent; "(none)" only when nothing was.
      const sent = c.headers?.['content-type']?.split(';')[0];
      const m = body.error?.message ?? '';
      if (sent) return m.includes(sent) ? null : `message does not name the Content-Type sent (${sent}): ${m}`;
      return /none|missing|no content-type/i.test(m) ? null : `message does not say the Content-Type is missing: ${m}`;
    });
  });

  it('overlong strings are 400 and write nothing', async () => {
    const longEmail = `${'a'.repeat(64)}@${`${'b'.repeat(60)}.`.repeat(5)}com`; // well-formed, 373 chars
    const longLocal = `${'a'.repeat(320)}@example.com`;
    expect(longEmail.length).toBeGreaterThan(320);
    const cases = [
      withBody(T.createUser, { name: 'n'.repeat(300) }, 'name 300'),
      withBody(T.createUser, { email: longEmail }, `email ${longEmail.length}`),
      withBody(T.createUser, { email: longLocal }, `email ${longLocal.length}`),
      withBody(T.createUser, { id: 'i'.repeat(129) }, 'id 129'),
      withBody(T.createUser, { provider: 'google', provider_user_id: 'p'.repeat(256) }, 'provider_user_id 256'),
      withBody(T.updateUser, { name: 'n'.repeat(300) }, 'name 300'),
      withBody(T.updateUser, { email: longEmail }, `email ${longEmail.length}`),
      withBody(T.updateSelf, { bio: 'b'.repeat(5001) }, 'bio 5001'),
      withBody(T.updateSelf, { username: 'u'.repeat(65) }, 'username 65'),
      withBody(T.updateSelf, { website_url: `https://example.com/${'p'.repeat(2048)}` }, 'website_url > 2048'),
      withBody(T.createKey, { name: 'k'.repeat(256) }, 'name 256'),
      withBody(T.createKey, { name: 'k'.repeat(300) }, 'name 300'),
      withBody(T.createWorkspace, { name: 'w'.repeat(300) }, 'name 300'),
      withBody(T.createWorkspace, { description: 'd'.repeat(5001) }, 'description 5001'),
      withBody(T.createWorkspace, { slug: 's'.repeat(65) }, 'slug 65'),
      withBody(T.signup, { email: longEmail }, `email ${longEmail.length}`),
      withBody(T.signup, { password: 'p'.repeat(257) }, 'password 257'),
    ];
    await expectRejected(cases, 400, 'invalid_request');
  });

  it('an invalid e-mail address is 400 and writes nothing', async () => {
    const invalid = ['not-an-email', 'a@', '@example.com', 'a b@example.com', 'a@b@example.com', 'user@exa mple.com', 'ab', ''];
    const cases = [
      ...invalid.map((e) => withBody(T.createUser, { email: e }, `email ${json(e)}`)),
      ...invalid.map((e) => withBody(T.updateUser, { email: e }, `email ${json(e)}`)),
      ...invalid.map((e) => withBody(T.signup, { email: e }, `email ${json(e)}`)),
    ];
    const users = await countRows('users');
    await expectRejected(cases, 400, 'invalid_request');
    expect(await countRows('users')).toBe(users);
  });

  it('an invalid cursor on a list is 400 and writes nothing', async () => {
    const cursors = [
      'not a cursor!!',
      b64url('{"a":1}'),
      b64url('[1]'),
      b64url('["x","y"]'),
      b64url('[1.5,"usr_x"]'),
      b64url('[9007199254740993,"usr_x"]'),
      b64url('[1,2]'),
      b64url('[1,"a","b"]'),
      'c'.repeat(201),
      '',
    ];
    const lists: Array<[string, string | null]> = [
      ['/v1/users', app.serviceKey],
      [`/v1/users/${victim.id}/api-keys`, app.serviceKey],
      ['/v1/workspaces', member.token],
      [`/v1/workspaces/${workspaceId}/members`, member.token],
    ];
    const cases = lists.flatMap(([url, token]) =>
      cursors.map((c): Case => ({ label: `GET ${url} cursor=${c.slice(0, 24)}`, method: 'GET', url: `${url}?cursor=${encodeURIComponent(c)}`, token })),
    );
    await expectRejected(cases, 400, 'invalid_request');
  });

  it('limit outside 1..200 or not an integer is 400 and writes nothing', async () => {
    const limits = ['0', '201', 'abc', '-1', '1.5', '', '10abc', '99999999999999999999'];
    const lists: Array<[string, string | null]> = [
      ['/v1/users', app.serviceKey],
      [`/v1/users/${victim.id}/api-keys`, app.serviceKey],
      ['/v1/workspaces', member.token],
      [`/v1/workspaces/${workspaceId}/members`, member.token],
    ];
    const cases = lists.flatMap(([url, token]) =>
      limits.map((l): Case => ({ label: `GET ${url} limit=${l}`, method: 'GET', url: `${url}?limit=${encodeURIComponent(l)}`, token })),
    );
    await expectRejected(cases, 400, 'invalid_request');
  });

  it('a bad Idempotency-Key (256 chars, empty, non-printable, non-ASCII) is 400, runs nothing and records no key', async () => {
    const keys: Array<[string, string]> = [
      ['256 chars', 'k'.repeat(256)],
      ['empty', ''],
      ['tab', 'a\tb'],
      ['control char', 'a\x01b'],
      ['space', 'a b'],
      ['non-ASCII', 'ключ'],
      ['DEL', 'a\x7fb'],
    ];
    const targets = TARGETS.filter((t) => t.idempotent);
    expect(targets.length).toBeGreaterThanOrEqual(3);
    const idem = await countRows('idempotency_keys');
    const cases = targets.flatMap((t) =>
      keys.map(([label, key]) => {
        const c = withBody(t, {}, `Idempotency-Key ${label}`);
        return { ...c, headers: { ...c.headers, 'idempotency-key': key } };
      }),
    );
    await expectRejected(cases, 400, 'invalid_request');
    expect(await countRows('idempotency_keys')).toBe(idem);

    // Boundary: 255 printable characters is a valid key, the request runs and the key is kept.
    const ok = withBody(T.createUser, {}, 'Idempotency-Key 255 chars');
    const res = await rawRequest(app, { ...ok, headers: { ...ok.headers, 'idempotency-key': `~${'k'.repeat(254)}` } });
    expect(res.status, json(res.body)).toBe(201);
    expect(await countRows('idempotency_keys')).toBe(idem + 1);
  });

  it('an overlong key in a free-form JSON object (metadata, preferences, settings: keys ≤ 100 chars) is 400 and writes nothing', async () => {
    const key = 'k'.repeat(101);
    const cases = [
      withBody(T.createUser, { metadata: { [key]: 1 } }, 'metadata key 101'),
      withBody(T.updateUser, { metadata: { [key]: 1 } }, 'metadata key 101'),
      withBody(T.updateSelf, { preferences: { [key]: true } }, 'preferences key 101'),
      withBody(T.createWorkspace, { settings: { [key]: 'x' } }, 'settings key 101'),
    ];
    await expectRejected(cases, 400, 'invalid_request');
  });

  it('a malformed path id is 400 and writes nothing', async () => {
    const cases: Case[] = [
      { ...withBody(T.updateUser, {}, 'id with space'), url: `/v1/users/${encodeURIComponent('usr x')}` },
      { ...withBody(T.updateUser, {}, 'id with slash'), url: `/v1/users/${encodeURIComponent('usr/x')}` },
      { ...withBody(T.createKey, {}, 'id with $'), url: `/v1/users/${encodeURIComponent('usr$x')}/api-keys` },
      { label: 'GET /v1/workspaces/:id with quote', method: 'GET', url: `/v1/workspaces/${encodeURIComponent("wsp'1")}`, token: member.token },
      { label: 'DELETE /v1/api-keys/:id with NUL', method: 'DELETE', url: `/v1/api-keys/${encodeURIComponent('key\u0000x')}`, token: app.serviceKey },
    ];
    await expectRejected(cases, 400, 'invalid_request');
  });

  it('a path id over the 128-char maximum is 400 invalid_request in the standard envelope, and a 128-char id works in a path', async () => {
    const cases: Case[] = [
      { ...withBody(T.updateUser, {}, 'id 129 chars'), url: `/v1/users/${'i'.repeat(129)}` },
      { ...withBody(T.createKey, {}, 'id 500 chars'), url: `/v1/users/${'i'.repeat(500)}/api-keys` },
      { label: 'GET /v1/workspaces/:id 129 chars', method: 'GET', url: `/v1/workspaces/${'w'.repeat(129)}`, token: member.token },
    ];
    const problems = await rejectionProblems(cases, 400, 'invalid_request');

    // Ids up to 128 chars are valid (IdParam, CreateUserBody.id, the users.id check): such a user
    // must be reachable by its id.
    const longId = `usr_${'x'.repeat(124)}`;
    expect(longId).toHaveLength(128);
    const created = await client(app.server, app.serviceKey).post('/v1/users', { id: longId, email: email() });
    expect(created.status, json(created.body)).toBe(201);
    const got = await rawRequest(app, { method: 'GET', url: `/v1/users/${longId}`, token: app.serviceKey });
    if (got.status !== 200 || (got.body as { id?: string }).id !== longId) {
      problems.push(`GET /v1/users/<128-char id>: expected 200 with the user, got ${got.status} ${json(got.body).slice(0, 200)}`);
    }
    expect(problems).toEqual([]);
  });

  it('a URL with malformed percent-encoding is 400 invalid_request in the standard envelope', async () => {
    const cases: Case[] = [
      { label: 'GET /v1/users/%E0%A4%A', method: 'GET', url: '/v1/users/%E0%A4%A', token: app.serviceKey },
      { ...withBody(T.updateUser, {}, 'id ending in %'), url: '/v1/users/abc%' },
      { ...withBody(T.createKey, {}, 'id %ZZ'), url: '/v1/users/%ZZ/api-keys' },
    ];
    await expectRejected(cases, 400, 'invalid_request');
  });
});

// ---------------------------------------------------------------------------------------------
// Money routes: the service moves credits; every request carries a valid Idempotency-Key, so each
// rejection below is caused by its one defect and not by a missing key.
// ---------------------------------------------------------------------------------------------

/**
 * A money route records the answer to a 4xx under its Idempotency-Key by design (a retry with the
 * same key gets the same answer), so the fingerprint leaves that one table out: every other row
 * of every other table (accounts, grants, ledger, allocations, holds, users …) must not change.
 */
const MONEY_FP = { exclude: ['idempotency_keys'] } as const;
const idemKey = () => `bi-${randomBytes(12).toString('hex')}`;

/** An open hold on the victim's account: the target of the rejected capture and release cases. */
let openHold: string;

async function moneyCall(url: string, body: Body, status = 201): Promise<Json> {
  const res = await client(app.server, app.serviceKey).post(url, body, { idempotencyKey: idemKey() });
  if (res.status !== status) throw new Error(`${url}: ${res.status} ${json(res.body)}`);
  return res.body;
}
const newHold = async (): Promise<string> => (await moneyCall('/v1/holds', { user_id: victim.id, amount: 2 })).id as string;

const money = (name: string, url: () => string, base: () => Body, okStatus = 201): Target => ({
  name,
  method: 'POST',
  url,
  token: () => app.serviceKey,
  base,
  okStatus,
  idempotent: true,
});

const M = {
  grant: money('POST /v1/credits/grant', () => '/v1/credits/grant', () => ({ user_id: victim.id, amount: 10, reason: 'bad-input grant' })),
  debit: money('POST /v1/credits/debit', () => '/v1/credits/debit', () => ({ user_id: victim.id, amount: 1, reason: 'bad-input debit' })),
  refund: money('POST /v1/credits/refund', () => '/v1/credits/refund', () => ({ user_id: victim.id, amount: 1, reason: 'bad-input refund' })),
  adjust: money('POST /v1/credits/adjust', () => '/v1/credits/adjust', () => ({ user_id: victim.id, amount: 5, reason: 'bad-input adjustment' })),
  hold: money('POST /v1/holds', () => '/v1/holds', () => ({ user_id: victim.id, amount: 1 })),
  capture: money('POST /v1/holds/:id/capture', () => `/v1/holds/${openHold}/capture`, () => ({ amount: 1 }), 200),
  release: money('POST /v1/holds/:id/release', () => `/v1/holds/${openHold}/release`, () => ({}), 200),
} satisfies Record<string, Target>;
const MONEY = Object.values(M);
/** The money routes whose body names an owner, an amount and (except holds) a reason. */
const OWNED = [M.grant, M.debit, M.refund, M.adjust, M.hold];
const WITH_REASON = [M.grant, M.debit, M.refund, M.adjust];

/** The target's baseline with one change, sent with a fresh, valid Idempotency-Key. */
function mc(t: Target, change: Body | ((b: Body) => unknown), label: string): Case {
  const c = withBody(t, change, label);
  return { ...c, headers: { ...c.headers, 'idempotency-key': idemKey() } };
}

async function expectMoneyRejected(
  cases: Case[],
  status: number,
  code: string,
  extra?: (c: Case, body: { error?: { message?: string } }) => string | null,
): Promise<void> {
  expect(await rejectionProblems(cases, status, code, extra, MONEY_FP)).toEqual([]);
}

/** The message names the field at fault, so the caller can fix it. */
const names = (field: string) => (_c: Case, body: { error?: { message?: string } }) => {
  const m = body.error?.message ?? '';
  return m.includes(field) ? null : `message does not name ${field}: ${m}`;
};

describe('money routes: bad input gets a clear 4xx and moves nothing', () => {
  beforeAll(async () => {
    await moneyCall('/v1/credits/grant', { user_id: victim.id, amount: 1000, reason: 'bad-input float' });
  });
  // A fresh open hold per test, so a case that wrongly succeeds cannot change the next test's target.
  beforeEach(async () => {
    openHold = await newHold();
  });

  it('baseline: each money route accepts its well-formed request with an Idempotency-Key', async () => {
    for (const t of MONEY) {
      let c = mc(t, {}, 'baseline');
      if (t === M.capture || t === M.release) c = { ...c, url: c.url.replace(openHold, await newHold()) };
      const before = await dbFingerprint(app, MONEY_FP);
      const res = await rawRequest(app, c);
      const after = await dbFingerprint(app, MONEY_FP);
      expect(res.status, `${c.label}: ${json(res.body)}`).toBe(t.okStatus);
      expect(fingerprintDiff(before, after, c.label).length, c.label).toBeGreaterThan(0);
    }
    // The boundaries are inside: the largest amount, a 500-character reason.
    const edge = await rawRequest(app, mc(M.adjust, { amount: -1, reason: 'r'.repeat(500) }, 'edge'));
    expect(edge.status, json(edge.body)).toBe(201);
    const maxDebit = await rawRequest(app, mc(M.debit, { amount: 1_000_000_000_000 }, 'max amount'));
    expect(maxDebit.status, json(maxDebit.body)).toBe(402); // valid, just more than the victim has
  });

  it('a bad amount (0, -5, 1.5, "10", over 1e12, null, missing) is 400 invalid_request and moves nothing', async () => {
    const bad: Array<[string, unknown]> = [
      ['0', 0],
      ['-5', -5],
      ['1.5', 1.5],
      ['"10"', '10'],
      ['1e12 + 1', 1_000_000_000_001],
      ['1e15', 1e15],
      ['null', null],
      ['missing', undefined],
    ];
    const cases = [
      ...[M.grant, M.debit, M.refund, M.hold].flatMap((t) => bad.map(([label, amount]) => mc(t, { amount }, `amount ${label}`))),
      // A negative adjustment is valid; zero, fractions, strings and out-of-range values are not.
      ...bad
        .filter(([label]) => label !== '-5')
        .map(([label, amount]) => mc(M.adjust, { amount }, `amount ${label}`)),
      mc(M.adjust, { amount: -1e15 }, 'amount -1e15'),
      // A capture may take 0 (nothing spent) or omit the amount (all of it); the rest is wrong.
      ...bad
        .filter(([label]) => !['0', 'missing'].includes(label))
        .map(([label, amount]) => mc(M.capture, { amount }, `amount ${label}`)),
    ];
    await expectMoneyRejected(cases, 400, 'invalid_request', names('amount'));
  });

  it('capturing more than the hold is 400 invalid_request and moves nothing', async () => {
    await expectMoneyRejected([mc(M.capture, { amount: 3 }, 'amount 3 > held 2')], 400, 'invalid_request');
  });

  it('an unknown user_id or workspace_id is 404 not_found and moves nothing', async () => {
    const cases = OWNED.flatMap((t) => [
      mc(t, { user_id: 'usr_nobody_here' }, 'unknown user_id'),
      mc(t, { user_id: undefined, workspace_id: 'wsp_nobody_here' }, 'unknown workspace_id'),
    ]);
    await expectMoneyRejected(cases, 404, 'not_found');
  });

  it('naming both user_id and workspace_id (but on a debit or hold), or neither, is 400 invalid_request and moves nothing', async () => {
    const cases = [
      ...[M.grant, M.refund, M.adjust].map((t) => mc(t, { workspace_id: workspaceId }, 'both user_id and workspace_id')),
      ...OWNED.map((t) => mc(t, { user_id: undefined }, 'neither user_id nor workspace_id')),
    ];
    await expectMoneyRejected(cases, 400, 'invalid_request');
  });

  it("a debit or hold naming a workspace with a user who is not its member is 404 not_found (as for no such workspace) and moves nothing", async () => {
    // Both names: the user spends the pool as its member (docs/ledger.md, "Workspace pools").
    const cases = [M.debit, M.hold].map((t) => mc(t, { workspace_id: workspaceId }, 'a non-member spending the pool'));
    await expectMoneyRejected(cases, 404, 'not_found');
  });

  it('an unknown field is 400 invalid_request (never silently dropped) and moves nothing', async () => {
    const cases = [
      mc(M.grant, { currency: 'usd' }, '+currency'),
      mc(M.grant, { balance: 1_000_000 }, '+balance'),
      mc(M.debit, { force: true }, '+force'),
      mc(M.refund, { transaction: 'txn_x' }, '+transaction (typo of transaction_id)'),
      mc(M.adjust, { source: 'manual' }, '+source'),
      mc(M.hold, { reason: 'holds take no reason' }, '+reason'),
      mc(M.hold, { expires_in: 60 }, '+expires_in (typo of expires_in_seconds)'),
      mc(M.capture, { status: 'released' }, '+status'),
      mc(M.release, { amount: 1 }, '+amount'),
    ];
    await expectMoneyRejected(cases, 400, 'invalid_request', (c, body) => {
      const field = /\+(\w+)/.exec(c.label)?.[1] ?? '<label without +field>';
      return names(field)(c, body);
    });
  });

  it('a reason that is missing, empty or over 500 characters is 400 invalid_request and moves nothing', async () => {
    const cases = WITH_REASON.flatMap((t) => [
      mc(t, { reason: undefined }, 'without reason'),
      mc(t, { reason: '' }, 'reason ""'),
      mc(t, { reason: 'r'.repeat(501) }, 'reason 501 chars'),
      mc(t, { reason: 42 }, 'reason: number'),
    ]);
    await expectMoneyRejected(cases, 400, 'invalid_request', names('reason'));
  });

  it('capturing or releasing an unknown hold is 404 not_found and moves nothing', async () => {
    const cases = [M.capture, M.release].map((t) => ({ ...mc(t, {}, 'unknown hold'), url: t.url().replace(openHold, 'hold_nobody_here') }));
    await expectMoneyRejected(cases, 404, 'not_found');
  });

  it('a grant claiming a source Tally reserves for itself (signup_bonus, refund, adjustment) is 400 and moves nothing', async () => {
    const cases = ['signup_bonus', 'refund', 'adjustment'].map((source) => mc(M.grant, { source }, `source ${source}`));
    await expectMoneyRejected(cases, 400, 'invalid_request', names('source'));
  });

  it('a grant whose expires_at is in the past (or not a timestamp) is 400 and moves nothing', async () => {
    const cases = [
      mc(M.grant, { expires_at: new Date(Date.now() - 60_000).toISOString() }, 'expires_at a minute ago'),
      mc(M.grant, { expires_at: '2000-01-01T00:00:00Z' }, 'expires_at in 2000'),
      mc(M.grant, { expires_at: 'tomorrow' }, 'expires_at "tomorrow"'),
      mc(M.grant, { expires_at: 1_900_000_000 }, 'expires_at: number'),
    ];
    await expectMoneyRejected(cases, 400, 'invalid_request', names('expires_at'));
  });

  it('a refund naming an unknown transaction is 404, naming a grant is 400, and neither moves anything', async () => {
    const grant = await moneyCall('/v1/credits/grant', { user_id: victim.id, amount: 2, reason: 'not refundable' });
    const problems = [
      ...(await rejectionProblems([mc(M.refund, { transaction_id: 'txn_nobody_here' }, 'unknown transaction_id')], 404, 'not_found', undefined, MONEY_FP)),
      ...(await rejectionProblems(
        [mc(M.refund, { transaction_id: grant.transaction.id as string }, 'transaction_id of a grant')],
        400,
        'invalid_request',
        undefined,
        MONEY_FP,
      )),
    ];
    expect(problems).toEqual([]);
  });

  it("refusals by the ledger's rules (not enough credits 402, over the cap 422, a resolved hold 409, refund over the debit 409) move nothing", async () => {
    const available = (await client(app.server, app.serviceKey).get(`/v1/users/${victim.id}/balance`)).body.available as number;
    expect(available).toBeGreaterThan(0);
    const debit = await moneyCall('/v1/credits/debit', { user_id: victim.id, amount: 2, reason: 'to refund' });
    const released = await newHold();
    await moneyCall(`/v1/holds/${released}/release`, {}, 200);
    const problems = [
      ...(await rejectionProblems(
        [
          mc(M.debit, { amount: available + 1 }, 'more than available'),
          mc(M.hold, { amount: available + 1 }, 'more than available'),
          mc(M.adjust, { amount: -(available + 1) }, 'more than available'),
        ],
        402,
        'insufficient_credits',
        undefined,
        MONEY_FP,
      )),
      ...(await rejectionProblems([mc(M.grant, { amount: 50_000 }, 'over the 50000 cap')], 422, 'balance_cap_exceeded', undefined, MONEY_FP)),
      ...(await rejectionProblems(
        [
          { ...mc(M.capture, {}, 'a released hold'), url: `/v1/holds/${released}/capture` },
          { ...mc(M.release, {}, 'a released hold'), url: `/v1/holds/${released}/release` },
        ],
        409,
        'invalid_state',
        undefined,
        MONEY_FP,
      )),
      ...(await rejectionProblems(
        [mc(M.refund, { amount: 3, transaction_id: debit.transaction.id as string }, 'more than the debit')],
        409,
        'conflict',
        undefined,
        MONEY_FP,
      )),
    ];
    expect(problems).toEqual([]);
  });

  it('malformed JSON is 400 and a body that is not JSON is 415 on money routes, and neither moves anything', async () => {
    const withKey = (t: Target, payload: string, type: string | null, label: string): Case =>
      raw(t, payload, { ...(type ? { 'content-type': type } : {}), 'idempotency-key': idemKey() }, label);
    await expectMoneyRejected(
      MONEY.flatMap((t) => [withKey(t, '{"amount": ', 'application/json', 'truncated JSON'), withKey(t, '{"amount": 1,}', 'application/json', 'trailing comma')]),
      400,
      'invalid_request',
    );
    await expectMoneyRejected(
      MONEY.flatMap((t) => [withKey(t, json(t.base()), 'text/plain', 'text/plain'), withKey(t, 'amount=1', 'application/x-www-form-urlencoded', 'form-encoded')]),
      415,
      'unsupported_media_type',
    );
  });

  it('a bad Idempotency-Key on a money route is 400, runs nothing and records no key', async () => {
    const keys: Array<[string, string]> = [
      ['256 chars', 'k'.repeat(256)],
      ['empty', ''],
      ['space', 'a b'],
      ['non-ASCII', 'ключ'],
      ['control char', 'a\x01b'],
    ];
    const idem = await countRows('idempotency_keys');
    const cases = MONEY.flatMap((t) =>
      keys.map(([label, key]) => {
        const c = withBody(t, {}, `Idempotency-Key ${label}`);
        return { ...c, headers: { ...c.headers, 'idempotency-key': key } };
      }),
    );
    await expectRejected(cases, 400, 'invalid_request'); // the full fingerprint: not even a key is kept
    expect(await countRows('idempotency_keys')).toBe(idem);
  });

  it('reading the money of an unknown user or workspace is 404 not_found', async () => {
    const cases: Case[] = ['balance', 'transactions', 'holds'].flatMap((what) => [
      { label: `GET /v1/users/<unknown>/${what}`, method: 'GET', url: `/v1/users/usr_nobody_here/${what}`, token: app.serviceKey },
      { label: `GET /v1/workspaces/<unknown>/${what}`, method: 'GET', url: `/v1/workspaces/wsp_nobody_here/${what}`, token: app.serviceKey },
    ]);
    cases.push({ label: 'GET /v1/holds/<unknown>', method: 'GET', url: '/v1/holds/hold_nobody_here', token: app.serviceKey });
    await expectRejected(cases, 404, 'not_found');
  });
});
