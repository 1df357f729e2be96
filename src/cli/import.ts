import { existsSync, writeFileSync } from 'node:fs';
import { loadConfig } from '../config/load.js';
import { httpAnswers } from '../http/answers.js';
import { SecretBox } from '../lib/secret-box.js';
import { reconcile } from '../modules/credits/credits.port.js';
import { isExportDir, restoreExport } from '../modules/export/export.js';
import { CreditsService } from '../modules/credits/credits.service.js';
import { SHAPE_NAMES, type ShapeName } from '../modules/import/import.js';
import { humanReport } from '../modules/import/import.report.js';
import { ImportRefused, runImport } from '../modules/import/import.service.js';
import { openPostgresSource, type SourceDb } from '../modules/import/import.source.js';
import { openSqliteSource } from '../modules/import/import.source.sqlite.js';
import { createDriver } from '../modules/storage/storage.drivers.js';
import { openMigrated } from './open.js';
import { directOrElse, refuse, stopItTo } from './running-server.js';
import type { CliIo } from './io.js';

export interface ImportCommandOptions {
  from: string;
  schema?: string;
  sourceSchema: string;
  dryRun?: boolean;
  resume?: boolean;
  strict?: boolean;
  report?: string;
  json?: boolean;
  batchSize: string;
  owner?: string;
}

/**
 * `tally import --from <postgres-url | sqlite-file> [--schema <shape>] …` (docs/import.md). Exit 0 when the import
 * completed and every credit matches; 1 when it was refused (`--strict`), failed, or does not match;
 * 2 for bad arguments. Progress goes to stderr, the report to stdout (and `--report <file>` as JSON).
 */
export async function importCommand(opts: ImportCommandOptions, io: CliIo): Promise<number> {
  if (opts.schema !== undefined && !(SHAPE_NAMES as readonly string[]).includes(opts.schema)) {
    io.err(`import: unknown --schema ${opts.schema} (one of ${SHAPE_NAMES.join(', ')})\n`);
    return 2;
  }
  const batchSize = Number(opts.batchSize);
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
    io.err('import: --batch-size is a whole number from 1 to 10000\n');
    return 2;
  }
  const postgres = /^postgres(ql)?:\/\//.test(opts.from);
  if (!postgres && isExportDir(opts.from)) return restoreCommand(io, opts.from, opts.json ?? false);
  if (!postgres && !existsSync(opts.from)) {
    io.err(`import: --from takes a PostgreSQL URL (postgres://…) or an existing SQLite file; ${opts.from} is neither\n`);
    return 2;
  }
  const { config } = loadConfig(io.env);
  return directOrElse(
    async () => {
      const database = await openMigrated(io, 'import', config);
      if (!database) return 1;
      let src: SourceDb | null = null;
      const progress = new Progress(io);
      try {
        src = postgres ? await openPostgresSource(opts.from, opts.sourceSchema) : await openSqliteSource(opts.from);
        const secrets = new SecretBox(config.encryptionKey, config.encryptionKeysOld ?? []);
        const ledger = new CreditsService(database, config.credits, () => new Date(), httpAnswers);
        const report = await runImport(
          src,
          { ...(opts.schema ? { shape: opts.schema as ShapeName } : {}), dryRun: opts.dryRun ?? false, resume: opts.resume ?? false, strict: opts.strict ?? false, batchSize, ...(opts.owner !== undefined ? { owner: opts.owner } : {}) },
          {
            database,
            ledger,
            seal: (plain, aad) => secrets.seal(plain, aad),
            sealKeyId: secrets.keyId,
            // The server's own driver: imported file versions' bytes land where Tally reads them.
            storage: createDriver(config.storage, config.dataDir),
            balanceCap: config.credits.balanceCap,
            clock: () => new Date(),
            onProgress: (p) => progress.tell(p),
          },
        );
        progress.end();
        if (opts.report) writeFileSync(opts.report, `${JSON.stringify(report, null, 2)}\n`);
        io.out(opts.json ? `${JSON.stringify(report, null, 2)}\n` : humanReport(report));
        return report.status === 'completed' && report.credits.match && report.reconcile.ok ? 0 : 1;
      } catch (err) {
        progress.end();
        if (err instanceof ImportRefused) {
          io.err(`import: ${err.message}\n`);
          return 1;
        }
        throw err;
      } finally {
        await src?.close();
        await database.close();
      }
    },
    (locked) => refuse(io, locked, stopItTo('tally import')),
  );
}

/**
 * `tally import --from <export dir>`: restores a `tally export` into this (empty) database, exactly,
 * then checks the ledger. Exit 0 when restored and `reconcile` is clean; 1 when refused or drifting.
 */
async function restoreCommand(io: CliIo, dir: string, json: boolean): Promise<number> {
  const { config } = loadConfig(io.env);
  return directOrElse(
    async () => {
      const database = await openMigrated(io, 'import', config);
      if (!database) return 1;
      try {
        const outcome = await restoreExport(database, dir);
        if (!outcome.ok) {
          io.err(`import: ${outcome.message}\n`);
          return 1;
        }
        const r = await reconcile(database);
        const report = { detection: `a Tally export (${dir})`, status: 'completed', tables: outcome.tables, reconcile: { ok: r.ok, accounts: r.accounts, drift: r.drift.length } };
        const rows = outcome.tables.reduce((a, t) => a + t.rows, 0);
        io.out(json ? `${JSON.stringify(report, null, 2)}\n` : `restored ${rows} rows of ${outcome.tables.length} tables from ${dir}; reconcile: ${r.ok ? 'ok' : `${r.drift.length} problem(s)`} over ${r.accounts} accounts\n`);
        return r.ok ? 0 : 1;
      } finally {
        await database.close();
      }
    },
    (locked) => refuse(io, locked, stopItTo('tally import')),
  );
}

/** The progress line on stderr: one line redrawn on a terminal, otherwise a line every few seconds. */
class Progress {
  private last = 0;
  private table = '';
  private drawn = false;
  private readonly tty: boolean;

  constructor(private readonly io: CliIo) {
    this.tty = io.errIsTTY;
  }

  tell(p: { table: string; read: number; total: number; imported: number; skipped: number }): void {
    const now = Date.now();
    const finished = p.read >= p.total;
    // A table's first batch always draws a line: the operator sees each table begin.
    const started = p.table !== this.table;
    this.table = p.table;
    if (!finished && !started && now - this.last < (this.tty ? 100 : 2000)) return;
    this.last = now;
    const pct = p.total > 0 ? Math.min(100, Math.floor((p.read * 100) / p.total)) : 100;
    const bar = '#'.repeat(Math.floor(pct / 5)).padEnd(20, '.');
    const line = `import ${p.table} [${bar}] ${pct}% ${p.read}/${p.total} read, ${p.imported} imported, ${p.skipped} skipped`;
    if (this.tty) {
      this.io.err(`\r\x1b[2K${line}`);
      this.drawn = true;
    } else this.io.err(`${line}\n`);
  }

  end(): void {
    if (this.drawn) this.io.err('\n');
    this.drawn = false;
  }
}
