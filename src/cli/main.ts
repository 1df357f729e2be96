import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/config.js';
import { VERSION } from '../version.js';
import type { ImportCommandOptions } from './import.js';
import { type CliIo, processIo } from './io.js';

// Each command's module is loaded when that command runs: `tally keys create` beside a running
// server, or `tally --help`, need not load the whole server first (issue 17).

/** The `tally` binary: the command line on this process's environment and output. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await run(argv, processIo);
}

/**
 * The `tally` command line on `io` (src/cli/io.ts); answers the exit code. Every command reads the
 * same configuration as the server. `start` and `bench` run on the process itself (they serve and
 * measure until stopped); every other command runs on `io` alone, so a caller can run it in its own process.
 */
export async function run(argv: string[], io: CliIo): Promise<number> {
  let code = 0;
  const program = new Command()
    .name('tally')
    .description('Accounts, credits and usage backend for AI apps')
    .version(VERSION)
    .showHelpAfterError()
    // Help, --version and bad arguments end the run with their code instead of the process.
    .exitOverride()
    .configureOutput({ writeOut: (text) => io.out(text), writeErr: (text) => io.err(text) });

  program.command('start', { isDefault: true }).description('migrate and start the HTTP server').action(async () => {
    code = await (await import('./start.js')).startCommand();
  });
  program
    .command('migrate')
    .description('apply pending SQL migrations')
    .action(async () => {
      code = await (await import('./migrate.js')).migrateCommand(io);
    });
  program
    .command('typegen')
    .description('write the TypeScript Database types from the live schema')
    .option('-o, --out <file>', 'output file', 'src/db/database.types.ts')
    .option('--check', 'exit 1 if the file differs from the live schema instead of writing it')
    .action(async (opts: { out: string; check?: boolean }) => {
      code = await (await import('./typegen.js')).typegenCommand(opts, io);
    });
  program
    .command('billing')
    .description('billing housekeeping')
    .command('run')
    .description('advance every subscription due at --at (default now): trials, renewals, period closes, allowance windows; writes real entries at that time unless --dry-run')
    .option('--at <time>', 'ISO 8601 time to run at (a clock you can set)')
    .option('--json', 'print the outcome as JSON')
    .option('--dry-run', 'show what would be done (statuses, periods, ledger entries) and write nothing')
    .action(async (opts: { at?: string; json?: boolean; dryRun?: boolean }) => {
      code = await (await import('./billing.js')).billingRunCommand(opts, io);
    });
  program
    .command('reconcile')
    .description('verify every balance against its ledger and every hold against its status; exit 1 on drift')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      code = await (await import('./reconcile.js')).reconcileCommand(opts, io);
    });
  program
    .command('audit')
    .description('audit log housekeeping')
    .command('verify')
    .description("walk the audit log's hash chain from the first row to the head; exit 1 on any break (a row changed, removed or unsealed)")
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      code = await (await import('./audit.js')).auditVerifyCommand(opts, io);
    });
  program
    .command('import')
    .description('move a seed-shaped database onto Tally: balances as opening entries, history kept, resumable (docs/import.md); exit 1 unless every credit matches')
    .requiredOption('--from <url|file>', 'the source, read only: a PostgreSQL URL, a SQLite file (app-builder\'s cc.db), or a `tally export` directory')
    .option('--schema <shape>', 'the source\'s shape: video-credits, llm-relay, app-builder, cloud-ide, foundation (default: detected from its tables)')
    .option('--source-schema <name>', 'the PostgreSQL schema the source tables are in', 'public')
    .option('--dry-run', 'do everything in one transaction, report, and roll it back')
    .option('--resume', 'continue a stopped import after the last batch it committed')
    .option('--strict', 'refuse (import nothing) if the source has any anomaly')
    .option('--report <file>', 'also write the JSON report to this file')
    .option('--json', 'print the report as JSON')
    .option('--batch-size <n>', 'rows per batch, one transaction each (history tables: ten times that, at most 10000)', '500')
    .option('--owner <user>', "app-builder: the user (id or e-mail, in Tally or the source's users) who owns 000's ownerless projects, AI work and service tokens")
    .action(async (opts: ImportCommandOptions) => {
      code = await (await import('./import.js')).importCommand(opts, io);
    });
  program
    .command('export')
    .description('write every table as JSON lines plus a versioned manifest (docs/export.md); `tally import --from <dir>` restores it into an empty database')
    .requiredOption('--to <dir>', 'the directory to write (created if missing)')
    .option('--json', 'print the manifest as JSON')
    .action(async (opts: { to: string; json?: boolean }) => {
      code = await (await import('./export.js')).exportCommand(opts, io);
    });
  program
    .command('storage')
    .description('object storage housekeeping')
    .command('check')
    .description('compare the object rows with what the storage driver holds; exit 1 on missing or orphaned bytes')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      code = await (await import('./storage.js')).storageCheckCommand(opts, io);
    });
  program
    .command('bench')
    .description('measure Tally against the seed projects\' SQL credit function on one PostgreSQL (needs dev dependencies)')
    .option('--only <scenarios>', 'comma-separated scenario numbers (1 HTTP hot, 2 HTTP spread, 3 SDK hot, 4 holds, 5 events, 6 checks)')
    .option('--soak [seconds]', 'instead: the soak (issue 22), two servers under mixed traffic at a fixed rate for [seconds] (default 300); bench/README.md')
    .action(async (opts: { only?: string; soak?: string | true }) => {
      // Loaded only when asked for: the bench needs autocannon and stripe, development dependencies.
      if (opts.soak !== undefined) {
        const { soakCommand } = await import('../../bench/src/soak.js');
        code = await soakCommand(opts);
        return;
      }
      const { benchCommand } = await import('../../bench/src/run.js');
      code = await benchCommand(opts);
    });
  program
    .command('secrets')
    .description('manage sealed secrets')
    .command('rotate')
    .description('re-encrypt every sealed value under TALLY_ENCRYPTION_KEY (old keys in TALLY_ENCRYPTION_KEYS_OLD)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      code = await (await import('./secrets.js')).secretsRotateCommand(opts, io);
    });
  const keys = program.command('keys').description('manage API keys');
  keys
    .command('create')
    .description('create an API key for a user and print it once')
    .requiredOption('-u, --user <id>', 'user id')
    .option('-n, --name <name>', 'key name', 'cli')
    .option('-s, --scopes <scopes>', 'comma-separated scopes', '*')
    .option('--expires-at <iso>', 'expiry time (RFC 3339)')
    .action(async (opts: { user: string; name: string; scopes: string; expiresAt?: string }) => {
      code = await (await import('./keys.js')).keysCreateCommand(opts, io);
    });

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof ConfigError) {
      io.err(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  return code;
}
