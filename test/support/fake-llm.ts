import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A fake LLM provider on 127.0.0.1: OpenAI (chat completions, embeddings; JSON and SSE) and
 * Anthropic (messages; JSON and SSE) wire formats. One token per whitespace-separated word, so
 * usage is exact and known to the test; it keeps its own bill per credential (what it would charge
 * the operator). Knobs per credential: latency, an error status (with Retry-After), hang, reset
 * mid-stream, no usage, answer length.
 */
export interface Behaviour {
  /** Answer this status (with an error body) instead of a completion. */
  status?: number;
  retryAfter?: string;
  /** Wait this long before the response headers. */
  latencyMs?: number;
  /** Between stream events. */
  eventGapMs?: number;
  /** Never answer (the connection stays open). */
  hang?: boolean;
  /** Send 200 and the headers, then nothing more (an upstream that stalls after taking the request). */
  stallAfterHeaders?: boolean;
  /** Answer only once this settles (lets a test line many requests up at the upstream). */
  gate?: Promise<void>;
  /** Destroy the socket after this many output words have been streamed. */
  resetAfterWords?: number;
  /** Leave usage out (JSON and streams). */
  noUsage?: boolean;
  /** OpenAI streams: send the words as this kind of delta instead of `content`. */
  deltaAs?: 'tool_calls' | 'reasoning_content' | 'refusal';
  /** Send this as the usage object instead of the true one (JSON, OpenAI's usage chunk, both Anthropic stream events). */
  usageAs?: Record<string, unknown>;
  /** Output words per answer (default 5, at most max_tokens). */
  words?: number;
}

export interface Bill {
  requests: number;
  input: number;
  output: number;
  /** Streams the fake finished sending (every word and the usage). */
  completedStreams: number;
}

export interface FakeLlm {
  url: string;
  /** OpenAI base URL (…/v1), as the SDK and Tally's upstreams take it. */
  openaiBase: string;
  behave(credential: string, b: Behaviour): void;
  bill(credential: string): Bill;
  /** Requests seen per credential (including refused ones). */
  hits(credential: string): number;
  lastBody(credential: string): Record<string, unknown> | undefined;
  close(): Promise<void>;
}

const words = (s: string): number => s.split(/\s+/).filter(Boolean).length;

function contentWords(content: unknown): number {
  if (typeof content === 'string') return words(content);
  if (Array.isArray(content)) return content.reduce((n: number, p) => n + (typeof (p as { text?: unknown }).text === 'string' ? words((p as { text: string }).text) : 0), 0);
  return 0;
}

function inputWords(body: Record<string, unknown>): number {
  let n = 0;
  if (typeof body['system'] === 'string') n += words(body['system']);
  for (const m of (body['messages'] as { content?: unknown }[] | undefined) ?? []) n += contentWords(m.content);
  const input = body['input'];
  if (typeof input === 'string') n += words(input);
  if (Array.isArray(input)) for (const s of input) if (typeof s === 'string') n += words(s);
  return n;
}

export async function startFakeLlm(): Promise<FakeLlm> {
  const behaviours = new Map<string, Behaviour>();
  const bills = new Map<string, Bill>();
  const hits = new Map<string, number>();
  const bodies = new Map<string, Record<string, unknown>>();
  const sockets = new Set<import('node:net').Socket>();
  const billOf = (c: string): Bill => {
    let b = bills.get(c);
    if (!b) {
      b = { requests: 0, input: 0, output: 0, completedStreams: 0 };
      bills.set(c, b);
    }
    return b;
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void handle(req, res, Buffer.concat(chunks).toString('utf8')).catch(() => res.destroy());
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const anthropic = req.url?.startsWith('/v1/messages') ?? false;
    const credential = anthropic ? String(req.headers['x-api-key'] ?? '') : String(req.headers['authorization'] ?? '').replace(/^Bearer\s+/i, '');
    hits.set(credential, (hits.get(credential) ?? 0) + 1);
    const b = behaviours.get(credential) ?? {};
    if (b.hang) return; // never answered
    if (b.gate) await b.gate;
    if (b.latencyMs) await sleep(b.latencyMs);
    const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
    bodies.set(credential, body);
    if (b.status) {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (b.retryAfter) headers['retry-after'] = b.retryAfter;
      res.writeHead(b.status, headers);
      res.end(JSON.stringify(anthropic ? { type: 'error', error: { type: 'api_error', message: `fake ${b.status}` } } : { error: { message: `fake ${b.status}`, type: 'server_error', code: null } }));
      return;
    }
    const model = String(body['model'] ?? 'unknown');
    const input = inputWords(body);
    if (b.stallAfterHeaders) {
      // It took the request, so it bills the input; then it never says anything more.
      billOf(credential).requests++;
      billOf(credential).input += input;
      res.writeHead(200, { 'content-type': body['stream'] === true ? 'text/event-stream' : 'application/json' });
      res.flushHeaders();
      return;
    }
    const maxTokens = typeof body['max_tokens'] === 'number' ? body['max_tokens'] : typeof body['max_completion_tokens'] === 'number' ? body['max_completion_tokens'] : Infinity;
    const n = Math.max(1, Math.min(b.words ?? 5, maxTokens));
    const out = Array.from({ length: n }, (_, i) => `w${i + 1}`);
    const bill = billOf(credential);

    if (req.url === '/v1/embeddings') {
      bill.requests++;
      bill.input += input;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', model, data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2, 0.3] }], ...(b.noUsage ? {} : { usage: { prompt_tokens: input, total_tokens: input } }) }));
      return;
    }
    const stream = body['stream'] === true;
    if (!stream) {
      bill.requests++;
      bill.input += input;
      bill.output += n;
      res.writeHead(200, { 'content-type': 'application/json' });
      const text = out.join(' ');
      if (anthropic) {
        res.end(JSON.stringify({ id: 'msg_fake', type: 'message', role: 'assistant', model, content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage: b.usageAs ?? (b.noUsage ? undefined : { input_tokens: input, output_tokens: n }) }));
      } else {
        res.end(JSON.stringify({ id: 'chatcmpl-fake', object: 'chat.completion', created: 1, model, choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], ...(b.usageAs ? { usage: b.usageAs } : b.noUsage ? {} : { usage: { prompt_tokens: input, completion_tokens: n, total_tokens: input + n } }) }));
      }
      return;
    }

    // Streams: billed as they are produced (a reset stream is billed what it sent).
    bill.requests++;
    bill.input += input;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (event: string | null, data: unknown) => res.write(`${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    const includeUsage = (body['stream_options'] as { include_usage?: boolean } | undefined)?.include_usage === true;
    if (anthropic) {
      send('message_start', { type: 'message_start', message: { id: 'msg_fake', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: b.usageAs ?? (b.noUsage ? {} : { input_tokens: input, output_tokens: 0 }) } });
      send('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
    } else {
      send(null, { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    }
    for (let i = 0; i < n; i++) {
      if (b.resetAfterWords !== undefined && i >= b.resetAfterWords) {
        res.destroy();
        return;
      }
      if (b.eventGapMs) await sleep(b.eventGapMs);
      const text = i === 0 ? out[i] : ` ${out[i]}`;
      bill.output++;
      if (anthropic) send('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } });
      else {
        const delta =
          b.deltaAs === 'tool_calls' ? { tool_calls: [{ index: 0, ...(i === 0 ? { id: 'call_1', type: 'function' } : {}), function: { ...(i === 0 ? { name: 'f' } : {}), arguments: text } }] }
          : b.deltaAs ? { [b.deltaAs]: text }
          : { content: text };
        send(null, { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: null }] });
      }
    }
    if (anthropic) {
      send('content_block_stop', { type: 'content_block_stop', index: 0 });
      send('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: b.usageAs ?? (b.noUsage ? {} : { output_tokens: n }) });
      send('message_stop', { type: 'message_stop' });
    } else {
      send(null, { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
      if (includeUsage && !b.noUsage) send(null, { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model, choices: [], usage: b.usageAs ?? { prompt_tokens: input, completion_tokens: n, total_tokens: input + n } });
      send(null, '[DONE]');
    }
    bill.completedStreams++;
    res.end();
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    openaiBase: `${url}/v1`,
    behave: (c, b) => behaviours.set(c, b),
    bill: (c) => ({ ...billOf(c) }),
    hits: (c) => hits.get(c) ?? 0,
    lastBody: (c) => bodies.get(c),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
