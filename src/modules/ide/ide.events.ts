import type { Executor } from '../../db/database.js';
import { elevate } from '../../db/request-role.js';
import type { EventSink, EventType } from '../../core/events.js';
import { projectFind } from '../projects/projects.repository.js';

/**
 * Tells the app (outgoing webhooks, docs/webhooks-out.md) that an IDE resource reached a final
 * state, in the transaction of the change: a deployment that went live or failed, a code run that
 * completed or failed. The subject is the project's owner, so a workspace's endpoints hear about
 * its projects and no one else's. The event tables hold no end-user grant: the write runs as the
 * owner (`elevate`), after every access check of the change — it is the transaction's last step.
 */
export class IdeEvents {
  constructor(private readonly sink: EventSink) {}

  async tell(db: Executor, projectId: string, type: EventType, data: Record<string, unknown>): Promise<void> {
    const project = await projectFind(db, projectId);
    if (!project) return; // deleted meanwhile: the change itself would have found nothing
    await elevate(db);
    await this.sink.emit(db, { type, data, userId: project.user_id, workspaceId: project.workspace_id });
  }
}

/**
 * Bodies stay small: the text a run or a build may hold (up to 1 MiB a field) is left out; the
 * receiver reads it with GET when it wants it.
 */
export function withoutText<T extends Record<string, unknown>>(row: T, fields: readonly (keyof T)[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...row };
  for (const f of fields) delete out[f as string];
  return out;
}
