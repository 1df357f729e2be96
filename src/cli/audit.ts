import { loadConfig } from '../config/load.js';
import type { AuditVerification } from '../modules/audit/audit.js';
import { AuditService } from '../modules/audit/audit.service.js';
import { openMigrated } from './open.js';
import { callServer, directOrElse, errorMessage } from './running-server.js';
import type { CliIo } from './io.js';

/**
 * `tally audit verify`: walk the audit log's hash chain (docs/audit.md); exit 1 on any break. While
 * a server holds the embedded database, the same check runs in it (GET /v1/audit/verify).
 */
export async function auditVerifyCommand(opts: { json?: boolean }, io: CliIo): Promise<number> {
  const { config } = loadConfig(io.env);
  return directOrElse(
    async () => {
      const database = await openMigrated(io, 'audit verify', config);
      if (!database) return 1;
      try {
        return print(io, await new AuditService(database.schema).verify(database.db), opts.json ?? false);
      } finally {
        await database.close();
      }
    },
    async (locked) => {
      const answer = await callServer(io, 'audit verify', locked, config, 'GET', '/v1/audit/verify');
      if (typeof answer === 'number') return answer;
      if (answer.status !== 200) {
        io.err(`audit verify: ${errorMessage(answer)}\n`);
        return 1;
      }
      return print(io, answer.body as AuditVerification, opts.json ?? false);
    },
  );
}

function print(io: CliIo, report: AuditVerification, json: boolean): number {
  if (json) io.out(JSON.stringify(report, null, 2) + '\n');
  else {
    io.out(`checked ${report.rows} audit rows; head seq ${report.last_seq} hash ${report.last_hash || '(empty)'}\n`);
    for (const p of report.problems) io.out(`BROKEN ${p.seq ?? '-'} ${p.id ?? ''}: ${p.problem}\n`);
    io.out(report.ok ? 'ok: the chain is whole\n' : `FAILED: ${report.problems.length} problem(s)\n`);
  }
  return report.ok ? 0 : 1;
}
