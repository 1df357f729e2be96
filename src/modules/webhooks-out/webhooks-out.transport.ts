import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, request } from 'undici';

/**
 * Sends one webhook over HTTP. Without `allowPrivate`, no loopback, private, link-local,
 * carrier-grade NAT, multicast or unspecified address is ever connected to (SSRF): checked on the
 * address the connection actually uses (after DNS, so a name that resolves inward — or re-resolves,
 * DNS rebinding — is refused too), not on the URL's spelling.
 */
export interface WebhookTransport {
  post(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }>;
  close(): Promise<void>;
}

const INWARD = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) INWARD.addSubnet(net, bits, 'ipv4');
// Not ::ffff:0:0/96: BlockList matches IPv4 addresses against IPv4-mapped ranges, so that range
// would cover every IPv4 address. A mapped address is unwrapped and checked as IPv4 instead.
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) INWARD.addSubnet(net, bits, 'ipv6');

export function isInwardAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 4) return INWARD.check(address, 'ipv4');
  // An IPv6 address that carries an IPv4 one reaches that IPv4 address: judge it as IPv4.
  const inner = embeddedIpv4(address);
  if (inner !== null) return INWARD.check(inner, 'ipv4');
  return INWARD.check(address, 'ipv6');
}

/** The eight 16-bit groups of an IPv6 address (a trailing dotted quad included); null if unsure (a zone id). */
function hextets(address: string): number[] | null {
  if (address.includes('%')) return null;
  let a = address.toLowerCase();
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (quad) {
    const [b0, b1, b2, b3] = quad.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, quad.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head = '', tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(tail === undefined ? 0 : 8 - h.length - t.length).fill('0'), ...t].map((g) => Number.parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => g >= 0 && g <= 0xffff) ? groups : null;
}

/**
 * The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64
 * (64:ff9b::/96) or 6to4 (2002::/16) address; null for any other.
 */
function embeddedIpv4(address: string): string | null {
  const x = hextets(address);
  if (!x) return null;
  const g = (i: number) => x[i] ?? 0;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeros = (from: number, to: number) => x.slice(from, to).every((n) => n === 0);
  if (zeros(0, 5) && (g(5) === 0xffff || g(5) === 0)) return v4(g(6), g(7));
  if (g(0) === 0x64 && g(1) === 0xff9b && zeros(2, 6)) return v4(g(6), g(7));
  if (g(0) === 0x2002) return v4(g(1), g(2));
  return null;
}

export class RefusedAddress extends Error {}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** dns.lookup that never hands out an inward address. */
function outwardLookup(hostname: string, options: { all?: boolean; family?: number }, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const allowed = addresses.filter((a) => !isInwardAddress(a.address));
    if (allowed.length === 0) return callback(new RefusedAddress(`${hostname} resolves only to private or loopback addresses`), []);
    const first = allowed[0] as LookupAddress;
    if (options.all) callback(null, allowed);
    else callback(null, first.address, first.family);
  });
}

export function httpTransport(opts: { timeoutMs: number; allowPrivate: boolean }): WebhookTransport {
  const agent = new Agent({
    connect: { timeout: opts.timeoutMs, ...(opts.allowPrivate ? {} : { lookup: outwardLookup as never }) },
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
  });
  return {
    async post(url, headers, body) {
      const target = new URL(url);
      const host = target.hostname.replace(/^\[|\]$/g, '');
      // An address literal is connected to without a lookup: check it here.
      if (!opts.allowPrivate && (isInwardAddress(host) || host === 'localhost')) throw new RefusedAddress(`${host} is a private or loopback address`);
      const res = await request(target, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'user-agent': 'Tally-Webhooks/1' },
        body,
        dispatcher: agent,
        signal: AbortSignal.timeout(opts.timeoutMs),
        maxRedirections: 0,
      } as Parameters<typeof request>[1]);
      // Read at most a little of the answer: the log keeps 2,000 characters.
      let text = '';
      for await (const chunk of res.body) {
        if (text.length < 2000) text += (chunk as Buffer).toString('utf8');
      }
      return { status: res.statusCode, body: text.slice(0, 2000) };
    },
    close: () => agent.close(),
  };
}
