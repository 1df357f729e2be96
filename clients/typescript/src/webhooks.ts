/**
 * Verifying the webhooks Tally sends (Standard Webhooks: https://www.standardwebhooks.com). Each
 * delivery carries `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256
 * of "id.timestamp.body">`, several space-separated while a secret rotates). Verify the **raw** body
 * exactly as received, before parsing it; then dedupe by `event.id` (delivery is at least once).
 *
 * With the official `standardwebhooks` package installed next to this one, it does the check;
 * without it, the same spec is implemented here over Web Crypto (Node ≥ 20, Deno, Bun, workers).
 */

/** The body of every Tally event (docs/webhooks-out.md). */
export interface TallyEvent<D = Record<string, unknown>> {
  /** Stable across retries and replays: the receiver's dedupe key (also the `webhook-id` header). */
  id: string;
  type: string;
  version: number;
  timestamp: string;
  data: D;
}

export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
}

export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

export interface VerifyOptions {
  /** How far the timestamp may be from now, either way (default 300 s, as the spec's libraries). */
  toleranceSeconds?: number;
  /** The clock (ms since the epoch); default Date.now. Setting it uses the built-in check. */
  now?: () => number;
  /** `auto` (default): the `standardwebhooks` package when installed, else built in; `builtin`: never the package. */
  implementation?: 'auto' | 'builtin';
}

const PREFIX = 'whsec_';
const DEFAULT_TOLERANCE_S = 300;

/**
 * Verifies a delivery and returns its event. `secrets`: the endpoint's signing secret (`whsec_…`),
 * or several (the new and the old one while you rotate): any one that verifies is enough.
 * Throws WebhookVerificationError when nothing verifies, the headers are missing, or the
 * timestamp is outside the tolerance.
 */
export async function verifyWebhook<D = Record<string, unknown>>(
  secrets: string | readonly string[],
  body: string | Uint8Array,
  headers: WebhookHeaders,
  options: VerifyOptions = {},
): Promise<TallyEvent<D>> {
  const list = typeof secrets === 'string' ? [secrets] : [...secrets];
  if (list.length === 0) throw new WebhookVerificationError('No signing secret given');
  const h = {
    'webhook-id': header(headers, 'webhook-id'),
    'webhook-timestamp': header(headers, 'webhook-timestamp'),
    'webhook-signature': header(headers, 'webhook-signature'),
  };
  const raw = typeof body === 'string' ? body : new TextDecoder().decode(body);
  const custom = options.now !== undefined || (options.toleranceSeconds !== undefined && options.toleranceSeconds !== DEFAULT_TOLERANCE_S);
  const official = options.implementation === 'builtin' || custom ? null : await loadOfficial();
  let last: unknown = null;
  for (const secret of list) {
    try {
      const event = official ? new official.Webhook(secret).verify(raw, h) : await verifyBuiltin(secret, raw, h, options);
      return event as TallyEvent<D>;
    } catch (err) {
      last = err;
    }
  }
  throw new WebhookVerificationError(last instanceof Error ? last.message : 'No matching signature found');
}

interface Official {
  Webhook: new (secret: string) => { verify(payload: string, headers: Record<string, string>): unknown };
}

let official: Promise<Official | null> | null = null;

/** The official package if the app has it (an optional peer dependency). */
function loadOfficial(): Promise<Official | null> {
  // A name in a variable: bundlers and the type checker leave the optional import alone.
  const name = 'standardwebhooks';
  official ??= (import(name) as Promise<Official>).then((m) => (typeof m.Webhook === 'function' ? m : null)).catch(() => null);
  return official;
}

/** The spec, exactly: HMAC-SHA256 over `${id}.${timestamp}.${body}` with the base64-decoded secret. */
async function verifyBuiltin(secret: string, body: string, h: Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string>, options: VerifyOptions): Promise<unknown> {
  const { 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': signatures } = h;
  if (!id || !ts || !signatures) throw new WebhookVerificationError('Missing required headers');
  const seconds = Number(ts);
  if (!/^\d+$/.test(ts) || !Number.isSafeInteger(seconds)) throw new WebhookVerificationError('Invalid signature headers');
  const now = Math.floor((options.now ?? Date.now)() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_S;
  if (now - seconds > tolerance) throw new WebhookVerificationError('Message timestamp too old');
  if (seconds - now > tolerance) throw new WebhookVerificationError('Message timestamp too new');
  const key = await crypto.subtle.importKey('raw', base64Decode(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const expected = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(`${id}.${ts}.${body}`)));
  for (const versioned of signatures.split(' ')) {
    const comma = versioned.indexOf(',');
    if (comma < 0 || versioned.slice(0, comma) !== 'v1') continue;
    let given: Uint8Array;
    try {
      given = base64Decode(versioned.slice(comma + 1));
    } catch {
      continue;
    }
    if (equal(given, expected)) return JSON.parse(body);
  }
  throw new WebhookVerificationError('No matching signature found');
}

function header(headers: WebhookHeaders, name: string): string {
  const v = typeof (headers as Headers).get === 'function' ? (headers as Headers).get(name) : (headers as Record<string, string | string[] | undefined>)[name];
  return (Array.isArray(v) ? v.join(' ') : v) ?? '';
}

function base64Decode(s: string): Uint8Array<ArrayBuffer> {
  const bin = atob(s);
  const out = new Uint8Array(new ArrayBuffer(bin.length));
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Constant-time for equal lengths (a signature's length is not secret). */
function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}
