import autocannon from 'autocannon';
import { Latencies, type Measurement, measurement, StatusCounts } from './stats.js';

export interface HttpLoad {
  url: string;
  path: string;
  /** POST unless given (storage uploads are PUT, range reads GET). */
  method?: 'POST' | 'PUT' | 'GET';
  connections: number;
  seconds: number;
  /** A fresh body and headers for every request (unique Idempotency-Key, random account…). */
  next: () => { body?: string | Buffer; headers: Record<string, string>; path?: string };
  /** Sees every answer's status and body (e.g. to collect the ids of committed transactions). */
  onAnswer?: (status: number, body: string) => void;
}

/**
 * One autocannon run: a fixed duration, `connections` keep-alive connections, no pipelining, a
 * new request built for each send. Latency is taken from autocannon's per-response timings (sent →
 * complete) and kept exactly; throughput counts 2xx answers only.
 */
export async function runHttpLoad(load: HttpLoad): Promise<Measurement & { samples: Latencies }> {
  const latencies = new Latencies();
  const statuses = new StatusCounts();
  const request: autocannon.Request = {
    method: load.method ?? 'POST',
    path: load.path,
    setupRequest: (req) => {
      const { body, headers, path } = load.next();
      return { ...req, ...(body === undefined ? {} : { body }), ...(path === undefined ? {} : { path }), headers: { ...req.headers, ...headers } };
    },
  };
  if (load.onAnswer) {
    const onAnswer = load.onAnswer;
    request.onResponse = (status: number, body: string) => onAnswer(status, body);
  }
  let finish: (err: unknown, result?: autocannon.Result) => void = () => {};
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    finish = (err, result) => (err || !result ? reject(err ?? new Error('autocannon returned no result')) : resolve(result));
  });
  const instance = autocannon(
    {
      url: load.url,
      connections: load.connections,
      pipelining: 1,
      duration: load.seconds,
      timeout: 30,
      headers: { 'content-type': 'application/json' },
      requests: [request],
    },
    (err, result) => finish(err, result),
  );
  // Clients start on the next tick: listening now sees every answer.
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    latencies.add(responseTime);
    statuses.add(statusCode);
  });
  const result = await done;
  const ok = statuses.count((s) => s >= 200 && s < 300);
  // autocannon's `errors` includes its timeouts; report them apart.
  const m = measurement(latencies, statuses, ok, result.duration, load.connections, result.errors - result.timeouts, result.timeouts);
  // Not enumerable: the JSON report keeps the percentiles, not every sample.
  return Object.defineProperty(m, 'samples', { value: latencies, enumerable: false }) as Measurement & { samples: Latencies };
}
