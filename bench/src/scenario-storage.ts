import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { must } from '../../src/lib/must.js';
import { type Check, check, settled } from './checks.js';
import { startTally } from './children.js';
import { runFirstByteLoad } from './first-byte.js';
import { runHttpLoad } from './http-load.js';
import { rssOf } from './proc.js';
import { type BenchContext, describeStatuses, type ScenarioResult } from './scenarios.js';
import { fundedUser, serviceApi } from './service-api.js';
import { measurement, since, sleep } from './stats.js';
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
    const conn = opts.storageConnections;

    // 1 KB uploads, a new path each.
    const small = randomBytes(SMALL);
    let n = 0;
    const nextUpload = () => ({ path: `${objects}/small/${n++}.bin`, body: small, headers: { authorization: key, 'content-type': 'application/octet-stream' } });
    ctx.log(`  uploads:  PUT 1 KB objects, ${conn} connections, ${opts.warmupSeconds}s warm-up + ${opts.seconds}s`);
    await runHttpLoad({ url: server.url, path: objects, method: 'PUT', connections: conn, seconds: opts.warmupSeconds, next: nextUpload });
    const upload = await runHttpLoad({ url: server.url, path: objects, method: 'PUT', connections: conn, seconds: opts.seconds, next: nextUpload });

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
    ctx.log(`  reads:    GET with Range (64 KB of 8 MB), ${conn} connections, ${opts.warmupSeconds}s warm-up + ${opts.seconds}s, timed to the first byte`);
    const rangeLoad = { url: server.url, method: 'GET' as const, path: `${objects}/video.bin`, connections: conn, next: readRange };
    await runFirstByteLoad({ ...rangeLoad, seconds: opts.warmupSeconds });
    const reads = await runFirstByteLoad({ ...rangeLoad, seconds: opts.seconds, onAnswer: checkRange });

    // One big streamed upload, the server's memory sampled throughout.
    const bigBytes = opts.storageBigMb * 2 ** 20;
    const chunk = randomBytes(2 ** 20);
    const hash = createHash('sha256');
    for (let i = 0; i < opts.storageBigMb; i++) hash.update(chunk);
    const expectedSha = hash.digest('hex');
    const pid = server.pid;
    const rssBefore = rssOf(pid);
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
    const growthMb = (rssPeak - rssBefore) / 2 ** 20;

    const checks = await storageChecks(ctx, { bucket, root, upload, reads, wrongBytes, big, bigBytes, expectedSha });
    const uploadM = upload;
    const readM = measurement(reads.firstByte, reads.statuses, reads.statuses.get(206), reads.seconds, conn, reads.errors);
    const p = (l: typeof reads.total, q: number) => must(l.percentiles([q])[0], 'one percentile');
    return {
      id: 8,
      name: `storage (local driver): 1 KB PUT, ${conn} conn (Tally only)`,
      shape: { tally: `PUT /v1/storage/objects/:bucket/<user id>/small/<n>.bin, 1 KB, a tly_ key, ${conn} connections; range reads and one ${opts.storageBigMb} MB upload in the targets`, baseline: null },
      tally: uploadM,
      baseline: null,
      ratio: null,
      targets: [
        target(`1 KB upload p99, ${conn} conn`, uploadM.p99, 'ms', 'max', 10, `PUT, ${uploadM.ok} uploads, p50 ${uploadM.p50.toFixed(2)} ms, ${Math.round(uploadM.opsPerSec)} uploads/s`),
        target(`range read first byte p99, ${conn} conn`, readM.p99, 'ms', 'max', 5, `GET Range 64 KB of 8 MB, ${readM.ok} reads, first byte p50 ${readM.p50.toFixed(2)} ms, whole answer p99 ${p(reads.total, 99).toFixed(2)} ms`),
        target(`server RSS growth during a ${opts.storageBigMb} MB upload`, growthMb, 'MB', 'max', 64, `VmRSS ${(rssBefore / 2 ** 20).toFixed(0)} → peak ${(rssPeak / 2 ** 20).toFixed(0)} MB; upload took ${bigSeconds.toFixed(1)} s (${((bigBytes / 2 ** 20) / bigSeconds).toFixed(0)} MB/s)`),
      ],
      extra: {
        range_reads: { first_byte: readM, total_p50_ms: p(reads.total, 50), total_p99_ms: p(reads.total, 99) },
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

async function storageChecks(
  ctx: BenchContext,
  s: {
    bucket: string;
    root: string;
    upload: Awaited<ReturnType<typeof runHttpLoad>>;
    reads: Awaited<ReturnType<typeof runFirstByteLoad>>;
    wrongBytes: number;
    big: { status: number; body: string };
    bigBytes: number;
    expectedSha: string;
  },
): Promise<Check[]> {
  const { tally } = ctx;
  const t = sql.table(`${tally.database.schema}.storage_objects`);
  const smallRows = async () =>
    must((await sql<{ n: number }>`select count(*)::int as n from ${t} where bucket_id = ${s.bucket} and size = ${SMALL}`.execute(tally.database.root)).rows[0], 'a count').n;
  // The warm-up's uploads count too: rows = every 201 answered (warm-up and measured), up to one per
  // connection more for uploads in flight when a run stopped.
  const rows = await settled(smallRows);
  const answered = s.upload.ok;
  let big: { size?: unknown; sha256?: unknown; id?: unknown } = {};
  try {
    big = JSON.parse(s.big.body) as typeof big;
  } catch {
    // checked below
  }
  const bigRow = (
    await sql<{ storage_key: string; size: string; sha256: string }>`select storage_key, size::text, sha256 from ${t} where bucket_id = ${s.bucket} and path like '%/big.bin'`.execute(tally.database.root)
  ).rows[0];
  let onDisk = -1;
  try {
    if (bigRow) onDisk = statSync(join(s.root, ...bigRow.storage_key.split('/'))).size;
  } catch {
    // missing: checked below
  }
  const badUploads = s.upload.ok !== Object.values(s.upload.statuses).reduce((a, b) => a + b, 0);
  return [
    check('tally', 'uploads', !badUploads && rows >= answered, `${describeStatuses(s.upload)}; ${rows} 1 KB object row(s) in the bucket (warm-up included) for ${answered} measured 201 answer(s)`),
    check('tally', 'errors/timeouts', s.upload.errors === 0 && s.upload.timeouts === 0 && s.reads.errors === 0, `uploads ${s.upload.errors} error(s), ${s.upload.timeouts} timeout(s); reads ${s.reads.errors} error(s)${s.reads.firstError ? ` (${s.reads.firstError})` : ''}`, false),
    check('tally', 'range reads', s.wrongBytes === 0 && s.reads.statuses.count((x) => x !== 206) === 0, `${JSON.stringify(s.reads.statuses.toJSON())}; ${s.wrongBytes} answer(s) without exactly the asked bytes`),
    check(
      'tally',
      'big upload stored whole',
      s.big.status === 201 && big.size === s.bigBytes && big.sha256 === s.expectedSha && bigRow?.sha256 === s.expectedSha && Number(bigRow?.size) === s.bigBytes && onDisk === s.bigBytes,
      `${s.big.status}; answered size ${String(big.size)}, sha256 ${big.sha256 === s.expectedSha ? 'as sent' : `${String(big.sha256)} ≠ ${s.expectedSha}`}; row ${bigRow ? `${bigRow.size} bytes` : 'missing'}; ${onDisk} bytes on disk` +
        (s.big.status === 201 ? '' : `: ${s.big.body.slice(0, 300)}`),
    ),
  ];
}
