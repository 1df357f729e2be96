import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

/**
 * The gateway scenario's fake OpenAI-compatible provider (issue 14, "Speed"), in its own process
 * like the servers under test: `POST /v1/chat/completions` answers a fixed small completion with
 * usage (8 prompt + 4 completion tokens whatever the request says), or, with `stream: true`, the
 * same as SSE — four one-word content chunks 1 ms apart, the usage chunk when
 * `stream_options.include_usage` asks for it, and `[DONE]`. The bench calls it directly and through
 * Tally; `GET /stats` counts what it served per credential (the Authorization header), so the bench
 * can check that every request Tally charged reached it exactly once.
 */
const USAGE = { prompt_tokens: 8, completion_tokens: 4, total_tokens: 12 };
const JSON_ANSWER = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1,
  model: 'bench-gpt',
  choices: [{ index: 0, message: { role: 'assistant', content: 'w1 w2 w3 w4' }, finish_reason: 'stop' }],
  usage: USAGE,
});
const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1, model: 'bench-gpt', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
const STREAM = [
  chunk({ role: 'assistant', content: 'w1' }),
  chunk({ content: ' w2' }),
  chunk({ content: ' w3' }),
  chunk({ content: ' w4' }),
  chunk({}, 'stop'),
];
const USAGE_CHUNK = `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1, model: 'bench-gpt', choices: [], usage: USAGE })}\n\n`;

const served = new Map<string, { json: number; stream: number }>();
const count = (req: IncomingMessage, kind: 'json' | 'stream') => {
  const who = req.headers.authorization ?? '';
  const c = served.get(who) ?? { json: 0, stream: 0 };
  c[kind]++;
  served.set(who, c);
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function completion(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
  let body: { stream?: unknown; stream_options?: { include_usage?: unknown } };
  try {
    body = JSON.parse(raw) as typeof body;
  } catch {
    res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"bad json","type":"invalid_request_error"}}');
    return;
  }
  if (body.stream !== true) {
    count(req, 'json');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON_ANSWER);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (let i = 0; i < STREAM.length; i++) {
    if (i > 0) await sleep(1);
    res.write(STREAM[i]);
  }
  if (body.stream_options?.include_usage === true) res.write(USAGE_CHUNK);
  res.end('data: [DONE]\n\n');
  count(req, 'stream');
}

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    return;
  }
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(Object.fromEntries(served)));
    return;
  }
  if (req.method === 'POST' && req.url === '/v1/chat/completions') {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => void completion(req, res, Buffer.concat(parts).toString('utf8')));
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found","type":"invalid_request_error"}}');
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env['FAKE_PORT'] ?? 0), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
