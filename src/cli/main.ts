import { Command } from 'commander';
import { ConfigError } from '../config/config.js';
import { VERSION } from '../version.js';
import type { ImportCommandOptions } from './import.js';

// Each command's module is loaded when that command runs: `tally keys create` beside a running
// server, or `tally --help`, need not load the whole server first (issue 17).

/** The `tally` command line. Every command reads the same configuration as the server. */
export async function main(argv: string[]): Promise<void> {
  const program = new Command()
    .name('tally')
    .description('Accounts, credits and usage backend for AI apps')
    .version(VERSION)
    .showHelpAfterError();

  program.command('start', { isDefault: true }).description('migrate and start the HTTP server').action(async () => (await import('./start.js')).startCommand());
  program
    .command('migrate')
    .description('apply pending SQL migrations')
    .action(async () => {
      process.exitCode = await (await import('./migrate.js')).migrateCommand();
    });
  program
    .command('typegen')
    .description('write the TypeScript Database types from the live schema')
    .option('-o, --out <file>', 'output file', 'src/db/database.types.ts')
    .option('--check', 'exit 1 if the file differs from the live schema instead of writing it')
    .action(async (opts: { out: string; check?: boolean }) => {
      process.exitCode = await (await import('./typegen.js')).typegenCommand(opts);
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
      process.exitCode = await (await import('./billing.js')).billingRunCommand(opts);
    });
  program
    .command('reconcile')
    .description('verify every balance against its ledger and every hold against its status; exit 1 on drift')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      process.exitCode = await (await import('./reconcile.js')).reconcileCommand(opts);
    });
  program
    .command('audit')
    .description('audit log housekeeping')
    .command('verify')
    .description("walk the audit log's hash chain from the first row to the head; exit 1 on any break (a row changed, removed or unsealed)")
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      process.exitCode = await (await import('./audit.js')).auditVerifyCommand(opts);
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
      process.exitCode = await (await import('./import.js')).importCommand(opts);
    });
  program
    .command('export')
    .description('write every table as JSON lines plus a versioned manifest (docs/export.md); `tally import --from <dir>` restores it into an empty database')
    .requiredOption('--to <dir>', 'the directory to write (created if missing)')
    .option('--json', 'print the manifest as JSON')
    .action(async (opts: { to: string; json?: boolean }) => {
      process.exitCode = await (await import('./export.js')).exportCommand(opts);
    });
  program
    .command('storage')
    .description('object storage housekeeping')
    .command('check')
    .description('compare the object rows with what the storage driver holds; exit 1 on missing or orphaned bytes')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      process.exitCode = await (await import('./storage.js')).storageCheckCommand(opts);
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
        process.exitCode = await soakCommand(opts);
        return;
      }
      const { benchCommand } = await import('../../bench/src/run.js');
      process.exitCode = await benchCommand(opts);
    });
  program
    .command('secrets')
    .description('manage sealed secrets')
    .command('rotate')
    .description('re-encrypt every sealed value under TALLY_ENCRYPTION_KEY (old keys in TALLY_ENCRYPTION_KEYS_OLD)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      process.exitCode = await (await import('./secrets.js')).secretsRotateCommand(opts);
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
      process.exitCode = await (await import('./keys.js')).keysCreateCommand(opts);
    });

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
