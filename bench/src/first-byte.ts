import { Agent, type IncomingHttpHeaders, request } from 'node:http';
import { Latencies, since, StatusCounts } from './stats.js';

export interface FirstByteLoad {
  url: string;
  method: 'GET' | 'POST' | 'PUT';
  path: string | (() => string);
  connections: number;
  seconds: number;
  next: () => { body?: string | Buffer; headers: Record<string, string> };
  /** The chunk that counts as the first byte (default: any body chunk; streams: the first token's event). */
  first?: (chunk: string) => boolean;
  /** Sees every whole answer (status, body, headers), e.g. to check it. */
  onAnswer?: (status: number, body: Buffer, headers: IncomingHttpHeaders) => void;
}

export interface FirstByteResult {
  /** From sending the request to the first body chunk that `first` accepts. */
  firstByte: Latencies;
  /** From sending to the last byte. */
  total: Latencies;
  statuses: StatusCounts;
  errors: number;
  firstError: string | null;
  seconds: number;
}

/**
 * A closed loop of `connections` keep-alive connections measuring time to the first byte, which
 * autocannon (sent → complete) cannot: the time to first token of a stream, the first byte of a
 * range read. Every request started before the deadline is answered; the same client measures both
 * sides of a comparison, so its own cost cancels out.
 */
export async function runFirstByteLoad(load: FirstByteLoad): Promise<FirstByteResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: load.connections });
  const base = new URL(load.url);
  const firstByte = new Latencies();
  const total = new Latencies();
  const statuses = new StatusCounts();
  let errors = 0;
  let firstError: string | null = null;
  const isFirst = load.first ?? (() => true);
  const one = () =>
    new Promise<void>((resolve) => {
      const { body, headers } = load.next();
      const t0 = process.hrtime.bigint();
      const req = request(
        { host: base.hostname, port: base.port, method: load.method, path: typeof load.path === 'string' ? load.path : load.path(), headers, agent },
        (res) => {
          let seen = false;
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => {
            if (!seen && isFirst(chunk.toString('latin1'))) {
              seen = true;
              firstByte.add(since(t0));
            }
            if (load.onAnswer) chunks.push(chunk);
          });
          res.on('end', () => {
            total.add(since(t0));
            const status = res.statusCode ?? 0;
            statuses.add(status);
            load.onAnswer?.(status, Buffer.concat(chunks), res.headers);
            resolve();
          });
          res.on('error', (err) => fail(err));
        },
      );
      const fail = (err: Error) => {
        errors++;
        firstError ??= err.message;
        resolve();
      };
      req.on('error', fail);
      req.end(body);
    });
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(load.seconds * 1e9));
  await Promise.all(
    Array.from({ length: load.connections }, async () => {
      while (process.hrtime.bigint() < end) await one();
    }),
  );
  agent.destroy();
  return { firstByte, total, statuses, errors, firstError, seconds: since(start) / 1000 };
}
