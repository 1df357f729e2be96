import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { must } from '../../src/lib/must.js';
import { type Check, check, settled } from './checks.js';
import { startTally } from './children.js';
import { type FirstByteResult, runFirstByteLoad } from './first-byte.js';
import { runHttpLoad } from './http-load.js';
import { hwmOf, rssOf } from './proc.js';
import { type BenchContext, describeStatuses, type ScenarioResult } from './scenarios.js';
import { fundedUser, serviceApi } from './service-api.js';
import { type Latencies, measurement, since, sleep } from './stats.js';
import { target } from './targets.js';

// ---------------------------------------------------------------------------------------------
// Scenario 8 (issue 15, "Proofs and speed"): storage on the local driver.
// ---------------------------------------------------------------------------------------------

const SMALL = 1024;
/** The object range reads are served from (a short video's worth), and each read's length. */
const RANGED_SIZE = 8 * 2 ** 20;
const RANGE_LENGTH = 64 * 1024;
/** A known byte at every offset, so every range read's bytes can be checked. */
const byteAt = (i: number) => (i * 31 + 7) & 255;

/**
 * `node bin/tally.js start` with the local driver under a fresh temporary directory; a bucket with
 * no limits and a user with a `tly_` key, whose folder (its id, the owner rule) every path starts
 * with. 1 KB uploads (`PUT`, a new path each) with autocannon; range reads (`GET` with `Range`, 64 KB
 * at a random offset of an 8 MB object) timed to their first byte; then one streamed upload of
 * `BENCH_STORAGE_BIG_MB` (1 GB) while the server's VmRSS is sampled every 50 ms. Checks: every upload
 * 201 with a row each, every range read 206 with exactly its bytes, the big object stored whole
 * (size and SHA-256 as sent, and on disk).
 */
export async function storageLatency(ctx: BenchContext): Promise<ScenarioResult> {
  const { opts, tally } = ctx;
  const tag = randomBytes(4).toString('hex');
  const bucket = `bench-${tag}`;
  const userId = `bench_st_${tag}`;
  const dir = mkdtempSync(join(tmpdir(), 'tally-bench-storage-'));
  const root = join(dir, 'storage');
  let server: Awaited<ReturnType<typeof startTally>> | null = null;
  try {
    await serviceApi(tally, 'POST', '/v1/storage/buckets', { id: bucket });
    const key = `Bearer ${await fundedUser(tally, userId, 1)}`;
    server = await startTally({
      url: opts.url,
      schema: tally.schema,
      poolMax: opts.serverPoolMax,
      logLevel: opts.tallyLogLevel,
      secrets: tally.secrets,
      nodeArgs: opts.childNodeArgs,
      env: { TALLY_DATA_DIR: dir, TALLY_STORAGE_DRIVER: 'local', TALLY_STORAGE_ROOT: root },
    });
    const objects = `/v1/storage/objects/${bucket}/${userId}`;

    // 1 KB uploads, a new path each; the rows each measured run wrote are counted.
    const small = randomBytes(SMALL);
    let n = 0;
    const nextUpload = () => ({ path: `${objects}/small/${n++}.bin`, body: small, headers: { authorization: key, 'content-type': 'application/octet-stream' } });
    const uploads: Upload[] = [];
    for (const conn of opts.storageConnections) {
      ctx.log(`  uploads:  PUT 1 KB objects, ${conn} connection(s), ${opts.warmupSeconds}s warm-up + ${opts.seconds}s`);
      await runHttpLoad({ url: server.url, path: objects, method: 'PUT', connections: conn, seconds: opts.warmupSeconds, next: nextUpload });
      const before = await settled(() => smallRows(ctx, bucket));
      const m = await runHttpLoad({ url: server.url, path: objects, method: 'PUT', connections: conn, seconds: opts.seconds, next: nextUpload });
      uploads.push({ conn, m, rows: (await settled(() => smallRows(ctx, bucket))) - before });
    }

    // Range reads of one 8 MB object.
    const ranged = Buffer.alloc(RANGED_SIZE);
    for (let i = 0; i < RANGED_SIZE; i++) ranged[i] = byteAt(i);
    const put = await putObject(server.url, `${objects}/video.bin`, key, { parts: [ranged] }, RANGED_SIZE);
    if (put.status !== 201) throw new Error(`the ranged object's upload → ${put.status}: ${put.body}`);
    let wrongBytes = 0;
    const readRange = () => {
      const start = Math.floor(Math.random() * (RANGED_SIZE - RANGE_LENGTH));
      return { headers: { authorization: key, range: `bytes=${start}-${start + RANGE_LENGTH - 1}` } };
    };
    const checkRange = (status: number, body: Buffer, headers: Record<string, unknown>) => {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(headers['content-range'] ?? ''));
      if (status !== 206 || !m || body.length !== RANGE_LENGTH) {
        wrongBytes++;
        return;
      }
      const start = Number(m[1]);
      for (let i = 0; i < body.length; i += 997) if (body[i] !== byteAt(start + i)) return void wrongBytes++;
      if (body[body.length - 1] !== byteAt(start + body.length - 1)) wrongBytes++;
    };
    const reads: Reads[] = [];
    for (const conn of opts.storageConnections) {
      ctx.log(`  reads:    GET with Range (64 KB of 8 MB), ${conn} connection(s), ${opts.warmupSeconds}s warm-up + ${opts.seconds}s, timed to the first byte`);
      const rangeLoad = { url: server.url, method: 'GET' as const, path: `${objects}/video.bin`, connections: conn, next: readRange };
      await runFirstByteLoad({ ...rangeLoad, seconds: opts.warmupSeconds });
      reads.push({ conn, r: await runFirstByteLoad({ ...rangeLoad, seconds: opts.seconds, onAnswer: checkRange }) });
    }

    // One big streamed upload, the server's memory sampled throughout.
    const bigBytes = opts.storageBigMb * 2 ** 20;
    const chunk = randomBytes(2 ** 20);
    const hash = createHash('sha256');
    for (let i = 0; i < opts.storageBigMb; i++) hash.update(chunk);
    const expectedSha = hash.digest('hex');
    const pid = server.pid;
    const rssBefore = rssOf(pid);
    const hwmBefore = hwmOf(pid);
    let rssPeak = rssBefore;
    ctx.log(`  big:      one ${opts.storageBigMb} MB streamed PUT; server RSS before ${(rssBefore / 2 ** 20).toFixed(0)} MB, sampled every 50 ms`);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        rssPeak = Math.max(rssPeak, rssOf(pid));
        await sleep(50);
      }
    })();
    const t0 = process.hrtime.bigint();
    const big = await putObject(server.url, `${objects}/big.bin`, key, { chunk, times: opts.storageBigMb }, bigBytes);
    const bigSeconds = since(t0) / 1000;
    sampling = false;
    await sampler;
    rssPeak = Math.max(rssPeak, rssOf(pid));
    // A spike between two samples still shows in the high-water mark, if it passed the earlier one.
    const hwmAfter = hwmOf(pid);
    if (hwmAfter > hwmBefore) rssPeak = Math.max(rssPeak, hwmAfter);
    const growthMb = (rssPeak - rssBefore) / 2 ** 20;

    const checks = await storageChecks({ root, uploads, reads, wrongBytes, big, bigBytes, expectedSha, bigRow: await bigRowOf(ctx, bucket) });
    const p = (l: Latencies, q: number) => must(l.percentiles([q])[0], 'one percentile');
    const firstByte = reads.map(({ conn, r }) => ({ conn, m: measurement(r.firstByte, r.statuses, r.statuses.get(206), r.seconds, conn, r.errors), totalP50: p(r.total, 50), totalP99: p(r.total, 99) }));
    const main = must(uploads[uploads.length - 1], 'at least one connection count');
    return {
      id: 8,
      name: `storage (local driver): 1 KB PUT, ${main.conn} conn (Tally only)`,
      shape: { tally: `PUT /v1/storage/objects/:bucket/<user id>/small/<n>.bin, 1 KB, a tly_ key, ${main.conn} connections; ${opts.storageConnections.join(' and ')} connections, range reads and one ${opts.storageBigMb} MB upload in the targets`, baseline: null },
      tally: main.m,
      baseline: null,
      ratio: null,
      targets: [
        ...uploads.map(({ conn, m }) => target(`1 KB upload p99, ${conn} conn`, m.p99, 'ms', 'max', 10, `PUT, ${m.ok} uploads, p50 ${m.p50.toFixed(2)} ms, ${Math.round(m.opsPerSec)} uploads/s`)),
        ...firstByte.map(({ conn, m, totalP99 }) =>
          target(`range read first byte p99, ${conn} conn`, m.p99, 'ms', 'max', 5, `GET Range 64 KB of 8 MB, ${m.ok} reads, first byte p50 ${m.p50.toFixed(2)} ms, whole answer p99 ${totalP99.toFixed(2)} ms`),
        ),
        target(`server RSS growth during a ${opts.storageBigMb} MB upload`, growthMb, 'MB', 'max', 64, `VmRSS ${(rssBefore / 2 ** 20).toFixed(0)} → peak ${(rssPeak / 2 ** 20).toFixed(0)} MB; upload took ${bigSeconds.toFixed(1)} s (${((bigBytes / 2 ** 20) / bigSeconds).toFixed(0)} MB/s)`),
      ],
      extra: {
        uploads: uploads.map(({ conn, m, rows }) => ({ connections: conn, measured: m, rows })),
        range_reads: firstByte.map(({ conn, m, totalP50, totalP99 }) => ({ connections: conn, first_byte: m, total_p50_ms: totalP50, total_p99_ms: totalP99 })),
        big_upload: { bytes: bigBytes, seconds: bigSeconds, rss_before_bytes: rssBefore, rss_peak_bytes: rssPeak, status: big.status },
      },
      checks,
    };
  } finally {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * One PUT with a declared length: the body is `parts`, or `chunk` written `times` times with
 * backpressure honoured (a streamed upload that never holds the file in memory).
 */
function putObject(
  base: string,
  path: string,
  auth: string,
  body: { parts: Buffer[] } | { chunk: Buffer; times: number },
  length: number,
): Promise<{ status: number; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method: 'PUT', path, headers: { authorization: auth, 'content-type': 'application/octet-stream', 'content-length': String(length) } },
      (res) => {
        const got: Buffer[] = [];
        res.on('data', (c: Buffer) => got.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(got).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if ('parts' in body) {
      for (const part of body.parts) req.write(part);
      req.end();
      return;
    }
    let sent = 0;
    const pump = () => {
      while (sent < body.times) {
        sent++;
        if (!req.write(body.chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

interface Upload {
  conn: number;
  m: Awaited<ReturnType<typeof runHttpLoad>>;
  /** 1 KB rows the measured run wrote. */
  rows: number;
}

interface Reads {
  conn: number;
  r: FirstByteResult;
}

/** 1 KB objects in the bench's bucket. */
async function smallRows(ctx: BenchContext, bucket: string): Promise<number> {
  const t = sql.table(`${ctx.tally.database.schema}.storage_objects`);
  return must((await sql<{ n: number }>`select count(*)::int as n from ${t} where bucket_id = ${bucket} and size = ${SMALL}`.execute(ctx.tally.database.root)).rows[0], 'a count').n;
}

async function bigRowOf(ctx: BenchContext, bucket: string): Promise<{ storage_key: string; size: string; sha256: string } | undefined> {
  const t = sql.table(`${ctx.tally.database.schema}.storage_objects`);
  return (await sql<{ storage_key: string; size: string; sha256: string }>`select storage_key, size::text, sha256 from ${t} where bucket_id = ${bucket} and path like '%/big.bin'`.execute(ctx.tally.database.root)).rows[0];
}

function storageChecks(s: {
  root: string;
  uploads: Upload[];
  reads: Reads[];
  wrongBytes: number;
  big: { status: number; body: string };
  bigBytes: number;
  expectedSha: string;
  bigRow: { storage_key: string; size: string; sha256: string } | undefined;
}): Check[] {
  let big: { size?: unknown; sha256?: unknown } = {};
  try {
    big = JSON.parse(s.big.body) as typeof big;
  } catch {
    // checked below
  }
  const { bigRow } = s;
  let onDisk = -1;
  try {
    if (bigRow) onDisk = statSync(join(s.root, ...bigRow.storage_key.split('/'))).size;
  } catch {
    // missing: checked below
  }
  const uploadsOk = s.uploads.every(({ conn, m, rows }) => m.ok === Object.values(m.statuses).reduce((a, b) => a + b, 0) && rows >= m.ok && rows - m.ok <= conn);
  const errors = s.uploads.reduce((a, { m }) => a + m.errors + m.timeouts, 0) + s.reads.reduce((a, { r }) => a + r.errors, 0);
  const firstError = s.reads.find(({ r }) => r.firstError)?.r.firstError;
  const readStatuses = s.reads.map(({ conn, r }) => `${conn} conn ${JSON.stringify(r.statuses.toJSON())}`).join(', ');
  const badReads = s.reads.reduce((a, { r }) => a + r.statuses.count((x) => x !== 206), 0);
  return [
    check(
      'tally',
      'uploads',
      uploadsOk,
      s.uploads.map(({ conn, m, rows }) => `${conn} conn: ${describeStatuses(m)}, ${rows} row(s) written`).join('; ') + ' (rows = 201 answers, up to one per connection more for uploads in flight when a run stopped)',
    ),
    check('tally', 'errors/timeouts', errors === 0, `${errors} connection error(s) or timeout(s)${firstError ? ` (${firstError})` : ''}`, false),
    check('tally', 'range reads', s.wrongBytes === 0 && badReads === 0, `${readStatuses}; ${s.wrongBytes} answer(s) without exactly the asked bytes`),
    check(
      'tally',
      'big upload stored whole',
      s.big.status === 201 && big.size === s.bigBytes && big.sha256 === s.expectedSha && bigRow?.sha256 === s.expectedSha && Number(bigRow?.size) === s.bigBytes && onDisk === s.bigBytes,
      `${s.big.status}; answered size ${String(big.size)}, sha256 ${big.sha256 === s.expectedSha ? 'as sent' : `${String(big.sha256)} ≠ ${s.expectedSha}`}; row ${bigRow ? `${bigRow.size} bytes` : 'missing'}; ${onDisk} bytes on disk` +
        (s.big.status === 201 ? '' : `: ${s.big.body.slice(0, 300)}`),
    ),
  ];
}
